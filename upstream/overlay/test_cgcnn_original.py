"""CGCNNModel without DGL: the paper's layer, target normalization, the original checkpoints."""
import os
import tempfile

import numpy as np
import pytest

import deepchem as dc
from deepchem.feat import CGCNNFeaturizer

try:
    import torch
    import torch.nn.functional as F
    from deepchem.models import CGCNNModel
    from deepchem.models.torch_models.cgcnn import GatedConv, batch_crystal_graphs
    has_torch = True
except ModuleNotFoundError:
    has_torch = False

try:
    from pymatgen.core import Lattice, Structure
    has_pymatgen = True
except ModuleNotFoundError:
    has_pymatgen = False

needs = pytest.mark.skipif(not (has_torch and has_pymatgen),
                           reason="needs torch and pymatgen")


def _crystals():
    rock_salts = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [x, y],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
        for a, x, y in [(5.64, "Na", "Cl"), (4.21, "Mg",
                                             "O"), (6.29, "K",
                                                    "Br"), (5.14, "Li", "Br")]
    ]
    cscl = [
        Structure(Lattice.cubic(a), [x, y], [[0, 0, 0], [0.5, 0.5, 0.5]])
        for a, x, y in [(4.12, "Cs", "Cl"), (3.43, "Ti",
                                             "Ni"), (2.95, "Fe", "Al")]
    ]
    return rock_salts + cscl


def _dataset(y=None):
    crystals = _crystals()
    X = CGCNNFeaturizer().featurize(crystals)
    if y is None:
        y = np.array([[s.volume / len(s)] for s in crystals])
    return dc.data.NumpyDataset(X, y)


@pytest.mark.torch
@needs
def test_gated_convolution_is_equation_5_with_two_batch_norms():
    torch.manual_seed(0)
    layer = GatedConv(8, 5).eval()
    for bn in (layer.bn1, layer.bn2):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    v = torch.randn(4, 8)
    u = torch.randn(6, 5)
    center = torch.tensor([0, 0, 1, 2, 3, 3])
    neighbor = torch.tensor([1, 2, 0, 3, 0, 1])
    z = layer.bn1(layer.fc_full(torch.cat([v[center], v[neighbor], u], dim=1)))
    gate, core = z.chunk(2, dim=1)
    messages = torch.sigmoid(gate) * F.softplus(core)
    summed = torch.zeros(4, 8).index_add(0, center, messages)
    expected = F.softplus(v + layer.bn2(summed))
    assert torch.allclose(layer(v, u, center, neighbor), expected, atol=1e-5)


@pytest.mark.torch
@needs
def test_regression_on_raw_labels_overfits_and_predicts_in_their_units():
    dataset = _dataset()
    model = CGCNNModel(batch_size=7, learning_rate=0.005)
    model.fit(dataset, nb_epoch=150)
    prediction = model.predict(dataset)
    assert np.abs(prediction - dataset.y).mean() < 0.1 * dataset.y.std()
    assert model.model.target_mean.item() == pytest.approx(dataset.y.mean(),
                                                           rel=1e-5)


@pytest.mark.torch
@needs
def test_a_uniform_batch_and_a_shuffled_one_give_the_same_output():
    graphs = CGCNNFeaturizer().featurize(_crystals())
    batch = batch_crystal_graphs(graphs)
    assert batch["uniform_degree"] == 12
    order = torch.randperm(len(batch["edge_center"]),
                           generator=torch.Generator().manual_seed(0))
    shuffled = {
        **batch, "edge_center": batch["edge_center"][order],
        "edge_neighbor": batch["edge_neighbor"][order],
        "edge_features": batch["edge_features"][order],
        "uniform_degree": 0
    }
    model = CGCNNModel().model.eval()
    assert torch.allclose(model(batch), model(shuffled), atol=1e-5)


@pytest.mark.torch
@needs
def test_save_and_restore_give_the_same_predictions():
    dataset = _dataset()
    model_dir = tempfile.mkdtemp()
    model = CGCNNModel(batch_size=7, model_dir=model_dir)
    model.fit(dataset, nb_epoch=3)
    reloaded = CGCNNModel(batch_size=7, model_dir=model_dir)
    reloaded.restore()
    assert np.allclose(model.predict(dataset),
                       reloaded.predict(dataset),
                       atol=1e-6)


def _original_checkpoint(path, mode="regression"):
    """A checkpoint in the original code's format: state_dict, normalizer, args."""
    torch.manual_seed(1)
    net = CGCNNModel(mode=mode, dropout=0.0).model
    state = {
        k: v for k, v in net.state_dict().items() if not k.startswith("target_")
    }
    for key in state:
        if key.endswith("running_var"):
            state[key] = torch.rand_like(state[key]) + 0.5
    torch.save(
        {
            "epoch": 30,
            "state_dict": state,
            "normalizer": {
                "mean": torch.tensor(-1.5),
                "std": torch.tensor(0.8)
            },
            "args": {
                "task": mode
            },
            "best_mae_error": 0.04
        }, path)
    return state


@pytest.mark.torch
@needs
def test_from_cgcnn_checkpoint_loads_weights_and_normalizer():
    path = os.path.join(tempfile.mkdtemp(), "model_best.pth.tar")
    state = _original_checkpoint(path)
    model = CGCNNModel.from_cgcnn_checkpoint(path)
    for key, value in state.items():
        assert torch.equal(model.model.state_dict()[key], value), key
    dataset = _dataset()
    batch = batch_crystal_graphs(dataset.X)
    net = model.model.eval()
    with torch.no_grad():
        normalized = net(batch)
    assert np.allclose(model.predict(dataset), normalized.numpy(), atol=1e-6)
    assert net.target_std.item() == pytest.approx(0.8)


@pytest.mark.torch
@needs
def test_from_cgcnn_checkpoint_classifier_gives_probabilities():
    path = os.path.join(tempfile.mkdtemp(), "model_best.pth.tar")
    _original_checkpoint(path, mode="classification")
    model = CGCNNModel.from_cgcnn_checkpoint(path)
    probabilities = model.predict(_dataset(np.zeros((7, 1))))
    assert probabilities.shape == (7, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.torch
def test_a_file_that_is_not_a_checkpoint_is_refused():
    from deepchem.models.torch_models.cgcnn import CheckpointError
    path = os.path.join(tempfile.mkdtemp(), "broken.pth.tar")
    with open(path, "wb") as handle:
        handle.write(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth.tar"):
        CGCNNModel.from_cgcnn_checkpoint(path)


@pytest.mark.torch
def test_a_checkpoint_of_the_dgl_model_is_refused_with_the_reason():
    model_dir = tempfile.mkdtemp()
    model = CGCNNModel(model_dir=model_dir)
    model._ensure_built()
    old = {
        "conv_layers.0.linear.weight": torch.zeros(128, 169),
        "embedding.weight": torch.zeros(64, 92)
    }
    torch.save(
        {
            "model_state_dict": old,
            "optimizer_state_dict": {},
            "global_step": 1
        }, os.path.join(model_dir, "checkpoint1.pt"))
    with pytest.raises(ValueError, match="DGL-based CGCNNModel"):
        model.restore()


@pytest.mark.torch
def test_classification_without_dropout_warns_of_the_coming_default():
    with pytest.warns(FutureWarning, match="0.5"):
        CGCNNModel(mode="classification")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CGCNNModel(mode="classification", dropout=0.0)
