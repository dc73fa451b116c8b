"""The gemmi reader of P1 CIFs (``deepchem_cgcnn.fast_cif``) against pymatgen's parser.

Reads every CIF of the MP table both ways and checks, per crystal, that the structures are
identical: the same species in the same order, the same lattice matrix and the same fractional
coordinates, with exact equality. Prints CIFs/s of each, the ratio, how many CIFs the fast
reader declined (pymatgen reads those) and every crystal that differs.

Usage: ``nice .venv/bin/python benchmarks/bench_cif_reader.py [--n 2000]`` (default: all rows)
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from _common import DEFAULT_DATA, environment_line, markdown_table, timed


def main(argv=None) -> None:
    from pymatgen.core import Structure

    from deepchem_cgcnn.fast_cif import read_p1_cif

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, help="first n rows (default: all)")
    args = parser.parse_args(argv)
    rows = pd.read_csv(args.data, usecols=["material_id", "cif"])
    if args.n:
        rows = rows.head(args.n)
    cifs = list(rows.cif)
    fast_s, fast = timed(lambda: [read_p1_cif(cif) for cif in cifs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow_s, reference = timed(lambda: [Structure.from_str(cif, fmt="cif") for cif in cifs])
    declined, differ = 0, []
    for material_id, ours, theirs in zip(rows.material_id, fast, reference):
        if ours is None:
            declined += 1
            continue
        structure = ours[0]
        same = (
            [s.specie for s in structure] == [s.specie for s in theirs]
            and np.array_equal(structure.lattice.matrix, theirs.lattice.matrix)
            and np.array_equal(structure.frac_coords, theirs.frac_coords)
        )
        if not same:
            differ.append(material_id)
    n = len(cifs)
    print(environment_line() + "\n")
    print(
        markdown_table(
            ["reader", "CIFs", "s", "CIFs/s"],
            [
                ["pymatgen `Structure.from_str`", n, f"{slow_s:.1f}", f"{n / slow_s:,.0f}"],
                ["`fast_cif.read_p1_cif` (gemmi)", n, f"{fast_s:.1f}", f"{n / fast_s:,.0f}"],
            ],
        )
    )
    print(
        f"\nfast / pymatgen: **{slow_s / fast_s:.1f}×**; declined (left to pymatgen): {declined}; "
        f"identical (species order, lattice matrix, fractional coordinates, exact): "
        f"{n - declined - len(differ)} of {n - declined}; differ: {differ[:20]}"
    )


if __name__ == "__main__":
    main()
