"""Where crystals come from: one class per kind of source, behind one small protocol.

:class:`~deepchem_cgcnn.data.loader.MaterialsProjectLoader` turns whatever it is given into a
:class:`Source` with :func:`source_for`, then only calls ``read`` (the rows, as a
:class:`~deepchem_cgcnn.data.table.StructureTable`) and ``quick_sha256`` (the content checksum
when it is known without parsing, so a cached load can skip the parse).

>>> from deepchem_cgcnn.examples import example_structures
>>> source = source_for((list(example_structures().values())[:2], [0.1, 0.2]))
>>> type(source).__name__, source.name, len(source.read(None, "unused"))
('InMemorySource', 'in-memory', 2)
"""

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import deepchem_cgcnn.data.store as store
from deepchem_cgcnn._io import atomic_write_json, file_sha256, read_json
from deepchem_cgcnn.data.local import read_cif_directory, table_from_structures
from deepchem_cgcnn.data.remote import NAMED_DATASETS, local_sha256, read_named_dataset
from deepchem_cgcnn.data.table import StructureTable, read_structure_table, table_from_frame

MP_API = "mp_api"
FETCH_OPTIONS = ("timeout", "retries", "offline")
TABLE_OPTIONS = ("structure_column", "id_column")


class Source(Protocol):
    """A kind of source: its default cache name, its rows, and a quick cache key."""

    @property
    def name(self) -> str:
        """Default name of the source's cache folder."""
        ...

    def read(self, tasks: list[str] | None, data_dir: str) -> StructureTable:
        """The rows with labels for ``tasks`` (raw files are kept in ``data_dir``)."""
        ...

    def quick_key(
        self, tasks: list[str] | None, data_dir: str, index_dir: str
    ) -> tuple[str, list[str]] | None:
        """The content checksum and tasks :meth:`read` would report, when known without
        parsing (``index_dir`` holds what :meth:`remember` recorded)."""
        ...

    def remember(self, table: StructureTable, index_dir: str) -> None:
        """Record what a full read found, for :meth:`quick_key`."""
        ...


class _NoQuickKey:
    def quick_key(
        self, tasks: list[str] | None, data_dir: str, index_dir: str
    ) -> tuple[str, list[str]] | None:
        return None

    def remember(self, table: StructureTable, index_dir: str) -> None:
        return None


def _required(tasks: list[str] | None, what: Any) -> list[str]:
    if not tasks:
        raise ValueError(f"{what!r}: say which columns to learn with tasks=[...]")
    return tasks


@dataclass
class NamedSource(_NoQuickKey):
    """A Matbench structure task or a DeepChem archive, fetched once and verified."""

    dataset: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.dataset

    def read(self, tasks: list[str] | None, data_dir: str) -> StructureTable:
        store.private_folder(data_dir)
        fetch = {k: v for k, v in self.options.items() if k in FETCH_OPTIONS}
        return read_named_dataset(self.dataset, data_dir, tasks, **fetch)

    def quick_key(
        self, tasks: list[str] | None, data_dir: str, index_dir: str
    ) -> tuple[str, list[str]] | None:
        sha256 = local_sha256(self.dataset, data_dir)
        return (sha256, list(tasks or NAMED_DATASETS[self.dataset].tasks)) if sha256 else None


@dataclass
class MaterialsProjectAPISource(_NoQuickKey):
    """The live Materials Project through ``mp-api``; the answer is cached so a rerun is offline."""

    options: dict[str, Any] = field(default_factory=dict)
    name: str = MP_API

    def read(self, tasks: list[str] | None, data_dir: str) -> StructureTable:
        from deepchem_cgcnn.data.materials_project import (
            cgcnn_paper_ids,
            mp_fields,
            query_summary,
            task_values,
        )

        store.private_folder(data_dir)
        tasks = _required(tasks, MP_API)
        fetch = {k: v for k, v in self.options.items() if k in FETCH_OPTIONS}
        ids = self.options.get("material_ids", "cgcnn-46744")
        if isinstance(ids, str):
            ids = cgcnn_paper_ids(int(ids.split("-")[-1]), data_dir, **fetch)
        fields = mp_fields(tasks)
        key = hashlib.sha256(json.dumps([sorted(ids), fields]).encode()).hexdigest()[:16]
        cache = os.path.join(data_dir, f"mp_api_{key}.json.gz")
        frame = query_summary(
            ids,
            fields,
            api_key=self.options.get("api_key"),
            endpoint=self.options.get("endpoint"),
            cache_path=cache,
        )
        for task in tasks:
            frame[task] = task_values(frame, task)
        table = table_from_frame(
            frame,
            tasks,
            file_sha256(cache),
            f"Materials Project API ({len(ids)} ids)",
            structure_column="structure",
            id_column="material_id",
        )
        table.unread = [
            (i, "not returned by the Materials Project API")
            for i in frame.attrs.get("missing_ids", [])
        ]
        return table


@dataclass
class TableSource:
    """A CSV/JSON/JSON-lines file (optionally gzipped) with a structure column.

    The content checksum covers the files its rows point to; it is remembered in
    ``index_dir`` after a full read, with each file's checksum, and used only while every
    file still matches.
    """

    path: str
    label_columns: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path)).split(".")[0] or "dataset"

    def read(self, tasks: list[str] | None, data_dir: str) -> StructureTable:
        columns = {k: v for k, v in self.options.items() if k in TABLE_OPTIONS}
        return read_structure_table(
            self.path, _required(tasks, self.path), label_columns=self.label_columns, **columns
        )

    def _index(self, index_dir: str) -> str:
        return os.path.join(index_dir, f"source-{file_sha256(self.path)[:32]}.json")

    def remember(self, table: StructureTable, index_dir: str) -> None:
        """Record the content checksum of a full read for :meth:`quick_sha256`."""
        atomic_write_json(
            self._index(index_dir),
            {"sha256": table.sha256, "referenced_files": table.referenced_files},
        )

    def quick_key(
        self, tasks: list[str] | None, data_dir: str, index_dir: str
    ) -> tuple[str, list[str]] | None:
        if not tasks:
            return None
        try:
            index = read_json(self._index(index_dir))
            referenced = index["referenced_files"]
            if all(os.path.isfile(p) and file_sha256(p) == h for p, h in referenced.items()):
                return str(index["sha256"]), list(tasks)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None


@dataclass
class CGCNNFolderSource(_NoQuickKey):
    """A folder in the original CGCNN layout: ``id_prop.csv`` plus one structure file per id."""

    path: str

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path)).split(".")[0] or "dataset"

    def read(self, tasks: list[str] | None, data_dir: str) -> StructureTable:
        return read_cif_directory(self.path, tasks)


@dataclass
class InMemorySource(_NoQuickKey):
    """Crystals already in memory: a StructureTable, a DataFrame with a structure column, or
    ``(structures, labels[, ids])``."""

    data: Any
    label_columns: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    name: str = "in-memory"

    def read(self, tasks: list[str] | None, data_dir: str) -> StructureTable:
        import pandas as pd

        data = self.data
        if isinstance(data, StructureTable):
            return data
        if isinstance(data, tuple):
            structures, labels, *ids = data
            return table_from_structures(structures, labels, ids[0] if ids else None, tasks=tasks)
        if isinstance(data, pd.DataFrame):
            from deepchem_cgcnn.data.local import _fingerprint

            numeric = data.drop(columns=[c for c in data.columns if data[c].dtype == object])
            digest = hashlib.sha256(
                pd.util.hash_pandas_object(numeric, index=True).to_numpy().tobytes()
            )
            for value in data.select_dtypes(include="object").itertuples(index=False):
                digest.update(b"".join(_fingerprint(v) for v in value))
            columns = {k: v for k, v in self.options.items() if k in TABLE_OPTIONS}
            return table_from_frame(
                data,
                _required(tasks, "a DataFrame"),
                digest.hexdigest(),
                "in-memory DataFrame",
                label_columns=self.label_columns,
                **columns,
            )
        raise TypeError(f"cannot read crystals from a {type(data).__name__}")


def source_for(source: Any, label_columns: dict[str, str] | None = None, **options: Any) -> Source:
    """The :class:`Source` for what a user passed as ``source``."""
    import pandas as pd

    label_columns = dict(label_columns or {})
    if isinstance(source, (StructureTable, pd.DataFrame, tuple)):
        return InMemorySource(source, label_columns, options)
    if source == MP_API:
        return MaterialsProjectAPISource(options)
    if isinstance(source, str) and source in NAMED_DATASETS:
        return NamedSource(source, options)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            return CGCNNFolderSource(path)
        if os.path.isfile(path):
            return TableSource(path, label_columns, options)
    raise FileNotFoundError(
        f"source {source!r} is not a named dataset, 'mp_api', a file or a folder; "
        f"named datasets are {sorted(NAMED_DATASETS)}"
    )
