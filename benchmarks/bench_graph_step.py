"""Training throughput with the whole step (forward, loss, backward, optimizer) as one CUDA graph.

The GPU run of 2026-11-27 found a resident training step at a near-constant ~7 ms on an H100
whatever the batch (128: 7.1, 256: 7.5, 512: 6.6 ms), i.e. bound by the host launching a few
hundred small kernels one by one, and ``torch.compile(mode='reduce-overhead')`` of the model
alone gained only 1.08×: the optimizer and DeepChem's loop stay outside its graphs. Here the
whole step is captured: the resident batch is padded to :func:`~deepchem_cgcnn.resident.padded_size`
(a few shapes per dataset), copied into that shape's static input tensors and the shape's
graph is replayed; Adam runs inside it (``capturable=True``). A batch of a shape not yet seen
is captured once (two warm-up steps on a side stream, then the capture); the last, partial
batch of an epoch runs eagerly.

Paths, timed on the same crystals, batches and initial weights, epochs interleaved:

* ``fit``: ``CGCNNModel(static_shapes=False).fit`` on the resident path (DeepChem's loop);
* ``step``: the same step as the graph's, run eagerly (the reference of the graph's losses);
* ``graph``: the step as CUDA graphs (``--device cuda`` only);
* with ``--compile``, ``step-compiled`` and ``graph-compiled``: the same two with the model
  ``torch.compile``'d with dynamic shapes (one compilation serves every padded shape; each
  shape still gets its own CUDA graph). The eager graph replays the padded step's few hundred
  kernels, whose own GPU work (5.4 ms at batch 256 on an H200, mostly the masked batch norm's
  and the gate's element-wise passes) is twice the 2.6 ms a step may take for 100,000
  crystals/s; compiled, those passes are fused.

One epoch of each step from the same weights and optimizer state, on the same batches, gives
per-batch losses that must agree with the eager step's (reported as the largest difference),
or that step is wrong.

Usage: ``.venv/bin/python benchmarks/bench_graph_step.py --n 8000 --batch-size 256 --device cuda
--compile`` (on the CPU only ``fit``, ``step`` and ``step-compiled`` run: a rehearsal).
"""

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import DEFAULT_DATA, environment_line, markdown_table, median


def whole_step(model: Any, optimizer: torch.optim.Optimizer, graphs: bool, compiled: bool) -> Any:
    """A :class:`~deepchem_cgcnn.graph_step.GraphStep` of ``model`` (a
    :class:`~deepchem_cgcnn.CGCNNModel`'s module and loss) with ``optimizer``, replayed from
    CUDA graphs or eager, the module ``torch.compile``'d with dynamic shapes or not."""
    from deepchem_cgcnn.graph_step import GraphStep

    module = torch.compile(model.model, dynamic=True) if compiled else model.model
    return GraphStep(module, model._loss_fn, optimizer, graphs=graphs)


def epoch_of_steps(
    step: Any, resident: Any, order: np.ndarray, batch_size: int, eager: Any = None
) -> list[torch.Tensor]:
    """One epoch of ``step`` over the batches of ``order``; the last, partial batch runs on
    ``eager`` (the same module and optimizer, no graphs) when given. Returns the losses."""
    on_device = torch.as_tensor(order, device=resident.device)
    losses = []
    for start in range(0, len(order), batch_size):
        end = min(len(order), start + batch_size)
        idx = on_device[start:end]
        inputs = resident.batch(order[start:end], idx, pad=True)
        run = step if (end - start == batch_size or eager is None) else eager
        losses.append(run(inputs, [resident.y[idx]], [resident.w[idx]]).clone())
    return losses


def main(argv=None) -> list[dict]:
    from bench_resident import _featurized

    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.model import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per path")
    parser.add_argument("--num-conv", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the step with the model torch.compile'd (dynamic shapes), eager and "
        "as CUDA graphs",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the timings, one epoch of each eager step (what its graph replays) under "
        "torch.profiler: time by kernel, and the device's work per step",
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    dc = import_deepchem()
    graphs, y = _featurized(str(args.data), args.n)
    dataset = dc.data.NumpyDataset(graphs, y[:, None])
    return [_measure(args, batch_size, dataset, device) for batch_size in args.batch_size]


def _measure(args, batch_size: int, dataset: Any, device: torch.device) -> dict:
    """Print the tables of one batch size; return the medians."""
    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.graph_step import copy_in_place, trained_tensors
    from deepchem_cgcnn.resident import ResidentGraphs

    graphs, y = dataset.X, dataset.y[:, 0]
    lr = 1e-3

    def model(static: bool) -> Any:
        torch.manual_seed(0)
        return CGCNNModel(
            num_conv=args.num_conv,
            batch_size=batch_size,
            learning_rate=lr,
            static_shapes=static,
            device=device,
            normalize_targets=False,
        )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fit_model = model(False)
    step_model = model(True)
    resident = ResidentGraphs(graphs, y[:, None], np.ones((len(graphs), 1)), device)
    # one model and one optimizer state: the paths take turns
    optimizer = torch.optim.Adam(step_model.model.parameters(), lr=lr, foreach=True)
    variants = {"step": (False, False)}
    if args.compile:
        variants["step-compiled"] = (False, True)
    if device.type == "cuda":
        variants["graph"] = (True, False)
        if args.compile:
            variants["graph-compiled"] = (True, True)
    steps = {name: whole_step(step_model, optimizer, *how) for name, how in variants.items()}
    eager_of = {"graph": steps["step"], "graph-compiled": steps.get("step-compiled")}
    paths: dict[str, Callable[[np.ndarray], object]] = {
        "fit": lambda order: fit_model.fit(dataset, nb_epoch=1, checkpoint_interval=0),
        **{
            name: functools.partial(
                epoch_of_steps,
                step,
                resident,
                batch_size=batch_size,
                eager=eager_of.get(name),
            )
            for name, step in steps.items()
        },
    }

    rng = np.random.default_rng(0)
    # warm-up epoch of each (residency, Adam's state, the graphs' capture), then the loss check
    first: dict[str, float] = {}
    for name, run in paths.items():
        start = time.perf_counter()
        run(rng.permutation(len(graphs)))
        sync()
        first[name] = time.perf_counter() - start
    # each step's per-batch losses over one epoch, from the same state, against the eager step's
    loss_difference: dict[str, float] = {}
    if len(steps) > 1:
        order = rng.permutation(len(graphs))
        trained = trained_tensors(step_model.model, optimizer)
        saved = [t.detach().clone() for t in trained]
        eager_losses = torch.stack(paths["step"](order))  # type: ignore[arg-type]
        for name in steps:
            if name != "step":
                copy_in_place(saved, trained)
                losses = torch.stack(paths[name](order))  # type: ignore[arg-type]
                loss_difference[name] = float((eager_losses - losses).abs().max())
        copy_in_place(saved, trained)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(args.epochs):
        order = rng.permutation(len(graphs))
        for name in sorted(paths, reverse=bool(round_ % 2)):
            np.random.seed(round_)
            start = time.perf_counter()
            paths[name](order)
            sync()
            times[name].append(time.perf_counter() - start)

    print(environment_line())
    n_atoms = sum(g.num_nodes for g in graphs)
    print(
        f"\n{len(graphs)} MP crystals ({n_atoms:,} atoms), batch {batch_size}, "
        f"{args.num_conv} convolutions, device {device}; medians of {args.epochs} interleaved "
        f"epochs after a warm-up epoch each.\n"
    )
    labels = {
        "fit": "`fit` (resident, DeepChem's loop)",
        "step": "whole step, eager (padded batches, Adam)",
        "graph": "whole step as CUDA graphs",
        "step-compiled": "whole step, model compiled (dynamic shapes)",
        "graph-compiled": "whole step, model compiled, as CUDA graphs",
    }
    rows = [
        [
            labels[name],
            f"{median(times[name]):.3f} (warm-up {first[name]:.3f})",
            f"{len(graphs) / median(times[name]):,.0f}",
            f"{1000 * median(times[name]) / -(-len(graphs) // batch_size):.2f}",
        ]
        for name in paths
    ]
    print(markdown_table(["path", "s/epoch", "train crystals/s", "ms/step"], rows))
    ratios = [
        [f"{name} / fit", f"**{median(times['fit']) / median(times[name]):.2f}×**"]
        for name in paths
        if name != "fit"
    ]
    print("\n" + markdown_table(["ratio", "value"], ratios))
    work_per_step = {}
    if args.profile:
        for name in ("step", "step-compiled"):
            if name in paths:
                work_per_step[name] = _profile(
                    name, paths[name], rng.permutation(len(graphs)), batch_size, device
                )
    captured = {name: step for name, step in steps.items() if step.use_graphs}
    for name, step in captured.items():
        print(f"\n`{name}`: {step.graphs} batch shapes captured")
    for name, difference in loss_difference.items():
        print(
            f"\nper-batch losses of one epoch, `{name}` against the eager step from the same "
            f"state: max |difference| {difference:.2e}"
        )
    return {
        "batch_size": batch_size,
        "epoch_s": {name: median(t) for name, t in times.items()},
        "first_epoch_s": first,
        "loss_difference": loss_difference,
        "shapes": {name: step.graphs for name, step in captured.items()},
        "device_ms_per_step": work_per_step,
    }


def _profile(name: str, run: Callable, order: np.ndarray, batch_size: int, device) -> float:
    """Print the kernels of one epoch of ``run`` by time on ``device``; return the device's
    work per step in milliseconds (the sum of its kernels' own times)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        run(order)
        if cuda:
            torch.cuda.synchronize(device)
    events = profiler.key_averages()
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    print(f"\n`{name}`, one epoch under torch.profiler, by {sort_by}:\n")
    print(events.table(sort_by=sort_by, row_limit=15, max_name_column_width=60))
    total_us = sum(getattr(event, sort_by, 0.0) for event in events)
    steps = -(-len(order) // batch_size)
    print(f"{'device' if cuda else 'CPU'} work per step: {total_us / 1000 / steps:.2f} ms")
    return total_us / 1000 / steps


if __name__ == "__main__":
    main()
