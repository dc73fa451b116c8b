"""Training recipes: the paper's (SGD) and ours (AdamW, cosine), as DeepChem optimizers.

A :class:`Recipe` names an optimizer, its settings, a batch size and a learning-rate
schedule; :func:`make_optimizer` turns it into a ``dc.models.optimizers.Optimizer`` for
``CGCNNModel(optimizer=...)`` and :meth:`Recipe.learning_rate` gives the rate for a point
of the training budget (used by :func:`deepchem_cgcnn.training.train_with_validation`).
"""

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from deepchem_cgcnn._quiet import import_deepchem

dc = import_deepchem()
if TYPE_CHECKING:
    from deepchem.models.optimizers import Adam as DeepChemAdam
    from deepchem.models.optimizers import AdamW as DeepChemAdamW
    from deepchem.models.optimizers import Optimizer
else:
    Optimizer = dc.models.optimizers.Optimizer
    DeepChemAdam, DeepChemAdamW = dc.models.optimizers.Adam, dc.models.optimizers.AdamW


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as the original CGCNN code trains.

    DeepChem's ``GradientDescent`` has no momentum; this is ``torch.optim.SGD``.

    Examples
    --------
    >>> import torch
    >>> optimizer = SGD(learning_rate=0.01, momentum=0.9)
    >>> optimizer._create_pytorch_optimizer([torch.nn.Parameter(torch.zeros(1))]).defaults["momentum"]
    0.9
    """

    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0
    ):
        super().__init__(learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay

    def _create_pytorch_optimizer(self, params):
        import torch

        return torch.optim.SGD(
            params, lr=self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay
        )


def _fused_on_cuda(params: list) -> dict:
    """``{"fused": True}`` when every parameter is on a CUDA device: one fused kernel per step
    instead of the ``foreach`` kernels (the optimizer was 42 % of an H100 step's GPU time);
    same update, rounding aside."""
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}


def _initial_rate(optimizer: Optimizer) -> float:
    """The rate a torch optimizer starts from (DeepChem's schedules update it per step)."""
    rate = optimizer.learning_rate
    return rate.initial_rate if hasattr(rate, "initial_rate") else rate


class AdamW(DeepChemAdamW):
    """DeepChem's ``AdamW``, fused on CUDA (same defaults and update).

    Examples
    --------
    >>> import torch
    >>> optimizer = AdamW(learning_rate=2e-3, weight_decay=1e-4)
    >>> torch_optimizer = optimizer._create_pytorch_optimizer([torch.nn.Parameter(torch.zeros(1))])
    >>> type(torch_optimizer).__name__, torch_optimizer.defaults["fused"]
    ('AdamW', None)
    """

    def _create_pytorch_optimizer(self, params):
        import torch

        params = list(params)
        return torch.optim.AdamW(
            params,
            _initial_rate(self),
            (self.beta1, self.beta2),
            self.epsilon,
            self.weight_decay,
            self.amsgrad,
            **_fused_on_cuda(params),
        )


class Adam(DeepChemAdam):
    """DeepChem's ``Adam``, fused on CUDA (same defaults and update)."""

    def _create_pytorch_optimizer(self, params):
        import torch

        params = list(params)
        return torch.optim.Adam(
            params,
            lr=_initial_rate(self),
            betas=(self.beta1, self.beta2),
            eps=self.epsilon,
            weight_decay=self.weight_decay,
            **_fused_on_cuda(params),
        )


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, learning rate, schedule, batch size.

    Attributes
    ----------
    name: str
        ``"paper"`` or ``"fast"`` for the shipped ones.
    optimizer: str
        ``"sgd"``, ``"adam"`` or ``"adamw"``.
    learning_rate: float
        The base (peak) learning rate.
    schedule: str
        ``"constant"`` (the original code's default run never reaches its step at
        epoch 100), ``"cosine"`` (from the base rate to 1 % of it over the budget).
    batch_size: int
    weight_decay: float
    momentum: float
        SGD only.
    """

    name: str
    optimizer: str
    learning_rate: float
    schedule: str
    batch_size: int
    weight_decay: float = 0.0
    momentum: float = 0.9

    def learning_rate_at(self, fraction: float) -> float:
        """The learning rate when ``fraction`` (0 to 1) of the training budget is used.

        Examples
        --------
        >>> FAST.learning_rate_at(0.0), round(FAST.learning_rate_at(1.0), 6)
        (0.002, 2e-05)
        >>> PAPER.learning_rate_at(0.7)
        0.01
        """
        if self.schedule == "constant":
            return self.learning_rate
        if self.schedule == "cosine":
            return cosine_learning_rate(self.learning_rate, fraction)
        raise ValueError(f"unknown schedule {self.schedule!r}; use 'constant' or 'cosine'")

    def to_dict(self) -> dict:
        return asdict(self)


def cosine_learning_rate(base: float, fraction: float, floor: float = 0.01) -> float:
    """Cosine decay from ``base`` to ``floor * base`` as ``fraction`` goes 0 -> 1."""
    fraction = min(max(fraction, 0.0), 1.0)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction)))


PAPER = Recipe(
    "paper",
    optimizer="sgd",
    learning_rate=0.01,
    schedule="constant",
    batch_size=256,
    weight_decay=0.0,
    momentum=0.9,
)
"""The original code's defaults (SGD, momentum 0.9, lr 0.01, batch 256), as the paper trained."""

FAST = Recipe(
    "fast",
    optimizer="adamw",
    learning_rate=2e-3,
    schedule="cosine",
    batch_size=128,
    weight_decay=1e-4,
)
"""Ours for accuracy per CPU-hour: AdamW with a cosine decay over the time budget."""

RECIPES = {recipe.name: recipe for recipe in (PAPER, FAST)}


def make_optimizer(recipe: Recipe) -> Optimizer:
    """The DeepChem optimizer of a recipe.

    Examples
    --------
    >>> type(make_optimizer(PAPER)).__name__, type(make_optimizer(FAST)).__name__
    ('SGD', 'AdamW')
    """
    if recipe.optimizer == "sgd":
        return SGD(recipe.learning_rate, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return AdamW(learning_rate=recipe.learning_rate, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return Adam(learning_rate=recipe.learning_rate)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'sgd', 'adam' or 'adamw'")
