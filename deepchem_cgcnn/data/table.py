"""Tables of crystals with labels: the common form every data source is read into."""

import gzip
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from deepchem_cgcnn._io import file_sha256

STRUCTURE_COLUMNS = ("structure", "cif", "poscar")
ID_COLUMNS = ("material_id", "mp_id", "task_id", "mbid", "cmr_id", "id", "cif_id")

TASK_ALIASES: dict[str, Sequence[str]] = {
    "formation_energy": ("formation_energy", "formation_energy_per_atom", "e_form"),
    "band_gap": ("band_gap", "gap pbe", "gap"),
    "fermi_energy": ("fermi_energy", "efermi"),
    "is_metal": ("is_metal",),
    "log10_k_vrh": ("log10_k_vrh", "log10(K_VRH)"),
    "log10_g_vrh": ("log10_g_vrh", "log10(G_VRH)"),
}
"""Column names under which each task appears in the sources we read (first match wins)."""


@dataclass
class StructureTable:
    """Crystals with ids and a label matrix, as read from a source, before featurization.

    Attributes
    ----------
    ids: np.ndarray
        One id per crystal (e.g. MP material ids), as strings.
    structures: list
        Each crystal as anything ``CGCNNFeaturizer.to_structure`` reads: a
        pymatgen ``Structure``, its ``as_dict()`` form, CIF text or a file path.
    y: np.ndarray
        ``(n, n_tasks)`` float labels (NaN where missing).
    tasks: list of str
        Column names of ``y``.
    sha256: str
        Checksum of the source's content, to key caches.
    source: str
        Where the rows came from, for messages and dataset summaries.
    unread: list of (id, reason)
        Rows of the source that could not even be read into the table.
    referenced_files: dict
        Structure files the rows point to (absolute path -> SHA-256); their contents
        are part of ``sha256``, so editing a CIF changes the cache key.
    label_notes: np.ndarray, optional
        Per row, why a label cell gave no number (e.g. ``"band_gap: 'abc' is not a
        number"``), ``""`` where nothing is wrong.
    """

    ids: np.ndarray
    structures: list[Any]
    y: np.ndarray
    tasks: list[str]
    sha256: str
    source: str = ""
    unread: list[tuple] = field(default_factory=list)
    referenced_files: dict[str, str] = field(default_factory=dict)
    label_notes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.label_notes is None:
            self.label_notes = np.full(len(self.ids), "", dtype=object)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> "StructureTable":
        """The rows where boolean ``keep`` is True."""
        keep = np.asarray(keep, dtype=bool)
        return StructureTable(
            self.ids[keep],
            [s for s, k in zip(self.structures, keep) if k],
            self.y[keep],
            list(self.tasks),
            self.sha256,
            self.source,
            list(self.unread),
            dict(self.referenced_files),
            np.asarray(self.label_notes)[keep],
        )


def resolve_label_columns(
    columns: Sequence[str],
    tasks: Sequence[str],
    label_columns: Mapping[str, str] | None = None,
    where: str = "the table",
) -> list[str]:
    """The column holding each task: ``label_columns``, else the task's name, else an alias."""
    label_columns = dict(label_columns or {})
    found = []
    for task in tasks:
        candidates = (
            [label_columns[task]] if task in label_columns else [task, *TASK_ALIASES.get(task, ())]
        )
        match = next((c for c in candidates if c in columns), None)
        if match is None:
            raise KeyError(
                f"{where}: no column for task {task!r} (looked for {candidates}); "
                f"columns are {list(columns)}; pass label_columns={{{task!r}: ...}}"
            )
        found.append(match)
    return found


def _first_present(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def table_from_frame(
    frame: pd.DataFrame,
    tasks: Sequence[str],
    sha256: str,
    source: str,
    structure_column: str | None = None,
    id_column: str | None = None,
    label_columns: Mapping[str, str] | None = None,
) -> StructureTable:
    """A :class:`StructureTable` from a DataFrame with a structure column and label columns.

    The structure column defaults to the first of ``structure``, ``cif``, ``poscar``;
    the id column to the first of the usual id names, else the frame's index.
    Labels that are not numbers become NaN (and are dropped, counted, by the loader).
    """
    columns = list(frame.columns)
    structure_column = structure_column or _first_present(columns, STRUCTURE_COLUMNS)
    if structure_column is None or structure_column not in columns:
        raise KeyError(
            f"{source}: no structure column (looked for "
            f"{structure_column or list(STRUCTURE_COLUMNS)}); columns are {columns}"
        )
    label_names = resolve_label_columns(columns, tasks, label_columns, where=source)
    id_column = id_column or _first_present(columns, (*ID_COLUMNS, "line"))
    ids = _ids(frame, id_column)
    notes = np.full(len(frame), "", dtype=object)
    y = np.zeros((len(frame), len(tasks)))
    for k, (task, column) in enumerate(zip(tasks, label_names)):
        raw = frame[column]
        y[:, k] = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        unparsed = (
            np.isnan(y[:, k])
            & raw.notna().to_numpy()
            & (raw.astype(str).str.strip().str.lower() != "nan").to_numpy()
        )
        for row in np.nonzero(unparsed)[0]:
            note = f"{task}: {str(raw.iloc[row])[:40]!r} is not a number"
            notes[row] = f"{notes[row]}; {note}" if notes[row] else note
    structures = frame[structure_column].tolist()
    referenced = referenced_structure_files(structures)
    if referenced:
        sha256 = hashlib.sha256(
            (sha256 + json.dumps(referenced, sort_keys=True)).encode()
        ).hexdigest()
    return StructureTable(
        ids=ids,
        structures=structures,
        y=y,
        tasks=list(tasks),
        sha256=sha256,
        source=source,
        referenced_files=referenced,
        label_notes=notes,
    )


def _ids(frame: pd.DataFrame, id_column: str | None) -> np.ndarray:
    """Row ids as strings; an empty id cell becomes ``row <n>`` (1-based), never ``'nan'``."""
    if not id_column:
        return pd.Series(frame.index).astype(str).to_numpy(dtype=object)
    column = frame[id_column]
    empty = (column.isna() | (column.astype(str).str.strip() == "")).to_numpy()
    ids = column.astype(str).str.strip().to_numpy(dtype=object)
    ids[empty] = [f"row {n + 1} (no {id_column})" for n in np.nonzero(empty)[0]]
    return ids


def referenced_structure_files(structures: Sequence[Any]) -> dict[str, str]:
    """Absolute path -> SHA-256 of each entry that names a structure file (not CIF text)."""
    import os

    referenced = {}
    for entry in structures:
        if isinstance(entry, str) and "\n" not in entry and os.path.isfile(entry):
            path = os.path.abspath(entry)
            if path not in referenced:
                referenced[path] = file_sha256(path)
    return referenced


def read_text(path: str) -> str:
    """A text file (optionally gzipped) as UTF-8; lines that are not UTF-8 are read as Latin-1.

    One stray byte (a Latin-1 'Å' in a comment) no longer fails a whole table: such lines
    are decoded as Latin-1 and named in a warning.
    """
    import logging
    import warnings

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines, latin = [], []
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
            latin.append(number)
    message = (
        f"{path}: lines {latin[:10]}{' ...' if len(latin) > 10 else ''} are not UTF-8; "
        f"read as Latin-1"
    )
    logging.getLogger(__name__).warning(message)
    warnings.warn(message, UnicodeWarning, stacklevel=3)
    return "".join(lines)


def read_json_lines(path: str) -> pd.DataFrame:
    """Read a JSON-lines file (DeepChem's archive format); unreadable lines are reported.

    Returns a DataFrame with a ``line`` column (1-based line numbers) and
    ``attrs["unread"]``: ``(f"line {n}", reason)`` for each line that is not a
    JSON object.
    """
    rows, unread = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got {type(row).__name__}")
        except ValueError as error:
            unread.append((f"line {number}", f"unreadable JSON: {error}"))
            continue
        row["line"] = number
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["unread"] = unread
    return frame


def _is_json_lines(path: str) -> bool:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").strip()
        second = handle.readline().decode("utf-8", errors="replace").strip()
    return first.startswith("{") and first.endswith("}") and (not second or second.startswith("{"))


def read_frame(path: str) -> pd.DataFrame:
    """Read a CSV, JSON or JSON-lines file (optionally gzipped) into a DataFrame."""
    import io

    name = path.lower()
    if ".json" in name:
        if _is_json_lines(path):
            return read_json_lines(path)
        return pd.read_json(io.StringIO(read_text(path)), orient=None)
    return pd.read_csv(io.StringIO(read_text(path)))


def read_structure_table(
    path: str,
    tasks: Sequence[str],
    structure_column: str | None = None,
    id_column: str | None = None,
    label_columns: Mapping[str, str] | None = None,
) -> StructureTable:
    """Read ``path`` (``.csv``, ``.json``, JSON lines; optionally ``.gz``) into a table.

    Parameters
    ----------
    path: str
        The table; e.g. ``../shared/datasets/mp_cgcnn.csv.gz``.
    tasks: sequence of str
        Task names; each is read from the column of that name, the column given
        in ``label_columns``, or a known alias (``formation_energy`` is found in
        ``formation_energy_per_atom`` or ``e_form``, see :data:`TASK_ALIASES`).
    structure_column: str, optional
        Column holding each crystal as CIF text or a pymatgen Structure dict;
        default the first of ``structure``, ``cif``, ``poscar``.
    id_column: str, optional
        Column of ids; default ``material_id`` or another usual id name, else the row index.
    label_columns: mapping, optional
        Task name -> column name, where they differ.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "table.csv")
    >>> from pymatgen.core import Lattice, Structure
    >>> cif = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]]).to(fmt="cif")
    >>> import pandas as pd
    >>> pd.DataFrame({"material_id": ["mp-1"], "cif": [cif], "e_form": [0.1]}).to_csv(path, index=False)
    >>> table = read_structure_table(path, ["formation_energy"])
    >>> table.ids.tolist(), table.y.tolist()
    (['mp-1'], [[0.1]])
    """
    frame = read_frame(path)
    table = table_from_frame(
        frame, tasks, file_sha256(path), path, structure_column, id_column, label_columns
    )
    table.unread = list(frame.attrs.get("unread", []))
    return table
