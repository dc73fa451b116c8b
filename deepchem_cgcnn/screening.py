"""Screening cubic ABX3 perovskites: enumerate compositions, build cells, predict, rank.

The lattice constant of a candidate comes from :class:`LatticeConstantModel`, an additive
model fitted on known perovskites: ``a = a_A[A] + a_B[B] + mean(a_X[X1], a_X[X2], a_X[X3])``
(each element contributes a length per site it occupies; the three X terms are averaged so
mixed-anion cells interpolate). It is fitted by least squares on real cells and its error on
held-out cells is measured in the tests.
"""

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

X_POSITIONS = ([0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5])


def cubic_perovskite(a: str, b: str, x: Sequence[str], lattice_constant: float):
    """The 5-atom cubic ABX3 cell: A on the corner, B at the body centre, X on the face centres.

    Examples
    --------
    >>> cell = cubic_perovskite("Sr", "Ti", ["O", "O", "O"], 3.905)
    >>> cell.composition.reduced_formula, round(cell.lattice.a, 3)
    ('SrTiO3', 3.905)
    """
    from pymatgen.core import Lattice, Structure

    if len(x) != 3:
        raise ValueError(f"three X-site elements needed, got {list(x)}")
    return Structure(
        Lattice.cubic(lattice_constant),
        [a, b, *x],
        [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], *X_POSITIONS],
    )


class LatticeConstantModel:
    """Additive per-site element lengths for the cubic perovskite lattice constant.

    Examples
    --------
    >>> model = LatticeConstantModel().fit([("Sr", "Ti", ("O",) * 3), ("Ba", "Ti", ("O",) * 3),
    ...                                     ("Sr", "Zr", ("O",) * 3)], [3.905, 4.00, 4.15])
    >>> round(model.predict("Ba", "Zr", ("O",) * 3), 3)  # 4.00 + (4.15 - 3.905)
    4.245
    """

    def __init__(self, ridge: float = 1e-6):
        self.ridge = ridge
        self.columns: dict[tuple[str, str], int] = {}
        self.coefficients: np.ndarray | None = None
        self.anion_sets: list[tuple[str, ...]] = []

    def _row(self, a: str, b: str, x: Sequence[str]) -> np.ndarray:
        row = np.zeros(len(self.columns))
        missing = [
            (site, e)
            for site, e in (("A", a), ("B", b), *(("X", e) for e in x))
            if (site, e) not in self.columns
        ]
        if missing:
            raise KeyError(
                f"no lattice-constant term for {missing} (element, site) pairs: "
                f"fit on perovskites that contain them"
            )
        row[self.columns["A", a]] += 1.0
        row[self.columns["B", b]] += 1.0
        for element in x:
            row[self.columns["X", element]] += 1.0 / len(x)
        return row

    def fit(
        self,
        compositions: Iterable[tuple[str, str, Sequence[str]]],
        lattice_constants: Sequence[float],
    ) -> "LatticeConstantModel":
        """Least squares on ``(A, B, (X1, X2, X3))`` compositions and their lattice constants."""
        compositions = list(compositions)
        pairs = sorted(
            {("A", a) for a, _, _ in compositions}
            | {("B", b) for _, b, _ in compositions}
            | {("X", e) for _, _, x in compositions for e in x}
        )
        self.columns = {pair: i for i, pair in enumerate(pairs)}
        design = np.array([self._row(a, b, x) for a, b, x in compositions])
        target = np.asarray(lattice_constants, dtype=np.float64)
        gram = design.T @ design + self.ridge * np.eye(design.shape[1])
        self.coefficients = np.linalg.solve(gram, design.T @ target)
        self.anion_sets = sorted({tuple(sorted(x)) for _, _, x in compositions})
        return self

    def predict(self, a: str, b: str, x: Sequence[str]) -> float:
        """The estimated lattice constant (Å) of the cubic ``A B X1 X2 X3`` cell."""
        if self.coefficients is None:
            raise RuntimeError("fit the model first")
        return float(self._row(a, b, x) @ self.coefficients)

    def elements(self, site: str) -> list[str]:
        """Elements seen on ``site`` (``"A"``, ``"B"`` or ``"X"``) in the fitted data."""
        return sorted(e for s, e in self.columns if s == site)

    def to_dict(self) -> dict:
        """The fitted terms as plain JSON data (``from_dict`` reads them back exactly)."""
        if self.coefficients is None:
            raise RuntimeError("fit the model first")
        return {
            "ridge": self.ridge,
            "anion_sets": [list(x) for x in self.anion_sets],
            "terms": [
                [site, element, float(self.coefficients[i])]
                for (site, element), i in self.columns.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LatticeConstantModel":
        model = cls(ridge=data["ridge"])
        model.columns = {(site, element): i for i, (site, element, _) in enumerate(data["terms"])}
        model.coefficients = np.array([value for _, _, value in data["terms"]])
        model.anion_sets = [tuple(x) for x in data.get("anion_sets", [])]
        return model

    @classmethod
    def pretrained(cls, name: str = "castelli-perovskites") -> "LatticeConstantModel":
        """The lattice-constant model shipped beside a perovskite model (``<name>.lattice.json``),
        fitted on that model's training cells."""
        import json
        from importlib import resources

        from deepchem_cgcnn.registry import PRETRAINED_PACKAGE

        path = resources.files(PRETRAINED_PACKAGE) / f"{name}.lattice.json"
        if not path.is_file():
            raise FileNotFoundError(f"no lattice-constant model is shipped for {name!r}")
        return cls.from_dict(json.loads(path.read_text()))


def composition_of(structure) -> tuple[str, str, tuple[str, ...]]:
    """``(A, B, (X1, X2, X3))`` of a 5-atom perovskite, from its geometry (X sorted)."""
    from deepchem_cgcnn.perovskite import perovskite_sites

    roles = perovskite_sites(structure)
    element = {
        role: [str(structure[i].specie) for i, r in enumerate(roles) if r == role] for role in "ABX"
    }
    return element["A"][0], element["B"][0], tuple(sorted(element["X"]))


def enumerate_candidates(
    a_elements: Sequence[str], b_elements: Sequence[str], x_sets: Sequence[Sequence[str]]
) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every ``(A, B, X3)`` with A != B from the given element lists and anion triples.

    Examples
    --------
    >>> enumerate_candidates(["Sr", "Ba"], ["Ti"], [("O", "O", "O"), ("N", "O", "O")])[:2]
    [('Sr', 'Ti', ('O', 'O', 'O')), ('Sr', 'Ti', ('N', 'O', 'O'))]
    """
    return [
        (a, b, tuple(sorted(x)))
        for a, b, x in itertools.product(a_elements, b_elements, x_sets)
        if a != b
    ]


def screen(
    model,
    candidates: Sequence[tuple[str, str, Sequence[str]]],
    lattice: LatticeConstantModel,
    batch_size: int = 4096,
):
    """Build, featurize and predict every candidate; rank by predicted value (lowest first).

    Parameters
    ----------
    model: CGCNNModel or CGCNNEnsemble
        With an ensemble, the table also has the members' standard deviation.
    candidates: sequence of (A, B, (X1, X2, X3))
    lattice: LatticeConstantModel
        Fitted; candidates with an element it has not seen on that site are skipped
        and listed in ``result.attrs["skipped"]``.

    Returns
    -------
    pandas.DataFrame
        ``A``, ``B``, ``X``, ``formula``, ``lattice_constant``, ``prediction``
        (and ``std`` for an ensemble), sorted by ``prediction``.
    """
    import pandas as pd

    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.featurizer import CGCNNFeaturizer

    dc = import_deepchem()
    settings = (
        getattr(model, "featurizer_params", None)
        or getattr(getattr(model, "models", [None])[0], "featurizer_params", None)
        or {}
    )
    featurizer = CGCNNFeaturizer(**settings)
    rows, structures, skipped = [], [], []
    for a, b, x in candidates:
        try:
            constant = lattice.predict(a, b, x)
        except KeyError as error:
            skipped.append(((a, b, tuple(x)), str(error)))
            continue
        structure = cubic_perovskite(a, b, x, constant)
        rows.append(
            {
                "A": a,
                "B": b,
                "X": "".join(x),
                "lattice_constant": constant,
                "formula": structure.composition.reduced_formula,
            }
        )
        structures.append(structure)
    predictions, spreads = [], []
    for start in range(0, len(structures), batch_size):
        graphs = featurizer.featurize(structures[start : start + batch_size])
        dataset = dc.data.NumpyDataset(graphs)
        if hasattr(model, "predict_uncertainty") and hasattr(model, "models"):
            mean, std = model.predict_uncertainty(dataset)
            spreads.append(std[:, 0])
        else:
            mean = model.predict(dataset)
        predictions.append(np.asarray(mean)[:, 0])
    table = pd.DataFrame(rows)
    table["prediction"] = np.concatenate(predictions) if predictions else []
    if spreads:
        table["std"] = np.concatenate(spreads)
    table = table.sort_values("prediction", kind="stable").reset_index(drop=True)
    table.attrs["skipped"] = skipped
    return table


def precision_recall_at_k(
    predicted_order: Sequence, true_values: dict, k: int, top: int | None = None
) -> tuple[float, float]:
    """Precision and recall at ``k`` of a ranking against the truly lowest ``top`` values.

    ``predicted_order``: keys ranked by predicted value (best first), restricted to keys
    with a true value; ``true_values``: key -> true value. The relevant set is the ``top``
    keys with the lowest true values (default ``k``).

    Examples
    --------
    >>> precision_recall_at_k(["a", "b", "c", "d"], {"a": 0, "b": 3, "c": 1, "d": 2}, k=2)
    (0.5, 0.5)
    """
    top = k if top is None else top
    ranked = [key for key in predicted_order if key in true_values]
    relevant = set(sorted(true_values, key=lambda key: true_values[key])[:top])
    hits = len(relevant & set(ranked[:k]))
    return hits / k, hits / len(relevant)
