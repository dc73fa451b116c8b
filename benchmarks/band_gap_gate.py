"""Band gap for any crystal: the non-metals model behind the metallicity classifier
(``GatedRegressor``) against the model trained on every crystal, chosen on validation.

The paper trains and tests its band-gap model on non-metals only; a user asking for any
crystal's gap needs a metal's 0 too. ``GatedRegressor(non-metals ensemble, mp-metallicity,
threshold)`` answers 0 where P(metal) reaches the threshold. This script scores it, for
thresholds from 0.3 to 0.7, against ``mp-band-gap`` (trained on all crystals) on the
validation and test splits of all crystals.

The two models were split apart: ``mp-band-gap`` and ``mp-metallicity`` on all 31,297 crystals,
the non-metals members on the 18,002 with a gap (each 60/20/20, seed 123), so a non-metal in
the full validation split may sit in the non-metals training split. Scored are therefore the
crystals of the full validation split that no model trained on: its metals, and its non-metals
that are in the non-metals validation split too; those non-metals are weighted up to the
count of non-metals in the full split, so the score estimates the MAE over the whole full
validation split. The same for test (the non-metals test split). The threshold and the choice
between the two answers are made on validation; test is reported, never used to choose.

Usage::

    .venv/bin/python benchmarks/band_gap_gate.py --regressors work/export/mp-band-gap-nonmetals.pt \\
        work/export/mp-band-gap-nonmetals.1.pt --cache-dir work/cache \\
        --out benchmarks/results/band-gap-gate.json
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
from _common import DEFAULT_DATA, markdown_table, write_json
from ensemble_study import load_members, split_of

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def clean_weights(ids: np.ndarray, gap: np.ndarray, nonmetal_ids: set) -> np.ndarray:
    """Per crystal of a full split: 1 for metals, ``n / m`` for its ``m`` non-metals that are
    in ``nonmetal_ids`` (of its ``n`` non-metals), 0 for the others.

    >>> clean_weights(np.array(["a", "b", "c", "d"]), np.array([0.0, 1.0, 2.0, 3.0]), {"b"})
    array([1., 3., 0., 0.])
    """
    metal = gap <= 0
    kept = ~metal & np.isin(ids, list(nonmetal_ids))
    weights = metal.astype(float)
    weights[kept] = (~metal).sum() / max(kept.sum(), 1)
    return weights


def weighted_mae(prediction: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(weights * np.abs(prediction - y)) / np.sum(weights))


def main(argv=None) -> dict:
    from deepchem_cgcnn import CGCNNEnsemble, GatedRegressor
    from deepchem_cgcnn.domain import DomainWarning
    from deepchem_cgcnn.registry import load_pretrained

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regressors", type=Path, nargs="+", required=True)
    parser.add_argument("--baseline", default="mp-band-gap")
    parser.add_argument("--classifier", default="mp-metallicity")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path, default=Path("work/cache"))
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--record",
        action="store_true",
        help="if the gate wins on validation, record it in the baseline's shipped card (the "
        "regressors must then be the shipped members, named)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DomainWarning)

    members = load_members(args.regressors)
    regressor = members[0] if len(members) == 1 else CGCNNEnsemble(members)
    baseline = load_pretrained(args.baseline)  # the single model (its predictor may be a gate)
    classifier = load_pretrained(args.classifier)
    _, nm_valid, nm_test = split_of(members[0].card, args.data, args.n_jobs, args.cache_dir)
    _, valid, test = split_of(baseline.card, args.data, args.n_jobs, args.cache_dir)

    result: dict = {
        "regressors": [str(p) for p in args.regressors],
        "baseline": args.baseline,
        "classifier": args.classifier,
    }
    rows = []
    for name, full, nonmetal in (("valid", valid, nm_valid), ("test", test, nm_test)):
        ids, y = np.asarray(full.ids), np.asarray(full.y, dtype=float).ravel()
        weights = clean_weights(ids, y, set(np.asarray(nonmetal.ids)))
        scored = weights > 0
        subset = full.select(np.nonzero(scored)[0])
        y, weights, metal = y[scored], weights[scored], y[scored] <= 0
        p_metal = np.asarray(classifier.predict(subset))[:, 1]
        gap = np.asarray(regressor.predict(subset))[:, 0]
        base = np.asarray(baseline.predict(subset))[:, 0]
        scores = {
            "crystals_scored": int(scored.sum()),
            "metals": int(metal.sum()),
            "nonmetals_scored": int((~metal).sum()),
            "baseline_mae": weighted_mae(base, y, weights),
            "baseline_mae_metals": weighted_mae(base[metal], y[metal], weights[metal]),
            "baseline_mae_nonmetals": weighted_mae(base[~metal], y[~metal], weights[~metal]),
            "regressor_mae_nonmetals": weighted_mae(gap[~metal], y[~metal], weights[~metal]),
            "gated": {},
        }
        for threshold in THRESHOLDS:
            answer = np.where(p_metal >= threshold, 0.0, gap)
            scores["gated"][str(threshold)] = {
                "mae": weighted_mae(answer, y, weights),
                "mae_metals": weighted_mae(answer[metal], y[metal], weights[metal]),
                "mae_nonmetals": weighted_mae(answer[~metal], y[~metal], weights[~metal]),
                "metals_answered_0": float((answer[metal] == 0).mean()),
                "nonmetals_answered_0": float((answer[~metal] == 0).mean()),
            }
        result[name] = scores
    best = min(THRESHOLDS, key=lambda t: result["valid"]["gated"][str(t)]["mae"])
    gated_valid = result["valid"]["gated"][str(best)]["mae"]
    result["chosen_threshold"] = best
    result["gate_beats_baseline_on_validation"] = gated_valid < result["valid"]["baseline_mae"]
    GatedRegressor(regressor, classifier, threshold=best)  # the settings are compatible

    for threshold in THRESHOLDS:
        rows.append(
            [
                f"gated, P(metal) ≥ {threshold}" + (" (chosen)" if threshold == best else ""),
                *(
                    f"{result[s]['gated'][str(threshold)][k]:.3f}"
                    for s in ("valid", "test")
                    for k in ("mae", "mae_metals", "mae_nonmetals")
                ),
            ]
        )
    rows.append(
        [
            f"`{args.baseline}` (all crystals)",
            *(
                f"{v:.3f}"
                for s in ("valid", "test")
                for v in (
                    result[s]["baseline_mae"],
                    result[s]["baseline_mae_metals"],
                    result[s]["baseline_mae_nonmetals"],
                )
            ),
        ]
    )
    print(
        f"{len(members)} non-metals member(s); scored: validation "
        f"{result['valid']['crystals_scored']} crystals ({result['valid']['metals']} metals), "
        f"test {result['test']['crystals_scored']} ({result['test']['metals']} metals)\n"
    )
    header = ["answer", "valid MAE", "metals", "non-metals", "test MAE", "metals", "non-metals"]
    print(markdown_table(header, rows))
    print(
        f"\nthe non-metals regressor alone on non-metals: validation "
        f"{result['valid']['regressor_mae_nonmetals']:.3f}, test "
        f"{result['test']['regressor_mae_nonmetals']:.3f} eV (weighted as above)"
    )
    write_json(args.out, result)
    if args.record:
        record_gate(args.baseline, members[0].card.name, args.classifier, result)
    return result


def record_gate(baseline: str, regressor: str, classifier: str, result: dict) -> None:
    """Write the chosen gate into the shipped card of ``baseline`` (read by
    ``load_pretrained_predictor``), or refuse if it did not win on validation."""
    from _common import record_in_card

    from deepchem_cgcnn.registry import available_pretrained

    if regressor not in available_pretrained():
        raise SystemExit(f"--record: the regressor {regressor!r} is not shipped")
    if not result["gate_beats_baseline_on_validation"]:
        raise SystemExit(f"--record: the gate does not beat {baseline} on validation")
    threshold = result["chosen_threshold"]
    gate = {
        "regressor": regressor,
        "classifier": classifier,
        "threshold": threshold,
        "outside_value": 0.0,
        "outside_name": "metal",
        "chosen_on": "validation (benchmarks/band_gap_gate.py: crystals no model trained on)",
        "mae": {
            split: {
                "gated": round(result[split]["gated"][str(threshold)]["mae"], 5),
                "this_model": round(result[split]["baseline_mae"], 5),
            }
            for split in ("valid", "test")
        },
    }
    print(f"recorded the gate in {record_in_card(baseline, 'gate', gate)}")


if __name__ == "__main__":
    main()
