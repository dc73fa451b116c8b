"""Ensembles of CGCNN models: a mean and a standard deviation per prediction, and a calibration check."""

from collections.abc import Sequence
from typing import Union

import numpy as np

GAUSSIAN_MEDIAN_ABS_Z = 0.6744897501960817
"""The median of |z| for a standard normal z: half of calibrated errors lie within 0.6745 σ."""


class CGCNNEnsemble:
    """Several :class:`~deepchem_cgcnn.CGCNNModel` of one task, trained from different seeds.

    ``predict`` returns the members' mean; ``predict_uncertainty`` the mean and the
    members' standard deviation (DeepChem's ``predict_uncertainty`` convention), a
    measure of how much the models disagree: large where a crystal is unlike the
    training data. Check with :func:`calibration` how it relates to the real errors.

    Seed ensembles are usually over-confident (the members agree more than they are
    right); :meth:`fit_std_scale` on a validation split sets ``std_scale``, a single
    factor on σ that makes it calibrated there. Shipped ensembles carry theirs.

    Parameters
    ----------
    models: sequence of CGCNNModel
        Members; all regression models with the same number of tasks, or all classifiers.
    std_scale: float, default 1.0
        Factor applied to the members' standard deviation in ``predict_uncertainty``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
    >>> from deepchem_cgcnn._quiet import import_deepchem
    >>> from deepchem_cgcnn.examples import example_structures
    >>> dc = import_deepchem()
    >>> X = CGCNNFeaturizer().featurize(list(example_structures().values()))
    >>> data = dc.data.NumpyDataset(X, np.linspace(-2, 0, len(X)))
    >>> members = []
    >>> for seed in range(3):
    ...     _ = torch.manual_seed(seed)
    ...     model = CGCNNModel(num_conv=1, batch_size=12)
    ...     _ = model.fit(data, nb_epoch=2)
    ...     members.append(model)
    >>> mean, std = CGCNNEnsemble(members).predict_uncertainty(data)
    >>> mean.shape, std.shape, bool((std > 0).all())
    ((12, 1), (12, 1), True)
    """

    def __init__(self, models: Sequence, std_scale: float = 1.0):
        models = list(models)
        if not (np.isfinite(std_scale) and std_scale > 0):
            raise ValueError(f"std_scale must be a positive number, got {std_scale!r}")
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(models)}")
        modes = {m.model.mode for m in models}
        if len(modes) != 1:
            raise ValueError(f"members mix modes {sorted(modes)}")
        self.models = models
        self.mode = modes.pop()
        self.std_scale = float(std_scale)

    @property
    def featurizer_params(self) -> dict:
        """The featurizer settings of the members (those of the first; shipped members agree)."""
        return self.models[0].featurizer_params

    @property
    def card(self):
        """The first member's model card (of a shipped ensemble: the card of its name, which
        records the ensemble's σ scale and size under ``extra["ensemble"]``); ``None`` when the
        first member has none."""
        return getattr(self.models[0], "card", None)

    def _trained_apart(self) -> bool:
        """True when the members were trained on different crystals (their counts differ)."""
        counts = [getattr(m, "training_counts", None) for m in self.models]
        return any(c != counts[0] for c in counts[1:])

    def check_domain(self, dataset, with_formula: bool = True) -> list:
        """One domain record per crystal, as :meth:`CGCNNModel.check_domain` gives. Members
        trained on other crystals (one refit on its validation crystals too) are held to the
        domain they share: an element counts as seen as often as the member that saw it least."""
        if not self._trained_apart():
            return self.models[0].check_domain(dataset, with_formula=with_formula)
        return self._check_shared_domain(dataset, with_formula)

    def _check_shared_domain(self, dataset, with_formula: bool) -> list:
        from deepchem_cgcnn import domain

        counts = domain.shared_counts([m.training_counts for m in self.models])
        graphs, ids = self.models[0]._graphs_and_ids(dataset, streaming=True)
        return domain.check_graphs(
            graphs, ids, counts, domain.MIN_COUNT, domain.MAX_VACUUM_GAP, with_formula
        )

    def __len__(self) -> int:
        return len(self.models)

    def member_predictions(self, dataset) -> np.ndarray:
        """``(n_members, ...)``: each member's prediction (one domain warning, from the first)."""
        import warnings

        from deepchem_cgcnn.domain import DomainWarning

        if self._trained_apart():  # the warning of the domain the members share
            from deepchem_cgcnn.domain import warn_outside_domain

            predictions = [np.asarray(m.predict(dataset, warn_domain=False)) for m in self.models]
            warn_outside_domain(self._check_shared_domain(dataset, with_formula=False))
            return np.stack(predictions)
        predictions = [np.asarray(self.models[0].predict(dataset))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DomainWarning)
            predictions += [np.asarray(m.predict(dataset)) for m in self.models[1:]]
        return np.stack(predictions)

    def predict(self, dataset) -> np.ndarray:
        """The members' mean prediction (mean probability for classifiers)."""
        return self.member_predictions(dataset).mean(axis=0)

    def predict_uncertainty(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` over the members, each shaped like one member's prediction.

        ``std`` is the members' sample standard deviation times ``std_scale``.
        """
        predictions = self.member_predictions(dataset)
        return predictions.mean(axis=0), self.std_scale * predictions.std(axis=0, ddof=1)

    def fit_std_scale(self, dataset, member_predictions: np.ndarray | None = None) -> float:
        """Set ``std_scale`` so that σ is calibrated on ``dataset``; return it.

        The factor is ``median(|y - mean| / σ) / 0.6745`` over ``dataset``, which puts half
        of its errors within 0.6745 σ as for a Gaussian: one-parameter variance scaling
        (Levi et al. 2019), with the median so a few outliers do not set it. Fit it on a
        validation split and check it with :func:`calibration` on the test split. Pass
        ``member_predictions`` (:meth:`member_predictions` of ``dataset``) when already made.

        Examples
        --------
        >>> import numpy as np
        >>> class Fixed:  # a stand-in member predicting a constant
        ...     def __init__(self, value): self.value, self.model = value, type("M", (), {"mode": "regression"})
        ...     def predict(self, dataset): return np.full((len(dataset.y), 1), self.value)
        >>> data = type("D", (), {"y": np.array([[0.0], [1.0], [2.0], [3.0]])})()
        >>> ensemble = CGCNNEnsemble([Fixed(1.0), Fixed(2.0)])
        >>> round(ensemble.fit_std_scale(data), 3)  # median |error| 1.0, raw σ 0.707
        2.097
        """
        if self.mode != "regression":
            raise ValueError(
                "fit_std_scale is for regression ensembles; "
                f"this one's members are {self.mode} models"
            )
        cards = [getattr(m, "card", None) for m in self.models]
        refit = [card.name for card in cards if card is not None and card.is_refit]
        if refit:
            import warnings

            warnings.warn(
                f"members {', '.join(refit)} were refit on their training and validation "
                "crystals: fit the scale on crystals none of them trained on (on their "
                "validation split σ comes out too small), or on their validated runs' predictions",
                stacklevel=2,
            )
        predictions = (
            self.member_predictions(dataset) if member_predictions is None else member_predictions
        )
        mean, std = predictions.mean(axis=0), predictions.std(axis=0, ddof=1)
        y = np.asarray(dataset.y, dtype=np.float64).reshape(mean.shape)
        usable = np.isfinite(y) & (std > 0)
        if not usable.any():
            raise ValueError("no entry of the dataset has a label and members that disagree")
        z = np.abs(y[usable] - mean[usable]) / std[usable]
        self.std_scale = float(np.median(z) / GAUSSIAN_MEDIAN_ABS_Z)
        return self.std_scale

    @classmethod
    def pretrained(cls, name: str) -> "CGCNNEnsemble":
        """A shipped ensemble by name (its members are shipped as ``<name>`` and ``<name>.<k>``).

        Its ``std_scale`` is the one recorded in the card of ``name`` (1 if none).
        """
        from deepchem_cgcnn.registry import ensemble_members, load_pretrained, pretrained_card

        scale = pretrained_card(name).extra.get("ensemble", {}).get("std_scale", 1.0)
        return cls([load_pretrained(member) for member in ensemble_members(name)], std_scale=scale)


def load_pretrained_predictor(name_or_path: str) -> Union["CGCNNEnsemble", object]:
    """The best answer a shipped name gives, or a model from a saved file or an original
    ``.pth.tar`` checkpoint (see :func:`deepchem_cgcnn.registry.load_model`).

    A shipped name answers with its ensemble when it has members (``<name>.1``, ...), and
    through a :class:`~deepchem_cgcnn.GatedRegressor` when its card records a ``gate`` (chosen
    on validation: ``mp-band-gap`` answers with the non-metals ensemble behind
    ``mp-metallicity``); ``CGCNNModel.pretrained(name)`` is always the single model.

    Examples
    --------
    >>> type(load_pretrained_predictor("castelli-perovskites")).__name__
    'CGCNNEnsemble'
    >>> type(load_pretrained_predictor("mp-fermi-energy")).__name__
    'CGCNNModel'
    """
    from deepchem_cgcnn.registry import (
        available_pretrained,
        ensemble_members,
        load_model,
        pretrained_card,
    )

    if name_or_path not in available_pretrained(include_members=True):
        return load_model(name_or_path)
    card = pretrained_card(name_or_path)
    gate = card.extra.get("gate")
    if gate:
        from deepchem_cgcnn.gating import GatedRegressor

        return GatedRegressor(
            load_pretrained_predictor(gate["regressor"]),
            load_pretrained_predictor(gate["classifier"]),
            threshold=gate["threshold"],
            outside_value=gate["outside_value"],
            outside_name=gate["outside_name"],
            card=card,
        )
    if len(ensemble_members(name_or_path)) > 1:
        return CGCNNEnsemble.pretrained(name_or_path)
    return load_model(name_or_path)


def calibration(
    y: np.ndarray, mean: np.ndarray, std: np.ndarray, levels: Sequence[int] = (1, 2, 3)
) -> dict[str, float]:
    """How often the true value lies within k standard deviations of the mean.

    For a well-calibrated Gaussian uncertainty the fractions are 0.683, 0.954 and
    0.997; smaller fractions mean the ensemble is over-confident.

    Returns
    -------
    dict
        ``{"n": entries used, "within_1_sigma": f1, ..., "gaussian_1_sigma": 0.683,
        ..., "median_abs_z": ...}`` over the entries with finite values and sigma > 0.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=100_000)
    >>> result = calibration(truth, np.zeros_like(truth), np.ones_like(truth))
    >>> round(result["within_1_sigma"], 2), round(result["gaussian_1_sigma"], 3)
    (0.68, 0.683)
    """
    from scipy.special import erf

    y, mean, std = (np.asarray(a, dtype=np.float64).ravel() for a in (y, mean, std))
    usable = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std) & (std > 0)
    if not usable.any():
        raise ValueError("no entry has a finite value, mean and a positive standard deviation")
    z = np.abs(y[usable] - mean[usable]) / std[usable]
    result: dict[str, float] = {"n": int(usable.sum())}
    for k in levels:
        result[f"within_{k}_sigma"] = float((z <= k).mean())
        result[f"gaussian_{k}_sigma"] = float(erf(k / np.sqrt(2)))
    result["median_abs_z"] = float(np.median(z))
    return result
