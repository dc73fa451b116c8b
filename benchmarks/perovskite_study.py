"""The paper's perovskite study on the Castelli data, and a screening run validated on held-out cells.

Needs the models trained by ``dev/train_models.py --only castelli-perovskites
castelli-perovskites-linear castelli-perovskites.1 ... castelli-perovskites.4`` (exported to
``work/export``; the seed members are optional); models not found there are taken from the
package's shipped ones, so on a fresh clone this one command regenerates everything. It also
writes the fitted lattice-constant model to ``work/export/castelli-perovskites.lattice.json``. Then, on the same 60/20/20 split
(seed 123) of ``castelli_perovskites.csv.gz`` (heat of formation ``heat_all``, eV per 5-atom cell):

1. test MAE of the linear-pooling model next to the mean-pooling one;
2. every site's contribution (linear model, all 6,405 cells), its role A/B/X from the
   structure (``deepchem_cgcnn.perovskite.perovskite_sites``), the mean contribution per
   element on each site, and periodic-table heatmaps for the A and B sites
   -> ``docs/perovskite-contributions-A.png``, ``docs/perovskite-contributions-B.png``;
3. the ensemble of the mean-pooling model and its other-seed members
   (``castelli-perovskites.<k>``, where exported): its test MAE and the calibration of its σ
   (fraction of test errors within 1, 2, 3 σ), raw and after scaling σ by the factor fitted
   on the validation split (``--ship-std-scale`` records it in the shipped card);
4. screening: every A x B x X3 combination of the elements and anion sets seen in the
   training split, built as an ideal cubic cell with the additive lattice-constant model fitted on
   the training cells, predicted by that ensemble (mean, σ) and ranked; the
   held-out (test) compositions are among the candidates, and precision / recall at k say how
   many of their truly most stable the ranking puts first; throughput in candidates/s;
   -> ``docs/perovskite-screening.png`` and ``work/perovskite-screening.csv``.

Usage
-----
``nice -n 5 .venv/bin/python benchmarks/perovskite_study.py``
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import PROJECT_ROOT, markdown_table, record_std_scale

DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "castelli_perovskites.csv.gz"
EXPORT = PROJECT_ROOT / "work" / "export"
MODELS = {"mean pooling": "castelli-perovskites", "linear pooling": "castelli-perovskites-linear"}


def load_model(export: Path, name: str):
    """``work/export/<name>.pt`` if trained here, else the shipped model of that name."""
    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.registry import load_saved

    if not (export / f"{name}.pt").exists():
        return CGCNNModel.pretrained(name)
    return load_saved(export / f"{name}.pt")


def split(model, cache: str):
    from deepchem_cgcnn import CGCNNFeaturizer, MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    loader = MaterialsProjectLoader(
        str(DATA),
        tasks=["heat_all"],
        featurizer=CGCNNFeaturizer(**model.featurizer_params),
        splitter=CGCNNRandomSplitter(seed=123),
        data_dir=cache,
        save_dir=cache,
        n_jobs=2,
    )
    return loader.load()[1]


def site_table(table: pd.DataFrame, contributions: pd.DataFrame) -> pd.DataFrame:
    """Contributions with each site's A/B/X role, read from the structures."""
    from pymatgen.core import Structure

    from deepchem_cgcnn.perovskite import perovskite_sites

    roles = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for crystal_id, cif in zip(table.cmr_id, table.cif):
            roles[crystal_id] = perovskite_sites(Structure.from_str(cif, fmt="cif"))
    contributions = contributions.copy()
    contributions["role"] = [roles[c][s] for c, s in zip(contributions.crystal, contributions.site)]
    return contributions


def heatmaps(sites: pd.DataFrame, out: Path) -> dict:
    from deepchem_cgcnn.plots import periodic_table_heatmap

    summary = {}
    for role, name in (("A", "A site (12-fold cage)"), ("B", "B site (octahedral)")):
        by_element = sites[sites.role == role].groupby("element").contribution.agg(["mean", "size"])
        periodic_table_heatmap(
            by_element["mean"].to_dict(),
            f"Mean contribution of each element on the {name}, "
            f"linear-pooling CGCNN, Castelli perovskites",
            str(out / f"perovskite-contributions-{role}.png"),
            label="contribution to heat of formation (eV per cell)",
            counts=by_element["size"].to_dict(),
        )
        ranked = by_element.sort_values("mean")
        summary[role] = {
            "most stabilizing": ranked.head(5)["mean"].astype(float).round(3).to_dict(),
            "most destabilizing": ranked.tail(5)["mean"].astype(float).round(3).to_dict(),
        }
    return summary


def screening(models, train_table, test_table, out: Path) -> dict:
    from pymatgen.core import Structure

    from deepchem_cgcnn import CGCNNEnsemble
    from deepchem_cgcnn.screening import (
        LatticeConstantModel,
        composition_of,
        enumerate_candidates,
        precision_recall_at_k,
        screen,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_cells = [Structure.from_str(c, fmt="cif") for c in train_table.cif]
        test_cells = [Structure.from_str(c, fmt="cif") for c in test_table.cif]
    train_compositions = [composition_of(c) for c in train_cells]
    lattice = LatticeConstantModel().fit(train_compositions, [c.lattice.a for c in train_cells])
    EXPORT.mkdir(parents=True, exist_ok=True)
    (EXPORT / "castelli-perovskites.lattice.json").write_text(json.dumps(lattice.to_dict()))
    truth = {}
    for cell, heat in zip(test_cells, test_table.heat_all):
        truth[composition_of(cell)] = heat
    candidates = enumerate_candidates(
        lattice.elements("A"), lattice.elements("B"), sorted({c[2] for c in train_compositions})
    )
    candidates = sorted(set(candidates) | set(truth))
    start = time.perf_counter()
    ranked = screen(CGCNNEnsemble(models), candidates, lattice)
    seconds = time.perf_counter() - start
    ranked["key"] = list(
        zip(ranked.A, ranked.B, [tuple(sorted(x)) for x in ranked.X.str.findall(r"[A-Z][a-z]?")])
    )
    ranked["held_out_truth"] = [truth.get(k) for k in ranked.key]
    order = [k for k in ranked.key if k in truth]
    result = {
        "candidates": len(candidates),
        "screened": len(ranked),
        "skipped (element unseen on that site)": len(ranked.attrs["skipped"]),
        "held-out compositions ranked": len(order),
        "seconds": round(seconds, 1),
        "candidates per second": round(len(ranked) / seconds, 1),
    }
    for k in (10, 50, 100):
        precision, recall = precision_recall_at_k(order, truth, k)
        result[f"precision@{k}"], result[f"recall@{k}"] = round(precision, 3), round(recall, 3)
    ranked.drop(columns=["key"]).head(500).to_csv(
        PROJECT_ROOT / "work" / "perovskite-screening.csv", index=False
    )
    plot_screening(ranked, out / "perovskite-screening.png")
    return result


def plot_screening(ranked: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = ranked.dropna(subset=["held_out_truth"])
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=150)
    axes[0].hist(ranked.prediction, bins=80, color="steelblue")
    axes[0].set_xlabel("predicted heat of formation (eV per cell)")
    axes[0].set_ylabel("candidates")
    axes[0].set_title(f"{len(ranked):,} screened cubic ABX3 candidates", fontsize=9)
    axes[1].errorbar(
        held.held_out_truth, held.prediction, yerr=held.get("std"), fmt="o", ms=2, lw=0.4, alpha=0.6
    )
    low, high = np.percentile(np.r_[held.held_out_truth, held.prediction], [0.5, 99.5])
    axes[1].plot([low, high], [low, high], color="black", lw=0.8)
    axes[1].set_xlabel("DFT heat of formation, held-out cells (eV per cell)")
    axes[1].set_ylabel("predicted on the ideal cubic cell (mean ± σ)")
    axes[1].set_title("held-out compositions among the candidates", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None) -> None:
    from deepchem_cgcnn.training import mean_absolute_error

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs")
    parser.add_argument("--cache-dir", default=str(PROJECT_ROOT / "work" / "cache"))
    parser.add_argument("--export", type=Path, default=EXPORT, help="where the models are")
    parser.add_argument(
        "--ship-std-scale",
        action="store_true",
        help="record the ensemble's validation-fitted σ scale in its shipped card",
    )
    args = parser.parse_args(argv)
    table = pd.read_csv(DATA)
    models = {label: load_model(args.export, name) for label, name in MODELS.items()}
    train, valid, test = split(models["linear pooling"], args.cache_dir)
    rows = [
        [
            label,
            f"{mean_absolute_error(model, test):.4f}",
            json.loads((args.export / f"{MODELS[label]}.json").read_text())["wall_time_s"]["train"],
        ]
        for label, model in models.items()
    ]
    print(markdown_table(["model", "test MAE (eV/cell)", "training s"], rows))
    print(f"\nsplit {len(train)}/{len(valid)}/{len(test)}\n")
    from deepchem_cgcnn import available_pretrained

    shipped = set(available_pretrained(include_members=True))
    members = [models["mean pooling"]] + [
        load_model(args.export, f"{MODELS['mean pooling']}.{k}")
        for k in range(1, 10)
        if (args.export / f"{MODELS['mean pooling']}.{k}.pt").exists()
        or f"{MODELS['mean pooling']}.{k}" in shipped
    ]
    ensemble = ensemble_check(members if len(members) > 1 else list(models.values()), valid, test)
    print(json.dumps(ensemble["summary"], indent=1))
    if args.ship_std_scale and len(members) > 1:
        print(
            "recorded in",
            record_std_scale(
                MODELS["mean pooling"], ensemble["std_scale"], len(members), len(valid), "cells"
            ),
        )
    linear = models["linear pooling"]
    contributions = linear.atom_contributions(_all_cells(linear, table))
    sites = site_table(table, contributions)
    print(json.dumps(heatmaps(sites, args.out), indent=1))
    by_id = table.set_index("cmr_id")
    print(
        json.dumps(
            screening(
                ensemble["members"], by_id.loc[list(train.ids)], by_id.loc[list(test.ids)], args.out
            ),
            indent=1,
        )
    )


def ensemble_check(members, valid, test) -> dict:
    """Test MAE of the ensemble's mean and the calibration of its σ on the test split,
    as the members disagree and after scaling σ by the factor fitted on the validation split."""
    from deepchem_cgcnn import CGCNNEnsemble
    from deepchem_cgcnn.ensemble import calibration

    ensemble = CGCNNEnsemble(members)
    y = np.asarray(test.y, dtype=float).ravel()
    mean, raw_std = ensemble.predict_uncertainty(test)
    scale = ensemble.fit_std_scale(valid)
    summary = {
        "members": len(members),
        "ensemble test MAE (eV/cell)": round(float(np.mean(np.abs(mean.ravel() - y))), 4),
        "median raw sigma (eV/cell)": round(float(np.median(raw_std)), 4),
        "std_scale fitted on validation": round(scale, 3),
        "raw": {k: round(v, 3) for k, v in calibration(y, mean, raw_std).items()},
        "scaled": {k: round(v, 3) for k, v in calibration(y, mean, scale * raw_std).items()},
    }
    return {"members": members, "summary": summary, "std_scale": scale}


def _all_cells(model, table: pd.DataFrame):
    from deepchem_cgcnn import CGCNNFeaturizer
    from deepchem_cgcnn._quiet import import_deepchem

    dc = import_deepchem()
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(list(table.cif), n_jobs=2)
    return dc.data.NumpyDataset(graphs, ids=table.cmr_id.to_numpy())


if __name__ == "__main__":
    main()
