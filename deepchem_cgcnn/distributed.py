"""Training on several processes, GPUs or nodes: CGCNN under a Lightning ``Trainer`` (DDP).

:func:`fit_distributed` trains a :class:`~deepchem_cgcnn.CGCNNModel` with data-parallel
processes (``strategy="ddp"``): every process holds the model, takes its own share of each
epoch's crystals (a ``DistributedSampler`` over crystals), and gradients are averaged
across processes after every step. It uses the run folder of single-process training
(:class:`~deepchem_cgcnn.training.RunFolder`: ``last.pt``, ``best.pt``, ``record.json``,
``log.csv``), so a distributed run resumes after a kill, a single-process run resumes
under DDP and back, and the trained model is an ordinary ``CGCNNModel`` (the package's
``save_model``/``load_model`` and DeepChem's ``save_checkpoint``/``restore`` work as always).

Why not DeepChem's ``dc.models.lightning`` wrappers (DeepChem 2.8): its
``DCLightningDatasetModule`` wraps ``make_pytorch_dataset``, an iterable dataset that
yields whole batches, to which Lightning cannot attach a distributed sampler, so every
process would train on every crystal; its ``DCLightningModule`` collates with the model's
``_prepare_batch``, which moves tensors to ``dc_model.device``, one device for all
processes (``cuda:0`` on every rank of a multi-GPU machine); neither validates, keeps the
best epoch or resumes. The two small classes here keep the model, loss, optimizer and
learning-rate schedule of single-process training and leave the rest to Lightning.

Batch norm: each process normalizes its own micro-batch (``batch_size`` crystals per
process, so ``devices * num_nodes * batch_size`` per optimizer step), and DDP copies the
running statistics of rank 0 to the others before every step. With ``sync_batchnorm=True``
(CUDA only: ``SyncBatchNorm`` needs GPUs) the statistics of each step are those of the
whole global batch instead, as one process with the global batch would compute them.
FSDP is refused: it shards parameters, gradients and optimizer state to save memory, but a
CGCNN has ~80,000 parameters (0.3 MB; with Adam's state under 1 MB), while its memory goes
to the batch's graph activations, which FSDP does not shard; it would add communication
for no saving.

Needs ``pip install 'deepchem-cgcnn[distributed]'`` (Lightning). Run it from a script
(``strategy="ddp"`` starts the other processes by running the same command again), with
``torchrun``, or under a cluster scheduler that Lightning detects (SLURM, LSF, ...);
``docs/scaling.md`` has the commands.
"""

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from deepchem_cgcnn.graph import CrystalGraph, batch_graphs
from deepchem_cgcnn.training import RunFolder, TrainingRecord, mean_absolute_error

try:
    import lightning as L
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "distributed training needs PyTorch Lightning: pip install 'deepchem-cgcnn[distributed]'"
    ) from error

STRATEGIES = ("ddp",)


class CrystalSampler(DistributedSampler):
    """``DistributedSampler`` over a dataset's crystals whose epochs continue a resumed run.

    Each process gets ``ceil(n / world_size)`` crystals per epoch, a disjoint share of one
    random permutation seeded by ``seed + epoch``; the last share is padded with crystals
    from the permutation's start (PyTorch's documented padding, fewer than ``world_size``
    repeats per epoch). ``first_epoch`` makes epoch 0 of a resumed Trainer draw the
    permutation of the run's epoch ``first_epoch``, as the uninterrupted run would.

    Examples
    --------
    >>> shares = [list(CrystalSampler(5, num_replicas=2, rank=r, seed=0)) for r in (0, 1)]
    >>> sorted(shares[0] + shares[1])[:5] == [0, 1, 2, 3, 4], len(shares[0]), len(shares[1])
    (True, 3, 3)
    """

    def __init__(
        self,
        n_crystals: int,
        num_replicas: int,
        rank: int,
        seed: int,
        first_epoch: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__(
            range(n_crystals),  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.first_epoch = first_epoch
        self.epoch = first_epoch

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(self.first_epoch + epoch)


class GraphCollator:
    """Turns a list of crystal indices into the model's batch: input tensors, labels, weights
    (on the host; Lightning moves them to each process's device)."""

    def __init__(self, dataset: Any) -> None:
        self.graphs = np.asarray(dataset.X, dtype=object).reshape(-1)
        n = len(self.graphs)
        self.y = np.asarray(dataset.y, dtype=np.float32).reshape(n, -1)
        self.w = np.asarray(dataset.w, dtype=np.float32).reshape(n, -1)

    def __call__(self, indices: Sequence[int]) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        inputs = batch_graphs([self.graphs[i] for i in rows]).tensors()
        return inputs, torch.from_numpy(self.y[rows]), torch.from_numpy(self.w[rows])


def shard_shares(
    sizes: dict[int, int], world_size: int, rank: int, seed: int, epoch: int, batch_size: int
) -> tuple[np.ndarray, int]:
    """This process's shards for an epoch, and the number of batches every process makes.

    The shards are permuted by ``seed + epoch`` and dealt round-robin; every process makes
    as many full batches as the largest share needs, so the one with fewer rows starts over
    on its own shards (padding, as ``DistributedSampler`` pads): no crystal is left out.

    Examples
    --------
    >>> sizes = {0: 10, 1: 10, 2: 5}  # rows per shard
    >>> shard_shares(sizes, world_size=2, rank=0, seed=0, epoch=0, batch_size=4)
    (array([2, 0]), 4)
    >>> shard_shares(sizes, world_size=2, rank=1, seed=0, epoch=0, batch_size=4)  # 10 rows: 3 batches, padded to 4
    (array([1]), 4)
    """
    shards = np.random.RandomState(seed + epoch).permutation(np.array(sorted(sizes), np.int64))
    if len(shards) < world_size:
        raise ValueError(
            f"{len(shards)} shards for {world_size} processes: make smaller shards "
            f"(featurize_to_shards(shard_size=...)) so that each process gets one"
        )
    rows = [sum(sizes[int(s)] for s in shards[r::world_size]) for r in range(world_size)]
    return shards[rank::world_size], max(-(-n // batch_size) for n in rows)


class ShardStream(torch.utils.data.IterableDataset):
    """Batches streamed from this process's shards of a
    :class:`~deepchem_cgcnn.data.shards.ShardedDataset` (see :func:`shard_shares`); each
    pass over it is the next epoch."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        first_epoch: int = 0,
    ) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.epoch = first_epoch

    def __iter__(self) -> Any:
        epoch, self.epoch = self.epoch, self.epoch + 1
        shards, n_batches = shard_shares(
            self.dataset.shard_sizes(),
            self.world_size,
            self.rank,
            self.seed,
            epoch,
            self.batch_size,
        )
        rng = np.random.RandomState([self.seed, epoch, self.rank])
        for graphs, y, w, _ in self.dataset.stream(shards, self.batch_size, rng, n_batches):
            yield (
                batch_graphs(list(graphs)).tensors(),
                torch.from_numpy(np.asarray(y, np.float32)),
                torch.from_numpy(np.asarray(w, np.float32)),
            )


class CrystalBatches(L.LightningDataModule):
    """Each process's share of the training crystals, in batches of ``batch_size``: a
    :class:`CrystalSampler` over an in-memory dataset, or a :class:`ShardStream` over
    on-disk shards (memory bounded by the shard size)."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, first_epoch: int = 0) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.first_epoch = first_epoch

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        assert trainer is not None
        if hasattr(self.dataset, "stream"):
            stream = ShardStream(
                self.dataset,
                self.batch_size,
                trainer.world_size,
                trainer.global_rank,
                self.seed,
                self.first_epoch,
            )
            return DataLoader(stream, batch_size=None)
        sampler = CrystalSampler(
            len(self.dataset), trainer.world_size, trainer.global_rank, self.seed, self.first_epoch
        )
        return DataLoader(
            range(len(self.dataset)),  # type: ignore[arg-type]
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=GraphCollator(self.dataset),
        )


class CGCNNLightning(L.LightningModule):
    """A :class:`~deepchem_cgcnn.CGCNNModel`'s network, loss and optimizer as a Lightning module.

    Each epoch: the learning rate of the run's schedule (the fraction of the epoch or time
    budget used, identical on every process), training steps with the model's own loss, then
    on the process of global rank 0 the validation error of the whole validation set, the
    bookkeeping of the run folder and the stop decision, which is broadcast to the others.
    """

    def __init__(
        self,
        model: Any,
        run: RunFolder,
        valid: Any,
        evaluate: Callable[[Any, Any], float],
        first_epoch: int,
        used_seconds: float,
    ) -> None:
        super().__init__()
        self.network = model.model
        self._model = model
        self._run = run
        self._valid = valid
        self._evaluate = evaluate
        self.first_epoch = first_epoch
        self.used_seconds = used_seconds
        self._epoch = first_epoch
        self._lr = math.nan
        self._started = 0.0
        self._loss_sum = torch.zeros(())
        self._n_batches = 0

    def configure_optimizers(self) -> Any:
        return self._model._pytorch_optimizer

    def on_fit_start(self) -> None:
        self._model.device = self.device  # rank 0 validates on its own device
        if self.trainer.is_global_zero:
            self._run.open_for_writing(self.first_epoch)

    def on_train_epoch_start(self) -> None:
        self._epoch = self.first_epoch + self.current_epoch
        self._lr = self._run.learning_rate(self._epoch, self.used_seconds)
        self._loss_sum = torch.zeros((), device=self.device)
        self._n_batches = 0
        self._started = time.perf_counter()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, labels, weights = batch
        outputs = self.network(inputs)
        outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
        if self._model._loss_outputs is not None:
            outputs = [outputs[i] for i in self._model._loss_outputs]
        loss: torch.Tensor = self._model._loss_fn(outputs, [labels], [weights])
        self._loss_sum += loss.detach()
        self._n_batches += 1
        self._model._global_step += 1
        return loss

    def on_train_epoch_end(self) -> None:
        elapsed = time.perf_counter() - self._started
        strategy = self.trainer.strategy
        mean_loss = self._loss_sum / max(self._n_batches, 1)
        loss = float(strategy.reduce(mean_loss, reduce_op="mean"))
        stop, used = False, self.used_seconds + elapsed
        if self.trainer.is_global_zero:
            error = self._evaluate(self._model, self._valid) if math.isfinite(loss) else math.nan
            self.network.train()
            if not (math.isfinite(loss) and math.isfinite(error)):
                used = self.used_seconds
            stop = self._run.end_epoch(self._epoch, loss, error, self._lr, used)
            stop = stop or not self._run.has_budget(self._epoch + 1, used)
        stop, used = strategy.broadcast((stop, used), src=0)
        self.used_seconds = used
        self.trainer.should_stop = bool(stop)

    def on_fit_end(self) -> None:
        self.trainer.strategy.barrier("cgcnn-best-state-written")


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """Lightning writes the rendezvous into ``os.environ`` (``MASTER_ADDR``, ``MASTER_PORT``,
    ``LOCAL_RANK``, ``NODE_RANK``, ...); put it back as it was, or every later program this
    process starts (another distributed run, say) inherits a stale rank and port."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update({k: v for k, v in before.items() if os.environ.get(k) != v})


@dataclass
class DistributedResult:
    """What :func:`fit_distributed` returns in each process. Only the process with
    ``is_global_zero`` holds the full ``record`` and should write or report anything."""

    record: TrainingRecord
    is_global_zero: bool
    world_size: int
    global_rank: int


def _check_strategy(strategy: str, accelerator: str, sync_batchnorm: bool) -> None:
    if strategy.startswith("fsdp"):
        raise ValueError(
            "strategy 'fsdp' is not supported: FSDP shards parameters and optimizer state, "
            "but a CGCNN's ~80,000 parameters take under 1 MB with Adam's state; its memory "
            "is the batch's graph activations, which FSDP does not shard. Use 'ddp'."
        )
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy {strategy!r}: use 'ddp', from a script, torchrun or a cluster scheduler "
            f"(spawning strategies would train copies of the model in other processes and "
            f"leave this one's model and run record behind)"
        )
    if sync_batchnorm and accelerator not in ("gpu", "cuda"):
        raise ValueError(
            "sync_batchnorm=True needs accelerator='gpu' (SyncBatchNorm runs on CUDA only); "
            "on CPUs each process normalizes its own micro-batch"
        )


def fit_distributed(
    model: Any,
    train: Any,
    valid: Any,
    out_dir: str,
    max_epochs: int,
    max_minutes: float = math.inf,
    learning_rate_at: Callable[[float], float] | None = None,
    evaluate: Callable[[Any, Any], float] = mean_absolute_error,
    config: dict | None = None,
    patience: int | None = None,
    tensorboard_dir: str | None = None,
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "ddp",
    accelerator: str = "cpu",
    sync_batchnorm: bool = False,
    seed: int = 0,
) -> DistributedResult:
    """Train ``model`` on ``train`` with ``devices * num_nodes`` data-parallel processes.

    The same run as :func:`~deepchem_cgcnn.training.train_with_validation` (same run folder,
    schedule, validation, best-epoch selection, resumption, stop rules), with each epoch's
    crystals shared among the processes (:class:`CrystalSampler`) and gradients averaged
    over them. ``model.batch_size`` crystals go to each process per step. The target
    normalizer and the training-set facts of the model card are computed once from the
    whole training set (:meth:`~deepchem_cgcnn.CGCNNModel.prepare_training`), identically
    in every process. At the end every process holds the best epoch's weights.

    Parameters
    ----------
    model: CGCNNModel
        The model to train (its optimizer, batch size and loss are used).
    train, valid: dc.data.Dataset
        Crystal graphs with labels; every process reads both (validation runs on rank 0).
        A :class:`~deepchem_cgcnn.data.shards.ShardedDataset` ``train`` is streamed: each
        epoch every process gets whole shards (:func:`shard_shares`) and holds a window of
        them at a time, whatever the dataset's size.
    out_dir: str
        The run folder (on a file system every node sees, for several nodes).
    max_epochs, max_minutes, learning_rate_at, evaluate, config, patience, tensorboard_dir
        As :func:`~deepchem_cgcnn.training.train_with_validation`; ``learning_rate_at``
        defaults to the optimizer's constant rate.
    devices, num_nodes, strategy, accelerator
        Lightning ``Trainer`` arguments: processes (or GPUs) per node, nodes, ``"ddp"``
        (the only strategy: run from a script, under ``torchrun`` or a cluster scheduler;
        Lightning starts the other local processes by running the same command again),
        ``"cpu"`` (gloo) or ``"gpu"`` (NCCL).
    sync_batchnorm: bool, default False
        Batch-norm statistics over the global batch (GPUs only).
    seed: int, default 0
        Seed of the per-epoch permutation of the training crystals.

    Returns
    -------
    DistributedResult

    Examples
    --------
    >>> import tempfile, numpy as np, deepchem as dc
    >>> from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
    >>> from deepchem_cgcnn.examples import example_structures
    >>> graphs = CGCNNFeaturizer().featurize(list(example_structures().values()))
    >>> data = dc.data.NumpyDataset(graphs, np.arange(len(graphs), dtype=float))
    >>> model = CGCNNModel(batch_size=4, learning_rate=0.01)
    >>> result = fit_distributed(model, data, data, tempfile.mkdtemp(), max_epochs=2, devices=1)
    >>> result.is_global_zero, result.record.epochs
    (True, [0, 1])
    """
    _check_strategy(strategy, accelerator, sync_batchnorm)
    if getattr(model, "graph_step", False):
        raise ValueError(
            "graph_step replays one process's step; fit_distributed trains with Lightning's "
            "step: make the model with graph_step=False"
        )
    with _environment_kept():
        streamed = hasattr(train, "stream")  # a ShardedDataset: graphs stay on disk
        if not streamed:
            graphs = np.asarray(train.X, dtype=object).reshape(-1)
            bad = [i for i, g in enumerate(graphs) if not isinstance(g, CrystalGraph)]
            if bad:
                raise TypeError(
                    f"training item {bad[0]} ({np.asarray(train.ids)[bad[0]]}) is not a "
                    f"CrystalGraph; featurize with CGCNNFeaturizer and drop failed structures first"
                )
        model.prepare_training(train)
        model._check_settings([next(iter(train.iter_graphs()))] if streamed else list(graphs))
        model._ensure_built()
        base_rate = model._pytorch_optimizer.defaults["lr"]
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            sync_batchnorm=sync_batchnorm,
            max_epochs=max_epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
        )
        run = RunFolder(
            model,
            out_dir,
            config,
            learning_rate_at or (lambda fraction: base_rate),
            max_epochs,
            max_minutes,
            getattr(evaluate, "label", "error"),
            patience,
            tensorboard_dir,
            writes=False,  # known only once Lightning has started the processes (on_fit_start)
        )
        # every process resumes from the same folder before Lightning connects them
        first_epoch, used = run.start(train.y, train.w)
        if run.has_budget(first_epoch, used):
            trainer.fit_loop.max_epochs = max_epochs - first_epoch
            module = CGCNNLightning(model, run, valid, evaluate, first_epoch, used)
            data = CrystalBatches(train, model.batch_size, seed, first_epoch)
            trainer.fit(module, datamodule=data)
        record = run.finish()
        return DistributedResult(
            record, trainer.is_global_zero, trainer.world_size, trainer.global_rank
        )
