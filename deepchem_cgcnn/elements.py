"""The 92-dimensional CGCNN element embedding.

The table is the one published with the original CGCNN code
(``atom_init.json``); matminer ships an identical copy as
``matminer/utils/data_files/cgcnn_atom_feature.json``, which is read here, so
nothing is ever downloaded.
"""

import json
from functools import lru_cache
from importlib import resources

import numpy as np

EMBEDDING_DIM = 92
MAX_ATOMIC_NUMBER = 100


@lru_cache(maxsize=1)
def element_embedding_table() -> np.ndarray:
    """Return the CGCNN embedding as a ``(101, 92)`` float32 array indexed by Z.

    Row 0 is unused and filled with NaN, as is any element the table lacks;
    use :func:`has_embedding` to check an atomic number first.

    Examples
    --------
    >>> table = element_embedding_table()
    >>> table.shape
    (101, 92)
    >>> int(table[8].sum())  # oxygen's one-hot blocks
    9
    """
    path = resources.files("matminer.utils") / "data_files" / "cgcnn_atom_feature.json"
    with path.open("r") as handle:
        raw = json.load(handle)
    table = np.full((MAX_ATOMIC_NUMBER + 1, EMBEDDING_DIM), np.nan, dtype=np.float32)
    for key, vector in raw.items():
        table[int(key)] = vector
    table.setflags(write=False)
    return table


def has_embedding(atomic_numbers: np.ndarray) -> np.ndarray:
    """Boolean mask: which atomic numbers have a CGCNN embedding (1 <= Z <= 100)."""
    z = np.asarray(atomic_numbers)
    inside = (z >= 1) & (z <= MAX_ATOMIC_NUMBER)
    known = np.zeros(z.shape, dtype=bool)
    known[inside] = ~np.isnan(element_embedding_table()[z[inside], 0])
    return known
