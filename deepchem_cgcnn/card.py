"""ModelCard: what a trained model is — data, split, recipe, metrics, history — validated.

Every shipped model has one (``deepchem_cgcnn/pretrained/<name>.json``), ``deepchem-cgcnn
train`` writes one beside each model, and :func:`deepchem_cgcnn.registry.save_model` stores it
inside the model file. Fields are attributes; read-only ``card["key"]`` / ``card.get("key")``
keep working for scripts written against the plain-dict cards of version 0.1.

Examples
--------
>>> from deepchem_cgcnn.registry import pretrained_card
>>> card = pretrained_card("mp-band-gap")
>>> card.units, card.output_constraint.startswith("non-negative"), card.metric_name
('eV', True, 'mae')
>>> ModelCard.from_dict(card.to_dict()) == card
True
>>> ModelCard.from_dict({**card.to_dict(), "mode": "ranking"})
Traceback (most recent call last):
...
ValueError: model card 'mp-band-gap': mode must be 'regression' or 'classification', got 'ranking'
"""

import builtins
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SPLITS = ("train", "valid", "test")
REFIT_SPLITS = ("train", "valid_trained_on", "test")


@dataclass
class ModelCard:
    """A trained model's card.

    Attributes
    ----------
    name, property, units, task, mode: str
        Model name; the property in words and its units; the label column; ``'regression'``
        or ``'classification'``.
    data, split, featurizer, model, recipe: dict
        Data source (file, checksum, rows kept and dropped), the split (kind, fractions,
        seed, sizes, model selection), the featurizer settings, the hyperparameters and the
        training recipe (optimizer, schedule, budget, epochs run, best epoch).
    metrics: dict
        ``{metric: {"train": x, "valid": x, "test": x}}`` (``mae`` or ``roc_auc``).
    wall_time_s: dict
        Seconds for featurization, training (all epochs, across resumed processes) and in
        total (the last process's wall time plus the training seconds of earlier ones).
    history: dict
        Per epoch: cumulative training seconds (``seconds``), the validation error
        (``valid_error``; for a classifier 1 - ROC-AUC) and the learning rate.
    command, date, machine: str
        How, when and where it was trained.
    training_counts: dict, optional
        Per element, training crystals holding it and elemental crystals of it.
    output_constraint, domain: str, optional
        E.g. ``"non-negative ..."``; the crystals the model is meant for (``None``: any).
    extra: dict
        Any other fields (ensemble calibration, metrics before clipping, ...), kept as they are.
    """

    name: str
    property: str
    units: str
    task: str
    mode: str
    data: dict[str, Any]
    split: dict[str, Any]
    featurizer: dict[str, Any]
    model: dict[str, Any]
    recipe: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    wall_time_s: dict[str, float]
    history: dict[str, list[float]]
    command: str
    date: str
    machine: str = ""
    training_counts: dict[str, dict[str, int]] | None = None
    output_constraint: str | None = None
    domain: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @builtins.property
    def metric_name(self) -> str:
        """``'roc_auc'`` for classifiers, ``'mae'`` for regression."""
        return "roc_auc" if self.mode == "classification" else "mae"

    @builtins.property
    def label(self) -> str:
        """``"band gap (eV)"``: the property with its units, for column headers."""
        return f"{self.property} ({self.units})" if self.units else self.property

    @builtins.property
    def loss(self) -> str | None:
        """The regression loss it was trained on, ``'mse'`` or ``'l1'`` (cards written before
        the command line's ``cli-v2`` defaults name it only when it was not ``'mse'``); None
        for a classifier (cross entropy).

        Examples
        --------
        >>> from deepchem_cgcnn import pretrained_card
        >>> pretrained_card("mp-fermi-energy").loss, pretrained_card("mp-metallicity").loss
        ('mse', None)
        """
        if self.mode == "classification":
            return None
        return str(self.recipe.get("loss", "mse")) if isinstance(self.recipe, dict) else "mse"

    @builtins.property
    def is_refit(self) -> bool:
        """True when the model was refit on its training and validation crystals together."""
        return isinstance(self.recipe, dict) and "refit" in self.recipe

    @builtins.property
    def scored_splits(self) -> tuple[str, ...]:
        """The keys of ``metrics[metric_name]``: ``train``, ``valid``, ``test``; a refit model
        has ``valid_trained_on`` instead of ``valid``, so that no script reads an in-sample
        score as a validation score.
        """
        return REFIT_SPLITS if self.is_refit else SPLITS

    def validate(self) -> None:
        """Raise ``ValueError`` naming the card and the field that is wrong."""

        def fail(why: str) -> None:
            raise ValueError(f"model card {self.name!r}: {why}")

        for name in ("name", "property", "task", "command", "date"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                fail(f"{name} must be a non-empty string")
        if self.mode not in ("regression", "classification"):
            fail(f"mode must be 'regression' or 'classification', got {self.mode!r}")
        for name in ("data", "split", "featurizer", "model", "recipe", "wall_time_s"):
            if not isinstance(getattr(self, name), dict):
                fail(f"{name} must be a dict")
        splits = self.scored_splits
        scores = self.metrics.get(self.metric_name) if isinstance(self.metrics, dict) else None
        if not isinstance(scores, dict) or set(scores) != set(splits):
            fail(
                f"metrics must hold {self.metric_name} on {', '.join(splits)}"
                + (
                    " (a refit model trained on its validation crystals: its score there is "
                    "in-sample, not a validation score)"
                    if self.is_refit
                    else ""
                )
            )
        history = self.history if isinstance(self.history, dict) else {}
        seconds, errors = history.get("seconds"), history.get("valid_error")
        if not seconds or not isinstance(errors, list) or len(errors) != len(seconds):
            fail("history must hold seconds and valid_error, one of each per epoch")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        """A card from its JSON form; unknown keys go to ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        required = sorted(known - _OPTIONAL - set(data))
        if required:
            raise ValueError(f"model card {data.get('name')!r}: missing {required}")
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field, ``extra`` merged in, unset optional fields left out."""
        data = {k: v for k, v in asdict(self).items() if k != "extra"}
        data = {k: v for k, v in data.items() if not (k in _OPTIONAL and v is None)}
        return {**data, **self.extra}

    # read-only dict view, for scripts written against the 0.1 plain-dict cards
    def __getitem__(self, key: str) -> Any:
        data = self.to_dict()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()


_OPTIONAL = {"machine", "training_counts", "output_constraint", "domain"}
