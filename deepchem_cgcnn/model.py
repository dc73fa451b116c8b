"""CGCNN (an ``nn.Module``) and CGCNNModel (a DeepChem ``TorchModel``)."""

import hashlib
import logging
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.elements import element_embedding_table
from deepchem_cgcnn.graph import CrystalGraph, batch_graphs, gaussian_centers
from deepchem_cgcnn.graph_step import GraphStep, GraphStepWarning
from deepchem_cgcnn.layers import (
    GatedConv,
    GaussianExpansion,
    SimpleConv,
    atoms_per_crystal,
    pool_atoms,
)
from deepchem_cgcnn.resident import (
    MAX_DEVICE_FRACTION,
    ResidentBatch,
    ResidentGraphs,
    resident_batches,
)

dc = import_deepchem()
if TYPE_CHECKING:
    from deepchem.models import TorchModel

    from deepchem_cgcnn.card import ModelCard
    from deepchem_cgcnn.domain import DomainRecord
else:
    TorchModel = dc.models.TorchModel
logger = logging.getLogger(__name__)

CONVOLUTIONS = {"gated": GatedConv, "simple": SimpleConv}
POOLINGS = ("mean", "sum", "max", "linear-mean", "linear-sum")


class CGCNN(nn.Module):
    """Crystal Graph Convolutional Neural Network (Xie & Grossman, PRL 120, 145301, 2018).

    Atomic numbers -> 92-dim CGCNN embedding -> Linear(92, A) -> ``num_conv``
    convolutions -> pooling over each crystal's atoms -> softplus -> Linear ->
    softplus -> (dropout) -> ``n_hidden_layers - 1`` x [Linear -> softplus] ->
    output. Parameter names follow the original code (``embedding``,
    ``convs.k.fc_full``, ``convs.k.bn1``, ``conv_to_fc``, ``fcs``, ``fc_out``) so its
    checkpoints load as they are.

    Parameters
    ----------
    in_node_dim: int, default 92
        Atom feature length; must be 92, the CGCNN element embedding.
    hidden_node_dim: int, default 64
        A, the atom vector length inside the convolutions.
    in_edge_dim: int, default 41
        Edge feature length, the number of Gaussians: ``len(arange(0, radius + step, step))``.
    num_conv: int, default 3
        Number of convolutions.
    predictor_hidden_feats: int, default 128
        Width of the layers after pooling.
    n_tasks: int, default 1
        Number of targets.
    mode: str, default 'regression'
        ``'regression'`` or ``'classification'``.
    n_classes: int, default 2
        Classes per task in classification.
    conv: str, default 'gated'
        ``'gated'`` (Eq. 5, the original ``ConvLayer``) or ``'simple'`` (Eq. 4).
    n_hidden_layers: int, default 1
        Linear layers after pooling, before the output (the original's ``n_h``).
    dropout: float, optional
        Dropout after the first layer past pooling; default 0.5 for classification
        (as the original) and 0 for regression.
    pooling: str, default 'mean'
        ``'mean'``, ``'sum'`` or ``'max'`` over each crystal's atom vectors, then the
        layers above; or the paper's linear pooling, regression only:
        ``'linear-mean'`` (intensive targets) / ``'linear-sum'`` (extensive targets,
        e.g. energy per cell): each atom's vector goes through one linear layer to a
        scalar per task, its contribution, and the crystal's prediction is their
        mean / sum (see :meth:`atom_contributions`).
    radius, step: float, default 8.0, 0.2
        The featurizer's, to expand distances into ``in_edge_dim`` Gaussians.
    nonnegative: bool, default False
        Regression only: the targets cannot be negative (a band gap, a modulus), so
        predictions are clipped at zero when the model is evaluated. Training sees the
        unclipped output, so a negative prediction of a positive target still gets a
        gradient.

    Examples
    --------
    >>> import torch
    >>> net = CGCNN()
    >>> batch = {"atomic_numbers": torch.tensor([11, 17]), "edge_center": torch.tensor([0, 1]),
    ...          "edge_neighbor": torch.tensor([1, 0]), "edge_distance": torch.tensor([2.8, 2.8]),
    ...          "crystal_index": torch.tensor([0, 0]), "n_crystals": 1, "uniform_degree": 1}
    >>> net.eval()(batch).shape
    torch.Size([1, 1])
    """

    element_table: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(
        self,
        in_node_dim: int = 92,
        hidden_node_dim: int = 64,
        in_edge_dim: int = 41,
        num_conv: int = 3,
        predictor_hidden_feats: int = 128,
        n_tasks: int = 1,
        mode: str = "regression",
        n_classes: int = 2,
        conv: str = "gated",
        n_hidden_layers: int = 1,
        dropout: float | None = None,
        pooling: str = "mean",
        radius: float = 8.0,
        step: float = 0.2,
        nonnegative: bool = False,
    ):
        super().__init__()
        if mode not in ("regression", "classification"):
            raise ValueError(f"mode must be 'regression' or 'classification', got {mode!r}")
        if conv not in CONVOLUTIONS:
            raise ValueError(f"conv must be one of {sorted(CONVOLUTIONS)}, got {conv!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if pooling.startswith("linear") and mode != "regression":
            raise ValueError(f"pooling={pooling!r} (atom contributions) is for regression only")
        table = element_embedding_table()
        if in_node_dim != table.shape[1]:
            raise ValueError(
                f"in_node_dim={in_node_dim}, but the CGCNN element embedding "
                f"has {table.shape[1]} features per atom"
            )
        n_gaussians = len(gaussian_centers(radius, step))
        if in_edge_dim != n_gaussians:
            raise ValueError(
                f"in_edge_dim={in_edge_dim}, but a featurizer with radius={radius} and "
                f"step={step} gives {n_gaussians} Gaussian edge features; pass the "
                f"featurizer's radius and step, or in_edge_dim={n_gaussians}"
            )
        if nonnegative and mode != "regression":
            raise ValueError("nonnegative=True is for regression outputs")
        self.n_tasks = n_tasks
        self.nonnegative = bool(nonnegative)
        self.mode = mode
        self.n_classes = n_classes
        self.pooling = pooling
        self.register_buffer(
            "element_table", torch.from_numpy(np.nan_to_num(table)).float(), persistent=False
        )
        self.expand = GaussianExpansion(radius, step)
        self.embedding = nn.Linear(in_node_dim, hidden_node_dim)
        self.convs = nn.ModuleList(
            [CONVOLUTIONS[conv](hidden_node_dim, in_edge_dim) for _ in range(num_conv)]
        )
        if pooling.startswith("linear"):
            self.atom_out = nn.Linear(hidden_node_dim, n_tasks)
        else:
            self.conv_to_fc = nn.Linear(hidden_node_dim, predictor_hidden_feats)
            self.fcs = nn.ModuleList(
                [
                    nn.Linear(predictor_hidden_feats, predictor_hidden_feats)
                    for _ in range(n_hidden_layers - 1)
                ]
            )
            if dropout is None:
                dropout = 0.5 if mode == "classification" else 0.0
            self.dropout = nn.Dropout(dropout)
            n_out = n_tasks * n_classes if mode == "classification" else n_tasks
            self.fc_out = nn.Linear(predictor_hidden_feats, n_out)
        self.register_buffer("target_mean", torch.zeros(n_tasks))
        self.register_buffer("target_std", torch.ones(n_tasks))

    def _bounded(self, prediction: torch.Tensor) -> torch.Tensor:
        if self.nonnegative and not self.training:
            return prediction.clamp_min(0.0)
        return prediction

    def atom_vectors(self, batch: dict[str, Any]) -> torch.Tensor:
        """``(N, A)`` atom vectors after the last convolution."""
        atom_fea = self.embedding(self.element_table[batch["atomic_numbers"]])
        edge_fea = self.expand(batch["edge_distance"])
        center, neighbor = batch["edge_center"], batch["edge_neighbor"]
        degree = batch["uniform_degree"]
        edge_valid, atom_valid = batch.get("edge_valid"), batch.get("atom_valid")
        for conv in self.convs:
            atom_fea = conv(atom_fea, edge_fea, center, neighbor, degree, edge_valid, atom_valid)
        vectors: torch.Tensor = atom_fea
        return vectors

    def atom_contributions(self, batch: dict[str, Any]) -> torch.Tensor:
        """``(N, n_tasks)`` per-atom contributions in target units, linear pooling only.

        With ``'linear-mean'`` each crystal's prediction is the mean of its atoms'
        contributions, with ``'linear-sum'`` their sum, exactly (the target's
        normalization is folded in: mean-pooled contributions are ``c * std + mean``,
        sum-pooled ones ``c * std + mean / n_atoms``).
        """
        if not self.pooling.startswith("linear"):
            raise ValueError(
                f"atom contributions need pooling='linear-mean' or 'linear-sum'; "
                f"this model pools with {self.pooling!r}, so its prediction is not "
                f"a sum of per-atom terms"
            )
        scaled: torch.Tensor = self.atom_out(self.atom_vectors(batch)) * self.target_std
        if self.pooling == "linear-mean":
            return scaled + self.target_mean
        counts = atoms_per_crystal(batch["crystal_index"], batch["n_crystals"], scaled.dtype)
        return scaled + self.target_mean / counts[batch["crystal_index"]][:, None]

    def forward(self, batch: dict[str, Any]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Regression: ``(n, n_tasks)`` in target units. Classification: (probabilities, logits),
        each ``(n, n_classes)`` for one task, else ``(n, n_tasks, n_classes)``."""
        atom_fea = self.atom_vectors(batch)
        n_crystals = batch["n_crystals"]
        # a padded batch's padding atoms belong to an extra crystal, pooled and dropped
        pooled_crystals = n_crystals + 1 if "atom_valid" in batch else n_crystals
        if self.pooling.startswith("linear"):
            contributions = self.atom_out(atom_fea)
            how = self.pooling.split("-")[1]
            pooled = pool_atoms(contributions, batch["crystal_index"], pooled_crystals, how)
            return self._bounded(pooled[:n_crystals] * self.target_std + self.target_mean)
        crystal_fea = pool_atoms(atom_fea, batch["crystal_index"], pooled_crystals, self.pooling)
        crystal_fea = crystal_fea[:n_crystals]
        hidden = F.softplus(self.conv_to_fc(F.softplus(crystal_fea)))
        hidden = self.dropout(hidden)
        for fc in self.fcs:
            hidden = F.softplus(fc(hidden))
        out = self.fc_out(hidden)
        if self.mode == "regression":
            return self._bounded(out * self.target_std + self.target_mean)
        if self.n_tasks > 1:
            out = out.view(-1, self.n_tasks, self.n_classes)
        return F.softmax(out, dim=-1), out


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""The ``torch.compile`` modes ``CGCNNModel(compile_mode=...)`` takes."""


def check_compile_mode(compile_mode: str, graph_step: bool = False) -> None:
    """Raise ``ValueError`` unless ``compile_mode`` is one of :data:`COMPILE_MODES`, and one
    without CUDA graphs of its own with ``graph_step`` (which captures the step itself).

    >>> check_compile_mode("reduce-overhead", graph_step=True)
    Traceback (most recent call last):
    ...
    ValueError: graph_step captures the whole step in CUDA graphs itself: compile_mode 'reduce-overhead' would capture inside it; use 'default' or 'max-autotune-no-cudagraphs'
    """
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
    if graph_step and compile_mode in ("reduce-overhead", "max-autotune"):
        raise ValueError(
            f"graph_step captures the whole step in CUDA graphs itself: compile_mode "
            f"{compile_mode!r} would capture inside it; use 'default' or "
            f"'max-autotune-no-cudagraphs'"
        )


def _collated_batches(
    dataset: Any, batch_size: int, epochs: int, deterministic: bool
) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """``TorchModel.default_generator``'s batches (unpadded) of ``batch_size`` crystals."""
    for _ in range(epochs):
        for X, y, w, _ids in dataset.iterbatches(
            batch_size=batch_size, deterministic=deterministic, pad_batches=False
        ):
            yield [X], [y], [w]


def _warn_missing_labels(dataset: Any) -> None:
    """Warn, with a count, when labels with non-zero weight are NaN: they are trained as missing."""
    try:
        y = np.asarray(dataset.y, dtype=np.float64).reshape(len(dataset), -1)
        w = np.broadcast_to(np.asarray(dataset.w).reshape(len(dataset), -1), y.shape)
    except (TypeError, ValueError):
        return
    missing = ~np.isfinite(y) & (w != 0)
    if missing.any():
        rows = np.nonzero(missing.any(axis=1))[0]
        ids = np.asarray(dataset.ids)[rows[:5]].tolist()
        warnings.warn(
            f"{int(missing.sum())} labels of {len(rows)} crystals are NaN or infinite "
            f"(e.g. {ids}); they are treated as missing (weight 0)",
            stacklevel=3,
        )


def _dataset_fingerprint(items: Sequence[Any], dataset: Any) -> bytes:
    """What a resident copy must match: the graphs (by identity), labels and weights (by value)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.fromiter((id(g) for g in items), dtype=np.int64, count=len(items)).tobytes())
    for array in (dataset.y, dataset.w):
        values = np.ascontiguousarray(np.asarray(array))
        digest.update(f"{values.shape}{values.dtype}".encode())
        digest.update(values.tobytes())
    return digest.digest()


def resolve_device(choice: str) -> torch.device:
    """The torch device for ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA device is available to torch here")
    return torch.device(choice)


class GraphSettingsError(ValueError):
    """Crystal graphs made with featurizer settings other than those the model was trained on."""


REGRESSION_LOSSES = ("mse", "l1")
"""The training losses of :class:`CGCNNModel` ``regression_loss``."""


class CGCNNModel(TorchModel):
    """CGCNN as a DeepChem model: a drop-in for ``dc.models.CGCNNModel`` without DGL.

    Takes the crystal graphs of :class:`~deepchem_cgcnn.CGCNNFeaturizer` as
    dataset X and accepts ``dc.models.CGCNNModel``'s arguments with the same
    meaning, plus the options of :class:`CGCNN`. Regression targets are
    normalized internally (mean and standard deviation of the training labels,
    as the original's ``Normalizer``), so ``fit`` on raw eV/atom converges and
    ``predict`` returns the same units; DeepChem's ``NormalizationTransformer``
    works too.

    Parameters
    ----------
    in_node_dim, hidden_node_dim, in_edge_dim, num_conv, predictor_hidden_feats, n_tasks, mode, n_classes
        As ``dc.models.CGCNNModel`` (see :class:`CGCNN`).
    conv, n_hidden_layers, dropout, pooling, radius, step
        See :class:`CGCNN`.
    nonnegative: bool, default False
        Regression only: predictions are clipped at zero (see :class:`CGCNN`).
    normalize_targets: bool, default True
        Regression only: fit the target mean and standard deviation on the first
        ``fit`` and train on normalized targets.
    regression_loss: str, default "mse"
        Regression only: ``"mse"`` (squared error on normalized targets, the original's) or
        ``"l1"`` (absolute error on normalized targets: the mean absolute error that the
        tasks are scored by, and less pulled by a few badly fitted crystals).
    featurizer_params: dict, optional
        The :class:`~deepchem_cgcnn.CGCNNFeaturizer` settings of the graphs the model
        is trained on. Graphs carry the settings that made them, and the model refuses
        graphs made with other settings (:class:`GraphSettingsError`), naming both.
        Default: taken from the training graphs on the first ``fit``.
    training_counts: dict, optional
        Per element, how many training crystals hold it (and how many are elemental
        crystals of it), as :func:`deepchem_cgcnn.domain.training_counts` gives; used by
        :meth:`check_domain` and the :class:`~deepchem_cgcnn.domain.DomainWarning` of
        :meth:`predict`. Default: counted on the first ``fit``.
    compile_convolutions: bool, default False
        Compile each convolution with ``torch.compile`` (dynamic shapes), which fuses
        its per-neighbour batch norm, sigmoid and softplus with their backward passes:
        about 1.3x faster training on a CPU after 5-40 s of compilation on the first
        batches (needs a C++ compiler on CPU). Weights and checkpoints are unchanged.
    resident: bool, optional
        Hold each in-memory dataset (``NumpyDataset`` of crystal graphs) that ``fit``,
        ``predict`` or ``evaluate`` sees as concatenated tensors on the model's device, so
        a batch is an index gather there instead of a NumPy collation and a copy
        (:mod:`deepchem_cgcnn.resident`); the batches, their order and the random
        permutation are those of DeepChem's loop. Default (None): on for a ``NumpyDataset``
        that needs at most half the free GPU memory (always on a CPU); True: for any dataset
        of crystal graphs; False: off.
    compile_mode: str, optional
        Compile the whole network in place with ``torch.compile`` in this mode
        (``'default'``, ``'reduce-overhead'``: with CUDA graphs on a GPU,
        ``'max-autotune'``, ``'max-autotune-no-cudagraphs'``); minutes of compilation on the
        first batches. Weights, state-dict keys and checkpoints are unchanged. Implies
        ``static_shapes`` unless that is given; not with ``compile_convolutions``.
    static_shapes: bool, optional
        Pad each resident batch's atoms and edges to one of a few sizes (batch norms masked
        to the real rows, so losses and gradients are unchanged), so that a compiled model
        or CUDA graphs see few shapes. For the resident path only, and for a compiled model:
        eager, the masked batch norms are slower than PyTorch's (0.62x on a CPU). Default
        (None): with ``compile_mode``.
    graph_step: bool, default False
        Train with the whole step (forward, loss, backward, the optimizer's update) captured
        as a CUDA graph per padded batch shape and replayed (:mod:`deepchem_cgcnn.graph_step`),
        instead of launching its few hundred kernels one by one: for a GPU, where those
        launches bound a step. Needs a resident dataset, static shapes (implied) and, on a GPU,
        Adam or AdamW (DeepChem's default); on a CPU the same step runs eagerly, slower than
        without it, with a :class:`GraphStepWarning`. Combine with
        ``compile_mode='default'`` to replay fused kernels.
    predict_batch_size: int, optional
        Crystals per batch in ``predict`` and ``evaluate``. Batch norm runs on its running
        statistics there, so predictions do not depend on it; a GPU predicts many times
        faster in batches of thousands, as each batch is a fixed number of kernel launches.
        Default (None): ``batch_size``.
    kwargs
        Passed to ``dc.models.TorchModel`` (``batch_size``, ``learning_rate``,
        ``optimizer``, ``model_dir``, ...).

    Examples
    --------
    >>> import numpy as np, deepchem as dc
    >>> from pymatgen.core import Lattice, Structure
    >>> from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
    >>> crystals = [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ...             for a in (3.0, 3.5, 4.0, 4.5)]
    >>> dataset = dc.data.NumpyDataset(CGCNNFeaturizer().featurize(crystals), np.array([1.0, 2.0, 3.0, 4.0]))
    >>> model = CGCNNModel(batch_size=4, learning_rate=0.01)
    >>> loss = model.fit(dataset, nb_epoch=2)
    >>> model.predict(dataset).shape
    (4, 1)
    """

    def __init__(
        self,
        in_node_dim: int = 92,
        hidden_node_dim: int = 64,
        in_edge_dim: int = 41,
        num_conv: int = 3,
        predictor_hidden_feats: int = 128,
        n_tasks: int = 1,
        mode: str = "regression",
        n_classes: int = 2,
        conv: str = "gated",
        n_hidden_layers: int = 1,
        dropout: float | None = None,
        pooling: str = "mean",
        radius: float = 8.0,
        step: float = 0.2,
        nonnegative: bool = False,
        normalize_targets: bool = True,
        regression_loss: str = "mse",
        compile_convolutions: bool = False,
        resident: bool | None = None,
        predict_batch_size: int | None = None,
        compile_mode: str | None = None,
        static_shapes: bool | None = None,
        graph_step: bool = False,
        featurizer_params: dict[str, Any] | None = None,
        training_counts: dict[str, dict[str, int]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.hyperparameters: dict[str, Any] = dict(
            in_node_dim=in_node_dim,
            hidden_node_dim=hidden_node_dim,
            in_edge_dim=in_edge_dim,
            num_conv=num_conv,
            predictor_hidden_feats=predictor_hidden_feats,
            n_tasks=n_tasks,
            mode=mode,
            n_classes=n_classes,
            conv=conv,
            n_hidden_layers=n_hidden_layers,
            dropout=dropout,
            pooling=pooling,
            radius=radius,
            step=step,
            nonnegative=nonnegative,
        )
        self.featurizer_params: dict[str, Any] | None = (
            dict(featurizer_params) if featurizer_params else None
        )
        self.training_counts: dict[str, dict[str, int]] | None = training_counts
        self.card: ModelCard | None = None
        model = CGCNN(**self.hyperparameters)
        if compile_mode is not None:
            check_compile_mode(compile_mode, graph_step)
            if compile_convolutions:
                raise ValueError(
                    "compile_mode compiles the whole model: leave out compile_convolutions"
                )
            model.compile(mode=None if compile_mode == "default" else compile_mode)
        if compile_convolutions:
            for layer in model.convs:
                layer.compile(dynamic=True)
        self.compile_mode = compile_mode
        self.normalize_targets = normalize_targets and mode == "regression"
        self.resident = resident
        if predict_batch_size is not None and predict_batch_size < 1:
            raise ValueError(f"predict_batch_size must be at least 1, got {predict_batch_size}")
        self.predict_batch_size = predict_batch_size
        if static_shapes is None:
            static_shapes = compile_mode is not None or graph_step
        if graph_step and not static_shapes:
            raise ValueError("graph_step replays fixed shapes: leave static_shapes on")
        self.static_shapes = static_shapes
        self.graph_step = graph_step
        self._graph_step: GraphStep | None = None
        self._resident_cache: list[tuple[Any, bytes, ResidentGraphs]] = []
        if regression_loss not in REGRESSION_LOSSES:
            raise ValueError(
                f"regression_loss {regression_loss!r}: choose from {sorted(REGRESSION_LOSSES)}"
            )
        self.regression_loss = regression_loss
        if mode == "regression":
            loss = self._normalized_mse if regression_loss == "mse" else self._normalized_l1
            output_types = ["prediction"]
        else:
            loss, output_types = self._cross_entropy, ["prediction", "loss"]
        super().__init__(model, loss=loss, output_types=output_types, **kwargs)

    # ------------------------------------------------------------------ losses
    def _normalized_mse(
        self, outputs: list[torch.Tensor], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> torch.Tensor:
        """Mean squared error on normalized targets, weighted as DeepChem weights losses."""
        return self._normalized_error(outputs, labels, weights, torch.square)

    def _normalized_l1(
        self, outputs: list[torch.Tensor], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> torch.Tensor:
        """Mean absolute error on normalized targets, weighted as DeepChem weights losses."""
        return self._normalized_error(outputs, labels, weights, torch.abs)

    def _normalized_error(
        self,
        outputs: list[torch.Tensor],
        labels: list[torch.Tensor],
        weights: list[torch.Tensor],
        penalty: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The weighted mean of ``penalty((prediction - label) / target std)`` over the labelled
        entries (a zero weight or a missing label contributes zero)."""
        prediction, target = outputs[0], labels[0].reshape(outputs[0].shape)
        weight = weights[0].reshape(prediction.shape[0], -1).expand_as(prediction)
        # A missing (NaN) label is masked before the arithmetic: NaN * 0 would still be NaN,
        # in the loss and in its gradient.
        labelled = (weight != 0) & torch.isfinite(target)
        target = torch.where(labelled, target, prediction.detach())
        error = penalty((prediction - target) / self.model.target_std)
        return torch.where(labelled, error * weight, torch.zeros_like(error)).mean()

    def _cross_entropy(
        self, outputs: list[torch.Tensor], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> torch.Tensor:
        """Cross entropy (the original's log-softmax + NLL), weighted per sample and task."""
        logits = outputs[0]
        n_tasks = self.model.n_tasks
        target = labels[0].reshape(-1, n_tasks)
        weight = weights[0].reshape(target.shape[0], -1).expand_as(target)
        labelled = (weight != 0) & torch.isfinite(target)
        logits = logits.reshape(-1, n_tasks, self.model.n_classes).permute(0, 2, 1)
        safe_target = torch.where(labelled, target, torch.zeros_like(target)).long()
        losses = F.cross_entropy(logits, safe_target, reduction="none")
        return torch.where(labelled, losses * weight, torch.zeros_like(losses)).mean()

    # ------------------------------------------------------------------ data
    def _prepare_batch(self, batch: tuple[Any, Any, Any]) -> Any:
        """Collate a batch of :class:`CrystalGraph` into one graph of tensors (or gather a
        resident batch on the device)."""
        inputs, labels, weights = batch
        if len(inputs) == 1 and isinstance(inputs[0], ResidentBatch):
            item = inputs[0]
            return (
                item.inputs(),
                None if labels is None else item.labels(),
                None if weights is None else item.weights(),
            )
        graphs = inputs[0]
        for i, graph in enumerate(graphs):
            if not isinstance(graph, CrystalGraph):
                raise TypeError(
                    f"batch item {i} is a {type(graph).__name__}, not a CrystalGraph; "
                    "featurize with deepchem_cgcnn.CGCNNFeaturizer and drop failed "
                    "structures (empty arrays) first"
                )
        self._check_settings(graphs)
        tensors = batch_graphs(graphs).tensors(self.device)
        _, labels, weights = super()._prepare_batch(([], labels, weights))
        return tensors, labels, weights

    def restore(
        self,
        checkpoint: str | None = None,
        model_dir: str | None = None,
        strict: bool | None = True,
    ) -> None:
        """``TorchModel.restore``, loading with ``weights_only=True`` (no code from the file).

        A checkpoint that holds anything but tensors and plain data, or does not fit the
        model, raises :class:`~deepchem_cgcnn.CheckpointError` naming the file.
        """
        from deepchem_cgcnn.original import CheckpointError

        self._ensure_built()
        if checkpoint is None:
            checkpoints = sorted(self.get_checkpoints(model_dir))
            if len(checkpoints) == 0:
                raise ValueError(f"No checkpoint found in {model_dir or self.model_dir}")
            checkpoint = checkpoints[0]
        try:
            data = torch.load(checkpoint, map_location=self.device, weights_only=True)
            self.model.load_state_dict(data["model_state_dict"], strict=bool(strict))
            self._pytorch_optimizer.load_state_dict(data["optimizer_state_dict"])
            self._global_step = data["global_step"]
        except Exception as error:
            raise CheckpointError(
                f"{checkpoint}: cannot restore ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:300]})"
            ) from error

    def _check_settings(self, graphs: Sequence[CrystalGraph]) -> None:
        """Refuse graphs made with featurizer settings other than the model's."""
        expected = self.featurizer_params
        if not expected:
            return
        checked: list[dict[str, Any]] = []
        for graph in graphs:
            settings = graph.settings
            if any(settings is c or settings == c for c in checked):
                continue
            differ = sorted(k for k in settings if k in expected and settings[k] != expected[k])
            if differ:
                raise GraphSettingsError(
                    f"these crystal graphs were made with featurizer settings "
                    f"{ {k: settings[k] for k in differ} }, but the model was trained on graphs "
                    f"made with { {k: expected[k] for k in differ} }; featurize with "
                    f"CGCNNFeaturizer(**model.featurizer_params)"
                )
            checked.append(settings)

    def default_generator(
        self,
        dataset: Any,
        epochs: int = 1,
        mode: str = "fit",
        deterministic: bool = True,
        pad_batches: bool = False,
    ) -> Any:
        """Batches of ``([graphs], [y], [w])``; never padded (CGCNN needs no fixed batch size);
        ``batch_size`` crystals each in training, ``predict_batch_size`` otherwise.

        With a resident dataset (see ``resident``), the same batches as index gathers."""
        size = self.batch_size if mode == "fit" else self.predict_batch_size or self.batch_size
        resident = self._resident_graphs(dataset)
        if resident is not None:
            return resident_batches(resident, size, epochs, deterministic, self.static_shapes)
        return _collated_batches(dataset, size, epochs, deterministic)

    def _resident_graphs(self, dataset: Any) -> ResidentGraphs | None:
        """The dataset held on the device (made on first use, kept for the last few datasets),
        or None where the resident path does not apply."""
        if self.resident is False:
            return None
        # datasets that are gone release their device copies
        self._resident_cache = [e for e in self._resident_cache if e[0]() is not None]
        if self.resident is None and not isinstance(dataset, dc.data.NumpyDataset):
            return None
        items = list(np.asarray(dataset.X, dtype=object).reshape(-1))
        fingerprint = _dataset_fingerprint(items, dataset)
        for reference, stored, graphs in self._resident_cache:
            if reference() is dataset and stored == fingerprint:
                return graphs
        # a dataset changed in place (labels, weights or graphs) gets a fresh device copy
        self._resident_cache = [e for e in self._resident_cache if e[0]() is not dataset]
        if not items or not all(isinstance(g, CrystalGraph) for g in items):
            return None
        if self.resident is None and self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if ResidentGraphs.nbytes_needed(items) > MAX_DEVICE_FRACTION * free:
                return None
        self._check_settings(items)
        graphs = ResidentGraphs(items, dataset.y, dataset.w, self.device)
        self._resident_cache = [
            *self._resident_cache[-3:],
            (weakref.ref(dataset), fingerprint, graphs),
        ]
        return graphs

    def predict(
        self,
        dataset: Any,
        transformers: Sequence[Any] = (),
        output_types: list[str] | None = None,
        warn_domain: bool = True,
    ) -> Any:
        """``TorchModel.predict``, with a :class:`~deepchem_cgcnn.domain.DomainWarning` naming
        the crystals outside the training domain (see :meth:`check_domain`);
        ``warn_domain=False`` skips that check (scoring during training does)."""
        from deepchem_cgcnn.domain import warn_outside_domain

        if warn_domain:
            warn_outside_domain(self.check_domain(dataset, with_formula=False))
        return super().predict(dataset, list(transformers), output_types)

    def check_domain(
        self,
        inputs: Any,
        min_count: int | None = None,
        max_vacuum_gap: float | None = None,
        with_formula: bool = True,
    ) -> list["DomainRecord"]:
        """One :class:`~deepchem_cgcnn.domain.DomainRecord` per crystal: id, formula, flags.

        Parameters
        ----------
        inputs: Dataset of CrystalGraph, or Structures / CIF strings / paths
            Crystals; structures are featurized with the model's featurizer settings.
        min_count: int, default 10
            Elements (and elemental crystals) seen in fewer training crystals are flagged.
        max_vacuum_gap: float, default 7.0
            Å of empty space between atomic planes beyond which a cell is flagged.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> model = CGCNNModel.pretrained("mp-formation-energy")
        >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        >>> slab = Structure(Lattice.tetragonal(3.6, 25.0), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.07]])
        >>> for record in model.check_domain([nacl, slab]):
        ...     print(record.formula, record.in_domain, record.flags[:1])
        NaCl True []
        Cu False ['empty gap of 23.2 Å between atomic planes along lattice vector c (slab, ...)']
        """
        from deepchem_cgcnn import domain

        graphs, ids = self._graphs_and_ids(inputs, streaming=True)
        return domain.check_graphs(
            graphs,
            ids,
            self.training_counts,
            domain.MIN_COUNT if min_count is None else min_count,
            domain.MAX_VACUUM_GAP if max_vacuum_gap is None else max_vacuum_gap,
            with_formula,
        )

    def _predict(self, *args: Any, **kwargs: Any) -> Any:
        """DeepChem's prediction loop, without building autograd graphs (faster, less memory)."""
        with torch.inference_mode():
            return super()._predict(*args, **kwargs)

    # ------------------------------------------------------------------ training
    def fit_normalizer(self, y: np.ndarray, w: np.ndarray | None = None) -> None:
        """Set the target mean and standard deviation from labels ``y`` (weight-0 and NaN entries skipped)."""
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        usable = np.isfinite(y)
        if w is not None:
            usable &= np.broadcast_to(np.asarray(w).reshape(len(y), -1), y.shape) != 0
        mean = np.array(
            [y[usable[:, t], t].mean() if usable[:, t].any() else 0.0 for t in range(y.shape[1])]
        )
        std = np.array(
            [y[usable[:, t], t].std() if usable[:, t].sum() > 1 else 1.0 for t in range(y.shape[1])]
        )
        std[~(std > 0)] = 1.0
        self.model.target_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.model.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def prepare_training(self, dataset: Any) -> None:
        """What the first ``fit`` learns from the training set before any step: the featurizer
        settings and per-element counts of its graphs (unless given) and, on the identity
        normalizer, the target mean and standard deviation. Every training loop calls it
        (``fit``, and :func:`~deepchem_cgcnn.distributed.fit_distributed` once on the whole
        training set, never per process). Datasets that stream their graphs (an
        ``iter_graphs()`` method) are read one pass, not held in memory."""
        _warn_missing_labels(dataset)
        if self.featurizer_params is None or self.training_counts is None:
            from deepchem_cgcnn.domain import training_counts

            stream = getattr(dataset, "iter_graphs", None)
            items = stream() if stream is not None else np.asarray(dataset.X, dtype=object).ravel()
            first: list[CrystalGraph] = []

            def graphs() -> Iterator[CrystalGraph]:
                for graph in items:
                    if isinstance(graph, CrystalGraph):
                        first[:] = first or [graph]
                        yield graph

            counts = training_counts(graphs())
            if self.training_counts is None:
                self.training_counts = counts
            if self.featurizer_params is None and first:
                self.featurizer_params = dict(first[0].settings)
        untouched = bool((self.model.target_std == 1).all() and (self.model.target_mean == 0).all())
        if self.normalize_targets and untouched:
            self.fit_normalizer(dataset.y, dataset.w)

    def fit(self, dataset: Any, nb_epoch: int = 10, *args: Any, **kwargs: Any) -> float:
        """``TorchModel.fit``; the first call (normalizer still the identity) also fits the normalizer."""
        self.prepare_training(dataset)
        with warnings.catch_warnings():  # DeepChem 2.8 converts its running loss tensor itself
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            return float(super().fit(dataset, nb_epoch, *args, **kwargs))

    def fit_generator(
        self,
        generator: Any,
        max_checkpoints_to_keep: int = 5,
        checkpoint_interval: int = 1000,
        restore: bool = False,
        variables: Any = None,
        loss: Any = None,
        callbacks: Any = (),
        all_losses: list[float] | None = None,
    ) -> float:
        """``TorchModel.fit_generator``; with ``graph_step``, the same loop (checkpoints,
        callbacks, logging, learning-rate schedule) around a :class:`GraphStep`.

        Another loss or a subset of the variables take DeepChem's loop."""
        if not self.graph_step or variables is not None or loss is not None:
            return float(
                super().fit_generator(
                    generator,
                    max_checkpoints_to_keep,
                    checkpoint_interval,
                    restore,
                    variables,
                    loss,
                    list(callbacks) if isinstance(callbacks, tuple) else callbacks,
                    all_losses,
                )
            )
        if self.tensorboard or self.wandb_logger is not None:
            raise ValueError("graph_step logs no TensorBoard or W&B scalars: leave them off")
        callbacks = [callbacks] if callable(callbacks) else list(callbacks)
        self._ensure_built()
        if restore:
            self.restore()
        self.model.train()
        optimizer = self._pytorch_optimizer
        train_step = self._graph_step
        if train_step is None or not train_step.bound_to(self.model, optimizer):
            train_step = self._graph_step = GraphStep(
                self.model, self._loss_fn, optimizer, self._loss_outputs
            )
            if not train_step.use_graphs:
                warnings.warn(
                    f"graph_step: the model is on {self.device}, which has no CUDA graphs; "
                    "each step runs eagerly on padded batches, slower than graph_step=False "
                    "there",
                    GraphStepWarning,
                    stacklevel=2,
                )
        started = time.time()
        loss_sum: torch.Tensor | float = 0.0
        averaged = 0
        last_average = 0.0
        for batch in generator:
            inputs, labels, weights = self._prepare_batch(batch)
            batch_loss = train_step(inputs, labels, weights)
            if self._lr_schedule is not None:
                self._lr_schedule.step()
            self._global_step += 1
            step = self._global_step
            loss_sum = loss_sum + batch_loss  # stays on the device until it is logged
            averaged += 1
            if step % self.log_frequency == 0:
                last_average = float(loss_sum) / averaged
                logger.info("Ending global_step %d: Average loss %g", step, last_average)
                if all_losses is not None:
                    all_losses.append(last_average)
                loss_sum, averaged = 0.0, 0
            if checkpoint_interval > 0 and step % checkpoint_interval == checkpoint_interval - 1:
                self.save_checkpoint(max_checkpoints_to_keep)
            for callback in callbacks:
                callback(self, step)
        if averaged > 0:
            last_average = float(loss_sum) / averaged
            logger.info("Ending global_step %d: Average loss %g", self._global_step, last_average)
            if all_losses is not None:
                all_losses.append(last_average)
        if checkpoint_interval > 0:
            self.save_checkpoint(max_checkpoints_to_keep)
        logger.info("TIMING: model fitting took %0.3f s", time.time() - started)
        return last_average

    # ------------------------------------------------------------------ interpretation
    def atom_contributions(self, inputs: Any, batch_size: int = 256) -> Any:
        """Each site's contribution to the prediction, for a linear-pooling model.

        Parameters
        ----------
        inputs: Dataset of CrystalGraph, or Structures / CIF strings / paths
            Crystals; structures are featurized with the model's featurizer settings.

        Returns
        -------
        pandas.DataFrame
            One row per site: ``crystal`` (the dataset id, or the input's index),
            ``site`` (index in the structure), ``element``, ``Z``, and
            ``contribution`` (``contribution_<k>`` per task with several tasks), in
            the target's units. Per crystal, their mean (``pooling='linear-mean'``)
            or sum (``'linear-sum'``) equals ``predict`` exactly.
        """
        import pandas as pd
        from pymatgen.core.periodic_table import Element

        graphs, ids = self._graphs_and_ids(inputs)
        self.model.eval()
        frames = []
        for start in range(0, len(graphs), batch_size):
            chunk = list(graphs[start : start + batch_size])
            tensors, _, _ = self._prepare_batch(([np.array(chunk, dtype=object)], [], []))
            with torch.no_grad():
                values = self.model.atom_contributions(tensors).cpu().numpy()
            crystal = np.repeat(np.arange(start, start + len(chunk)), [g.num_nodes for g in chunk])
            sites = np.concatenate([np.arange(g.num_nodes) for g in chunk])
            numbers = np.concatenate([g.atomic_numbers for g in chunk]).astype(int)
            frame = pd.DataFrame(
                {"crystal": np.asarray(ids, dtype=object)[crystal], "site": sites, "Z": numbers}
            )
            frame.insert(2, "element", [Element.from_Z(z).symbol for z in numbers])
            if values.shape[1] == 1:
                frame["contribution"] = values[:, 0]
            else:
                for k in range(values.shape[1]):
                    frame[f"contribution_{k}"] = values[:, k]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def embed(self, inputs: Any, per_atom: bool = False, batch_size: int = 256) -> Any:
        """Learned crystal (or atom) vectors: what the model's head sees.

        Parameters
        ----------
        inputs: Dataset of CrystalGraph, or Structures / CIF strings / paths
            Crystals; structures are featurized with the model's featurizer settings.
        per_atom: bool, default False
            One row per site (the atom vectors after the last convolution) instead of one
            per crystal (those vectors pooled as the model pools them: mean, sum or max;
            mean for linear pooling).

        Returns
        -------
        pandas.DataFrame
            ``id`` (and ``site``, ``element`` per atom), then ``v0`` ... ``v{A-1}``.

        Examples
        --------
        >>> from deepchem_cgcnn.examples import example_structures
        >>> model = CGCNNModel.pretrained("mp-formation-energy")
        >>> table = model.embed(list(example_structures().values())[:2])
        >>> table.shape, table.columns[:3].tolist()
        ((2, 65), ['id', 'v0', 'v1'])
        """
        import pandas as pd
        from pymatgen.core.periodic_table import Element

        from deepchem_cgcnn.layers import pool_atoms

        graphs, ids = self._graphs_and_ids(inputs)
        how = "mean" if self.model.pooling.startswith("linear") else self.model.pooling
        self.model.eval()
        frames = []
        for start in range(0, len(graphs), batch_size):
            chunk = list(graphs[start : start + batch_size])
            tensors, _, _ = self._prepare_batch(([np.array(chunk, dtype=object)], [], []))
            with torch.inference_mode():
                atoms = self.model.atom_vectors(tensors)
                vectors = (
                    atoms
                    if per_atom
                    else pool_atoms(atoms, tensors["crystal_index"], tensors["n_crystals"], how)
                )
            values = vectors.cpu().numpy()
            frame = pd.DataFrame(values, columns=[f"v{k}" for k in range(values.shape[1])])
            chunk_ids = np.asarray(ids, dtype=object)[start : start + len(chunk)]
            if per_atom:
                numbers = np.concatenate([g.atomic_numbers for g in chunk]).astype(int)
                frame.insert(0, "element", [Element.from_Z(z).symbol for z in numbers])
                frame.insert(0, "site", np.concatenate([np.arange(g.num_nodes) for g in chunk]))
                chunk_ids = np.repeat(chunk_ids, [g.num_nodes for g in chunk])
            frame.insert(0, "id", [str(i) for i in chunk_ids])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def _graphs_and_ids(self, inputs: Any, streaming: bool = False) -> tuple[Any, np.ndarray]:
        """Crystal graphs and ids of a dataset (with ``streaming``, an iterator for one that
        streams its graphs from disk), or of structures featurized here."""
        if isinstance(inputs, dc.data.Dataset):
            stream = getattr(inputs, "iter_graphs", None) if streaming else None
            graphs = stream() if stream is not None else np.asarray(inputs.X, dtype=object)
            return graphs, np.asarray(inputs.ids, dtype=object)
        from deepchem_cgcnn.featurizer import CGCNNFeaturizer

        settings = self.featurizer_params or {
            "radius": self.hyperparameters["radius"],
            "step": self.hyperparameters["step"],
        }
        featurizer = CGCNNFeaturizer(**settings)
        graphs = featurizer.featurize(inputs)
        if featurizer.failures:
            index, reason = featurizer.failures[0]
            raise ValueError(f"input {index} could not be featurized: {reason}")
        return graphs, np.arange(len(graphs))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_cgcnn_checkpoint(cls, path: str, **kwargs: Any) -> "CGCNNModel":
        """Load an original CGCNN ``.pth.tar`` checkpoint; see :func:`deepchem_cgcnn.original.load_cgcnn_checkpoint`."""
        from deepchem_cgcnn.original import load_cgcnn_checkpoint

        model: CGCNNModel = load_cgcnn_checkpoint(path, model_class=cls, **kwargs)
        return model

    @classmethod
    def pretrained(cls, name: str, **kwargs: Any) -> "CGCNNModel":
        """A model shipped with the package, by name (see :func:`deepchem_cgcnn.registry.available_pretrained`)."""
        from deepchem_cgcnn.registry import load_pretrained

        model: CGCNNModel = load_pretrained(name, model_class=cls, **kwargs)
        return model
