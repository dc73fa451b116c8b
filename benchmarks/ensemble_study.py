"""The ensemble lever (issue 15): members trained alike but for their initial weights, scored
alone and together on the split they were trained on, with a σ calibrated on validation.

Every member is a model file exported by ``deepchem-cgcnn train`` (``--export``); their cards
must agree on the data (SHA-256 and query), target, split seed and sizes, and featurizer, or
the study refuses, naming the member that differs. The data and split are rebuilt from the first card
(``--data`` points at the same file). Printed and written to ``--out`` (JSON):

- each member's validation and test MAE;
- the validation and test MAE of the ensemble of the first k members, k = 1 .. N (the mean
  prediction): whether to ship the ensemble is decided on the validation column;
- for each k, the k members (of any order and recipe) whose ensemble validates best, with
  its test MAE beside it (``best_of_size``): which members to ship, read off validation;
- σ (the members' spread) scaled by one factor fitted on the validation split
  (``CGCNNEnsemble.fit_std_scale``), and how often the test errors fall within 1, 2, 3 σ
  before and after (``calibration``); the rank correlation of σ with the test error.

``--record-std-scale NAME`` writes the fitted factor into the shipped card of ``NAME`` (its
members shipped as ``NAME``, ``NAME.1``, ...), where ``CGCNNEnsemble.pretrained`` reads it.

A member refit on its training and validation crystals (``train --refit``) has no validation
score of its own: its validation predictions are in-sample. With refit members the study
needs ``--twins``: the validated run each member was refit from (one per member, in order;
a member that is not refit is its own twin). The validation column, the choice of members
and the σ scale then come from the twins, the test column from the members; without twins
those are refused rather than fitted on crystals the members trained on; ``--std-scale S``
then checks a recorded scale (a shipped card's) on test, fitting nothing.

Test crystals select nothing here: the members were selected on validation by their cards.

``--save-predictions DIR`` writes each model's card and predictions on the validation and
test crystals to ``DIR/<model>.predictions.npz`` (~100 kB); a later study takes such a file
in place of its model, as member or twin, so a choice of members (and the σ scale) can be
revisited after the model files, which live under the git-ignored ``work/``, are gone.

Usage::

    .venv/bin/python benchmarks/ensemble_study.py --members work/ema/export/a.pt \\
        work/ema/export/b.pt work/ema/export/c.pt --out benchmarks/results/ensemble/x.json
"""

import argparse
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from _common import DEFAULT_DATA, markdown_table, record_std_scale, write_json

AGREE = ("task", "featurizer")


def _differences(first, card) -> list[str]:
    """What makes ``card``'s model unfit to be averaged with ``first``'s."""
    different = [name for name in AGREE if getattr(first, name) != getattr(card, name)]
    for key in ("sha256", "query"):
        if first.data.get(key) != card.data.get(key):
            different.append(f"data.{key}")
    for key in ("seed", "sizes"):
        if first.split.get(key) != card.split.get(key):
            different.append(f"split.{key}")
    return different


PREDICTIONS_SUFFIX = ".predictions.npz"


class RecordedMember:
    """A model's predictions on its validation and test crystals as ``--save-predictions``
    wrote them, standing in for the model file (a validated twin's ``.pt`` lives under the
    git-ignored ``work/``; this file is small enough to commit beside the study's JSON).

    ``predict`` answers only for the crystals recorded, in their order, and refuses any
    other dataset, naming the file.
    """

    def __init__(self, path: Path):
        from deepchem_cgcnn.card import ModelCard

        self.path = Path(path)
        with np.load(self.path, allow_pickle=False) as recorded:
            self.card = ModelCard.from_dict(json.loads(str(recorded["card"])))
            self.answers = [
                (recorded[f"{split}_ids"], recorded[split]) for split in ("valid", "test")
            ]
        for ids, values in self.answers:
            if values.shape != ids.shape or not np.isfinite(values).all():
                sys.exit(f"{self.path}: damaged ({len(ids)} ids, predictions {values.shape})")
        self.model = SimpleNamespace(mode=self.card.mode)

    def predict(self, dataset) -> np.ndarray:
        ids = np.asarray(dataset.ids).astype(str)
        for recorded_ids, values in self.answers:
            if np.array_equal(recorded_ids, ids):
                return values[:, None]
        sys.exit(
            f"{self.path}: recorded on other crystals than these {len(ids)} "
            f"(it holds {' and '.join(str(len(i)) for i, _ in self.answers)}, by id and order)"
        )


def save_predictions(folder: Path, models: dict, valid, test) -> list[Path]:
    """Write each model's card and predictions on ``valid`` and ``test`` (with the crystals'
    ids) to ``folder/<model file stem>.predictions.npz``, atomically; their paths.
    ``models`` maps each model file's path to the model loaded from it."""
    from deepchem_cgcnn._io import atomic_write

    written = []
    for path, model in models.items():
        arrays = {"card": np.array(json.dumps(model.card.to_dict()))}
        for split, dataset in (("valid", valid), ("test", test)):
            arrays[f"{split}_ids"] = np.asarray(dataset.ids).astype(str)
            arrays[split] = np.asarray(model.predict(dataset))[:, 0]
        target = Path(folder) / (Path(path).name.removesuffix(".pt") + PREDICTIONS_SUFFIX)
        atomic_write(target, lambda handle, a=arrays: np.savez_compressed(handle, **a))
        written.append(target)
    return written


def load_members(paths: list[Path]) -> list:
    from deepchem_cgcnn.registry import load_model

    members = [
        RecordedMember(path) if str(path).endswith(PREDICTIONS_SUFFIX) else load_model(path)
        for path in paths
    ]
    first = members[0].card
    for path, member in zip(paths[1:], members[1:]):
        different = _differences(first, member.card)
        if different:
            sys.exit(f"{path}: not trained like {paths[0]} ({', '.join(different)} differ)")
    return members


def split_of(card, data: Path, n_jobs: int, cache: Path):
    """The card's own train, validation and test splits (of the crystals its query kept),
    featurized as the card says."""
    from deepchem_cgcnn import CGCNNFeaturizer, MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    loaded = MaterialsProjectLoader(
        str(data),
        tasks=[card.task],
        query=card.data.get("query"),
        featurizer=CGCNNFeaturizer(**card.featurizer),
        splitter=CGCNNRandomSplitter(seed=card.split["seed"]),
        data_dir=str(cache),
        save_dir=str(cache),
        n_jobs=n_jobs,
    ).load()
    if loaded.summary.sha256 != card.data.get("sha256"):
        sys.exit(f"{data}: not the data the members were trained on (SHA-256 differs)")
    _, splits, _ = loaded
    return splits


def refit_members(members: list, paths: list[Path]) -> list[str]:
    """The paths of the members refit on their validation crystals."""
    return [str(path) for path, member in zip(paths, members) if member.card.is_refit]


def check_twins(members: list, paths: list[Path], twins: list, twin_paths: list[Path]) -> None:
    """Refuse unless each twin is the validated run its member was refit from (or the member
    itself, when that one is not refit): same data, split and task, initial weights and loss,
    not refit, and the validation score the refit card keeps as ``mae_before_refit`` (to a
    relative 1e-6: both were recomputed in float32)."""
    if len(twins) != len(members):
        sys.exit(f"--twins: {len(twins)} models for {len(members)} members (one per member)")
    for path, member, twin_path, twin in zip(paths, members, twin_paths, twins):
        if twin.card.is_refit:
            sys.exit(f"{twin_path}: a twin must be a validated run; this one is refit")
        seeds = (member.card.recipe.get("init_seed"), twin.card.recipe.get("init_seed"))
        different = _differences(member.card, twin.card) + [
            field
            for field, (mine, its) in (
                ("recipe.init_seed", seeds),
                ("recipe.loss", (member.card.loss, twin.card.loss)),
            )
            if mine != its
        ]
        if different:
            sys.exit(f"{twin_path}: not trained like {path} ({', '.join(different)} differ)")
        metric = member.card.metric_name
        before = member.card.metrics.get(
            f"{metric}_before_refit" if member.card.is_refit else metric, {}
        )
        validated = twin.card.metrics.get(metric, {}).get("valid")
        if (
            before.get("valid") is None
            or validated is None
            or not np.isclose(before["valid"], validated, rtol=1e-6, atol=0.0)
        ):
            sys.exit(
                f"{twin_path}: not the validated run {path} was refit from (validation "
                f"{metric} {validated} here, {before.get('valid')} in the member's card)"
            )


def study(
    members: list,
    paths: list[Path],
    valid,
    test,
    twins: list | None = None,
    std_scale: float | None = None,
) -> dict:
    """Scores of each member, of the first-k ensembles, and of the calibrated σ.

    ``twins`` (checked by :func:`check_twins`) stand in for the members on validation.
    With refit members and no twins, nothing is chosen or fitted on validation; a recorded
    ``std_scale`` (e.g. a shipped card's) is then only checked on test."""
    from deepchem_cgcnn import CGCNNEnsemble
    from deepchem_cgcnn.domain import DomainWarning

    warnings.simplefilter("ignore", DomainWarning)  # the members' domain is not studied here
    y_valid = np.asarray(valid.y, dtype=float).ravel()
    y_test = np.asarray(test.y, dtype=float).ravel()
    in_sample = refit_members(members, paths) if twins is None else []
    on_valid = np.stack([m.predict(valid)[:, 0] for m in (twins or members)])
    on_test = np.stack([m.predict(test)[:, 0] for m in members])

    def mae(prediction: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.abs(prediction - y)))

    result: dict = {
        "validation_from": "twins" if twins else "members",
        "members": [
            {
                "model": str(path),
                "init_seed": member.card.recipe.get("init_seed"),
                "valid_mae": mae(on_valid[i], y_valid),
                "test_mae": mae(on_test[i], y_test),
            }
            for i, (path, member) in enumerate(zip(paths, members))
        ],
        "first_k": [
            {
                "k": k,
                "valid_mae": mae(on_valid[:k].mean(axis=0), y_valid),
                "test_mae": mae(on_test[:k].mean(axis=0), y_test),
            }
            for k in range(1, len(members) + 1)
        ],
    }
    if in_sample:
        result["validation_in_sample"] = in_sample
        for row in (*result["members"], *result["first_k"]):
            row["valid_trained_on_mae"] = row.pop("valid_mae")
        singles = [m["test_mae"] for m in result["members"]]
        result["summary"] = _summary(singles, result["first_k"][-1]["test_mae"])
        if std_scale and len(members) > 1:
            result["sigma"] = {"std_scale_given": std_scale, **_sigma(on_test, y_test, std_scale)}
        return result
    result["best_of_size"] = _best_subsets(on_valid, on_test, y_valid, y_test, paths)
    if len(members) > 1:
        ensemble = CGCNNEnsemble(twins or members)  # whose validation predictions fit σ
        scale = ensemble.fit_std_scale(valid, on_valid[..., None])
        result["sigma"] = {
            "std_scale_fitted_on_validation": scale,
            **_sigma(on_test, y_test, scale),
        }
    singles = [m["test_mae"] for m in result["members"]]
    result["summary"] = _summary(singles, result["first_k"][-1]["test_mae"])
    return result


def _sigma(on_test: np.ndarray, y_test: np.ndarray, scale: float) -> dict:
    """How the members' spread, raw and times ``scale``, covers the test errors."""
    from scipy.stats import spearmanr

    from deepchem_cgcnn.ensemble import calibration

    mean, raw_std = on_test.mean(axis=0), on_test.std(axis=0, ddof=1)
    return {
        "median_raw_sigma": float(np.median(raw_std)),
        "raw": calibration(y_test, mean, raw_std),
        "scaled": calibration(y_test, mean, scale * raw_std),
        "spearman_sigma_vs_abs_error": float(spearmanr(raw_std, np.abs(mean - y_test)).statistic),
    }


def _summary(singles: list[float], ensemble_test_mae: float) -> dict:
    return {
        "mean_member_test_mae": float(np.mean(singles)),
        "ensemble_test_mae": ensemble_test_mae,
        "gain": 1.0 - ensemble_test_mae / float(np.mean(singles)),
    }


def _best_subsets(on_valid, on_test, y_valid, y_test, paths: list[Path]) -> list[dict]:
    """For each size k, the k members whose mean prediction scores best on validation (every
    subset tried; members of other recipes can join an ensemble), with that subset's test
    MAE beside it: which members to ship is read off the validation column."""
    from itertools import combinations

    best = []
    for k in range(1, len(paths) + 1):
        scored = [
            (float(np.mean(np.abs(on_valid[list(c)].mean(axis=0) - y_valid))), c)
            for c in combinations(range(len(paths)), k)
        ]
        valid_mae, chosen = min(scored)
        best.append(
            {
                "k": k,
                "members": [Path(paths[i]).name for i in chosen],
                "valid_mae": valid_mae,
                "test_mae": float(np.mean(np.abs(on_test[list(chosen)].mean(axis=0) - y_test))),
            }
        )
    return best


def report(result: dict, units: str) -> str:
    valid = "valid_trained_on_mae" if "validation_in_sample" in result else "valid_mae"
    valid_header = {
        "valid_trained_on_mae": f"valid MAE, in-sample ({units})",
        "valid_mae": f"valid MAE ({units})"
        if result.get("validation_from") != "twins"
        else f"valid MAE of the validated twin(s) ({units})",
    }[valid]
    lines = [
        markdown_table(
            ["member", "init seed", valid_header, f"test MAE ({units})"],
            [
                [
                    Path(m["model"]).name,
                    m["init_seed"],
                    f"{m[valid]:.4f}",
                    f"{m['test_mae']:.4f}",
                ]
                for m in result["members"]
            ],
        ),
        "",
        markdown_table(
            ["ensemble of the first k", valid_header, f"test MAE ({units})"],
            [
                [row["k"], f"{row[valid]:.4f}", f"{row['test_mae']:.4f}"]
                for row in result["first_k"]
            ],
        ),
    ]
    if "validation_in_sample" in result:
        lines += [
            "",
            "refit on their validation crystals (validation is in-sample for them; no members "
            "chosen and no σ fitted; pass --twins): " + ", ".join(result["validation_in_sample"]),
        ]
    lines += [
        "",
        markdown_table(
            ["best k by validation", "members", f"valid MAE ({units})", f"test MAE ({units})"],
            [
                [
                    row["k"],
                    " ".join(row["members"]),
                    f"{row['valid_mae']:.4f}",
                    f"{row['test_mae']:.4f}",
                ]
                for row in result.get("best_of_size", [])
            ],
        ),
    ]
    summary = result["summary"]
    lines += [
        "",
        f"mean member test MAE {summary['mean_member_test_mae']:.4f}, ensemble "
        f"{summary['ensemble_test_mae']:.4f} ({100 * summary['gain']:.1f} % lower)",
    ]
    if "sigma" in result:
        sigma = result["sigma"]
        rows = [
            [
                name,
                f"{sigma[name]['within_1_sigma']:.3f}",
                f"{sigma[name]['within_2_sigma']:.3f}",
                f"{sigma[name]['within_3_sigma']:.3f}",
            ]
            for name in ("raw", "scaled")
        ]
        rows.append(["Gaussian", "0.683", "0.954", "0.997"])
        scale = (
            f"σ scale fitted on validation: {sigma['std_scale_fitted_on_validation']:.3f}"
            if "std_scale_fitted_on_validation" in sigma
            else f"σ scale given (not fitted here): {sigma['std_scale_given']:.3f}"
        )
        lines += [
            "",
            f"{scale}; "
            f"median raw σ {sigma['median_raw_sigma']:.4f} {units}; Spearman ρ(σ, |error|) "
            f"on test {sigma['spearman_sigma_vs_abs_error']:.3f}",
            "",
            markdown_table(["test errors within", "1 σ", "2 σ", "3 σ"], rows),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path, default=Path("work/cache"))
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument(
        "--twins",
        type=Path,
        nargs="+",
        help="the validated run each member was refit from (one per member, in order; a "
        "member that is not refit is its own twin): they stand in for the members on validation",
    )
    parser.add_argument(
        "--save-predictions",
        type=Path,
        metavar="DIR",
        help="write each member's and twin's card and predictions on the validation and test "
        f"crystals to DIR/<model>{PREDICTIONS_SUFFIX}: later studies take these files as "
        "--members/--twins in place of the models",
    )
    parser.add_argument(
        "--std-scale",
        type=float,
        help="with refit members and no twins: check this σ scale (e.g. the shipped card's) "
        "on test; nothing is fitted",
    )
    parser.add_argument(
        "--record-std-scale",
        metavar="NAME",
        help="write the σ scale fitted on validation into the shipped card of NAME",
    )
    args = parser.parse_args(argv)
    members = load_members(args.members)
    twins = None
    if args.twins:
        twins = load_members(args.twins)
        check_twins(members, args.members, twins, args.twins)
    elif args.record_std_scale and (refit := refit_members(members, args.members)):
        sys.exit(
            f"--record-std-scale: {', '.join(refit)} trained on the validation crystals; pass "
            "--twins (the validated runs) to fit the σ scale on crystals no member saw"
        )
    if args.std_scale is not None and (twins or not refit_members(members, args.members)):
        sys.exit(
            "--std-scale: these members have validation predictions of their own (validated "
            "runs, or twins), so the study fits the σ scale on validation; a given scale is "
            "only for refit members without twins"
        )
    if args.std_scale is not None and not args.std_scale > 0:
        sys.exit(f"--std-scale must be a positive number, got {args.std_scale}")
    card = members[0].card
    _, valid, test = split_of(card, args.data, args.n_jobs, args.cache_dir)
    result = study(members, args.members, valid, test, twins, args.std_scale)
    if args.save_predictions:
        models = {
            str(path): model
            for path, model in (*zip(args.members, members), *zip(args.twins or [], twins or []))
            if not isinstance(model, RecordedMember)
        }
        for written in save_predictions(args.save_predictions, models, valid, test):
            print("predictions written to", written)
    if twins:
        result["twins"] = [str(path) for path in args.twins]
    result["data"] = {"source": card.data.get("source"), "sha256": card.data.get("sha256")}
    result["task"] = card.task
    print(report(result, card.units))
    write_json(args.out, result)
    if args.record_std_scale and "sigma" in result:
        scale = result["sigma"]["std_scale_fitted_on_validation"]
        path = record_std_scale(
            args.record_std_scale,
            scale,
            len(members),
            len(valid),
            "crystals",
            by="the validated runs the members were refit from" if twins else "",
        )
        print("recorded in", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
