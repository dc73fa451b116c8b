"""SHA-256 of every MP crystal's graph, per neighbour selection: run in two checkouts and
compare the CSVs to show that a featurizer change leaves every graph byte-identical.

Usage
-----
``OMP_NUM_THREADS=1 .venv/bin/python dev/graph_digests.py work/digests-new.csv``
``git worktree add /tmp/old <rev> && OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old .venv/bin/python
dev/graph_digests.py work/digests-old.csv``, then
``.venv/bin/python dev/graph_digests.py --compare work/digests-old.csv work/digests-new.csv``
"""

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

MP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mp_cgcnn.csv.gz"


def digest(graph) -> str:
    if not hasattr(graph, "neighbor_index"):
        return "failed"
    sha = hashlib.sha256()
    for array in (graph.atomic_numbers, graph.neighbor_index, graph.neighbor_distance):
        sha.update(np.ascontiguousarray(array).tobytes())
    sha.update(repr(sorted(graph.geometry.items())).encode())
    return sha.hexdigest()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--data", type=Path, default=MP)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (pd.read_csv(path, index_col=0) for path in args.compare)
        for selection in a.columns:
            same = int((a[selection] == b[selection]).sum())
            print(f"{selection}: {same} of {len(a)} graphs identical")
        sys.exit(0 if (a == b).all().all() else 1)
    import torch

    from deepchem_cgcnn import CGCNNFeaturizer

    torch.set_num_threads(1)
    rows = pd.read_csv(args.data, usecols=["material_id", "cif"])
    digests = {}
    for selection in ("cgcnn", "complete"):
        graphs = CGCNNFeaturizer(selection=selection).featurize(list(rows.cif))
        digests[selection] = [digest(graph) for graph in graphs]
    pd.DataFrame(digests, index=rows.material_id).to_csv(args.out)


if __name__ == "__main__":
    main()
