"""MaterialsProjectLoader and the dc.molnet-style loaders, offline, on real formats and crystals."""

import dataclasses
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE, need
from loopback import LoopbackServer

from deepchem_cgcnn import CGCNNFeaturizer
from deepchem_cgcnn.data import remote
from deepchem_cgcnn.data.download import DownloadError
from deepchem_cgcnn.data.loader import MaterialsProjectLoader
from deepchem_cgcnn.data.molnet import load_mp_formation_energy, load_perovskite
from deepchem_cgcnn.examples import example_structures


@pytest.fixture(scope="module")
def crystals():
    return example_structures()


@pytest.fixture
def dirs(tmp_path):
    return {"data_dir": str(tmp_path / "raw"), "save_dir": str(tmp_path / "cache")}


def _mp_table(mp_rows, path, n=100):
    mp_rows.head(n).to_csv(path, index=False)
    return str(path)


def _split_ids(datasets):
    return [sorted(d.ids.tolist()) for d in datasets]


def test_local_table_loads_splits_60_20_20_with_material_ids(mp_rows, tmp_path, dirs):
    path = _mp_table(mp_rows, tmp_path / "mp.csv")
    tasks, (train, valid, test), transformers = MaterialsProjectLoader(
        path, tasks=["formation_energy"], **dirs
    ).load()
    assert tasks == ["formation_energy"] and transformers == []
    assert (len(train), len(valid), len(test)) == (60, 20, 20)
    labels = dict(zip(mp_rows.material_id, mp_rows.formation_energy_per_atom))
    for dataset in (train, valid, test):
        assert set(dataset.ids) <= set(labels)
        np.testing.assert_allclose(dataset.y[:, 0], [labels[i] for i in dataset.ids])
    assert not set(train.ids) & set(valid.ids) and not set(valid.ids) & set(test.ids)


def test_reload_returns_the_same_split_from_cache_and_a_changed_setting_does_not(
    mp_rows, tmp_path, dirs
):
    path = _mp_table(mp_rows, tmp_path / "mp.csv", n=50)
    first = MaterialsProjectLoader(path, tasks=["formation_energy"], **dirs)
    _, datasets, _ = first.load()
    assert not first.summary.from_cache
    again = MaterialsProjectLoader(path, tasks=["formation_energy"], **dirs)
    again.read = lambda: pytest.fail("a cached split must be served without parsing the source")
    _, cached, _ = again.load()
    assert again.summary.from_cache
    assert _split_ids(cached) == _split_ids(datasets)
    np.testing.assert_array_equal(cached[0].X[0].neighbor_index, datasets[0].X[0].neighbor_index)

    other_radius = MaterialsProjectLoader(
        path, tasks=["formation_energy"], featurizer=CGCNNFeaturizer(radius=6.0), **dirs
    )
    _, changed, _ = other_radius.load()
    assert not other_radius.summary.from_cache
    assert changed[0].X[0].radius == 6.0

    other_split = MaterialsProjectLoader(path, tasks=["formation_energy"], splitter="cgcnn", **dirs)
    _, resplit, _ = other_split.load()
    assert other_split.summary.from_cache  # the featurized data are reused, the split is new
    assert _split_ids(resplit) != _split_ids(datasets)


def test_another_label_column_of_the_same_file_is_not_served_from_cache(mp_rows, tmp_path, dirs):
    path = _mp_table(mp_rows, tmp_path / "mp.csv", n=30)
    _, (first,), _ = MaterialsProjectLoader(
        path, tasks=["energy"], splitter=None, **dirs, label_columns={"energy": "band_gap"}
    ).load()
    other = MaterialsProjectLoader(
        path, tasks=["energy"], splitter=None, **dirs, label_columns={"energy": "efermi"}
    )
    _, (second,), _ = other.load()
    assert not other.summary.from_cache
    efermi = dict(zip(mp_rows.material_id, mp_rows.efermi))
    np.testing.assert_allclose(second.y[:, 0], [efermi[i] for i in second.ids])
    assert not np.allclose(first.y, second.y)


def test_changed_source_file_is_never_served_from_cache(mp_rows, tmp_path, dirs):
    path = tmp_path / "mp.csv"
    _mp_table(mp_rows, path, n=30)
    _, (train, _, _), _ = MaterialsProjectLoader(str(path), tasks=["band_gap"], **dirs).load()
    changed = mp_rows.head(30).copy()
    changed["band_gap"] += 1.0
    changed.to_csv(path, index=False)
    loader = MaterialsProjectLoader(str(path), tasks=["band_gap"], **dirs)
    _, (train2, _, _), _ = loader.load()
    assert not loader.summary.from_cache
    old = dict(zip(train.ids, train.y[:, 0]))
    np.testing.assert_allclose([old[i] + 1.0 for i in train2.ids], train2.y[:, 0])


def test_bad_rows_are_dropped_counted_and_named_and_the_rest_load(mp_rows, tmp_path, dirs):
    rows = mp_rows.head(40).copy()
    rows.loc[0, "formation_energy_per_atom"] = np.nan
    rows.loc[1, "formation_energy_per_atom"] = np.inf
    rows.loc[2, "cif"] = "data_broken\n_cell_length_a 1\n"
    disordered = example_structures()["NaCl (rock salt)"].copy()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    rows.loc[4, "cif"] = disordered.to(fmt="cif")
    duplicate = rows.iloc[[5]].copy()
    rows = pd.concat([rows, duplicate], ignore_index=True)
    path = tmp_path / "bad.csv"
    rows.to_csv(path, index=False)
    loader = MaterialsProjectLoader(str(path), tasks=["formation_energy"], **dirs)
    _, datasets, _ = loader.load()
    summary = loader.summary
    ids = rows.material_id
    assert summary.dropped_ids("missing label") == [ids[0]]
    assert summary.dropped_ids("non-finite label") == [ids[1]]
    assert summary.dropped_ids("duplicate id") == [ids[5]]
    assert sorted(summary.dropped_ids("featurization failed")) == sorted([ids[2], ids[4]])
    reasons = dict(summary.dropped["featurization failed"])
    assert "disordered" in reasons[ids[4]]
    assert summary.n_rows == 41 and summary.n_loaded == 41 - 5
    assert sum(len(d) for d in datasets) == 36
    loaded = set().union(*(set(d.ids) for d in datasets))
    assert set(summary.dropped_ids()) - loaded == set(summary.dropped_ids()) - {ids[5]}
    assert ids[5] in loaded  # the first copy of a duplicated id is kept
    assert "dropped 5" in str(summary)
    reloaded = MaterialsProjectLoader(str(path), tasks=["formation_energy"], **dirs)
    reloaded.load()
    assert reloaded.summary.counts() == summary.counts()


def test_query_keeps_non_metals_and_counts_the_rest(mp_rows, tmp_path, dirs):
    path = _mp_table(mp_rows, tmp_path / "mp.csv", n=80)
    loader = MaterialsProjectLoader(path, tasks=["band_gap"], query="band_gap > 0", **dirs)
    _, datasets, _ = loader.load()
    kept = set().union(*(set(d.ids) for d in datasets))
    rows = mp_rows.head(80)
    assert kept == set(rows.material_id[rows.band_gap > 0])
    assert set(loader.summary.dropped_ids("excluded by query")) == set(
        rows.material_id[~(rows.band_gap > 0)]
    )
    everything = MaterialsProjectLoader(path, tasks=["band_gap"], **dirs)
    everything.load()
    assert not everything.summary.from_cache  # the query is part of the cache key


def test_original_cgcnn_folder_with_id_prop_csv(tmp_path, dirs):
    source = need(REFERENCE / "cifs")
    folder = tmp_path / "cgcnn-data"
    shutil.copytree(source, folder)
    cifs = sorted(p.stem for p in folder.glob("*.cif"))
    with open(folder / "id_prop.csv", "w") as handle:
        for i, name in enumerate(cifs):
            handle.write(f"{name},{i / 10}\n")
        handle.write("no-such-crystal,1.0\n")
    loader = MaterialsProjectLoader(str(folder), splitter=None, **dirs)
    tasks, (everything,), _ = loader.load()
    assert tasks == ["target"]
    assert sorted(everything.ids) == cifs
    values = dict(zip(everything.ids, everything.y[:, 0]))
    assert all(values[name] == pytest.approx(i / 10) for i, name in enumerate(cifs))
    assert loader.summary.dropped_ids("unreadable row") == ["no-such-crystal"]


def test_in_memory_structures_and_dataframe_give_the_same_graphs(crystals, dirs):
    names, structures = list(crystals), list(crystals.values())
    energies = np.arange(len(names), dtype=float)
    _, (from_tuple,), _ = MaterialsProjectLoader(
        (structures, energies, names), splitter=None, **dirs
    ).load()
    frame = pd.DataFrame(
        {"material_id": names, "structure": [s.as_dict() for s in structures], "energy": energies}
    )
    _, (from_frame,), _ = MaterialsProjectLoader(
        frame, tasks=["energy"], splitter=None, **dirs
    ).load()
    assert from_tuple.ids.tolist() == names == from_frame.ids.tolist()
    for a, b in zip(from_tuple.X, from_frame.X):
        np.testing.assert_array_equal(a.neighbor_index, b.neighbor_index)
    np.testing.assert_array_equal(from_tuple.y, from_frame.y)


@pytest.mark.filterwarnings("ignore")
def test_any_deepchem_featurizer_gets_structures(crystals, dirs):
    from deepchem_cgcnn._quiet import import_deepchem

    dc = import_deepchem()
    structures = list(crystals.values())
    featurizer = dc.feat.SineCoulombMatrix(max_atoms=8)
    _, (everything,), _ = MaterialsProjectLoader(
        (structures, np.ones(len(structures))), featurizer=featurizer, splitter=None, **dirs
    ).load()
    assert everything.X.shape == (12, 8)
    np.testing.assert_allclose(everything.X[0], featurizer.featurize([structures[0]])[0])


# ---------------------------------------------------------------- DeepChem archives
def _json_lines(crystals, label="formation_energy", values=None):
    values = range(len(crystals)) if values is None else values
    lines = [
        json.dumps({"structure": s.as_dict(), label: float(v)})
        for s, v in zip(crystals.values(), values)
    ]
    return ("\n".join(lines) + "\n").encode()


def _tar_gz(member, payload):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_perovskite_from_deepchem_archive_in_data_dir_needs_no_network(crystals, dirs, no_network):
    os.makedirs(dirs["data_dir"])
    with open(os.path.join(dirs["data_dir"], "perovskite.tar.gz"), "wb") as handle:
        handle.write(_tar_gz("perovskite.json", _json_lines(crystals)))
    result = load_perovskite(**dirs)
    tasks, (train, valid, test), transformers = result
    assert tasks == ["formation_energy"]
    assert (len(train), len(valid), len(test)) == (7, 2, 3)
    assert type(transformers[0]).__name__ == "NormalizationTransformer"
    assert os.path.exists(
        os.path.join(dirs["data_dir"], "perovskite.json")
    )  # as dc.molnet leaves it
    restored = transformers[0].untransform(train.y)
    assert sorted(restored[:, 0].round(6)) == sorted(
        float(i.split(":")[1]) - 1 for i in train.ids
    )  # label i sits on JSON line i + 1
    assert result.summary.n_loaded == 12


def test_extracted_deepchem_json_alone_is_enough(crystals, dirs, no_network):
    os.makedirs(dirs["data_dir"])
    with open(os.path.join(dirs["data_dir"], "mp_formation_energy.json"), "wb") as handle:
        handle.write(_json_lines(crystals) + b"{not json\n")
    result = load_mp_formation_energy(splitter=None, transformers=[], **dirs)
    assert len(result[1][0]) == 12
    assert result.summary.dropped_ids("unreadable row") == ["line 13"]


def _serve_named(monkeypatch, server, name, body, sha256=None):
    dataset = remote.NAMED_DATASETS[name]
    url = server.add("/" + dataset.remote.filename, body)
    moved = dataclasses.replace(
        dataset,
        remote=dataclasses.replace(
            dataset.remote, url=url, sha256=sha256 if sha256 is not None else dataset.remote.sha256
        ),
    )
    monkeypatch.setitem(remote.NAMED_DATASETS, name, moved)


def test_deepchem_archive_downloads_from_the_server_once(crystals, dirs, monkeypatch):
    with LoopbackServer() as server:
        _serve_named(
            monkeypatch,
            server,
            "deepchem_mp_is_metal",
            _tar_gz("mp_is_metal.json", _json_lines(crystals, "is_metal")),
        )
        tasks, datasets, _ = MaterialsProjectLoader("deepchem_mp_is_metal", **dirs).load()
        assert tasks == ["is_metal"] and sum(len(d) for d in datasets) == 12
        assert len(server.requests) == 1


def test_truncated_deepchem_archive_is_rejected(crystals, dirs, monkeypatch):
    archive = _tar_gz("perovskite.json", _json_lines(crystals))
    with LoopbackServer() as server:
        _serve_named(monkeypatch, server, "deepchem_perovskite", archive[: len(archive) // 2])
        with pytest.raises(DownloadError, match="perovskite.tar.gz"):
            load_perovskite(retries=1, **dirs)
    assert not os.path.exists(os.path.join(dirs["data_dir"], "perovskite.tar.gz"))


def _archive_with_link(member, kind):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.type = {
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
            "device": tarfile.CHRTYPE,
        }[kind]
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "kind, words", [("symlink", "symbolic link"), ("hardlink", "hard link"), ("device", "device")]
)
def test_an_archive_whose_member_is_not_a_regular_file_is_refused_and_dropped(
    kind, words, dirs, no_network
):
    os.makedirs(dirs["data_dir"])
    archive = os.path.join(dirs["data_dir"], "perovskite.tar.gz")
    with open(archive, "wb") as handle:
        handle.write(_archive_with_link("perovskite.json", kind))
    with pytest.raises(
        DownloadError, match=f"member perovskite.json is a {words}, not a regular file"
    ):
        MaterialsProjectLoader("deepchem_perovskite", offline=True, **dirs).load()
    assert not os.path.exists(archive) and os.path.exists(archive + ".corrupt")


def test_an_archive_that_expands_far_beyond_its_dataset_is_refused(dirs, monkeypatch, no_network):
    bomb = _tar_gz("perovskite.json", b"\0" * (8 << 20))  # 8 MiB of zeros, ~8 kB packed
    assert len(bomb) < 50_000
    dataset = remote.NAMED_DATASETS["deepchem_perovskite"]
    capped = dataclasses.replace(
        dataset,
        remote=dataclasses.replace(
            dataset.remote, validate=remote._check_archive("perovskite.json", 1 << 20)
        ),
    )
    monkeypatch.setitem(remote.NAMED_DATASETS, "deepchem_perovskite", capped)
    os.makedirs(dirs["data_dir"])
    with open(os.path.join(dirs["data_dir"], "perovskite.tar.gz"), "wb") as handle:
        handle.write(bomb)
    with pytest.raises(DownloadError, match="expands to more than 1,048,576 bytes"):
        MaterialsProjectLoader("deepchem_perovskite", offline=True, **dirs).load()


def test_named_datasets_carry_download_and_expansion_caps():
    for dataset in remote.NAMED_DATASETS.values():
        assert dataset.remote.byte_limit <= dataset.n_entries * remote.MAX_DOWNLOAD_PER_ENTRY


# ---------------------------------------------------------------- Matbench
def _matbench_body(crystals, column, folder, values=None):
    """A file in Matbench's format, written by matminer's own writer."""
    from matminer.utils.io import store_dataframe_as_json

    values = np.linspace(0, 1, len(crystals)) if values is None else values
    frame = pd.DataFrame(
        {"structure": list(crystals.values()), column: values},
        index=[f"mb-{i:05d}" for i in range(len(crystals))],
    )
    path = os.path.join(folder, "matbench.json.gz")
    store_dataframe_as_json(frame, path, compression="gz", pbar=False)
    with open(path, "rb") as handle:
        return handle.read()


def test_matbench_source_is_checksum_verified(crystals, dirs, monkeypatch, tmp_path):
    import hashlib

    body = _matbench_body(crystals, "gap pbe", tmp_path)
    with LoopbackServer() as server:
        _serve_named(
            monkeypatch, server, "matbench_mp_gap", body, sha256=hashlib.sha256(body).hexdigest()
        )
        tasks, (everything,), _ = MaterialsProjectLoader(
            "matbench_mp_gap", splitter=None, **dirs
        ).load()
        assert tasks == ["band_gap"]
        assert everything.ids[0] == "matbench_mp_gap:mb-00000"
        np.testing.assert_allclose(everything.y[:, 0], np.linspace(0, 1, 12), atol=1e-12)

    with LoopbackServer() as server:
        _serve_named(monkeypatch, server, "matbench_log_kvrh", body, sha256="0" * 64)
        with pytest.raises(DownloadError, match="sha256"):
            MaterialsProjectLoader("matbench_log_kvrh", retries=1, **dirs).load()


def test_offline_without_the_file_fails_fast_naming_url_and_path(dirs, no_network):
    with pytest.raises(DownloadError) as error:
        load_perovskite(offline=True, **dirs)
    message = str(error.value)
    assert remote.NAMED_DATASETS["deepchem_perovskite"].remote.url in message
    assert os.path.join(dirs["data_dir"], "perovskite.tar.gz") in message


def test_every_matbench_structure_task_is_named_with_matminers_checksum():
    names = {n for n in remote.NAMED_DATASETS if n.startswith("matbench_")}
    assert {
        "matbench_mp_e_form",
        "matbench_mp_gap",
        "matbench_mp_is_metal",
        "matbench_log_kvrh",
        "matbench_log_gvrh",
        "matbench_perovskites",
    } <= names
    assert "matbench_steels" not in names  # composition-only tasks are not crystal graphs
    for name in names:
        assert len(remote.NAMED_DATASETS[name].remote.sha256) == 64
    assert remote.NAMED_DATASETS["matbench_mp_e_form"].n_entries == 132752


@pytest.mark.torch
def test_deepchem_molnet_script_runs_with_only_its_imports_changed(dirs, no_network):
    """DeepChem's perovskite example (dc.molnet.load_perovskite + CGCNNFeaturizer + CGCNNModel)
    on DeepChem's file format in data_dir, with only `dc.molnet.` / `dc.feat.` / `dc.models.`
    replaced by our imports."""
    from conftest import CASTELLI_FIRST_1500, CASTELLI_TABLE, _first_rows
    from pymatgen.core import Structure

    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn._quiet import import_deepchem

    dc = import_deepchem()
    table = _first_rows(CASTELLI_TABLE, CASTELLI_FIRST_1500, 60)
    lines = [
        json.dumps({"structure": Structure.from_str(c, fmt="cif").as_dict(), "formation_energy": e})
        for c, e in zip(table.cif, table.heat_all)
    ]
    os.makedirs(dirs["data_dir"])
    with open(os.path.join(dirs["data_dir"], "perovskite.json"), "w") as handle:
        handle.write("\n".join(lines) + "\n")

    tasks, datasets, transformers = load_perovskite(
        featurizer=CGCNNFeaturizer(), data_dir=dirs["data_dir"], save_dir=dirs["save_dir"]
    )
    train_dataset, val_dataset, test_dataset = datasets
    model = CGCNNModel(mode="regression", batch_size=32, learning_rate=0.001)
    model.fit(train_dataset, nb_epoch=3)
    scores = model.evaluate(test_dataset, [dc.metrics.Metric(dc.metrics.mae_score)], transformers)
    assert tasks == ["formation_energy"] and len(train_dataset) == 36
    # evaluate() undoes the normalization: the error is in eV per cell, computed on the
    # untransformed predictions and labels
    predicted = transformers[0].untransform(model.predict(test_dataset))
    labels = transformers[0].untransform(test_dataset.y)
    heat = dict(zip(table.index.map(lambda i: f"perovskite:{i + 1}"), table.heat_all))
    assert labels[:, 0] == pytest.approx([heat[i] for i in test_dataset.ids], abs=1e-9)
    assert scores["mae_score"] == pytest.approx(np.abs(predicted - labels).mean(), rel=1e-9)


def test_every_named_dataset_has_a_card_with_its_url_checksum_and_size():
    from pathlib import Path

    cards = Path(__file__).resolve().parents[1] / "datasets"
    for name, dataset in remote.NAMED_DATASETS.items():
        card = (cards / f"{name}.md").read_text()
        assert dataset.remote.url in card, name
        assert f"{dataset.n_entries:,}" in card, name
        if dataset.remote.sha256:
            assert dataset.remote.sha256 in card, name


@pytest.mark.parametrize(
    "function, task",
    [
        ("load_mp_formation_energy", "formation_energy"),
        ("load_mp_band_gap", "band_gap"),
        ("load_mp_metallicity", "is_metal"),
        ("load_mp_bulk_modulus", "log10_k_vrh"),
        ("load_mp_shear_modulus", "log10_g_vrh"),
        ("load_perovskite", "formation_energy"),
    ],
)
def test_each_loader_fetches_its_default_source_from_the_server(
    function, task, crystals, dirs, monkeypatch, tmp_path
):
    import hashlib

    from deepchem_cgcnn.data import molnet

    name = molnet.DEFAULT_SOURCES[function]
    dataset = remote.NAMED_DATASETS[name]
    column = dataset.label_columns[task]
    labels = [i % 2 for i in range(12)] if task == "is_metal" else np.linspace(-1, 1, 12)
    if dataset.kind == "deepchem":
        body = _tar_gz(dataset.member, _json_lines(crystals, column, labels))
    else:
        body = _matbench_body(crystals, column, tmp_path, labels)
    with LoopbackServer() as server:
        _serve_named(
            monkeypatch,
            server,
            name,
            body,
            sha256=hashlib.sha256(body).hexdigest() if dataset.remote.sha256 else None,
        )
        splitter = "stratified" if task == "is_metal" else "random"
        tasks, (train, valid, test), _ = getattr(molnet, function)(splitter=splitter, **dirs)
    assert tasks == [task]
    expected = (8, 2, 2) if task == "is_metal" else (7, 2, 3)  # 6 + 6 classes: 4/1/1 each
    assert (len(train), len(valid), len(test)) == expected
    if task == "is_metal":  # 6 metals of 12, stratified: within one of half of each split
        assert all(
            abs(d.w.shape[0] / 2 - int(np.round(d.y.sum()))) <= 1 for d in (train, valid, test)
        )


# ---------------------------------------------------------------- table errors
def test_table_rows_report_their_true_problem(crystals, tmp_path, dirs):
    structures = list(crystals.values())[:6]
    cif = [s.to(fmt="cif") for s in structures]
    frame = pd.DataFrame(
        {
            "material_id": ["a", "", "", "d", "e", "f"],
            "cif": cif,
            "target": ["1.0", "2.0", "3.0", "abc", "1,5", ""],
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    data = path.read_bytes().replace(b"# generated using pymatgen", b"# \xc5ngstr\xf6m", 1)
    path.write_bytes(data)  # one Latin-1 line
    with pytest.warns(UnicodeWarning, match=r"lines \[2\] are not UTF-8"):
        loader = MaterialsProjectLoader(str(path), tasks=["target"], splitter=None, **dirs)
        _, (dataset,), _ = loader.load()
    assert sorted(dataset.ids) == ["a", "row 2 (no material_id)", "row 3 (no material_id)"]
    dropped = dict(loader.summary.dropped["missing label"])
    assert dropped == {
        "d": "target: 'abc' is not a number",
        "e": "target: '1,5' is not a number",
        "f": "no label",
    }
    assert "duplicate id" not in loader.summary.dropped


def test_json_lines_with_a_latin1_byte_still_load(crystals, tmp_path, dirs):
    lines = _json_lines(crystals).splitlines()
    lines[3] = lines[3].replace(b'{"structure"', b'{"note": "\xe9", "structure"', 1)
    path = tmp_path / "table.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.warns(UnicodeWarning, match=r"lines \[4\]"):
        _, (dataset,), _ = MaterialsProjectLoader(
            str(path), tasks=["formation_energy"], splitter=None, **dirs
        ).load()
    assert len(dataset) == 12
