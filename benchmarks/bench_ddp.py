"""Data-parallel scaling on this machine: 1 process against 2 Lightning DDP processes (gloo).

Each configuration runs ``tests/ddp_job.py`` in a fresh process tree on the same crystals
(``--n`` MP crystals drawn every third row of the shared table), the same model and the same
global batch (``--global-batch`` crystals per optimizer step: one process takes all of
them, two take half each), and reports the median training seconds of an epoch after the
first (the record's per-epoch training time, without validation). Scaling efficiency is
throughput(2 processes) / (2 x throughput(1 process, 1 thread)); the 1-process, all-cores
row is the fair single-machine baseline.

``.venv/bin/python benchmarks/bench_ddp.py --n 2000 --epochs 4``
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import DEFAULT_DATA, PROJECT_ROOT, environment_line, markdown_table

JOB = PROJECT_ROOT / "tests" / "ddp_job.py"


def run(devices: int, batch: int, threads: int | None, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, str(JOB), out, "--devices", str(devices), "--epochs",
            str(args.epochs), "--n", str(args.n), "--batch-size", str(batch),
            "--table", str(args.data),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        result = json.loads((Path(out) / "result.json").read_text())
    seconds = result["seconds"]
    per_epoch = [b - a for a, b in zip([0.0, *seconds], seconds)][1:]
    result["epoch_seconds"] = statistics.median(per_epoch)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="training crystals")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=128)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    one_thread = run(1, args.global_batch, 1, args)
    all_cores = run(1, args.global_batch, cores, args)
    two = run(2, args.global_batch // 2, None, args)  # Lightning: cores // 2 threads each
    rows = []
    for label, result in (
        ("1 process, 1 thread", one_thread),
        (f"1 process, {cores} threads", all_cores),
        ("2 DDP processes (gloo), 1 thread each", two),
    ):
        rate = result["n_train"] / result["epoch_seconds"]
        rows.append([label, f"{result['epoch_seconds']:.2f}", f"{rate:.0f}"])
    efficiency = (two["n_train"] / two["epoch_seconds"]) / (
        2 * one_thread["n_train"] / one_thread["epoch_seconds"]
    )
    speedup = all_cores["epoch_seconds"] / two["epoch_seconds"]
    print(environment_line())
    print(
        f"{args.n} MP crystals, 2 convolutions, global batch {args.global_batch}, "
        f"median of epochs 2-{args.epochs}\n"
    )
    print(markdown_table(["configuration", "s / epoch", "crystals / s"], rows))
    print(
        f"\nscaling efficiency (2 processes vs 2 x one 1-thread process): {efficiency:.2f}; "
        f"2 processes vs 1 process on all {cores} cores: {speedup:.2f}x"
    )


if __name__ == "__main__":
    main()
