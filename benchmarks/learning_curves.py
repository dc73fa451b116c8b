"""Learning curves of the paper's Fig. 2: test MAE vs training-set size, gated vs simple convolution.

Each point is one ``deepchem-cgcnn train`` run on the 60/20/20 split (seed 123) of
``mp_cgcnn.csv.gz`` with ``--train-size N`` crystals drawn from the training split, the same
recipe (AdamW + cosine decay over the budget) for every size, a budget of 100 epochs or 45
minutes, whichever runs out first (on one CPU thread the gated 8,000-crystal point hits the time
limit; the smaller ones do not), and the best-validation model's test MAE on the whole test split. The best epoch is picked on 1,000
validation crystals (a seeded draw, ``--valid-size``): scoring all 6,259 every epoch would
cost more than training the small sizes. Runs are independent and resumable: a point whose card
exists is read, not rerun, so the script can be stopped and started again (e.g. across
sessions); an interrupted point resumes from its last epoch. The gated full-split point is
the shipped ``mp-formation-energy`` model (same recipe, 100 minutes) unless
``--run-full-gated`` is given.

Writes ``docs/learning-curves.png`` (log-log, with the 0.1 eV/atom line the paper marks) and
prints a markdown table.

Usage
-----
``OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/learning_curves.py``
``.venv/bin/python benchmarks/learning_curves.py --plot-only``   (table and figure from finished runs)
"""

import argparse
import json
import os
import shutil
from pathlib import Path

from _common import PROJECT_ROOT, markdown_table

DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "mp_cgcnn.csv.gz"
FULL_SPLIT = 18778
SIZES = (500, 1000, 2000, 4000, 8000, FULL_SPLIT)
CONVS = ("gated", "simple")


RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "learning-curves"


def card_path(conv: str, size: int) -> Path:
    """Finished points' cards are kept in the repository so the curve grows across sessions."""
    return RESULTS / f"curve-{conv}-{size}.json"


def run_point(
    work: Path, conv: str, size: int, epochs: int, max_minutes: float, valid_size: int = 1000
) -> None:
    from deepchem_cgcnn.cli import build_parser, training_config
    from deepchem_cgcnn.training import train_model

    options = [
        "--data",
        str(DATA),
        "--target",
        "formation_energy_per_atom",
        "--name",
        f"curve-{conv}-{size}",
        "--conv",
        conv,
        "--train-size",
        str(size),
        "--max-epochs",
        str(epochs),
        "--max-minutes",
        str(max_minutes),
        "--work-dir",
        str(work / f"{conv}-{size}"),
        "--cache-dir",
        str(PROJECT_ROOT / "work" / "cache"),
        "--export",
        str(work / "export"),
        "--n-jobs",
        "1",
        "--compile",
        "--loss",  # the recorded curves' loss (cli-v1's default)
        "mse",
        "--valid-size",
        str(valid_size),
    ]
    command = "deepchem-cgcnn train " + " ".join(options)
    train_model(training_config(build_parser().parse_args(["train", *options]), command))
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "export" / f"curve-{conv}-{size}.json", card_path(conv, size))


def _point(card):
    return (
        card["metrics"]["mae"]["test"],
        card["wall_time_s"]["train"],
        card["recipe"]["epochs_run"],
    )


def read_points():
    """(conv, size) -> (test MAE, training seconds, epochs) of every finished point.

    The gated full-split point, when not run under this protocol, is the shipped
    ``mp-formation-energy`` model: same split, data and recipe, trained 100 minutes
    (173 epochs) with the best epoch picked on the whole validation split.
    """
    points = {}
    for conv in CONVS:
        for size in SIZES:
            path = card_path(conv, size)
            if path.exists():
                points[conv, size] = _point(json.loads(path.read_text()))
    if ("gated", FULL_SPLIT) not in points:
        from deepchem_cgcnn import pretrained_card

        points["gated", FULL_SPLIT] = _point(pretrained_card("mp-formation-energy").to_dict())
        OTHER_PROTOCOL.add(("gated", FULL_SPLIT))
    return points


OTHER_PROTOCOL: set = set()
"""Points drawn (shown) but trained under another protocol: left out of every fit."""


def plot(points, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.8, 4.0), dpi=150)
    for conv, marker, label in (
        ("gated", "o", "gated convolution (Eq. 5)"),
        ("simple", "s", "simple convolution (Eq. 4)"),
    ):
        sizes = [s for s in SIZES if (conv, s) in points]
        if sizes:
            axes.loglog(sizes, [points[conv, s][0] for s in sizes], marker=marker, label=label)
    axes.axhline(0.1, color="grey", ls="--", lw=0.8, label="0.1 eV/atom")
    axes.set_xlabel("training crystals")
    axes.set_ylabel("test MAE, formation energy (eV/atom)")
    axes.set_title("mp_cgcnn.csv.gz, 60/20/20 split, seed 123", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "work" / "learning-curves")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=45.0, help="per point")
    parser.add_argument(
        "--convs",
        nargs="+",
        choices=CONVS,
        default=list(CONVS),
        help="run only these convolutions (two lanes on two cores)",
    )
    parser.add_argument(
        "--run-full-gated",
        action="store_true",
        help="also run the gated full-split point (~155 min at 100 epochs) "
        "instead of reading the shipped mp-formation-energy card",
    )
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.work / "export", exist_ok=True)
    if not args.plot_only:
        for size in SIZES:
            for conv in args.convs:
                if size == FULL_SPLIT and conv == "gated" and not args.run_full_gated:
                    continue
                if not card_path(conv, size).exists():
                    run_point(args.work, conv, size, args.epochs, args.max_minutes)
    points = read_points()
    rows = [
        [
            f"{size:,}",
            *(
                f"{points[c, size][0]:.4f} ({points[c, size][1] / 60:.0f} min, "
                f"{points[c, size][2]} ep)"
                if (c, size) in points
                else "—"
                for c in CONVS
            ),
        ]
        for size in SIZES
    ]
    print(
        markdown_table(
            ["training crystals", "gated test MAE (eV/atom)", "simple test MAE (eV/atom)"], rows
        )
    )
    for conv in CONVS:
        fit = power_law(points, conv)
        if fit:
            slope, at_paper_size, size_for_paper_mae = fit
            print(
                f"\n{conv}: test MAE ~ N^{slope:.2f} over N >= 1,000; extrapolated "
                f"{at_paper_size:.4f} eV/atom at the paper's {PAPER_TRAIN_SIZE:,} training "
                f"crystals; {PAPER_MAE} eV/atom at ~{size_for_paper_mae:,.0f}"
            )
    if points:
        plot(points, PROJECT_ROOT / "docs" / "learning-curves.png")


PAPER_TRAIN_SIZE, PAPER_MAE = 28_046, 0.039


def power_law(points, conv: str, smallest: int = 1000):
    """Least-squares line through log MAE vs log N (N >= ``smallest``): the slope, the MAE it
    predicts at the paper's training size, and the size at which it predicts the paper's MAE."""
    import numpy as np

    sizes = [
        s
        for s in SIZES
        if s >= smallest and (conv, s) in points and (conv, s) not in OTHER_PROTOCOL
    ]
    if len(sizes) < 3:
        return None
    slope, intercept = np.polyfit(np.log(sizes), np.log([points[conv, s][0] for s in sizes]), 1)
    at_paper_size = float(np.exp(intercept) * PAPER_TRAIN_SIZE**slope)
    size_for_paper_mae = float(np.exp((np.log(PAPER_MAE) - intercept) / slope))
    return float(slope), at_paper_size, size_for_paper_mae


if __name__ == "__main__":
    main()
