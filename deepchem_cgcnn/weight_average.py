"""An exponential moving average (EMA) of a model's weights, one of the accuracy levers of
long training runs: the average of the last few thousand steps' weights usually validates
better than the last step's.

The batch-norm running statistics are averaged with the weights, so the averaged model is
evaluated with statistics that match it. Early on the decay is capped at
``(1 + n) / (10 + n)`` after ``n`` updates (as TensorFlow's ``ExponentialMovingAverage`` does
with ``num_updates``), so the average does not hold on to the random initial weights.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The running average of ``module``'s state (parameters and buffers).

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(1, 1, bias=False)
    >>> _ = layer.weight.data.fill_(0.0)
    >>> average = WeightAverage(layer, decay=0.5)
    >>> _ = layer.weight.data.fill_(1.0)
    >>> average.update(layer)  # decay min(0.5, 2/11): 0 + (1 - 2/11) * (1 - 0)
    >>> round(float(average.state["weight"]), 4)
    0.8182
    >>> with average.applied(layer):
    ...     round(float(layer.weight), 4)
    0.8182
    >>> float(layer.weight)  # the trained weights are back
    1.0
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, module: nn.Module) -> None:
        """Fold the module's current state into the average (after an optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for name, value in module.state_dict().items():
                average = self.state[name]
                if average.is_floating_point():
                    average.lerp_(value.detach(), 1.0 - decay)
                else:
                    average.copy_(value)

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """The average loaded into ``module`` for the block; its own state restored after."""
        trained = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.state)
        try:
            yield
        finally:
            module.load_state_dict(trained)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.decay = float(saved["decay"])
        self.updates = int(saved["updates"])
        for name, value in saved["state"].items():
            self.state[name].copy_(value)
