"""The resident training path: the same batches as DeepChem's loop, gathered on the device."""

import deepchem as dc
import numpy as np
import pytest
import torch

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
from deepchem_cgcnn.graph import batch_graphs
from deepchem_cgcnn.resident import ResidentGraphs


@pytest.fixture(scope="module")
def mixed_graphs(mp_rows):
    """Real crystals with a varying number of edges per atom ('complete' keeps ties)."""
    return CGCNNFeaturizer(selection="complete").featurize(list(mp_rows.cif[:60]))


@pytest.mark.torch
@pytest.mark.parametrize("selection", ["cgcnn", "complete"])
def test_a_resident_batch_equals_the_collated_one(mp_rows, selection):
    graphs = CGCNNFeaturizer(selection=selection).featurize(list(mp_rows.cif[:60]))
    resident = ResidentGraphs(graphs, None, None, torch.device("cpu"))
    assert (resident.uniform_degree == 12) == (selection == "cgcnn")
    index = np.random.RandomState(0).permutation(60)[:23]
    batch = resident.batch(index)
    expected = batch_graphs([graphs[i] for i in index])
    for key in ("atomic_numbers", "edge_center", "edge_neighbor", "edge_distance", "crystal_index"):
        assert np.array_equal(batch[key].numpy(), getattr(expected, key)), key
    assert batch["n_crystals"] == expected.n_crystals
    assert batch["uniform_degree"] == expected.uniform_degree


def _fit(dataset, resident, **kwargs):
    torch.manual_seed(0)
    model = CGCNNModel(
        num_conv=2, batch_size=16, learning_rate=2e-3, resident=resident, log_frequency=1, **kwargs
    )
    np.random.seed(0)
    losses: list[float] = []
    model.fit(dataset, nb_epoch=3, all_losses=losses)
    return model, losses


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["regression", "classification"])
def test_fit_gives_the_same_losses_and_predictions_resident_or_not(mixed_graphs, mp_rows, mode):
    label = "formation_energy_per_atom" if mode == "regression" else "is_metal"
    y = mp_rows[label].to_numpy(dtype=float)[:60, None]
    dataset = dc.data.NumpyDataset(mixed_graphs, y)
    kwargs = {"mode": mode} if mode == "regression" else {"mode": mode, "dropout": 0.0}
    collated, collated_losses = _fit(dataset, False, **kwargs)
    resident, resident_losses = _fit(dataset, True, **kwargs)
    assert collated._resident_cache == [] and len(resident._resident_cache) == 1
    assert len(resident_losses) == len(collated_losses) == 12  # 3 epochs of 4 batches
    assert resident_losses == pytest.approx(collated_losses, rel=1e-5, abs=1e-7)
    # CPU training is not bit-reproducible across runs (multithreaded reductions): two runs of
    # the same collated path differ by up to ~5e-5 in these predictions after 12 steps.
    assert np.allclose(
        resident.predict(dataset, warn_domain=False),
        collated.predict(dataset, warn_domain=False),
        atol=2e-4,
    )


@pytest.mark.torch
def test_the_resident_path_is_the_default_for_in_memory_datasets_only(mixed_graphs, tmp_path):
    y = np.arange(len(mixed_graphs), dtype=float)[:, None]
    model = CGCNNModel(num_conv=1, batch_size=32)
    in_memory = dc.data.NumpyDataset(mixed_graphs, y)
    model.fit(in_memory, nb_epoch=1)
    assert len(model._resident_cache) == 1
    disk = dc.data.DiskDataset.from_numpy(mixed_graphs, y, data_dir=str(tmp_path))
    model.fit(disk, nb_epoch=1)
    assert len(model._resident_cache) == 1
    model.resident = True
    model.fit(disk, nb_epoch=1)
    assert len(model._resident_cache) == 2
    del in_memory  # a dataset that is gone releases its device copy
    model.fit(disk, nb_epoch=1)
    assert len(model._resident_cache) == 1


@pytest.mark.torch
def test_labels_changed_in_place_are_not_served_from_a_stale_device_copy(mixed_graphs, mp_rows):
    y = mp_rows["formation_energy_per_atom"].to_numpy(dtype=float)[:60, None].copy()
    dataset = dc.data.NumpyDataset(mixed_graphs, y)
    losses = {}
    for resident in (True, False):
        torch.manual_seed(0)
        model = CGCNNModel(num_conv=1, batch_size=16, resident=resident, log_frequency=1)
        np.random.seed(0)
        model.fit(dataset, nb_epoch=1)  # the resident model makes its device copy here
        dataset.y[:] = -dataset.y  # NumpyDataset hands out its own array: changed in place
        np.random.seed(1)
        losses[resident] = []
        model.fit(dataset, nb_epoch=1, all_losses=losses[resident])
        dataset.y[:] = -dataset.y  # back, for the other model
    assert losses[True] == pytest.approx(losses[False], rel=1e-5, abs=1e-7)


@pytest.mark.torch
@pytest.mark.parametrize("resident", [True, False])
def test_predict_batch_size_sets_the_prediction_batches_not_the_predictions(
    mixed_graphs, mp_rows, resident
):
    """Prediction runs batch norm on its running statistics, so a crystal's prediction does
    not depend on the crystals batched with it: only speed does."""
    y = mp_rows.formation_energy_per_atom.to_numpy(dtype=float)[:60, None]
    dataset = dc.data.NumpyDataset(mixed_graphs, y)
    model, _ = _fit(dataset, resident)
    model.predict_batch_size = 7
    assert len(list(model.default_generator(dataset, mode="predict"))) == 9  # 60 = 8 * 7 + 4
    assert len(list(model.default_generator(dataset, mode="fit"))) == 4  # batch_size 16
    in_sevens = model.predict(dataset, warn_domain=False)
    model.predict_batch_size = 1000
    assert len(list(model.default_generator(dataset, mode="predict"))) == 1
    np.testing.assert_allclose(model.predict(dataset, warn_domain=False), in_sevens, atol=1e-5)
    model.predict_batch_size = None
    np.testing.assert_allclose(model.predict(dataset, warn_domain=False), in_sevens, atol=1e-5)
    with pytest.raises(ValueError, match="predict_batch_size must be at least 1"):
        CGCNNModel(predict_batch_size=0)


@pytest.mark.torch
@pytest.mark.parametrize("selection", ["cgcnn", "complete"])
def test_a_padded_batch_gives_the_same_outputs_gradients_and_statistics(mp_rows, selection):
    """Padding atoms and edges, with the batch norms' statistics masked to the real rows,
    changes nothing a training step computes."""
    from deepchem_cgcnn.model import CGCNN
    from deepchem_cgcnn.resident import padded_size

    graphs = CGCNNFeaturizer(selection=selection).featurize(list(mp_rows.cif[:40]))
    resident = ResidentGraphs(graphs, None, None, torch.device("cpu"))
    index = np.random.RandomState(1).permutation(40)[:17]
    plain, padded = resident.batch(index), resident.batch(index, pad=True)
    n_atoms, n_edges = len(plain["atomic_numbers"]), len(plain["edge_center"])
    assert len(padded["atomic_numbers"]) == padded_size(n_atoms) > n_atoms
    assert len(padded["edge_center"]) == padded_size(n_edges) > n_edges
    assert int(padded["atom_valid"].sum()) == n_atoms and int(padded["edge_valid"].sum()) == n_edges

    results = []
    for batch in (plain, padded):
        torch.manual_seed(0)
        model = CGCNN(num_conv=2).train()
        out = model(batch)
        (out**2).sum().backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        stats = {k: b.clone() for k, b in model.named_buffers() if "running" in k}
        results.append((out.detach(), grads, stats))
    (out_a, grads_a, stats_a), (out_b, grads_b, stats_b) = results
    assert out_b.shape == out_a.shape == (17, 1)
    torch.testing.assert_close(out_b, out_a, rtol=1e-5, atol=1e-6)
    for name in grads_a:
        if name.endswith("fc_full.bias"):  # batch norm cancels it: its gradient is float noise
            assert grads_a[name].abs().max() < 1e-4 and grads_b[name].abs().max() < 1e-4
            continue
        scale = float(grads_a[name].abs().max())  # float32 sums in another order
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-5 * scale)
    for name in stats_a:
        torch.testing.assert_close(stats_b[name], stats_a[name], rtol=1e-5, atol=1e-6)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(plain), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_fit_with_static_shapes_gives_the_same_losses(mixed_graphs, mp_rows):
    y = mp_rows.formation_energy_per_atom.to_numpy(dtype=float)[:60, None]
    dataset = dc.data.NumpyDataset(mixed_graphs, y)
    plain, plain_losses = _fit(dataset, True)
    static, static_losses = _fit(dataset, True, static_shapes=True)
    assert static_losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)
    assert np.allclose(
        static.predict(dataset, warn_domain=False),
        plain.predict(dataset, warn_domain=False),
        atol=2e-4,
    )
