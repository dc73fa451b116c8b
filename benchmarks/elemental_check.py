"""The elemental ground states as an accuracy check (issue 15; the trust issue's test, for any
formation-energy model): every element's lowest-energy elemental crystal in the MP table, and
diamond (which the table lacks; MP gives ≈ 0.14 eV/atom), predicted by each model (a shipped
name with seed members is checked as its ensemble, as ``deepchem-cgcnn predict`` uses it).

An elemental ground state has a formation energy near zero by construction, so a model that is
off by more than 0.2 eV/atom there (about four times the test MAE) without a domain flag gives
a silent wrong answer. Printed per model: the crystals checked, MAE and largest error, how many
are within 0.2 eV/atom, how many carry a domain flag, and the silent misses (error > 0.2 eV/atom, no flag), named.

Usage::

    .venv/bin/python benchmarks/elemental_check.py --models mp-formation-energy work/x.pt
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from _common import DEFAULT_DATA, markdown_table, write_json

TOLERANCE = 0.2


def ground_states(path: Path) -> tuple[list, list[str], np.ndarray]:
    """Crystals (CIF text; diamond a Structure), ids and MP formation energies of each
    element's lowest-energy elemental crystal in the table at ``path``, then diamond."""
    import pandas as pd

    from deepchem_cgcnn.data.elemental import (
        DIAMOND_FORMATION_ENERGY,
        diamond,
        elemental_ground_states,
    )

    table = pd.read_csv(path, usecols=["material_id", "formation_energy_per_atom", "cif"])
    ground = elemental_ground_states(table)
    energies = [*ground.formation_energy_per_atom, DIAMOND_FORMATION_ENERGY]
    return [*ground.cif, diamond()], [*ground.material_id, "diamond"], np.array(energies)


def check(model, structures: list, ids: list[str], reference: np.ndarray) -> dict:
    """The check of one model on the ground states."""
    from deepchem_cgcnn import CGCNNFeaturizer
    from deepchem_cgcnn._quiet import import_deepchem
    from deepchem_cgcnn.domain import DomainWarning

    dc = import_deepchem()
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(structures)
    dataset = dc.data.NumpyDataset(graphs, ids=np.array(ids))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainWarning)
        predicted = model.predict(dataset)[:, 0]
    records = model.check_domain(dataset)
    error = np.abs(predicted - reference)
    worst = int(error.argmax())
    misses = [
        f"{r.formula} ({r.id}): {p:+.2f} vs {e:+.2f}"
        for r, p, e, d in zip(records, predicted, reference, error)
        if d > TOLERANCE and r.in_domain
    ]
    return {
        "crystals": len(ids),
        "mae": float(error.mean()),
        "max_error": float(error.max()),
        "max_error_crystal": f"{ids[worst]}: {predicted[worst]:+.2f} vs {reference[worst]:+.2f}",
        "within_tolerance": int((error <= TOLERANCE).sum()),
        "flagged": sum(not r.in_domain for r in records),
        "silent_misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="shipped names or files")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    from deepchem_cgcnn.ensemble import load_pretrained_predictor

    structures, ids, reference = ground_states(args.data)
    results = {
        name: check(load_pretrained_predictor(name), structures, ids, reference)
        for name in args.models
    }
    rows = [
        [
            name,
            r["crystals"],
            f"{r['mae']:.3f}",
            f"{r['max_error']:.2f}",
            r["within_tolerance"],
            r["flagged"],
            len(r["silent_misses"]),
        ]
        for name, r in results.items()
    ]
    header = ["model", "crystals", "MAE (eV/atom)", "max error", f"within {TOLERANCE}"]
    header += ["flagged", "silent misses"]
    print(markdown_table(header, rows))
    for name, r in results.items():
        for miss in r["silent_misses"]:
            print(f"silent miss of {name}: {miss}")
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
