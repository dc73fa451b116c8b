"""One model lifecycle: save and load a trained model as one artifact; shipped models by name.

A saved model is one ``torch.save`` file holding plain data only (read back with
``weights_only=True``): a format version, the hyperparameters, the featurizer settings, the
per-element training counts, the card when there is one, and the weights. Shipped models live
in ``deepchem_cgcnn/pretrained`` as ``<name>.pt`` + ``<name>.json`` (the card); ensemble members
as ``<name>.<k>``. :func:`load_model` takes a shipped name, a saved file or an original
``.pth.tar`` checkpoint.
"""

import json
import os
from importlib import resources
from typing import Any

from deepchem_cgcnn.card import ModelCard
from deepchem_cgcnn.original import (
    CheckpointError,
    check_state_dict,
    load_cgcnn_checkpoint,
    load_plain_data,
)

PRETRAINED_PACKAGE = "deepchem_cgcnn.pretrained"
FORMAT = "deepchem-cgcnn model"
FORMAT_VERSION = 1
"""Written into every saved model; files without it are the pre-versioning format (0)."""


class UnknownModelError(KeyError):
    """No shipped model has the name asked for; the message lists those that exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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


def pretrained_card(name: str) -> ModelCard:
    """The model card (data, split, recipe, metrics) of a shipped model, validated."""
    _check_name(name)
    with (resources.files(PRETRAINED_PACKAGE) / f"{name}.json").open("r") as handle:
        return ModelCard.from_dict(json.load(handle))


def _check_name(name: str) -> None:
    names = available_pretrained(include_members=True)
    if name not in names:
        raise UnknownModelError(
            f"no pretrained model named {name!r}; available: {', '.join(names)}"
        )


def save_model(model: Any, path: str, card: ModelCard | None = None) -> None:
    """Write a trained model as one artifact (atomically): everything :func:`load_model` needs.

    Not DeepChem's ``Model.save()``/``restore()`` (those keep DeepChem's meaning: checkpoints of
    weights and optimizer in ``model_dir``).

    Examples
    --------
    >>> import os, tempfile
    >>> model = load_model("mp-formation-energy")
    >>> path = os.path.join(tempfile.mkdtemp(), "copy.pt")
    >>> save_model(model, path)
    >>> load_model(path).featurizer_params == model.featurizer_params
    True
    """
    from deepchem_cgcnn._io import atomic_torch_save

    if model.featurizer_params is None:
        raise ValueError(
            "the model has no featurizer settings yet: fit it first, or pass "
            "featurizer_params= when building it"
        )
    atomic_torch_save(
        path,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hyperparameters": model.hyperparameters,
            "featurizer": model.featurizer_params,
            "training_counts": model.training_counts,
            "card": card.to_dict() if card is not None else None,
            "state_dict": {k: v.detach().cpu() for k, v in model.model.state_dict().items()},
        },
    )


def save_pretrained(model: Any, path: str, featurizer_params: dict[str, Any]) -> None:
    """Older name of :func:`save_model`, with the featurizer settings passed explicitly."""
    model.featurizer_params = dict(featurizer_params)
    save_model(model, path)


def load_model(name_or_path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A :class:`~deepchem_cgcnn.CGCNNModel` from a shipped name, a saved file or an original
    CGCNN ``.pth.tar`` checkpoint.

    Raises :class:`UnknownModelError` for a name that is neither shipped nor a file, and
    :class:`~deepchem_cgcnn.CheckpointError` for a file that is not a usable model.

    Examples
    --------
    >>> load_model("mp-band-gap").hyperparameters["nonnegative"]
    True
    """
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        if path.endswith((".pth.tar", ".pth")):
            from deepchem_cgcnn.model import CGCNNModel

            return load_cgcnn_checkpoint(path, model_class=CGCNNModel, **kwargs)
        return load_saved(path, **kwargs)
    if path in available_pretrained(include_members=True):
        return load_pretrained(path, **kwargs)
    raise UnknownModelError(
        f"{path!r} is neither a file nor a shipped model; shipped: "
        f"{', '.join(available_pretrained(include_members=True))}"
    )


def load_pretrained(name: str, model_class: type | None = None, **kwargs):
    """Load a shipped model by name, offline; its featurizer settings are in ``model.featurizer_params``."""
    _check_name(name)
    with (resources.files(PRETRAINED_PACKAGE) / f"{name}.pt").open("rb") as handle:
        model = load_saved(handle, model_class, **kwargs)
    model.card = pretrained_card(name)
    if model.training_counts is None:
        model.training_counts = model.card.training_counts
    return model


def load_saved(file, model_class: type | None = None, **kwargs):
    """Load a file written by :func:`save_pretrained` (a path or a binary file object)."""
    if model_class is None:
        from deepchem_cgcnn.model import CGCNNModel

        model_class = CGCNNModel
    name = getattr(file, "name", file)
    saved = load_plain_data(file, "model file")
    if not isinstance(saved, dict) or not {"hyperparameters", "featurizer", "state_dict"} <= set(
        saved
    ):
        raise CheckpointError(
            f"{name}: not a deepchem-cgcnn model file (needs "
            f"'hyperparameters', 'featurizer' and 'state_dict')"
        )
    version = saved.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name}: model format version {version!r}, but this deepchem-cgcnn reads up to "
            f"{FORMAT_VERSION}; upgrade the package"
        )
    for key in ("hyperparameters", "featurizer"):
        if not isinstance(saved[key], dict):
            raise CheckpointError(f"{name}: {key!r} is a {type(saved[key]).__name__}, not a dict")
    check_state_dict(name, saved["state_dict"], ("embedding.weight", "target_std"))
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
        model.card = ModelCard.from_dict(saved["card"]) if saved.get("card") else None
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{name}: the weights do not fit the hyperparameters ({str(error).splitlines()[0]})"
        ) from error
    model.model.eval()
    return model
