"""A regressor trained on one class of crystals, answered only where a classifier puts them.

The paper's band-gap protocol: the band-gap model is trained and tested on non-metals, and a
metal's gap is zero by definition. :class:`GatedRegressor` composes the two: where the
classifier's probability of the excluded class (a metal) reaches ``threshold`` the answer is
``outside_value`` (0 eV), elsewhere it is the regressor's prediction; every crystal near
the threshold, or answered ``outside_value``, carries a flag saying so.
"""

from typing import Any

import numpy as np

NEAR_THRESHOLD = 0.2
"""A classifier probability within this of the threshold is flagged as an uncertain call."""


class GatedRegressor:
    """``regressor`` where ``classifier`` calls a crystal in its class, ``outside_value`` else.

    Parameters
    ----------
    regressor: CGCNNModel or CGCNNEnsemble
        Trained on the crystals of one class only (e.g. non-metals: ``band_gap > 0``).
    classifier: CGCNNModel or CGCNNEnsemble
        A two-class model whose column ``outside_class`` is the probability that a crystal is
        outside the regressor's class (e.g. ``mp-metallicity``: column 1, P(metal)).
    threshold: float
        The probability from which a crystal is answered ``outside_value``.
    outside_value: float
        The answer outside the class (a metal's band gap: 0).
    outside_name: str
        What the outside class is called in the flags ("metal").
    card: ModelCard, optional
        The card of the name answering through the gate (default: the regressor's).

    Examples
    --------
    >>> from deepchem_cgcnn import load_pretrained_predictor
    >>> from deepchem_cgcnn.examples import example_structures
    >>> gate = GatedRegressor(
    ...     load_pretrained_predictor("mp-band-gap-nonmetals"),  # its four-seed ensemble
    ...     load_pretrained_predictor("mp-metallicity"),
    ... )
    >>> crystals = example_structures()
    >>> dataset = gate.featurize([crystals["Cu (fcc)"], crystals["NaCl (rock salt)"]])
    >>> gap, sigma = gate.predict_uncertainty(dataset)
    >>> float(gap[0, 0]), bool(gap[1, 0] > 3), bool(sigma[1, 0] > 0)  # Cu: a metal; NaCl: wide
    (0.0, True, True)
    >>> gate.check_domain(dataset, with_formula=False)[0].flags[0]
    'a metal by mp-metallicity (P(metal) = 1.00): answered 0'
    """

    def __init__(
        self,
        regressor: Any,
        classifier: Any,
        threshold: float = 0.5,
        outside_value: float = 0.0,
        outside_class: int = 1,
        outside_name: str = "metal",
        card: Any = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")
        if regressor.featurizer_params != classifier.featurizer_params:
            raise ValueError(
                "the regressor and the classifier expect graphs made with different featurizer "
                f"settings: {regressor.featurizer_params} and {classifier.featurizer_params}"
            )
        self.regressor = regressor
        self.classifier = classifier
        self.threshold = float(threshold)
        self.outside_value = float(outside_value)
        self.outside_class = outside_class
        self.outside_name = outside_name
        self.mode = "regression"
        self._card = card

    @property
    def featurizer_params(self) -> dict:
        """The featurizer settings of both models (checked equal)."""
        params: dict = self.regressor.featurizer_params
        return params

    @property
    def card(self) -> Any:
        """The card of the name that answers through the gate (a shipped one records the gate
        under ``extra["gate"]``), else the regressor's."""
        return self._card if self._card is not None else getattr(self.regressor, "card", None)

    @property
    def models(self) -> list:
        """Every :class:`~deepchem_cgcnn.CGCNNModel` behind the answer (to move or batch)."""
        found = []
        for part in (self.regressor, self.classifier):
            found += list(getattr(part, "models", [part]))
        return found

    def _classifier_name(self) -> str:
        card = getattr(self.classifier, "card", None)
        return card.name if card is not None else "the classifier"

    def featurize(self, structures: list) -> Any:
        """A DeepChem dataset of ``structures`` made with the models' featurizer settings."""
        from deepchem_cgcnn import CGCNNFeaturizer
        from deepchem_cgcnn._quiet import import_deepchem

        dc = import_deepchem()
        return dc.data.NumpyDataset(CGCNNFeaturizer(**self.featurizer_params).featurize(structures))

    def outside_probability(self, dataset: Any) -> np.ndarray:
        """``(n,)``: the classifier's probability that each crystal is outside the class
        (its domain warning is left to the regressor's, from the narrower training set)."""
        import warnings

        from deepchem_cgcnn.domain import DomainWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DomainWarning)
            return np.asarray(self.classifier.predict(dataset))[:, self.outside_class]

    def predict_uncertainty(self, dataset: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """``(prediction, std)``: ``std`` is the regressor ensemble's σ (``None`` for a single
        model); for crystals answered ``outside_value`` it is NaN (the regressor's spread says
        nothing about a misclassification, see the flags)."""
        return self._answer(dataset, self.outside_probability(dataset))

    def predict_with_domain(
        self, dataset: Any, with_formula: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, list]:
        """``predict_uncertainty`` and ``check_domain`` together, the classifier run once."""
        probability = self.outside_probability(dataset)
        mean, std = self._answer(dataset, probability)
        return mean, std, self._flagged(dataset, probability, with_formula)

    def _answer(
        self, dataset: Any, probability: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        from deepchem_cgcnn.ensemble import CGCNNEnsemble

        outside = probability >= self.threshold
        if isinstance(self.regressor, CGCNNEnsemble):
            mean, std = self.regressor.predict_uncertainty(dataset)
        else:
            mean, std = np.asarray(self.regressor.predict(dataset)), None
        mean = np.array(mean, dtype=np.float64)
        mean[outside] = self.outside_value
        if std is not None:
            std = np.array(std, dtype=np.float64)
            std[outside] = np.nan
        return mean, std

    def predict(self, dataset: Any) -> np.ndarray:
        """``(n, 1)``: ``outside_value`` where the classifier's probability reaches the
        threshold, the regressor's prediction elsewhere."""
        return self.predict_uncertainty(dataset)[0]

    def check_domain(self, dataset: Any, with_formula: bool = True) -> list:
        """The regressor's domain records, each with the gate's flag where it applies: the
        crystal was answered ``outside_value``, or its class is an uncertain call."""
        return self._flagged(dataset, self.outside_probability(dataset), with_formula)

    def _flagged(self, dataset: Any, probability: np.ndarray, with_formula: bool) -> list:
        regressor = (
            self.regressor.models[0] if hasattr(self.regressor, "models") else self.regressor
        )
        records = regressor.check_domain(dataset, with_formula=with_formula)
        name = self._classifier_name()
        for record, p in zip(records, probability):
            odds = f"P({self.outside_name}) = {p:.2f}"
            if p >= self.threshold:
                flag = f"a {self.outside_name} by {name} ({odds}): answered {self.outside_value:g}"
            elif p >= self.threshold - NEAR_THRESHOLD:
                flag = f"an uncertain {self.outside_name} call by {name} ({odds})"
            else:
                continue
            record.flags.insert(0, flag)
        return records
