"""Training and prediction throughput: the resident path against DeepChem's collating loop.

Both are ``CGCNNModel.fit`` / ``predict`` on the same featurized crystals, with the same
initial weights, batch size, random permutation and optimizer: ``resident=False`` collates
every batch on the host with NumPy and copies it to the device (DeepChem's loop as it is);
``resident=True`` holds the dataset on the device and gathers each batch there. Epochs are
interleaved, the first of each pair alternating, so load on a shared machine hits both alike.
``--variants`` adds ``resident-fused`` (the resident path with Adam's one fused kernel per
step on CUDA, as ``deepchem-cgcnn train`` trains; the same as ``resident`` on a CPU), the
static-shape paths (``static_shapes=True``: batches padded to a few
sizes, batch norms masked), eager, with the whole model ``torch.compile``'d, and compiled
with ``mode='reduce-overhead'`` (CUDA graphs on a GPU), and ``graph-step`` /
``graph-step-compiled`` (``graph_step=True``: the whole step replayed from CUDA graphs on a
GPU, the model eager or compiled; eager on a CPU), with a check that ``graph-step`` trains
as the first path does (one epoch's per-batch losses from the same weights).

Usage: ``.venv/bin/python benchmarks/bench_resident.py --n 2000 [--device cuda] [--batch-size 256]
[--predict-batch-size 4096] [--variants resident-fused graph-step graph-step-compiled]``
"""

import argparse
import functools
from pathlib import Path

import numpy as np
import torch
from _common import (
    DEFAULT_DATA,
    environment_line,
    load_mp_structures,
    markdown_table,
    median,
    timed,
)


def main(argv=None) -> list[dict]:
    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.model import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument(
        "--batch-size", type=int, nargs="+", default=[128], help="one table per batch size"
    )
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per path")
    parser.add_argument("--num-conv", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", action="store_true", help="compile_convolutions=True")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["collated", "resident"],
        choices=list(VARIANTS),
        help="paths to compare; the first is the reference of the ratios",
    )
    parser.add_argument(
        "--predict-batch-size",
        type=int,
        default=0,
        help="also time the fastest-predicting path in batches of this many crystals",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dc = import_deepchem()
    graphs, y = _featurized(str(args.data), args.n)
    dataset = dc.data.NumpyDataset(graphs, y[:, None])
    n_atoms = sum(g.num_nodes for g in graphs)

    results = []
    for batch_size in args.batch_size:  # featurized once for all
        results.append(_measure(args, batch_size, dataset, n_atoms, device))
    return results


@functools.lru_cache(maxsize=2)
def _featurized(data: str, n: int) -> tuple[list, np.ndarray]:
    """The crystal graphs and labels of ``n`` MP crystals, made once per process (the GPU
    run calls :func:`main` twice on the same crystals)."""
    from deepchem_cgcnn import CGCNNFeaturizer

    _, structures, y = load_mp_structures(Path(data), n)
    return CGCNNFeaturizer().featurize(structures), y


VARIANTS = {
    "collated": "`fit` (resident=False: DeepChem loop)",
    "resident": "`fit` (resident=True)",
    "resident-fused": "`fit` (resident, Adam fused on CUDA: `recipes.Adam`)",
    "compiled-convolutions": "`fit` (resident, compile_convolutions=True)",
    "static": "`fit` (resident, static_shapes=True)",
    "static-compiled": "`fit` (resident, static shapes, model torch.compile'd)",
    "static-cudagraphs": "`fit` (resident, static shapes, torch.compile mode='reduce-overhead')",
    "graph-step": "`fit` (resident, graph_step=True: the whole step as CUDA graphs, fused Adam)",
    "graph-step-compiled": "`fit` (resident, graph_step=True, model torch.compile'd, fused Adam)",
}
"""The paths one run can compare (``--variants``); the first is the reference of the ratios."""


def _model(args, batch_size: int, variant: str, device):
    from deepchem_cgcnn import CGCNNModel

    compile_mode = {
        "static-compiled": "default",
        "static-cudagraphs": "reduce-overhead",
        "graph-step-compiled": "default",
    }.get(variant)
    graph_step = variant.startswith("graph-step")
    from deepchem_cgcnn.recipes import Adam

    torch.manual_seed(0)
    model = CGCNNModel(
        num_conv=args.num_conv,
        batch_size=batch_size,
        learning_rate=1e-3,
        # DeepChem's default optimizer (Adam, lr 1e-3), or the same fused on CUDA
        **(
            {"optimizer": Adam(learning_rate=1e-3)}
            if variant == "resident-fused" or graph_step
            else {}
        ),
        resident=variant != "collated",
        static_shapes=variant.startswith("static") or graph_step,
        graph_step=graph_step,
        # --compile: the convolutions of every path the whole model of which is not compiled
        compile_convolutions=compile_mode is None
        and (args.compile or variant == "compiled-convolutions"),
        compile_mode=compile_mode,
        device=device,
    )
    return model


def _measure(args, batch_size: int, dataset, n_atoms: int, device) -> dict:
    """Print the tables of one batch size; return its medians (seconds per epoch and per
    prediction pass, first epoch) by path."""
    graphs = dataset.X

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def epoch(m) -> float:
        def run():
            m.fit(dataset, nb_epoch=1, checkpoint_interval=0)
            sync()

        return timed(run)[0]

    def predict(m) -> float:
        def run():
            m.predict(dataset, warn_domain=False)
            sync()

        return timed(run)[0]

    models = {name: _model(args, batch_size, name, device) for name in args.variants}
    warm = {name: epoch(m) for name, m in models.items()}  # first epoch: residency, compilation
    for m in models.values():
        predict(m)  # the first prediction compiles the evaluation graph
    times: dict[str, list[float]] = {name: [] for name in models}
    predict_times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.epochs):  # alternate which path goes first
        for name, m in sorted(models.items(), reverse=bool(round_ % 2)):
            np.random.seed(1)
            times[name].append(epoch(m))
            predict_times[name].append(predict(m))
    large = args.predict_batch_size
    fastest = min(models, key=lambda name: median(predict_times[name]))
    if large:
        chosen = models[fastest]
        chosen.predict_batch_size = large
        predict(chosen)  # warm-up: a new batch shape
        large_times = [predict(chosen) for _ in range(max(args.epochs, 3))]
        chosen.predict_batch_size = None

    print(environment_line())
    print(
        f"\n{len(graphs)} MP crystals ({n_atoms:,} atoms), batch {batch_size}, "
        f"{args.num_conv} convolutions, device {device}"
        f"{', convolutions compiled' if args.compile else ''}; medians of {args.epochs} "
        f"interleaved epochs after one warm-up epoch each (warm-up: residency, compilation).\n"
    )
    rows = []
    for name in models:
        train_s, predict_s = median(times[name]), median(predict_times[name])
        rows.append(
            [
                VARIANTS[name],
                f"{train_s:.3f} (warm-up {warm[name]:.3f})",
                f"{len(graphs) / train_s:,.0f}",
                f"{predict_s:.3f}",
                f"{len(graphs) / predict_s:,.0f}",
            ]
        )
    if large:
        large_s = median(large_times)
        rows.append(
            [
                f"`predict` ({fastest}, predict_batch_size={large})",
                "",
                "",
                f"{large_s:.3f}",
                f"{len(graphs) / large_s:,.0f}",
            ]
        )
    print(
        markdown_table(
            ["path", "s/epoch", "train crystals/s", "s/predict pass", "predict crystals/s"], rows
        )
    )
    reference = args.variants[0]
    ratios = [
        [
            f"{what}, {name} / {reference}",
            f"**{median(measured[reference]) / median(measured[name]):.2f}×**",
        ]
        for name in args.variants[1:]
        for what, measured in (("training", times), ("prediction", predict_times))
    ]
    if large:
        ratios.append(
            [
                f"prediction, {fastest} in batches of {large} / of {batch_size}",
                f"**{median(predict_times[fastest]) / median(large_times):.2f}×**",
            ]
        )
    print("\n" + markdown_table(["ratio", "value"], ratios))
    losses_differ = {}
    if "graph-step" in models:
        losses_differ["graph-step"] = _largest_loss_difference(
            args, batch_size, dataset, device, "graph-step"
        )
        print(
            "\none epoch from the same weights on the same batches, `fit`'s per-batch losses "
            f"with graph_step=True against {args.variants[0]}: max |difference| "
            f"{losses_differ['graph-step']:.2e}"
        )
    if "static-cudagraphs" in models:
        from torch._dynamo.utils import counters

        skips = counters["inductor"]["cudagraph_skips"]
        print(f"\nCUDA graphs skipped (torch's count, e.g. a CPU tensor in the graph): {skips}")
    return {
        "batch_size": batch_size,
        "epoch_s": {name: median(times[name]) for name in models},
        "first_epoch_s": warm,
        "predict_s": {name: median(predict_times[name]) for name in models},
        "loss_difference": losses_differ,
    }


def _largest_loss_difference(args, batch_size: int, dataset, device, variant: str) -> float:
    """The largest difference of one epoch's per-batch losses, ``variant`` against the first
    variant, from the same initial weights on the same batches: a replayed step that does not
    train as the eager one shows here."""
    losses = []
    for name in (args.variants[0], variant):
        model = _model(args, batch_size, name, device)
        model.log_frequency = 1
        np.random.seed(2)
        logged: list[float] = []
        model.fit(dataset, nb_epoch=1, checkpoint_interval=0, all_losses=logged)
        losses.append(np.array(logged))
    return float(np.abs(losses[0] - losses[1]).max())


if __name__ == "__main__":
    main()
