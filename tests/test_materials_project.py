"""Materials Project queries and the CGCNN paper's id lists, against a real HTTP server on 127.0.0.1.

``FakeMaterialsProject`` answers the requests mp-api's ``MPRester`` makes (``GET /heartbeat``
twice at start-up, then ``GET /materials/summary/?material_ids=...&_fields=...&_limit=...``)
with JSON in the real API's shapes, so the real client code runs end to end; nothing here
reaches the internet.
"""

import gzip
import json
import logging
import math
import socket
import sys
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from loopback import LoopbackServer
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn.data.download import DownloadError
from deepchem_cgcnn.data.materials_project import (
    CGCNN_PAPER_ID_LISTS,
    MP_FIELDS,
    IdListCheck,
    MissingAPIKeyError,
    cgcnn_paper_ids,
    mp_fields,
    query_summary,
    task_values,
)

API_KEY = "abcdefghijklmnopqrstuvwxyz012345"  # real keys are 32 characters; mp-api checks
SUMMARY_PATH = "/materials/summary/"
NACL = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)
SI = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]])
CSCL = Structure.from_spacegroup(
    "Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)
DOCUMENTS = [  # served in this order, which is not the order the tests ask for
    {
        "material_id": "mp-149",
        "formula_pretty": "Si",
        "deprecated": False,
        "structure": SI.as_dict(),
        "formation_energy_per_atom": 0.0,
        "band_gap": 0.61,
        "efermi": 5.7,
        "is_metal": False,
        "bulk_modulus": {"voigt": 88.5, "reuss": 88.5, "vrh": 88.5},
        "shear_modulus": {"voigt": 64.3, "reuss": 61.2, "vrh": 62.75},
    },
    {
        "material_id": "mp-573697",
        "formula_pretty": "CsCl",
        "deprecated": False,
        "structure": CSCL.as_dict(),
        "formation_energy_per_atom": -2.2,
        "band_gap": 5.2,
        "efermi": 0.9,
        "is_metal": False,
        "bulk_modulus": None,
        "shear_modulus": None,
    },
    {
        "material_id": "mp-22862",
        "formula_pretty": "NaCl",
        "deprecated": False,
        "structure": NACL.as_dict(),
        "formation_energy_per_atom": -2.13,
        "band_gap": 5.0,
        "efermi": 1.1,
        "is_metal": False,
        "bulk_modulus": {"voigt": 25.1, "reuss": 25.1, "vrh": 25.1},
        "shear_modulus": {"voigt": 15.0, "reuss": 14.4, "vrh": 14.7},
    },
]


class FakeMaterialsProject:
    """The Materials Project API endpoints ``MPRester`` calls, in the real response shapes."""

    def __init__(self, documents: list[dict]):
        self.documents = documents
        self.api_keys_seen: list[str] = []

    def install(self, server: LoopbackServer) -> str:
        """Route the server's API paths here; return the endpoint to give ``MPRester``."""
        server.add_handler("/heartbeat", self.heartbeat)
        server.add_handler(SUMMARY_PATH, self.summary)
        return server.url("/")

    @staticmethod
    def heartbeat(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return _json_response(
            200,
            {
                "status": "OK",
                "time": _now(),
                "version": "0.87.3",
                "pymatgen": "2025.10.7",
                "db_version": "2025_09_25",
                "suffix": "blue",
                "access_controlled_batch_ids": [],
            },
        )

    def summary(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        api_key = {name.lower(): value for name, value in headers.items()}.get("x-api-key")
        self.api_keys_seen.append(api_key)
        if api_key != API_KEY:
            return _json_response(401, {"message": "Invalid authentication credentials"})
        query = {name: values[0] for name, values in parse_qs(urlsplit(path).query).items()}
        wanted = set(query["material_ids"].split(",")) if "material_ids" in query else None
        matching = [doc for doc in self.documents if wanted is None or doc["material_id"] in wanted]
        skip, limit = int(query.get("_skip", 0)), int(query.get("_limit", 1000))
        fields = query["_fields"].split(",")
        page = [
            {field: doc[field] for field in fields if field in doc}
            for doc in matching[skip : skip + limit]
        ]
        return _json_response(
            200,
            {
                "data": page,
                "errors": None,
                "meta": {
                    "api_version": "0.87.3",
                    "time_stamp": _now(),
                    "total_doc": len(matching),
                    "max_limit": 1000,
                },
            },
        )


def _json_response(status: int, body: dict) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def summary_requests(server: LoopbackServer) -> list[dict[str, str]]:
    """The query parameters of each summary request the server received."""
    return [
        {name: values[0] for name, values in parse_qs(urlsplit(path).query).items()}
        for path in server.requests
        if path.startswith(SUMMARY_PATH)
    ]


def refuse_connections(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def mp_api(monkeypatch):
    pytest.importorskip("mp_api")
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def materials_project(mp_api):
    """``(server, endpoint, fake)``: a running fake API on 127.0.0.1."""
    fake = FakeMaterialsProject(DOCUMENTS)
    with LoopbackServer() as server:
        yield server, fake.install(server), fake


# ---------------------------------------------------------------- query_summary
def test_query_returns_requested_ids_fields_and_structures(materials_project):
    server, endpoint, fake = materials_project
    fields = mp_fields(["formation_energy", "band_gap", "is_metal", "log10_k_vrh"])
    frame = query_summary(["mp-22862", "mp-149"], fields, endpoint=endpoint)

    assert list(frame.columns) == [
        "material_id",
        "structure",
        "formation_energy_per_atom",
        "band_gap",
        "is_metal",
        "bulk_modulus",
    ]
    assert list(frame.material_id) == ["mp-22862", "mp-149"]  # the order asked for
    assert Structure.from_dict(frame.structure[0]) == NACL
    assert Structure.from_dict(frame.structure[1]) == SI
    assert frame.structure[0] == json.loads(json.dumps(NACL.as_dict()))  # as served
    np.testing.assert_allclose(frame.band_gap, [5.0, 0.61])
    np.testing.assert_allclose(task_values(frame, "formation_energy"), [-2.13, 0.0])
    np.testing.assert_allclose(
        task_values(frame, "log10_k_vrh"), [math.log10(25.1), math.log10(88.5)]
    )
    np.testing.assert_array_equal(task_values(frame, "is_metal"), [0.0, 0.0])
    assert frame.attrs["missing_ids"] == []
    assert "/heartbeat" in server.requests
    (request,) = summary_requests(server)
    assert request["material_ids"].split(",") == ["mp-22862", "mp-149"]
    assert request["_fields"].split(",") == ["material_id", "structure", *fields]
    assert fake.api_keys_seen == [API_KEY]


def test_ids_the_api_does_not_return_are_reported(materials_project, caplog):
    _, endpoint, _ = materials_project
    with caplog.at_level(logging.WARNING, logger="deepchem_cgcnn.data.materials_project"):
        frame = query_summary(
            ["mp-149", "mp-999999999", "mp-22862"], ["band_gap"], endpoint=endpoint
        )
    assert list(frame.material_id) == ["mp-149", "mp-22862"]
    assert frame.attrs["missing_ids"] == ["mp-999999999"]
    assert "1 of 3 requested material ids" in caplog.text


def test_ids_are_requested_in_chunks(materials_project):
    server, endpoint, _ = materials_project
    frame = query_summary(
        ["mp-149", "mp-22862", "mp-573697"], ["efermi"], endpoint=endpoint, chunk_size=2
    )
    assert [r["material_ids"] for r in summary_requests(server)] == ["mp-149,mp-22862", "mp-573697"]
    assert list(frame.material_id) == ["mp-149", "mp-22862", "mp-573697"]
    assert Structure.from_dict(frame.structure[2]) == CSCL


def test_a_cached_query_needs_no_network_and_no_key(materials_project, tmp_path, monkeypatch):
    server, endpoint, _ = materials_project
    cache = str(tmp_path / "summary.json.gz")
    first = query_summary(
        ["mp-149", "mp-22862", "mp-404"], ["band_gap"], endpoint=endpoint, cache_path=cache
    )
    requests_so_far = list(server.requests)
    monkeypatch.delenv("MP_API_KEY")
    refuse_connections(monkeypatch)

    again = query_summary(
        ["mp-149", "mp-22862", "mp-404"], ["band_gap"], endpoint=endpoint, cache_path=cache
    )
    reordered = query_summary(["mp-404", "mp-22862", "mp-149"], ["band_gap"], cache_path=cache)

    assert server.requests == requests_so_far
    pd.testing.assert_frame_equal(again, first)
    assert again.attrs["missing_ids"] == ["mp-404"]
    assert list(reordered.material_id) == ["mp-22862", "mp-149"]
    assert Structure.from_dict(again.structure[1]) == NACL


def test_a_cache_of_other_fields_or_ids_is_queried_again(materials_project, tmp_path):
    server, endpoint, _ = materials_project
    cache = str(tmp_path / "summary.json.gz")
    query_summary(["mp-149"], ["band_gap"], endpoint=endpoint, cache_path=cache)
    other_fields = query_summary(
        ["mp-149"], ["band_gap", "efermi"], endpoint=endpoint, cache_path=cache
    )
    other_ids = query_summary(
        ["mp-149", "mp-22862"], ["band_gap", "efermi"], endpoint=endpoint, cache_path=cache
    )
    same_again = query_summary(
        ["mp-22862", "mp-149"], ["band_gap", "efermi"], endpoint=endpoint, cache_path=cache
    )

    assert [r["_fields"] for r in summary_requests(server)] == [
        "material_id,structure,band_gap",
        "material_id,structure,band_gap,efermi",
        "material_id,structure,band_gap,efermi",
    ]
    assert other_fields.efermi.tolist() == [5.7]
    assert other_ids.material_id.tolist() == ["mp-149", "mp-22862"]
    assert same_again.efermi.tolist() == [1.1, 5.7]


@pytest.mark.parametrize(
    "content",
    [
        b"this is not gzip",
        gzip.compress(b'{"format": 1, "key": '),
        gzip.compress(json.dumps({"format": 1}).encode())[:-6],
        gzip.compress(b'{"format": 1, "key": null, "records": 7}'),
    ],
    ids=["not-gzip", "bad-json", "truncated-gzip", "not-records"],
)
def test_a_corrupt_cache_is_ignored_and_replaced(materials_project, tmp_path, caplog, content):
    server, endpoint, _ = materials_project
    cache = tmp_path / "summary.json.gz"
    cache.write_bytes(content)
    frame = query_summary(["mp-149"], ["band_gap"], endpoint=endpoint, cache_path=str(cache))
    assert frame.band_gap.tolist() == [0.61]
    assert len(summary_requests(server)) == 1
    assert "ignoring unreadable cache" in caplog.text
    query_summary(["mp-149"], ["band_gap"], endpoint=endpoint, cache_path=str(cache))
    assert len(summary_requests(server)) == 1  # the rewritten cache is valid


def test_the_cache_is_gzip_json_written_atomically(materials_project, tmp_path):
    _, endpoint, _ = materials_project
    cache = tmp_path / "summary.json.gz"
    query_summary(["mp-149"], ["band_gap"], endpoint=endpoint, cache_path=str(cache))
    payload = json.loads(gzip.decompress(cache.read_bytes()))
    assert payload["records"][0]["material_id"] == "mp-149"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json.gz"]  # no temporary left


def test_no_key_and_no_cache_raises_a_helpful_error(materials_project, tmp_path, monkeypatch):
    server, endpoint, _ = materials_project
    monkeypatch.delenv("MP_API_KEY")
    cache = str(tmp_path / "summary.json.gz")
    with pytest.raises(MissingAPIKeyError) as caught:
        query_summary(["mp-149"], ["band_gap"], endpoint=endpoint, cache_path=cache)
    message = str(caught.value)
    for hint in ("api_key=", "MP_API_KEY", "https://next-gen.materialsproject.org/api", cache):
        assert hint in message
    with pytest.raises(MissingAPIKeyError, match="MP_API_KEY") as caught:
        query_summary(["mp-149"], ["band_gap"], endpoint=endpoint)
    assert "cache" not in str(caught.value)
    assert server.requests == []


def test_all_materials_need_explicit_fields():
    with pytest.raises(ValueError, match="fields"):
        query_summary(None, [])


def test_without_mp_api_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mp_api.client", None)
    with pytest.raises(ImportError, match=r'pip install "deepchem-cgcnn\[mp\]"'):
        query_summary(["mp-149"], ["band_gap"], api_key=API_KEY)


def test_task_values_and_fields():
    frame = pd.DataFrame(
        {
            "shear_modulus": [
                {"voigt": 11.0, "reuss": 9.0, "vrh": 10.0},
                {"voigt": 0.0, "reuss": 0.0, "vrh": 0.0},
                None,
            ],
            "is_metal": [True, False, None],
        }
    )
    np.testing.assert_allclose(task_values(frame, "log10_g_vrh"), [1.0, np.nan, np.nan])
    np.testing.assert_allclose(task_values(frame, "g_vrh"), [10.0, 0.0, np.nan])
    np.testing.assert_allclose(task_values(frame, "is_metal"), [1.0, 0.0, np.nan])
    assert mp_fields(["log10_k_vrh", "k_vrh", "fermi_energy"]) == ["bulk_modulus", "efermi"]
    assert set(MP_FIELDS) >= {
        "formation_energy",
        "band_gap",
        "fermi_energy",
        "is_metal",
        "log10_k_vrh",
        "log10_g_vrh",
    }
    with pytest.raises(KeyError, match="known tasks"):
        mp_fields(["melting_point"])


# ---------------------------------------------------------------- the CGCNN paper's id lists
def id_list(n: int) -> bytes:
    return "\n".join(f"mp-{i}" for i in range(1, n + 1)).encode() + b"\n"


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("DEEPCHEM_CGCNN_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.mark.parametrize("n", sorted(CGCNN_PAPER_ID_LISTS))
def test_paper_ids_download_from_a_mirror_and_then_stay_local(online, tmp_path, monkeypatch, n):
    with LoopbackServer() as server:
        url = server.add(f"/mp-ids-{n}.csv", id_list(n), content_type="text/csv")
        ids = cgcnn_paper_ids(n, str(tmp_path), url=url, retries=1, backoff=0.0)
        refuse_connections(monkeypatch)
        again = cgcnn_paper_ids(n, str(tmp_path), url=url)
    assert len(ids) == n and ids[0] == "mp-1" and ids[-1] == f"mp-{n}"
    assert again == ids
    assert server.requests == [f"/mp-ids-{n}.csv"]


@pytest.mark.parametrize(
    "body, reason",
    [
        (id_list(46744 - 1), "holds 46743 ids, expected 46744"),
        (id_list(46744)[:200_000], r"holds \d+ ids, expected 46744"),
        (id_list(46744).replace(b"\nmp-77\n", b"\nmp-x\n"), "id 77 is 'mp-x'"),
    ],
    ids=["one-line-short", "cut-mid-file", "bad-id"],
)
def test_a_damaged_paper_id_list_is_rejected(online, tmp_path, body, reason):
    with LoopbackServer() as server:
        url = server.add("/mp-ids-46744.csv", body, content_type="text/csv")
        with pytest.raises(DownloadError, match=reason):
            cgcnn_paper_ids(46744, str(tmp_path), url=url, retries=1, backoff=0.0)
    assert list(tmp_path.iterdir()) == []


def test_paper_id_lists_are_pinned_and_checked_by_size():
    for n, remote in CGCNN_PAPER_ID_LISTS.items():
        assert remote.url.startswith("https://raw.githubusercontent.com/txie-93/cgcnn/")
        assert remote.url.endswith(f"/mp-ids-{n}.csv")
        assert remote.validate == IdListCheck(n)
    with pytest.raises(ValueError, match="46744, 27430, 3402"):
        cgcnn_paper_ids(1000)


def test_id_list_check_accepts_windows_line_ends_and_blank_lines(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_bytes(b"mp-1\r\nmp-22\r\n\r\nmp-333\r\n\r\n")
    IdListCheck(3)(str(path))
    with pytest.raises(ValueError, match="holds 3 ids, expected 4"):
        IdListCheck(4)(str(path))


# ---------------------------------------------------------------- through the loader
def test_fermi_energy_loader_reads_the_api_then_reloads_offline(
    materials_project, tmp_path, monkeypatch
):
    from deepchem_cgcnn import load_mp_fermi_energy

    server, endpoint, _ = materials_project
    dirs = {"data_dir": str(tmp_path / "raw"), "save_dir": str(tmp_path / "cache")}
    ids = ["mp-149", "mp-22862", "mp-573697", "mp-404"]
    result = load_mp_fermi_energy(
        splitter=None, transformers=[], material_ids=ids, endpoint=endpoint, **dirs
    )
    tasks, (everything,), _ = result
    assert tasks == ["fermi_energy"]
    fermi = dict(zip(everything.ids, everything.y[:, 0]))
    assert fermi == {"mp-149": 5.7, "mp-22862": 1.1, "mp-573697": 0.9}
    assert result.summary.dropped_ids() == ["mp-404"]  # asked for, not returned: reported

    requests_so_far = list(server.requests)
    monkeypatch.delenv("MP_API_KEY")
    refuse_connections(monkeypatch)
    again = load_mp_fermi_energy(splitter=None, transformers=[], material_ids=ids, **dirs)
    assert server.requests == requests_so_far
    assert again.summary.from_cache and sorted(again[1][0].ids) == sorted(fermi)


def test_bulk_modulus_from_the_api_is_log10_vrh(materials_project, tmp_path):
    from deepchem_cgcnn import load_mp_bulk_modulus

    _, endpoint, _ = materials_project
    result = load_mp_bulk_modulus(
        source="mp_api",
        splitter=None,
        transformers=[],
        material_ids=["mp-149", "mp-22862", "mp-573697"],
        endpoint=endpoint,
        data_dir=str(tmp_path),
        save_dir=str(tmp_path),
    )
    (everything,) = result[1]
    values = dict(zip(everything.ids, everything.y[:, 0]))
    assert values == pytest.approx({"mp-149": np.log10(88.5), "mp-22862": np.log10(25.1)})
    assert result.summary.dropped_ids("missing label") == ["mp-573697"]  # no elastic data
