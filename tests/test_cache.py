"""The featurized-data cache is verified on every reload: altered or damaged files are rebuilt."""

import glob
import os

import numpy as np
import pytest

from deepchem_cgcnn._io import MANIFEST, verify_manifest
from deepchem_cgcnn.data.loader import CacheWarning, MaterialsProjectLoader
from deepchem_cgcnn.examples import example_structures


@pytest.fixture
def table(mp_rows, tmp_path):
    path = tmp_path / "mp.csv"
    mp_rows.head(40).to_csv(path, index=False)
    return str(path)


def _load(table, cache):
    return MaterialsProjectLoader(
        table, tasks=["formation_energy"], save_dir=str(cache), data_dir=str(cache)
    ).load()


def _cached(cache, pattern):
    files = sorted(glob.glob(os.path.join(cache, "**", pattern), recursive=True))
    assert files, f"no cached {pattern}"
    return files


def _labels(result):
    _, datasets, _ = result
    return [dict(zip(d.ids, d.y[:, 0])) for d in datasets]


@pytest.mark.parametrize("damage", ["rewrite", "flip-a-bit", "truncate", "delete"])
def test_a_damaged_or_altered_cache_is_rebuilt_and_says_so(table, tmp_path, damage):
    cache = tmp_path / "cache"
    expected = _labels(_load(table, cache))
    for shard in _cached(cache, "y.npy"):
        if damage == "rewrite":  # a plausible-looking file with other labels
            np.save(shard, np.zeros_like(np.load(shard)))
        elif damage == "flip-a-bit":
            with open(shard, "r+b") as handle:
                handle.seek(-1, os.SEEK_END)
                last = handle.read(1)[0]
                handle.seek(-1, os.SEEK_END)
                handle.write(bytes([last ^ 1]))
        elif damage == "truncate":
            os.truncate(shard, os.path.getsize(shard) // 2)
        else:
            os.unlink(shard)
    with pytest.warns(
        CacheWarning,
        match=r"cache .*-featurized.* failed verification "
        r"\(.*y\.npy: (checksum mismatch|missing)",
    ):
        reloaded = _load(table, cache)
    assert _labels(reloaded) == expected
    for manifest in _cached(cache, MANIFEST):
        assert verify_manifest(os.path.dirname(manifest)) is None


def test_an_intact_cache_is_served_without_rebuilding(table, tmp_path, recwarn):
    cache = tmp_path / "cache"
    _load(table, cache)
    result = _load(table, cache)
    assert result.summary.from_cache
    assert not [w for w in recwarn if issubclass(w.category, CacheWarning)]


def test_a_table_of_cif_paths_is_keyed_by_the_files_contents(tmp_path):
    crystals = example_structures()
    names = ["NaCl (rock salt)", "Cu (fcc)", "Si (diamond)", "MgO (rock salt)", "LiF (rock salt)"]
    paths = []
    for k, name in enumerate(names):
        path = tmp_path / f"c{k}.cif"
        crystals[name].to(filename=str(path))
        paths.append(str(path))
    csv = tmp_path / "table.csv"
    csv.write_text("id,cif,target\n" + "".join(f"c{k},{p},{k}\n" for k, p in enumerate(paths)))
    cache = tmp_path / "cache"

    def graphs():
        _, (dataset,), _ = MaterialsProjectLoader(
            str(csv), tasks=["target"], splitter=None, save_dir=str(cache), data_dir=str(cache)
        ).load()
        return {i: g for i, g in zip(dataset.ids, dataset.X)}

    before = graphs()["c1"]
    assert graphs()["c1"].neighbor_distance.min() == pytest.approx(before.neighbor_distance.min())
    bigger = crystals["Cu (fcc)"].copy()
    bigger.scale_lattice(bigger.volume * 1.331)  # the same file name, 10 % longer bonds
    bigger.to(filename=paths[1])
    after = graphs()["c1"]
    assert after.neighbor_distance.min() == pytest.approx(1.1 * before.neighbor_distance.min())


# ---------------------------------------------------------------- no code from a cache
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_cache_holds_no_pickle_and_a_planted_one_never_runs(table, tmp_path):
    from deepchem_cgcnn._io import write_manifest

    cache = tmp_path / "cache"
    expected = _labels(_load(table, cache))
    for path in glob.glob(str(cache / "**" / "*"), recursive=True):
        if path.endswith(".npy"):
            np.load(path, allow_pickle=False)  # plain numeric arrays only
        assert not path.endswith((".pkl", ".joblib", ".gz")), path
    marker = tmp_path / "ran"
    for shard in _cached(cache, "y.npy"):  # a local attacker plants code
        np.save(shard, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
        write_manifest(os.path.dirname(os.path.dirname(shard)))  # and fixes the checksums
    with pytest.warns(CacheWarning, match="cannot be read"):
        assert _labels(_load(table, cache)) == expected
    assert not marker.exists()


def test_a_cache_folder_others_can_write_to_is_refused(table, tmp_path):
    from deepchem_cgcnn.data.store import UnsafeCacheFolderError

    shared = tmp_path / "shared-cache"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafeCacheFolderError, match=r"shared-cache is writable by others"):
        _load(table, shared)


def test_the_default_cache_is_per_user(monkeypatch):
    import tempfile

    from deepchem_cgcnn.data.loader import default_data_dir

    monkeypatch.delenv("DEEPCHEM_DATA_DIR", raising=False)
    folder = default_data_dir()
    assert not folder.startswith(tempfile.gettempdir()) and "deepchem-cgcnn" in folder
    assert folder.startswith(os.path.expanduser("~")) or "XDG_CACHE_HOME" in os.environ
    monkeypatch.setenv("DEEPCHEM_DATA_DIR", "/data/mine")
    assert default_data_dir() == "/data/mine"


# ---------------------------------------------------------------- concurrency, forced
def test_a_second_loader_waits_for_the_first_builder_and_reuses_its_cache(
    table, tmp_path, monkeypatch
):
    """Two loaders of one dataset: the second blocks on the build lock while the first is
    held mid-featurization, then serves the finished cache; featurization runs once."""
    import threading

    cache = tmp_path / "cache"
    holding, release, calls = threading.Event(), threading.Event(), []
    real = MaterialsProjectLoader.featurize

    def held_featurize(self, table_):
        calls.append(1)
        holding.set()
        assert release.wait(30)
        return real(self, table_)

    monkeypatch.setattr(MaterialsProjectLoader, "featurize", held_featurize)
    results = {}
    first = threading.Thread(target=lambda: results.update(first=_load(table, cache)))
    second = threading.Thread(target=lambda: results.update(second=_load(table, cache)))
    first.start()
    assert holding.wait(30)  # the first loader holds the lock, mid-build
    second.start()
    second.join(timeout=1.0)
    assert second.is_alive() and "second" not in results  # blocked on the lock, not racing
    release.set()
    first.join(30)
    second.join(30)
    assert len(calls) == 1 and results["second"].summary.from_cache
    assert _labels(results["first"]) == _labels(results["second"])


def test_a_cache_replaced_while_a_reader_reads_it_is_not_a_crash(table, tmp_path, monkeypatch):
    """The reader verified the cache; another process then replaces the folder under it."""
    import shutil

    from deepchem_cgcnn.data import store

    cache = tmp_path / "cache"
    expected = _labels(_load(table, cache))
    real, moved = store.load_dataset, []

    def replaced_under_the_reader(folder):
        if not moved:
            parent = os.path.dirname(folder)
            shutil.move(parent, parent + ".gone")  # the folder vanishes mid-read
            moved.append(parent)
        return real(folder)

    monkeypatch.setattr(store, "load_dataset", replaced_under_the_reader)
    with pytest.warns(CacheWarning, match="cannot be read"):
        assert _labels(_load(table, cache)) == expected
    assert moved


def test_predict_writes_each_chunk_before_the_next_one(tmp_path, monkeypatch, capsys):
    from deepchem_cgcnn import cli

    files = []
    for k, structure in enumerate(list(example_structures().values())[:5]):
        path = tmp_path / f"c{k}.cif"
        structure.to(filename=str(path))
        files.append(str(path))
    real, chunks = cli._predict_chunk, []

    def killed_on_the_third_chunk(*args):
        chunks.append(1)
        if len(chunks) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cli, "_predict_chunk", killed_on_the_third_chunk)
    out = tmp_path / "rows.csv"
    with pytest.raises(KeyboardInterrupt):
        cli.main(
            [
                "predict",
                "--model",
                "mp-formation-energy",
                "--chunk-size",
                "2",
                "--out",
                str(out),
                *files,
            ]
        )
    rows = out.read_text().strip().splitlines()
    assert rows[0].startswith("structure,formula") and [r.split(",")[0] for r in rows[1:]] == [
        "c0.cif",
        "c1.cif",
        "c2.cif",
        "c3.cif",
    ]
