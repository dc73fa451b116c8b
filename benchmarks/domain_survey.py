"""The thresholds of the domain flags, measured on the MP crystals of the CGCNN data set.

For every crystal of ``mp_cgcnn.csv.gz``: the largest vacuum gap between atomic planes
(``largest_vacuum_gap``), the fewest neighbours of any atom within 8 Å, the shortest
interatomic distance, and whether it is a single-element crystal. Prints the distribution
that ``docs/reliability.md`` quotes for the 7 Å gap, 12-neighbour and 0.5 Å overlap thresholds.

``--contacts`` measures the compressed-contact flag (:mod:`deepchem_cgcnn.contacts`) held out:
the shortest contact of each element pair over the 18,778 training crystals of the cards'
60/20/20 seed-123 split, the 6,260 test crystals checked against it at several margins, and
the shipped ``mp-formation-energy``'s test error on the flagged crystals and on the rest; then
the packaged (all-MP) reference's flags on the Castelli perovskites.

Usage: ``.venv/bin/python benchmarks/domain_survey.py [--rows N] [--contacts [--cache-dir D]]``
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from _common import DEFAULT_DATA, markdown_table


def survey(cifs):
    from pymatgen.core import Structure

    from deepchem_cgcnn.featurizer import largest_vacuum_gap

    rows = []
    for cif in cifs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
        centers, _, _, distances = structure.get_neighbor_list(8.0)
        counts = np.bincount(centers, minlength=len(structure))
        rows.append(
            {
                "gap": largest_vacuum_gap(structure.frac_coords, structure.lattice.matrix)[
                    "max_gap"
                ],
                "fewest_neighbours": int(counts.min()),
                "shortest_distance": float(distances.min()),
                "elemental": len(structure.composition.elements) == 1,
                "formula": structure.composition.reduced_formula,
            }
        )
    return pd.DataFrame(rows)


def contact_study(cache_dir: str | None) -> None:
    import warnings

    from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, MaterialsProjectLoader
    from deepchem_cgcnn.contacts import ContactReference, mp_contacts, shortest_contacts

    featurizer = CGCNNFeaturizer(selection="complete")  # the shipped models' graphs
    loader = MaterialsProjectLoader(
        str(DEFAULT_DATA), tasks=["formation_energy_per_atom"], featurizer=featurizer,
        save_dir=cache_dir, data_dir=cache_dir,
    )  # fmt: skip
    _, (train, _, test), _ = loader.load()
    held_out = ContactReference(shortest_contacts(train.X))
    ratios = np.array([held_out.shortest_ratio(g) for g in test.X])
    model = CGCNNModel.pretrained("mp-formation-energy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flags are what is measured here
        errors = np.abs(model.predict(test).ravel() - test.y.ravel())
    print(
        f"\ncompressed contacts, held out: reference from {len(train):,} training crystals, "
        f"{len(test):,} test crystals; mp-formation-energy test MAE {errors.mean():.4f} eV/atom\n"
    )
    rows = []
    for margin in (0.95, 0.9, 0.85, 0.8):
        flagged = ratios < margin
        rows.append(
            [
                f"{margin:.2f}",
                f"{flagged.sum()} ({flagged.mean():.1%})",
                f"{errors[flagged].mean():.4f}" if flagged.any() else "-",
                f"{errors[~flagged].mean():.4f}",
                f"{errors[flagged].mean() / errors[~flagged].mean():.1f}x"
                if flagged.any()
                else "-",
            ]
        )
    print(
        markdown_table(
            ["margin", "test crystals flagged", "MAE flagged", "MAE rest", "ratio"], rows
        )
    )
    castelli = DEFAULT_DATA.parent / "castelli_perovskites.csv.gz"
    perovskites = MaterialsProjectLoader(
        str(castelli), tasks=["heat_all"], featurizer=featurizer,
        save_dir=cache_dir, data_dir=cache_dir,
    )  # fmt: skip
    _, splits, _ = perovskites.load()
    flagged = [np.array([bool(mp_contacts().flags(g)) for g in s.X]) for s in splits]
    n_flagged, n_all = sum(f.sum() for f in flagged), sum(len(f) for f in flagged)
    model = CGCNNModel.pretrained("castelli-perovskites")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errors = np.abs(model.predict(splits[2]).ravel() - splits[2].y.ravel())
    print(
        f"\nCastelli perovskites below the packaged (all-MP) contacts: {n_flagged} of {n_all:,}; "
        f"castelli-perovskites test MAE {errors[flagged[2]].mean():.3f} on its "
        f"{flagged[2].sum()} flagged test crystals, {errors[~flagged[2]].mean():.3f} on the rest"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, help="survey only the first N rows")
    parser.add_argument("--contacts", action="store_true", help="the compressed-contact study")
    parser.add_argument("--cache-dir", help="featurized-data cache (default: the user's)")
    args = parser.parse_args(argv)
    if args.contacts:
        contact_study(args.cache_dir)
        return
    table = pd.read_csv(DEFAULT_DATA, nrows=args.rows)
    found = survey(table.cif)
    found.insert(0, "material_id", table.material_id)
    n = len(found)
    print(f"{n:,} MP crystals of {DEFAULT_DATA.name}\n")
    print("| quantity | value |")
    print("| --- | --- |")
    for q in (0.5, 0.99, 0.999):
        print(f"| vacuum gap, {q:.1%} quantile | {found.gap.quantile(q):.2f} Å |")
    for threshold in (5.0, 7.0, 10.0):
        print(f"| crystals with a gap > {threshold:g} Å | {(found.gap > threshold).sum()} |")
    print(f"| fewest neighbours within 8 Å of any atom | {found.fewest_neighbours.min()} |")
    print(f"| shortest interatomic distance | {found.shortest_distance.min():.3f} Å |")
    elemental = found[found.elemental]
    print(f"| elemental crystals | {len(elemental)} of {elemental.formula.nunique()} elements |")
    print("\nlargest gaps:")
    print(found.sort_values("gap").tail(8).to_string(index=False))


if __name__ == "__main__":
    main()
