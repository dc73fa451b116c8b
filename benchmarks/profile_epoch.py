"""Where one training epoch of CGCNNModel spends its time (cProfile), grouped by kind of work.

Backs the profile figures quoted in ``docs/benchmarks.md`` (forward, backward, collation and
DeepChem's loop; the largest single functions).

Usage: ``.venv/bin/python benchmarks/profile_epoch.py --n 2000 [--compile]``
"""

import argparse
import cProfile
import pstats

import torch
from _common import DEFAULT_DATA, environment_line, load_mp_structures, markdown_table

GROUPS = {
    "backward (autograd)": ("run_backward", "_engine_run_backward"),
    "optimizer step": ("step",),
    "collation (batch_graphs, _prepare_batch)": ("batch_graphs", "_prepare_batch"),
}


def main(argv=None) -> None:
    from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
    from deepchem_cgcnn._quiet import import_deepchem

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dc = import_deepchem()
    _, structures, y = load_mp_structures(args.data, args.n)
    graphs = CGCNNFeaturizer().featurize(structures)
    dataset = dc.data.NumpyDataset(graphs, y[:, None])
    model = CGCNNModel(batch_size=128, compile_convolutions=args.compile)
    model.fit(dataset, nb_epoch=1, checkpoint_interval=0)  # warm-up (and compilation)
    profiler = cProfile.Profile()
    profiler.enable()
    model.fit(dataset, nb_epoch=1, checkpoint_interval=0)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(v[3] for v in stats.stats.values())  # the outermost cumulative time
    rows = []
    for group, names in GROUPS.items():
        seconds = max((v[3] for k, v in stats.stats.items() if k[2] in names), default=0.0)
        rows.append([group, f"{seconds:.2f}", f"{100 * seconds / total:.0f} %"])
    forward = max(
        (v[3] for k, v in stats.stats.items() if k[2] == "forward" and "model.py" in k[0]),
        default=0.0,
    )
    rows.insert(0, ["forward (CGCNN.forward)", f"{forward:.2f}", f"{100 * forward / total:.0f} %"])
    print(environment_line())
    print(
        f"one epoch of {len(dataset):,} crystals, batch 128, {args.threads} thread(s)"
        f"{', compiled convolutions' if args.compile else ''}: {total:.2f} s\n"
    )
    print(markdown_table(["work", "seconds (cumulative)", "share of the epoch"], rows))
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:10]
    print("\nlargest own times:")
    print(
        markdown_table(
            ["function", "own seconds"],
            [[f"{k[2]} ({k[0].split('/')[-1]}:{k[1]})", f"{v[2]:.2f}"] for k, v in top],
        )
    )


if __name__ == "__main__":
    main()
