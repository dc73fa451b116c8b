"""Read a table of crystals (CSV/JSON, optionally gzipped) with a CIF column and labels."""
import hashlib
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd


@dataclass
class StructureTable:
    """Crystals (as CIF text) with ids and a label matrix.

    Attributes
    ----------
    ids: np.ndarray
        One id per crystal (e.g. MP material ids).
    structures: list of str
        The CIF text of each crystal.
    y: np.ndarray
        ``(n, n_tasks)`` float labels (NaN where missing).
    tasks: list of str
        Column names of ``y``.
    sha256: str
        Checksum of the source file, to key caches.
    """

    ids: np.ndarray
    structures: List[str]
    y: np.ndarray
    tasks: List[str]
    sha256: str


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_structure_table(path: str, tasks: Sequence[str], structure_column: str = "cif",
                         id_column: Optional[str] = None) -> StructureTable:
    """Read ``path`` (``.csv``, ``.json``, optionally ``.gz``) into a :class:`StructureTable`.

    Parameters
    ----------
    path: str
        The table; e.g. ``../shared/datasets/mp_cgcnn.csv.gz``.
    tasks: sequence of str
        Label columns.
    structure_column: str, default 'cif'
        Column holding the CIF text of each crystal.
    id_column: str, optional
        Column of ids; default the first column.
    """
    reader = pd.read_json if ".json" in path else pd.read_csv
    frame = reader(path)
    missing = [c for c in [structure_column, *tasks] if c not in frame.columns]
    if missing:
        raise KeyError(f"{path}: no column(s) {missing}; columns are {list(frame.columns)}")
    id_column = id_column or frame.columns[0]
    return StructureTable(ids=frame[id_column].to_numpy(),
                          structures=frame[structure_column].tolist(),
                          y=frame[list(tasks)].to_numpy(dtype=np.float64),
                          tasks=list(tasks),
                          sha256=file_sha256(path))
