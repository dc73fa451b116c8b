"""Original CGCNN ``.pth.tar`` checkpoints, and the pretrained models shipped in this package."""

import json
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch

from deepchem_cgcnn.graph import gaussian_centers

PRETRAINED_PACKAGE = "deepchem_cgcnn.pretrained"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why in words."""


class UnknownModelError(KeyError):
    """No shipped model has the name asked for; the message lists those that exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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


def read_cgcnn_checkpoint(path: str) -> dict[str, Any]:
    """``torch.load`` an original checkpoint with ``weights_only=True``, allowing NumPy scalars only."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CGCNN checkpoint at {path!r}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path}: not a loadable checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:300]})"
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    missing = {"state_dict", "normalizer"} - set(checkpoint)
    if missing:
        raise CheckpointError(
            f"{path} is not an original CGCNN checkpoint: it lacks {sorted(missing)}"
        )
    state = checkpoint["state_dict"]
    _check_state_dict(
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


def _check_state_dict(path: Any, state: Any, required: Sequence[str]) -> None:
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


def available_pretrained(include_members: bool = False) -> list[str]:
    """Names of the models shipped with the package.

    Extra members of an ensemble are shipped as ``<name>.1``, ``<name>.2``, ...
    and listed only with ``include_members=True``.

    Examples
    --------
    >>> "mp-formation-energy" in available_pretrained()
    True
    """
    folder = resources.files(PRETRAINED_PACKAGE)
    names = sorted(entry.name[:-3] for entry in folder.iterdir() if entry.name.endswith(".pt"))
    return names if include_members else [n for n in names if not _member_index(n)]


def _member_index(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return suffix if suffix.isdigit() else ""


def ensemble_members(name: str) -> list[str]:
    """The shipped models making up ``name``'s ensemble: ``name`` itself, then ``name.1``, ...

    Examples
    --------
    >>> ensemble_members("mp-formation-energy")[0]
    'mp-formation-energy'
    """
    _check_name(name)
    extra = [
        n
        for n in available_pretrained(include_members=True)
        if n.startswith(name + ".") and _member_index(n)
    ]
    return [name] + sorted(extra, key=lambda n: int(_member_index(n)))


def pretrained_card(name: str) -> dict[str, Any]:
    """The model card (data, split, recipe, metrics) of a shipped model."""
    _check_name(name)
    with (resources.files(PRETRAINED_PACKAGE) / f"{name}.json").open("r") as handle:
        return json.load(handle)


def _check_name(name: str) -> None:
    names = available_pretrained(include_members=True)
    if name not in names:
        raise UnknownModelError(
            f"no pretrained model named {name!r}; available: {', '.join(names)}"
        )


def save_pretrained(model, path: str, featurizer_params: dict[str, Any]) -> None:
    """Write a model as a shipped-model file: hyperparameters, featurizer settings, weights."""
    from deepchem_cgcnn._io import atomic_torch_save

    atomic_torch_save(
        path,
        {
            "hyperparameters": model.hyperparameters,
            "featurizer": featurizer_params,
            "training_counts": model.training_counts,
            "state_dict": {k: v.detach().cpu() for k, v in model.model.state_dict().items()},
        },
    )


def load_pretrained(name: str, model_class: type | None = None, **kwargs):
    """Load a shipped model by name, offline; its featurizer settings are in ``model.featurizer_params``."""
    _check_name(name)
    with (resources.files(PRETRAINED_PACKAGE) / f"{name}.pt").open("rb") as handle:
        model = load_saved(handle, model_class, **kwargs)
    if model.training_counts is None:
        model.training_counts = pretrained_card(name).get("training_counts")
    return model


def load_saved(file, model_class: type | None = None, **kwargs):
    """Load a file written by :func:`save_pretrained` (a path or a binary file object)."""
    if model_class is None:
        from deepchem_cgcnn.model import CGCNNModel

        model_class = CGCNNModel
    name = getattr(file, "name", file)
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{name}: not a loadable model file ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:300]})"
        ) from error
    if not isinstance(saved, dict) or not {"hyperparameters", "featurizer", "state_dict"} <= set(
        saved
    ):
        raise CheckpointError(
            f"{name}: not a deepchem-cgcnn model file (needs "
            f"'hyperparameters', 'featurizer' and 'state_dict')"
        )
    for key in ("hyperparameters", "featurizer"):
        if not isinstance(saved[key], dict):
            raise CheckpointError(f"{name}: {key!r} is a {type(saved[key]).__name__}, not a dict")
    _check_state_dict(name, saved["state_dict"], ("embedding.weight", "target_std"))
    if not (saved["state_dict"]["target_std"] > 0).all():
        raise CheckpointError(
            f"{name}: the target standard deviation must be positive, got "
            f"{saved['state_dict']['target_std'].tolist()}"
        )
    try:
        model = model_class(
            **saved["hyperparameters"],
            featurizer_params=saved["featurizer"],
            training_counts=saved.get("training_counts"),
            **kwargs,
        )
        model.model.load_state_dict(saved["state_dict"])
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{name}: the weights do not fit the hyperparameters ({str(error).splitlines()[0]})"
        ) from error
    model.model.eval()
    return model
