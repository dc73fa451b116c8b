"""CGCNNModel: original checkpoints, DeepChem API, training, save/restore, the factored layer."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import PRETRAINED, REFERENCE, need

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, CheckpointError
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.layers import GatedConv

dc = import_deepchem()
CHECKPOINTS = [
    "band-gap",
    "bulk-moduli",
    "efermi",
    "final-energy-per-atom",
    "formation-energy-per-atom",
    "poisson-ratio",
    "semi-metal-classification",
    "shear-moduli",
]


def real_dataset(mp_rows, mp_graphs, column, n=48):
    """``n`` real MP crystals, every 8th of the table's first 400 (its first rows are mostly
    elements, whose formation energy is ~0)."""
    rows = np.arange(0, len(mp_rows), 8)[:n]
    return dc.data.NumpyDataset(
        np.array([mp_graphs[i] for i in rows], dtype=object),
        mp_rows[column].to_numpy(dtype=float)[rows, None],
        ids=mp_rows.material_id.to_numpy()[rows],
    )


# ---------------------------------------------------------------- original checkpoints
@pytest.mark.torch
@pytest.mark.shared  # seven of the eight checkpoints live only in ../shared
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_original_checkpoint_reproduces_reference(name, reference_cifs):
    reference = pd.read_csv(need(REFERENCE / "reference_predictions.csv"))
    model = CGCNNModel.from_cgcnn_checkpoint(str(need(PRETRAINED / f"{name}.pth.tar")))
    graphs = CGCNNFeaturizer().featurize([str(p) for p in reference_cifs])
    ids = [int(p.stem) for p in reference_cifs]
    prediction = model.predict(dc.data.NumpyDataset(graphs))
    if name == "semi-metal-classification":
        assert prediction.shape == (10, 2)
        np.testing.assert_allclose(prediction.sum(axis=1), 1.0, atol=1e-6)
        prediction = prediction[:, 1]
    else:
        prediction = prediction[:, 0]
    expected = reference[reference.model == name].set_index("cif_id").loc[ids, "prediction"]
    np.testing.assert_allclose(prediction, expected.to_numpy(), atol=1e-5, rtol=0)


@pytest.mark.torch
def test_checkpoint_predictions_do_not_depend_on_batching(mp_graphs):
    """The same numbers for any structure, alone or in any batch (eval-mode batch norm)."""
    model = CGCNNModel.from_cgcnn_checkpoint(
        str(need(PRETRAINED / "formation-energy-per-atom.pth.tar")), batch_size=64
    )
    graphs = np.array(list(mp_graphs[:50]), dtype=object)
    together = model.predict(dc.data.NumpyDataset(graphs))
    alone = np.concatenate([model.predict_on_batch(graphs[i : i + 1]) for i in range(0, 50, 7)])
    np.testing.assert_allclose(alone, together[::7], atol=1e-5)


@pytest.mark.torch
def test_checkpoint_with_other_edge_features_is_refused_in_words():
    with pytest.raises(CheckpointError, match="trained on 41 Gaussian edge features.*give 46"):
        CGCNNModel.from_cgcnn_checkpoint(
            str(need(PRETRAINED / "formation-energy-per-atom.pth.tar")), radius=9.0
        )


# ---------------------------------------------------------------- the factored gated layer
def concatenating_gated_conv(layer, atom_fea, edge_fea, center, neighbor):
    """The original ConvLayer's arithmetic on an edge list: builds the (E, 2A+B) concatenation."""
    z = torch.cat([atom_fea[center], atom_fea[neighbor], edge_fea], dim=1)
    z = layer.bn1(layer.fc_full(z))
    nbr_filter, nbr_core = z.chunk(2, dim=1)
    messages = torch.sigmoid(nbr_filter) * F.softplus(nbr_core)
    summed = torch.zeros_like(atom_fea).index_add_(0, center, messages)
    return F.softplus(atom_fea + layer.bn2(summed))


@pytest.mark.torch
@pytest.mark.parametrize("train", [True, False])
def test_factored_layer_equals_concatenation(train):
    torch.manual_seed(0)
    layer = GatedConv(16, 41).train(train)
    if not train:
        layer.bn1.running_mean.normal_()
        layer.bn2.running_var.uniform_(0.5, 2)
    atom_fea = torch.randn(30, 16)
    edge_fea = torch.rand(360, 41)
    center = torch.arange(30).repeat_interleave(12)
    neighbor = torch.randint(0, 30, (360,))
    expected = concatenating_gated_conv(layer, atom_fea, edge_fea, center, neighbor)
    for degree in (0, 12):
        got = layer(atom_fea, edge_fea, center, neighbor, degree)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- DeepChem API and shapes
@pytest.mark.torch
@pytest.mark.parametrize(
    "mode, n_tasks, shape",
    [
        ("regression", 1, (12, 1)),
        ("regression", 3, (12, 3)),
        ("classification", 1, (12, 2)),
        ("classification", 3, (12, 3, 2)),
    ],
)
def test_prediction_shapes(mode, n_tasks, shape, mp_graphs):
    model = CGCNNModel(n_tasks=n_tasks, mode=mode, batch_size=5)
    prediction = model.predict(dc.data.NumpyDataset(np.array(list(mp_graphs[:12]), dtype=object)))
    assert prediction.shape == shape
    if mode == "classification":
        np.testing.assert_allclose(prediction.sum(axis=-1), 1.0, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("conv, pooling", [("gated", "mean"), ("simple", "mean"), ("gated", "max")])
def test_overfit_regression(conv, pooling, mp_rows, mp_graphs):
    """Both convolutions and every pooling fit 48 real formation energies."""
    data = real_dataset(mp_rows, mp_graphs, "formation_energy_per_atom", n=48)
    torch.manual_seed(0)
    model = CGCNNModel(conv=conv, pooling=pooling, batch_size=48, learning_rate=3e-3)
    spread = np.abs(data.y - data.y.mean()).mean()
    model.fit(data, nb_epoch=200, checkpoint_interval=0)
    mae = np.abs(model.predict(data) - data.y).mean()
    assert mae < 0.1 * spread, (mae, spread)


@pytest.mark.torch
def test_l1_loss_is_the_normalized_mean_absolute_error_and_overfits(mp_rows, mp_graphs):
    """regression_loss='l1': the loss of a batch is its weighted mean |error| / target std
    (missing labels masked), and it fits 24 real formation energies as the squared loss does."""
    data = real_dataset(mp_rows, mp_graphs, "formation_energy_per_atom", n=24)
    torch.manual_seed(0)
    model = CGCNNModel(num_conv=2, batch_size=24, learning_rate=3e-3, regression_loss="l1")
    spread = np.abs(data.y - data.y.mean()).mean()
    model.fit(data, nb_epoch=120, checkpoint_interval=0)
    prediction = model.predict(data)
    assert np.abs(prediction - data.y).mean() < 0.1 * spread
    y, w = data.y.copy(), np.ones_like(data.y)
    y[0], w[1] = np.nan, 0.0
    loss = model._normalized_l1(
        [torch.as_tensor(prediction)], [torch.as_tensor(y)], [torch.as_tensor(w)]
    )
    std = float(model.model.target_std)
    expected = np.abs(prediction - data.y)[2:].sum() / std / len(y)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="regression_loss 'l2': choose from"):
        CGCNNModel(regression_loss="l2")


@pytest.mark.torch
def test_overfit_classification_and_evaluate(mp_rows, mp_graphs):
    data = real_dataset(mp_rows, mp_graphs, "is_metal", n=64)
    torch.manual_seed(0)
    model = CGCNNModel(mode="classification", n_classes=2, batch_size=32, learning_rate=3e-3)
    model.fit(data, nb_epoch=100, checkpoint_interval=0)
    scores = model.evaluate(data, [dc.metrics.Metric(dc.metrics.roc_auc_score)], n_classes=2)
    assert scores["roc_auc_score"] > 0.98


@pytest.mark.torch
def test_multitask_classification_overfits_each_task(mp_rows, mp_graphs):
    """Two classification tasks on rows where both vary (and do not copy each other): the
    model learns each one (training ROC-AUC per task)."""
    from sklearn.metrics import roc_auc_score

    metal = mp_rows.is_metal.to_numpy(dtype=float)
    stable = (mp_rows.formation_energy_per_atom.to_numpy() < -0.5).astype(float)
    rows = np.concatenate([np.flatnonzero(metal == 0)[:32], np.flatnonzero(metal == 1)[:32]])
    y = np.stack([metal[rows], stable[rows]], 1)
    assert all(0.15 < y[:, k].mean() < 0.85 for k in range(2))
    assert (y[:, 0] != y[:, 1]).mean() > 0.2
    data = dc.data.NumpyDataset(np.array([mp_graphs[i] for i in rows], dtype=object), y)
    torch.manual_seed(0)
    model = CGCNNModel(mode="classification", n_tasks=2, batch_size=32, learning_rate=3e-3)
    first = model.fit(data, nb_epoch=1, checkpoint_interval=0)
    last = model.fit(data, nb_epoch=80, checkpoint_interval=0)
    assert last < 0.5 * first
    probabilities = model.predict(data)
    assert probabilities.shape == (64, 2, 2)
    for task in range(2):
        assert roc_auc_score(y[:, task], probabilities[:, task, 1]) > 0.95, task


@pytest.mark.torch
def test_normalization_transformer_also_works(mp_rows, mp_graphs):
    data = real_dataset(mp_rows, mp_graphs, "band_gap", n=48)
    transformer = dc.trans.NormalizationTransformer(transform_y=True, dataset=data)
    normalized = transformer.transform(data)
    model = CGCNNModel(batch_size=48, learning_rate=3e-3)
    model.fit(normalized, nb_epoch=200, checkpoint_interval=0)
    scores = model.evaluate(
        normalized, [dc.metrics.Metric(dc.metrics.mean_absolute_error)], [transformer]
    )
    assert scores["mean_absolute_error"] < 0.15 * np.abs(data.y - data.y.mean()).mean()


@pytest.mark.torch
def test_save_and_restore_reproduce_predictions(mp_rows, mp_graphs, tmp_path):
    data = real_dataset(mp_rows, mp_graphs, "formation_energy_per_atom", n=40)
    model = CGCNNModel(model_dir=str(tmp_path), batch_size=20, num_conv=2)
    model.fit(data, nb_epoch=3, checkpoint_interval=0)
    model.save_checkpoint()
    before = model.predict(data)
    again = CGCNNModel(model_dir=str(tmp_path), batch_size=20, num_conv=2)
    again.restore()
    np.testing.assert_array_equal(again.predict(data), before)
    np.testing.assert_allclose(again.predict_on_batch(data.X[:5]), before[:5], atol=1e-6)
    assert float(again.model.target_std) == pytest.approx(float(data.y.std()), rel=1e-5)


@pytest.mark.torch
def test_failed_entries_get_a_clear_error(mp_graphs):
    model = CGCNNModel()
    with pytest.raises(TypeError, match="batch item 1 is a ndarray, not a CrystalGraph"):
        model.predict_on_batch(np.array([mp_graphs[0], np.array([])], dtype=object))


@pytest.mark.torch
def test_model_works_with_networking_disabled(no_network, mp_graphs):
    model = CGCNNModel()
    assert np.isfinite(model.predict_on_batch(np.array(list(mp_graphs[:3]), dtype=object))).all()


@pytest.mark.torch
def test_complete_mode_prediction_is_invariant_to_site_order(mp_rows):
    from pymatgen.core import Structure

    featurizer = CGCNNFeaturizer(selection="complete")
    torch.manual_seed(0)
    model = CGCNNModel()
    rng = np.random.default_rng(1)
    for cif in mp_rows.cif[:25]:
        structure = Structure.from_str(cif, fmt="cif")
        permuted = Structure.from_sites([structure[i] for i in rng.permutation(len(structure))])
        graphs = featurizer.featurize([structure, permuted])
        out = model.predict_on_batch(graphs)
        assert abs(out[0, 0] - out[1, 0]) < 1e-5


def test_bad_dimensions_are_refused_in_words():
    with pytest.raises(ValueError, match="in_edge_dim=40.*gives 41"):
        CGCNNModel(in_edge_dim=40)
    with pytest.raises(ValueError, match="in_node_dim=100"):
        CGCNNModel(in_node_dim=100)


@pytest.mark.torch
def test_deepchem_script_runs_with_only_its_imports_changed(mp_rows):
    """DeepChem's own CGCNN example, with `dc.feat.CGCNNFeaturizer` / `dc.models.CGCNNModel`
    replaced by ours and nothing else changed."""
    from pymatgen.core import Structure

    structures = [Structure.from_str(c, fmt="cif") for c in mp_rows.cif[::8][:30]]
    featurizer = CGCNNFeaturizer(radius=8.0, max_neighbors=12, step=0.2)
    X = featurizer.featurize(structures)
    dataset = dc.data.NumpyDataset(X, mp_rows.formation_energy_per_atom.to_numpy()[::8][:30])
    train, valid, test = dc.splits.RandomSplitter().train_valid_test_split(dataset, 0.6, 0.2, 0.2)
    model = CGCNNModel(
        in_node_dim=92,
        hidden_node_dim=64,
        in_edge_dim=41,
        num_conv=3,
        predictor_hidden_feats=128,
        n_tasks=1,
        mode="regression",
        batch_size=16,
        learning_rate=0.001,
    )
    avg_loss = model.fit(train, nb_epoch=5)
    scores = model.evaluate(test, [dc.metrics.Metric(dc.metrics.mae_score)])
    assert np.isfinite(avg_loss) and np.isfinite(scores["mae_score"])


@pytest.mark.torch
def test_a_compiled_model_keeps_its_weights_checkpoints_and_predictions(
    mp_rows, mp_graphs, tmp_path
):
    """``compile_mode`` compiles the whole network in place (static shapes by default): the
    state-dict keys, the losses of a fit and a restored checkpoint's predictions are the
    eager model's."""
    from deepchem_cgcnn.cli import COMPILE_MODE_CHOICES
    from deepchem_cgcnn.model import COMPILE_MODES

    assert COMPILE_MODE_CHOICES == COMPILE_MODES
    data = real_dataset(mp_rows, mp_graphs, "formation_energy_per_atom", n=40)
    torch.manual_seed(0)
    eager = CGCNNModel(num_conv=2, batch_size=20, model_dir=str(tmp_path / "eager"))
    compiled = CGCNNModel(
        num_conv=2, batch_size=20, compile_mode="default", model_dir=str(tmp_path / "c")
    )
    assert compiled.static_shapes and not eager.static_shapes
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())
    compiled.model.load_state_dict(eager.model.state_dict())
    losses = []
    for model in (eager, compiled):
        np.random.seed(0)
        losses.append([])
        model.fit(data, nb_epoch=2, checkpoint_interval=0, all_losses=losses[-1])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    compiled.save_checkpoint()
    restored = CGCNNModel(num_conv=2, batch_size=20, model_dir=str(tmp_path / "c"))
    restored.restore()
    np.testing.assert_allclose(
        restored.predict(data, warn_domain=False),
        compiled.predict(data, warn_domain=False),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        CGCNNModel(compile_mode="fast")
    with pytest.raises(ValueError, match="leave out compile_convolutions"):
        CGCNNModel(compile_mode="default", compile_convolutions=True)


@pytest.mark.torch
def test_compiled_convolutions_give_the_same_outputs_gradients_and_checkpoints(
    mp_rows, mp_graphs, tmp_path
):
    """``compile_convolutions`` changes speed only."""
    data = real_dataset(mp_rows, mp_graphs, "formation_energy_per_atom", n=40)
    torch.manual_seed(0)
    eager = CGCNNModel(num_conv=2, batch_size=20)
    compiled = CGCNNModel(
        num_conv=2, batch_size=20, compile_convolutions=True, model_dir=str(tmp_path)
    )
    compiled.model.load_state_dict(eager.model.state_dict())
    batch = eager._prepare_batch(([data.X[:20]], [data.y[:20]], [data.w[:20]]))[0]
    gradients = []
    for model in (eager, compiled):
        model.model.train()
        output = model.model(batch)
        output.sum().backward()
        # the bias before each batch norm has a gradient of zero up to rounding: skipped
        gradients.append(
            {
                name: p.grad.clone()
                for name, p in model.model.named_parameters()
                if not name.endswith("fc_full.bias")
            }
        )
        model.model.zero_grad()
    np.testing.assert_allclose(*(m.model(batch).detach() for m in (compiled, eager)), atol=1e-5)
    for name, reference in gradients[0].items():
        assert torch.allclose(
            gradients[1][name], reference, rtol=1e-4, atol=1e-4 * reference.abs().max()
        ), name
    compiled.fit(data, nb_epoch=2, checkpoint_interval=0)
    compiled.save_checkpoint()
    restored = CGCNNModel(num_conv=2, batch_size=20, model_dir=str(tmp_path))
    restored.restore()
    np.testing.assert_allclose(restored.predict(data), compiled.predict(data), atol=1e-5)
