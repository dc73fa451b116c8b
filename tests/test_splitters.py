"""Splitters: disjoint 60/20/20 splits, the original CGCNN split, stratification, grouping."""

import random
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn import CrystalGraph
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.data.splitters import (
    SPLITTERS,
    CGCNNRandomSplitter,
    CompositionGroupedSplitter,
    OriginalCGCNNSplitter,
    StratifiedSplitter,
    get_splitter,
)

dc = import_deepchem()

N = 1000
N_FORMULAS = 300


def numpy_dataset(y: np.ndarray, X=None) -> "dc.data.NumpyDataset":
    n = len(y)
    X = np.arange(n, dtype=np.float64)[:, None] if X is None else X
    return dc.data.NumpyDataset(X, y, ids=np.array([f"mp-{i}" for i in range(n)]))


def imbalanced_labels(n: int = N, fraction_ones: float = 0.3, seed: int = 0) -> np.ndarray:
    labels = np.zeros(n)
    labels[: int(round(fraction_ones * n))] = 1
    return np.random.default_rng(seed).permutation(labels)


def synthetic_formulas(n: int = N, seed: int = 0) -> dict:
    """``mp-i`` -> one of N_FORMULAS distinct formulas ``Na{k}Cl{k+1}`` (gcd 1), unevenly."""
    groups = np.random.default_rng(seed).zipf(1.5, size=n) % N_FORMULAS
    return {f"mp-{i}": f"Na{g + 1}Cl{g + 2}" for i, g in enumerate(groups)}


def make_case(kind: str, seed: int = 123):
    """A splitter of ``kind`` and a dataset of N items it can split."""
    if kind == "random":
        return CGCNNRandomSplitter(seed=seed), numpy_dataset(np.zeros(N))
    if kind == "cgcnn":
        return OriginalCGCNNSplitter(seed=seed), numpy_dataset(np.zeros(N))
    if kind == "stratified":
        return StratifiedSplitter(seed=seed), numpy_dataset(imbalanced_labels())
    splitter = CompositionGroupedSplitter(seed=seed, formulas=synthetic_formulas())
    return splitter, numpy_dataset(np.zeros(N))


def size_tolerance(kind: str, splitter, dataset) -> int:
    """How far each split's size may be from round(frac * n) for this splitter."""
    if kind == "composition":
        _, counts = np.unique(splitter.group_labels(dataset).astype(str), return_counts=True)
        return int(counts.max())
    return 0


KINDS = sorted(SPLITTERS)


def assert_disjoint(parts, n):
    for part in parts:
        assert part.dtype.kind == "i"
        assert len(np.unique(part)) == len(part)
        assert part.min(initial=0) >= 0 and part.max(initial=0) < n
    train, valid, test = (set(part.tolist()) for part in parts)
    assert not (train & valid) and not (train & test) and not (valid & test)


def assert_sizes(parts, targets, tolerance):
    for part, target in zip(parts, targets):
        assert abs(len(part) - target) <= tolerance, ([len(p) for p in parts], targets)


# ---------------------------------------------------------------- every splitter
@pytest.mark.parametrize("kind", KINDS)
def test_split_is_disjoint_sized_and_covering(kind):
    splitter, dataset = make_case(kind)
    parts = splitter.split(dataset)
    assert_disjoint(parts, N)
    assert_sizes(parts, (600, 200, 200), size_tolerance(kind, splitter, dataset))
    assert sum(len(part) for part in parts) == N  # n = 1000: the original leaves none out


@pytest.mark.parametrize("kind", KINDS)
def test_split_depends_on_seed_only(kind):
    splitter, dataset = make_case(kind, seed=7)
    first, again = splitter.split(dataset), splitter.split(dataset)
    same_seed = make_case(kind, seed=7)[0].split(dataset)
    other_seed = make_case(kind, seed=8)[0].split(dataset)
    overridden = splitter.split(dataset, seed=8)
    for a, b, c in zip(first, again, same_seed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert any(set(a.tolist()) != set(b.tolist()) for a, b in zip(first, other_seed))
    for a, b in zip(other_seed, overridden):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_train_valid_test_split_defaults_to_60_20_20(kind):
    splitter, dataset = make_case(kind)
    train, valid, test = splitter.train_valid_test_split(dataset)
    tolerance = size_tolerance(kind, splitter, dataset)
    assert_sizes([train.ids, valid.ids, test.ids], (600, 200, 200), tolerance)
    expected = [dataset.ids[part] for part in splitter.split(dataset)]
    for got, want in zip((train, valid, test), expected):
        np.testing.assert_array_equal(np.sort(got.ids), np.sort(want))


@pytest.mark.parametrize("kind", KINDS)
def test_train_test_split_defaults_to_own_train_fraction(kind):
    splitter, dataset = make_case(kind)
    train, test = splitter.train_test_split(dataset)
    assert_sizes([train.ids, test.ids], (600, 400), size_tolerance(kind, splitter, dataset))
    assert not set(train.ids) & set(test.ids)


def test_explicit_fractions_override_the_instance():
    splitter, dataset = make_case("random")
    train, valid, test = splitter.train_valid_test_split(
        dataset, frac_train=0.8, frac_valid=0.1, frac_test=0.1
    )
    assert (len(train), len(valid), len(test)) == (800, 100, 100)
    assert [
        len(p) for p in splitter.split(dataset, frac_train=0.5, frac_valid=0.5, frac_test=0.0)
    ] == [500, 500, 0]


def test_disk_dataset_split_uses_the_given_directories(tmp_path):
    dataset = dc.data.DiskDataset.from_numpy(
        np.arange(50.0)[:, None], np.zeros(50), ids=np.array([f"mp-{i}" for i in range(50)])
    )
    folders = [str(tmp_path / name) for name in ("train", "valid", "test")]
    parts = CGCNNRandomSplitter().train_valid_test_split(dataset, *folders)
    assert [len(part) for part in parts] == [30, 10, 10]
    assert [part.data_dir for part in parts] == folders


@pytest.mark.parametrize(
    "make",
    [
        lambda: CGCNNRandomSplitter(0.8, 0.1, 0.2),
        lambda: CGCNNRandomSplitter().split(numpy_dataset(np.zeros(10)), frac_train=0.9),
        lambda: OriginalCGCNNSplitter(1.2, -0.1, -0.1),
    ],
)
def test_fractions_must_sum_to_one(make):
    with pytest.raises(ValueError, match="frac_train.*frac_valid.*frac_test"):
        make()


@pytest.mark.parametrize("kind", KINDS)
def test_repr_and_str_are_deterministic(kind):
    cls = SPLITTERS[kind]
    assert repr(cls()) == f"{cls.__name__}(frac_train=0.6, frac_valid=0.2, frac_test=0.2, seed=123)"
    assert repr(cls()) == repr(cls())
    assert str(cls()) == cls.__name__
    assert (
        str(cls(0.8, 0.1, 0.1, seed=5))
        == f"{cls.__name__}_frac_train_0.8_frac_valid_0.1_frac_test_0.1_seed_5"
    )


def test_formulas_mapping_shows_as_a_stable_digest():
    one = CompositionGroupedSplitter(formulas={"a": "NaCl", "b": "KCl"})
    same = CompositionGroupedSplitter(formulas={"b": "KCl", "a": "NaCl"})
    other = CompositionGroupedSplitter(formulas={"a": "NaCl", "b": "MgO"})
    assert repr(one) == repr(same) != repr(other)
    assert "NaCl" not in repr(one) and "sha256-" in str(one) and "/" not in str(one)


# ---------------------------------------------------------------- the original CGCNN split
def original_cgcnn_split(n, train_ratio=0.6, valid_ratio=0.2, test_ratio=0.2, seed=123):
    """txie-93/cgcnn: CIFData shuffles the rows, get_train_val_test_loader slices them."""
    rows = list(range(n))
    random.seed(seed)
    random.shuffle(rows)
    train_size = int(train_ratio * n)
    test_size = int(test_ratio * n)
    valid_size = int(valid_ratio * n)
    return (rows[:train_size], rows[-(valid_size + test_size) : -test_size], rows[-test_size:])


@pytest.mark.parametrize(
    "n, fractions",
    [
        (1000, (0.6, 0.2, 0.2)),
        (31297, (0.6, 0.2, 0.2)),
        (1003, (0.6, 0.2, 0.2)),
        (31297, (0.8, 0.1, 0.1)),
    ],
)
def test_original_split_matches_the_original_code(n, fractions):
    state = random.getstate()
    expected = original_cgcnn_split(n, *fractions)
    random.setstate(state)
    got = OriginalCGCNNSplitter(*fractions).indices(n)
    for part, want in zip(got, expected):
        assert part.tolist() == want
    assert random.getstate() == state, "the global random state must be left alone"


@pytest.mark.parametrize("n, left_out", [(1000, 0), (1001, 1), (1003, 2), (31297, 1)])
def test_original_split_leaves_out_the_rows_between_train_and_valid(n, left_out):
    rows = list(range(n))
    random.Random(123).shuffle(rows)
    train_size, valid_size, test_size = int(0.6 * n), int(0.2 * n), int(0.2 * n)
    expected_left_out = set(rows[train_size : n - valid_size - test_size])
    parts = OriginalCGCNNSplitter().split(numpy_dataset(np.zeros(n)))
    assert_disjoint(parts, n)
    covered = set(np.concatenate(parts).tolist())
    assert len(expected_left_out) == left_out
    assert set(range(n)) - covered == expected_left_out


# ---------------------------------------------------------------- stratified
@pytest.mark.parametrize("n, fraction_ones", [(1000, 0.3), (997, 0.3), (101, 0.07)])
def test_stratified_keeps_class_proportions(n, fraction_ones):
    labels = imbalanced_labels(n, fraction_ones, seed=n)
    parts = StratifiedSplitter().split(numpy_dataset(labels[:, None]))
    assert_disjoint(parts, n)
    assert sum(len(part) for part in parts) == n
    for part, fraction in zip(parts, (0.6, 0.2, 0.2)):
        for label in (0, 1):
            ideal = fraction * np.sum(labels == label)
            assert abs(np.sum(labels[part] == label) - ideal) <= 1
        assert abs(len(part) - fraction * n) <= 2


def test_stratified_handles_several_classes():
    labels = np.random.default_rng(1).integers(0, 5, size=N).astype(float)
    parts = StratifiedSplitter().split(numpy_dataset(labels))
    for part, fraction in zip(parts, (0.6, 0.2, 0.2)):
        for label in range(5):
            assert abs(np.sum(labels[part] == label) - fraction * np.sum(labels == label)) <= 1


def test_stratified_refuses_continuous_labels():
    continuous = np.random.default_rng(0).normal(size=N)
    with pytest.raises(ValueError, match="classification.*CGCNNRandomSplitter"):
        StratifiedSplitter().split(numpy_dataset(continuous))


def test_stratified_refuses_missing_labels():
    labels = imbalanced_labels()
    labels[[3, 30, 300]] = np.nan
    labels[4] = np.inf
    with pytest.raises(ValueError, match="4 of 1000 labels"):
        StratifiedSplitter().split(numpy_dataset(labels))


# ---------------------------------------------------------------- composition-grouped
def rock_salt(elements, a):
    """Primitive fcc cell; Structure.from_spacegroup is ~0.4 s a call."""
    half = a / 2
    fcc = Lattice([[0, half, half], [half, 0, half], [half, half, 0]])
    return Structure(fcc, elements, [[0, 0, 0], [0.5, 0.5, 0.5]])


def cesium_chloride_type(elements, a):
    return Structure(Lattice.cubic(a), elements, [[0, 0, 0], [0.5, 0.5, 0.5]])


def polymorph_structures():
    """Rock-salt and CsCl-type polymorphs, and supercells, of NaCl, KCl, MgO, LiF."""
    structures, formulas = [], []
    for pair, formula in [
        (["Na", "Cl"], "NaCl"),
        (["K", "Cl"], "KCl"),
        (["Mg", "O"], "MgO"),
        (["Li", "F"], "LiF"),
    ]:
        for a in (4.0, 4.5, 5.0, 5.5):
            structures += [rock_salt(pair, a), cesium_chloride_type(pair, a / 1.5)]
        structures.append(rock_salt(pair, 5.0) * (2, 1, 1))
        formulas += [formula] * 9
    return structures, formulas


def object_array(items):
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def assert_no_formula_in_two_splits(labels, parts):
    formulas_per_split = [set(labels[part].tolist()) for part in parts]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not formulas_per_split[i] & formulas_per_split[j]


def test_grouped_split_of_structures_keeps_polymorphs_together():
    structures, formulas = polymorph_structures()
    dataset = numpy_dataset(np.zeros(len(structures)), X=object_array(structures))
    splitter = CompositionGroupedSplitter(0.5, 0.25, 0.25)
    labels = splitter.group_labels(dataset)
    assert labels.tolist() == formulas
    for seed in range(5):
        parts = splitter.split(dataset, seed=seed)
        assert_disjoint(parts, len(structures))
        assert sum(len(part) for part in parts) == len(structures)
        assert_no_formula_in_two_splits(labels, parts)
        assert_sizes(parts, (18, 9, 9), 9)


def test_grouped_split_with_formulas_by_id():
    formulas = synthetic_formulas()
    splitter = CompositionGroupedSplitter(formulas=formulas)
    dataset = numpy_dataset(np.zeros(N))
    labels = splitter.group_labels(dataset)
    assert labels[0] == formulas["mp-0"]
    assert_no_formula_in_two_splits(labels, splitter.split(dataset))


def test_formulas_by_id_are_reduced():
    splitter = CompositionGroupedSplitter(
        formulas={"mp-0": "Na2Cl2", "mp-1": "NaCl", "mp-2": "Fe4O6", "mp-3": "O2"}
    )
    labels = splitter.group_labels(numpy_dataset(np.zeros(4)))
    assert labels.tolist() == ["NaCl", "NaCl", "Fe2O3", "O2"]


def test_grouped_split_needs_formulas_for_plain_features():
    with pytest.raises(ValueError, match="formulas="):
        CompositionGroupedSplitter().split(numpy_dataset(np.zeros(10)))
    with pytest.raises(ValueError, match="no formula given for 1 ids.*mp-9"):
        formulas = {f"mp-{i}": "NaCl" for i in range(9)}
        CompositionGroupedSplitter(formulas=formulas).split(numpy_dataset(np.zeros(10)))


def fake_graph(atomic_numbers):
    n = len(atomic_numbers)
    return CrystalGraph(
        np.asarray(atomic_numbers), np.zeros((n, 1)), np.ones((n, 1)), radius=8.0, step=0.2
    )


def test_group_labels_of_many_graphs_is_fast():
    rng = np.random.default_rng(0)
    kinds = [
        rng.integers(1, 90, size=rng.integers(1, 4)).repeat(rng.integers(1, 5)) for _ in range(200)
    ]
    graphs = object_array([fake_graph(kinds[k]) for k in rng.integers(0, 200, size=31297)])
    dataset = dc.data.NumpyDataset(graphs, np.zeros(len(graphs)))
    start = time.perf_counter()
    labels = CompositionGroupedSplitter().group_labels(dataset)
    assert time.perf_counter() - start < 10
    assert len(labels) == len(graphs) and len(set(labels)) <= 200


@pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF")
def test_group_labels_of_real_graphs_match_pymatgen(mp_rows, mp_graphs):
    keep = [i for i, graph in enumerate(mp_graphs) if isinstance(graph, CrystalGraph)]
    assert len(keep) > 300
    graphs = object_array([mp_graphs[i] for i in keep])
    dataset = dc.data.NumpyDataset(
        graphs, np.zeros(len(keep)), ids=mp_rows.material_id.to_numpy()[keep]
    )
    splitter = CompositionGroupedSplitter()
    labels = splitter.group_labels(dataset)
    expected = [
        Structure.from_str(mp_rows.cif[i], fmt="cif").composition.reduced_formula for i in keep
    ]
    assert labels.tolist() == expected
    parts = splitter.split(dataset)
    assert_disjoint(parts, len(keep))
    assert sum(len(part) for part in parts) == len(keep)
    assert_no_formula_in_two_splits(labels, parts)


# ---------------------------------------------------------------- get_splitter
def test_get_splitter_by_name():
    for name, cls in SPLITTERS.items():
        splitter = get_splitter(name)
        assert type(splitter) is cls and repr(splitter) == repr(cls())
    assert isinstance(get_splitter("index"), dc.splits.IndexSplitter)
    assert isinstance(get_splitter("Random"), CGCNNRandomSplitter)


def test_get_splitter_passes_instances_and_none_through():
    splitter = CGCNNRandomSplitter(0.8, 0.1, 0.1)
    assert get_splitter(splitter) is splitter
    deepchem_splitter = dc.splits.RandomSplitter()
    assert get_splitter(deepchem_splitter) is deepchem_splitter
    assert get_splitter(None) is None


def test_get_splitter_rejects_unknown_names():
    with pytest.raises(ValueError, match="valid names:.*cgcnn.*composition.*index"):
        get_splitter("by-moon-phase")
    with pytest.raises(TypeError):
        get_splitter(0.6)


@pytest.mark.parametrize("n", [1000, 31297])
def test_random_split_equals_deepchems_random_splitter_with_the_same_seed(n):
    dataset = dc.data.NumpyDataset(np.zeros((n, 1)), np.zeros(n))
    state = np.random.get_state()[1].copy()
    ours = CGCNNRandomSplitter().split(dataset)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state untouched
    theirs = dc.splits.RandomSplitter().split(dataset, 0.6, 0.2, 0.2, seed=123)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
