"""Named public datasets: Matbench (through matminer's metadata) and DeepChem's archives.

Each named dataset is a :class:`NamedDataset`: where its file lives, how to
check it, and which of its columns are which task. :func:`read_named_dataset`
fetches the file once (checksum-verified, atomically) into ``data_dir`` and reads
it into a :class:`~deepchem_cgcnn.data.table.StructureTable`.
"""

import functools
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deepchem_cgcnn.data.download import RemoteFile, check_file, fetch
from deepchem_cgcnn.data.table import (
    ID_COLUMNS,
    StructureTable,
    file_sha256,
    read_json_lines,
    table_from_frame,
)

DEEPCHEM_BUCKET = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"

MATBENCH_TASK_NAMES = {
    "e_form": "formation_energy",
    "gap pbe": "band_gap",
    "is_metal": "is_metal",
    "log10(K_VRH)": "log10_k_vrh",
    "log10(G_VRH)": "log10_g_vrh",
    "n": "refractive_index",
    "exfoliation_en": "exfoliation_energy",
    "last phdos peak": "last_phdos_peak",
}
UNITS = {
    "formation_energy": "eV/atom",
    "band_gap": "eV",
    "is_metal": "1 = metal",
    "log10_k_vrh": "log10(GPa)",
    "log10_g_vrh": "log10(GPa)",
    "refractive_index": "unitless",
    "exfoliation_energy": "meV/atom",
    "last_phdos_peak": "cm^-1",
    "fermi_energy": "eV",
}


@dataclass(frozen=True)
class NamedDataset:
    """A public dataset we know how to fetch, check and read.

    Attributes
    ----------
    name: str
        The name users pass as ``source`` (e.g. ``"matbench_mp_gap"``).
    kind: str
        ``"matbench"`` (matminer's JSON, orient='split') or ``"deepchem"``
        (a ``.tar.gz`` holding one JSON-lines file).
    remote: RemoteFile
        URL, local file name and integrity check.
    label_columns: mapping
        Task name -> column of the file.
    units: mapping
        Task name -> units.
    n_entries: int
        Rows the source is documented to hold.
    member: str
        For DeepChem archives, the JSON-lines file inside the archive.
    """

    name: str
    kind: str
    remote: RemoteFile
    label_columns: Mapping[str, str]
    units: Mapping[str, str] = field(default_factory=dict)
    n_entries: int | None = None
    member: str | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.label_columns)


MAX_DOWNLOAD_PER_ENTRY = 8 << 10
"""Download cap per crystal of a named dataset (compressed; real files take ~1-3 kB)."""
MAX_EXPANDED_PER_ENTRY = 32 << 10
"""Cap per crystal on what a DeepChem archive may expand to (a structure dict takes ~5 kB)."""


def _matbench_datasets() -> dict[str, NamedDataset]:
    """Every structure task of Matbench, with matminer's own URL and SHA-256."""
    import matminer.datasets

    metadata_path = os.path.join(
        os.path.dirname(matminer.datasets.__file__), "dataset_metadata.json"
    )
    with open(metadata_path) as handle:
        metadata = json.load(handle)
    named = {}
    for name, entry in metadata.items():
        if not name.startswith("matbench_") or "structure" not in entry["columns"]:
            continue
        target = next(c for c in entry["columns"] if c != "structure")
        task = MATBENCH_TASK_NAMES.get(target, target)
        units = {task: "eV/cell" if name == "matbench_perovskites" else UNITS.get(task, "")}
        named[name] = NamedDataset(
            name=name,
            kind="matbench",
            remote=RemoteFile(
                url=entry["url"],
                filename=os.path.basename(entry["url"]),
                sha256=entry["hash"],
                max_size=int(entry["num_entries"]) * MAX_DOWNLOAD_PER_ENTRY,
            ),
            label_columns={task: target},
            units=units,
            n_entries=int(entry["num_entries"]),
        )
    return named


def _member_kind(info: tarfile.TarInfo) -> str:
    for kind, test in (
        ("symbolic link", info.issym),
        ("hard link", info.islnk),
        ("device", lambda: info.isdev()),
        ("folder", info.isdir),
    ):
        if test():
            return kind
    return "special file"


def _check_archive(member: str, max_expanded: int):
    """A content check for a DeepChem archive: complete, with ``member`` as a regular file,
    expanding to at most ``max_expanded`` bytes in all (read in chunks, never held whole)."""

    def check(path: str) -> None:
        names, expanded = [], 0
        try:
            with tarfile.open(path, "r:gz") as archive:
                for info in archive:  # reading every member checks the gzip CRC to the end
                    names.append(info.name)
                    if os.path.basename(info.name) == member and not info.isfile():
                        raise ValueError(
                            f"its member {info.name} is a {_member_kind(info)}, not a regular file"
                        )
                    if not info.isfile():
                        continue
                    source = archive.extractfile(info)
                    if source is None:
                        continue
                    for block in iter(functools.partial(source.read, 1 << 20), b""):
                        expanded += len(block)
                        if expanded > max_expanded:
                            raise ValueError(
                                f"it expands to more than {max_expanded:,} bytes, "
                                f"far beyond this dataset's size"
                            )
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ValueError(f"not a complete .tar.gz archive ({error})") from error
        if not any(os.path.basename(n) == member for n in names):
            raise ValueError(f"archive holds {names[:5]}, not {member}")

    return check


def _deepchem_archive(
    stem: str, label: str, task: str, n_entries: int, units: str | None = None
) -> NamedDataset:
    filename = f"{stem}.tar.gz"
    member = f"{stem}.json"
    return NamedDataset(
        name=f"deepchem_{stem}",
        kind="deepchem",
        remote=RemoteFile(
            url=DEEPCHEM_BUCKET + filename,
            filename=filename,
            validate=_check_archive(member, n_entries * MAX_EXPANDED_PER_ENTRY),
            max_size=n_entries * MAX_DOWNLOAD_PER_ENTRY,
        ),
        label_columns={task: label},
        units={task: units or UNITS[task]},
        n_entries=n_entries,
        member=member,
    )


DEEPCHEM_ARCHIVES: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        _deepchem_archive("mp_formation_energy", "formation_energy", "formation_energy", 132752),
        _deepchem_archive("mp_is_metal", "is_metal", "is_metal", 106113),
        _deepchem_archive(
            "perovskite", "formation_energy", "formation_energy", 18928, units="eV/cell"
        ),
    )
}
# DeepChem publishes no checksums: its archives are checked by reading the whole
# gzip stream (CRC) and finding the JSON member; matbench files by SHA-256.

NAMED_DATASETS: dict[str, NamedDataset] = {**_matbench_datasets(), **DEEPCHEM_ARCHIVES}


def named_dataset(name: str) -> NamedDataset:
    """Look a dataset up by name, with the valid names in the error."""
    try:
        return NAMED_DATASETS[name]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r}; named datasets are {sorted(NAMED_DATASETS)}"
        ) from None


def _extract_member(archive_path: str, member: str, data_dir: str) -> str:
    """Extract ``member`` next to the archive, atomically, as DeepChem's loaders expect it."""
    target = os.path.join(data_dir, member)
    with tarfile.open(archive_path, "r:gz") as archive:
        info = next((i for i in archive if os.path.basename(i.name) == member and i.isfile()), None)
        if info is None:
            raise ValueError(f"{archive_path} holds no regular file named {member}")
        handle, temporary = tempfile.mkstemp(dir=data_dir, prefix=member + ".", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                source = archive.extractfile(info)
                if source is None:
                    raise ValueError(f"{archive_path}: {member} cannot be read")
                for block in iter(functools.partial(source.read, 1 << 20), b""):
                    out.write(block)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return target


def deepchem_json_path(dataset: NamedDataset, data_dir: str, **fetch_kwargs) -> str:
    """The extracted JSON-lines file of a DeepChem archive, fetching the archive only if needed.

    As in ``dc.molnet``: an existing ``<stem>.json`` in ``data_dir`` is used as is,
    else an existing ``<stem>.tar.gz`` is checked and extracted, else it is downloaded.
    """
    member = _member(dataset)
    json_path = os.path.join(data_dir, member)
    if os.path.exists(json_path):
        return json_path
    archive = fetch(dataset.remote, data_dir, **fetch_kwargs)
    return _extract_member(archive, member, data_dir)


def _member(dataset: NamedDataset) -> str:
    if dataset.member is None:
        raise ValueError(f"{dataset.name} is not an archive with a member file")
    return dataset.member


def local_sha256(name: str, data_dir: str) -> str | None:
    """The checksum :func:`read_named_dataset` would key the dataset by, if its file is already local."""
    dataset = named_dataset(name)
    if dataset.kind == "deepchem":
        path = os.path.join(data_dir, _member(dataset))
        return file_sha256(path) if os.path.exists(path) else None
    path = os.path.join(data_dir, dataset.remote.filename)
    return dataset.remote.sha256 if check_file(path, dataset.remote) is None else None


def read_named_dataset(
    name: str, data_dir: str, tasks: Sequence[str] | None = None, **fetch_kwargs
) -> StructureTable:
    """Fetch (once) and read a named dataset into a :class:`StructureTable`.

    Parameters
    ----------
    name: str
        A key of :data:`NAMED_DATASETS`, e.g. ``"matbench_mp_e_form"`` or
        ``"deepchem_perovskite"``.
    data_dir: str
        Where the raw file is kept (and looked for first).
    tasks: sequence of str, optional
        Task names to report the labels under; default the dataset's own
        (a single-task dataset's label may be renamed, e.g. to ``"heat"``).
    **fetch_kwargs
        ``timeout``, ``retries``, ``offline`` for :func:`~deepchem_cgcnn.data.download.fetch`.
    """
    dataset = named_dataset(name)
    os.makedirs(data_dir, exist_ok=True)
    tasks = list(tasks or dataset.tasks)
    if len(tasks) != len(dataset.tasks):
        raise ValueError(f"{name} has tasks {list(dataset.tasks)}; got {tasks}")
    label_columns = dict(zip(tasks, dataset.label_columns.values()))
    if dataset.kind == "deepchem":
        path = deepchem_json_path(dataset, data_dir, **fetch_kwargs)
        frame = read_json_lines(path)
        if not any(c in frame.columns for c in ID_COLUMNS) and "line" in frame.columns:
            frame["line"] = [f"{_member(dataset)[:-5]}:{n}" for n in frame["line"]]
        table = table_from_frame(
            frame,
            tasks,
            file_sha256(path),
            f"{name} ({path})",
            structure_column="structure",
            label_columns=label_columns,
        )
        table.unread = list(frame.attrs["unread"])
    else:
        from matminer.utils.io import load_dataframe_from_json

        path = fetch(dataset.remote, data_dir, **fetch_kwargs)
        frame = load_dataframe_from_json(path, pbar=False, decode=False)
        frame.index = [f"{name}:{i}" for i in frame.index]
        table = table_from_frame(
            frame,
            tasks,
            dataset.remote.sha256 or file_sha256(path),
            f"{name} ({path})",
            structure_column="structure",
            label_columns=label_columns,
        )
    return table
