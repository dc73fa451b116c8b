"""A resumable, time-budgeted training loop with the best validation checkpoint kept."""

import contextlib
import json
import logging
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepchem_cgcnn._io import as_json_data
from deepchem_cgcnn.weight_average import WeightAverage

logger = logging.getLogger(__name__)


def _predict_quietly(model, dataset) -> np.ndarray:
    """Predictions for scoring: the domain check is for users' predictions, not for metrics
    computed every epoch (a CGCNNModel skips it; other predictors' warnings are silenced)."""
    from deepchem_cgcnn.domain import DomainWarning
    from deepchem_cgcnn.model import CGCNNModel

    if isinstance(model, CGCNNModel):
        return np.asarray(model.predict(dataset, warn_domain=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainWarning)
        return np.asarray(model.predict(dataset))


def _label(text: str) -> Callable[[Callable], Callable]:
    def attach(function: Callable) -> Callable:
        function.label = text  # type: ignore[attr-defined]
        return function

    return attach


@_label("1 - ROC-AUC")
def classification_error(model, dataset) -> float:
    """1 - ROC-AUC of a binary classifier on a dataset (lower is better, like an MAE)."""
    from sklearn.metrics import roc_auc_score

    probability = _predict_quietly(model, dataset)[:, 1]
    labels = np.asarray(dataset.y, dtype=np.float64).reshape(len(dataset), -1)[:, 0]
    labelled = np.isfinite(labels)
    return float(1.0 - roc_auc_score(labels[labelled], probability[labelled]))


@_label("MAE")
def mean_absolute_error(model, dataset) -> float:
    """MAE of a regression model on a dataset, over the labels with non-zero weight."""
    prediction = _predict_quietly(model, dataset).reshape(len(dataset), -1)
    y = dataset.y.reshape(len(dataset), -1)
    weights = np.asarray(dataset.w).reshape(len(dataset), -1)
    labelled = np.isfinite(y) & (np.broadcast_to(weights, y.shape) > 0)
    return float(np.abs(prediction[labelled] - y[labelled]).mean())


class RunMismatchError(ValueError):
    """A run folder holds a run made with other settings; the message names the folder and fields."""


class TrainConfigError(ValueError):
    """A :class:`TrainConfig` whose options contradict each other or are out of range."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or validation error before any finite best epoch."""


@dataclass
class TrainingRecord:
    """What happened in a training run, epoch by epoch.

    ``stopped`` is empty for a run that used its budget, else why it stopped early
    (e.g. a non-finite loss).
    """

    epochs: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_mae: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid_mae: float = math.inf
    config: dict = field(default_factory=dict)
    stopped: str = ""
    valid_mae_raw: list[float] = field(default_factory=list)
    """With a weight average: the trained weights' own validation error (``valid_mae`` is the
    average's)."""
    best_weights: str = ""
    """With a weight average: which weights the best epoch kept, ``'average'`` or ``'trained'``."""
    resumed_seconds: float = 0.0
    """The training seconds of earlier processes: when this one resumed the run, or took it
    from a card (``--refit-from``); else 0. The card's total wall time adds them."""
    threads: list[int] = field(default_factory=list)
    """The torch threads of the process that trained each epoch (runs recorded before this
    field have none for their earlier epochs): the card's ``machine`` counts them."""

    def history(self) -> dict[str, list]:
        """The validation error after each epoch against cumulative training seconds, rounded
        for a model card (classification: the error is 1 - ROC-AUC)."""
        history = {
            "seconds": [round(s, 1) for s in self.seconds],
            "valid_error": [round(v, 5) for v in self.valid_mae],
            "learning_rate": [float(f"{lr:.4g}") for lr in self.learning_rate],
        }
        if self.valid_mae_raw:
            history["valid_error_trained_weights"] = [round(v, 5) for v in self.valid_mae_raw]
        return history


LOG = "log.csv"
LAST_STATE = "last.pt"
BEST_STATE = "best.pt"
RECORD = "record.json"


def _write_log(path: str, record: TrainingRecord) -> None:
    """The run so far as CSV (epoch, seconds, learning rate, training loss, validation error;
    with a weight average, the trained weights' own validation error last)."""
    from deepchem_cgcnn._io import atomic_write

    columns = [record.epochs, record.seconds, record.learning_rate, record.train_loss]
    header = "epoch,seconds,learning_rate,train_loss"
    if record.valid_mae:
        columns.append(record.valid_mae)
        header += ",valid_error"
    if record.valid_mae_raw:
        columns.append(record.valid_mae_raw)
        header += ",valid_error_trained_weights"
    lines = [
        ",".join([str(row[0]), f"{row[1]:.2f}", *(f"{value:.6g}" for value in row[2:])])
        for row in zip(*columns)
    ]
    text = header + "\n" + "".join(line + "\n" for line in lines)
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def differing_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two nested dicts differ.

    Examples
    --------
    >>> differing_fields({"task": "band_gap", "model": {"conv": 3}},
    ...                  {"task": "formation_energy", "model": {"conv": 3}})
    ['task']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        names = []
        for key in sorted(set(old) | set(new), key=str):
            names += differing_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return names
    return [] if old == new else [prefix.rstrip(".")]


IMPLICIT_RUN_KEY = {"loss": "mse"}
"""Run-key entries left out when they hold these values (as in runs made before the option)."""


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _threads_used(records: Sequence[TrainingRecord]) -> str:
    """The torch threads the runs' epochs were trained with, for a card's ``machine``.

    >>> _threads_used([TrainingRecord(epochs=[0, 1], threads=[2, 2])])
    '2 torch threads'
    >>> _threads_used([TrainingRecord(epochs=[0, 1, 2], threads=[1, 2]), TrainingRecord(epochs=[0], threads=[1])])
    'torch threads 1 (2 epochs), 2 (1 epoch), not recorded (1 epoch)'
    """
    counts = Counter(t for r in records for t in r.threads)
    unrecorded = sum(len(r.epochs) - len(r.threads) for r in records)
    if not counts and not unrecorded:  # no epoch finished: this process is all there is
        counts[_torch_threads()] = 0
    if len(counts) == 1 and not unrecorded:
        return f"{next(iter(counts))} torch threads"

    def epochs(n: int) -> str:
        return f"{n} epoch{'s' if n != 1 else ''}"

    parts = [f"{t} ({epochs(n)})" for t, n in sorted(counts.items())]
    parts += [f"not recorded ({epochs(unrecorded)})"] if unrecorded else []
    return "torch threads " + ", ".join(parts)


def _check_same_run(path: str, saved: dict, config: dict) -> None:
    if saved != config:
        fields = differing_fields(saved, config)
        detail = "; ".join(
            f"{f}: {_shown(saved, f)!r} there, {_shown(config, f)!r} now" for f in fields[:6]
        )
        raise RunMismatchError(
            f"{os.path.dirname(path)} holds a run with other settings ({detail}); resume it "
            f"with the same settings, use another folder, or delete it to start over"
        )


def _shown(config: dict, dotted: str) -> Any:
    value = _dotted(config, dotted)
    return IMPLICIT_RUN_KEY.get(dotted) if value is None else value


def _load_state(path: str) -> dict | None:
    from deepchem_cgcnn.original import CheckpointError, load_plain_data

    if not os.path.isfile(path):
        return None
    try:
        state: dict = load_plain_data(path, "training state")
        return state
    except CheckpointError as error:  # atomic writes make this a damaged disk, not a crash
        raise RuntimeError(
            f"{error}; it was written atomically, so the file was damaged after writing: "
            f"delete the run folder to start over"
        ) from error


def _save_state(
    model,
    path: str,
    record: TrainingRecord,
    epoch: int,
    valid_error: float,
    weights: dict | None = None,
    average: WeightAverage | None = None,
) -> None:
    """``weights`` replace the model's own (the weight average's, for a best state);
    ``average`` is the running weight average, kept to resume it."""
    from deepchem_cgcnn._io import atomic_torch_save

    state = {
        "model_state_dict": model.model.state_dict() if weights is None else weights,
        "optimizer_state_dict": model._pytorch_optimizer.state_dict(),
        "global_step": model._global_step,
        "epoch": epoch,
        "valid_error": valid_error,
        "config": record.config,
        "record": asdict(record),
    }
    if average is not None:
        state["weight_average"] = average.state_dict()
    atomic_torch_save(path, state)


def _restore_state(model, state: dict, with_optimizer: bool = True) -> None:
    model.model.load_state_dict(state["model_state_dict"])
    if with_optimizer:
        model._pytorch_optimizer.load_state_dict(state["optimizer_state_dict"])
        model._global_step = state["global_step"]


def _tensorboard_writer(log_dir: str | None, first_epoch: int) -> Any:
    """A TensorBoard ``SummaryWriter`` for ``log_dir`` (None without one); on a resume,
    events logged after the resumed epoch by an interrupted run are purged."""
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            f"logging to TensorBoard ({log_dir}) needs the tensorboard package: "
            f"pip install 'deepchem-cgcnn[tensorboard]'"
        ) from error
    return SummaryWriter(log_dir, purge_step=first_epoch if first_epoch else None)


class RunFolder:
    """The bookkeeping of one run folder, shared by every training loop of the package.

    Resumes from ``last.pt`` (or fits the target normalizer on a fresh start), sets each
    epoch's learning rate from the budget used, records each finished epoch, keeps the best
    and latest states (atomic writes), the readable record, the CSV log and TensorBoard
    curves, and decides when to stop. :func:`train_with_validation` drives it with DeepChem's
    ``fit``; :func:`deepchem_cgcnn.distributed.fit_distributed` from a Lightning ``Trainer``
    (there only the process of global rank 0 writes). The files are the same either way, so
    a run started by one loop resumes under the other.
    """

    def __init__(
        self,
        model,
        out_dir: str,
        config: dict | None,
        learning_rate_at: Callable[[float], float],
        max_epochs: int,
        max_minutes: float,
        metric_label: str = "error",
        patience: int | None = None,
        tensorboard_dir: str | None = None,
        writes: bool = True,
        average_decay: float | None = None,
        schedule: Sequence[float] | None = None,
        keep_average: bool = True,
    ) -> None:
        self.model = model
        self.schedule = None if schedule is None else list(schedule)
        self.keep_average = keep_average
        self.average_decay = average_decay
        self.average: WeightAverage | None = None
        self.out_dir = out_dir
        self.config = as_json_data(config or {})
        self.learning_rate_at = learning_rate_at
        self.max_epochs = max_epochs
        self.max_minutes = max_minutes
        self.metric_label = metric_label
        self.patience = patience
        self.tensorboard_dir = tensorboard_dir
        self.writes = writes
        self.last_path = os.path.join(out_dir, LAST_STATE)
        self.best_path = os.path.join(out_dir, BEST_STATE)
        self.record = TrainingRecord(config=self.config)
        self.writer: Any = None

    def start(self, train_y: np.ndarray, train_w: np.ndarray | None) -> tuple[int, float]:
        """Resume or begin; return the next epoch and the training seconds used so far."""
        out_dir = self.out_dir
        if os.path.isdir(os.path.join(out_dir, "last")) or os.path.isdir(
            os.path.join(out_dir, "best")
        ):
            raise RunMismatchError(
                f"{out_dir} holds a run written by an older version of this "
                f"package (last/, best/ folders); delete it to start over"
            )
        model = self.model
        model._ensure_built()
        last = _load_state(self.last_path)
        best = _load_state(self.best_path)
        for path, state in ((self.last_path, last), (self.best_path, best)):
            if state is not None:
                _check_same_run(path, state["config"], self.config)
        record = self.record
        if last is not None:
            record = self.record = TrainingRecord(**last["record"])
            _restore_state(model, last)
            logger.info("resuming %s from epoch %d", out_dir, record.epochs[-1] + 1)
        elif model.normalize_targets:
            model.fit_normalizer(train_y, train_w)
        if self.average_decay is not None:
            self.average = WeightAverage(model.model, self.average_decay)
            if last is not None and "weight_average" in last:
                self.average.load_state_dict(last["weight_average"])
        if best is not None and best["valid_error"] < record.best_valid_mae:
            # best.pt was written by an epoch whose last.pt never was: keep it unless beaten.
            record.best_valid_mae, record.best_epoch = best["valid_error"], best["epoch"]
        record.stopped = ""
        record.resumed_seconds = record.seconds[-1] if record.seconds else 0.0
        epoch = record.epochs[-1] + 1 if record.epochs else 0
        if self.writes:
            self.open_for_writing(epoch)
        return epoch, record.seconds[-1] if record.seconds else 0.0

    def open_for_writing(self, epoch: int) -> None:
        """Make the folder, clear temporaries of a killed run, open TensorBoard at ``epoch``
        (by :meth:`start`, or later by the one process that writes)."""
        from deepchem_cgcnn._io import remove_stale_temporaries

        self.writes = True
        os.makedirs(self.out_dir, exist_ok=True)
        remove_stale_temporaries(self.out_dir)
        self.writer = _tensorboard_writer(self.tensorboard_dir, epoch)

    def has_budget(self, epoch: int, used: float) -> bool:
        if self.schedule is not None:
            return epoch < len(self.schedule)
        return epoch < self.max_epochs and used < self.max_minutes * 60

    def learning_rate(self, epoch: int, used: float) -> float:
        """The rate for this epoch, set on the model's optimizer: the fraction of whichever
        budget (epochs or minutes) runs out first, so a run cut short by time still anneals;
        with a ``schedule``, its rate for this epoch."""
        if self.schedule is not None:
            lr = self.schedule[epoch]
        else:
            fraction = max(epoch / self.max_epochs, used / (self.max_minutes * 60))
            lr = self.learning_rate_at(fraction)
        for group in self.model._pytorch_optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def end_epoch(
        self,
        epoch: int,
        loss: float,
        error: float | None,
        lr: float,
        used: float,
        trained_error: float | None = None,
    ) -> bool:
        """Record a finished epoch (and save its states); True when training must stop.
        With a weight average, ``error`` is the average's validation error and
        ``trained_error`` the trained weights' own; the best state keeps whichever is lower.
        Without validation (``error`` None) every epoch becomes the best state, with the
        average's weights if ``keep_average``."""
        from deepchem_cgcnn._io import atomic_write_json

        record = self.record
        validated = error is not None
        if trained_error is not None and not math.isfinite(trained_error):
            error = trained_error
        if not math.isfinite(loss) or (error is not None and not math.isfinite(error)):
            record.stopped = (
                f"stopped at epoch {epoch}: non-finite "
                f"{'training loss' if not math.isfinite(loss) else 'validation error'}"
                f" (loss {loss}, validation {error}); kept the best finite epoch "
                f"{record.best_epoch}"
            )
            logger.error("%s: %s", self.out_dir, record.stopped)
            return True
        record.epochs.append(epoch)
        record.seconds.append(used)
        record.train_loss.append(loss)
        record.learning_rate.append(lr)
        record.threads.append(_torch_threads())
        average = None if self.average is None else self.average.state
        if error is None:  # no validation: the latest epoch is the one to keep
            kept, improved = math.nan, True
            weights = average if self.keep_average else None
        else:
            record.valid_mae.append(error)
            kept, weights = error, average
            if trained_error is not None:
                record.valid_mae_raw.append(trained_error)
                if trained_error < error:
                    kept, weights = trained_error, None
            improved = kept < record.best_valid_mae
        if improved:
            record.best_epoch = epoch
            if validated:
                record.best_valid_mae = kept
            if self.average is not None:
                record.best_weights = "trained" if weights is None else "average"
        if self.writes:
            if improved:
                _save_state(self.model, self.best_path, record, epoch, kept, weights)
            saved_error = math.nan if error is None else error
            _save_state(
                self.model, self.last_path, record, epoch, saved_error, average=self.average
            )
            atomic_write_json(os.path.join(self.out_dir, RECORD), asdict(record))
            _write_log(os.path.join(self.out_dir, LOG), record)
        if self.writer is not None:
            self.writer.add_scalar("loss/train", loss, epoch)
            if error is not None:
                self.writer.add_scalar(f"validation/{self.metric_label}", error, epoch)
            self.writer.add_scalar("learning_rate", lr, epoch)
            self.writer.flush()
        logger.info(
            "epoch %d  lr %.2e  training loss %.4f%s  (%.0f s)",
            epoch,
            lr,
            loss,
            ""
            if error is None
            else f"  validation {self.metric_label} {error:.4f}"
            + ("" if trained_error is None else f" (average; trained weights {trained_error:.4f})"),
            used,
        )
        if validated and self.patience is not None and epoch - record.best_epoch >= self.patience:
            record.stopped = (
                f"early stop after epoch {epoch}: no better validation error for "
                f"{self.patience} epochs (best epoch {record.best_epoch})"
            )
            logger.info("%s: %s", self.out_dir, record.stopped)
            return True
        return False

    def finish(self) -> TrainingRecord:
        """Close the logs and load the best state's weights into the model."""
        from deepchem_cgcnn._io import atomic_write_json

        record = self.record
        if self.writer is not None:
            self.writer.close()
        best = _load_state(self.best_path)
        if best is None:
            if record.stopped:
                raise TrainingDivergedError(
                    f"{self.out_dir}: {record.stopped.split(';')[0]}, before any "
                    f"epoch with a finite validation error; lower the "
                    f"learning rate or check the labels"
                )
            raise TrainingDivergedError(
                f"{self.out_dir}: no epoch was trained (max_epochs={self.max_epochs}, "
                f"max_minutes={self.max_minutes})"
            )
        _restore_state(self.model, best, with_optimizer=False)
        if record.stopped and self.writes:
            atomic_write_json(os.path.join(self.out_dir, RECORD), asdict(record))
        return record


def train_with_validation(
    model,
    train,
    valid,
    out_dir: str,
    learning_rate_at: Callable[[float], float],
    max_epochs: int,
    max_minutes: float,
    evaluate: Callable = mean_absolute_error,
    config: dict | None = None,
    patience: int | None = None,
    tensorboard_dir: str | None = None,
    ema_decay: float | None = None,
    shuffle_seed: int | None = None,
) -> TrainingRecord:
    """Train epoch by epoch, keep the best validation checkpoint, resume after a stop.

    ``learning_rate_at(fraction)`` sets the learning rate of each epoch from the
    fraction of whichever budget runs out first, ``max_epochs`` or
    ``max_minutes`` of training time (e.g. ``Recipe.learning_rate_at``), so a
    run cut short by its time budget still anneals. ``evaluate(model, valid)``
    is the validation error (lower is better).

    The run folder is crash-consistent. After every epoch the best state so far goes
    to ``out_dir/best.pt`` (only when it beats the one on disk), then the latest state,
    with the whole record, to ``out_dir/last.pt``, then a readable copy of the record to
    ``out_dir/record.json``; each file is written atomically (temporary file, fsync,
    rename), so a stop at any moment leaves the previous or the new version. Calling
    again with the same ``out_dir`` resumes from ``last.pt``; a ``best.pt`` is never
    replaced by a worse one, not even by a run that restarts from epoch 0.

    ``config`` holds everything that defines the run (data, target, featurizer,
    hyperparameters, recipe, budget); resuming a folder made with another config
    raises :class:`RunMismatchError` naming the folder and the differing fields.

    A non-finite training loss or validation error stops the run: the best finite
    state is restored and ``record.stopped`` says why; with no finite epoch at all,
    :class:`TrainingDivergedError` is raised. With ``patience``, the run also stops early
    after that many epochs without a better validation error (``record.stopped`` says so).

    With ``tensorboard_dir``, each epoch's training loss, validation error and learning
    rate also go to TensorBoard event files there (needs the ``tensorboard`` package); a
    resumed run continues the same curves.

    With ``ema_decay`` (e.g. 0.999), an exponential moving average of the weights and
    batch-norm statistics (:class:`~deepchem_cgcnn.weight_average.WeightAverage`) is updated
    after every optimizer step; each epoch validates both the average (``record.valid_mae``)
    and the trained weights (``record.valid_mae_raw``), and the best state keeps whichever
    validates better (``record.best_weights``). The average is saved with ``last.pt`` and
    resumes with it.

    With ``shuffle_seed``, epoch ``k``'s batch order (DeepChem draws it from NumPy's global
    generator) is drawn from a generator seeded with ``(shuffle_seed, k)`` and the global
    state is restored afterwards: the same run gives the same batches, resumed or not, and
    whatever ran before in the process does not change them. Without it, the global state
    decides, as in ``fit``.
    """
    run = RunFolder(
        model,
        out_dir,
        config,
        learning_rate_at,
        max_epochs,
        max_minutes,
        getattr(evaluate, "label", "error"),
        patience,
        tensorboard_dir,
        average_decay=ema_decay,
    )
    return _run_epochs(run, model, train, valid, evaluate, shuffle_seed)


def train_on_schedule(
    model,
    train,
    out_dir: str,
    learning_rates: Sequence[float],
    config: dict | None = None,
    ema_decay: float | None = None,
    keep_average: bool = True,
    tensorboard_dir: str | None = None,
    shuffle_seed: int | None = None,
) -> TrainingRecord:
    """Train one epoch per entry of ``learning_rates``, at that rate, with no validation set,
    and keep the last epoch: the refit of :class:`TrainConfig` ``refit`` (train and
    validation crystals together, for the epochs and rates that validation chose).

    The run folder works as in :func:`train_with_validation` (atomic ``best.pt``, ``last.pt``,
    ``record.json``, ``log.csv`` without a validation column; resumes; refuses another
    config). With ``ema_decay``, the kept weights are the average's when ``keep_average``,
    else the trained weights. A non-finite training loss stops the run and keeps the last
    finite epoch. ``shuffle_seed`` seeds each epoch's batch order as there.

    Examples
    --------
    >>> import tempfile
    >>> import deepchem as dc
    >>> from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
    >>> from deepchem_cgcnn.examples import example_structures
    >>> graphs = CGCNNFeaturizer().featurize(list(example_structures().values()))
    >>> data = dc.data.NumpyDataset(graphs, np.linspace(-1.0, 0.0, len(graphs)))
    >>> model = CGCNNModel(num_conv=1, batch_size=4)
    >>> record = train_on_schedule(model, data, tempfile.mkdtemp(), [1e-3, 5e-4])
    >>> record.epochs, record.learning_rate, record.best_epoch
    ([0, 1], [0.001, 0.0005], 1)
    """
    run = RunFolder(
        model,
        out_dir,
        config,
        lambda fraction: math.nan,
        len(learning_rates),
        math.inf,
        tensorboard_dir=tensorboard_dir,
        average_decay=ema_decay,
        schedule=learning_rates,
        keep_average=keep_average,
    )
    return _run_epochs(run, model, train, None, None, shuffle_seed)


@contextlib.contextmanager
def _global_numpy_seed(seed: Sequence[int] | None) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` inside, its state restored after."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(list(seed))
    try:
        yield
    finally:
        np.random.set_state(state)


def _run_epochs(
    run: RunFolder, model, train, valid, evaluate: Callable | None, shuffle_seed: int | None
) -> TrainingRecord:
    """DeepChem's ``fit``, one epoch at a time, under ``run``'s schedule and bookkeeping; each
    epoch validated on ``valid`` (the weight average too) unless ``valid`` is None."""
    epoch, used = run.start(train.y, train.w)
    model.prepare_training(train)  # a finished run resumed never calls fit, which counts crystals
    average = run.average
    callbacks = [] if average is None else [lambda m, step: average.update(m.model)]
    while run.has_budget(epoch, used):
        lr = run.learning_rate(epoch, used)
        start = time.perf_counter()
        with _global_numpy_seed(None if shuffle_seed is None else (shuffle_seed, epoch)):
            loss = float(model.fit(train, nb_epoch=1, checkpoint_interval=0, callbacks=callbacks))
        elapsed = used + time.perf_counter() - start
        error: float | None = None
        trained_error = None
        if valid is not None and evaluate is not None:
            error = evaluate(model, valid) if math.isfinite(loss) else math.nan
            if average is not None:
                trained_error = error
                with average.applied(model.model):
                    error = evaluate(model, valid) if math.isfinite(loss) else math.nan
        if math.isfinite(loss) and (error is None or math.isfinite(error)):
            used = elapsed
        if run.end_epoch(epoch, loss, error, lr, used, trained_error):
            break
        epoch += 1
    return run.finish()


# ---------------------------------------------------------------- one call: data -> model + card
@dataclass
class TrainConfig:
    """Everything that defines a training run, typed; its fields are the run key and go
    into the model card. Field names match ``deepchem-cgcnn train``'s options.

    The defaults are the library's (DeepChem's and the original code's: 3 convolutions,
    ``selection='cgcnn'``); the command line uses its own named defaults (``defaults``).
    """

    data: str
    target: str
    name: str
    property: str | None = None
    units: str = ""
    query: str | None = None
    mode: str = "regression"
    work_dir: str = "work/train"
    run_dir: str | None = None
    cache_dir: str | None = None
    export: str | None = "work/export"
    selection: str = "cgcnn"
    seed: int = 123
    valid_size: int | None = None
    compile: bool = False
    compile_mode: str | None = None
    graph_step: bool = False
    predict_batch_size: int | None = None
    init_seed: int | None = None
    train_size: int | None = None
    recipe: str = "fast"
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    conv: str = "gated"
    pooling: str = "mean"
    hidden: int = 64
    num_conv: int = 3
    predictor_hidden: int = 128
    n_hidden_layers: int = 1
    dropout: float | None = None
    """Dropout on the predictor's first hidden layer (None: the model's default, 0 for
    regression); left out of the run key when None, as in runs made before the option."""
    max_epochs: int = 300
    max_minutes: float = 90.0
    patience: int | None = None
    ema: float | None = None
    loss: str = "mse"
    refit: bool = False
    refit_from: str | None = None
    """A validated run's card (a JSON path or a shipped model's name) to refit instead of
    running validation here: its best epoch and per-epoch learning rates (4 significant
    figures, as cards store them) set the refit; the card must describe this run (data,
    target, split, featurizer, model, recipe, initial weights). Implies ``refit``."""
    init_from: str | None = None
    reset_head: bool = False
    freeze: tuple[str, ...] = ()
    body_lr_factor: float = 1.0
    n_jobs: int = 1
    device: str = "auto"
    tensorboard: str | None = None
    devices: int | None = None
    num_nodes: int = 1
    strategy: str = "ddp"
    accelerator: str | None = None
    defaults: str = "library"
    command: str = ""

    def check(self) -> None:
        """Raise :class:`TrainConfigError` for options that cannot go together, before any
        data is read.

        Examples
        --------
        >>> TrainConfig("t.csv", "y", "m", refit=True, devices=2).check()
        Traceback (most recent call last):
        ...
        deepchem_cgcnn.training.TrainConfigError: refit runs in one process; leave out devices/num_nodes
        """
        data_parallel = self.devices is not None or self.num_nodes > 1
        if data_parallel and (self.devices is not None and self.devices < 1 or self.num_nodes < 1):
            raise TrainConfigError("devices and num_nodes must be at least 1")
        if data_parallel and self.graph_step:
            raise TrainConfigError(
                "graph_step replays one process's step; leave out devices/num_nodes"
            )
        if data_parallel and self.ema is not None:
            raise TrainConfigError(
                "ema (a weight average) is not kept by the data-parallel loop yet; train in one "
                "process, or without ema"
            )
        if data_parallel and (self.refit or self.refit_from):
            raise TrainConfigError("refit runs in one process; leave out devices/num_nodes")
        if self.refit_from and (self.valid_size or self.init_from):
            raise TrainConfigError(
                "refit_from refits a run validated on the whole validation split from fresh "
                "weights: leave out valid_size and init_from"
            )
        if self.loss != "mse" and self.mode != "regression":
            raise TrainConfigError(
                f"loss {self.loss!r} is for regression; a classifier trains on cross entropy"
            )
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise TrainConfigError(f"ema is a decay in (0, 1), e.g. 0.999; got {self.ema}")
        if self.predict_batch_size is not None and self.predict_batch_size < 1:
            raise TrainConfigError(
                f"predict_batch_size must be at least 1, got {self.predict_batch_size}"
            )
        if self.compile and self.compile_mode:
            raise TrainConfigError("compile_mode compiles the whole model: leave out compile")
        if self.compile_mode is not None:
            from deepchem_cgcnn.model import check_compile_mode

            try:
                check_compile_mode(self.compile_mode, self.graph_step)
            except ValueError as error:
                raise TrainConfigError(str(error)) from None


@dataclass
class TrainResult:
    """What :func:`train_model` made: the model (best epoch), its card, the run record, paths."""

    model: Any
    card: Any
    record: TrainingRecord
    run_dir: str
    model_path: str | None
    card_path: str | None
    is_global_zero: bool = True
    """False in the other processes of a distributed run: they made no card and wrote nothing."""


def train_model(config: TrainConfig) -> TrainResult:
    """Load, featurize and split ``config.data``, train with validation, score, write the card.

    Resumable: rerunning the same config resumes its run folder (``<work_dir>/<name>``); a
    different config in that folder raises :class:`RunMismatchError`. With ``config.export``
    set, the model (one :func:`~deepchem_cgcnn.registry.save_model` artifact) and its card
    (JSON) are written there as ``<name>.pt`` and ``<name>.json``.
    """
    config.check()
    import dataclasses
    import platform
    import sys

    import torch

    from deepchem_cgcnn._io import atomic_write_json
    from deepchem_cgcnn.card import ModelCard
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer, featurizer_params
    from deepchem_cgcnn.model import CGCNNModel, resolve_device
    from deepchem_cgcnn.recipes import RECIPES, make_optimizer
    from deepchem_cgcnn.registry import save_model

    run_dir = config.run_dir or os.path.join(config.work_dir, config.name)
    os.makedirs(run_dir, exist_ok=True)
    started = time.time()
    source = _finetune_source(config)
    featurizer = (
        CGCNNFeaturizer(**source.featurizer_params)
        if source is not None
        else CGCNNFeaturizer(selection=config.selection)
    )
    loaded = load_training_data(config, featurizer)
    _, (train, valid, test), _ = loaded
    summary = loaded.summary
    featurize_seconds = time.time() - started
    train = training_subset(train, config)
    selection = seeded_subset(valid, config.valid_size, config.seed)
    classify = config.mode == "classification"
    overrides: dict[str, Any] = {
        "learning_rate": config.lr,
        "batch_size": config.batch_size,
        "weight_decay": config.weight_decay,
    }
    recipe = dataclasses.replace(
        RECIPES[config.recipe], **{k: v for k, v in overrides.items() if v is not None}
    )
    init_seed = config.seed if config.init_seed is None else config.init_seed
    hyper: dict[str, Any] = dict(
        hidden_node_dim=config.hidden,
        num_conv=config.num_conv,
        conv=config.conv,
        pooling=config.pooling,
        predictor_hidden_feats=config.predictor_hidden,
        n_hidden_layers=config.n_hidden_layers,
        mode=config.mode,
    )
    if config.dropout is not None:
        hyper["dropout"] = config.dropout
    if source is not None:  # fine-tuning keeps the source's architecture
        hyper = {k: v for k, v in source.hyperparameters.items() if k != "nonnegative"}
        hyper["mode"] = config.mode

    def build_model(model_dir: str) -> Any:
        torch.manual_seed(init_seed)
        built = CGCNNModel(
            **hyper,
            batch_size=recipe.batch_size,
            optimizer=make_optimizer(recipe),
            compile_convolutions=config.compile,
            compile_mode=config.compile_mode,
            graph_step=config.graph_step,
            regression_loss=config.loss,
            predict_batch_size=config.predict_batch_size,
            model_dir=model_dir,
            device=resolve_device(config.device),
        )
        if source is not None:
            _start_from(built, source, config)
        return built

    # a refit from a card trains only the refit's model (built below)
    model: Any = None if config.refit_from else build_model(os.path.join(run_dir, "model"))
    run_key = {
        "data": {
            "source": os.path.basename(os.path.normpath(config.data)),
            "sha256": summary.sha256,
        },
        "target": config.target,
        "query": config.query,
        "mode": config.mode,
        "featurizer": featurizer_params(featurizer),
        "model": hyper,
        "recipe": recipe.to_dict(),
        "init_seed": init_seed,
        "split_seed": config.seed,
        "train_size": len(train),
        "valid_size": len(selection),
        "max_epochs": config.max_epochs,
        "max_minutes": config.max_minutes,
        **(
            {
                "finetune": {
                    "from": config.init_from,
                    "reset_head": config.reset_head,
                    "freeze": list(config.freeze),
                    "body_lr_factor": config.body_lr_factor,
                }
            }
            if source is not None
            else {}
        ),
    }
    if config.ema is not None:
        run_key["ema"] = config.ema
    if config.loss != IMPLICIT_RUN_KEY["loss"]:
        run_key["loss"] = config.loss
    processes = (config.devices or 1) * config.num_nodes
    if processes > 1:
        run_key["data_parallel"] = {"processes": processes, "strategy": config.strategy}
    loop: dict[str, Any] = dict(
        learning_rate_at=recipe.learning_rate_at,
        max_epochs=config.max_epochs,
        max_minutes=config.max_minutes,
        evaluate=classification_error if classify else mean_absolute_error,
        config=run_key,
        patience=config.patience,
        tensorboard_dir=config.tensorboard,
    )
    if config.devices is not None or config.num_nodes > 1:
        from deepchem_cgcnn.distributed import fit_distributed

        result = fit_distributed(
            model,
            train,
            selection,
            run_dir,
            **loop,
            devices=config.devices or 1,
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            accelerator=config.accelerator or ("gpu" if model.device.type == "cuda" else "cpu"),
            seed=init_seed,
        )
        record = result.record
        if not result.is_global_zero:
            return TrainResult(model, None, record, run_dir, None, None, is_global_zero=False)
    elif config.refit_from is not None:
        validated = _validated_card(config.refit_from, run_key, [len(train), len(valid), len(test)])
        record = _record_from_card(validated)
    else:
        record = train_with_validation(
            model, train, selection, run_dir, **loop, ema_decay=config.ema, shuffle_seed=init_seed
        )
    splits = (("train", train), ("valid", valid), ("test", test))

    def scores(scored: Any, named=splits) -> dict[str, dict[str, float]]:
        if classify:
            return {"roc_auc": {n: 1.0 - classification_error(scored, d) for n, d in named}}
        return {"mae": {n: mean_absolute_error(scored, d) for n, d in named}}

    refit: dict[str, Any] = {}
    refit_records: list[TrainingRecord] = []
    refit_resumed_seconds = 0.0
    before_refit: dict[str, dict[str, float]] = {}
    if config.refit or config.refit_from:
        before_refit = (
            {m: validated.metrics[m] for m in ("roc_auc" if classify else "mae",)}
            if config.refit_from
            else scores(model)
        )
        import deepchem as dc

        epochs = record.best_epoch + 1
        rates = record.learning_rate[:epochs]
        combined = dc.data.NumpyDataset.merge([train, selection])
        refit_dir = os.path.join(run_dir, "refit")
        model = build_model(os.path.join(refit_dir, "model"))
        refit_record = train_on_schedule(
            model,
            combined,
            refit_dir,
            rates,
            config={**run_key, "refit": {"epochs": epochs, "train_size": len(combined)}},
            ema_decay=config.ema,
            keep_average=record.best_weights != "trained",
            shuffle_seed=init_seed,
        )
        refit_resumed_seconds = refit_record.resumed_seconds
        refit_records.append(refit_record)
        refit = {
            "epochs": epochs,
            "train_size": len(combined),
            "seconds": round(refit_record.seconds[-1], 1),
            **({"from_card": validated.name} if config.refit_from else {}),
            **({"kept": refit_record.best_weights} if config.ema is not None else {}),
            **({"stopped": refit_record.stopped} if refit_record.stopped else {}),
        }
    # a refit model trained on the validation crystals: its score there is not a validation score
    metrics = scores(
        model, (("train", train), ("valid_trained_on", valid), ("test", test)) if refit else splits
    )
    if before_refit:
        for metric, values in before_refit.items():
            metrics[f"{metric}_before_refit"] = dict(values)
    if not classify:
        # the baseline a model must beat: predict the training mean for every crystal
        mean = float(np.mean(train.y[:, 0]))
        metrics["mean_predictor_mae"] = {
            n: float(np.abs(d.y[:, 0] - mean).mean()) for n, d in splits
        }
    subset = f" on {len(selection)} validation crystals drawn at random"
    selected = f"best validation {'ROC-AUC' if classify else 'MAE'}" + (
        subset if len(selection) < len(valid) else ""
    )
    device = (
        f"trained on GPU {torch.cuda.get_device_name(model.device)}"
        if model.device.type == "cuda"
        else "trained on CPU"
        + (f" (GPU {torch.cuda.get_device_name(0)} present)" if torch.cuda.is_available() else "")
    )
    card = ModelCard(
        name=config.name,
        property=config.property or config.target,
        units=config.units,
        task=config.target,
        mode=config.mode,
        data={
            "source": os.path.basename(os.path.normpath(config.data)),
            "query": config.query,
            "sha256": summary.sha256,
            "n_structures": summary.n_rows,
            "n_loaded": summary.n_loaded,
            "dropped": summary.counts(),
        },
        split={
            "kind": "random (CGCNNRandomSplitter = DeepChem RandomSplitter's permutation)",
            "fractions": [0.6, 0.2, 0.2],
            "seed": config.seed,
            "sizes": [len(train), len(valid), len(test)],
            "model_selection": (
                f"epochs and learning rates chosen by {selected} (best epoch "
                f"{record.best_epoch}), then refit from scratch on the training and those "
                f"{len(selection)} validation crystals together, keeping the last epoch; its "
                f"validation metrics include the crystals it trained on; test used only for "
                f"this card"
                if refit
                else f"{selected}; test used only for this card"
            ),
        },
        featurizer=featurizer_params(featurizer),
        model=model.hyperparameters,
        recipe={
            **recipe.to_dict(),
            "defaults": config.defaults,
            "init_seed": init_seed,
            **({"loss": config.loss} if config.mode == "regression" else {}),
            "compiled": config.compile,
            **({"compile_mode": config.compile_mode} if config.compile_mode else {}),
            **({"graph_step": True} if config.graph_step else {}),
            "max_epochs": config.max_epochs,
            "max_minutes": config.max_minutes,
            **(
                {"data_parallel": {"processes": processes, "strategy": config.strategy}}
                if processes > 1
                else {}
            ),
            "epochs_run": len(record.epochs),
            "best_epoch": record.best_epoch,
            **(
                {"weight_average": {"ema_decay": config.ema, "best_kept": record.best_weights}}
                if config.ema is not None
                else {}
            ),
            **({"finetune": run_key["finetune"]} if source is not None else {}),
            **({"stopped": record.stopped} if record.stopped else {}),
            **({"refit": refit} if refit else {}),
        },
        metrics=metrics,
        training_counts=model.training_counts,
        history=record.history(),
        wall_time_s={
            "featurize": round(featurize_seconds, 1),
            "train": round(
                (record.seconds[-1] if record.seconds else 0.0) + refit.get("seconds", 0.0), 1
            ),
            "total": round(
                time.time() - started + record.resumed_seconds + refit_resumed_seconds, 1
            ),
        },
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{_threads_used([record, *refit_records])}, {device}",
        command=config.command or f"{sys.argv[0]} (train_model)",
        date=time.strftime("%Y-%m-%d"),
    )
    model.featurizer_params = featurizer_params(featurizer)
    model.card = card
    model_path = card_path = None
    if config.export:
        model_path = os.path.join(config.export, f"{config.name}.pt")
        card_path = os.path.join(config.export, f"{config.name}.json")
        save_model(model, model_path, card)
        atomic_write_json(card_path, card.to_dict(), indent=2)
    return TrainResult(model, card, record, run_dir, model_path, card_path)


def _validated_card(source: str, run_key: dict[str, Any], sizes: list[int]) -> Any:
    """The card ``source`` (a JSON path or a shipped model's name), checked to describe the
    validated run of ``run_key`` on splits of ``sizes``; :class:`RunMismatchError` names the
    fields that differ."""
    from deepchem_cgcnn.card import ModelCard
    from deepchem_cgcnn.registry import pretrained_card

    if os.path.exists(source):
        with open(source, encoding="utf-8") as handle:
            card = ModelCard.from_dict(json.load(handle))
    else:
        card = pretrained_card(source)
    if card.is_refit:
        raise RunMismatchError(f"{source}: a refit model's card; refit from its validated run's")
    if "drawn at random" in card.split.get("model_selection", ""):
        raise RunMismatchError(f"{source}: validated on a subset of the validation split")
    recipe = card.recipe
    average = recipe.get("weight_average") or {}
    described = {
        "data": {"source": card.data["source"], "sha256": card.data["sha256"]},
        "target": card.task,
        "query": card.data.get("query"),
        "mode": card.mode,
        "featurizer": card.featurizer,
        "model": {k: card.model.get(k) for k in run_key["model"]},
        "recipe": {k: recipe.get(k) for k in run_key["recipe"]},
        "init_seed": recipe.get("init_seed"),
        "split_seed": card.split.get("seed"),
        "sizes": card.split.get("sizes"),
        "ema": average.get("ema_decay"),
        "loss": card.loss or IMPLICIT_RUN_KEY["loss"],  # a classifier's run key has none
    }
    wanted = {
        **{k: run_key.get(k) for k in described if k not in ("sizes", "ema", "loss")},
        "sizes": sizes,
        "ema": run_key.get("ema"),
        "loss": run_key.get("loss", IMPLICIT_RUN_KEY["loss"]),
    }
    fields = differing_fields(described, wanted)
    if fields:
        detail = "; ".join(
            f"{name}: card {_dotted(described, name)!r}, here {_dotted(wanted, name)!r}"
            for name in fields
        )
        raise RunMismatchError(f"{source} describes another run ({detail})")
    return card


def _dotted(tree: Any, name: str) -> Any:
    for key in name.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _record_from_card(card: Any) -> TrainingRecord:
    """The validated run's :class:`TrainingRecord` as its card keeps it (no training losses)."""
    history = card.history
    average = card.recipe.get("weight_average") or {}
    return TrainingRecord(
        epochs=list(range(len(history["seconds"]))),
        seconds=list(history["seconds"]),
        valid_mae=list(history["valid_error"]),
        learning_rate=list(history["learning_rate"]),
        best_epoch=int(card.recipe["best_epoch"]),
        best_valid_mae=float(history["valid_error"][card.recipe["best_epoch"]]),
        stopped=card.recipe.get("stopped", ""),
        valid_mae_raw=list(history.get("valid_error_trained_weights", [])),
        best_weights=average.get("best_kept", ""),
        resumed_seconds=float(history["seconds"][-1]) if history["seconds"] else 0.0,
    )


HEAD_PREFIXES = ("conv_to_fc.", "fcs.", "fc_out.", "atom_out.")
BODY_PARTS = {"embedding": ("embedding.",), "convs": ("convs.",)}


def load_training_data(config: TrainConfig, featurizer: Any = None) -> Any:
    """The :class:`~deepchem_cgcnn.data.loader.LoadResult` (featurized, split) that
    :func:`train_model` trains ``config`` on, through its cache: calling it first makes the
    training run's featurization a cache hit.

    ``featurizer`` defaults to ``CGCNNFeaturizer(selection=config.selection)``, which is what
    :func:`train_model` uses unless it fine-tunes (then: the source model's settings).
    """
    from deepchem_cgcnn.data.loader import MaterialsProjectLoader  # the one upward import
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer

    cache = config.cache_dir or os.path.join(config.work_dir, "cache")
    return MaterialsProjectLoader(
        config.data,
        tasks=[config.target],
        featurizer=featurizer or CGCNNFeaturizer(selection=config.selection),
        splitter=CGCNNRandomSplitter(seed=config.seed),
        data_dir=cache,
        save_dir=cache,
        n_jobs=config.n_jobs,
        query=config.query,
    ).load()


def seeded_subset(dataset: Any, size: int | None, seed: int) -> Any:
    """``size`` crystals of ``dataset`` drawn with ``seed``, kept in their order, or all of
    it when no size is set or it is no smaller (``--train-size``, ``--valid-size``)."""
    if not size or size >= len(dataset):
        return dataset
    draw = np.random.RandomState(seed).permutation(len(dataset))[:size]
    return dataset.select(np.sort(draw))


def training_subset(train: Any, config: TrainConfig) -> Any:
    """The ``config.train_size`` training crystals :func:`train_model` trains on."""
    return seeded_subset(train, config.train_size, config.seed)


def _finetune_source(config: TrainConfig) -> Any:
    """The model to start from (shipped name, saved file or original checkpoint), or None."""
    if not config.init_from:
        return None
    from deepchem_cgcnn.registry import load_model

    unknown = set(config.freeze) - set(BODY_PARTS)
    if unknown:
        raise ValueError(f"freeze {sorted(unknown)}: choose from {sorted(BODY_PARTS)}")
    return load_model(config.init_from)


def _start_from(model: Any, source: Any, config: TrainConfig) -> None:
    """Copy the source's weights (all, or the body only with ``reset_head``), freeze the asked
    parts, and give the body ``body_lr_factor`` times the learning rate."""
    state = source.model.state_dict()
    same_head = source.model.mode == model.model.mode and not config.reset_head
    keep = {
        k: v
        for k, v in state.items()
        if k not in ("target_mean", "target_std")  # refitted on the new labels
        and (same_head or not k.startswith(HEAD_PREFIXES))
    }
    model.model.load_state_dict(keep, strict=False)
    frozen = tuple(p for part in config.freeze for p in BODY_PARTS[part])
    body, head = [], []
    for name, parameter in model.model.named_parameters():
        if name.startswith(frozen):
            parameter.requires_grad_(False)
        elif name.startswith(HEAD_PREFIXES):
            head.append(parameter)
        else:
            body.append(parameter)
    model._ensure_built()
    optimizer = model._pytorch_optimizer
    lr = optimizer.defaults["lr"]
    optimizer.param_groups.clear()  # regrouped before any step: no optimizer state to keep
    optimizer.add_param_group({"params": head, "lr": lr, "lr_scale": 1.0})
    if body:
        scale = config.body_lr_factor
        optimizer.add_param_group({"params": body, "lr": lr * scale, "lr_scale": scale})
