"""fetch() against a real HTTP server on 127.0.0.1: caching, retries, faults and offline mode."""

import gzip
import hashlib
import json
import logging
import os
import socket
import time
import urllib.request

import pytest
from loopback import LoopbackServer

from deepchem_cgcnn.data import download
from deepchem_cgcnn.data.download import DownloadError, RemoteFile, check_file, fetch

ROWS = [{"material_id": f"mp-{i}", "formation_energy_per_atom": -0.1 * i} for i in range(5)]
FAST = {"timeout": 5.0, "backoff": 0.01}


def gzipped_json_lines(rows) -> bytes:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    return gzip.compress(text.encode(), mtime=0)


def read_json_lines(path) -> list:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BODY = gzipped_json_lines(ROWS)


def remote_for(url: str, body: bytes = BODY, **kwargs) -> RemoteFile:
    return RemoteFile(url=url, filename="table.jsonl.gz", sha256=sha256(body), **kwargs)


def leftover_parts(folder) -> list:
    return sorted(p.name for p in folder.glob("*.part"))


@pytest.fixture(autouse=True)
def direct_connections_only(monkeypatch):
    """Requests go straight to 127.0.0.1 (never through a proxy) and offline mode is off."""
    for variable in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        download.OFFLINE_VARIABLE,
    ]:
        monkeypatch.delenv(variable, raising=False)


def test_download_matches_served_bytes_and_leaves_no_part_files(tmp_path):
    with LoopbackServer() as server:
        path = fetch(remote_for(server.add("/table.jsonl.gz", BODY)), str(tmp_path), **FAST)
    assert path == str(tmp_path / "table.jsonl.gz")
    assert (tmp_path / "table.jsonl.gz").read_bytes() == BODY
    assert read_json_lines(path) == ROWS
    assert leftover_parts(tmp_path) == []


def test_a_downloaded_file_gets_the_mode_open_would_give(tmp_path):
    """Not the .part file's private 0600, nor a fixed 0644 that ignores the user's umask."""
    old = os.umask(0o027)
    try:
        with LoopbackServer() as server:
            path = fetch(remote_for(server.add("/table.jsonl.gz", BODY)), str(tmp_path), **FAST)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_second_fetch_uses_the_cached_file_without_a_request(tmp_path):
    with LoopbackServer() as server:
        remote = remote_for(server.add("/table.jsonl.gz", BODY))
        first = fetch(remote, str(tmp_path), **FAST)
        requests_after_first = list(server.requests)
        second = fetch(remote, str(tmp_path), **FAST)
        assert server.requests == requests_after_first == ["/table.jsonl.gz"]
    assert second == first


def test_creates_a_missing_data_dir(tmp_path):
    data_dir = tmp_path / "not" / "yet"
    with LoopbackServer() as server:
        path = fetch(remote_for(server.add("/t.gz", BODY)), str(data_dir), **FAST)
    assert read_json_lines(path) == ROWS


def test_http_404_fails_at_once_naming_url_and_local_path(tmp_path):
    with LoopbackServer() as server:
        remote = remote_for(server.url("/absent.gz"))
        start = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            fetch(remote, str(tmp_path), retries=3, backoff=5.0, timeout=5.0)
        assert time.monotonic() - start < 2.0
        assert server.requests == ["/absent.gz"]
    message = str(caught.value)
    assert "HTTP 404" in message
    assert remote.url in message and str(tmp_path / "table.jsonl.gz") in message
    assert "yourself and save it as" in message


def test_truncated_transfer_is_retried_then_fails_without_keeping_a_file(tmp_path):
    with LoopbackServer() as server:
        url = server.add("/table.jsonl.gz", BODY, truncate_to=10)
        with pytest.raises(DownloadError, match=f"truncated: got 10 of {len(BODY)} bytes"):
            fetch(remote_for(url), str(tmp_path), retries=3, **FAST)
        assert len(server.requests) == 3
    assert not (tmp_path / "table.jsonl.gz").exists()
    assert leftover_parts(tmp_path) == []


def test_wrong_checksum_is_rejected_and_nothing_kept(tmp_path):
    other_body = gzipped_json_lines(ROWS[:2])
    with LoopbackServer() as server:
        url = server.add("/table.jsonl.gz", other_body)
        with pytest.raises(DownloadError, match="sha256"):
            fetch(remote_for(url, BODY), str(tmp_path), retries=2, **FAST)
        assert len(server.requests) == 2
    assert not (tmp_path / "table.jsonl.gz").exists()
    assert leftover_parts(tmp_path) == []


def test_stalled_server_times_out_quickly_and_does_not_block_teardown(tmp_path):
    start = time.monotonic()
    with LoopbackServer() as server:
        url = server.add("/table.jsonl.gz", BODY, stall_seconds=3.0)
        with pytest.raises(DownloadError, match=r"timed out after 0\.5 s"):
            fetch(remote_for(url), str(tmp_path), timeout=0.5, retries=1)
    assert time.monotonic() - start < 2.5  # less than the 3 s stall, teardown included
    assert leftover_parts(tmp_path) == []


def test_transient_503_is_retried_and_then_succeeds(tmp_path):
    with LoopbackServer() as server:
        url = server.add("/table.jsonl.gz", BODY, fail_first=1)
        path = fetch(remote_for(url), str(tmp_path), retries=3, **FAST)
        assert len(server.requests) == 2
    assert read_json_lines(path) == ROWS


def test_corrupt_cached_file_is_set_aside_and_replaced(tmp_path, caplog):
    cached = tmp_path / "table.jsonl.gz"
    cached.write_bytes(gzipped_json_lines(ROWS[:1]))
    (tmp_path / "table.jsonl.gz.corrupt").write_bytes(b"an older corrupt copy")
    with LoopbackServer() as server:
        remote = remote_for(server.add("/table.jsonl.gz", BODY))
        with caplog.at_level(logging.WARNING, logger=download.__name__):
            path = fetch(remote, str(tmp_path), **FAST)
        assert len(server.requests) == 1
    assert cached.read_bytes() == BODY and path == str(cached)
    assert (tmp_path / "table.jsonl.gz.corrupt").read_bytes() == gzipped_json_lines(ROWS[:1])
    assert "table.jsonl.gz" in caplog.text and "sha256 mismatch" in caplog.text


@pytest.fixture(params=["argument", "environment"])
def offline_kwargs(request, monkeypatch):
    if request.param == "environment":
        monkeypatch.setenv(download.OFFLINE_VARIABLE, "1")
        return {}
    return {"offline": True}


def test_offline_without_a_local_file_fails_without_a_request(tmp_path, offline_kwargs):
    with LoopbackServer() as server:
        remote = remote_for(server.add("/table.jsonl.gz", BODY))
        with pytest.raises(DownloadError, match="offline") as caught:
            fetch(remote, str(tmp_path), **offline_kwargs)
        assert server.requests == []
    assert "yourself and save it as" in str(caught.value)


def test_offline_with_a_good_local_file_returns_it(tmp_path, offline_kwargs, no_network):
    (tmp_path / "table.jsonl.gz").write_bytes(BODY)
    path = fetch(remote_for("http://127.0.0.1:9/table.jsonl.gz"), str(tmp_path), **offline_kwargs)
    assert path == str(tmp_path / "table.jsonl.gz")


def test_offline_variable_set_to_false_still_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv(download.OFFLINE_VARIABLE, "0")
    with LoopbackServer() as server:
        path = fetch(remote_for(server.add("/table.jsonl.gz", BODY)), str(tmp_path), **FAST)
    assert read_json_lines(path) == ROWS


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_fails_after_one_attempt(tmp_path, monkeypatch):
    opened = []
    real_urlopen = urllib.request.urlopen

    def counting_urlopen(*args, **kwargs):
        opened.append(args[0])
        return real_urlopen(*args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting_urlopen)
    url = f"http://127.0.0.1:{unused_port()}/table.jsonl.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot connect") as caught:
        fetch(remote_for(url), str(tmp_path), retries=3, backoff=5.0, timeout=5.0)
    assert time.monotonic() - start < 2.0
    assert len(opened) == 1
    assert url in str(caught.value)
    assert leftover_parts(tmp_path) == []


def expect_rows(count: int):
    def validate(path: str) -> None:
        found = len(read_json_lines(path))
        if found != count:
            raise ValueError(f"expected {count} rows, found {found}")

    return validate


def test_validate_rejecting_the_content_fails_with_its_reason(tmp_path):
    with LoopbackServer() as server:
        url = server.add("/table.jsonl.gz", BODY)
        remote = RemoteFile(url, "table.jsonl.gz", validate=expect_rows(7))
        with pytest.raises(DownloadError, match="expected 7 rows, found 5"):
            fetch(remote, str(tmp_path), retries=1, **FAST)
    assert not (tmp_path / "table.jsonl.gz").exists()
    assert leftover_parts(tmp_path) == []


def test_validate_accepting_the_content_keeps_the_file(tmp_path):
    with LoopbackServer() as server:
        url = server.add("/table.jsonl.gz", BODY)
        path = fetch(
            RemoteFile(url, "table.jsonl.gz", validate=expect_rows(5)), str(tmp_path), **FAST
        )
    assert read_json_lines(path) == ROWS


def test_check_file_reasons(tmp_path):
    path = tmp_path / "table.jsonl.gz"
    assert check_file(str(path), RemoteFile("u", path.name)) == "missing"
    path.write_bytes(BODY)
    assert check_file(str(path), RemoteFile("u", path.name, size=len(BODY) + 1)) == (
        f"size {len(BODY)} bytes, expected {len(BODY) + 1}"
    )
    assert check_file(str(path), RemoteFile("u", path.name, sha256="0" * 64)).startswith(
        f"sha256 mismatch: {sha256(BODY)}, expected 000"
    )
    assert check_file(str(path), remote_for("u", size=len(BODY))) is None


# ---------------------------------------------------------------- bounds
def test_a_body_without_length_is_cut_off_at_the_files_cap(tmp_path):
    endless = b"x" * (3 << 20)
    with LoopbackServer() as server:
        url = server.add("/big.bin", endless, no_length=True)
        remote = RemoteFile(url=url, filename="big.bin", max_size=1 << 20)
        with pytest.raises(DownloadError, match=r"more than the 1048576 bytes expected") as error:
            fetch(remote, str(tmp_path), **FAST)
    assert "after 1 attempt" in str(error.value)  # not retried
    assert not (tmp_path / "big.bin").exists() and leftover_parts(tmp_path) == []


def test_an_announced_oversize_body_is_refused_before_reading(tmp_path):
    with LoopbackServer() as server:
        url = server.add("/big.bin", b"y" * 5000)
        with pytest.raises(DownloadError, match="announces 5000 bytes, more than the 100"):
            fetch(RemoteFile(url=url, filename="big.bin", max_size=100), str(tmp_path), **FAST)


def test_a_trickling_server_is_cut_off_by_the_overall_deadline(tmp_path):
    with LoopbackServer() as server:
        url = server.add("/slow.bin", b"z" * 100, drip_seconds=0.2)  # under the read timeout
        started = time.monotonic()
        with pytest.raises(DownloadError, match="not finished by the deadline"):
            fetch(
                RemoteFile(url=url, filename="slow.bin"),
                str(tmp_path),
                timeout=5.0,
                backoff=0.01,
                deadline=1.5,
            )
        assert time.monotonic() - started < 5
    assert leftover_parts(tmp_path) == []


def test_parts_left_by_a_killed_download_are_removed(tmp_path):
    import os

    stale = tmp_path / "table.jsonl.gz.abc123.part"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "table.jsonl.gz.def456.part"  # a download still in progress
    fresh.write_bytes(b"half")
    with LoopbackServer() as server:
        fetch(remote_for(server.add("/t", BODY)), str(tmp_path), deadline=3600, **FAST)
    assert leftover_parts(tmp_path) == [fresh.name]
