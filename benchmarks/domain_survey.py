"""The thresholds of the domain flags, measured on the MP crystals of the CGCNN data set.

For every crystal of ``mp_cgcnn.csv.gz``: the largest vacuum gap between atomic planes
(``largest_vacuum_gap``), the fewest neighbours of any atom within 8 Å, the shortest
interatomic distance, and whether it is a single-element crystal. Prints the distribution
that ``docs/reliability.md`` quotes for the 7 Å gap, 12-neighbour and 0.5 Å overlap thresholds.

Usage: ``.venv/bin/python benchmarks/domain_survey.py [--rows N]``
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from _common import DEFAULT_DATA


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, help="survey only the first N rows")
    args = parser.parse_args(argv)
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
