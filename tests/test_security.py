"""Hostile and broken inputs: no code from files, bounded work per structure, clear errors."""

import os
import sys
import time
from importlib import resources

import pytest
import torch
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, CheckpointError
from deepchem_cgcnn.cli import main
from deepchem_cgcnn.original import read_cgcnn_checkpoint
from deepchem_cgcnn.registry import load_saved

NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


class _Payload:
    """Unpickling this creates a file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------- dependency floors
def test_dependency_floors_exclude_known_code_execution():
    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")) as handle:
        text = handle.read()
    requirements = {
        Requirement(r).name: Requirement(r).specifier
        for r in tomllib.loads(text)["project"]["dependencies"]
    }
    # CVE-2024-23346: pymatgen < 2024.2.20 runs code from a CIF's symmetry operations
    assert not requirements["pymatgen"].contains(Version("2024.2.8"))
    # CVE-2025-32434: torch < 2.6 runs code from files even with weights_only=True
    assert not requirements["torch"].contains(Version("2.5.1"))


# ---------------------------------------------------------------- no code from files
def test_checkpoint_loaders_refuse_pickled_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "model_state_dict": _Payload(str(marker)),
            "hyperparameters": _Payload(str(marker)),
            "state_dict": {},
            "normalizer": {},
            "featurizer": {},
        },
        path,
    )
    model = CGCNNModel(num_conv=1)
    for load in (
        lambda: model.restore(checkpoint=str(path)),
        lambda: load_saved(str(path)),
        lambda: read_cgcnn_checkpoint(str(path)),
    ):
        with pytest.raises(CheckpointError, match="evil.pt"):
            load()
    assert not marker.exists()


def test_structure_dicts_cannot_import_modules(tmp_path, monkeypatch):
    probe = tmp_path / "cgcnn_import_probe.py"
    probe.write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n"
        "class Boom:\n    @classmethod\n    def from_dict(cls, d):\n        return cls()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = NACL.as_dict()
    data["sites"][0]["properties"] = {
        "payload": {"@module": "cgcnn_import_probe", "@class": "Boom"}
    }
    featurizer = CGCNNFeaturizer()
    featurizer.featurize([data])
    assert (
        "@module 'cgcnn_import_probe' at sites[0]/properties/payload" in featurizer.failures[0][1]
    )
    assert "cgcnn_import_probe" not in sys.modules and not probe.with_suffix(".ran").exists()
    data["sites"][0]["properties"] = {}
    assert featurizer.featurize([data])[0].num_nodes == 2  # a clean dict still reads


# ---------------------------------------------------------------- bounded work per structure
@pytest.mark.parametrize(
    "make, reason",
    [
        (
            lambda: Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[1e12, 0, 0], [0.5, 0.5, 0.5]]),
            "not a position in any sensible cell",
        ),
        (
            lambda: Structure(Lattice.cubic(0.03), ["Cu"], [[0, 0, 0]]),
            "overlaps its own periodic image",
        ),
        (
            lambda: Structure(
                Lattice.cubic(30.0),
                ["Cu"] * 20000,
                [[i / 27.0 % 1, (i // 27) / 27.0 % 1, (i // 729) / 28.0] for i in range(20000)],
            ),
            "max_neighbor_pairs",
        ),
    ],
    ids=["coordinate-1e12", "cell-0.03-A", "20000-atoms-dense"],
)
def test_a_pathological_structure_fails_fast_with_a_reason(make, reason):
    structure = make()
    featurizer = CGCNNFeaturizer()
    started = time.perf_counter()
    featurizer.featurize([structure, NACL])
    assert time.perf_counter() - started < 20
    assert [i for i, _ in featurizer.failures] == [0] and reason in featurizer.failures[0][1]


def test_far_coordinates_are_wrapped_into_the_cell():
    shifted = Structure(NACL.lattice, NACL.species, [[1000.0, -300.0, 7.0], [0.5, 0.5, 0.5]])
    graphs = CGCNNFeaturizer().featurize([NACL, shifted])
    assert graphs[0].neighbor_distance == pytest.approx(graphs[1].neighbor_distance)


# ---------------------------------------------------------------- broken checkpoints
def _shipped():
    with (resources.files("deepchem_cgcnn.pretrained") / "mp-formation-energy.pt").open("rb") as f:
        return torch.load(f, weights_only=True)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.pop("featurizer"), "not a deepchem-cgcnn model file"),
        (lambda d: d.update(hyperparameters="num_conv=3"), "'hyperparameters' is a str"),
        (lambda d: d["state_dict"].pop("embedding.weight"), "lacks ['embedding.weight']"),
        (
            lambda d: d["state_dict"]["fc_out.weight"].fill_(float("nan")),
            "'fc_out.weight' holds NaN",
        ),
        (lambda d: d["state_dict"]["target_std"].fill_(0.0), "standard deviation must be positive"),
        (lambda d: d["hyperparameters"].update(num_conv=2), "do not fit the hyperparameters"),
    ],
)
def test_broken_model_files_raise_checkpoint_error_naming_the_file(tmp_path, damage, message):
    saved = _shipped()
    damage(saved)
    path = tmp_path / "broken.pt"
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="broken.pt") as error:
        load_saved(str(path))
    assert message in str(error.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: c.pop("state_dict"), "lacks ['state_dict']"),
        (lambda c: c.update(args="atom_fea_len=64"), "'args' is a str"),
        (lambda c: c.update(normalizer="mean=0"), "'normalizer' must be a dict"),
        (lambda c: c["normalizer"].update(std=torch.tensor(0.0)), "std must be a positive"),
        (
            lambda c: c["state_dict"]["embedding.weight"].fill_(float("inf")),
            "holds NaN or infinite",
        ),
    ],
)
def test_broken_original_checkpoints_raise_checkpoint_error(tmp_path, damage, message):
    from conftest import PRETRAINED, need

    checkpoint = read_cgcnn_checkpoint(str(need(PRETRAINED / "formation-energy-per-atom.pth.tar")))
    damage(checkpoint)
    path = tmp_path / "broken.pth.tar"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="broken.pth.tar") as error:
        CGCNNModel.from_cgcnn_checkpoint(str(path))
    assert message in str(error.value)


# ---------------------------------------------------------------- command-line errors
def test_predict_exits_non_zero_when_any_input_failed(tmp_path, capsys):
    good = tmp_path / "NaCl.cif"
    NACL.to(filename=str(good))
    (tmp_path / "empty.cif").write_text("")
    (tmp_path / "binary.cif").write_bytes(os.urandom(300))
    assert (
        main(
            [
                "predict",
                "--model",
                "mp-formation-energy",
                str(good),
                str(tmp_path / "empty.cif"),
                str(tmp_path / "binary.cif"),
            ]
        )
        == 1
    )
    out, err = capsys.readouterr()
    assert "NaCl.cif" in out and len(out.strip().splitlines()) == 4
    failures = err.strip().splitlines()
    assert [line.split(":")[0] for line in failures] == ["empty.cif", "binary.cif"]
    assert "Traceback" not in err


def test_unknown_model_is_one_line_not_a_traceback(capsys):
    assert main(["predict", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'no-such-model' is neither a file nor a shipped model; shipped: ")
    assert len(err.strip().splitlines()) == 1


def test_screen_checks_its_output_folder_before_computing(tmp_path, capsys, monkeypatch):
    from deepchem_cgcnn import screening

    monkeypatch.setattr(screening, "screen", lambda *a, **k: pytest.fail("computed first"))
    out = tmp_path / "missing" / "dir" / "x.csv"
    assert main(["screen", "--a", "Sr", "--b", "Ti", "--x", "O3", "--out", str(out)]) == 2
    assert f"the folder {out.parent} does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- one artifact, versioned
def test_a_saved_model_is_one_versioned_artifact(tmp_path):
    from deepchem_cgcnn import load_model, save_model

    model = load_model("mp-band-gap")
    path = tmp_path / "gap.pt"
    save_model(model, str(path), card=model.card)
    saved = torch.load(path, weights_only=True)
    assert saved["format_version"] == 1 and saved["featurizer"] == model.featurizer_params
    again = load_model(str(path))
    assert again.card == model.card and again.hyperparameters["nonnegative"]
    assert again.training_counts == model.training_counts
    saved["format_version"] = 99
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="format version 99.*reads up to 1"):
        load_model(str(path))


def test_load_model_takes_a_name_a_saved_file_or_an_original_checkpoint(tmp_path):
    from conftest import PRETRAINED, need

    from deepchem_cgcnn import load_model
    from deepchem_cgcnn.registry import UnknownModelError

    original = load_model(str(need(PRETRAINED / "formation-energy-per-atom.pth.tar")))
    assert original.featurizer_params["selection"] == "cgcnn"
    assert load_model("mp-formation-energy").card.task == "formation_energy_per_atom"
    with pytest.raises(UnknownModelError, match="neither a file nor a shipped model"):
        load_model(str(tmp_path / "missing.pt"))
