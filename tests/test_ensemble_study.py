"""The ensemble study's guard on refit members: validation chooses and calibrates only
through models that did not train on it."""

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _member(card):
    return SimpleNamespace(card=card)


def _refit_of(card):
    """The card ``train --refit`` writes for ``card``'s validated run."""
    from deepchem_cgcnn.card import ModelCard

    data = copy.deepcopy(card.to_dict())
    scores = data["metrics"]["mae"]
    data["metrics"]["mae_before_refit"] = dict(scores)
    data["metrics"]["mae"] = {
        "train": scores["train"],
        "valid_trained_on": scores["train"],
        "test": scores["test"],
    }
    data["recipe"]["refit"] = {"epochs": 167, "train_size": 25037, "kept": "last"}
    return ModelCard.from_dict(data)


def test_twins_must_be_the_validated_runs_the_members_were_refit_from():
    from ensemble_study import check_twins, refit_members

    from deepchem_cgcnn.registry import pretrained_card

    # two validated runs of one task and split, other initial weights
    first, second = (
        pretrained_card(n) for n in ("mp-band-gap-nonmetals", "mp-band-gap-nonmetals.1")
    )
    refit = [_member(_refit_of(first)), _member(_refit_of(second))]
    paths = [Path("a-refit.pt"), Path("b-refit.pt")]
    assert refit_members(refit, paths) == ["a-refit.pt", "b-refit.pt"]
    assert refit_members([_member(first)], [Path("a.pt")]) == []

    check_twins(refit, paths, [_member(first), _member(second)], [Path("a.pt"), Path("b.pt")])
    # a member that is not refit is its own twin
    check_twins([_member(first)], [Path("a.pt")], [_member(first)], [Path("a.pt")])

    with pytest.raises(SystemExit, match="b.pt: not trained like a-refit.pt .recipe.init_seed"):
        check_twins(refit, paths, [_member(second), _member(first)], [Path("b.pt"), Path("a.pt")])
    other_run = _refit_of(first)
    other_run.metrics["mae_before_refit"]["valid"] *= 1.001
    with pytest.raises(SystemExit, match="a.pt: not the validated run a-refit.pt was refit from"):
        check_twins([_member(other_run)], paths[:1], [_member(first)], [Path("a.pt")])
    recomputed = _refit_of(first)  # the same score recomputed in float32
    recomputed.metrics["mae_before_refit"]["valid"] *= 1 + 2e-9
    check_twins([_member(recomputed)], paths[:1], [_member(first)], [Path("a.pt")])
    with pytest.raises(SystemExit, match="a-refit.pt: a twin must be a validated run"):
        check_twins(refit, paths, refit, paths)
    with pytest.raises(SystemExit, match="1 models for 2 members"):
        check_twins(refit, paths, [_member(first)], [Path("a.pt")])
    other = pretrained_card("mp-fermi-energy")
    with pytest.raises(SystemExit, match="c.pt: not trained like a-refit.pt .*task"):
        check_twins(refit[:1], paths[:1], [_member(other)], [Path("c.pt")])


class _Fixed:
    """A member answering fixed predictions per split, with a card."""

    def __init__(self, card, on_valid, on_test):
        self.card, self.answers = card, {"valid": on_valid, "test": on_test}
        self.model = SimpleNamespace(mode="regression")

    def predict(self, dataset):
        import numpy as np

        return np.asarray(self.answers[dataset.name], dtype=float)[:, None]


def test_refit_members_choose_and_calibrate_nothing_on_validation_without_twins():
    import numpy as np
    from ensemble_study import study

    from deepchem_cgcnn.registry import pretrained_card

    card = pretrained_card("mp-band-gap-nonmetals")
    valid = SimpleNamespace(name="valid", y=np.array([[0.0], [1.0], [2.0]]))
    test = SimpleNamespace(name="test", y=np.array([[0.0], [1.0], [2.0]]))
    refit = [
        _Fixed(_refit_of(card), [0.0, 1.0, 2.0], [0.1, 1.1, 2.0]),
        _Fixed(_refit_of(card), [0.0, 1.0, 2.0], [0.0, 0.9, 2.3]),
    ]
    paths = [Path("a-refit.pt"), Path("b-refit.pt")]
    alone = study(refit, paths, valid, test)
    assert alone["validation_in_sample"] == ["a-refit.pt", "b-refit.pt"]
    assert "best_of_size" not in alone and "sigma" not in alone
    assert alone["members"][0]["valid_trained_on_mae"] == 0.0
    assert alone["first_k"][1]["test_mae"] == pytest.approx((0.05 + 0.0 + 0.15) / 3)
    # a recorded σ scale is checked on test, not fitted: test errors 0.05, 0, 0.15 against
    # raw σ 0.0707, 0.1414, 0.2121 (|a - b| / √2)
    given = study(refit, paths, valid, test, std_scale=0.5)
    assert "best_of_size" not in given and given["sigma"]["std_scale_given"] == 0.5
    assert "std_scale_fitted_on_validation" not in given["sigma"]
    assert given["sigma"]["raw"]["within_1_sigma"] == pytest.approx(1.0)
    assert given["sigma"]["scaled"]["within_1_sigma"] == pytest.approx(1 / 3)

    twins = [
        _Fixed(card, [0.3, 1.0, 2.0], [9.0, 9.0, 9.0]),
        _Fixed(card, [0.0, 1.6, 2.0], [9.0, 9.0, 9.0]),
    ]
    paired = study(refit, paths, valid, test, twins)
    assert paired["members"][0]["valid_mae"] == pytest.approx(0.1)
    assert paired["members"][0]["test_mae"] == pytest.approx(
        0.2 / 3
    )  # the member's, not the twin's
    assert [row["members"] for row in paired["best_of_size"]][0] == ["a-refit.pt"]
    assert paired["sigma"]["std_scale_fitted_on_validation"] > 0


@pytest.mark.torch
def test_recording_a_std_scale_for_refit_members_without_twins_is_refused(tmp_path):
    """Refused before any data is read, naming the members that trained on validation."""
    from ensemble_study import main

    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.registry import pretrained_card, save_model

    paths = []
    for name in ("mp-band-gap-nonmetals", "mp-band-gap-nonmetals.1"):
        path = tmp_path / f"{name}-refit.pt"
        save_model(CGCNNModel.pretrained(name), str(path), _refit_of(pretrained_card(name)))
        paths.append(str(path))
    with pytest.raises(
        SystemExit,
        match=r"--record-std-scale: .*nonmetals-refit\.pt, .*"
        r"nonmetals\.1-refit\.pt trained on the validation crystals; pass --twins",
    ):
        main(
            [
                "--members",
                *paths,
                "--record-std-scale",
                "mp-band-gap-nonmetals",
                "--data",
                str(tmp_path / "absent.csv"),
            ]
        )


@pytest.mark.torch
def test_a_given_std_scale_is_refused_where_validation_can_fit_one(tmp_path):
    """Validated members fit their σ scale on validation: a given one would be ignored, so
    it is refused before any data is read."""
    from ensemble_study import main

    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.registry import pretrained_card, save_model

    paths = []
    for name in ("mp-band-gap-nonmetals", "mp-band-gap-nonmetals.1"):
        path = tmp_path / f"{name}.pt"
        save_model(CGCNNModel.pretrained(name), str(path), pretrained_card(name))
        paths.append(str(path))
    absent = str(tmp_path / "absent.csv")
    with pytest.raises(SystemExit, match="--std-scale: these members have validation"):
        main(["--members", *paths, "--std-scale", "1.5", "--data", absent])


def test_recorded_predictions_stand_in_for_their_models(tmp_path):
    """A study over the files ``--save-predictions`` wrote equals the study over the models;
    a recorded file answers only for its own crystals, in their order."""
    import numpy as np
    from ensemble_study import PREDICTIONS_SUFFIX, load_members, save_predictions, study

    from deepchem_cgcnn.registry import pretrained_card

    card, other_seed = (
        pretrained_card(n) for n in ("mp-band-gap-nonmetals", "mp-band-gap-nonmetals.1")
    )
    y = np.array([[0.0], [1.0], [2.0]])
    valid = SimpleNamespace(name="valid", y=y, ids=np.array(["mp-1", "mp-2", "mp-3"], object))
    test = SimpleNamespace(name="test", y=y, ids=np.array(["mp-4", "mp-5", "mp-6"], object))
    members = [
        _Fixed(card, [0.3, 1.0, 2.0], [0.1, 1.1, 2.0]),
        _Fixed(other_seed, [0.0, 1.6, 2.0], [0.0, 0.9, 2.3]),
    ]
    paths = [Path("work/export/a.pt"), Path("work/export/b.pt")]
    written = save_predictions(tmp_path, dict(zip(map(str, paths), members)), valid, test)
    assert [p.name for p in written] == ["a" + PREDICTIONS_SUFFIX, "b" + PREDICTIONS_SUFFIX]

    recorded = load_members(written)
    assert recorded[1].card.recipe["init_seed"] == other_seed.recipe["init_seed"]
    assert study(recorded, paths, valid, test) == study(members, paths, valid, test)

    shuffled = SimpleNamespace(name="valid", y=y, ids=valid.ids[::-1])
    with pytest.raises(SystemExit, match=r"a\.predictions\.npz: recorded on other crystals"):
        recorded[0].predict(shuffled)

    with np.load(written[0]) as arrays:
        damaged = {**arrays, "test": arrays["test"][:2]}
    np.savez(tmp_path / "damaged.predictions.npz", **damaged)
    with pytest.raises(SystemExit, match=r"damaged\.predictions\.npz: damaged \(3 ids"):
        load_members([tmp_path / "damaged.predictions.npz"])
