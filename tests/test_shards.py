"""Featurization into on-disk shards with Dask, restarts, and training by streaming them."""

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from dask.distributed import Client, LocalCluster  # noqa: E402

from deepchem_cgcnn import (  # noqa: E402
    CGCNNFeaturizer,
    CGCNNModel,
    DomainWarning,
    MaterialsProjectLoader,
)
from deepchem_cgcnn.data.shards import (  # noqa: E402
    ShardedDataset,
    ShardPlanMismatchError,
    featurize_to_shards,
)

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="module")
def rows(mp_rows):
    """120 MP rows (every third of the fixture), one with an unreadable CIF."""
    table = mp_rows.iloc[::3].iloc[:120].reset_index(drop=True)
    table.loc[7, "cif"] = "data_broken\n_cell_length_a 3.0\n"
    return table


def shard(folder, rows, client, shard_size=16):
    return featurize_to_shards(
        str(folder),
        list(rows.cif),
        rows.formation_energy_per_atom.to_numpy(),
        list(rows.material_id),
        ["formation_energy_per_atom"],
        shard_size=shard_size,
        client=client,
    )


def assert_same_graphs(sharded, expected, ids):
    wanted = {i: g for i, g in zip(ids, expected) if not isinstance(g, np.ndarray)}
    got = dict(zip(sharded.ids, sharded.iter_graphs()))
    assert got.keys() == wanted.keys()
    for key, graph in got.items():
        assert np.array_equal(graph.atomic_numbers, wanted[key].atomic_numbers), key
        assert np.array_equal(graph.neighbor_index, wanted[key].neighbor_index), key
        assert np.array_equal(graph.neighbor_distance, wanted[key].neighbor_distance), key


def test_shards_equal_serial_featurization_and_record_failures(tmp_path, rows, client):
    serial = CGCNNFeaturizer().featurize(list(rows.cif))
    sharded = shard(tmp_path, rows, client)
    assert sharded.n_shards == 8 and len(sharded) == 119
    assert_same_graphs(sharded, serial, list(rows.material_id))
    ((failed_id, reason),) = sharded.failures()
    assert failed_id == rows.material_id[7] and reason
    np.testing.assert_array_equal(
        sharded.y.ravel(), np.delete(rows.formation_energy_per_atom.to_numpy(), 7)
    )


def test_killed_worker_loses_nothing(tmp_path, rows, client):
    pids = list(client.run(os.getpid).values())
    result = {}
    job = threading.Thread(
        target=lambda: result.setdefault("shards", shard(tmp_path, rows, client, shard_size=4))
    )
    job.start()
    while not any(
        name.startswith("shard-") and ".tmp-" not in name for name in os.listdir(tmp_path)
    ):
        time.sleep(0.01)
    finished_at_kill = sum(
        1 for n in os.listdir(tmp_path) if n.startswith("shard-") and "." not in n
    )
    os.kill(pids[0], signal.SIGKILL)  # its nanny starts a new worker; Dask reruns its tasks
    job.join(timeout=300)
    assert finished_at_kill < 30, "all shards were done before the kill"
    assert_same_graphs(
        result["shards"], CGCNNFeaturizer().featurize(list(rows.cif)), list(rows.material_id)
    )
    # the killed task may leave its half-written shard folder; the next run clears it
    shard(tmp_path, rows, client, shard_size=4)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_rerun_redoes_only_missing_or_damaged_shards(tmp_path, rows, client):
    shard(tmp_path, rows, client)
    folders = sorted(p for p in tmp_path.iterdir() if p.name.startswith("shard-"))
    stamps = {p.name: os.stat(p / "y.npy").st_mtime_ns for p in folders}
    import shutil

    shutil.rmtree(folders[2])  # a shard whose task never ran
    (folders[5] / "neighbor_distance.npy").write_bytes(b"damaged")  # a damaged shard
    (tmp_path / "shard-000003.tmp-0123").mkdir()  # what a killed task leaves
    again = shard(tmp_path, rows, client)
    redone = {p.name for p in folders if os.stat(p / "y.npy").st_mtime_ns != stamps[p.name]}
    assert redone == {folders[2].name, folders[5].name}
    assert not (tmp_path / "shard-000003.tmp-0123").exists()
    assert_same_graphs(again, CGCNNFeaturizer().featurize(list(rows.cif)), list(rows.material_id))
    with pytest.raises(ShardPlanMismatchError, match="shard_size"):
        shard(tmp_path, rows, client, shard_size=32)


def test_streaming_batches_cover_each_crystal_once_and_mix_shards(tmp_path, rows, client):
    sharded = shard(tmp_path, rows, client)
    np.random.seed(0)
    batches = list(sharded.iterbatches(batch_size=10, epochs=1))
    seen = [i for _, _, _, ids in batches for i in ids]
    assert sorted(seen) == sorted(sharded.ids) and len(seen) == len(set(seen))
    assert [len(b[0]) for b in batches[:-1]] == [10] * (len(batches) - 1)
    shard_of = {
        i: k
        for k in range(sharded.n_shards)
        for i in sharded.select(np.nonzero(sharded._shard == k)[0]).ids
    }
    assert any(len({shard_of[i] for i in ids}) > 1 for _, _, _, ids in batches)
    assert seen != list(sharded.ids)  # shuffled
    ordered = [
        i for _, _, _, ids in sharded.iterbatches(batch_size=10, deterministic=True) for i in ids
    ]
    assert ordered == list(sharded.ids)


def test_model_trains_and_predicts_from_shards_like_from_memory(
    tmp_path, rows, client, monkeypatch
):
    import deepchem as dc

    sharded = shard(tmp_path, rows, client)
    memory = dc.data.NumpyDataset(sharded.X, sharded.y, sharded.w, sharded.ids)
    everything = ShardedDataset.X
    monkeypatch.setattr(ShardedDataset, "X", property(lambda self: pytest.fail("read all graphs")))
    streamed = CGCNNModel(num_conv=1, batch_size=16, learning_rate=0.01)
    streamed.fit(sharded, nb_epoch=2)
    with pytest.warns(DomainWarning):  # the domain check streams too
        streamed.predict(sharded)
    monkeypatch.setattr(ShardedDataset, "X", everything)
    in_memory = CGCNNModel(num_conv=1, batch_size=16, learning_rate=0.01)
    in_memory.fit(memory, nb_epoch=0)
    assert streamed.training_counts == in_memory.training_counts
    assert streamed.featurizer_params == in_memory.featurizer_params
    assert float(streamed.model.target_mean) == pytest.approx(float(in_memory.model.target_mean))
    np.testing.assert_allclose(
        streamed.predict(sharded, warn_domain=False),
        streamed.predict(memory, warn_domain=False),
        atol=1e-6,
    )
    view = sharded.select([77, 5, 0])  # a view keeps the dataset's order, as DiskDataset's
    assert list(view.ids) == [sharded.ids[0], sharded.ids[5], sharded.ids[77]]
    assert [g.num_nodes for g in view.iter_graphs()] == [memory.X[i].num_nodes for i in (0, 5, 77)]


def test_scores_on_a_split_view_match_the_in_memory_split(tmp_path, client):
    """Streaming meets a view's rows in the order of its labels: a metric on a random split
    of shards equals the metric on the same split in memory."""
    from conftest import MP_FIRST_400

    from deepchem_cgcnn.training import mean_absolute_error

    kwargs = dict(tasks=["formation_energy_per_atom"], save_dir=str(tmp_path))
    _, (train, valid, _), _ = MaterialsProjectLoader(str(MP_FIRST_400), **kwargs).load()
    _, (_, sharded_valid, _), _ = MaterialsProjectLoader(
        str(MP_FIRST_400), scheduler="dask", client=client, shard_size=64, **kwargs
    ).load()
    model = CGCNNModel(num_conv=1, batch_size=32, learning_rate=0.01)
    model.fit(train, nb_epoch=1)
    assert mean_absolute_error(model, sharded_valid) == pytest.approx(
        mean_absolute_error(model, valid), abs=1e-6
    )
    by_id = dict(zip(valid.ids, model.predict(valid, warn_domain=False).ravel()))
    streamed = model.predict(sharded_valid, warn_domain=False).ravel()
    np.testing.assert_allclose(streamed, [by_id[i] for i in sharded_valid.ids], atol=1e-6)
    records = model.check_domain(sharded_valid, with_formula=False)
    assert [r.id for r in records] == list(sharded_valid.ids)


def test_loader_with_dask_returns_the_same_splits_as_in_memory(tmp_path, client):
    from conftest import MP_FIRST_400

    kwargs = dict(tasks=["formation_energy_per_atom"], save_dir=str(tmp_path))
    local = MaterialsProjectLoader(str(MP_FIRST_400), **kwargs).load()
    dask = MaterialsProjectLoader(
        str(MP_FIRST_400), scheduler="dask", client=client, shard_size=64, **kwargs
    ).load()
    for a, b in zip(local[1], dask[1]):
        assert isinstance(b, ShardedDataset)
        assert sorted(a.ids) == sorted(b.ids)  # the same split; b in the shards' order
        labels = dict(zip(a.ids, a.y[:, 0]))
        np.testing.assert_array_equal(b.y[:, 0], [labels[i] for i in b.ids])
    assert dask.summary.counts() == local.summary.counts()
    again = MaterialsProjectLoader(
        str(MP_FIRST_400), scheduler="dask", client=client, shard_size=64, **kwargs
    ).load()
    assert again.summary.from_cache and [len(d) for d in again[1]] == [len(d) for d in dask[1]]
    with pytest.raises(ValueError, match="not transformed"):
        MaterialsProjectLoader(str(MP_FIRST_400), scheduler="dask", transformers=["normalization"])
