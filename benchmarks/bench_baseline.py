"""Classical baseline for the CGCNN accuracy tables: Magpie composition features + random forest.

Each crystal is reduced to its composition, described by matminer's Magpie
``ElementProperty`` features (132 statistics of elemental properties), and a
scikit-learn random forest (100 trees, ``random_state=0``) is fit on the training
split. The split is exactly the one our CGCNN models use: the rows whose label is
finite, in file order, cut by ``CGCNNRandomSplitter(seed=123)`` (60/20/20). The
validation split is not used.

Targets: formation energy, band gap of all materials, Fermi energy and metallicity
(``RandomForestClassifier``, ROC-AUC) from ``mp_cgcnn.csv.gz``; the perovskite heat of
formation (``heat_all``) from ``castelli_perovskites.csv.gz``; and the band gap of
non-metals only (band_gap > 0, the CGCNN paper's protocol) in two ways: the all-materials
split with metals then removed from train and test, and the non-metals alone split
60/20/20, which is what ``deepchem-cgcnn train --query "band_gap > 0"`` (the
``mp-band-gap-nonmetals`` job of ``train_models.py``) trains and tests on.

Compositions come from the ``_chemical_formula_sum`` line of the pymatgen-written
CIFs (a full CIF parse only where that line is missing). Feature matrices are cached
as ``<cache-dir>/magpie-<sha256[:16]>.npz``; rows whose features hold NaN get the
training split's column means.

``--check-split`` first loads, with ``MaterialsProjectLoader``, the MP formation energy,
the MP non-metal band gap (``query="band_gap > 0"``) and the Castelli ``heat_all``, and
checks that their train/valid/test ids equal the splits used here. The first time this
featurizes with ``CGCNNFeaturizer`` (about 5 minutes); the loader caches under ``--cache-dir``.

Usage
-----
``nice -n 10 .venv/bin/python benchmarks/bench_baseline.py``
``nice -n 10 .venv/bin/python benchmarks/bench_baseline.py --check-split``

Prints a markdown table on stdout and progress on stderr.
"""

import argparse
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _common import DEFAULT_DATA, PROJECT_ROOT, environment_line, markdown_table, timed

DEFAULT_CASTELLI = DEFAULT_DATA.parent / "castelli_perovskites.csv.gz"
DEFAULT_CACHE = PROJECT_ROOT / "work" / "cache"
SPLIT_SEED = 123
# Quoted for several elements ('Na4 Cl4'), bare for one (Cs1).
FORMULA_SUM = re.compile(r"^_chemical_formula_sum\s+'?([^'\n]+?)'?\s*$", re.MULTILINE)

Splits = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DataFile:
    key: str
    path: Path
    id_column: str


@dataclass(frozen=True)
class Target:
    property: str
    metric: str
    dataset: str
    column: str
    classify: bool = False
    query: str | None = None  # rows kept before splitting, as MaterialsProjectLoader(query=...)
    nonmetals_within_split: bool = False


TARGETS = [
    Target("formation energy", "MAE (eV/atom)", "mp", "formation_energy_per_atom"),
    Target("band gap, all materials", "MAE (eV)", "mp", "band_gap"),
    Target(
        "band gap, non-metals (split of all, metals then removed)",
        "MAE (eV)",
        "mp",
        "band_gap",
        nonmetals_within_split=True,
    ),
    Target(
        "band gap, non-metals (non-metals only, then split)",
        "MAE (eV)",
        "mp",
        "band_gap",
        query="band_gap > 0",
    ),
    Target("Fermi energy", "MAE (eV)", "mp", "efermi"),
    Target("metallicity", "ROC-AUC", "mp", "is_metal", classify=True),
    Target("perovskite heat of formation", "MAE (eV/cell)", "castelli", "heat_all"),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- compositions
def composition_of_cif(cif: str):
    """The CIF's composition and whether the whole CIF had to be parsed for it."""
    from pymatgen.core import Composition, Structure

    match = FORMULA_SUM.search(cif)
    if match:
        return Composition(match.group(1)), False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif").composition, True


def compositions_of_cifs(cifs: Sequence[str]) -> tuple[list, int]:
    """Compositions of ``cifs`` and the number that needed a full CIF parse."""
    parsed = [composition_of_cif(cif) for cif in cifs]
    return [composition for composition, _ in parsed], sum(full for _, full in parsed)


# ---------------------------------------------------------------- features
def cache_path(data: Path, cache_dir: Path) -> Path:
    from deepchem_cgcnn.data.table import file_sha256

    return cache_dir / f"magpie-{file_sha256(str(data))[:16]}.npz"


def magpie_matrix(compositions: list) -> tuple[np.ndarray, list[str]]:
    from matminer.featurizers.composition import ElementProperty

    featurizer = ElementProperty.from_preset("magpie")
    featurizer.set_n_jobs(1)  # matminer's default pool would take every core
    rows = featurizer.featurize_many(compositions, pbar=False)
    return np.asarray(rows, dtype=np.float64), featurizer.feature_labels()


def magpie_features(dataset: DataFile, cache_dir: Path) -> dict:
    """Magpie features of every row of ``dataset.path``, in file order, cached as .npz.

    Returns a dict with ``X``, ``labels``, ``ids``, ``n_fallbacks``, ``seconds``
    (to build, when not from the cache) and ``cached``.
    """
    path = cache_path(dataset.path, cache_dir)
    if path.exists():
        with np.load(path) as saved:
            return {
                **{k: saved[k] for k in ("X", "labels", "ids")},
                "n_fallbacks": int(saved["n_fallbacks"]),
                "seconds": 0.0,
                "cached": True,
            }
    started = time.perf_counter()
    table = pd.read_csv(dataset.path, usecols=[dataset.id_column, "cif"])
    compositions, n_fallbacks = compositions_of_cifs(table["cif"])
    X, labels = magpie_matrix(compositions)
    ids = table[dataset.id_column].astype(str).to_numpy(dtype=str)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, X=X, labels=np.array(labels), ids=ids, n_fallbacks=n_fallbacks)
    return {
        "X": X,
        "labels": np.array(labels),
        "ids": ids,
        "n_fallbacks": n_fallbacks,
        "seconds": time.perf_counter() - started,
        "cached": False,
    }


def nan_report(key: str, features: dict) -> str:
    X, labels = features["X"], features["labels"]
    per_column = np.isnan(X).sum(axis=0)
    columns = ", ".join(f"{label} {count}" for label, count in zip(labels, per_column) if count)
    return (
        f"{key}: {len(X)} rows x {X.shape[1]} Magpie features, "
        f"{int(np.isnan(X).any(axis=1).sum())} rows with NaN"
        + (f" (per column: {columns})" if columns else "")
    )


def impute_with_train_means(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    means = np.nan_to_num(np.nanmean(X[train], axis=0))
    return np.where(np.isnan(X), means, X)


# ---------------------------------------------------------------- split
def cgcnn_split(ids: np.ndarray, seed: int = SPLIT_SEED) -> Splits:
    """The train/valid/test indices ``MaterialsProjectLoader`` makes for these rows."""
    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    dc = import_deepchem()
    dataset = dc.data.NumpyDataset(np.zeros((len(ids), 1)), ids=ids)
    return CGCNNRandomSplitter(seed=seed).split(dataset)


def read_labels(dataset: DataFile, ids: np.ndarray) -> pd.DataFrame:
    """Every column but the CIFs, checked to be in the order the features were built in."""
    table = pd.read_csv(dataset.path, usecols=lambda column: column != "cif")
    if not (table[dataset.id_column].astype(str).to_numpy() == ids).all():
        sys.exit(f"{dataset.path} changed since its Magpie features were cached; delete the .npz")
    return table


def labelled_rows(
    labels: pd.DataFrame, column: str, query: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in file order) of the rows with a finite ``column`` that pass ``query``."""
    y = pd.to_numeric(labels[column], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(y)
    if query:
        keep &= np.asarray(labels.eval(query), dtype=bool)
    rows = np.flatnonzero(keep)
    return rows, y[rows]


@dataclass(frozen=True)
class SplitCheck:
    """A load whose split must equal ours: ``task`` read from ``column``."""

    dataset: str
    task: str
    column: str
    label_columns: tuple[tuple[str, str], ...] = ()
    query: str | None = None


SPLIT_CHECKS = [
    SplitCheck("mp", "formation_energy", "formation_energy_per_atom"),
    SplitCheck("mp", "band_gap", "band_gap", query="band_gap > 0"),
    SplitCheck("castelli", "formation_energy", "heat_all", (("formation_energy", "heat_all"),)),
]


def loader_ids(dataset: DataFile, check: SplitCheck, cache_dir: Path) -> list[set]:
    """Train/valid/test id sets as ``MaterialsProjectLoader`` returns them."""
    from deepchem_cgcnn import MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    loader = MaterialsProjectLoader(
        str(dataset.path),
        tasks=[check.task],
        label_columns=dict(check.label_columns),
        query=check.query,
        splitter=CGCNNRandomSplitter(seed=SPLIT_SEED),
        save_dir=str(cache_dir),
        data_dir=str(cache_dir),
        n_jobs=1,
    )
    _, parts, _ = loader.load()
    return [set(part.ids.astype(str).tolist()) for part in parts]


def check_split(
    check: SplitCheck, dataset: DataFile, labels: pd.DataFrame, ids: np.ndarray, cache_dir: Path
) -> str:
    rows, _ = labelled_rows(labels, check.column, check.query)
    ours = [set(ids[rows][part].tolist()) for part in cgcnn_split(ids[rows])]
    seconds, theirs = timed(lambda: loader_ids(dataset, check, cache_dir))
    same = [a == b for a, b in zip(ours, theirs)]
    sizes = "/".join(str(len(part)) for part in theirs)
    differing = [name for name, ok in zip(("train", "valid", "test"), same) if not ok]
    verdict = "identical" if not differing else "DIFFERENT in " + ", ".join(differing)
    query = f", query {check.query!r}" if check.query else ""
    return (
        f"split check {dataset.key} (task {check.task} from {check.column}{query}): "
        f"MaterialsProjectLoader's train/valid/test ids ({sizes}) vs this script's: "
        f"{verdict} (loader {seconds:.0f} s)"
    )


# ---------------------------------------------------------------- models
def fit_forest(classify: bool, X: np.ndarray, y: np.ndarray, n_estimators: int):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    kind = RandomForestClassifier if classify else RandomForestRegressor
    forest = kind(n_estimators=n_estimators, random_state=0, n_jobs=1)
    seconds, _ = timed(lambda: forest.fit(X, y.astype(int) if classify else y))
    return forest, seconds


def test_score(forest, classify: bool, X: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    if classify:
        metal_column = list(forest.classes_).index(1)
        return roc_auc_score(y.astype(int), forest.predict_proba(X)[:, metal_column])
    return mean_absolute_error(y, forest.predict(X))


def evaluate(target: Target, labels: pd.DataFrame, features: dict, n_estimators: int) -> list:
    """One table row: property, metric, n train, n test, test score, fit seconds."""
    rows, y = labelled_rows(labels, target.column, target.query)
    train, _, test = cgcnn_split(features["ids"][rows])
    if target.nonmetals_within_split:
        train, test = train[y[train] > 0], test[y[test] > 0]
    X = impute_with_train_means(features["X"][rows], train)
    forest, seconds = fit_forest(target.classify, X[train], y[train], n_estimators)
    score = test_score(forest, target.classify, X[test], y[test])
    log(f"{target.property}: {target.metric} {score:.4f}, fit {seconds:.1f} s")
    return [target.property, target.metric, len(train), len(test), f"{score:.3f}", f"{seconds:.1f}"]


# ---------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mp", type=Path, default=DEFAULT_DATA, help="mp_cgcnn.csv.gz")
    parser.add_argument(
        "--castelli", type=Path, default=DEFAULT_CASTELLI, help="castelli_perovskites.csv.gz"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="Magpie .npz files and MaterialsProjectLoader caches",
    )
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument(
        "--check-split",
        action="store_true",
        help="first check the split against MaterialsProjectLoader's",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    machine = environment_line()
    datasets = {
        "mp": DataFile("mp", args.mp, "material_id"),
        "castelli": DataFile("castelli", args.castelli, "cmr_id"),
    }
    features, labels, notes = {}, {}, []
    for key, dataset in datasets.items():
        log(f"Magpie features of {dataset.path.name} ...")
        features[key] = magpie_features(dataset, args.cache_dir)
        labels[key] = read_labels(dataset, features[key]["ids"])
        built = (
            "from cache"
            if features[key]["cached"]
            else f"built in {features[key]['seconds']:.0f} s"
        )
        notes.append(
            f"{nan_report(key, features[key])}; {features[key]['n_fallbacks']} full CIF "
            f"parses (no _chemical_formula_sum); features {built}"
        )
    if args.check_split:
        for check in SPLIT_CHECKS:
            log(f"checking the {check.dataset} split against MaterialsProjectLoader ...")
            notes.append(
                check_split(
                    check,
                    datasets[check.dataset],
                    labels[check.dataset],
                    features[check.dataset]["ids"],
                    args.cache_dir,
                )
            )
    table = [
        evaluate(target, labels[target.dataset], features[target.dataset], args.n_estimators)
        for target in TARGETS
    ]
    print(
        markdown_table(
            ["property", "metric", "n train", "n test", "Magpie + RF (this run)", "fit s"], table
        )
    )
    print()
    for note in notes:
        print(f"* {note}")
    import matminer
    import sklearn

    print(
        f"* {machine}; scikit-learn {sklearn.__version__}, matminer {matminer.__version__}; "
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


if __name__ == "__main__":
    main()
