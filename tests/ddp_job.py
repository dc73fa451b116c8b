"""A small distributed training run for tests/test_distributed.py and benchmarks/bench_ddp.py.

Run as a script: Lightning's ``ddp`` strategy starts the other processes by running this
same command again. Process 0 writes ``<out>/result.json`` (record, world size, seconds).

``python tests/ddp_job.py OUT --devices 2 --epochs 2 --n 48 --batch-size 8``
"""

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MP_FIXTURE = ROOT / "tests" / "data" / "datasets" / "mp_cgcnn_first400.csv.gz"


def make_model(batch_size: int, optimizer: str = "adam", seed: int = 0, **kwargs):
    """The job's model: seeded weights; Adam, or SGD with momentum 0.9 (the paper's), at 0.01."""
    import torch

    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.recipes import SGD

    torch.manual_seed(seed)
    if optimizer == "sgd":
        kwargs["optimizer"] = SGD(learning_rate=0.01, momentum=0.9)
    return CGCNNModel(num_conv=2, batch_size=batch_size, learning_rate=0.01, **kwargs)


def learning_rate_at(fraction: float) -> float:
    """A cosine schedule, so that a wrong epoch on resumption shows in the weights."""
    return 0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction)))


def load_data(n: int, table: str | None = None):
    """``n`` MP crystals (formation energy) as train, and ``n // 4`` more as valid."""
    import deepchem as dc
    import pandas as pd

    from deepchem_cgcnn import CGCNNFeaturizer

    # every third row: the table starts with many elemental crystals (formation energy 0)
    rows = pd.read_csv(table or MP_FIXTURE).iloc[::3].iloc[: n + n // 4]
    graphs = CGCNNFeaturizer().featurize(list(rows.cif))
    y = rows.formation_energy_per_atom.to_numpy(dtype=float)
    ids = rows.material_id.to_numpy()
    train = dc.data.NumpyDataset(graphs[:n], y[:n], ids=ids[:n])
    valid = dc.data.NumpyDataset(graphs[n:], y[n:], ids=ids[n:])
    return train, valid


def to_shards(dataset, folder: str, shard_size: int):
    """The dataset's rows featurized again into shards (a threaded Dask client)."""
    import pandas as pd
    from dask.distributed import Client

    from deepchem_cgcnn.data.shards import featurize_to_shards

    rows = pd.read_csv(MP_FIXTURE).set_index("material_id").loc[list(dataset.ids)]
    with Client(processes=False, dashboard_address=None) as client:
        return featurize_to_shards(
            folder, list(rows.cif), dataset.y, list(dataset.ids), ["formation_energy_per_atom"],
            shard_size=shard_size, client=client,
        )  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--table", default=None)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds slept per batch")
    parser.add_argument("--sharded", type=int, metavar="SIZE", help="stream shards of SIZE rows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from deepchem_cgcnn import distributed

    if args.step_delay:
        collate = distributed.GraphCollator.__call__

        def slow(self, indices):
            time.sleep(args.step_delay)
            return collate(self, indices)

        distributed.GraphCollator.__call__ = slow  # type: ignore[method-assign]

    train, valid = load_data(args.n, args.table)
    if args.sharded:
        train = to_shards(train, os.path.join(args.out, "shards"), args.sharded)
    model = make_model(args.batch_size, args.optimizer, hidden_node_dim=args.hidden)
    started = time.perf_counter()
    result = distributed.fit_distributed(
        model,
        train,
        valid,
        os.path.join(args.out, "run"),
        max_epochs=args.epochs,
        learning_rate_at=learning_rate_at,
        devices=args.devices,
        accelerator="cpu",
        seed=7,
    )
    seconds = time.perf_counter() - started
    if result.is_global_zero:
        summary = {
            "world_size": result.world_size,
            "epochs": result.record.epochs,
            "seconds": result.record.seconds,
            "valid_mae": result.record.valid_mae,
            "wall_seconds": seconds,
            "n_train": len(train),
        }
        (Path(args.out) / "result.json").write_text(json.dumps(summary))
    print(f"rank {result.global_rank} of {result.world_size} done", file=sys.stderr)


if __name__ == "__main__":
    main()
