"""The resumable training loop and the recipes, on real MP crystals."""

import numpy as np
import pytest

from deepchem_cgcnn import CGCNNModel
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.recipes import FAST, PAPER, make_optimizer
from deepchem_cgcnn.training import classification_error, mean_absolute_error, train_with_validation

dc = import_deepchem()


@pytest.fixture(scope="module")
def datasets(mp_rows, mp_graphs):
    rows = np.arange(0, len(mp_rows), 5)[:64]
    X = np.array([mp_graphs[i] for i in rows], dtype=object)
    y = mp_rows.formation_energy_per_atom.to_numpy()[rows, None]
    ids = mp_rows.material_id.to_numpy()[rows]
    return (
        dc.data.NumpyDataset(X[:48], y[:48], ids=ids[:48]),
        dc.data.NumpyDataset(X[48:], y[48:], ids=ids[48:]),
    )


def _model(recipe=FAST):
    return CGCNNModel(num_conv=2, batch_size=16, optimizer=make_optimizer(recipe))


@pytest.mark.torch
def test_training_keeps_the_best_epoch_and_resumes_where_it_stopped(datasets, tmp_path):
    train, valid = datasets
    model = _model()
    record = train_with_validation(
        model,
        train,
        valid,
        str(tmp_path),
        FAST.learning_rate_at,
        max_epochs=3,
        max_minutes=10,
        config={"run": 1},
    )
    assert record.epochs == [0, 1, 2]
    assert record.best_valid_mae == min(record.valid_mae)
    # the model handed back is the best epoch's, not the last one's
    assert mean_absolute_error(model, valid) == pytest.approx(record.best_valid_mae, rel=1e-5)
    assert record.learning_rate[0] == FAST.learning_rate > record.learning_rate[-1]

    resumed = train_with_validation(
        _model(),
        train,
        valid,
        str(tmp_path),
        FAST.learning_rate_at,
        max_epochs=5,
        max_minutes=10,
        config={"run": 1},
    )
    assert resumed.epochs == [0, 1, 2, 3, 4]
    assert resumed.valid_mae[:3] == record.valid_mae
    # what the first process trained, so that a card's total time counts it
    assert record.resumed_seconds == 0 and resumed.resumed_seconds == record.seconds[-1] > 0
    history = resumed.history()
    assert len(history["seconds"]) == 5 and history["seconds"] == sorted(history["seconds"])
    assert history["valid_error"] == pytest.approx(resumed.valid_mae, abs=1e-5)

    with pytest.raises(ValueError, match="other settings"):
        train_with_validation(
            _model(),
            train,
            valid,
            str(tmp_path),
            FAST.learning_rate_at,
            max_epochs=6,
            max_minutes=10,
            config={"run": 2},
        )


@pytest.mark.torch
def test_paper_recipe_is_sgd_with_momentum_and_a_constant_rate(datasets, tmp_path):
    train, valid = datasets
    model = _model(PAPER)
    record = train_with_validation(
        model, train, valid, str(tmp_path), PAPER.learning_rate_at, max_epochs=2, max_minutes=10
    )
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


# ---------------------------------------------------------------- crash consistency
import json  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402

from deepchem_cgcnn._io import atomic_torch_save, atomic_write  # noqa: E402
from deepchem_cgcnn.training import (  # noqa: E402
    BEST_STATE,
    LAST_STATE,
    RECORD,
    RunMismatchError,
    TrainingDivergedError,
)


def _train(folder, datasets, epochs, config=None, **kwargs):
    train, valid = datasets
    model = _model()
    record = train_with_validation(
        model,
        train,
        valid,
        str(folder),
        FAST.learning_rate_at,
        max_epochs=epochs,
        max_minutes=10,
        config=config or {"run": 1},
        **kwargs,
    )
    return model, record


def _state(folder, name):
    return torch.load(os.path.join(folder, name), weights_only=True)


@pytest.mark.torch
def test_a_stop_between_best_and_last_keeps_the_better_best(datasets, tmp_path):
    """best.pt written, then the process dies before last.pt and record.json of that epoch."""
    _train(tmp_path, datasets, 2)
    best = _state(tmp_path, BEST_STATE)
    best.update(epoch=2, valid_error=1e-6)  # an epoch-2 best that nothing can beat
    atomic_torch_save(tmp_path / BEST_STATE, best)
    (tmp_path / f".{LAST_STATE}.x1.tmp").write_bytes(b"half a checkpoint")  # the killed write
    model, record = _train(tmp_path, datasets, 4)
    assert record.epochs == [0, 1, 2, 3]  # resumed from epoch 2, not from 0
    assert record.best_epoch == 2 and record.best_valid_mae == 1e-6
    assert _state(tmp_path, BEST_STATE)["valid_error"] == 1e-6  # never replaced by a worse one
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    weights = model.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in best["model_state_dict"].items())


@pytest.mark.torch
def test_a_stop_before_the_first_last_state_restarts_without_losing_best(datasets, tmp_path):
    _train(tmp_path, datasets, 1)
    best = _state(tmp_path, BEST_STATE)
    best["valid_error"] = 1e-6
    atomic_torch_save(tmp_path / BEST_STATE, best)
    os.unlink(tmp_path / LAST_STATE)
    os.unlink(tmp_path / RECORD)
    _, record = _train(tmp_path, datasets, 2)
    assert record.epochs == [0, 1] and record.best_valid_mae == 1e-6
    assert _state(tmp_path, BEST_STATE)["valid_error"] == 1e-6


@pytest.mark.torch
def test_a_damaged_or_missing_record_does_not_stop_a_resume(datasets, tmp_path):
    _, first = _train(tmp_path, datasets, 2)
    (tmp_path / RECORD).write_text('{"epochs": [0, 1], "seco')  # a torn non-atomic write
    _, record = _train(tmp_path, datasets, 3)
    assert record.epochs == [0, 1, 2] and record.valid_mae[:2] == first.valid_mae
    assert json.loads((tmp_path / RECORD).read_text())["epochs"] == [0, 1, 2]


def test_atomic_writes_get_the_mode_open_would_give_or_keep_the_replaced_files(tmp_path):
    """Not the temporary file's private 0600: an exported card or a predictions file in a
    shared folder stays readable by the group, as a plain ``open`` would leave it."""
    from deepchem_cgcnn._io import _umask

    old = os.umask(0o027)
    try:
        assert _umask() == 0o027
        atomic_write(tmp_path / "card.json", lambda handle: handle.write(b"{}"))
        assert os.stat(tmp_path / "card.json").st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "card.json", 0o604)
        atomic_write(tmp_path / "card.json", lambda handle: handle.write(b"[]"))
        assert os.stat(tmp_path / "card.json").st_mode & 0o777 == 0o604
    finally:
        os.umask(old)


@pytest.mark.torch
def test_a_stop_while_writing_leaves_the_previous_file_whole(datasets, tmp_path):
    _train(tmp_path, datasets, 1)
    before = (tmp_path / LAST_STATE).read_bytes()

    def dies_halfway(handle):
        handle.write(before[:100])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / LAST_STATE, dies_halfway)
    assert (tmp_path / LAST_STATE).read_bytes() == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.torch
def test_resuming_with_other_settings_names_the_folder_and_fields(datasets, tmp_path):
    _train(tmp_path, datasets, 1)
    with pytest.raises(RunMismatchError, match=r"run.*1 there, 2 now") as error:
        _train(tmp_path, datasets, 2, config={"run": 2})
    assert str(tmp_path) in str(error.value)


# ---------------------------------------------------------------- divergence and NaN labels
@pytest.mark.torch
def test_a_diverging_run_stops_and_keeps_its_best_finite_epoch(datasets, tmp_path):
    train, valid = datasets
    model = _model()
    fit = model.fit
    calls = []

    def diverges_at_third_epoch(*args, **kwargs):
        calls.append(1)
        loss = fit(*args, **kwargs)
        if len(calls) == 3:
            with torch.no_grad():
                next(model.model.parameters()).fill_(float("nan"))
            return float("nan")
        return loss

    model.fit = diverges_at_third_epoch
    record = train_with_validation(
        model, train, valid, str(tmp_path), FAST.learning_rate_at, max_epochs=6, max_minutes=10
    )
    assert record.epochs == [0, 1] and "non-finite training loss" in record.stopped
    assert np.isfinite(model.predict(valid)).all()
    assert mean_absolute_error(model, valid) == pytest.approx(record.best_valid_mae, rel=1e-5)
    assert json.loads((tmp_path / RECORD).read_text())["stopped"] == record.stopped


@pytest.mark.torch
def test_a_run_that_diverges_at_once_says_so(datasets, tmp_path):
    train, valid = datasets
    model = _model()
    model.fit = lambda *args, **kwargs: float("nan")
    with pytest.raises(TrainingDivergedError, match="non-finite training loss"):
        train_with_validation(
            model, train, valid, str(tmp_path), FAST.learning_rate_at, max_epochs=3, max_minutes=10
        )


@pytest.mark.torch
def test_nan_labels_are_trained_as_missing(datasets):
    train, _ = datasets
    y = train.y.copy()
    y[::4] = np.nan
    dataset = dc.data.NumpyDataset(train.X, y, np.ones_like(y), ids=train.ids)
    model = _model()
    with pytest.warns(UserWarning, match=r"12 labels of 12 crystals are NaN"):
        loss = model.fit(dataset, nb_epoch=2)
    assert np.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.model.parameters())
    assert np.isfinite(model.predict(dataset)).all()


@pytest.mark.torch
def test_patience_stops_a_run_that_stopped_improving(datasets, tmp_path):
    train, valid = datasets
    errors = iter([0.5, 0.4, 0.45, 0.46, 0.3, 0.2])
    record = train_with_validation(
        _model(),
        train,
        valid,
        str(tmp_path),
        FAST.learning_rate_at,
        max_epochs=6,
        max_minutes=10,
        evaluate=lambda model, data: next(errors),
        patience=2,
    )
    assert record.epochs == [0, 1, 2, 3] and record.best_epoch == 1
    assert record.stopped.startswith("early stop after epoch 3: no better validation error")


@pytest.mark.torch
def test_a_weight_average_is_validated_kept_and_resumed(datasets, tmp_path):
    from deepchem_cgcnn.original import load_plain_data
    from deepchem_cgcnn.training import LAST_STATE

    _, valid = datasets
    model, record = _train(tmp_path, datasets, 3, ema_decay=0.9)
    assert len(record.valid_mae) == len(record.valid_mae_raw) == 3
    assert record.valid_mae != record.valid_mae_raw  # the average is not the trained weights
    assert record.best_valid_mae == min(record.valid_mae + record.valid_mae_raw)
    kept = record.valid_mae if record.best_weights == "average" else record.valid_mae_raw
    assert kept[record.best_epoch] == record.best_valid_mae
    assert mean_absolute_error(model, valid) == pytest.approx(record.best_valid_mae, rel=1e-5)
    assert "valid_error_trained_weights" in record.history()
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert log[0].endswith(",valid_error,valid_error_trained_weights") and len(log) == 4
    assert float(log[-1].split(",")[-1]) == pytest.approx(record.valid_mae_raw[-1], rel=1e-5)

    # last.pt holds the trained weights and the average, each validating as recorded
    last = load_plain_data(str(tmp_path / LAST_STATE), "training state")
    assert last["weight_average"]["updates"] == 3 * 3  # 3 epochs of 48 crystals in batches of 16
    probe = _model()
    probe._ensure_built()
    probe.model.load_state_dict(last["model_state_dict"])
    assert mean_absolute_error(probe, valid) == pytest.approx(record.valid_mae_raw[-1], rel=1e-5)
    probe.model.load_state_dict(last["weight_average"]["state"])
    assert mean_absolute_error(probe, valid) == pytest.approx(record.valid_mae[-1], rel=1e-5)

    _, resumed = _train(tmp_path, datasets, 4, ema_decay=0.9)
    assert resumed.epochs == [0, 1, 2, 3] and resumed.valid_mae[:3] == record.valid_mae
    last = load_plain_data(str(tmp_path / LAST_STATE), "training state")
    assert last["weight_average"]["updates"] == 4 * 3


@pytest.mark.torch
def test_a_schedule_without_validation_trains_as_the_validated_run_did(datasets, tmp_path):
    """The refit's loop: with the same data, seeds and rates it gives the same weights as
    train_with_validation, keeps the last epoch, and resumes."""
    import torch

    from deepchem_cgcnn.training import train_on_schedule

    train, valid = datasets

    def seeded_model():
        torch.manual_seed(7)
        np.random.seed(7)  # DeepChem's fit shuffles with NumPy's global generator
        return _model()

    validated_model = seeded_model()
    validated = train_with_validation(
        validated_model,
        train,
        valid,
        str(tmp_path / "validated"),
        FAST.learning_rate_at,
        max_epochs=3,
        max_minutes=10,
        evaluate=lambda model, data: 1.0,  # every epoch ties: the first stays the best
    )
    assert validated.best_epoch == 0
    last = torch.load(tmp_path / "validated" / "last.pt", weights_only=True)["model_state_dict"]

    model = seeded_model()
    record = train_on_schedule(model, train, str(tmp_path / "refit"), validated.learning_rate)
    assert record.epochs == [0, 1, 2] and record.best_epoch == 2
    assert record.learning_rate == validated.learning_rate
    assert record.train_loss == pytest.approx(validated.train_loss, rel=1e-4)
    # Compared by what the weights predict: CPU sums are not bit-reproducible across threads,
    # and Adam turns that noise into full-size steps of biases a batch norm cancels.
    probe = _model()
    probe._ensure_built()
    probe.model.load_state_dict(last)
    expected = probe.predict(valid)
    np.testing.assert_allclose(model.predict(valid), expected, rtol=0, atol=5e-3)
    other = seeded_model()
    halved = [rate / 2 for rate in validated.learning_rate]
    train_on_schedule(other, train, str(tmp_path / "other"), halved)
    assert np.abs(other.predict(valid) - expected).max() > 5e-2  # another schedule: far apart
    log = (tmp_path / "refit" / "log.csv").read_text().splitlines()
    assert log[0] == "epoch,seconds,learning_rate,train_loss" and len(log) == 4

    longer = [*validated.learning_rate, validated.learning_rate[-1] / 2]
    resumed = train_on_schedule(_model(), train, str(tmp_path / "refit"), longer)
    assert resumed.epochs == [0, 1, 2, 3] and resumed.train_loss[:3] == record.train_loss
    assert resumed.learning_rate[3] == longer[3]


@pytest.mark.torch
def test_a_schedule_keeps_the_weight_average_or_the_trained_weights(datasets, tmp_path):
    import torch

    from deepchem_cgcnn.original import load_plain_data
    from deepchem_cgcnn.training import LAST_STATE, train_on_schedule

    train, _ = datasets
    rates = [2e-3, 1e-3]
    for keep_average in (True, False):
        folder = tmp_path / str(keep_average)
        model = _model()
        record = train_on_schedule(
            model, train, str(folder), rates, ema_decay=0.9, keep_average=keep_average
        )
        assert record.best_weights == ("average" if keep_average else "trained")
        last = load_plain_data(str(folder / LAST_STATE), "training state")
        expected = last["weight_average"]["state"] if keep_average else last["model_state_dict"]
        for name, tensor in model.model.state_dict().items():
            assert torch.equal(tensor, expected[name]), name
        assert not torch.equal(
            last["weight_average"]["state"]["fc_out.weight"],
            last["model_state_dict"]["fc_out.weight"],
        )


@pytest.mark.torch
def test_a_shuffle_seed_fixes_the_batch_order_and_leaves_numpy_s_generator_alone(
    datasets, tmp_path
):
    """DeepChem draws each epoch's batch order from NumPy's global generator; with a
    ``shuffle_seed`` the order is a function of (seed, epoch), whatever ran before, and the
    global generator is left as it was."""
    import torch

    train, valid = datasets

    def run(folder: str, shuffle_seed, numpy_seed: int) -> list[float]:
        torch.manual_seed(0)
        model = _model()
        np.random.seed(numpy_seed)
        state = np.random.get_state()
        record = train_with_validation(
            model, train, valid, str(tmp_path / folder), FAST.learning_rate_at, 3, 10,
            shuffle_seed=shuffle_seed,
        )  # fmt: skip
        if shuffle_seed is not None:
            after = np.random.get_state()
            assert all(np.array_equal(a, b) for a, b in zip(state, after))
        return record.train_loss

    seeded = run("a", 7, numpy_seed=1)
    assert run("b", 7, numpy_seed=2) == pytest.approx(seeded, rel=1e-5)
    assert run("c", 8, numpy_seed=1) != pytest.approx(seeded, rel=1e-3)
    assert run("d", None, numpy_seed=1) != pytest.approx(run("e", None, numpy_seed=2), rel=1e-3)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["AdamW", "Adam"])
def test_recipe_optimizers_update_as_deepchems_and_fuse_only_on_cuda(name):
    """The recipes' Adam/AdamW are DeepChem's (same defaults, same update on a CPU, here
    bit for bit); on CUDA parameters they ask torch for the fused kernel."""
    import types

    from deepchem_cgcnn import recipes

    ours_class, theirs_class = getattr(recipes, name), getattr(dc.models.optimizers, name)
    extra = {"weight_decay": 1e-2} if name == "AdamW" else {}
    runs = []
    for optimizer in (ours_class(learning_rate=3e-3, **extra), theirs_class(3e-3, **extra)):
        torch.manual_seed(0)
        weights = torch.nn.Parameter(torch.randn(7, 5))
        torch_optimizer = optimizer._create_pytorch_optimizer(iter([weights]))
        for step in range(4):
            torch_optimizer.zero_grad()
            (weights.sin() * (step + 1)).sum().backward()
            torch_optimizer.step()
        runs.append((weights.detach().clone(), torch_optimizer.defaults))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1]["weight_decay"] == runs[1][1]["weight_decay"] == extra.get("weight_decay", 0)
    assert not runs[0][1]["fused"]
    assert recipes._fused_on_cuda([types.SimpleNamespace(is_cuda=True)] * 2) == {"fused": True}
    assert recipes._fused_on_cuda([types.SimpleNamespace(is_cuda=True), weights]) == {}
