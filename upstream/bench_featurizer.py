"""The PR's ``dc.feat.CGCNNFeaturizer`` against the one it replaces, inside the patched DeepChem.

Run by ``bash upstream/check.sh --bench`` (which installs the patched tree into a throwaway
virtualenv first): both featurizers get the same pre-parsed MP structures (parsing not timed);
the replaced one is DeepChem's own module at fbe3b911, loaded from the unpacked snapshot and
given the CGCNN atom table it would download (offline it cannot). Prints a markdown table and
the ratio, and checks that the two give the same edges for every atom with 12 neighbours
inside 8 Å (the PR adds the original code's padding for the others).

Usage: ``python upstream/bench_featurizer.py <unpacked snapshot> <MP CSV> [n]``
"""

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import deepchem as dc
import numpy as np
import pandas as pd
from pymatgen.core import Structure


def replaced_featurizer(snapshot: Path):
    """DeepChem fbe3b911's ``CGCNNFeaturizer``, with the atom table it would download."""
    path = snapshot / "deepchem" / "feat" / "material_featurizers" / "cgcnn_featurizer.py"
    spec = importlib.util.spec_from_file_location("replaced_cgcnn_featurizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    featurizer = module.CGCNNFeaturizer.__new__(module.CGCNNFeaturizer)
    featurizer.radius, featurizer.max_neighbors, featurizer.step = 8.0, 12, 0.2
    from deepchem.feat.material_featurizers.cgcnn_atom_init import element_embedding_table

    table = element_embedding_table()
    featurizer.atom_features = {
        z: table[z].astype(np.float32) for z in range(1, len(table)) if not np.isnan(table[z, 0])
    }
    featurizer.valid_atom_number = set(featurizer.atom_features)
    return featurizer


def main(snapshot: Path, table: Path, n: int) -> None:
    rows = pd.read_csv(table, usecols=["cif"]).sample(n=n, random_state=0)
    structures = [Structure.from_str(cif, fmt="cif") for cif in rows.cif]
    n_atoms = sum(len(s) for s in structures)
    contenders = {
        "PR `dc.feat.CGCNNFeaturizer()`": dc.feat.CGCNNFeaturizer(),
        "replaced (DeepChem fbe3b911)": replaced_featurizer(snapshot),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    graphs = {}
    for round_ in range(3):
        for name in sorted(contenders, reverse=bool(round_ % 2)):
            start = time.perf_counter()
            graphs[name] = contenders[name].featurize(structures)
            times[name].append(time.perf_counter() - start)
    new, old = (graphs[name] for name in contenders)
    same = 0
    for g_new, g_old, structure in zip(new, old, structures):
        full = np.bincount(g_old.edge_index[0], minlength=len(structure)) == 12
        keep_new = full[g_new.edge_index[0]]
        keep_old = full[g_old.edge_index[0]]
        same += int(
            np.array_equal(g_new.edge_index[:, keep_new], g_old.edge_index[:, keep_old])
            and np.allclose(g_new.edge_features[keep_new], g_old.edge_features[keep_old], atol=1e-5)
        )
    print(
        f"{n} MP crystals ({n_atoms:,} atoms), parsed once (not timed); medians of 3 alternated rounds\n"
    )
    print("| featurizer | median s | crystals/s |\n| --- | --- | --- |")
    rates = {}
    for name, values in times.items():
        seconds = statistics.median(values)
        rates[name] = n / seconds
        print(f"| {name} | {seconds:.2f} | {rates[name]:,.0f} |")
    first, second = rates.values()
    print(f"| ratio, PR / replaced | | **{first / second:.1f}×** |\n")
    print(
        f"Same edges and edge features for every atom with 12 neighbours within 8 Å: "
        f"{same} of {n} crystals."
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 500)
