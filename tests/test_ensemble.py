"""Ensembles: exact mean/std identities, calibration, and the CLI's ± column."""

import warnings

import numpy as np
import pytest
import torch

from deepchem_cgcnn import CGCNNModel
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.ensemble import CGCNNEnsemble, calibration

dc = import_deepchem()


@pytest.fixture(scope="module")
def members_and_data(mp_rows, mp_graphs):
    rows = np.arange(0, len(mp_rows), 10)[:32]
    data = dc.data.NumpyDataset(
        np.array([mp_graphs[i] for i in rows], dtype=object),
        mp_rows.formation_energy_per_atom.to_numpy()[rows, None],
    )
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = CGCNNModel(num_conv=2, batch_size=16)
        model.fit(data, nb_epoch=3)
        members.append(model)
    return members, data


@pytest.mark.torch
def test_ensemble_mean_and_std_are_those_of_its_members(members_and_data):
    members, data = members_and_data
    each = np.stack([m.predict(data) for m in members])
    mean, std = CGCNNEnsemble(members).predict_uncertainty(data)
    np.testing.assert_allclose(mean, each.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, each.std(axis=0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(CGCNNEnsemble(members).predict(data), mean, rtol=1e-6)
    assert (std > 0).all()  # different seeds disagree


@pytest.mark.torch
def test_ensemble_refuses_a_single_member_or_mixed_modes(members_and_data):
    members, _ = members_and_data
    with pytest.raises(ValueError, match="at least 2"):
        CGCNNEnsemble(members[:1])
    with pytest.raises(ValueError, match="mix modes"):
        CGCNNEnsemble([members[0], CGCNNModel(mode="classification")])


def test_calibration_of_exact_gaussian_errors_and_of_an_overconfident_model():
    rng = np.random.default_rng(1)
    truth = rng.normal(0.0, 2.0, size=200_000)
    honest = calibration(truth, np.zeros_like(truth), np.full_like(truth, 2.0))
    for k, expected in ((1, 0.6827), (2, 0.9545), (3, 0.9973)):
        assert honest[f"within_{k}_sigma"] == pytest.approx(expected, abs=0.005)
        assert honest[f"gaussian_{k}_sigma"] == pytest.approx(expected, abs=1e-4)
    overconfident = calibration(truth, np.zeros_like(truth), np.full_like(truth, 0.5))
    assert overconfident["within_1_sigma"] < 0.25
    mixed = calibration([1.0, np.nan, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0])
    assert mixed["n"] == 1 and mixed["within_1_sigma"] == 1.0  # only the last entry is usable
    with pytest.raises(ValueError, match="no entry"):
        calibration([np.nan], [0.0], [1.0])


@pytest.mark.torch
def test_predict_prints_mean_and_sigma_of_the_shipped_ensemble(capsys):
    """The CLI's mean ± sigma for the shipped three-seed perovskite ensemble: the members'
    mean and their scaled spread, which is not zero."""
    import re

    from deepchem_cgcnn import CGCNNFeaturizer
    from deepchem_cgcnn.cli import main
    from deepchem_cgcnn.examples import example_structures

    assert main(["predict", "--model", "castelli-perovskites"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = re.split(r"\s{2,}", lines[0])
    rows = {r[0]: dict(zip(header, r)) for r in (re.split(r"\s{2,}", line) for line in lines[1:])}
    ensemble = CGCNNEnsemble.pretrained("castelli-perovskites")
    assert len(ensemble) == 3 and ensemble.std_scale > 1
    crystals = example_structures()
    graphs = CGCNNFeaturizer(**ensemble.featurizer_params).featurize(list(crystals.values()))
    mean, std = ensemble.predict_uncertainty(dc.data.NumpyDataset(graphs))
    column = "heat of formation (eV/cell)"
    for k, name in enumerate(crystals):
        printed_mean, printed_std = rows[name][column].split(" ± ")
        assert float(printed_mean) == pytest.approx(mean[k, 0], abs=6e-4)
        assert float(printed_std) == pytest.approx(std[k, 0], abs=6e-4)
    assert (std[:, 0] > 0.01).all()


@pytest.mark.torch
def test_fitted_std_scale_calibrates_the_median_error_and_scales_sigma(members_and_data):
    members, data = members_and_data
    ensemble = CGCNNEnsemble(members)
    mean, raw = ensemble.predict_uncertainty(data)
    scale = ensemble.fit_std_scale(data)
    _, scaled = ensemble.predict_uncertainty(data)
    np.testing.assert_allclose(scaled, scale * raw, rtol=1e-6)
    z = np.abs(data.y - mean) / scaled
    assert np.median(z) == pytest.approx(0.6744897501960817, rel=1e-6)
    made = ensemble.member_predictions(data)
    assert ensemble.fit_std_scale(data, made) == scale
    assert ensemble.fit_std_scale(data, made * 2) != scale  # the predictions given are used
    assert CGCNNEnsemble(members, std_scale=2.0).predict_uncertainty(data)[1] == pytest.approx(
        2 * raw
    )
    with pytest.raises(ValueError, match="positive"):
        CGCNNEnsemble(members, std_scale=0.0)
    classifiers = CGCNNEnsemble([CGCNNModel(mode="classification", num_conv=1) for _ in range(2)])
    with pytest.raises(ValueError, match="regression"):
        classifiers.fit_std_scale(data)


@pytest.mark.torch
def test_fitting_the_std_scale_warns_when_members_trained_on_the_validation_crystals(
    members_and_data,
):
    """A refit member's validation predictions are in-sample: a scale fitted there is too small."""
    from types import SimpleNamespace

    members, data = members_and_data
    ensemble = CGCNNEnsemble(members)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validated = ensemble.fit_std_scale(data)
    assert not [w for w in caught if "refit" in str(w.message)]
    members[1].card = SimpleNamespace(name="mp-formation-energy.1", is_refit=True)
    try:
        with pytest.warns(UserWarning, match="members mp-formation-energy.1 were refit"):
            assert ensemble.fit_std_scale(data) == validated  # answered, with the warning
    finally:
        members[1].card = None


@pytest.mark.torch
def test_members_trained_on_other_crystals_are_held_to_the_domain_they_share(members_and_data):
    """A member refit on more crystals does not widen the domain of an ensemble whose other
    members never saw them: each element counts as often as the member that saw it least."""
    from deepchem_cgcnn.domain import DomainWarning, formula_of

    members, data = members_and_data
    saved = [m.training_counts for m in members]
    symbols = sorted({s for g in data.X for s in _symbols(g)})
    plenty = {kind: dict.fromkeys(symbols, 100) for kind in ("elements", "elemental_crystals")}
    rare = symbols[0]
    fewer = {kind: dict(table) for kind, table in plenty.items()}
    fewer["elements"][rare] = 3
    holding = [i for i, g in enumerate(data.X) if rare in _symbols(g)]
    try:
        members[0].training_counts = members[1].training_counts = plenty
        members[2].training_counts = fewer
        assert all(r.in_domain for r in members[0].check_domain(data))
        records = CGCNNEnsemble(members).check_domain(data)
        assert holding and [i for i, r in enumerate(records) if not r.in_domain] == holding
        assert records[holding[0]].flags == [
            f"element {rare} is in 3 training crystals (fewer than 10)"
        ]
        assert records[holding[0]].formula == formula_of(data.X[holding[0]])
        with pytest.warns(DomainWarning, match=f"{len(holding)} of {len(data)} crystals"):
            CGCNNEnsemble(members).predict(data)
        members[1].training_counts = None  # e.g. an original checkpoint: no counts
        records = CGCNNEnsemble(members).check_domain(data)  # the others still hold
        assert [i for i, r in enumerate(records) if not r.in_domain] == holding
        members[1].training_counts = members[2].training_counts = plenty
        assert all(r.in_domain for r in CGCNNEnsemble(members).check_domain(data))
    finally:
        for member, counts in zip(members, saved):
            member.training_counts = counts


def _symbols(graph) -> set[str]:
    from pymatgen.core.periodic_table import Element

    return {Element.from_Z(int(z)).symbol for z in np.unique(graph.atomic_numbers)}


@pytest.mark.torch
@pytest.mark.shared  # the whole Castelli table, for the validation split
def test_shipped_std_scale_is_refitted_from_the_validation_split(tmp_path):
    """Recompute the shipped ensemble's sigma scale on its validation split (seed 123) rather
    than reading it back from the card."""
    from conftest import CASTELLI_TABLE, need

    from deepchem_cgcnn import CGCNNFeaturizer, MaterialsProjectLoader, pretrained_card
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter

    ensemble = CGCNNEnsemble.pretrained("castelli-perovskites")
    recorded = ensemble.std_scale
    _, (_, valid, _), _ = MaterialsProjectLoader(
        str(need(CASTELLI_TABLE)),
        tasks=["heat_all"],
        featurizer=CGCNNFeaturizer(**ensemble.featurizer_params),
        splitter=CGCNNRandomSplitter(seed=123),
        save_dir=str(tmp_path),
        reload=False,
    ).load()
    assert len(valid) == pretrained_card("castelli-perovskites").split["sizes"][1]
    assert ensemble.fit_std_scale(valid) == pytest.approx(recorded, abs=1e-3)


# what makes two members' training alike, with the initial weights (budgets and outcomes may differ)
RECIPE = (
    "name",
    "optimizer",
    "learning_rate",
    "schedule",
    "batch_size",
    "weight_decay",
    "momentum",
    "weight_average",
    "loss",
)


@pytest.mark.torch
def test_every_shipped_ensemble_carries_its_std_scale_and_members_trained_alike():
    """Each shipped name with members loads as their ensemble, with the σ scale and member
    count its card records; the members share task, data, split and featurizer, and no two
    were trained alike (initial weights or recipe differ: `mp-formation-energy`, `.1`, `.2`
    and `.3` are trained on the absolute error from seeds 123, 1, 2 and 3, `.4` on the squared
    error from seed 2, `.5` on the absolute error from seed 4, chosen by validation)."""
    from deepchem_cgcnn import available_pretrained, load_pretrained_predictor, pretrained_card
    from deepchem_cgcnn.registry import ensemble_members

    names = [n for n in available_pretrained() if len(ensemble_members(n)) > 1]
    assert "castelli-perovskites" in names
    for name in names:
        ensemble = load_pretrained_predictor(name)
        recorded = pretrained_card(name).extra["ensemble"]
        assert isinstance(ensemble, CGCNNEnsemble) and len(ensemble) == recorded["members"], name
        assert ensemble.std_scale == recorded["std_scale"] > 1, name  # seeds are over-confident
        assert ensemble.card.name == name and ensemble.card.extra["ensemble"] == recorded
        cards = [pretrained_card(member) for member in ensemble_members(name)]
        first = cards[0]
        for card in cards[1:]:
            assert (card.task, card.featurizer, card.data["sha256"], _split(card)) == (
                first.task,
                first.featurizer,
                first.data["sha256"],
                _split(first),
            ), card.name
        trainings = {
            (card.recipe["init_seed"], *(str(card.recipe.get(k)) for k in RECIPE)) for card in cards
        }
        assert len(trainings) == len(cards), name


def _split(card) -> dict:
    """The crystals a card's split made (how each member then chose its epoch may differ)."""
    return {key: value for key, value in card.split.items() if key != "model_selection"}
