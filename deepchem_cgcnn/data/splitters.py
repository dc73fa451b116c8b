"""Train/valid/test splitters for crystal datasets, defaulting to the CGCNN paper's 60/20/20.

Every splitter here is a ``dc.splits.Splitter`` that carries its fractions and
seed from construction, so DeepChem code that calls
``splitter.train_valid_test_split(dataset)`` without arguments (as the molnet
loaders do) gets 60/20/20 and not DeepChem's 80/10/10.
"""

import hashlib
import json
import random
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from deepchem_cgcnn._quiet import import_deepchem

dc = import_deepchem()
if TYPE_CHECKING:
    from deepchem.data import Dataset
    from deepchem.splits import Splitter
else:
    Dataset = dc.data.Dataset
    Splitter = dc.splits.Splitter

Indices = tuple[np.ndarray, np.ndarray, np.ndarray]

FRACTION_TOLERANCE = 1e-6
MAX_CLASSES = 20


def _checked_fractions(
    frac_train: float, frac_valid: float, frac_test: float
) -> tuple[float, float, float]:
    """The three fractions as floats; ValueError unless they are >= 0 and sum to 1."""
    fractions = (float(frac_train), float(frac_valid), float(frac_test))
    total = sum(fractions)
    if abs(total - 1.0) > FRACTION_TOLERANCE or min(fractions) < 0:
        raise ValueError(
            "frac_train, frac_valid and frac_test must be >= 0 and sum to 1, got "
            f"frac_train={fractions[0]} + frac_valid={fractions[1]} + "
            f"frac_test={fractions[2]} = {total}"
        )
    return fractions


def _as_index_arrays(*parts: Sequence[int] | np.ndarray) -> Indices:
    return tuple(np.asarray(part, dtype=np.int64) for part in parts)  # type: ignore[return-value]


class _FractionSplitter(Splitter):
    """Base of the splitters here: fractions and seed fixed at construction.

    ``None`` for a fraction or the seed in :meth:`split`,
    :meth:`train_valid_test_split` or :meth:`train_test_split` means "the
    value this splitter was built with".
    """

    def __init__(
        self,
        frac_train: float = 0.6,
        frac_valid: float = 0.2,
        frac_test: float = 0.2,
        seed: int | None = 123,
    ):
        self.frac_train, self.frac_valid, self.frac_test = _checked_fractions(
            frac_train, frac_valid, frac_test
        )
        self.seed = None if seed is None else int(seed)

    def _resolve(
        self,
        frac_train: float | None,
        frac_valid: float | None,
        frac_test: float | None,
        seed: int | None,
    ) -> tuple[float, float, float, int | None]:
        fractions = _checked_fractions(
            self.frac_train if frac_train is None else frac_train,
            self.frac_valid if frac_valid is None else frac_valid,
            self.frac_test if frac_test is None else frac_test,
        )
        return (*fractions, self.seed if seed is None else int(seed))

    def split(
        self,
        dataset: Dataset,
        frac_train: float | None = None,
        frac_valid: float | None = None,
        frac_test: float | None = None,
        seed: int | None = None,
        log_every_n: int | None = None,
    ) -> Indices:
        """``(train, valid, test)`` int64 index arrays; ``None`` takes this splitter's value."""
        return self._split(dataset, *self._resolve(frac_train, frac_valid, frac_test, seed))

    def _split(
        self,
        dataset: Dataset,
        frac_train: float,
        frac_valid: float,
        frac_test: float,
        seed: int | None,
    ) -> Indices:
        raise NotImplementedError

    def train_valid_test_split(
        self,
        dataset: Dataset,
        train_dir: str | None = None,
        valid_dir: str | None = None,
        test_dir: str | None = None,
        frac_train: float | None = None,
        frac_valid: float | None = None,
        frac_test: float | None = None,
        seed: int | None = None,
        log_every_n: int = 1000,
        **kwargs,
    ) -> tuple[Dataset, Dataset, Dataset]:
        """As DeepChem's, but fractions and seed default to this splitter's own."""
        frac_train, frac_valid, frac_test, seed = self._resolve(
            frac_train, frac_valid, frac_test, seed
        )
        return super().train_valid_test_split(
            dataset,
            train_dir,
            valid_dir,
            test_dir,
            frac_train=frac_train,
            frac_valid=frac_valid,
            frac_test=frac_test,
            seed=seed,
            log_every_n=log_every_n,
            **kwargs,
        )

    def train_test_split(
        self,
        dataset: Dataset,
        train_dir: str | None = None,
        test_dir: str | None = None,
        frac_train: float | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> tuple[Dataset, Dataset]:
        """As DeepChem's: ``frac_train`` (default this splitter's) to train, the rest to test."""
        frac_train = self.frac_train if frac_train is None else float(frac_train)
        seed = self.seed if seed is None else int(seed)
        return super().train_test_split(
            dataset, train_dir, test_dir, frac_train=frac_train, seed=seed, **kwargs
        )

    def _settings(self) -> dict[str, object]:
        """Constructor arguments, in order, as they appear in ``repr`` and ``str``."""
        return {
            "frac_train": self.frac_train,
            "frac_valid": self.frac_valid,
            "frac_test": self.frac_test,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        arguments = ", ".join(f"{name}={value!r}" for name, value in self._settings().items())
        return f"{type(self).__name__}({arguments})"

    def __str__(self) -> str:
        """DeepChem's folder-name form: the class name, then ``_name_value`` per non-default."""
        defaults = {"frac_train": 0.6, "frac_valid": 0.2, "frac_test": 0.2, "seed": 123}
        changed = "".join(
            f"_{name}_{value}"
            for name, value in self._settings().items()
            if name not in defaults or defaults[name] != value
        )
        return type(self).__name__ + changed


class CGCNNRandomSplitter(_FractionSplitter):
    """Uniformly random split, 60/20/20 with seed 123 by default.

    The same permutation and cut-offs as DeepChem's ``RandomSplitter`` given the
    same seed (``np.random.RandomState(seed).permutation(n)``; train up to
    ``int(frac_train * n)``, valid up to ``int((frac_train + frac_valid) * n)``),
    so splits made with either agree, but without touching NumPy's global
    random state and with the paper's fractions and a fixed seed as defaults.

    Parameters
    ----------
    frac_train, frac_valid, frac_test: float
        Fractions of the dataset in each split; they must sum to 1.
    seed: int, optional (default 123)
        Seed of the permutation; ``None`` draws a fresh one each time.

    Examples
    --------
    >>> import numpy as np
    >>> dc = import_deepchem()
    >>> dataset = dc.data.NumpyDataset(np.arange(10), np.zeros(10))
    >>> splitter = CGCNNRandomSplitter()
    >>> [len(part) for part in splitter.split(dataset)]
    [6, 2, 2]
    >>> splitter
    CGCNNRandomSplitter(frac_train=0.6, frac_valid=0.2, frac_test=0.2, seed=123)
    """

    def _split(
        self,
        dataset: Dataset,
        frac_train: float,
        frac_valid: float,
        frac_test: float,
        seed: int | None,
    ) -> Indices:
        n = len(dataset)
        order = np.random.RandomState(seed).permutation(n)
        train_end = int(frac_train * n)
        valid_end = int((frac_train + frac_valid) * n)
        return _as_index_arrays(order[:train_end], order[train_end:valid_end], order[valid_end:])


class OriginalCGCNNSplitter(_FractionSplitter):
    """The split of the original CGCNN code (txie-93/cgcnn), reproduced exactly.

    The original shuffles the rows of ``id_prop.csv`` with ``random.seed(123);
    random.shuffle(rows)`` and then, with ``train_size = int(frac_train * n)``,
    ``valid_size = int(frac_valid * n)`` and ``test_size = int(frac_test * n)``,
    takes the first ``train_size`` shuffled rows for training, the
    ``valid_size`` rows before the last ``test_size`` for validation, and the
    last ``test_size`` for testing. Because each size is rounded down, up to
    two rows end up in no split at all; that is how the published numbers were
    made, and it is kept here.

    The dataset must be in the row order of the source file (``id_prop.csv``
    or the table the structures were read from) for the split to match the
    original's. Python's generator is used through a private
    ``random.Random(seed)``, so the global ``random`` state is untouched.

    Parameters
    ----------
    frac_train, frac_valid, frac_test: float
        Fractions of the dataset in each split; they must sum to 1.
    seed: int, optional (default 123)
        The original's ``random_seed``.

    Examples
    --------
    >>> import numpy as np
    >>> dc = import_deepchem()
    >>> dataset = dc.data.NumpyDataset(np.arange(12), np.zeros(12))
    >>> train, valid, test = OriginalCGCNNSplitter().split(dataset)
    >>> len(train), len(valid), len(test)  # int(7.2), int(2.4), int(2.4): one row left out
    (7, 2, 2)
    """

    def indices(
        self,
        n: int,
        frac_train: float | None = None,
        frac_valid: float | None = None,
        frac_test: float | None = None,
        seed: int | None = None,
    ) -> Indices:
        """``(train, valid, test)`` row indices of the original split of ``n`` rows.

        Examples
        --------
        >>> [len(part) for part in OriginalCGCNNSplitter().indices(1000)]
        [600, 200, 200]
        """
        frac_train, frac_valid, frac_test, seed = self._resolve(
            frac_train, frac_valid, frac_test, seed
        )
        order = list(range(n))
        random.Random(seed).shuffle(order)
        train_size = int(frac_train * n)
        valid_size = int(frac_valid * n)
        test_size = int(frac_test * n)
        # Positive bounds equal the original's order[-(valid+test):-test] and
        # order[-test:] whenever test_size > 0, and stay right when it is 0.
        valid_start, test_start = n - valid_size - test_size, n - test_size
        return _as_index_arrays(
            order[:train_size], order[valid_start:test_start], order[test_start:]
        )

    def _split(
        self,
        dataset: Dataset,
        frac_train: float,
        frac_valid: float,
        frac_test: float,
        seed: int | None,
    ) -> Indices:
        return self.indices(len(dataset), frac_train, frac_valid, frac_test, seed)


def _first_task_labels(dataset: Dataset) -> np.ndarray:
    y = np.asarray(dataset.y, dtype=np.float64)
    return y if y.ndim == 1 else y.reshape(len(y), -1)[:, 0]


def _largest_remainder(
    total: int, fractions: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Integer parts of ``total`` in ``fractions``, each the floor or ceiling of its share.

    The units left after the floors go to the largest remainders; ties are
    broken at random so that no split is favoured across many classes.
    """
    shares = total * np.asarray(fractions)
    counts = np.floor(shares).astype(np.int64)
    remainders = shares - counts
    left = total - int(counts.sum())
    jitter = rng.random(len(shares)) * 1e-9
    counts[np.argsort(-(remainders + jitter), kind="stable")[:left]] += 1
    return counts


class StratifiedSplitter(_FractionSplitter):
    """Random split that keeps the class proportions of a classification label.

    The label is the first task of ``dataset.y`` (e.g. ``is_metal``, 0/1).
    Each class is shuffled and cut on its own into train/valid/test counts
    that are the floor or ceiling of ``frac * class_size``, so every split
    holds each class within one sample of its ideal share, and each split's
    size is within one sample per class of ``frac * n``.

    Parameters
    ----------
    frac_train, frac_valid, frac_test: float
        Fractions of the dataset in each split; they must sum to 1.
    seed: int, optional (default 123)
        Seed of the per-class shuffles.

    Raises
    ------
    ValueError
        From :meth:`split`, when labels are NaN/inf, or when there are more
        than 20 distinct values (a regression target).

    Examples
    --------
    >>> import numpy as np
    >>> dc = import_deepchem()
    >>> labels = np.array([1] * 3 + [0] * 7)
    >>> dataset = dc.data.NumpyDataset(np.arange(10), labels)
    >>> train, valid, test = StratifiedSplitter(0.6, 0.2, 0.2).split(dataset)
    >>> len(train), int(labels[train].sum())
    (6, 2)
    """

    def _split(
        self,
        dataset: Dataset,
        frac_train: float,
        frac_valid: float,
        frac_test: float,
        seed: int | None,
    ) -> Indices:
        labels = self._checked_labels(dataset)
        rng = np.random.default_rng(seed)
        parts: list[list[np.ndarray]] = [[], [], []]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            counts = _largest_remainder(len(members), (frac_train, frac_valid, frac_test), rng)
            for part, chunk in zip(parts, np.split(members, np.cumsum(counts)[:-1])):
                part.append(chunk)
        return _as_index_arrays(*(np.sort(np.concatenate(part)) if part else [] for part in parts))

    @staticmethod
    def _checked_labels(dataset: Dataset) -> np.ndarray:
        labels = _first_task_labels(dataset)
        n_bad = int((~np.isfinite(labels)).sum())
        if n_bad:
            raise ValueError(
                f"StratifiedSplitter: {n_bad} of {len(labels)} labels are "
                "NaN or infinite; drop those rows before splitting"
            )
        n_classes = len(np.unique(labels))
        if n_classes > MAX_CLASSES:
            raise ValueError(
                f"StratifiedSplitter is for classification labels, but the first task has "
                f"{n_classes} distinct values (more than {MAX_CLASSES}), so it looks "
                "continuous; use CGCNNRandomSplitter for regression targets"
            )
        return labels


def _reduced_count_key(atomic_numbers: np.ndarray) -> tuple[tuple[int, int], ...]:
    """``((Z, count), ...)`` sorted by Z, with the counts divided by their gcd."""
    elements, counts = np.unique(np.asarray(atomic_numbers), return_counts=True)
    divisor = int(np.gcd.reduce(counts))
    return tuple(zip(elements.tolist(), (counts // divisor).tolist()))


def _formula_of_counts(key: tuple[tuple[int, int], ...]) -> str:
    from pymatgen.core import Composition, Element

    with _quiet_noble_gases():
        return Composition({Element.from_Z(z): count for z, count in key}).reduced_formula


def _reduced_formula(formula: str) -> str:
    from pymatgen.core import Composition

    with _quiet_noble_gases():
        return Composition(formula).reduced_formula


@contextmanager
def _quiet_noble_gases() -> Iterator[None]:
    """Silence pymatgen's "No Pauling electronegativity for He" while it orders a formula."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity")
        yield


def _map_unique(keys: Sequence[Hashable], function: Callable[[Any], str]) -> list[str]:
    """``[function(k) for k in keys]``, calling ``function`` once per distinct key."""
    cache: dict[Hashable, str] = {}
    return [cache[key] if key in cache else cache.setdefault(key, function(key)) for key in keys]


class CompositionGroupedSplitter(_FractionSplitter):
    """Random split by composition: all polymorphs of a formula land in one split.

    Items are grouped by reduced formula, the groups shuffled with the seed,
    and whole groups dealt to train until it holds about ``frac_train * n``
    items, then to valid, then the rest to test; each split's size is within
    the largest group's size of its target. This measures how a model
    generalizes to compositions it has never seen, without leakage between
    polymorphs.

    The formula of an item comes from ``dataset.X[i]``: a
    :class:`~deepchem_cgcnn.CrystalGraph` (anything with ``atomic_numbers``)
    or a pymatgen ``Structure``. For other features pass ``formulas``, a
    mapping from ``dataset.ids`` to formulas.

    Parameters
    ----------
    frac_train, frac_valid, frac_test: float
        Fractions of the dataset in each split; they must sum to 1.
    seed: int, optional (default 123)
        Seed of the group shuffle.
    formulas: Mapping[str, str], optional
        Formula of each id, for items whose features carry no composition.
        ``repr`` and ``str`` show it as a short SHA-256 digest of its items.

    Examples
    --------
    >>> import numpy as np
    >>> dc = import_deepchem()
    >>> ids = np.array(["a", "b", "c", "d", "e", "f"])
    >>> formulas = {"a": "NaCl", "b": "Na2Cl2", "c": "MgO", "d": "KCl", "e": "MgO",
    ...             "f": "LiF"}
    >>> dataset = dc.data.NumpyDataset(np.zeros((6, 1)), np.zeros(6), ids=ids)
    >>> splitter = CompositionGroupedSplitter(0.5, 0.25, 0.25, formulas=formulas)
    >>> labels = splitter.group_labels(dataset)
    >>> labels.tolist()
    ['NaCl', 'NaCl', 'MgO', 'KCl', 'MgO', 'LiF']
    >>> [sorted(set(labels[part])) for part in splitter.split(dataset)]
    [['KCl', 'MgO'], ['NaCl'], ['LiF']]
    """

    def __init__(
        self,
        frac_train: float = 0.6,
        frac_valid: float = 0.2,
        frac_test: float = 0.2,
        seed: int | None = 123,
        formulas: Mapping[str, str] | None = None,
    ):
        super().__init__(frac_train, frac_valid, frac_test, seed)
        self.formulas = None if formulas is None else {str(k): str(v) for k, v in formulas.items()}

    def _settings(self) -> dict[str, object]:
        settings = super()._settings()
        if self.formulas is not None:
            settings["formulas"] = self._formulas_digest()
        return settings

    def _formulas_digest(self) -> str:
        """A short, stable name for the formulas mapping (for repr, str and cache keys)."""
        text = json.dumps(sorted(self.formulas.items()))  # type: ignore[union-attr]
        return f"sha256-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def group_labels(self, dataset: Dataset) -> np.ndarray:
        """The reduced formula (pymatgen's ``reduced_formula``) of every item, in order."""
        from pymatgen.core import Structure

        features = dataset.X
        formulas: list[str | None] = [None] * len(dataset)
        graph_rows, graph_keys, missing = [], [], []
        for i, item in enumerate(features):
            if hasattr(item, "atomic_numbers"):
                graph_rows.append(i)
                graph_keys.append(_reduced_count_key(item.atomic_numbers))
            elif isinstance(item, Structure):
                formulas[i] = item.composition.reduced_formula
            else:
                missing.append(i)
        for i, formula in zip(graph_rows, _map_unique(graph_keys, _formula_of_counts)):
            formulas[i] = formula
        for i, formula in zip(missing, self._formulas_by_id(dataset, missing)):
            formulas[i] = formula
        return np.array(formulas, dtype=object)

    def _formulas_by_id(self, dataset: Dataset, rows: list[int]) -> list[str]:
        if not rows:
            return []
        first_item = dataset.X[rows[0]]
        if self.formulas is None:
            raise ValueError(
                f"CompositionGroupedSplitter: {len(rows)} items (the first: "
                f"{type(first_item).__name__}) are neither CrystalGraphs nor pymatgen "
                "Structures, so their composition is unknown; pass formulas={id: formula} "
                "for dataset.ids"
            )
        ids = [str(dataset.ids[i]) for i in rows]
        unknown = [item_id for item_id in ids if item_id not in self.formulas]
        if unknown:
            raise ValueError(
                f"CompositionGroupedSplitter: no formula given for "
                f"{len(unknown)} ids, e.g. {unknown[:5]}"
            )
        return _map_unique([self.formulas[item_id] for item_id in ids], _reduced_formula)

    def _split(
        self,
        dataset: Dataset,
        frac_train: float,
        frac_valid: float,
        frac_test: float,
        seed: int | None,
    ) -> Indices:
        labels = self.group_labels(dataset)
        _, group_of_item, group_sizes = np.unique(
            labels.astype(str), return_inverse=True, return_counts=True
        )
        split_of_group = self._deal_groups(group_sizes, frac_train, frac_valid, seed)
        split_of_item = split_of_group[group_of_item]
        return _as_index_arrays(*(np.flatnonzero(split_of_item == s) for s in range(3)))

    @staticmethod
    def _deal_groups(
        group_sizes: np.ndarray, frac_train: float, frac_valid: float, seed: int | None
    ) -> np.ndarray:
        """0/1/2 (train/valid/test) per group, dealt in a seeded random order.

        A group goes to the split whose target range holds the middle of its
        span on the running count, so every boundary misses by at most half a
        group.
        """
        n = group_sizes.sum()
        order = np.random.default_rng(seed).permutation(len(group_sizes))
        sizes = group_sizes[order]
        middles = np.cumsum(sizes) - sizes / 2
        boundaries = [frac_train * n, (frac_train + frac_valid) * n]
        split_of_group = np.empty(len(group_sizes), dtype=np.int64)
        split_of_group[order] = np.searchsorted(boundaries, middles, side="left")
        return split_of_group


SPLITTERS = {
    "random": CGCNNRandomSplitter,
    "cgcnn": OriginalCGCNNSplitter,
    "stratified": StratifiedSplitter,
    "composition": CompositionGroupedSplitter,
}


def get_splitter(spec: Splitter | str | None) -> Splitter | None:
    """A splitter from an instance, a name, or ``None``.

    Names in :data:`SPLITTERS` give a default (60/20/20, seed 123) instance of
    this module's splitters; any other name is looked up in DeepChem's
    ``dc.molnet.splitters`` (e.g. ``'index'``).

    Examples
    --------
    >>> get_splitter("cgcnn")
    OriginalCGCNNSplitter(frac_train=0.6, frac_valid=0.2, frac_test=0.2, seed=123)
    >>> get_splitter(None) is None
    True
    """
    if spec is None or isinstance(spec, Splitter):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"splitter must be a dc.splits.Splitter, a name or None, not {type(spec).__name__}"
        )
    name = spec.lower()
    if name in SPLITTERS:
        return SPLITTERS[name]()
    deepchem_splitters = dc.molnet.splitters
    if name in deepchem_splitters:
        return deepchem_splitters[name]
    valid = sorted(set(SPLITTERS) | set(deepchem_splitters))
    raise ValueError(f"unknown splitter {spec!r}; valid names: {', '.join(valid)}")
