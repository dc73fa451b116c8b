"""Validation error against training time for every shipped model whose card holds its history.

Draws one panel per model (validation MAE, or 1 - ROC-AUC for classifiers, against minutes of
training on this CPU; log scale), with the test metric of the kept epoch and the published
figure where the card's property has one -> ``docs/training-curves.png``; prints the table.

Usage
-----
``.venv/bin/python dev/training_curves.py``
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import PROJECT_ROOT, markdown_table  # noqa: E402 (the shared helpers live beside the benchmarks)

PUBLISHED = {  # task -> (figure, label); the paper's unless said otherwise
    "formation_energy_per_atom": (0.039, "paper 0.039"),
    "band_gap": (0.297, "Matbench 0.297"),
    "efermi": (0.363, "paper 0.363"),
    "is_metal": (1 - 0.952, "Matbench AUC 0.952"),
    "heat_all": (0.0452, "Matbench 0.0452"),
}


def main(argv=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepchem_cgcnn import available_pretrained, pretrained_card

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "training-curves.png")
    args = parser.parse_args(argv)
    cards = {n: pretrained_card(n) for n in available_pretrained()}
    cards = {n: c for n, c in cards.items() if c.history}
    if not cards:
        raise SystemExit("no shipped card holds a training history")
    figure, axes = plt.subplots(
        1, len(cards), figsize=(3.4 * len(cards), 3.2), dpi=150, squeeze=False
    )
    rows = []
    for axis, (name, card) in zip(axes[0], cards.items()):
        history = card.history
        minutes = [s / 60 for s in history["seconds"]]
        # a refit card's history is the validated run's (it chose the epochs); its test score
        # is the refit's, beside the validated run's
        refit = card.is_refit
        axis.plot(
            minutes, history["valid_error"], lw=1, label="validated run" if refit else "validation"
        )
        classify = card.mode == "classification"

        metric = card.metric_name
        flip = 1 if classify else 0  # plotted as an error: 1 - ROC-AUC for classifiers
        test = abs(flip - card.metrics[metric]["test"])
        if refit:
            before = abs(flip - card.metrics[f"{metric}_before_refit"]["test"])
            axis.axhline(before, color="grey", lw=0.8, ls="--", label=f"its test {before:.3g}")
        label = f"test {test:.3g}" + (" (refit)" if refit else "")
        axis.axhline(test, color="black", lw=0.8, ls="--", label=label)
        if card.task in PUBLISHED:
            value, label = PUBLISHED[card.task]
            axis.axhline(value, color="tab:red", lw=0.8, ls=":", label=label)
        axis.set_yscale("log")
        axis.set_xlabel("training minutes (2-core CPU)")
        axis.set_ylabel("1 - ROC-AUC" if classify else f"MAE ({card.units})")
        axis.set_title(name, fontsize=9)
        axis.legend(fontsize=7)
        rows.append(
            [
                name,
                len(minutes),
                f"{minutes[-1]:.0f}",
                f"{min(history['valid_error']):.4g}",
                f"{test:.4g}",
            ]
        )
    figure.tight_layout()
    figure.savefig(args.out)
    print(
        markdown_table(
            ["model", "epochs", "training minutes", "best validation error", "test error"], rows
        )
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
