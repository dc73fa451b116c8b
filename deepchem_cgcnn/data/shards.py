"""Datasets larger than memory: featurize into on-disk shards with Dask, train by streaming.

:func:`featurize_to_shards` cuts a table of crystals into shards of ``shard_size`` rows and
featurizes each shard as one task, on a Dask cluster (``client``: a
``dask.distributed.Client``, a scheduler address such as ``"tcp://head:8786"``, or None for
a ``LocalCluster`` on this machine). Each shard is written by its task straight into the
output folder in the package's cache format (numeric arrays + JSON, never pickle, with a
checksum manifest): first into a temporary folder, then renamed, so a shard folder is
either complete or absent. A worker that dies loses only its running shards, which Dask
reschedules; a run that is stopped keeps its finished shards, and running it again
featurizes only the missing ones. Rows that cannot be featurized are recorded per shard
and reach :class:`~deepchem_cgcnn.data.summary.LoadSummary` as in a one-machine load.

:class:`ShardedDataset` reads such a folder as a DeepChem ``Dataset`` whose graphs stay on
disk: ``iterbatches`` holds ``window`` shards at a time (memory bounded by the shard size,
not the dataset size), shuffling the shard order each epoch and the rows of the shards it
holds together, so batches mix crystals across shards. ``CGCNNModel.fit``, ``predict`` and
``evaluate`` stream it; ``select`` (what DeepChem's splitters call) makes views without
copying graphs. Why Dask rather than Ray: featurization is a bag of independent
Python tasks over files on a shared disk, which ``dask.distributed`` runs on a laptop
(``LocalCluster``), over SSH, or on SLURM/PBS (``dask-jobqueue``) with one small pure-Python
dependency set, and its futures retry the tasks of a lost worker by themselves; Ray's
object store and actors add nothing for this job.
"""

import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deepchem_cgcnn._io import (
    as_json_data,
    atomic_write_json,
    read_json,
    verify_manifest,
    write_manifest,
)
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.data import store
from deepchem_cgcnn.graph import CrystalGraph

dc = import_deepchem()
logger = logging.getLogger(__name__)
if TYPE_CHECKING:
    from deepchem.data import Dataset
else:
    Dataset = dc.data.Dataset

PLAN = "plan.json"
SHARD = "shard-{:06d}"
FAILURES = "failures.json"


class ShardPlanMismatchError(ValueError):
    """A shard folder holds shards of another table, featurizer or shard size."""


def _shard_folders(out_dir: str, n_shards: int) -> list[str]:
    return [os.path.join(out_dir, SHARD.format(i)) for i in range(n_shards)]


def _finished(folder: str) -> bool:
    return os.path.isdir(folder) and verify_manifest(folder) is None


def featurize_shard(
    folder: str,
    structures: Sequence[Any],
    y: np.ndarray,
    w: np.ndarray,
    ids: Sequence[str],
    tasks: Sequence[str],
    featurizer_params: dict[str, Any],
) -> tuple[str, int, list[tuple[str, str]]]:
    """Featurize one shard's rows and write it atomically into ``folder`` (one Dask task).

    Returns the folder, the number of featurized rows and ``(id, reason)`` of the rest.
    """
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer

    featurizer = CGCNNFeaturizer(**featurizer_params)
    X = featurizer.featurize(list(structures))
    failed = dict(featurizer.failures)
    ok = np.array([i not in failed for i in range(len(structures))], dtype=bool)
    failures = [(str(ids[i]), reason) for i, reason in sorted(failed.items())]
    dataset = dc.data.NumpyDataset(
        np.asarray(X, dtype=object)[ok] if len(X) else np.zeros(0, dtype=object),
        np.asarray(y)[ok],
        np.asarray(w)[ok],
        np.asarray(ids, dtype=object)[ok],
        n_tasks=len(tasks),
    )
    building = f"{folder}.tmp-{uuid.uuid4().hex}"
    store.save_dataset(building, dataset)
    atomic_write_json(os.path.join(building, FAILURES), failures)
    write_manifest(building)
    try:
        os.rename(building, folder)
    except OSError:  # another attempt of the same task finished first: keep that one
        shutil.rmtree(building, ignore_errors=True)
        if not _finished(folder):
            raise
    return folder, int(ok.sum()), failures


def _client(client: Any) -> tuple[Any, Any]:
    """A Dask client (and a cluster to close, when one was made here)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        raise ImportError(
            "featurizing with Dask needs dask.distributed: pip install 'deepchem-cgcnn[distributed]'"
        ) from error
    if client is None:
        cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
        return Client(cluster), cluster
    if isinstance(client, str):
        return Client(client), None
    return client, None


def featurize_to_shards(
    out_dir: str,
    structures: Sequence[Any],
    y: np.ndarray,
    ids: Sequence[str],
    tasks: Sequence[str],
    featurizer_params: dict[str, Any] | None = None,
    w: np.ndarray | None = None,
    shard_size: int = 2000,
    client: Any = None,
    key: dict[str, Any] | None = None,
) -> "ShardedDataset":
    """Featurize rows into ``out_dir/shard-NNNNNN`` folders on a Dask cluster; return them.

    Parameters
    ----------
    out_dir: str
        The shard folder (on a file system every worker sees).
    structures, y, ids, tasks, w
        The rows: anything :class:`~deepchem_cgcnn.CGCNNFeaturizer` reads (CIF text,
        Structures, dicts), ``(n, n_tasks)`` labels, ids, task names, weights (default 1).
    featurizer_params: dict, optional
        :class:`~deepchem_cgcnn.CGCNNFeaturizer` settings (default: its defaults).
    shard_size: int, default 2000
        Rows per shard (and per task): a shard's graphs take ~4 MB per 1,000 crystals.
    client: dask.distributed.Client, str or None
        The cluster: a client, a scheduler address, or None for a ``LocalCluster``.
    key: dict, optional
        What identifies the rows (e.g. the source's checksum); a folder made with another
        key, featurizer or shard size raises :class:`ShardPlanMismatchError`.

    Examples
    --------
    >>> import tempfile
    >>> from dask.distributed import Client
    >>> from deepchem_cgcnn.examples import example_structures
    >>> crystals = example_structures()
    >>> with Client(processes=False, dashboard_address=None) as client:
    ...     shards = featurize_to_shards(tempfile.mkdtemp(), list(crystals.values()),
    ...                                  np.arange(12.0), list(crystals), ["e"],
    ...                                  shard_size=5, client=client)
    >>> len(shards), shards.n_shards
    (12, 3)
    """
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer
    from deepchem_cgcnn.featurizer import featurizer_params as params_of

    params = featurizer_params or params_of(CGCNNFeaturizer())
    n = len(structures)
    y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64).reshape(n, -1)
    plan = {
        "n_rows": n,
        "shard_size": shard_size,
        "tasks": [str(t) for t in tasks],
        "featurizer": params,
        "key": key or {},
    }
    plan = as_json_data(plan)
    os.makedirs(out_dir, exist_ok=True)
    plan_path = os.path.join(out_dir, PLAN)
    if os.path.exists(plan_path):
        existing = read_json(plan_path)
        if existing != plan:
            raise ShardPlanMismatchError(
                f"{out_dir} holds shards of another plan ({_difference(existing, plan)}); "
                f"use another folder or delete it"
            )
    else:
        atomic_write_json(plan_path, plan, indent=1)
    for name in os.listdir(out_dir):  # temporaries of tasks killed mid-write
        if ".tmp-" in name:
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    folders = _shard_folders(out_dir, -(-n // shard_size))
    todo = [i for i, folder in enumerate(folders) if not _finished(folder)]
    for i in todo:
        shutil.rmtree(folders[i], ignore_errors=True)  # damaged: redone
    logger.info("%s: %d of %d shards to featurize", out_dir, len(todo), len(folders))
    if todo:
        dask_client, cluster = _client(client)
        try:
            from dask.distributed import as_completed

            futures = [
                dask_client.submit(
                    featurize_shard,
                    folders[i],
                    list(structures[i * shard_size : (i + 1) * shard_size]),
                    y[i * shard_size : (i + 1) * shard_size],
                    w[i * shard_size : (i + 1) * shard_size],
                    [str(x) for x in ids[i * shard_size : (i + 1) * shard_size]],
                    plan["tasks"],
                    params,
                    key=f"featurize-{os.path.basename(folders[i])}-{uuid.uuid4().hex[:8]}",
                    retries=2,
                )
                for i in todo
            ]
            for future in as_completed(futures):
                folder, n_ok, failures = future.result()
                logger.info("%s: %d rows featurized, %d failed", folder, n_ok, len(failures))
        finally:
            if cluster is not None:
                dask_client.close()
                cluster.close()
    return ShardedDataset(out_dir)


def _difference(old: dict, new: dict) -> str:
    from deepchem_cgcnn.training import differing_fields

    return ", ".join(differing_fields(old, new)[:5])


class ShardedDataset(Dataset):
    """Crystal graphs in on-disk shards (from :func:`featurize_to_shards`), streamed.

    Labels, weights and ids are held in memory (a few bytes per crystal); graphs are
    read one window of shards at a time. Every shard is checked against its checksum
    manifest the first time this process reads it.

    Parameters
    ----------
    folder: str
        The shard folder.
    rows: np.ndarray, optional
        Global row numbers of a view, increasing (what :meth:`select` makes); default all.
    window: int, default 2
        Shards read (and shuffled together) at a time by ``iterbatches``; with the rows
        left over for the next batch, at most ``2 * window`` shards are in memory.
    """

    def __init__(self, folder: str, rows: np.ndarray | None = None, window: int = 2) -> None:
        self.folder = folder
        self.window = window
        plan = read_json(os.path.join(folder, PLAN))
        self.tasks = np.array(plan["tasks"])
        folders = _shard_folders(folder, -(-plan["n_rows"] // plan["shard_size"]))
        missing = [f for f in folders if not os.path.isfile(os.path.join(f, "dataset.json"))]
        if missing:
            raise FileNotFoundError(
                f"{folder}: {len(missing)} of {len(folders)} shards are missing (e.g. "
                f"{os.path.basename(missing[0])}); run featurize_to_shards again to finish them"
            )
        self.shard_folders = folders
        ys, ws, ids, shard_of = [], [], [], []
        for s, shard in enumerate(folders):
            meta = read_json(os.path.join(shard, "dataset.json"))
            ys.append(np.load(os.path.join(shard, "y.npy"), allow_pickle=False))
            ws.append(np.load(os.path.join(shard, "w.npy"), allow_pickle=False))
            ids.extend(meta["ids"])
            shard_of.append(np.full(meta["n"], s, dtype=np.int64))
        all_shards = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum([len(x) for x in shard_of])])
        self._rows = np.arange(len(all_shards)) if rows is None else np.asarray(rows, np.int64)
        if np.any(np.diff(self._rows) < 0):
            raise ValueError(f"{folder}: rows of a view must be in increasing order")
        self._shard = all_shards[self._rows]
        self._local = self._rows - starts[self._shard]
        n_tasks = len(self.tasks)
        self._y = np.concatenate(ys).reshape(-1, n_tasks)[self._rows]
        self._w = np.concatenate(ws).reshape(-1, n_tasks)[self._rows]
        self._ids = np.array(ids, dtype=object)[self._rows]
        self._verified: set[int] = set()

    # ------------------------------------------------------------------ Dataset API
    def __len__(self) -> int:
        return len(self._rows)

    @property
    def n_shards(self) -> int:
        return len(set(self._shard.tolist()))

    def get_shape(self) -> tuple[tuple[int, ...], ...]:
        n = len(self)
        return (n,), self._y.shape, self._w.shape, (n,)

    def get_task_names(self) -> np.ndarray:
        return self.tasks

    @property
    def y(self) -> np.ndarray:
        return self._y

    @property
    def w(self) -> np.ndarray:
        return self._w

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def X(self) -> np.ndarray:
        """All graphs in memory (what streaming avoids; for small views only)."""
        graphs = np.empty(len(self), dtype=object)
        for shard, positions, local in self._by_shard(np.arange(len(self))):
            graphs[positions] = self._graphs(shard)[local]
        return graphs

    def failures(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of every row that could not be featurized, over all shards."""
        return [
            (str(i), str(reason))
            for shard in self.shard_folders
            for i, reason in read_json(os.path.join(shard, FAILURES))
        ]

    def select(self, indices: Sequence[int] | np.ndarray, select_dir: str | None = None) -> Any:
        """A view of the rows at ``indices``, kept in the dataset's order (as DeepChem's
        ``DiskDataset.select`` keeps them), so that streaming in order (``predict``,
        ``iter_graphs``) meets the rows in the order of the view's ``y`` and ``ids``; no
        graph is read or copied."""
        rows = np.sort(self._rows[np.asarray(indices, np.int64)])
        return ShardedDataset(self.folder, rows, self.window)

    def iter_graphs(self) -> Iterator[CrystalGraph]:
        """Every graph of the view in order, one shard in memory at a time."""
        for shard, _, local in self._by_shard(np.arange(len(self))):
            yield from self._graphs(shard)[local]

    def itersamples(self) -> Iterator[tuple[Any, np.ndarray, np.ndarray, Any]]:
        for X, y, w, ids in self.iterbatches(batch_size=1, deterministic=True):
            yield X[0], y[0], w[0], ids[0]

    def iterbatches(
        self,
        batch_size: int | None = None,
        epochs: int = 1,
        deterministic: bool = False,
        pad_batches: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Batches of ``(graphs, y, w, ids)``; shuffled across each window of shards unless
        ``deterministic``. ``pad_batches`` is ignored (CGCNN needs no fixed batch size)."""
        batch_size = batch_size or len(self) or 1
        for _ in range(epochs):
            shards = np.unique(self._shard)
            if deterministic:
                yield from self.stream(shards, batch_size)
            else:
                yield from self.stream(np.random.permutation(shards), batch_size, np.random)

    def shard_sizes(self) -> dict[int, int]:
        """Rows of this view in each shard it draws from."""
        shards, counts = np.unique(self._shard, return_counts=True)
        return dict(zip(shards.tolist(), counts.tolist()))

    def stream(
        self,
        shards: Sequence[int] | np.ndarray,
        batch_size: int,
        rng: Any = None,
        n_batches: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Batches from the view's rows in ``shards``, read ``window`` shards at a time, in
        that order; with ``rng`` (``np.random`` or a ``RandomState``) the rows of each window
        are shuffled together. With ``n_batches``, exactly that many full batches are made,
        starting over from the first shard when the rows run out (the padding of a process
        whose share is smaller), else every row once and a last partial batch."""
        shards = np.asarray(shards, dtype=np.int64)
        made, pending = 0, np.zeros(0, np.int64)
        held: dict[int, np.ndarray] = {}
        while True:
            for start in range(0, len(shards), self.window):
                group = shards[start : start + self.window]
                waiting = set(np.unique(self._shard[pending]).tolist())
                held = {s: graphs for s, graphs in held.items() if s in waiting}
                positions = np.nonzero(np.isin(self._shard, group))[0]
                if rng is not None:
                    positions = rng.permutation(positions)
                for s in group.tolist():
                    held[s] = self._graphs(s)
                queue = np.concatenate([pending, positions])
                full = len(queue) - len(queue) % batch_size
                for b in range(0, full, batch_size):
                    if n_batches is not None and made == n_batches:
                        return
                    yield self._batch(queue[b : b + batch_size], held)
                    made += 1
                pending = queue[full:]
            if n_batches is None:
                if len(pending):
                    yield self._batch(pending, held)
                return
            if made == n_batches or len(shards) == 0:
                return

    def transform(self, transformer: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{self.folder}: a ShardedDataset is not transformed in place; CGCNNModel "
            f"normalizes regression targets itself (normalize_targets=True)"
        )

    # ------------------------------------------------------------------ internals
    def _by_shard(self, positions: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        for shard in np.unique(self._shard[positions]).tolist():
            mine = positions[self._shard[positions] == shard]
            yield shard, mine, self._local[mine]

    def _graphs(self, shard: int) -> np.ndarray:
        folder = self.shard_folders[shard]
        if shard not in self._verified:
            problem = verify_manifest(folder)
            if problem is not None:
                raise ValueError(f"{folder}: {problem}; delete it and featurize again")
            self._verified.add(shard)
        return store.load_dataset(folder).X

    def _batch(self, positions: np.ndarray, held: dict[int, np.ndarray]) -> tuple:
        graphs = np.empty(len(positions), dtype=object)
        for k, p in enumerate(positions.tolist()):
            graphs[k] = held[int(self._shard[p])][self._local[p]]
        return graphs, self._y[positions], self._w[positions], self._ids[positions]
