"""Per-element training counts into every shipped card, the band-gap model's non-negative output,
and the cost of featurizing with the wrong settings (reliability issue, items 5-7).

For each shipped model the script rebuilds its training split exactly as ``deepchem-cgcnn train``
made it (same file, task, featurizer, 60/20/20 seed-123 split), checks that the card's test metric
is reproduced (proof that the split is the same), records ``training_counts`` (per element: the
training crystals holding it, and the elemental crystals of it) in the card, and for
``mp-band-gap`` declares the output non-negative and rescores it. It then measures the test MAE
of ``mp-formation-energy`` on graphs made with the default ``CGCNNFeaturizer()`` (``'cgcnn'``
selection) instead of its own ``'complete'`` ones -- what a user got silently before graphs
carried their settings.

Usage: ``.venv/bin/python dev/card_training_counts.py [--check-only]``
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import PROJECT_ROOT  # noqa: E402 (the shared helpers live beside the benchmarks)

SHARED = PROJECT_ROOT.parent / "shared" / "datasets"
PACKAGE = PROJECT_ROOT / "deepchem_cgcnn" / "pretrained"
CACHE = PROJECT_ROOT / "work" / "cache"
SOURCES = {
    "mp": (
        SHARED / "mp_cgcnn.csv.gz",
        ["formation_energy_per_atom", "band_gap", "efermi", "is_metal"],
    ),
    "castelli": (SHARED / "castelli_perovskites.csv.gz", ["heat_all"]),
}


def all_rows(source: str):
    from deepchem_cgcnn import CGCNNFeaturizer, MaterialsProjectLoader

    path, tasks = SOURCES[source]
    loader = MaterialsProjectLoader(
        str(path),
        tasks=tasks,
        splitter=None,
        n_jobs=2,
        featurizer=CGCNNFeaturizer(selection="complete"),
        save_dir=str(CACHE),
        data_dir=str(CACHE),
    )
    _, (dataset,), _ = loader.load()
    return dataset, tasks


def split_for(dataset, tasks, task):
    """The card's split: rows labelled for ``task``, in file order, split as the loader does."""
    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    dc = import_deepchem()
    column = tasks.index(task)
    keep = np.nonzero(dataset.w[:, column] > 0)[0]
    subset = dc.data.NumpyDataset(
        dataset.X[keep],
        dataset.y[keep, column : column + 1],
        np.ones((len(keep), 1)),
        dataset.ids[keep],
    )
    return CGCNNRandomSplitter(seed=123).train_valid_test_split(subset)


def score(model, data, mode):
    from deepchem_cgcnn.training import classification_error, mean_absolute_error

    return (
        1 - classification_error(model, data)
        if mode == "classification"
        else mean_absolute_error(model, data)
    )


def main(argv=None) -> None:
    from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, available_pretrained, pretrained_card
    from deepchem_cgcnn._io import atomic_torch_save, atomic_write
    from deepchem_cgcnn.domain import training_counts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-only", action="store_true", help="measure; write no card")
    args = parser.parse_args(argv)
    loaded = {}
    rows = []
    for name in available_pretrained(include_members=True):
        card = pretrained_card(name).to_dict()
        source = "castelli" if "castelli" in name else "mp"
        if source not in loaded:
            loaded[source] = all_rows(source)
        dataset, tasks = loaded[source]
        train, valid, test = split_for(dataset, tasks, card["task"])
        assert [len(train), len(valid), len(test)] == card["split"]["sizes"], name
        model = CGCNNModel.pretrained(name)
        metric = "roc_auc" if card["mode"] == "classification" else "mae"
        before = score(model, test, card["mode"])
        assert abs(before - card["metrics"][metric]["test"]) < 1e-4, (name, before)
        card["training_counts"] = training_counts(train.X)
        after = before
        if card["task"] == "band_gap":
            weights = torch.load(PACKAGE / f"{name}.pt", weights_only=True)
            weights["hyperparameters"]["nonnegative"] = True
            model = CGCNNModel(**weights["hyperparameters"])
            model.model.load_state_dict(weights["state_dict"])
            model.featurizer_params = weights["featurizer"]
            card["model"]["nonnegative"] = True
            card["output_constraint"] = "non-negative (predictions clipped at 0)"
            card.setdefault(
                "metrics_before_clipping",
                {
                    metric: dict(card["metrics"][metric]),
                    "note": "the same weights without the non-negative clip (model selection "
                    "used these)",
                },
            )
            card["metrics"][metric] = {
                split: round(score(model, data, card["mode"]), 5)
                for split, data in (("train", train), ("valid", valid), ("test", test))
            }
            after = card["metrics"][metric]["test"]
            gapped = test.y[:, 0] > 0
            nonmetals = score(model, test.select(np.nonzero(gapped)[0]), card["mode"])
            print(
                f"{name}: test MAE on the {gapped.sum()} test crystals with a gap "
                f"{nonmetals:.4f} eV"
            )
            if not args.check_only:
                atomic_torch_save(PACKAGE / f"{name}.pt", weights)
        rows.append((name, metric, before, after, len(card["training_counts"]["elements"])))
        if not args.check_only:
            text = json.dumps(card, indent=2) + "\n"
            atomic_write(PACKAGE / f"{name}.json", lambda h, text=text: h.write(text), binary=False)
    print("| model | metric | test before | test now | elements in training |")
    print("| --- | --- | --- | --- | --- |")
    for name, metric, before, after, n in rows:
        print(f"| {name} | {metric} | {before:.5f} | {after:.5f} | {n} |")

    # the cost of the wrong featurizer settings, on the formation-energy test split
    from deepchem_cgcnn._quiet import import_deepchem

    dc = import_deepchem()
    dataset, tasks = loaded["mp"]
    _, _, test = split_for(dataset, tasks, "formation_energy_per_atom")
    model = CGCNNModel.pretrained("mp-formation-energy")
    right = score(model, test, "regression")
    import pandas as pd

    table = pd.read_csv(SOURCES["mp"][0]).set_index("material_id")
    default = CGCNNFeaturizer(n_jobs=2).featurize(list(table.loc[test.ids, "cif"]))
    model.featurizer_params = None  # what an unchecked model did before
    wrong = score(model, dc.data.NumpyDataset(default, test.y, test.w, test.ids), "regression")
    print(
        f"\nmp-formation-energy test MAE (eV/atom): own 'complete' graphs {right:.5f}, "
        f"default CGCNNFeaturizer() graphs {wrong:.5f} ({100 * (wrong / right - 1):+.1f} %)"
    )


if __name__ == "__main__":
    main()
