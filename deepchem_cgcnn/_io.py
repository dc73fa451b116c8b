"""Atomic writes, file checksums and locks: the one place the package writes files safely.

Everything that must survive a crash (training state, caches, exported models) is written
through :func:`atomic_write`: a temporary file in the same folder, flushed and fsynced, then
renamed over the target, so a reader sees either the old file or the new one, never half of
one. :func:`write_manifest` / :func:`verify_manifest` record and check the SHA-256 of every
file in a folder; :func:`file_lock` serializes builders of one cache entry across processes.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "a.json")
>>> atomic_write_json(path, {"epoch": 3})
>>> read_json(path)
{'epoch': 3}
>>> write_manifest(folder)
>>> verify_manifest(folder) is None
True
>>> with open(path, "a") as handle:
...     _ = handle.write(" ")
>>> verify_manifest(folder)
'a.json: checksum mismatch'
"""

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

MANIFEST = "checksums.json"
_CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike, chunk: int = _CHUNK_BYTES) -> str:
    """SHA-256 (hex) of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore it, one thread at a time
        current = os.umask(0o077)  # a file made meanwhile elsewhere gets the safe side
        os.umask(current)
    return current


_UMASK_LOCK = threading.Lock()


def replacement_mode(path: str | os.PathLike) -> int:
    """The mode a file written to replace ``path`` should get: the replaced file's, else the
    one ``open`` would give a new file (``0o666`` less the umask), never ``mkstemp``'s
    private ``0o600``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def atomic_write(
    path: str | os.PathLike, write: Callable[[Any], None], binary: bool = True
) -> None:
    """Write ``path`` all or nothing: ``write(handle)`` fills a temporary file that replaces it.

    The temporary file lives in the target's folder (so the rename is atomic), is fsynced
    before the rename, and is removed if ``write`` raises. The file gets the mode of the file
    it replaces, else the one ``open`` would give it (``0o666`` less the umask), not the
    temporary file's private ``0o600``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = replacement_mode(path)
    descriptor, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def atomic_write_json(path: str | os.PathLike, data: Any, **dump_kwargs) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    atomic_write(path, lambda handle: json.dump(data, handle, **dump_kwargs), binary=False)


def atomic_torch_save(path: str | os.PathLike, data: Any) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    atomic_write(path, lambda handle: torch.save(data, handle))


def as_json_data(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists, other objects strings), so
    what was stored and what is about to be stored compare equal.

    >>> as_json_data({"shape": (2, 3), "path": None})
    {'shape': [2, 3], 'path': None}
    """
    return json.loads(json.dumps(data, default=str))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the ``.*.tmp`` files an interrupted :func:`atomic_write` left in ``folder``."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


def folder_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (paths relative to it), the manifest excluded."""
    folder = os.fspath(folder)
    sums = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative != MANIFEST:
                sums[relative] = file_sha256(path)
    return dict(sorted(sums.items()))


def write_manifest(folder: str | os.PathLike) -> None:
    """Record the checksum of every file under ``folder`` in ``folder/checksums.json``."""
    atomic_write_json(os.path.join(folder, MANIFEST), folder_checksums(folder), indent=0)


def verify_manifest(folder: str | os.PathLike) -> str | None:
    """``None`` when every file under ``folder`` matches its manifest, else what is wrong."""
    manifest = os.path.join(folder, MANIFEST)
    if not os.path.isfile(manifest):
        return f"no {MANIFEST} (written by an older version, or the build was interrupted)"
    try:
        expected = read_json(manifest)
    except (OSError, ValueError) as error:
        return f"{MANIFEST} unreadable ({error})"
    actual = folder_checksums(folder)
    for name, checksum in expected.items():
        if name not in actual:
            return f"{name}: missing"
        if actual[name] != checksum:
            return f"{name}: checksum mismatch"
    extra = sorted(set(actual) - set(expected))
    if extra:
        return f"{extra[0]}: not in the manifest"
    return None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block.

    Processes building the same cache entry take turns; the lock is released when the
    block ends or the process dies.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
