"""The on-disk cache format: plain numeric arrays and JSON, never pickle.

A cached dataset is a folder of ``.npy`` files read with ``allow_pickle=False`` plus
``dataset.json``; a file planted in a cache can at worst hold wrong numbers (which the
checksum manifest then catches), never run code. Crystal graphs are stored as the compact
concatenated layout a fast training path wants: every atom's atomic number, every
neighbour slot's index and distance, and per-crystal atom and slot counts; the featurizer
settings and geometry facts ride along. Transformers are stored as JSON of their numeric
state, for DeepChem's own transformer classes only.

>>> import os, tempfile
>>> import numpy as np
>>> from deepchem_cgcnn._quiet import import_deepchem
>>> from deepchem_cgcnn.graph import CrystalGraph
>>> dc = import_deepchem()
>>> g = CrystalGraph(np.array([11, 17]), np.array([[1], [0]]), np.array([[2.8], [2.8]]), 8.0, 0.2)
>>> folder = tempfile.mkdtemp()
>>> save_dataset(folder, dc.data.NumpyDataset(np.array([g, g], dtype=object), np.ones(2), ids=["a", "b"]))
>>> loaded = load_dataset(folder)
>>> loaded.ids.tolist(), loaded.X[1].neighbor_distance.tolist()
(['a', 'b'], [[2.8], [2.8]])
"""

import os
import stat
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepchem_cgcnn._io import atomic_write_json, read_json
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.graph import CrystalGraph

dc = import_deepchem()

FORMAT = 1
APP_NAME = "deepchem-cgcnn"


class UnsafeCacheFolderError(PermissionError):
    """A cache folder that another user could write to, or that another user owns."""


def default_cache_dir() -> str:
    """``DEEPCHEM_DATA_DIR`` if set, else this user's own cache folder.

    DeepChem falls back to the system temp folder, where any local user can plant files;
    here the default is ``platformdirs.user_cache_dir("deepchem-cgcnn")`` (for example
    ``~/.cache/deepchem-cgcnn``).
    """
    folder = os.environ.get("DEEPCHEM_DATA_DIR")
    if folder:
        return folder
    import platformdirs

    return platformdirs.user_cache_dir(APP_NAME)


def private_folder(path: str) -> str:
    """Create ``path`` (mode 0700) or check that only this user can write to it; return it.

    Raises :class:`UnsafeCacheFolderError` for a folder owned by another user or writable by
    its group or by everyone (such as ``/tmp``), naming it and the way out.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UnsafeCacheFolderError(
            f"cache folder {path} belongs to another user (uid {info.st_uid}); another user "
            f"could plant data there. Set DEEPCHEM_DATA_DIR or pass data_dir/save_dir to a "
            f"folder of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheFolderError(
            f"cache folder {path} is writable by others (mode {stat.filemode(info.st_mode)}); "
            f"another user could plant data there. Set DEEPCHEM_DATA_DIR or pass "
            f"data_dir/save_dir to a folder only you can write to"
        )
    return path


# ---------------------------------------------------------------- datasets
def _save(folder: str, name: str, array: np.ndarray) -> None:
    np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(array), allow_pickle=False)


def _load(folder: str, name: str) -> np.ndarray:
    return np.load(os.path.join(folder, name + ".npy"), allow_pickle=False)


def can_store(dataset: Any) -> bool:
    """Whether :func:`save_dataset` can write this dataset's X without pickling."""
    X = np.asarray(dataset.X)
    if X.dtype != object:
        return True
    return all(isinstance(g, CrystalGraph) for g in X.ravel())


def save_dataset(folder: str, dataset: Any) -> None:
    """Write a dataset of crystal graphs (or numeric features) as arrays + JSON into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    X = np.asarray(dataset.X)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "n": len(dataset),
        "tasks": [str(t) for t in np.asarray(dataset.get_task_names())],
        "ids": [str(i) for i in dataset.ids],
    }
    _save(folder, "y", np.asarray(dataset.y, dtype=np.float64))
    _save(folder, "w", np.asarray(dataset.w, dtype=np.float64))
    if X.dtype != object:
        meta["X"] = "array"
        _save(folder, "X", X)
    else:
        meta["X"] = "crystal_graphs"
        meta.update(_save_graphs(folder, list(X)))
    atomic_write_json(os.path.join(folder, "dataset.json"), meta)


def _save_graphs(folder: str, graphs: Sequence[CrystalGraph]) -> dict[str, Any]:
    if not all(isinstance(g, CrystalGraph) for g in graphs):
        raise TypeError("only CrystalGraph objects or numeric arrays are cached")
    settings = [g.settings for g in graphs]
    if any(s != settings[0] for s in settings):
        raise ValueError("graphs made with different featurizer settings cannot share a cache")
    n_atoms = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    n_slots = np.array([g.neighbor_index.shape[1] for g in graphs], dtype=np.int64)
    _save(folder, "n_atoms", n_atoms)
    _save(folder, "n_slots", n_slots)
    _save(
        folder,
        "atomic_numbers",
        np.concatenate([g.atomic_numbers for g in graphs]) if graphs else np.zeros(0, np.uint8),
    )
    _save(
        folder,
        "neighbor_index",
        np.concatenate([g.neighbor_index.astype(np.int32).ravel() for g in graphs])
        if graphs
        else np.zeros(0, np.int32),
    )
    _save(
        folder,
        "neighbor_distance",
        np.concatenate([g.neighbor_distance.ravel() for g in graphs]) if graphs else np.zeros(0),
    )
    keys: list[str] = sorted({k for g in graphs for k in g.geometry})
    for key in keys:
        _save(
            folder,
            "geometry_" + key,
            np.array([g.geometry.get(key, np.nan) for g in graphs], dtype=np.float64),
        )
    return {
        "settings": settings[0] if graphs else {},
        "radius": graphs[0].radius if graphs else 8.0,
        "step": graphs[0].step if graphs else 0.2,
        "geometry": keys,
    }


def load_dataset(folder: str):
    """Read a dataset written by :func:`save_dataset` (a ``dc.data.NumpyDataset``)."""
    meta = read_json(os.path.join(folder, "dataset.json"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: cache format {meta.get('format')}, expected {FORMAT}")
    y, w = _load(folder, "y"), _load(folder, "w")
    X = _load(folder, "X") if meta["X"] == "array" else _load_graphs(folder, meta)
    return dc.data.NumpyDataset(
        X, y, w, np.array(meta["ids"], dtype=object), n_tasks=len(meta["tasks"])
    )


def _load_graphs(folder: str, meta: dict[str, Any]) -> np.ndarray:
    n_atoms, n_slots = _load(folder, "n_atoms"), _load(folder, "n_slots")
    numbers = _load(folder, "atomic_numbers")
    index, distance = _load(folder, "neighbor_index"), _load(folder, "neighbor_distance")
    geometry = {k: _load(folder, "geometry_" + k) for k in meta["geometry"]}
    if (
        len(numbers) != n_atoms.sum()
        or len(index) != len(distance)
        or len(index) != (n_atoms * n_slots).sum()
    ):
        raise ValueError(f"{folder}: graph arrays of inconsistent lengths")
    atom_starts = np.concatenate([[0], np.cumsum(n_atoms)])
    slot_starts = np.concatenate([[0], np.cumsum(n_atoms * n_slots)])
    graphs = np.empty(len(n_atoms), dtype=object)
    for i, (atoms, slots) in enumerate(zip(n_atoms.tolist(), n_slots.tolist())):
        edges = slice(slot_starts[i], slot_starts[i + 1])
        facts = {k: v[i].item() for k, v in geometry.items() if np.isfinite(v[i])}
        for key in ("n_isolated", "n_underfull", "gap_axis"):
            if key in facts:
                facts[key] = int(facts[key])
        graphs[i] = CrystalGraph(
            numbers[atom_starts[i] : atom_starts[i + 1]],
            index[edges].reshape(atoms, slots),
            distance[edges].reshape(atoms, slots),
            meta["radius"],
            meta["step"],
            settings=meta["settings"],
            geometry=facts,
        )
    return graphs


# ---------------------------------------------------------------- transformers
def transformers_to_json(transformers: Sequence[Any]) -> list[dict[str, Any]] | None:
    """DeepChem transformers as JSON data, or ``None`` when one cannot be stored safely."""
    stored = []
    for transformer in transformers:
        cls = type(transformer)
        if getattr(dc.trans, cls.__name__, None) is not cls:
            return None
        state: dict[str, Any] = {}
        for key, value in vars(transformer).items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                state[key] = {"ndarray": value.tolist(), "dtype": str(value.dtype)}
            elif value is None or isinstance(value, (bool, int, float, str)):
                state[key] = value
            else:
                return None
        stored.append({"class": cls.__name__, "state": state})
    return stored


def transformers_from_json(stored: Sequence[dict[str, Any]]) -> list[Any]:
    """Rebuild transformers written by :func:`transformers_to_json` (DeepChem's classes only)."""
    transformers = []
    for entry in stored:
        cls = getattr(dc.trans, entry["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, dc.trans.Transformer)):
            raise ValueError(f"{entry['class']!r} is not a DeepChem transformer")
        transformer: Any = object.__new__(cls)
        for key, value in entry["state"].items():
            if isinstance(value, dict):
                value = np.array(value["ndarray"], dtype=value["dtype"])
            setattr(transformer, key, value)
        transformers.append(transformer)
    return transformers
