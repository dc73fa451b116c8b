"""``dev/ship_models.py``: replacing an ensemble's first member keeps the ensemble's σ scale."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))
import ship_models  # noqa: E402 (a script of dev/)


def _export_candidate(export: Path, name: str) -> None:
    """A finished run's export: ``<name>.pt`` and its card, as ``train --export`` leaves them."""
    from deepchem_cgcnn import CGCNNModel
    from deepchem_cgcnn.card import ModelCard
    from deepchem_cgcnn.registry import pretrained_card, save_model

    card = pretrained_card("mp-formation-energy.1").to_dict()
    card.pop("ensemble", None)
    card["name"] = name
    export.mkdir()
    save_model(
        CGCNNModel.pretrained("mp-formation-energy.1"),
        str(export / f"{name}.pt"),
        ModelCard.from_dict(card),
    )
    (export / f"{name}.json").write_text(json.dumps(card))


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """An empty package folder of shipped models, where ``ship_models`` writes."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    monkeypatch.setattr(ship_models, "PACKAGE", folder)
    return folder


@pytest.mark.torch
def test_replacing_the_first_member_keeps_the_ensembles_std_scale(tmp_path, package, capsys):
    from deepchem_cgcnn.registry import load_saved

    shipped = {"name": "head", "command": "train --name old-member", "ensemble": {"members": 6}}
    shipped["ensemble"]["std_scale"] = 1.6784
    (package / "head.json").write_text(json.dumps(shipped))
    _export_candidate(tmp_path / "export", "candidate")

    ship_models.main(["candidate", "--export", str(tmp_path / "export"), "--as", "head"])

    card = json.loads((package / "head.json").read_text())
    assert card["name"] == "head"
    assert card["ensemble"]["std_scale"] == 1.6784
    assert card["ensemble"]["members"] == 6
    assert "train --name old-member" in card["ensemble"]["std_scale_fitted_with"]
    assert load_saved(package / "head.pt").card.extra["ensemble"] == card["ensemble"]
    assert "kept the ensemble's std_scale 1.6784" in capsys.readouterr().err


@pytest.mark.torch
def test_a_model_shipped_under_a_new_name_gets_no_ensemble_entry(tmp_path, package):
    _export_candidate(tmp_path / "export", "candidate")

    ship_models.main(["candidate", "--export", str(tmp_path / "export")])

    assert "ensemble" not in json.loads((package / "candidate.json").read_text())


@pytest.mark.torch
def test_replacing_a_later_member_marks_the_heads_std_scale(tmp_path, package, capsys):
    from deepchem_cgcnn.registry import load_saved

    _export_candidate(tmp_path / "export-head", "head")
    (tmp_path / "export-head" / "head.pt").rename(package / "head.pt")
    head = json.loads((tmp_path / "export-head" / "head.json").read_text())
    head["ensemble"] = {"std_scale": 1.6784}
    (package / "head.json").write_text(json.dumps(head))
    (package / "head.1.json").write_text(json.dumps({"command": "train --name old-member"}))
    _export_candidate(tmp_path / "export-1", "candidate")

    ship_models.main(["candidate", "--export", str(tmp_path / "export-1"), "--as", "head.1"])

    card = json.loads((package / "head.json").read_text())
    replaced = card["ensemble"]["members_replaced_since_std_scale_fit"]
    assert replaced == {"head.1": "train --name old-member"}
    assert card["ensemble"]["std_scale"] == 1.6784
    assert load_saved(package / "head.pt").card.extra["ensemble"] == card["ensemble"]
    assert "ensemble" not in json.loads((package / "head.1.json").read_text())
    assert json.loads((package / "head.1.json").read_text())["name"] == "head.1"
    assert "was fitted with the head.1 this replaces" in capsys.readouterr().err

    ship_models.main(["candidate", "--export", str(tmp_path / "export-1"), "--as", "head.1"])
    card = json.loads((package / "head.json").read_text())  # shipped again: the first stays
    assert card["ensemble"]["members_replaced_since_std_scale_fit"] == replaced


@pytest.mark.torch
def test_a_perovskite_models_lattice_constants_ship_with_it(tmp_path, package):
    _export_candidate(tmp_path / "export", "candidate")
    lattice = {"formula": {"SrTiO3": 3.905}}
    (tmp_path / "export" / "candidate.lattice.json").write_text(json.dumps(lattice))
    (package / "shipped.lattice.json").write_text("stale")

    ship_models.main(["candidate", "--export", str(tmp_path / "export"), "--as", "shipped"])

    assert json.loads((package / "shipped.lattice.json").read_text()) == lattice
    assert sorted(p.name for p in package.iterdir()) == [
        "shipped.json",
        "shipped.lattice.json",
        "shipped.pt",
    ]
