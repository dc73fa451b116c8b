"""Atomic, checksum-verified downloads of data files, with bounded retries and an offline mode.

A file is described by a :class:`RemoteFile` and fetched into a data directory with
:func:`fetch`. A valid local copy is returned without touching the network; a download goes to
a temporary ``.part`` file next to the target and is moved into place only once it is complete
and passes its checks, so a truncated or corrupt file is never returned.

>>> import os, shutil, tempfile
>>> folder = tempfile.mkdtemp()
>>> remote = RemoteFile("https://example.org/hello.txt", "hello.txt", size=5)
>>> check_file(os.path.join(folder, "hello.txt"), remote)
'missing'
>>> with open(os.path.join(folder, "hello.txt"), "wb") as handle:
...     _ = handle.write(b"hello")
>>> fetch(remote, folder, offline=True) == os.path.join(folder, "hello.txt")
True
>>> shutil.rmtree(folder)
"""

import contextlib
import errno
import http.client
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from deepchem_cgcnn._io import file_sha256, replacement_mode

__all__ = ["DownloadError", "RemoteFile", "check_file", "fetch", "file_sha256"]

logger = logging.getLogger(__name__)

USER_AGENT = "deepchem-cgcnn"
OFFLINE_VARIABLE = "DEEPCHEM_CGCNN_OFFLINE"
MISSING = "missing"
_CHUNK_BYTES = 1 << 20
_TRUE_WORDS = {"1", "true", "yes"}
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH}
DEFAULT_MAX_BYTES = 4 << 30
"""Download cap for a file whose size is not known in advance (4 GiB)."""
DEFAULT_DEADLINE = 1800.0
"""Seconds one :func:`fetch` may take in all, every attempt included."""


class DownloadError(RuntimeError):
    """A file could not be obtained; the message says why and how to place it by hand.

    Attributes
    ----------
    url: str
        Where the file was to come from.
    path: str
        Where the file is expected locally.
    reason: str
        What went wrong (e.g. ``'HTTP 404'``).
    """

    def __init__(self, url: str, path: str, reason: str):
        self.url = url
        self.path = path
        self.reason = reason
        super().__init__(
            f"could not obtain {path} from {url}: {reason}. To place the file by "
            f"hand, download {url} yourself and save it as {path}."
        )


@dataclass(frozen=True)
class RemoteFile:
    """A file to download, with what is known about its content.

    Attributes
    ----------
    url: str
        Where to download it from.
    filename: str
        Name of the local file under the data directory.
    sha256: str, optional
        Published SHA-256 checksum (hex).
    size: int, optional
        Expected size in bytes.
    validate: callable, optional
        Content check for files with no published checksum, used in addition to ``sha256`` and
        ``size``: called with a path, raises ``ValueError`` with a reason if the file is bad.
        During a download it is given the temporary ``.part`` file, so it must not infer the
        format from the file name (e.g. open gzip explicitly rather than by extension).
    max_size: int, optional
        Most bytes a download may bring when ``size`` is unknown (a server that sends more,
        or sends a body without a length forever, is cut off there); default
        :data:`DEFAULT_MAX_BYTES`.
    """

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    validate: Callable[[str], None] | None = None
    max_size: int | None = None

    @property
    def byte_limit(self) -> int:
        """The most bytes a download of this file may bring."""
        if self.size is not None:
            return self.size
        return self.max_size if self.max_size is not None else DEFAULT_MAX_BYTES


class _AttemptFailed(Exception):
    """One download attempt failed; ``permanent`` failures are not retried."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def check_file(path: str, remote: RemoteFile) -> str | None:
    """Check a local file against what ``remote`` says about its content.

    Parameters
    ----------
    path: str
        The local file.
    remote: RemoteFile
        Expected size, checksum and content check (each optional).

    Returns
    -------
    str or None
        ``None`` if the file exists and passes every check, otherwise the reason, e.g.
        ``'missing'`` or ``'size 12 bytes, expected 40'``.
    """
    if not os.path.isfile(path):
        return MISSING
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.sha256 is not None:
        actual = file_sha256(path)
        if actual != remote.sha256.lower():
            return f"sha256 mismatch: {actual}, expected {remote.sha256}"
    if remote.validate is not None:
        try:
            remote.validate(path)
        except ValueError as error:
            return str(error) or "rejected by its content check"
    return None


def fetch(
    remote: RemoteFile,
    data_dir: str,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    offline: bool | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> str:
    """Return the local path of ``remote``, downloading it into ``data_dir`` if needed.

    Parameters
    ----------
    remote: RemoteFile
        The file and its expected content.
    data_dir: str
        Directory of the local copy (created if missing).
    timeout: float, default 30.0
        Socket timeout in seconds, for connecting and for each read.
    retries: int, default 3
        Total number of attempts for transient failures (timeouts, truncated transfers,
        HTTP 5xx, connection resets, checksum mismatches). HTTP 4xx and unreachable hosts fail
        at once.
    backoff: float, default 1.0
        Sleep ``backoff * 2**attempt`` seconds between attempts.
    offline: bool, optional
        Never use the network. Default: whether ``DEEPCHEM_CGCNN_OFFLINE`` is ``1``, ``true``
        or ``yes``.
    deadline: float, default 1800
        Seconds the whole fetch may take, every attempt included: a server that trickles
        bytes slower than ``timeout`` can notice is still cut off. ``.part`` files older
        than this, left by killed downloads, are removed.

    Returns
    -------
    str
        ``data_dir/remote.filename``, a file that passed its checks.

    Raises
    ------
    DownloadError
        Offline without a valid local copy, or every attempt failed.
    """
    path = os.path.join(data_dir, remote.filename)
    problem = check_file(path, remote)
    if problem is None:
        return path
    if problem != MISSING:
        _set_aside(path, problem)
    if _is_offline(offline):
        raise DownloadError(
            remote.url,
            path,
            f"offline ({OFFLINE_VARIABLE} is set or offline=True); local file: {problem}",
        )
    os.makedirs(data_dir, exist_ok=True)
    _remove_stale_parts(data_dir, remote.filename, older_than=deadline)
    _download_with_retries(
        remote, path, timeout, max(1, retries), backoff, time.monotonic() + deadline
    )
    return path


def _remove_stale_parts(data_dir: str, filename: str, older_than: float) -> None:
    """Delete ``filename.*.part`` files that no live download can still be writing."""
    now = time.time()
    for name in os.listdir(data_dir):
        if name.startswith(filename + ".") and name.endswith(".part"):
            part = os.path.join(data_dir, name)
            try:
                if now - os.path.getmtime(part) > older_than:
                    os.remove(part)
                    logger.info("removed %s, left by an interrupted download", part)
            except FileNotFoundError:
                pass


def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in _TRUE_WORDS


def _set_aside(path: str, problem: str) -> None:
    corrupt = path + ".corrupt"
    logger.warning(
        "%s is invalid (%s); moving it to %s and downloading it again", path, problem, corrupt
    )
    os.replace(path, corrupt)


def _download_with_retries(
    remote: RemoteFile, path: str, timeout: float, attempts: int, backoff: float, deadline: float
) -> None:
    for attempt in range(attempts):
        try:
            _download_once(remote, path, timeout, deadline)
            return
        except _AttemptFailed as failure:
            if failure.permanent or attempt + 1 == attempts:
                tries = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
                raise DownloadError(
                    remote.url, path, f"{failure.reason} (after {tries})"
                ) from failure
            delay = min(backoff * 2**attempt, max(0.0, deadline - time.monotonic()))
            logger.warning(
                "download of %s failed (attempt %d of %d): %s; retrying in %.2f s",
                remote.url,
                attempt + 1,
                attempts,
                failure.reason,
                delay,
            )
            time.sleep(delay)


def _download_once(remote: RemoteFile, path: str, timeout: float, deadline: float) -> None:
    """Download into a ``.part`` file beside ``path``; move it onto ``path`` only if valid."""
    if time.monotonic() >= deadline:
        raise _AttemptFailed("the download deadline passed", permanent=True)
    descriptor, part = tempfile.mkstemp(
        dir=os.path.dirname(path) or ".", prefix=remote.filename + ".", suffix=".part"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            _transfer(remote.url, handle, timeout, remote.byte_limit, deadline)
        problem = check_file(part, remote)
        if problem is not None:
            raise _AttemptFailed(problem)
        os.chmod(part, replacement_mode(path))
        os.replace(part, path)
    except BaseException:
        _remove_if_present(part)
        raise


def _transfer(url: str, handle: BinaryIO, timeout: float, limit: int, deadline: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _copy_body(response, handle, limit, deadline)
    except _AttemptFailed:
        raise
    except (OSError, http.client.HTTPException) as error:
        raise _classify(error, timeout) from error


def _copy_body(
    response: http.client.HTTPResponse, handle: BinaryIO, limit: int, deadline: float
) -> None:
    announced = response.headers.get("Content-Length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise _AttemptFailed(
            f"the server announces {announced} bytes, more than the {limit} expected of this file",
            permanent=True,
        )
    received = 0
    while True:
        # read1 returns what has arrived, so a trickling server cannot hold one read forever
        block = response.read1(_CHUNK_BYTES)
        if not block:
            break
        received += len(block)
        if received > limit:
            raise _AttemptFailed(
                f"more than the {limit} bytes expected of this file", permanent=True
            )
        handle.write(block)
        if time.monotonic() > deadline:
            raise _AttemptFailed(
                f"not finished by the deadline ({received} bytes so far)", permanent=True
            )
    if announced is not None and announced.isdigit() and received < int(announced):
        raise _AttemptFailed(f"truncated: got {received} of {announced} bytes")


def _classify(error: BaseException, timeout: float) -> _AttemptFailed:
    """Turn an exception from urllib into a reason, and whether retrying can help."""
    if isinstance(error, urllib.error.HTTPError):
        error.close()
        return _AttemptFailed(
            f"HTTP {error.code} {error.reason}".strip(), permanent=400 <= error.code < 500
        )
    if isinstance(error, urllib.error.URLError):
        return _classify_url_error(error, timeout)
    if isinstance(error, TimeoutError):
        return _AttemptFailed(f"timed out after {timeout} s")
    if isinstance(error, http.client.IncompleteRead):
        return _AttemptFailed(
            f"truncated: got {len(error.partial)} bytes, {error.expected} more expected"
        )
    return _AttemptFailed(f"{type(error).__name__}: {error}")


def _classify_url_error(error: urllib.error.URLError, timeout: float) -> _AttemptFailed:
    reason = error.reason
    if isinstance(reason, TimeoutError):
        return _AttemptFailed(f"timed out after {timeout} s")
    if isinstance(reason, socket.gaierror):
        return _AttemptFailed(f"cannot resolve the host name ({reason}); offline?", permanent=True)
    if isinstance(reason, OSError) and reason.errno in _UNREACHABLE_ERRNOS:
        return _AttemptFailed(f"cannot connect ({reason.strerror}); offline?", permanent=True)
    if isinstance(reason, OSError):
        return _AttemptFailed(f"{type(reason).__name__}: {reason}")
    return _AttemptFailed(f"{reason}", permanent=True)  # e.g. 'unknown url type'


def _remove_if_present(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
