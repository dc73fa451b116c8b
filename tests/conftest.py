"""Shared fixtures: the reference data in ../shared, else the curated copies in tests/data.

Tests find reference files with :func:`need`: the file in ``../shared`` (or
``DEEPCHEM_CGCNN_SHARED``) when present, else its curated copy under ``tests/data`` (same
relative path), else the test is skipped with the reason -- or fails, in CI, where
``../shared`` is expected (``CI`` set and ``DEEPCHEM_CGCNN_SHARED`` not overridden).
"""

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(
    os.environ.get("DEEPCHEM_CGCNN_SHARED", Path(__file__).resolve().parents[1].parent / "shared")
)
FIXTURES = Path(__file__).resolve().parent / "data"
REFERENCE = SHARED / "cgcnn-reference"
PRETRAINED = SHARED / "cgcnn-pretrained"
MP_TABLE = SHARED / "datasets" / "mp_cgcnn.csv.gz"
CASTELLI_TABLE = SHARED / "datasets" / "castelli_perovskites.csv.gz"
MP_FIRST_400 = FIXTURES / "datasets" / "mp_cgcnn_first400.csv.gz"
CASTELLI_FIRST_1500 = FIXTURES / "datasets" / "castelli_perovskites_first1500.csv.gz"


def shared_expected() -> bool:
    """CI runs with ../shared beside the clone unless told otherwise: missing data is a failure."""
    return bool(os.environ.get("CI")) and "DEEPCHEM_CGCNN_SHARED" not in os.environ


def need(path: Path) -> Path:
    """``path`` in ../shared, else its curated copy in tests/data, else skip (fail in CI)."""
    if path.exists():
        return path
    try:
        fixture = FIXTURES / path.relative_to(SHARED)
    except ValueError:
        fixture = None
    if fixture is not None and fixture.exists():
        return fixture
    reason = f"{path} not present (the shared reference data is not on this machine)"
    if shared_expected():
        pytest.fail(reason + "; CI expects ../shared")
    pytest.skip(reason)


def _first_rows(full: Path, subset: Path, nrows: int):
    import pandas as pd

    if full.exists():
        return pd.read_csv(full, nrows=nrows)
    if shared_expected():
        pytest.fail(f"{full} not present; CI expects ../shared")
    return pd.read_csv(subset, nrows=nrows)


@pytest.fixture(scope="session")
def reference_cifs():
    folder = need(REFERENCE / "cifs")
    return sorted(folder.glob("*.cif"))


@pytest.fixture(scope="session")
def reference_features():
    return np.load(need(REFERENCE / "reference_features.npz"))


@pytest.fixture(scope="session")
def mp_rows():
    """The first 400 rows of the shared MP table (a curated copy ships in tests/data)."""
    return _first_rows(MP_TABLE, MP_FIRST_400, 400)


@pytest.fixture(scope="session")
def mp_graphs(mp_rows):
    from deepchem_cgcnn import CGCNNFeaturizer

    return CGCNNFeaturizer().featurize(list(mp_rows.cif))


@pytest.fixture(scope="session")
def castelli_table():
    """Castelli perovskites (cmr_id, cif, formula, heat_all, ...): all 6,405 from ../shared,
    else the first 1,500 (tests/data)."""
    return _first_rows(CASTELLI_TABLE, CASTELLI_FIRST_1500, None)


def parse_cifs(cifs):
    """pymatgen Structures of CIF strings, without pymatgen's rounding warnings."""
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(cif, fmt="cif") for cif in cifs]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def run_shell(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a documented shell block with ``bash -euo pipefail``, this Python's scripts
    (``deepchem-cgcnn``) first on the PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
