"""The resumable training loop and the recipes, on real MP crystals."""
import numpy as np
import pytest

from deepchem_cgcnn import CGCNNModel
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.recipes import FAST, PAPER, make_optimizer
from deepchem_cgcnn.training import (classification_error, mean_absolute_error,
                                     train_with_validation)

dc = import_deepchem()


@pytest.fixture(scope="module")
def datasets(mp_rows, mp_graphs):
    rows = np.arange(0, len(mp_rows), 5)[:64]
    X = np.array([mp_graphs[i] for i in rows], dtype=object)
    y = mp_rows.formation_energy_per_atom.to_numpy()[rows, None]
    ids = mp_rows.material_id.to_numpy()[rows]
    return (dc.data.NumpyDataset(X[:48], y[:48], ids=ids[:48]),
            dc.data.NumpyDataset(X[48:], y[48:], ids=ids[48:]))


def _model(recipe=FAST):
    return CGCNNModel(num_conv=2, batch_size=16, optimizer=make_optimizer(recipe))


@pytest.mark.torch
def test_training_keeps_the_best_epoch_and_resumes_where_it_stopped(datasets, tmp_path):
    train, valid = datasets
    model = _model()
    record = train_with_validation(model, train, valid, str(tmp_path), FAST.learning_rate_at,
                                   max_epochs=3, max_minutes=10, config={"run": 1})
    assert record.epochs == [0, 1, 2]
    assert record.best_valid_mae == min(record.valid_mae)
    # the model handed back is the best epoch's, not the last one's
    assert mean_absolute_error(model, valid) == pytest.approx(record.best_valid_mae, rel=1e-5)
    assert record.learning_rate[0] == FAST.learning_rate > record.learning_rate[-1]

    resumed = train_with_validation(_model(), train, valid, str(tmp_path), FAST.learning_rate_at,
                                    max_epochs=5, max_minutes=10, config={"run": 1})
    assert resumed.epochs == [0, 1, 2, 3, 4]
    assert resumed.valid_mae[:3] == record.valid_mae
    history = resumed.history()
    assert len(history["seconds"]) == 5 and history["seconds"] == sorted(history["seconds"])
    assert history["valid_error"] == pytest.approx(resumed.valid_mae, abs=1e-5)

    with pytest.raises(ValueError, match="other settings"):
        train_with_validation(_model(), train, valid, str(tmp_path), FAST.learning_rate_at,
                              max_epochs=6, max_minutes=10, config={"run": 2})


@pytest.mark.torch
def test_paper_recipe_is_sgd_with_momentum_and_a_constant_rate(datasets, tmp_path):
    train, valid = datasets
    model = _model(PAPER)
    record = train_with_validation(model, train, valid, str(tmp_path), PAPER.learning_rate_at,
                                   max_epochs=2, max_minutes=10)
    optimizer = model._pytorch_optimizer
    assert type(optimizer).__name__ == "SGD" and optimizer.defaults["momentum"] == 0.9
    assert record.learning_rate == [0.01, 0.01]


@pytest.mark.torch
def test_classification_error_is_one_minus_roc_auc(datasets):
    from sklearn.metrics import roc_auc_score
    train, _ = datasets
    labels = (train.y[:, 0] < np.median(train.y[:, 0])).astype(float)[:, None]
    dataset = dc.data.NumpyDataset(train.X, labels)
    model = CGCNNModel(num_conv=2, batch_size=16, mode="classification")
    model.fit(dataset, nb_epoch=2)
    expected = roc_auc_score(labels[:, 0], model.predict(dataset)[:, 1])
    assert classification_error(model, dataset) == pytest.approx(1 - expected)
