"""Load + featurize + split a whole MP table with ``MaterialsProjectLoader``, then reload it.

Measures, on ``--data`` (default ``../shared/datasets/mp_cgcnn.csv.gz``, 31,297 crystals):

* the first load (read the CSV, clean, featurize with ``n_jobs``, split 60/20/20, write the
  cache): wall time and the peak resident memory of the whole process tree (this process
  plus its featurization workers, sampled every 50 ms from ``/proc``);
* a reload from the cache: wall time (median of ``--repeats``) and peak memory.

The named peer is DeepChem 2.8's own material-loading route, as ``dc.molnet.load_perovskite``
runs it: ``dc.data.JsonLoader`` over a JSON-lines file of Structure dicts with DeepChem's
``dc.feat.CGCNNFeaturizer``, ``dc.splits.RandomSplitter`` and ``save_dataset_to_disk``, then
``load_dataset_from_disk`` to reload. It is ~30x slower to featurize, so it runs on the
``--peer-n`` rows drawn at random only, and ours runs on the same JSON-lines file for the
ratio. DeepChem's reload does not look at the source again (it cannot notice a changed file);
ours re-hashes the source file to key the cache, which is most of its reload time.
Each phase runs in a fresh child process so that memory peaks do not overlap.

Usage
-----
``.venv/bin/python benchmarks/bench_loader.py --n-jobs 2``
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import DEFAULT_DATA, markdown_table, median

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from ``/proc``."""
    parents, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in members]
        members.update(children)
        frontier.extend(children)
    return sum(rss.get(p, 0) for p in members)


def run_phase(phase: str, args: argparse.Namespace, work: str) -> dict:
    """Run one phase in a child process; return its report plus the tree's peak memory."""
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--work",
        work,
        "--data",
        str(args.data),
        "--n-jobs",
        str(args.n_jobs),
        "--peer-n",
        str(args.peer_n),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(child.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        sys.exit(f"phase {phase} failed (exit {child.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    report["peak_gib"] = peak / 2**30
    return report


# ---------------------------------------------------------------- phases (child processes)
def _ours(source: str, work: str, n_jobs: int, tasks) -> dict:
    from deepchem_cgcnn import MaterialsProjectLoader

    start = time.perf_counter()
    loader = MaterialsProjectLoader(
        source, tasks=tasks, n_jobs=n_jobs, data_dir=work, save_dir=work
    )
    _, datasets, _ = loader.load()
    seconds = time.perf_counter() - start
    summary = loader.summary
    return {
        "seconds": seconds,
        "sizes": [len(d) for d in datasets],
        "from_cache": summary.from_cache,
        "dropped": summary.counts(),
        "n_rows": summary.n_rows,
    }


def _peer_json(args, work: str) -> str:
    """``--peer-n`` rows drawn at random (seed 0) in DeepChem's JSON-lines format (not timed)."""
    import pandas as pd
    from pymatgen.core import Structure

    path = os.path.join(work, "peer.json")
    if not os.path.exists(path):
        rows = pd.read_csv(args.data).sample(n=args.peer_n, random_state=0)
        with open(path, "w") as handle:
            for material_id, cif, energy in zip(
                rows.material_id, rows.cif, rows.formation_energy_per_atom
            ):
                handle.write(
                    json.dumps(
                        {
                            "material_id": material_id,
                            "structure": Structure.from_str(cif, fmt="cif").as_dict(),
                            "formation_energy": energy,
                        }
                    )
                    + "\n"
                )
    return path


def _deepchem(args, work: str, reload: bool) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_featurizer import deepchem_featurizer, matminer_atom_table

    from deepchem_cgcnn._quiet import import_deepchem

    dc = import_deepchem()
    folder = os.path.join(work, "deepchem-featurized")
    start = time.perf_counter()
    if reload:
        _, datasets, _ = dc.utils.data_utils.load_dataset_from_disk(folder)
        return {"seconds": time.perf_counter() - start, "sizes": [len(d) for d in datasets]}
    featurizer = deepchem_featurizer(matminer_atom_table())
    loader = dc.data.JsonLoader(
        tasks=["formation_energy"],
        feature_field="structure",
        label_field="formation_energy",
        featurizer=featurizer,
    )
    dataset = loader.create_dataset(_peer_json(args, work))
    train, valid, test = dc.splits.RandomSplitter().train_valid_test_split(
        dataset, frac_train=0.6, frac_valid=0.2, frac_test=0.2, seed=123
    )
    dc.utils.data_utils.save_dataset_to_disk(folder, train, valid, test, [])
    return {"seconds": time.perf_counter() - start, "sizes": [len(train), len(valid), len(test)]}


def child_main(args) -> None:
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    full = os.path.join(args.work, "full")
    subset = os.path.join(args.work, "subset")
    os.makedirs(subset, exist_ok=True)
    if args.phase in ("full", "full-reload"):
        report = _ours(str(args.data), full, args.n_jobs, ["formation_energy"])
    elif args.phase in ("subset", "subset-reload"):
        report = _ours(_peer_json(args, subset), subset, args.n_jobs, ["formation_energy"])
    elif args.phase in ("deepchem", "deepchem-reload"):
        report = _deepchem(args, subset, reload=args.phase.endswith("reload"))
    else:
        raise SystemExit(f"unknown phase {args.phase}")
    print(json.dumps(report))


# ---------------------------------------------------------------- driver
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--peer-n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        return child_main(args)
    if not args.data.is_file():
        sys.exit(f"data file {args.data} not found; pass --data")
    work = tempfile.mkdtemp(prefix="bench-loader-")
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{os.cpu_count()} CPU cores, load average at start {load}; "
            f"n_jobs={args.n_jobs}; data {args.data}\n"
        )
        first = run_phase("full", args, work)
        reloads = [run_phase("full-reload", args, work) for _ in range(args.repeats)]
        assert all(r["from_cache"] for r in reloads) and not first["from_cache"]
        rows = [
            [
                "first load: read + featurize + split + cache",
                f"{first['n_rows']:,}",
                f"{first['seconds']:.1f}",
                f"{first['peak_gib']:.2f}",
            ],
            [
                "reload from cache (median)",
                f"{sum(reloads[0]['sizes']):,}",
                f"{median([r['seconds'] for r in reloads]):.2f}",
                f"{max(r['peak_gib'] for r in reloads):.2f}",
            ],
        ]
        print(
            markdown_table(
                [
                    "MaterialsProjectLoader, whole table",
                    "rows",
                    "wall s",
                    "peak GiB (process tree)",
                ],
                rows,
            )
        )
        print(f"\nsplit sizes {first['sizes']}; dropped {first['dropped'] or 'none'}\n")

        ours = run_phase("subset", args, work)
        ours_reload = median(
            [run_phase("subset-reload", args, work)["seconds"] for _ in range(args.repeats)]
        )
        peer = run_phase("deepchem", args, work)
        peer_reload = median(
            [run_phase("deepchem-reload", args, work)["seconds"] for _ in range(args.repeats)]
        )
        rows = [
            [
                "first load (s)",
                f"{ours['seconds']:.1f}",
                f"{peer['seconds']:.1f}",
                f"{peer['seconds'] / ours['seconds']:.1f}x",
            ],
            [
                "reload (s, median)",
                f"{ours_reload:.2f}",
                f"{peer_reload:.2f}",
                "— (DeepChem does not re-check the source)",
            ],
            ["peak GiB, first load", f"{ours['peak_gib']:.2f}", f"{peer['peak_gib']:.2f}", "—"],
        ]
        print(
            markdown_table(
                [
                    f"{args.peer_n:,} random rows, DeepChem JSON-lines format",
                    "ours",
                    "DeepChem 2.8 JsonLoader + dc.feat.CGCNNFeaturizer",
                    "speed-up",
                ],
                rows,
            )
        )
        print(f"\nsplit sizes: ours {ours['sizes']}, DeepChem {peer['sizes']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
