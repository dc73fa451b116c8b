"""The paper's recipe against ours on formation energy: validation MAE against training time.

Reads the cards of two ``dev/train_models.py`` runs on the same split, data and
45-minute budget -- ``mp-formation-energy-paper-recipe`` (SGD, momentum 0.9, lr 0.01,
batch 256, constant rate: the original code's defaults) and ``mp-formation-energy-fast-45min``
(AdamW, lr 2e-3, batch 128, cosine decay over the budget) -- and the shipped
``mp-formation-energy`` (our recipe, 100 minutes). Finished cards are copied to
``benchmarks/results/recipes/`` so the comparison survives a machine without ``work/``.

Prints the table and writes ``docs/recipes.png`` (validation MAE vs minutes, log scale, with
the paper's 0.039 eV/atom).

Usage
-----
``.venv/bin/python benchmarks/recipe_comparison.py``
"""

import argparse
import json
import shutil
from pathlib import Path

from _common import PROJECT_ROOT, markdown_table

EXPORT = PROJECT_ROOT / "work" / "export"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "recipes"
RUNS = {
    "mp-formation-energy-paper-recipe": "paper recipe (SGD 0.01, batch 256)",
    "mp-formation-energy-fast-45min": "our recipe (AdamW + cosine, batch 128)",
}
PAPER_MAE = 0.039


def read_cards():
    cards = {}
    for name in RUNS:
        exported, kept = EXPORT / f"{name}.json", RESULTS / f"{name}.json"
        if exported.exists():
            RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(exported, kept)
        if kept.exists():
            cards[name] = json.loads(kept.read_text())
    return cards


def recipe_row(label, card):
    recipe = card["recipe"]
    optimizer = recipe.get("optimizer", "?")
    rate = recipe.get("learning_rate", recipe.get("base_learning_rate"))
    return [
        label,
        f"{optimizer}, lr {rate:g}, batch {recipe['batch_size']}",
        f"{card['wall_time_s']['train'] / 60:.0f}",
        str(recipe["epochs_run"]),
        f"{card['metrics']['mae']['valid']:.4f}",
        f"{card['metrics']['mae']['test']:.4f}",
    ]


def plot(cards, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.2, 3.8), dpi=150)
    for name, card in cards.items():
        history = card["history"]
        axis.plot(
            [s / 60 for s in history["seconds"]],
            history["valid_error"],
            lw=1,
            label=f"{RUNS[name]}: test {card['metrics']['mae']['test']:.3f}",
        )
    from deepchem_cgcnn import pretrained_card

    shipped = pretrained_card("mp-formation-energy")
    axis.plot(
        [shipped.wall_time_s["train"] / 60],
        [shipped.metrics["mae"]["test"]],
        "k*",
        label=f"shipped model, our recipe 100 min: test {shipped.metrics['mae']['test']:.3f}",
    )
    axis.axhline(PAPER_MAE, color="tab:red", lw=0.8, ls=":", label="paper 0.039 (28k, GPU)")
    axis.set_yscale("log")
    axis.set_xlabel("training minutes (one CPU thread)")
    axis.set_ylabel("validation MAE (eV/atom)")
    axis.set_title("formation energy, 18,778 training crystals", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "recipes.png")
    args = parser.parse_args(argv)
    cards = read_cards()
    if not cards:
        raise SystemExit(
            "no recipe run has finished; run dev/train_models.py --only " + " ".join(RUNS)
        )
    from deepchem_cgcnn import pretrained_card

    rows = [recipe_row(RUNS[name], card) for name, card in cards.items()]
    rows.append(
        recipe_row(
            "shipped mp-formation-energy (our recipe)",
            pretrained_card("mp-formation-energy").to_dict(),
        )
    )
    print(
        markdown_table(
            ["run", "optimizer", "training minutes", "epochs", "valid MAE", "test MAE (eV/atom)"],
            rows,
        )
    )
    plot(cards, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
