"""Shared fixtures: the reference data in ../shared, skipped cleanly when absent."""

import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(
    os.environ.get("DEEPCHEM_CGCNN_SHARED", Path(__file__).resolve().parents[1].parent / "shared")
)
REFERENCE = SHARED / "cgcnn-reference"
PRETRAINED = SHARED / "cgcnn-pretrained"
MP_TABLE = SHARED / "datasets" / "mp_cgcnn.csv.gz"


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when a file from ../shared is missing."""
    if not path.exists():
        pytest.skip(f"{path} not present (the shared reference data is not on this machine)")
    return path


@pytest.fixture(scope="session")
def reference_cifs():
    folder = need(REFERENCE / "cifs")
    return sorted(folder.glob("*.cif"))


@pytest.fixture(scope="session")
def reference_features():
    return np.load(need(REFERENCE / "reference_features.npz"))


@pytest.fixture(scope="session")
def mp_rows():
    """The first 400 rows of the shared MP table."""
    import pandas as pd

    return pd.read_csv(need(MP_TABLE), nrows=400)


@pytest.fixture(scope="session")
def mp_graphs(mp_rows):
    from deepchem_cgcnn import CGCNNFeaturizer

    return CGCNNFeaturizer().featurize(list(mp_rows.cif))


@pytest.fixture(scope="session")
def castelli_table():
    """The 6,405 Castelli perovskites (cmr_id, cif, formula, heat_all, ...)."""
    import pandas as pd

    return pd.read_csv(need(SHARED / "datasets" / "castelli_perovskites.csv.gz"))


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
