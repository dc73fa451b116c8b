"""Featurization throughput and storage of ``CGCNNFeaturizer`` against its peers.

Draws ``--n`` Materials Project crystals (seeded) from the MP CSV, parses
them ONCE into pymatgen ``Structure`` objects (not timed), then times, in the
same run and interleaved round by round so that all methods share the
machine's noise:

* ours: ``deepchem_cgcnn.CGCNNFeaturizer()`` (``selection='cgcnn'``) and
  ``CGCNNFeaturizer(selection='complete')`` on all ``--n`` structures, single
  process, and ``selection='cgcnn'`` with ``n_jobs=2``;
* DeepChem 2.8's ``dc.feat.CGCNNFeaturizer``, given the CGCNN atom table from
  matminer because its constructor tries to download ``atom_init.json`` and,
  offline, leaves none;
* the original CGCNN code's algorithm, written out below
  (``Structure.get_all_neighbors``, sort by distance, keep 12, pad with index 0
  at ``radius + 1``, Gaussian expansion, float32 arrays as the original keeps
  them) -- "get_all_neighbors algorithm".

The two peers are slow, so they run on the first ``--peer-n`` of the drawn
structures; ours is timed on that same subset too, and the speed-up ratios are
taken on identical structures. Each timing is the median of ``--repeats``
rounds after one warm-up call per method.

It also reports stored bytes per atom: the sum of ``CrystalGraph.nbytes`` over
total atoms for ours, the original code's expanded in-memory arrays (92
float32 atom features, 12 x 41 float32 edge features and 12 int64 indices per
atom) and DeepChem's ``GraphData`` (``node_features`` float64, ``edge_index``
int64, ``edge_features`` float64).

Usage
-----
``nice -n 5 .venv/bin/python benchmarks/bench_featurizer.py --n 2000``

Prints markdown tables on stdout.
"""

import argparse
import importlib.resources
import json
import logging
import sys
from pathlib import Path

import numpy as np
from _common import (
    DEFAULT_DATA,
    environment_line,
    load_mp_structures,
    markdown_table,
    median,
    timed,
)


def matminer_atom_table() -> dict:
    """The CGCNN 92-dim atom features from matminer's copy of ``atom_init.json``, keyed by Z."""
    path = importlib.resources.files("matminer.utils") / "data_files" / "cgcnn_atom_feature.json"
    with path.open() as handle:
        raw = json.load(handle)
    return {int(key): np.array(value, dtype=np.float32) for key, value in raw.items()}


def deepchem_featurizer(atom_table: dict):
    """DeepChem 2.8's ``CGCNNFeaturizer`` with the atom table its offline ``__init__`` could not fetch."""
    from deepchem_cgcnn._quiet import import_deepchem

    dc = import_deepchem()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its "Skipping ... due to network error"
    try:
        featurizer = dc.feat.CGCNNFeaturizer()
    finally:
        logging.disable(previous)
    featurizer.atom_features = dict(atom_table)
    featurizer.valid_atom_number = set(featurizer.atom_features)
    return featurizer


def get_all_neighbors_graph(
    structure, atom_table: dict, radius: float = 8.0, max_num_nbr: int = 12, step: float = 0.2
):
    """The original CGCNN ``CIFData.__getitem__`` graph construction, minus the CIF parsing.

    Returns ``(atom_fea (n, 92) float32, nbr_fea (n, 12, 41) float32,
    nbr_fea_idx (n, 12) int64, nbr_dist (n, 12) float64)``; the first three are
    what the original keeps in memory per crystal.
    """
    atom_fea = np.vstack([atom_table[site.specie.number] for site in structure])
    all_nbrs = structure.get_all_neighbors(radius, include_index=True)
    all_nbrs = [sorted(nbrs, key=lambda x: x[1]) for nbrs in all_nbrs]
    nbr_fea_idx, nbr_dist = [], []
    for nbr in all_nbrs:
        if len(nbr) < max_num_nbr:
            missing = max_num_nbr - len(nbr)
            nbr_fea_idx.append([x[2] for x in nbr] + [0] * missing)
            nbr_dist.append([x[1] for x in nbr] + [radius + 1.0] * missing)
        else:
            nbr_fea_idx.append([x[2] for x in nbr[:max_num_nbr]])
            nbr_dist.append([x[1] for x in nbr[:max_num_nbr]])
    nbr_fea_idx = np.array(nbr_fea_idx, dtype=np.int64)
    nbr_dist = np.array(nbr_dist, dtype=np.float64)
    gaussian_filter = np.arange(0.0, radius + step, step)
    nbr_fea = np.exp(-((nbr_dist[..., np.newaxis] - gaussian_filter) ** 2) / step**2)
    return atom_fea.astype(np.float32), nbr_fea.astype(np.float32), nbr_fea_idx, nbr_dist


def featurize_get_all_neighbors(structures, atom_table: dict) -> list:
    """The algorithm above over a list; ``None`` for a structure it cannot handle."""
    out = []
    for structure in structures:
        try:
            out.append(get_all_neighbors_graph(structure, atom_table))
        except Exception:
            out.append(None)
    return out


def fmt_rate(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=2000, help="MP structures drawn (ours runs on all)"
    )
    parser.add_argument(
        "--peer-n",
        type=int,
        default=300,
        help="first this many of them for the slow peers (and ours, for the ratios)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw from the CSV")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the MP CSV (read only)")
    args = parser.parse_args(argv)

    # Failed structures are counted below; per-structure warnings would flood stdout.
    logging.basicConfig(level=logging.ERROR)
    from deepchem_cgcnn import CGCNNFeaturizer
    from deepchem_cgcnn.graph import CrystalGraph

    _, structures, _ = load_mp_structures(args.data, args.n, args.seed)
    n = len(structures)
    peer_n = min(args.peer_n, n)
    subset = structures[:peer_n]
    n_atoms_all = sum(len(s) for s in structures)
    n_atoms_subset = sum(len(s) for s in subset)
    atom_table = matminer_atom_table()

    ours = CGCNNFeaturizer()
    ours_complete = CGCNNFeaturizer(selection="complete")
    deepchem = deepchem_featurizer(atom_table)

    methods = {
        # name: (callable, structures timed)
        "ours cgcnn": (lambda s: ours.featurize(s, n_jobs=1), structures),
        "ours complete": (lambda s: ours_complete.featurize(s, n_jobs=1), structures),
        "ours cgcnn n_jobs=2": (lambda s: ours.featurize(s, n_jobs=2), structures),
        "ours cgcnn subset": (lambda s: ours.featurize(s, n_jobs=1), subset),
        "DeepChem subset": (lambda s: deepchem.featurize(s), subset),
        "get_all_neighbors subset": (lambda s: featurize_get_all_neighbors(s, atom_table), subset),
    }
    for fn, _ in methods.values():  # warm-up: imports, caches, joblib workers
        fn(structures[:32])

    times = {name: [] for name in methods}
    results = {}
    for _ in range(args.repeats):
        for name, (fn, items) in methods.items():
            seconds, results[name] = timed(lambda fn=fn, items=items: fn(items))
            times[name].append(seconds)
    rate = {name: len(methods[name][1]) / median(times[name]) for name in methods}

    # ------------------------------------------------------------ checks
    def ok(graph) -> bool:
        return isinstance(graph, CrystalGraph)

    failed = {
        "ours cgcnn": sum(not ok(g) for g in results["ours cgcnn"]),
        "ours complete": sum(not ok(g) for g in results["ours complete"]),
        "DeepChem subset": sum(not hasattr(g, "node_features") for g in results["DeepChem subset"]),
        "get_all_neighbors subset": sum(g is None for g in results["get_all_neighbors subset"]),
    }
    # Our 'cgcnn' selection against the written-out original on the subset.
    max_dist_diff, same_index = 0.0, 0
    compared = 0
    for graph, peer in zip(results["ours cgcnn subset"], results["get_all_neighbors subset"]):
        if not ok(graph) or peer is None:
            continue
        compared += 1
        max_dist_diff = max(max_dist_diff, float(np.abs(graph.neighbor_distance - peer[3]).max()))
        same_index += bool(np.array_equal(graph.neighbor_index.astype(np.int64), peer[2]))

    # ------------------------------------------------------------ storage
    graphs = [g for g in results["ours cgcnn"] if ok(g)]
    ours_bpa = sum(g.nbytes for g in graphs) / sum(g.num_nodes for g in graphs)
    graphs_c = [g for g in results["ours complete"] if ok(g)]
    complete_bpa = sum(g.nbytes for g in graphs_c) / sum(g.num_nodes for g in graphs_c)
    peers = [p for p in results["get_all_neighbors subset"] if p is not None]
    expanded_bpa = sum(p[0].nbytes + p[1].nbytes + p[2].nbytes for p in peers) / sum(
        len(p[0]) for p in peers
    )
    dc_graphs = [g for g in results["DeepChem subset"] if hasattr(g, "node_features")]
    dc_bpa = sum(
        g.node_features.nbytes + g.edge_index.nbytes + g.edge_features.nbytes for g in dc_graphs
    ) / sum(g.num_nodes for g in dc_graphs)

    # ------------------------------------------------------------ report
    print("## Featurizer benchmark\n")
    print(environment_line() + "\n")
    print(
        f"{n} MP structures (seed {args.seed}, {n_atoms_all:,} atoms, "
        f"{n_atoms_all / n:.1f} atoms/structure); slow peers on the first {peer_n} "
        f"({n_atoms_subset:,} atoms). Median of {args.repeats} interleaved rounds, "
        f"wall clock, parsing not timed.\n"
    )
    labels = {
        "ours cgcnn": "ours `CGCNNFeaturizer()` ('cgcnn')",
        "ours complete": "ours `CGCNNFeaturizer(selection='complete')`",
        "ours cgcnn n_jobs=2": "ours `CGCNNFeaturizer()`, `n_jobs=2`",
        "ours cgcnn subset": "ours `CGCNNFeaturizer()` ('cgcnn')",
        "DeepChem subset": "DeepChem 2.8 `dc.feat.CGCNNFeaturizer`",
        "get_all_neighbors subset": "original CGCNN algorithm (`get_all_neighbors`)",
    }
    rows = []
    for name in methods:
        items = len(methods[name][1])
        base = (
            rate["ours cgcnn subset"]
            if items == peer_n and "subset" in name
            else rate["ours cgcnn"]
        )
        rows.append(
            [
                labels[name],
                items,
                f"{median(times[name]):.2f}",
                fmt_rate(rate[name]),
                f"{rate[name] / base:.3g}×",
            ]
        )
    print(
        markdown_table(
            [
                "featurizer (single process unless noted)",
                "structures timed",
                "median s",
                "structures/s",
                "vs ours 'cgcnn' on the same structures",
            ],
            rows,
        )
    )
    print()
    print(
        markdown_table(
            ["ratio", "value"],
            [
                [
                    f"ours / DeepChem (same {peer_n} structures)",
                    f"**{rate['ours cgcnn subset'] / rate['DeepChem subset']:.1f}×**",
                ],
                [
                    f"ours / get_all_neighbors algorithm (same {peer_n} structures)",
                    f"**{rate['ours cgcnn subset'] / rate['get_all_neighbors subset']:.1f}×**",
                ],
                [
                    f"ours on all {n} / DeepChem on {peer_n}",
                    f"{rate['ours cgcnn'] / rate['DeepChem subset']:.1f}×",
                ],
                [
                    f"ours 'complete' / ours 'cgcnn' ({n})",
                    f"{rate['ours complete'] / rate['ours cgcnn']:.2f}×",
                ],
                [
                    f"ours n_jobs=2 / n_jobs=1 ({n})",
                    f"{rate['ours cgcnn n_jobs=2'] / rate['ours cgcnn']:.2f}×",
                ],
            ],
        )
    )
    print()
    print(
        markdown_table(
            ["stored form", "bytes/atom", "vs ours 'cgcnn'"],
            [
                [
                    f"ours `CrystalGraph.nbytes`, 'cgcnn' ({n} structures)",
                    f"**{ours_bpa:.1f}**",
                    "1×",
                ],
                [
                    f"ours `CrystalGraph.nbytes`, 'complete' ({n})",
                    f"{complete_bpa:.1f}",
                    f"{complete_bpa / ours_bpa:.2f}×",
                ],
                [
                    f"expanded, as the original keeps it: 92 + 12×41 float32, 12 int64 ({peer_n})",
                    f"{expanded_bpa:.0f}",
                    f"{expanded_bpa / ours_bpa:.1f}×",
                ],
                [
                    f"DeepChem `GraphData`: float64 nodes + int64 edge_index + float64 edges ({peer_n})",
                    f"{dc_bpa:.0f}",
                    f"{dc_bpa / ours_bpa:.1f}×",
                ],
            ],
        )
    )
    print()
    print("Failed structures: " + ", ".join(f"{k} {v}" for k, v in failed.items()) + ".\n")
    print(
        f"Check, ours 'cgcnn' vs get_all_neighbors algorithm on {compared} structures: "
        f"max |distance difference| {max_dist_diff:.2e} Å; neighbour indices identical "
        f"(order included) in {same_index}/{compared}."
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
