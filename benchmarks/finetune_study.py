"""Fine-tuning case study: the shipped mp-formation-energy model fine-tuned on the Castelli
perovskites (heat of formation, eV per 5-atom cell) at several training sizes, against a
frozen body (only a new head trained) and against training from scratch, same budget each.

The head is reset in both transfer variants (the source predicts eV/atom, the target is
eV/cell: a new head, not a unit conversion). Test MAE on the whole Castelli test split
(60/20/20, seed 123), best epoch picked on 500 validation cells. Resumable: finished points
are kept in benchmarks/results/finetune/. Two slots run side by side on two cores.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_study.py --slot 0 --slots 2``
then ``.venv/bin/python benchmarks/finetune_study.py --report``.
"""

import argparse
import json

from _common import PROJECT_ROOT, markdown_table

DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "castelli_perovskites.csv.gz"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "finetune"
WORK = PROJECT_ROOT / "work" / "finetune"
SIZES = (200, 500, 1000, 3843)
VARIANTS = {
    "fine-tuned": dict(init_from="mp-formation-energy", reset_head=True, body_lr_factor=0.1),
    "frozen body": dict(
        init_from="mp-formation-energy", reset_head=True, freeze=("embedding", "convs")
    ),
    "from scratch": dict(num_conv=4, selection="complete"),
}


def run_point(variant: str, size: int, minutes: float) -> dict:
    from deepchem_cgcnn.training import TrainConfig, train_model

    name = f"{variant.replace(' ', '-')}-{size}"
    config = TrainConfig(
        data=str(DATA),
        target="heat_all",
        name=name,
        property="heat of formation",
        units="eV/cell",
        work_dir=str(WORK),
        cache_dir=str(PROJECT_ROOT / "work" / "cache"),
        export=None,
        train_size=size,
        valid_size=500,
        max_epochs=150,
        max_minutes=minutes,
        n_jobs=1,
        command=f"benchmarks/finetune_study.py ({name})",
        **VARIANTS[variant],
    )
    result = train_model(config)
    card = result.card
    point = {
        "variant": variant,
        "size": size,
        "test_mae": card.metrics["mae"]["test"],
        "baseline_test_mae": card.metrics["mean_predictor_mae"]["test"],
        "epochs": card.recipe["epochs_run"],
        "seconds": card.wall_time_s["train"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(point, indent=1))
    return point


def report() -> None:
    points = {
        (p["variant"], p["size"]): p
        for p in (json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json")))
    }
    rows = []
    for size in SIZES:
        cells = []
        for variant in VARIANTS:
            p = points.get((variant, size))
            cells.append(
                f"{p['test_mae']:.3f} ({p['epochs']} ep, {p['seconds'] / 60:.1f} min)" if p else "—"
            )
        rows.append([f"{size:,}", *cells])
    print(markdown_table(["training cells", *VARIANTS], rows))
    _plot(points)


def _plot(points: dict) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.6))
    for variant in VARIANTS:
        sizes = [s for s in SIZES if (variant, s) in points]
        axes.plot(sizes, [points[variant, s]["test_mae"] for s in sizes], "o-", label=variant)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(SIZES, [f"{s:,}" for s in SIZES])
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel("Castelli training cells")
    axes.set_ylabel("test MAE (eV/cell)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(PROJECT_ROOT / "docs" / "finetuning.png", dpi=130)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=2.5, help="training budget per point")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    if args.report:
        report()
        return
    jobs = [(v, s) for s in SIZES for v in VARIANTS]
    for index, (variant, size) in enumerate(jobs):
        done = RESULTS / f"{variant.replace(' ', '-')}-{size}.json"
        if index % args.slots == args.slot and not done.exists():
            print(run_point(variant, size, args.minutes), flush=True)


if __name__ == "__main__":
    main()
