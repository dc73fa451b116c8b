"""Parity plots and the metallicity ROC curve of the shipped models, on their own test splits.

For each shipped model (or ``--models``), re-creates the exact split recorded in its card
(source file, task, seed, featurizer settings) with ``MaterialsProjectLoader`` (cached under
``--cache-dir``), predicts the test split, and draws:

* regression: a parity plot (hexbin density, the y = x line, test MAE and the number of
  crystals in the title) -> ``docs/parity-<name>.png``;
* classification: the ROC curve with its AUC -> ``docs/roc-<name>.png``;

and prints a markdown table of the test metrics, which must equal the cards' (for band gap,
also the MAE on the test crystals with a gap, the paper's non-metal protocol).

Usage
-----
``nice -n 10 .venv/bin/python dev/make_figures.py``
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from deepchem_cgcnn.card import ModelCard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import PROJECT_ROOT, markdown_table  # noqa: E402 (the shared helpers live beside the benchmarks)

SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


def test_split(card: "ModelCard", cache_dir: str):
    from deepchem_cgcnn import CGCNNFeaturizer, MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    source = SHARED_DATASETS / card.data.get("source", card.data.get("file"))
    if not source.is_file():
        sys.exit(f"{source} not found: the figures need the shared MP data")
    loader = MaterialsProjectLoader(
        str(source),
        tasks=[card.task],
        featurizer=CGCNNFeaturizer(**card.featurizer),
        splitter=CGCNNRandomSplitter(seed=card.split["seed"]),
        data_dir=cache_dir,
        save_dir=cache_dir,
        n_jobs=2,
    )
    _, (train, valid, test), _ = loader.load()
    sizes = [len(train), len(valid), len(test)]
    if sizes[1:] != card.split["sizes"][1:]:
        sys.exit(f"{card.name}: split sizes {sizes} differ from the card's {card.split['sizes']}")
    return test


def parity_plot(
    name: str, card: "ModelCard", y: np.ndarray, prediction: np.ndarray, out: Path
) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mae = float(np.abs(prediction - y).mean())
    low, high = np.percentile(np.concatenate([y, prediction]), [0.1, 99.9])
    figure, axes = plt.subplots(figsize=(4.6, 4.2), dpi=150)
    hexes = axes.hexbin(
        y,
        prediction,
        gridsize=60,
        extent=(low, high, low, high),
        mincnt=1,
        bins="log",
        cmap="viridis",
    )
    axes.plot([low, high], [low, high], color="black", lw=0.8)
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel(f"DFT {card.property} ({card.units})")
    axes.set_ylabel(f"CGCNN ({card.units})")
    axes.set_title(f"{name}: test MAE {mae:.3f} {card.units}, n = {len(y):,}", fontsize=9)
    figure.colorbar(hexes, ax=axes, label="crystals per bin")
    figure.tight_layout()
    figure.savefig(out / f"parity-{name}.png")
    plt.close(figure)
    return mae


def roc_plot(name: str, y: np.ndarray, probability: np.ndarray, out: Path) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    auc = float(roc_auc_score(y, probability))
    false_positive, true_positive, _ = roc_curve(y, probability)
    figure, axes = plt.subplots(figsize=(4.2, 4.0), dpi=150)
    axes.plot(false_positive, true_positive, lw=1.5, label=f"CGCNN, AUC = {auc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    axes.set_xlabel("false positive rate (non-metals called metals)")
    axes.set_ylabel("true positive rate (metals found)")
    axes.set_title(f"{name}: n = {len(y):,} test crystals", fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out / f"roc-{name}.png")
    plt.close(figure)
    return auc


def main(argv=None) -> None:
    from deepchem_cgcnn import available_pretrained, pretrained_card
    from deepchem_cgcnn.registry import load_pretrained

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", help="shipped model names (default: all)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs")
    parser.add_argument(
        "--cache-dir",
        default=str(PROJECT_ROOT / "work" / "cache"),
        help="featurized-data cache, shared with dev/train_models.py",
    )
    args = parser.parse_args(argv)
    os.makedirs(args.cache_dir, exist_ok=True)
    rows, mismatches = [], []
    for name in args.models or available_pretrained():
        card = pretrained_card(name)
        test = test_split(card, args.cache_dir)
        model = load_pretrained(name)
        prediction = np.asarray(model.predict(test))
        y = test.y[:, 0]
        if card.mode == "classification":
            value = roc_plot(name, y, prediction[:, 1], args.out)
            metric, recorded = "ROC-AUC", card.metrics["roc_auc"]["test"]
        else:
            value = parity_plot(name, card, y, prediction[:, 0], args.out)
            metric, recorded = f"MAE ({card.units})", card.metrics["mae"]["test"]
        rows.append([name, metric, f"{len(y):,}", f"{value:.4f}", f"{recorded:.4f}"])
        if abs(value - recorded) > 1e-4:
            mismatches.append(f"{name}: {metric} {value:.5f} now, {recorded:.5f} in its card")
        if card.task == "band_gap":
            # the paper's protocol scores non-metals only (gap > 0)
            gapped = y > 0
            rows.append(
                [
                    f"{name}, test crystals with gap > 0",
                    metric,
                    f"{gapped.sum():,}",
                    f"{np.abs(prediction[gapped, 0] - y[gapped]).mean():.4f}",
                    "—",
                ]
            )
    print(markdown_table(["model", "metric", "test crystals", "this run", "card"], rows))
    print(json.dumps({"figures": str(args.out)}))
    if mismatches:
        raise SystemExit("cards out of date:\n" + "\n".join(mismatches))


if __name__ == "__main__":
    main()
