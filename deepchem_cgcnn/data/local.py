"""Local sources: the original CGCNN data folder (``id_prop.csv`` + CIFs) and in-memory crystals."""

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepchem_cgcnn.data.table import StructureTable

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", "")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _labels(values: Sequence[str]) -> list[float]:
    return [float(v) if _is_number(v) else float("nan") for v in values]


def read_cif_directory(root: str, tasks: Sequence[str] | None = None) -> StructureTable:
    """Read the original CGCNN data folder: ``id_prop.csv`` plus one structure file per id.

    ``id_prop.csv`` has one row per crystal: its id, then its label(s), with no
    header (as the original code expects) or with one. Each id's structure is
    ``<id>.cif`` (or ``<id>.vasp``, ``<id>.poscar``, or a file named ``<id>``) in the
    same folder. Rows whose file is missing are reported in ``unread``, not dropped silently.

    Parameters
    ----------
    root: str
        The folder.
    tasks: sequence of str, optional
        Names for the label columns; default the header's names, else
        ``["target"]`` (``target_0``, ``target_1``, ... for several).

    Examples
    --------
    >>> import os, tempfile
    >>> from pymatgen.core import Lattice, Structure
    >>> root = tempfile.mkdtemp()
    >>> _ = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]]).to(filename=os.path.join(root, "po.cif"))
    >>> with open(os.path.join(root, "id_prop.csv"), "w") as f:
    ...     _ = f.write("po,0.5\\nmissing,1.0\\n")
    >>> table = read_cif_directory(root)
    >>> table.ids.tolist(), table.y.tolist(), table.unread
    (['po'], [[0.5]], [('missing', 'no structure file missing.cif in ...')])
    """
    id_prop = os.path.join(root, "id_prop.csv")
    if not os.path.isfile(id_prop):
        raise FileNotFoundError(
            f"{root}: no id_prop.csv (the original CGCNN layout is "
            f"id_prop.csv with 'id,label' rows plus <id>.cif files)"
        )
    with open(id_prop, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    header = rows[0] if rows and len(rows[0]) > 1 and not _is_number(rows[0][1]) else None
    if header:
        rows = rows[1:]
    n_labels = max((len(r) - 1 for r in rows), default=1)
    if tasks is None:
        tasks = (
            header[1:]
            if header
            else (["target"] if n_labels == 1 else [f"target_{i}" for i in range(n_labels)])
        )
    tasks = list(tasks)
    digest = hashlib.sha256()
    with open(id_prop, "rb") as handle:
        digest.update(handle.read())
    ids, paths, labels, unread = [], [], [], []
    for row in rows:
        crystal_id = row[0].strip()
        path = next(
            (
                os.path.join(root, crystal_id + s)
                for s in STRUCTURE_SUFFIXES
                if os.path.isfile(os.path.join(root, crystal_id + s))
            ),
            None,
        )
        if path is None:
            unread.append((crystal_id, f"no structure file {crystal_id}.cif in {root}"))
            continue
        with open(path, "rb") as handle:
            digest.update(path.encode() + b"\0" + handle.read())
        values = _labels(row[1 : 1 + len(tasks)])
        ids.append(crystal_id)
        paths.append(path)
        labels.append(values + [float("nan")] * (len(tasks) - len(values)))
    return StructureTable(
        ids=np.array(ids, dtype=object),
        structures=paths,
        y=np.array(labels, dtype=np.float64).reshape(len(ids), len(tasks)),
        tasks=tasks,
        sha256=digest.hexdigest(),
        source=root,
        unread=unread,
    )


def _fingerprint(structure: Any) -> bytes:
    if hasattr(structure, "as_dict"):
        structure = structure.as_dict()
    if isinstance(structure, dict):
        return json.dumps(structure, sort_keys=True, default=str).encode()
    return str(structure).encode()


def table_from_structures(
    structures: Sequence[Any],
    labels: Any,
    ids: Sequence[Any] | None = None,
    tasks: Sequence[str] | None = None,
) -> StructureTable:
    """An in-memory table: Structures (or dicts, CIF text, paths) with their labels.

    Parameters
    ----------
    structures: sequence
        The crystals.
    labels: array-like
        ``(n,)`` or ``(n, n_tasks)``.
    ids: sequence, optional
        Default ``"0"``, ``"1"``, ...
    tasks: sequence of str, optional
        Default ``["target"]`` or ``target_0``, ... for several.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> po = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    >>> table = table_from_structures([po, po], [0.1, 0.2], ids=["a", "b"])
    >>> table.tasks, table.y.shape, len(table.sha256)
    (['target'], (2, 1), 64)
    """
    structures = list(structures)
    y = np.asarray(labels, dtype=np.float64)
    y = y.reshape(len(structures), -1)
    if tasks is None:
        tasks = ["target"] if y.shape[1] == 1 else [f"target_{i}" for i in range(y.shape[1])]
    if len(tasks) != y.shape[1]:
        raise ValueError(f"{y.shape[1]} label columns but tasks {list(tasks)}")
    id_array = np.array(
        [str(i) for i in (ids if ids is not None else range(len(structures)))], dtype=object
    )
    if len(id_array) != len(structures):
        raise ValueError(f"{len(id_array)} ids for {len(structures)} structures")
    digest = hashlib.sha256(y.tobytes() + json.dumps(id_array.tolist()).encode())
    for structure in structures:
        digest.update(_fingerprint(structure))
    return StructureTable(
        ids=id_array,
        structures=structures,
        y=y,
        tasks=list(tasks),
        sha256=digest.hexdigest(),
        source="in-memory structures",
    )
