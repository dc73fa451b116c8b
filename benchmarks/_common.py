"""Helpers shared by the benchmark scripts: data loading, timing, markdown tables.

Not a benchmark itself. The scripts import it as a sibling module, so run them
as ``.venv/bin/python benchmarks/<script>.py`` from the project root.
"""

import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "mp_cgcnn.csv.gz"


def load_mp_structures(
    path: Path, n: int, seed: int = 0, target: str = "formation_energy_per_atom"
) -> tuple[list[str], list, np.ndarray]:
    """Read ``n`` rows drawn at random (fixed ``seed``) from the MP CSV and parse their CIFs.

    The CSV is sorted by material id, so a seeded random draw is used rather than
    the first ``n`` rows. Parsing is done here, once, and is never timed.

    Returns
    -------
    ids, structures, targets
        Material ids, pymatgen ``Structure`` objects and the ``target`` column, in
        the same (drawn) order; rows whose CIF does not parse are skipped.
    """
    import pandas as pd
    from pymatgen.core import Structure

    path = Path(path)
    if not path.is_file():
        sys.exit(f"data file {path} not found; pass --data")
    table = pd.read_csv(path, usecols=["material_id", target, "cif"])
    rows = table.sample(n=min(n, len(table)), random_state=seed)
    ids, structures, targets = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for material_id, y, cif in zip(rows["material_id"], rows[target], rows["cif"]):
            try:
                structures.append(Structure.from_str(cif, fmt="cif"))
            except Exception:  # a CIF pymatgen cannot read is not what is benchmarked
                continue
            ids.append(material_id)
            targets.append(y)
    return ids, structures, np.asarray(targets, dtype=np.float64)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of one call of ``fn`` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; numbers are expected pre-formatted."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_line() -> str:
    """One line describing the machine and software the numbers were taken on."""
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPU cores, load average at start {load}; Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({'CUDA' if torch.cuda.is_available() else 'CPU'}), "
        f"torch threads {torch.get_num_threads()}"
    )


def write_json(path: Path | None, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (its folder made), if a path is
    given."""
    if path is None:
        return
    import json

    from deepchem_cgcnn._io import atomic_write

    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def record_in_card(name: str, key: str, value: object) -> Path:
    """Set ``key`` of the shipped card of ``name`` (its JSON, which ``pretrained_card`` reads)
    to ``value``; return the card's path."""
    import json

    path = PROJECT_ROOT / "deepchem_cgcnn" / "pretrained" / f"{name}.json"
    card = json.loads(path.read_text())
    card[key] = value
    write_json(path, card)
    return path


def record_std_scale(
    name: str, scale: float, n_members: int, n_valid: int, unit: str, by: str = ""
) -> Path:
    """Write an ensemble's validation-fitted σ scale into the shipped card of ``name`` (read by
    ``CGCNNEnsemble.pretrained``); ``unit`` names what the validation split counts, ``by``
    which models predicted it when not the members themselves (refit members' twins)."""
    predicted_by = f", predicted by {by}" if by else ""
    return record_in_card(
        name,
        "ensemble",
        {
            "members": n_members,
            "std_scale": round(scale, 4),
            "std_scale_fitted_on": f"validation split ({n_valid:,} {unit}){predicted_by}, "
            "median |error| / sigma / 0.6745",
        },
    )
