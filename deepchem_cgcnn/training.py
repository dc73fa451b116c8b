"""A resumable, time-budgeted training loop with the best validation checkpoint kept."""
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

logger = logging.getLogger(__name__)


def classification_error(model, dataset) -> float:
    """1 - ROC-AUC of a binary classifier on a dataset (lower is better, like an MAE)."""
    from sklearn.metrics import roc_auc_score
    probability = np.asarray(model.predict(dataset))[:, 1]
    return float(1.0 - roc_auc_score(dataset.y[:, 0], probability))


def mean_absolute_error(model, dataset) -> float:
    """MAE of a regression model on a dataset, over the labels with non-zero weight."""
    prediction = model.predict(dataset).reshape(len(dataset), -1)
    y = dataset.y.reshape(len(dataset), -1)
    labelled = np.isfinite(y) & (np.broadcast_to(dataset.w, y.shape) > 0)
    return float(np.abs(prediction[labelled] - y[labelled]).mean())


@dataclass
class TrainingRecord:
    """What happened in a training run, epoch by epoch."""

    epochs: List[int] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    train_loss: List[float] = field(default_factory=list)
    valid_mae: List[float] = field(default_factory=list)
    learning_rate: List[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid_mae: float = math.inf
    config: dict = field(default_factory=dict)

    def history(self) -> Dict[str, list]:
        """The validation error after each epoch against cumulative training seconds, rounded
        for a model card (classification: the error is 1 - ROC-AUC)."""
        return {"seconds": [round(s, 1) for s in self.seconds],
                "valid_error": [round(v, 5) for v in self.valid_mae],
                "learning_rate": [float(f"{lr:.4g}") for lr in self.learning_rate]}


def train_with_validation(model, train, valid, out_dir: str,
                          learning_rate_at: Callable[[float], float],
                          max_epochs: int, max_minutes: float,
                          evaluate: Callable = mean_absolute_error,
                          config: Optional[dict] = None) -> TrainingRecord:
    """Train epoch by epoch, keep the best validation checkpoint, resume after a stop.

    ``learning_rate_at(fraction)`` sets the learning rate of each epoch from the
    fraction of whichever budget runs out first, ``max_epochs`` or
    ``max_minutes`` of training time (e.g. ``Recipe.learning_rate_at``), so a
    run cut short by its time budget still anneals. ``evaluate(model, valid)``
    is the validation error (lower is better). ``config`` (e.g. hyperparameters and
    recipe) is stored with the run; resuming a run made with another config is refused. After every epoch the latest state goes to
    ``out_dir/last`` and, when validation improves, to ``out_dir/best``;
    ``out_dir/record.json`` logs each epoch. Calling again with the same
    ``out_dir`` resumes from ``last``.
    """
    os.makedirs(out_dir, exist_ok=True)
    model._ensure_built()
    record_path = os.path.join(out_dir, "record.json")
    config = json.loads(json.dumps(config or {}, default=str))
    record = TrainingRecord(config=config)
    last_dir, best_dir = os.path.join(out_dir, "last"), os.path.join(out_dir, "best")
    if os.path.exists(record_path) and model.get_checkpoints(last_dir):
        with open(record_path) as handle:
            record = TrainingRecord(**json.load(handle))
        if record.config != config:
            raise ValueError(f"{out_dir} holds a run with other settings ({record.config}); "
                             f"use another folder or delete it to start over")
        model.restore(model_dir=last_dir)
        logger.info("resumed after epoch %d", record.epochs[-1])
    elif model.normalize_targets:
        model.fit_normalizer(train.y, train.w)
    used = record.seconds[-1] if record.seconds else 0.0
    epoch = record.epochs[-1] + 1 if record.epochs else 0
    while epoch < max_epochs and used < max_minutes * 60:
        fraction = max(epoch / max_epochs, used / (max_minutes * 60))
        lr = learning_rate_at(fraction)
        for group in model._pytorch_optimizer.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        loss = model.fit(train, nb_epoch=1, checkpoint_interval=0)
        used += time.perf_counter() - start
        mae = evaluate(model, valid)
        record.epochs.append(epoch)
        record.seconds.append(used)
        record.train_loss.append(float(loss))
        record.valid_mae.append(mae)
        record.learning_rate.append(lr)
        if mae < record.best_valid_mae:
            record.best_valid_mae, record.best_epoch = mae, epoch
            model.save_checkpoint(max_checkpoints_to_keep=1, model_dir=best_dir)
        model.save_checkpoint(max_checkpoints_to_keep=1, model_dir=last_dir)
        with open(record_path, "w") as handle:
            json.dump(asdict(record), handle)
        logger.info("epoch %d  lr %.2e  loss %.4f  valid %.4f  (%.0f s)", epoch, lr, loss, mae, used)
        epoch += 1
    model.restore(model_dir=best_dir)
    return record
