"""``CGCNNModel(graph_step=True)``: DeepChem's training loop around a step replayed from CUDA
graphs (:mod:`deepchem_cgcnn.graph_step`).

A CPU has no CUDA graphs, so the replay is tested with a stand-in for the capture that runs the
step the same way (warm-up runs, a recorded run, then a replay per batch), on the same static
tensors, learning-rate tensors and state restore as on a GPU: only the CUDA capture itself is
left to the GPU run (``benchmarks/bench_graph_step.py``, ``bench_resident.py``), which checks
the replayed losses against the eager step's."""

import numpy as np
import pytest
import torch

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.graph_step import GraphStep, learning_rates_as_tensors, trained_tensors

dc = import_deepchem()


@pytest.fixture(scope="module")
def dataset(mp_rows):
    graphs = CGCNNFeaturizer(selection="complete").featurize(list(mp_rows.cif[:60]))
    y = mp_rows.formation_energy_per_atom.to_numpy(dtype=float)[:60, None]
    return dc.data.NumpyDataset(graphs, y)


class ReplayedOnCPU(GraphStep):
    """:class:`GraphStep` with the CUDA capture replaced by re-running the recorded step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_graphs = True
        self._rates = learning_rates_as_tensors(self.optimizer, capturable=False)
        self.replays = 0

    def _record(self, step):
        for _ in range(2):  # the warm-up runs train, as on a GPU: the capture must undo them
            step()
        loss = step()
        groups = self.optimizer.param_groups
        captured_rates = [group["lr"] for group in groups]  # a graph reads these, whatever
        # the groups hold later

        def replay():
            self.replays += 1
            later = [group["lr"] for group in groups]
            for group, rate in zip(groups, captured_rates):
                group["lr"] = rate
            loss.copy_(step())
            for group, rate in zip(groups, later):
                group["lr"] = rate

        return replay, loss


def _fit(dataset, **kwargs):
    torch.manual_seed(0)
    np.random.seed(0)
    schedule = dc.models.optimizers.ExponentialDecay(3e-3, 0.5, 4)
    model = CGCNNModel(num_conv=2, batch_size=16, learning_rate=schedule, log_frequency=1, **kwargs)
    losses: list[float] = []
    steps: list[int] = []
    model.fit(dataset, nb_epoch=3, all_losses=losses, callbacks=lambda m, step: steps.append(step))
    return model, losses, steps


@pytest.mark.torch
def test_fit_with_a_replayed_step_gives_deepchems_losses(dataset, monkeypatch):
    import deepchem_cgcnn.model

    plain, plain_losses, plain_steps = _fit(dataset, static_shapes=True)
    monkeypatch.setattr(deepchem_cgcnn.model, "GraphStep", ReplayedOnCPU)
    replayed, losses, steps = _fit(dataset, graph_step=True)

    assert len(losses) == len(plain_losses) == 12  # 3 epochs of 4 batches, logged every step
    assert losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)
    assert steps == plain_steps == list(range(1, 13))
    step = replayed._graph_step
    assert isinstance(step, ReplayedOnCPU)
    assert step.replays == 11  # every batch after the first (the optimizer's state is made)
    assert step.graphs >= 2  # full batches and the last, partial one differ in shape
    # the schedule's rate (halved every 4 steps) reached the replayed update
    rate = replayed._pytorch_optimizer.param_groups[0]["lr"]
    assert torch.is_tensor(rate) and float(rate) == pytest.approx(3e-3 * 0.5 ** (12 / 4))
    assert np.allclose(
        replayed.predict(dataset, warn_domain=False),
        plain.predict(dataset, warn_domain=False),
        atol=2e-4,
    )


@pytest.mark.torch
def test_a_rate_set_as_a_number_reaches_the_replayed_update(dataset, monkeypatch):
    import deepchem_cgcnn.model

    def fit(model, rate):
        torch.manual_seed(1)
        np.random.seed(1)
        model._ensure_built()
        for group in model._pytorch_optimizer.param_groups:
            group["lr"] = rate  # as train_with_validation sets each epoch's rate
        losses: list[float] = []
        model.fit(dataset, nb_epoch=1, all_losses=losses)
        return losses

    monkeypatch.setattr(deepchem_cgcnn.model, "GraphStep", ReplayedOnCPU)
    kwargs = dict(num_conv=2, batch_size=16, learning_rate=1e-3, log_frequency=1)
    torch.manual_seed(0)
    plain = CGCNNModel(static_shapes=True, **kwargs)
    torch.manual_seed(0)
    replayed = CGCNNModel(graph_step=True, **kwargs)
    for rate in (1e-3, 1e-2):
        assert fit(replayed, rate) == pytest.approx(fit(plain, rate), rel=1e-5, abs=1e-7)
    assert replayed._graph_step.replays > 0


class ReplayedWithoutUpdate(ReplayedOnCPU):
    """A broken capture: its replay computes the batch's loss but updates nothing."""

    def _record(self, step):
        replay, loss = super()._record(step)

        def without_update():
            self.replays += 1
            trained = trained_tensors(self.module, self.optimizer)
            saved = [t.detach().clone() for t in trained]
            loss.copy_(step())
            with torch.no_grad():
                for tensor, value in zip(trained, saved):
                    tensor.copy_(value)

        return without_update, loss


class ReplayedWithStaleInputs(ReplayedOnCPU):
    """A broken capture: its replay repeats the recorded batch, whatever batch is copied in."""

    def _record(self, step):
        replay, loss = super()._record(step)
        recorded = loss.clone()

        def stale():
            self.replays += 1
            loss.copy_(recorded)

        return stale, loss


class CaptureFails(ReplayedOnCPU):
    """A step with an operation that cannot be captured: the capture raises, after its
    warm-up steps trained."""

    def _record(self, step):
        step()
        raise RuntimeError("operation not permitted when stream is capturing")


@pytest.mark.torch
@pytest.mark.parametrize(
    "broken, problem",
    [
        (ReplayedWithoutUpdate, "updated values differ"),
        (ReplayedWithStaleInputs, "eager step (loss "),
        (CaptureFails, "cannot be captured (operation not permitted"),
    ],
)
def test_a_replay_that_does_not_reproduce_the_step_is_caught_and_trains_eagerly(
    dataset, monkeypatch, broken, problem
):
    import deepchem_cgcnn.model
    from deepchem_cgcnn.graph_step import GraphStepWarning

    plain, plain_losses, _ = _fit(dataset, static_shapes=True)
    monkeypatch.setattr(deepchem_cgcnn.model, "GraphStep", broken)
    with pytest.warns(GraphStepWarning, match="train eagerly") as caught:
        replayed, losses, _ = _fit(dataset, graph_step=True)

    step = replayed._graph_step
    assert step.graphs == 0 and len(caught) == len(step._captured) >= 2  # one per shape
    assert all(problem in str(warning.message) for warning in caught)
    assert losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)  # eager: still right


@pytest.mark.torch
def test_a_restored_checkpoint_gets_its_graphs_captured_again(dataset, monkeypatch, tmp_path):
    """``restore`` loads new optimizer state tensors: graphs captured before would update the
    old ones, so the step is captured again, and training goes on as DeepChem's loop does."""
    import deepchem_cgcnn.model

    def fit_restore_fit(**kwargs):
        torch.manual_seed(0)
        np.random.seed(0)
        model = CGCNNModel(
            num_conv=2,
            batch_size=16,
            log_frequency=1,
            model_dir=str(tmp_path / str(kwargs)),
            **kwargs,
        )
        losses: list[float] = []
        model.fit(dataset, nb_epoch=1, all_losses=losses)  # ends with a checkpoint
        first = model._graph_step
        model.fit(dataset, nb_epoch=1, all_losses=losses)
        model.restore()
        model.fit(dataset, nb_epoch=1, all_losses=losses)
        return model, first, losses

    _, _, plain_losses = fit_restore_fit(static_shapes=True)
    monkeypatch.setattr(deepchem_cgcnn.model, "GraphStep", ReplayedOnCPU)
    replayed, first, losses = fit_restore_fit(graph_step=True)
    assert first.graphs > 0 and replayed._graph_step is not first
    assert replayed._graph_step.bound_to(replayed.model, replayed._pytorch_optimizer)
    assert not first.bound_to(replayed.model, replayed._pytorch_optimizer)
    assert losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)


@pytest.mark.torch
def test_graph_step_refuses_what_it_cannot_replay(dataset):
    with pytest.raises(ValueError, match="static_shapes"):
        CGCNNModel(graph_step=True, static_shapes=False)
    with pytest.raises(ValueError, match="would capture inside it"):
        CGCNNModel(graph_step=True, compile_mode="reduce-overhead")
    model = CGCNNModel(graph_step=True, tensorboard=True, batch_size=16)
    with pytest.raises(ValueError, match="TensorBoard"):
        model.fit(dataset, nb_epoch=1)


@pytest.mark.torch
def test_on_a_cpu_the_step_runs_eagerly_and_says_so_once(dataset):
    from deepchem_cgcnn.graph_step import GraphStepWarning

    _, plain_losses, _ = _fit(dataset, static_shapes=True)
    with pytest.warns(GraphStepWarning, match="on cpu, which has no CUDA graphs") as caught:
        model, losses, _ = _fit(dataset, graph_step=True)
        model.fit(dataset, nb_epoch=1)
    assert len(caught) == 1 and model._graph_step.graphs == 0
    assert losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)
