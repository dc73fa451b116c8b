"""The band gap for any crystal: the non-metals model behind the metallicity classifier."""

import types

import numpy as np
import pytest

from deepchem_cgcnn import GatedRegressor, load_pretrained_predictor, pretrained_card
from deepchem_cgcnn.examples import example_structures


@pytest.fixture(scope="module")
def crystals():
    return example_structures()


@pytest.mark.torch
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.9])
def test_the_gate_answers_zero_exactly_where_the_classifier_calls_a_metal(crystals, threshold):
    regressor = load_pretrained_predictor("mp-band-gap-nonmetals")
    classifier = load_pretrained_predictor("mp-metallicity")
    gate = GatedRegressor(regressor, classifier, threshold=threshold)
    dataset = gate.featurize(list(crystals.values()))
    p_metal = np.asarray(classifier.predict(dataset))[:, 1]
    alone, _ = regressor.predict_uncertainty(dataset)
    gated, std = gate.predict_uncertainty(dataset)
    metal = p_metal >= threshold
    assert 0 < metal.sum() < len(metal)  # both branches are exercised
    assert np.all(gated[metal, 0] == 0.0) and np.all(np.isnan(std[metal, 0]))
    np.testing.assert_allclose(gated[~metal, 0], alone[~metal, 0], rtol=0, atol=1e-6)
    assert np.all(np.isfinite(std[~metal, 0]) & (std[~metal, 0] > 0))
    flagged = [
        any("a metal by mp-metallicity" in f for f in record.flags)
        for record in gate.check_domain(dataset, with_formula=False)
    ]
    assert flagged == list(metal)
    calls = []
    classify = classifier.predict
    classifier.predict = lambda data: calls.append(1) or classify(data)
    together, together_std, records = gate.predict_with_domain(dataset, with_formula=False)
    assert len(calls) == 1  # one classifier pass for the answer and its flags
    np.testing.assert_array_equal(together, gated)
    np.testing.assert_array_equal(together_std, std)
    assert [any("a metal by" in f for f in r.flags) for r in records] == flagged


@pytest.mark.torch
def test_shipped_band_gap_answers_through_the_gate_chosen_on_validation(crystals):
    """`mp-band-gap` answers with the non-metals ensemble behind `mp-metallicity` because the
    gate beat the all-crystal model on validation (its card records both scores); a metal
    gets 0 eV and says why, an ionic insulator a wide gap with a σ."""
    card = pretrained_card("mp-band-gap")
    gate = card.extra["gate"]
    assert gate["mae"]["valid"]["gated"] < gate["mae"]["valid"]["this_model"]
    assert pretrained_card(gate["regressor"]).domain  # never a default column on its own
    predictor = load_pretrained_predictor("mp-band-gap")
    assert isinstance(predictor, GatedRegressor) and predictor.card.name == "mp-band-gap"
    assert predictor.threshold == gate["threshold"]
    picked = [crystals["Cu (fcc)"], crystals["NaCl (rock salt)"]]
    dataset = predictor.featurize(picked)
    gap, std = predictor.predict_uncertainty(dataset)
    assert gap[0, 0] == 0.0 and 4.0 < gap[1, 0] < 7.0  # MP (PBE): NaCl 5.0 eV
    assert np.isfinite(std[1, 0]) and std[1, 0] > 0
    flags = predictor.check_domain(dataset, with_formula=False)[0].flags
    assert flags[0].startswith("a metal by mp-metallicity (P(metal) = ")


def test_the_gate_refuses_models_made_for_other_graphs_and_thresholds_outside_0_1():
    def stub(**settings):
        return types.SimpleNamespace(featurizer_params={"radius": 8.0, **settings})

    with pytest.raises(ValueError, match="different featurizer settings"):
        GatedRegressor(stub(), stub(radius=6.0))
    for threshold in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            GatedRegressor(stub(), stub(), threshold=threshold)
