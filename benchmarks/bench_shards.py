"""Peak memory of training from on-disk shards stays flat as the dataset grows 1x -> 4x.

The shared MP table (31,297 crystals) and a 4x table made of four copies of it with
renamed ids (``<id>``, ``<id>~1``, ``<id>~2``, ``<id>~3``; the loader would drop repeated
ids, so each copy gets its own) are each featurized with ``featurize_to_shards`` on a Dask
``LocalCluster`` of this machine's cores (timed; finished shards are reused on a rerun).
Then, each in a fresh process: the batches of one epoch are streamed from the shards
(``ShardedDataset.iterbatches``, window 2: the data path alone); one epoch of
``CGCNNModel.fit`` streams them (2 convolutions of 32, batch 256; the highest resident
memory of each quarter of the epoch is sampled every step, so growth within the epoch
shows); and for contrast the same graphs are read into memory (``ShardedDataset.X``, as a
``NumpyDataset`` holds them). The table reports each process's peak resident memory
(``ru_maxrss``), with glibc's mmap threshold fixed at 1 MiB (``MALLOC``).

``.venv/bin/python benchmarks/bench_shards.py`` (about 10 minutes on 2 cores)
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DEFAULT_DATA, PROJECT_ROOT, environment_line, markdown_table

WORK = PROJECT_ROOT / "work" / "bench-shards"
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
"""glibc's default moves its mmap threshold up after large frees, and then keeps the freed
activation memory of large batches: the same 1x epoch peaked anywhere from 0.9 to 2.0 GiB.
A fixed 1 MiB threshold returns it, so the figures show the data path, not the allocator."""


def featurize(copies: int, args: argparse.Namespace) -> tuple[str, float, int, int]:
    """Featurize the table ``copies`` times over into shards; the folder, seconds, crystals
    and how many shards an earlier run had finished (reused, not redone)."""
    import pandas as pd
    from dask.distributed import Client, LocalCluster

    from deepchem_cgcnn.data.shards import featurize_to_shards

    table = pd.read_csv(args.data, usecols=["material_id", "cif", "formation_energy_per_atom"])
    ids = [f"{i}~{k}" if k else str(i) for k in range(copies) for i in table.material_id]
    folder = str(WORK / f"{copies}x")
    done = [p for p in Path(folder).glob("shard-*") if "." not in p.name]
    started = time.perf_counter()
    with (
        LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        shards = featurize_to_shards(
            folder,
            list(table.cif) * copies,
            np.tile(table.formation_energy_per_atom.to_numpy(), copies),
            ids,
            ["formation_energy_per_atom"],
            shard_size=args.shard_size,
            client=client,
            key={"source": Path(args.data).name, "copies": copies},
        )
    return folder, time.perf_counter() - started, len(shards), len(done)


def measure(folder: str, how: str) -> None:
    """In a fresh process: stream the batches only, train one epoch streaming them, or read
    every graph into memory; print JSON with the peak resident memory (and, for training,
    the highest memory seen in each quarter of the epoch)."""
    import psutil

    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.data.shards import ShardedDataset

    dataset = ShardedDataset(folder)
    process = psutil.Process()
    started = time.perf_counter()
    result: dict = {}
    if how == "batches":
        for _ in dataset.iterbatches(batch_size=256):
            pass
    elif how == "fit":
        model = CGCNNModel(num_conv=2, hidden_node_dim=32, batch_size=256, learning_rate=0.01)
        steps = -(-len(dataset) // 256)
        quarters = [0.0] * 4

        def sample(_model, step: int) -> None:
            quarter = min(3, 4 * (step - 1) // steps)
            quarters[quarter] = max(quarters[quarter], process.memory_info().rss / 2**20)

        model.fit(dataset, nb_epoch=1, callbacks=[sample])
        result["quarters_mib"] = quarters
    else:
        graphs = dataset.X
        assert len(graphs) == len(dataset)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))


def in_fresh_process(folder: str, how: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", folder, how],
        capture_output=True,
        text=True,
        env={**MALLOC, **os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--shard-size", type=int, default=2000)
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    rows, featurized = [], []
    for copies in (1, 4):
        folder, seconds, n, reused = featurize(copies, args)
        featurized.append(
            f"{copies}x: {n:,} crystals, {reused} shards reused from an earlier run"
            if reused
            else f"{copies}x: {n:,} crystals featurized in {seconds:.0f} s ({n / seconds:.0f}/s)"
        )
        batches = in_fresh_process(folder, "batches")
        fit = in_fresh_process(folder, "fit")
        memory = in_fresh_process(folder, "memory")
        rows.append([
            f"{copies}x", f"{n:,}", f"{batches['peak_mib']:.0f}", f"{fit['peak_mib']:.0f}",
            " / ".join(f"{q:.0f}" for q in fit["quarters_mib"]), f"{fit['seconds']:.0f}",
            f"{memory['peak_mib']:.0f}",
        ])  # fmt: skip
    print(environment_line())
    print("\n".join(featurized) + "\n")
    print(
        markdown_table(
            [
                "dataset",
                "crystals",
                "peak MiB, batches streamed",
                "peak MiB, one epoch of fit streamed",
                "fit: highest MiB in each quarter of the epoch",
                "epoch s",
                "peak MiB, graphs in memory",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
