"""Distributed training (Lightning DDP, gloo on CPU) against a single-process reference."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from deepchem_cgcnn.distributed import (  # noqa: E402
    CrystalSampler,
    GraphCollator,
    ShardStream,
    fit_distributed,
    shard_shares,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddp_job import learning_rate_at, load_data, make_model  # noqa: E402

JOB = Path(__file__).resolve().parent / "ddp_job.py"
pytestmark = pytest.mark.torch


def run_job(
    out: Path, *args: str, wait: bool = True
) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, str(JOB), str(out), *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if not wait:
        return subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def state_of(run_folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_folder / "last.pt", weights_only=True)["model_state_dict"]


def memory_batches(train, world_size: int, batch_size: int, seed: int = 7):
    """Each rank's micro-batches of an epoch, as the DDP processes draw them from memory."""
    collate = GraphCollator(train)

    def batches(epoch: int, rank: int) -> list:
        sampler = CrystalSampler(len(train), world_size, rank, seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
        return [collate(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]

    return batches


def shard_batches(train, world_size: int, batch_size: int, seed: int = 7):
    """Each rank's micro-batches of an epoch, as the DDP processes stream them from shards."""
    return lambda epoch, rank: list(
        ShardStream(train, batch_size, world_size, rank, seed, first_epoch=epoch)
    )


def reference_ddp(
    world_size: int, epochs: int, batch_size: int, n: int, sharded: Path | None = None
):
    """One process doing what ``world_size`` DDP processes do: per step, each rank's
    micro-batch through the network with its own batch-norm statistics, the gradients
    averaged, one optimizer step; rank 0's running statistics kept (DDP broadcasts rank 0's
    buffers before every forward)."""
    train, _ = load_data(n)
    model = make_model(batch_size, "sgd")
    model.prepare_training(train)
    model._ensure_built()
    if sharded is not None:
        from deepchem_cgcnn.data.shards import ShardedDataset

        batches = shard_batches(ShardedDataset(str(sharded)), world_size, batch_size)
    else:
        batches = memory_batches(train, world_size, batch_size)
    network, optimizer = model.model, model._pytorch_optimizer
    network.train()
    parameters = [p for p in network.parameters() if p.requires_grad]
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(epoch / epochs)
        shares = [batches(epoch, rank) for rank in range(world_size)]
        assert len({len(share) for share in shares}) == 1  # ranks step in lockstep
        for step in range(len(shares[0])):
            buffers = {k: v.clone() for k, v in network.named_buffers()}
            gradients = []
            for rank in reversed(range(world_size)):  # rank 0 last: its statistics stay
                for name, value in network.named_buffers():
                    value.copy_(buffers[name])
                optimizer.zero_grad()
                inputs, labels, weights = shares[rank][step]
                loss = model._loss_fn([network(inputs)], [labels], [weights])
                loss.backward()
                gradients.append([p.grad.clone() for p in parameters])
            for i, parameter in enumerate(parameters):
                parameter.grad = sum(g[i] for g in gradients) / world_size
            optimizer.step()
    return network.state_dict()


def predictions(state: dict[str, torch.Tensor]) -> np.ndarray:
    _, valid = load_data(48)
    model = make_model(8, "sgd")
    model.model.load_state_dict(state)
    return model.predict(valid, warn_domain=False).ravel()


def test_sampler_shares_each_crystal_once_up_to_documented_padding():
    for n, world in ((10, 2), (11, 2), (13, 4)):
        shares = [CrystalSampler(n, world, r, seed=3) for r in range(world)]
        for share in shares:
            share.set_epoch(5)
        drawn = [i for share in shares for i in share]
        assert len({len(list(s)) for s in shares}) == 1  # equal shares: DDP steps stay in lockstep
        assert sorted(set(drawn)) == list(range(n))  # nothing dropped
        assert len(drawn) - n == (-n) % world  # repeats: only the padding to a multiple of world
    first = CrystalSampler(10, 2, 0, seed=3)
    first.set_epoch(1)
    again = CrystalSampler(10, 2, 0, seed=3)
    assert list(first) != list(again)  # epochs reshuffle
    resumed = CrystalSampler(10, 2, 0, seed=3, first_epoch=1)
    assert list(resumed) == list(first)  # a resumed run draws the epoch it resumes


def test_two_gloo_processes_equal_the_single_process_reference(tmp_path):
    # SGD (the paper's optimizer): Adam would turn the float noise of the gradient of the
    # bias right before each batch norm (zero in exact arithmetic) into steps of ~lr, in
    # DDP and in any change of thread count alike
    run_job(
        tmp_path,
        "--devices",
        "2",
        "--epochs",
        "2",
        "--n",
        "48",
        "--batch-size",
        "8",
        "--optimizer",
        "sgd",
    )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["epochs"] == [0, 1]
    trained = state_of(tmp_path / "run")
    reference = reference_ddp(world_size=2, epochs=2, batch_size=8, n=48)
    initial = make_model(8, "sgd").model.state_dict()
    for name, value in reference.items():
        if value.is_floating_point() and name not in ("target_mean", "target_std"):
            assert not torch.equal(value, initial[name]), name  # training moved every tensor
        torch.testing.assert_close(trained[name], value, atol=1e-5, rtol=1e-5, msg=name)
    assert predictions(trained) == pytest.approx(predictions(reference), abs=1e-5)
    # a different grouping is distinguishable: one process with the 16-crystal global batch
    single = reference_ddp(world_size=1, epochs=2, batch_size=16, n=48)
    assert np.abs(predictions(single) - predictions(trained)).max() > 1e-2


def test_two_processes_streaming_shards_equal_the_reference(tmp_path):
    run_job(tmp_path, "--devices", "2", "--epochs", "2", "--n", "48", "--batch-size", "8",
            "--optimizer", "sgd", "--sharded", "10")  # fmt: skip
    assert json.loads((tmp_path / "result.json").read_text())["epochs"] == [0, 1]
    trained = state_of(tmp_path / "run")
    reference = reference_ddp(2, epochs=2, batch_size=8, n=48, sharded=tmp_path / "shards")
    for name, value in reference.items():
        torch.testing.assert_close(trained[name], value, atol=1e-5, rtol=1e-5, msg=name)
    in_memory = reference_ddp(2, epochs=2, batch_size=8, n=48)
    assert max(float((in_memory[k] - trained[k]).abs().max()) for k in trained) > 1e-3


def test_shard_shares_cover_every_shard_in_lockstep():
    sizes = {0: 10, 1: 10, 2: 10, 3: 7, 4: 10}
    for world in (1, 2, 3):
        for epoch in range(3):
            shares = [
                shard_shares(sizes, world, r, seed=1, epoch=epoch, batch_size=4)
                for r in range(world)
            ]
            assert sorted(int(s) for share, _ in shares for s in share) == sorted(sizes)
            assert len({n for _, n in shares}) == 1
    first, _ = shard_shares(sizes, 2, 0, seed=1, epoch=0, batch_size=4)
    second, _ = shard_shares(sizes, 2, 0, seed=1, epoch=1, batch_size=4)
    assert list(first) != list(second)
    with pytest.raises(ValueError, match="5 shards for 8 processes"):
        shard_shares(sizes, 8, 0, seed=1, epoch=0, batch_size=4)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    args = ("--devices", "2", "--epochs", "4", "--n", "48", "--batch-size", "8")
    whole = tmp_path / "whole"
    run_job(whole, *args)
    killed = tmp_path / "killed"
    job = run_job(killed, *args, "--step-delay", "0.4", wait=False)
    record = killed / "run" / "record.json"
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if record.exists() and json.loads(record.read_text())["epochs"] == [0]:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the run ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)  # the launcher and the process it started
    job.wait()
    epochs_at_kill = json.loads(record.read_text())["epochs"]
    assert epochs_at_kill[0] == 0 and len(epochs_at_kill) < 4
    assert not (killed / "result.json").exists()
    resumed = run_job(killed, *args)
    assert f"resuming {killed / 'run'} from epoch {len(epochs_at_kill)}" in resumed.stderr
    assert json.loads((killed / "result.json").read_text())["epochs"] == [0, 1, 2, 3]
    for name, value in state_of(whole / "run").items():
        torch.testing.assert_close(state_of(killed / "run")[name], value, atol=1e-6, rtol=1e-6)


def test_one_process_result_is_an_ordinary_checkpointable_model(tmp_path):
    import deepchem as dc

    from deepchem_cgcnn import CGCNNModel, load_model, save_model

    train, valid = load_data(24)
    model = make_model(8, model_dir=str(tmp_path / "dc"))
    environment = dict(os.environ)
    result = fit_distributed(model, train, valid, str(tmp_path / "run"), max_epochs=2, devices=1)
    assert dict(os.environ) == environment  # no stale rank or port for later programs
    assert result.is_global_zero and result.world_size == 1 and result.record.epochs == [0, 1]
    expected = model.predict(valid, warn_domain=False)
    save_model(model, str(tmp_path / "model.pt"))
    np.testing.assert_allclose(
        load_model(str(tmp_path / "model.pt")).predict(valid, warn_domain=False),
        expected,
        atol=1e-6,
    )
    model.save_checkpoint()
    restored = make_model(8, model_dir=str(tmp_path / "dc"))
    restored.restore()
    np.testing.assert_allclose(restored.predict(valid, warn_domain=False), expected, atol=1e-6)
    assert isinstance(restored, CGCNNModel) and isinstance(valid, dc.data.NumpyDataset)


def test_refusals_name_the_problem(tmp_path):
    train, valid = load_data(8)
    with pytest.raises(ValueError, match="fsdp.*not supported.*80,000 parameters"):
        fit_distributed(make_model(4), train, valid, str(tmp_path), 1, strategy="fsdp")
    with pytest.raises(ValueError, match="'ddp_spawn': use 'ddp'"):
        fit_distributed(make_model(4), train, valid, str(tmp_path), 1, strategy="ddp_spawn")
    with pytest.raises(ValueError, match="sync_batchnorm=True needs accelerator='gpu'"):
        fit_distributed(make_model(4), train, valid, str(tmp_path), 1, sync_batchnorm=True)
    with pytest.raises(ValueError, match="graph_step replays one process's step"):
        fit_distributed(make_model(4, graph_step=True), train, valid, str(tmp_path), 1)
    assert not (tmp_path / "record.json").exists()


def test_cli_trains_with_two_processes_and_reports_once(tmp_path):
    from conftest import MP_FIRST_400, run_shell

    command = (
        f"deepchem-cgcnn train --data {MP_FIRST_400} --target formation_energy_per_atom "
        "--name fe --max-epochs 2 --num-conv 2 --train-size 64 --n-jobs 1 "
        "--devices 2 --accelerator cpu"
    )
    done = run_shell(command, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test MAE") == 1  # the other process reports nothing
    card = json.loads((tmp_path / "work" / "export" / "fe.json").read_text())
    assert card["recipe"]["data_parallel"] == {"processes": 2, "strategy": "ddp"}
    assert len(card["history"]["valid_error"]) == 2
    assert (
        json.loads((tmp_path / "work" / "train" / "fe" / "record.json").read_text())["config"][
            "data_parallel"
        ]["processes"]
        == 2
    )
