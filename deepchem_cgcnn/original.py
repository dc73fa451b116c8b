"""Original CGCNN ``.pth.tar`` checkpoints (Xie & Grossman's code) as CGCNNModels.

The eight published checkpoints load with ``weights_only=True`` (a NumPy scalar is the only
non-tensor object allowed), are validated, and become :class:`~deepchem_cgcnn.CGCNNModel`s
that reproduce the original code's predictions.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deepchem_cgcnn.graph import gaussian_centers


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why in words."""


def _numpy_scalar_globals() -> list[Any]:
    """The only non-tensor globals an original checkpoint may hold: a NumPy scalar and its dtype.

    ``semi-metal-classification.pth.tar`` stores ``best_mae_error`` as a NumPy
    float64, pickled under NumPy 1's module name.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    float_dtype = type(np.dtype(np.float64))
    return [(scalar, "numpy.core.multiarray.scalar"), scalar, np.dtype, float_dtype]


def load_plain_data(file: Any, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(..., weights_only=True)``: tensors and plain data only, never code.

    Anything else (a pickled object, a damaged file) raises :class:`CheckpointError` naming
    the file and saying it is not a loadable ``what``.
    """
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{getattr(file, 'name', file)}: not a loadable {what} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:300]})"
        ) from error


def read_cgcnn_checkpoint(path: str) -> dict[str, Any]:
    """``torch.load`` an original checkpoint with ``weights_only=True``, allowing NumPy scalars only."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CGCNN checkpoint at {path!r}")
    with torch.serialization.safe_globals(_numpy_scalar_globals()):
        checkpoint = load_plain_data(path, "checkpoint")
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    missing = {"state_dict", "normalizer"} - set(checkpoint)
    if missing:
        raise CheckpointError(
            f"{path} is not an original CGCNN checkpoint: it lacks {sorted(missing)}"
        )
    state = checkpoint["state_dict"]
    check_state_dict(
        path,
        state,
        ("embedding.weight", "convs.0.fc_full.weight", "conv_to_fc.weight", "fc_out.weight"),
    )
    if checkpoint.get("args") is not None and not isinstance(checkpoint["args"], dict):
        raise CheckpointError(
            f"{path}: 'args' is a {type(checkpoint['args']).__name__}, "
            f"not a dict of the original's arguments"
        )
    normalizer = checkpoint["normalizer"]
    if not isinstance(normalizer, dict) or not {"mean", "std"} <= set(normalizer):
        raise CheckpointError(
            f"{path}: 'normalizer' must be a dict with 'mean' and 'std', got "
            f"{type(normalizer).__name__} {str(normalizer)[:80]!r}"
        )
    try:
        mean, std = (float(torch.as_tensor(normalizer[k])) for k in ("mean", "std"))
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: the normalizer's mean and std must be numbers ({error})"
        ) from error
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise CheckpointError(
            f"{path}: normalizer mean {mean} and std {std}: the std must be "
            f"a positive finite number and the mean finite"
        )
    return checkpoint


def check_state_dict(path: Any, state: Any, required: Sequence[str]) -> None:
    """Raise :class:`CheckpointError` for a state dict with missing, non-tensor or non-finite entries."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the state dict is a {type(state).__name__}, not a dict")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: the state dict lacks {missing}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: state entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: state entry {key!r} holds NaN or infinite values")


def load_cgcnn_checkpoint(
    path: str, model_class: type | None = None, radius: float = 8.0, step: float = 0.2, **kwargs
):
    """Build a :class:`~deepchem_cgcnn.CGCNNModel` from an original CGCNN checkpoint.

    The architecture comes from the checkpoint's ``args`` and tensor shapes, the
    weights from its ``state_dict`` and the target mean and standard deviation
    from its ``normalizer``, so ``predict`` returns physical units (probabilities
    for the classifier) with no transformer. Featurize with
    ``CGCNNFeaturizer(selection='cgcnn', padding='cgcnn')`` (the defaults) to get the
    original's predictions.

    Parameters
    ----------
    path: str
        The ``.pth.tar`` file.
    model_class: type, optional
        Defaults to :class:`~deepchem_cgcnn.CGCNNModel`.
    radius, step: float
        The featurizer settings the model will see; they must give as many
        Gaussian edge features as the checkpoint was trained with.
    kwargs
        Passed to the model's constructor (``model_dir``, ``batch_size``, ...).
    """
    if model_class is None:
        from deepchem_cgcnn.model import CGCNNModel

        model_class = CGCNNModel
    checkpoint = read_cgcnn_checkpoint(path)
    state = checkpoint["state_dict"]
    args = checkpoint.get("args", {}) or {}
    hidden = state["embedding.weight"].shape[0]
    n_edge = state["convs.0.fc_full.weight"].shape[1] - 2 * hidden
    n_gaussians = len(gaussian_centers(radius, step))
    if n_edge != n_gaussians:
        raise CheckpointError(
            f"{os.path.basename(path)} was trained on {n_edge} Gaussian edge features per "
            f"neighbour, but radius={radius} Å and step={step} Å give {n_gaussians}; "
            f"featurize with the settings it was trained with (the original default is "
            f"radius=8, step=0.2, i.e. 41 features)"
        )
    n_out = state["fc_out.weight"].shape[0]
    classification = (
        args.get("task", "classification" if n_out > 1 else "regression") == "classification"
    )
    num_conv = len({key.split(".")[1] for key in state if key.startswith("convs.")})
    n_hidden = 1 + len({key.split(".")[1] for key in state if key.startswith("fcs.")})
    model = model_class(
        in_node_dim=state["embedding.weight"].shape[1],
        hidden_node_dim=hidden,
        in_edge_dim=n_edge,
        num_conv=num_conv,
        predictor_hidden_feats=state["conv_to_fc.weight"].shape[0],
        n_tasks=1,
        mode="classification" if classification else "regression",
        n_classes=n_out if classification else 2,
        n_hidden_layers=n_hidden,
        radius=radius,
        step=step,
        featurizer_params={
            "radius": float(radius),
            "max_neighbors": 12,
            "step": float(step),
            "selection": "cgcnn",
            "padding": "cgcnn",
            "tie_tolerance": 1e-5,
        },
        **kwargs,
    )
    normalizer = checkpoint["normalizer"]
    try:
        model.model.load_state_dict(
            {
                **state,
                "target_mean": torch.full((1,), float(torch.as_tensor(normalizer["mean"]))),
                "target_std": torch.full((1,), float(torch.as_tensor(normalizer["std"]))),
            }
        )
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: the weights do not fit the architecture they "
            f"describe ({str(error).splitlines()[0]})"
        ) from error
    model.model.eval()
    return model
