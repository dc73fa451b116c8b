"""Linear pooling: per-site contributions that add up exactly to the prediction."""

import numpy as np
import pytest
import torch

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.examples import example_structures

dc = import_deepchem()


def _dataset(mp_rows, mp_graphs, n=40):
    rows = np.arange(0, len(mp_rows), 9)[:n]
    return dc.data.NumpyDataset(
        np.array([mp_graphs[i] for i in rows], dtype=object),
        mp_rows.formation_energy_per_atom.to_numpy()[rows, None],
        ids=mp_rows.material_id.to_numpy()[rows],
    )


@pytest.fixture(scope="module")
def trained(mp_rows, mp_graphs):
    data = _dataset(mp_rows, mp_graphs)
    models = {}
    for pooling in ("linear-mean", "linear-sum"):
        torch.manual_seed(0)
        model = CGCNNModel(num_conv=2, batch_size=20, learning_rate=3e-3, pooling=pooling)
        model.fit(data, nb_epoch=4)
        models[pooling] = model
    return models, data


@pytest.mark.torch
@pytest.mark.parametrize("pooling, reduce", [("linear-mean", "mean"), ("linear-sum", "sum")])
def test_contributions_add_up_to_the_prediction(trained, pooling, reduce):
    models, data = trained
    model = models[pooling]
    table = model.atom_contributions(data)
    assert list(table.columns) == ["crystal", "site", "element", "Z", "contribution"]
    assert len(table) == sum(g.num_nodes for g in data.X)
    totals = table.groupby("crystal", sort=False)["contribution"].agg(reduce)
    prediction = dict(zip(data.ids, model.predict(data)[:, 0]))
    # float32 sums in another order: a few ulp (5e-7 relative seen on a -25.4 eV/cell sum)
    expected = [prediction[i] for i in totals.index]
    np.testing.assert_allclose(totals.to_numpy(), expected, rtol=2e-6, atol=1e-5)
    first = data.X[0]
    rows = table[table.crystal == data.ids[0]]
    assert rows.site.tolist() == list(range(first.num_nodes))
    assert rows.Z.tolist() == first.atomic_numbers.tolist()


@pytest.mark.torch
def test_contributions_of_structures_and_of_symmetry_equivalent_sites(trained):
    models, _ = trained
    model = models["linear-mean"]
    crystals = example_structures()
    table = model.atom_contributions([crystals["NaCl (rock salt)"], crystals["Cu (fcc)"]])
    assert set(table.crystal) == {0, 1}
    nacl = table[table.crystal == 0]
    # all Na sites of rock salt are equivalent, so are all Cl sites: equal contributions
    for element in ("Na", "Cl"):
        values = nacl[nacl.element == element].contribution.to_numpy()
        np.testing.assert_allclose(values, values[0], atol=1e-5)


@pytest.mark.torch
def test_linear_pooling_overfits_and_survives_save_and_restore(mp_rows, mp_graphs, tmp_path):
    data = _dataset(mp_rows, mp_graphs, n=24)
    torch.manual_seed(1)
    model = CGCNNModel(
        num_conv=2,
        batch_size=24,
        learning_rate=5e-3,
        pooling="linear-mean",
        model_dir=str(tmp_path),
    )
    model.fit(data, nb_epoch=150)
    error = np.abs(model.predict(data) - data.y).mean()
    assert error < 0.25 * data.y.std(), (error, data.y.std())
    model.save_checkpoint()
    restored = CGCNNModel(num_conv=2, batch_size=24, pooling="linear-mean", model_dir=str(tmp_path))
    restored.restore()
    np.testing.assert_allclose(restored.predict(data), model.predict(data), atol=1e-6)


def test_mean_pooling_has_no_exact_contributions_and_says_why():
    model = CGCNNModel(num_conv=1)
    graphs = CGCNNFeaturizer().featurize([example_structures()["Cu (fcc)"]])
    with pytest.raises(ValueError, match="not a sum of per-atom terms"):
        model.atom_contributions(dc.data.NumpyDataset(graphs))
    with pytest.raises(ValueError, match="regression only"):
        CGCNNModel(mode="classification", pooling="linear-mean")


@pytest.mark.torch
def test_explain_prints_site_contributions_that_add_up(monkeypatch, capsys):
    from types import SimpleNamespace

    from deepchem_cgcnn import registry
    from deepchem_cgcnn.cli import main

    torch.manual_seed(3)
    model = CGCNNModel(num_conv=2, pooling="linear-mean")
    model.fit_normalizer(np.array([[-1.0], [0.5], [2.0]]))
    model.card = SimpleNamespace(
        name="toy-linear",
        property="energy",
        units="eV/atom",
        model=model.hyperparameters,
        domain=None,
    )
    monkeypatch.setattr(registry, "available_pretrained", lambda: ["toy-linear"])
    monkeypatch.setattr(registry, "load_model", lambda name: model)
    monkeypatch.setattr(registry, "pretrained_card", lambda name: model.card)
    assert main(["explain", "--perovskite"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    crystals = example_structures()
    start = next(i for i, line in enumerate(lines) if line.startswith("SrTiO3"))
    header, sites = lines[start], lines[start + 1 : start + 6]
    assert [s.split()[2:4] for s in sites] == [
        ["Sr", "A"],
        ["Ti", "B"],
        ["O", "X"],
        ["O", "X"],
        ["O", "X"],
    ]
    total = float(header.split("energy ")[1].split()[0])
    values = [float(s.split()[-1]) for s in sites]
    assert total == pytest.approx(np.mean(values), abs=2e-3)
    graphs = CGCNNFeaturizer().featurize([crystals["SrTiO3 (cubic perovskite)"]])
    assert total == pytest.approx(
        float(model.predict(dc.data.NumpyDataset(graphs))[0, 0]), abs=1e-3
    )


@pytest.mark.torch
def test_explain_with_the_shipped_perovskite_model_adds_up_to_its_prediction(tmp_path, capsys):
    from deepchem_cgcnn.cli import main

    path = tmp_path / "SrTiO3.cif"
    example_structures()["SrTiO3 (cubic perovskite)"].to(filename=str(path))
    assert main(["explain", "--perovskite", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # a perovskite: inside the model's domain, explained without a word
    lines = out.splitlines()
    total = float(lines[0].split("heat of formation ")[1].split()[0])
    sites = [line.split() for line in lines[1:6]]
    assert [s[2:4] for s in sites] == [["Sr", "A"], ["Ti", "B"], ["O", "X"], ["O", "X"], ["O", "X"]]
    assert total == pytest.approx(sum(float(s[-1]) for s in sites), abs=3e-3)
    model = CGCNNModel.pretrained("castelli-perovskites-linear")
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize([str(path)])
    assert total == pytest.approx(
        float(model.predict(dc.data.NumpyDataset(graphs))[0, 0]), abs=1e-3
    )


@pytest.mark.torch
def test_explain_refuses_crystals_outside_the_models_domain(tmp_path, capsys):
    from deepchem_cgcnn.cli import main

    nacl, srtio3 = tmp_path / "NaCl.cif", tmp_path / "SrTiO3.cif"
    example_structures()["NaCl (rock salt)"].to(filename=str(nacl))
    example_structures()["SrTiO3 (cubic perovskite)"].to(filename=str(srtio3))
    assert main(["explain", str(nacl), str(srtio3)]) == 1
    out, err = capsys.readouterr()
    assert "NaCl.cif: not explained: castelli-perovskites-linear was trained on ABX3" in err
    assert "NaCl" not in out and out.startswith("SrTiO3.cif (SrTiO3): heat of formation")
    assert main(["explain", "--force", str(nacl)]) == 0
    assert capsys.readouterr().out.startswith("NaCl.cif (NaCl): heat of formation")
