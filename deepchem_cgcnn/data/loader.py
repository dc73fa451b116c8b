"""MaterialsProjectLoader: a source of crystals -> featurized, split, cached DeepChem datasets."""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

import deepchem_cgcnn.data.store as store
import deepchem_cgcnn.data.summary as reasons
from deepchem_cgcnn._io import (
    as_json_data,
    atomic_write_json,
    file_lock,
    read_json,
    verify_manifest,
    write_manifest,
)
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.data.sources import source_for
from deepchem_cgcnn.data.splitters import get_splitter
from deepchem_cgcnn.data.summary import LoadSummary
from deepchem_cgcnn.data.table import StructureTable
from deepchem_cgcnn.featurizer import CGCNNFeaturizer, featurizer_params

dc = import_deepchem()
logger = logging.getLogger(__name__)


class LoadResult(tuple):
    """``(tasks, datasets, transformers)`` as ``dc.molnet`` returns, plus ``.summary``.

    It unpacks into three values exactly like DeepChem's loaders; the
    :class:`~deepchem_cgcnn.data.summary.LoadSummary` rides along as an attribute.
    """

    summary: LoadSummary

    def __new__(cls, tasks, datasets, transformers, summary: LoadSummary):
        result = super().__new__(cls, (tasks, datasets, transformers))
        result.summary = summary
        return result


def default_data_dir() -> str:
    """``DEEPCHEM_DATA_DIR``, else this user's cache folder (never the shared temp folder)."""
    return store.default_cache_dir()


def _featurizer_key(featurizer) -> Any:
    if isinstance(featurizer, CGCNNFeaturizer):
        return {
            "CGCNNFeaturizer": {
                **featurizer_params(featurizer),
                "min_distance": featurizer.min_distance,
            }
        }
    return repr(featurizer)


def _transformer_generators(transformers: Sequence[Any]) -> list:
    from deepchem.molnet.load_function.molnet_loader import transformers as named

    generators = []
    for t in transformers:
        if isinstance(t, str):
            if t.lower() not in named:
                raise ValueError(f"unknown transformer {t!r}; names are {sorted(named)}")
            t = named[t.lower()]
        generators.append(t)
    return generators


@contextlib.contextmanager
def _built_in_place(folder: str) -> Iterator[str]:
    """A temporary folder beside ``folder`` that replaces it only if the block completes.

    The checksum of every file goes into the folder's manifest before it is moved into
    place, so a reader can tell a damaged or altered cache from a good one.
    """
    building = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=".building-")
    retired = None
    try:
        yield building
        write_manifest(building)
        if os.path.exists(folder):  # renamed aside, not deleted in place: no half-empty folder
            retired = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=".retired-")
            os.replace(folder, os.path.join(retired, "old"))
        os.replace(building, folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        if retired:
            shutil.rmtree(retired, ignore_errors=True)


def _readable_cache(folder: str, read):
    """``read(folder)``, or ``None`` (with a warning) when the cache cannot be read safely.

    Arrays are read with ``allow_pickle=False``: a planted object array fails here
    instead of running code, and the entry is rebuilt.
    """
    try:
        return read(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        _warn_rebuild(f"cache {folder} cannot be read ({type(error).__name__}: {str(error)[:200]})")
        return None


def _warn_rebuild(what: str) -> None:
    """Say, in the log and as a :class:`CacheWarning`, that a cache entry is rebuilt and why."""
    message = f"{what}; rebuilding it"
    logger.warning(message)
    warnings.warn(message, CacheWarning, stacklevel=5)


def _verified(folder: str) -> bool:
    """Whether a cache folder matches its manifest; says why (and that it is rebuilt) if not."""
    problem = verify_manifest(folder)
    if problem is None:
        return True
    _warn_rebuild(f"cache {folder} failed verification ({problem})")
    return False


class CacheWarning(UserWarning):
    """A cached dataset failed verification and is rebuilt from the source."""


def _digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class MaterialsProjectLoader:
    """Load crystals with labels from any source, featurize, split and cache them.

    The name is the one users know; the source can be anything below (each kind is one
    class of :mod:`deepchem_cgcnn.data.sources`).

    Parameters
    ----------
    source: str, path, StructureTable, DataFrame or (structures, labels[, ids])
        - a named dataset: a Matbench structure task (``"matbench_mp_e_form"``,
          ``"matbench_mp_gap"``, ``"matbench_mp_is_metal"``, ``"matbench_log_kvrh"``,
          ``"matbench_log_gvrh"``, ``"matbench_perovskites"``, ...; fetched with
          matminer's URL and SHA-256) or a DeepChem archive
          (``"deepchem_mp_formation_energy"``, ``"deepchem_mp_is_metal"``,
          ``"deepchem_perovskite"``); see ``NAMED_DATASETS``;
        - ``"mp_api"``: the live Materials Project through ``mp-api``'s ``MPRester``
          (``material_ids`` = a list of ids or ``"cgcnn-46744"``, ``"cgcnn-27430"``,
          ``"cgcnn-3402"``, the CGCNN paper's lists; ``api_key`` or ``MP_API_KEY``);
          the answer is cached in ``data_dir`` so a rerun is offline;
        - a CSV/JSON/JSON-lines file (optionally gzipped) with a CIF or
          Structure-dict column, such as ``mp_cgcnn.csv.gz``;
        - a folder in the original CGCNN layout (``id_prop.csv`` + ``<id>.cif``);
        - in memory: a ``StructureTable``, a DataFrame with a ``structure`` column,
          or a tuple ``(structures, labels)`` / ``(structures, labels, ids)``.
    tasks: list of str, optional
        Task names (columns of a table; known aliases such as
        ``formation_energy`` -> ``formation_energy_per_atom`` are resolved).
        Default: the named dataset's tasks.
    featurizer: dc.feat.Featurizer, optional
        Default :class:`~deepchem_cgcnn.CGCNNFeaturizer`. Any DeepChem material
        featurizer works; it receives pymatgen Structures.
    splitter: dc.splits.Splitter or str or None, default "random"
        ``"random"`` (60/20/20, seed 123), ``"cgcnn"`` (the original code's split),
        ``"stratified"``, ``"composition"``, a DeepChem splitter, or None for one dataset.
    transformers: list, default ()
        ``dc.molnet`` TransformerGenerators or their names (``"normalization"``),
        fitted on the training split.
    data_dir: str, optional
        Where raw files are kept; default ``DEEPCHEM_DATA_DIR``, else this user's cache
        folder (``platformdirs.user_cache_dir("deepchem-cgcnn")``), never the shared temp
        folder. A folder another user owns or can write to is refused.
    save_dir: str, optional
        Where featurized datasets are cached (same default and checks). The cache holds
        only numeric arrays and JSON, each folder with a checksum manifest verified on
        every reload; builders of one entry take turns under a file lock.
    reload: bool, default True
        Reuse the cache. The cache is keyed by the source's checksum, the tasks,
        the featurizer's settings, the cleaning rules, the splitter and the
        transformers: a changed parameter never returns stale data. Changing
        only the split or transformers reuses the featurized data.
    label_columns: mapping, optional
        Task -> column where a table's columns are named differently.
    query: str, optional
        Keep only rows whose labels satisfy this pandas expression over the task
        names, e.g. ``"band_gap > 0"`` (the paper's non-metal band-gap protocol);
        the others are counted in the summary as excluded.
    n_jobs: int, default 1
        Processes for featurization (on this machine).
    scheduler: str, default "local"
        ``"local"``: featurize here (``n_jobs`` processes) into in-memory datasets.
        ``"dask"``: featurize on a Dask cluster into on-disk shards in the cache folder
        (:func:`~deepchem_cgcnn.data.shards.featurize_to_shards`: atomic, restartable) and
        return :class:`~deepchem_cgcnn.data.shards.ShardedDataset` splits, whose graphs stay
        on disk and are streamed by ``fit``/``predict``. Needs
        ``deepchem-cgcnn[distributed]``; no ``transformers``.
    client: dask.distributed.Client or str, optional
        With ``scheduler="dask"``: the cluster (a client or a scheduler address); default
        a ``LocalCluster`` of this machine's cores.
    shard_size: int, default 2000
        With ``scheduler="dask"``: crystals per shard (and per task).
    name: str, optional
        Name of the cache folder; default derived from the source.
    **source_kwargs
        ``material_ids``, ``api_key``, ``endpoint`` for ``"mp_api"``; ``structure_column``,
        ``id_column`` for tables; ``timeout``, ``retries``, ``offline`` for downloads.

    Examples
    --------
    >>> from deepchem_cgcnn.examples import example_structures
    >>> crystals = example_structures()
    >>> energies = [float(i) for i in range(len(crystals))]
    >>> import tempfile
    >>> loader = MaterialsProjectLoader(source=(list(crystals.values()), energies, list(crystals)),
    ...                                 save_dir=tempfile.mkdtemp())
    >>> tasks, (train, valid, test), transformers = loader.load()
    >>> tasks, len(train), len(valid), len(test)
    (['target'], 7, 2, 3)
    >>> print(loader.summary)
    in-memory structures: loaded 12 of 12 rows
    """

    def __init__(
        self,
        source: Any,
        tasks: Sequence[str] | None = None,
        featurizer=None,
        splitter: Any | str | None = "random",
        transformers: Sequence[Any] = (),
        data_dir: str | None = None,
        save_dir: str | None = None,
        reload: bool = True,
        label_columns: Mapping[str, str] | None = None,
        query: str | None = None,
        n_jobs: int = 1,
        name: str | None = None,
        scheduler: str = "local",
        client: Any = None,
        shard_size: int = 2000,
        **source_kwargs,
    ):
        if scheduler not in ("local", "dask"):
            raise ValueError(f"scheduler {scheduler!r}: use 'local' or 'dask'")
        if scheduler == "dask" and transformers:
            raise ValueError(
                "scheduler='dask' returns on-disk shards, which are not transformed; "
                "CGCNNModel normalizes regression targets itself"
            )
        self.scheduler = scheduler
        self.client = client
        self.shard_size = shard_size
        self.source = source
        self.tasks = list(tasks) if tasks is not None else None
        self.featurizer = featurizer if featurizer is not None else CGCNNFeaturizer()
        self.splitter = get_splitter(splitter)
        self.transformer_generators = _transformer_generators(transformers)
        self.data_dir = data_dir or default_data_dir()
        self.save_dir = save_dir or default_data_dir()
        self.reload = reload
        self.label_columns = dict(label_columns or {})
        self.query = query
        self.n_jobs = n_jobs
        self.source_kwargs = source_kwargs
        self._source = source_for(source, self.label_columns, **source_kwargs)
        self.name = name or self._source.name
        self.summary: LoadSummary | None = None

    # ------------------------------------------------------------------ reading
    def read(self) -> StructureTable:
        """Read the source into a :class:`StructureTable` (no featurization)."""
        return self._source.read(self.tasks, self.data_dir)

    # ------------------------------------------------------------------ cleaning
    def clean(
        self, table: StructureTable, summary: LoadSummary
    ) -> tuple[StructureTable, np.ndarray]:
        """Drop rows the query excludes, duplicate ids and unlabelled rows (recording each);
        return the rest and their weights."""
        summary.drop(reasons.UNREADABLE, table.unread)
        table = self._apply_query(table, summary)
        _, first = np.unique(table.ids.astype(str), return_index=True)
        duplicate = np.ones(len(table), dtype=bool)
        duplicate[first] = False
        summary.drop(
            reasons.DUPLICATE_ID, [(i, "repeats an earlier row's id") for i in table.ids[duplicate]]
        )
        y = table.y
        finite = np.isfinite(y)
        missing = ~finite.any(axis=1) & np.isnan(y).all(axis=1) & ~duplicate
        non_finite = ~finite.any(axis=1) & ~missing & ~duplicate
        notes = np.asarray(table.label_notes)
        summary.drop(
            reasons.MISSING_LABEL,
            [(i, note or "no label") for i, note in zip(table.ids[missing], notes[missing])],
        )
        summary.drop(
            reasons.NON_FINITE_LABEL,
            [(i, f"label {row.tolist()}") for i, row in zip(table.ids[non_finite], y[non_finite])],
        )
        keep = ~duplicate & finite.any(axis=1)
        kept = table.subset(keep)
        weights = np.isfinite(kept.y).astype(np.float32)
        summary.partially_labelled = int((weights == 0).any(axis=1).sum())
        return kept, weights

    def _apply_query(self, table: StructureTable, summary: LoadSummary) -> StructureTable:
        if not self.query:
            return table
        import pandas as pd

        labels = pd.DataFrame(table.y, columns=table.tasks)
        keep = np.asarray(labels.eval(self.query), dtype=bool)
        summary.drop(reasons.EXCLUDED_BY_QUERY, [(i, self.query) for i in table.ids[~keep]])
        return table.subset(keep)

    # ------------------------------------------------------------------ featurizing
    def featurize(self, table: StructureTable) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Features of each row and ``(row, reason)`` for rows that failed."""
        if isinstance(self.featurizer, CGCNNFeaturizer):
            X = self.featurizer.featurize(table.structures, n_jobs=self.n_jobs)
            return X, list(self.featurizer.failures)
        structures: list[Any] = []
        failures: list[tuple[int, str]] = []
        for i, item in enumerate(table.structures):
            try:
                structures.append(CGCNNFeaturizer.to_structure(item))
            except Exception as error:  # one unreadable crystal never sinks the load
                failures.append((i, f"{type(error).__name__}: {error}"))
                structures.append(None)
        readable = [s for s in structures if s is not None]
        features = list(self.featurizer.featurize(readable)) if readable else []
        X = np.empty(len(structures), dtype=object)
        values = iter(features)
        for i, s in enumerate(structures):
            X[i] = np.array([]) if s is None else next(values)
        failed_now = {i for i, _ in failures}
        failures += [
            (i, f"{type(self.featurizer).__name__} returned no features")
            for i, x in enumerate(X)
            if i not in failed_now and isinstance(x, np.ndarray) and x.size == 0
        ]
        with contextlib.suppress(ValueError):
            X = np.stack(list(X)) if not failures else X
        return X, sorted(failures)

    # ------------------------------------------------------------------ caching
    def _keys(self, sha256: str, tasks: Sequence[str]) -> tuple[dict, dict]:
        columns = {k: self.source_kwargs.get(k) for k in ("structure_column", "id_column")}
        featurized = {
            "source_sha256": sha256,
            "tasks": list(tasks),
            "label_columns": self.label_columns,
            "query": self.query,
            **columns,
            "featurizer": _featurizer_key(self.featurizer),
            "cleaning": 1,
            "graph_format": 2,
        }
        split = {
            "splitter": repr(self.splitter),
            "transformers": [t.get_directory_name() for t in self.transformer_generators],
        }
        return featurized, split

    def _sharded_dataset(self, table: StructureTable, root: str, summary: LoadSummary):
        """All usable rows as on-disk shards featurized by Dask (finished shards reused)."""
        from deepchem_cgcnn.data.shards import ShardedDataset, featurize_to_shards

        if not isinstance(self.featurizer, CGCNNFeaturizer):
            raise ValueError("scheduler='dask' featurizes with CGCNNFeaturizer only")
        folder = os.path.join(root, f"shards-{self.shard_size}")
        done = os.path.join(folder, "featurized.json")
        if self.reload and os.path.exists(done):
            saved = LoadSummary.from_dict(read_json(done))
            summary.dropped = saved.dropped
            summary.partially_labelled = saved.partially_labelled
            summary.from_cache = True
            return ShardedDataset(folder)
        kept, weights = self.clean(table, summary)
        y = np.nan_to_num(kept.y, nan=0.0, posinf=0.0, neginf=0.0)
        dataset = featurize_to_shards(
            folder,
            kept.structures,
            y,
            [str(i) for i in kept.ids],
            kept.tasks,
            featurizer_params(self.featurizer),
            w=weights,
            shard_size=self.shard_size,
            client=self.client,
            key={"source_sha256": table.sha256, "query": self.query},
        )
        summary.drop(reasons.FEATURIZATION_FAILED, dataset.failures())
        atomic_write_json(done, summary.to_dict())
        return dataset

    def _featurized_dataset(self, table: StructureTable, folder: str | None, summary: LoadSummary):
        """All usable rows as one dataset, from the cache when it holds them."""
        done = os.path.join(folder, "featurized.json") if folder else None
        if folder and done and self.reload and os.path.exists(done) and _verified(folder):
            cached = _readable_cache(
                folder,
                lambda f: (
                    LoadSummary.from_dict(read_json(done)),
                    store.load_dataset(os.path.join(f, "data")),
                ),
            )
            if cached is not None:
                saved, dataset = cached
                summary.dropped = saved.dropped
                summary.partially_labelled = saved.partially_labelled
                summary.from_cache = True
                return dataset
        kept, weights = self.clean(table, summary)
        X, failures = self.featurize(kept)
        summary.drop(
            reasons.FEATURIZATION_FAILED, [(kept.ids[i], reason) for i, reason in failures]
        )
        ok = np.ones(len(kept), dtype=bool)
        ok[[i for i, _ in failures]] = False
        y = np.nan_to_num(kept.y, nan=0.0, posinf=0.0, neginf=0.0)
        dataset = dc.data.NumpyDataset(
            X[ok], y[ok], weights[ok], kept.ids[ok], n_tasks=len(kept.tasks)
        )
        if folder is None or not store.can_store(dataset):
            if folder is not None:
                logger.info(
                    "%s: features are not plain arrays or crystal graphs; not cached "
                    "(the cache holds no pickled objects)",
                    self.name,
                )
            return dataset
        with _built_in_place(folder) as building:
            store.save_dataset(os.path.join(building, "data"), dataset)
            atomic_write_json(os.path.join(building, "featurized.json"), summary.to_dict())
        return dataset

    # ------------------------------------------------------------------ loading
    def load(self) -> LoadResult:
        """Read, clean, featurize, split and transform; or reload all of it from the cache.

        Returns
        -------
        LoadResult
            ``(tasks, (train, valid, test), transformers)`` (one dataset without a
            splitter) with ``.summary``; also kept as ``self.summary``.
        """
        started = time.perf_counter()
        index_dir = os.path.join(self.save_dir, f"{self.name}-featurized")
        known = self._source.quick_key(self.tasks, self.data_dir, index_dir)
        local = self.scheduler == "local"  # shards are split again on each load, never cached
        if known and self.reload and local:  # a cached split is served without parsing the source
            split_folder = self._folders(*known)[2]
            if os.path.exists(os.path.join(split_folder, "summary.json")) and _verified(
                split_folder
            ):
                result = self._from_split_cache(split_folder, known[1], started)
                if result is not None:
                    return result
        table = self.read()
        if self.reload:
            self._source.remember(table, index_dir)
        summary = LoadSummary(
            source=table.source, sha256=table.sha256, n_rows=len(table) + len(table.unread)
        )
        root, folder, split_folder = self._folders(table.sha256, table.tasks)
        with file_lock(os.path.join(root, ".lock")) if split_folder else contextlib.nullcontext():
            if (
                split_folder
                and local
                and os.path.exists(os.path.join(split_folder, "summary.json"))
                and _verified(split_folder)
            ):
                result = self._from_split_cache(split_folder, table.tasks, started)
                if result is not None:
                    return result
            return self._build(table, summary, root, folder, split_folder, started)

    def _build(
        self,
        table: StructureTable,
        summary: LoadSummary,
        root: str,
        folder: str | None,
        split_folder: str | None,
        started: float,
    ) -> LoadResult:
        sharded = self.scheduler == "dask"
        if sharded:
            os.makedirs(root, exist_ok=True)
            dataset = self._sharded_dataset(table, root, summary)
        else:
            dataset = self._featurized_dataset(table, folder, summary)
        datasets, transformers = self._split_and_transform(dataset, summary)
        summary.n_loaded = sum(len(d) for d in datasets)
        summary.seconds = time.perf_counter() - started
        stored = store.transformers_to_json(transformers)
        if (  # views of shards are made again in a moment; they are never copied
            split_folder
            and not sharded
            and stored is not None
            and all(store.can_store(d) for d in datasets)
        ):
            self._save_split(split_folder, datasets, stored, summary)
        return self._finish(table.tasks, datasets, transformers, summary)

    def _folders(self, sha256: str, tasks: Sequence[str]):
        """Cache folders: the key's root, its featurized rows, and its split (None without reload)."""
        featurized_key, split_key = self._keys(sha256, tasks)
        root = os.path.join(self.save_dir, f"{self.name}-featurized", _digest(featurized_key))
        if not self.reload:
            return root, None, None
        store.private_folder(self.save_dir)
        os.makedirs(root, exist_ok=True)
        atomic_write_json(
            os.path.join(root, "key.json"),
            as_json_data(featurized_key),
            indent=1,
        )
        return root, os.path.join(root, "all"), os.path.join(root, "split-" + _digest(split_key))

    def _from_split_cache(self, split_folder: str, tasks, started: float) -> LoadResult | None:
        """The cached split, or ``None`` when it cannot be read (it is then rebuilt)."""
        cached = _readable_cache(split_folder, self._reload_split)
        if cached is None:
            return None
        datasets, transformers = cached
        summary = LoadSummary.from_dict(read_json(os.path.join(split_folder, "summary.json")))
        summary.from_cache, summary.seconds = True, time.perf_counter() - started
        return self._finish(tasks, datasets, transformers, summary)

    def _finish(self, tasks, datasets, transformers, summary: LoadSummary) -> LoadResult:
        self.summary = summary
        logger.info("%s", summary)
        for reason, rows in summary.dropped.items():
            logger.info("%s: %d rows, e.g. %s", reason, len(rows), rows[:3])
        return LoadResult(list(tasks), tuple(datasets), transformers, summary)

    def _split_and_transform(self, dataset, summary: LoadSummary):
        if self.splitter is None:
            datasets = [dataset]
            names = ["all"]
        else:
            datasets = list(self.splitter.train_valid_test_split(dataset))
            names = ["train", "valid", "test"]
            used = set().union(*(set(d.ids.tolist()) for d in datasets))
            summary.drop(
                reasons.OUTSIDE_SPLIT,
                [(i, repr(self.splitter)) for i in dataset.ids if i not in used],
            )
        transformers = [g.create_transformer(datasets[0]) for g in self.transformer_generators]
        for transformer in transformers:
            datasets = [transformer.transform(d) for d in datasets]
        summary.split_sizes = {n: len(d) for n, d in zip(names, datasets)}
        return datasets, transformers

    @staticmethod
    def _save_split(split_folder: str, datasets, transformers: list, summary: LoadSummary):
        names = list(summary.split_sizes)
        with _built_in_place(split_folder) as building:
            for name, dataset in zip(names, datasets):
                store.save_dataset(os.path.join(building, name), dataset)
            atomic_write_json(os.path.join(building, "transformers.json"), transformers)
            atomic_write_json(os.path.join(building, "summary.json"), summary.to_dict())

    @staticmethod
    def _reload_split(split_folder: str):
        summary = read_json(os.path.join(split_folder, "summary.json"))
        datasets = [
            store.load_dataset(os.path.join(split_folder, name)) for name in summary["split_sizes"]
        ]
        transformers = store.transformers_from_json(
            read_json(os.path.join(split_folder, "transformers.json"))
        )
        return datasets, transformers
