"""deepchem-cgcnn predict, and the shipped model."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, available_pretrained, pretrained_card
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.card import ModelCard
from deepchem_cgcnn.cli import main
from deepchem_cgcnn.examples import example_structures

dc = import_deepchem()


@pytest.mark.torch
def test_shipped_model_loads_offline_by_name(no_network):
    assert "mp-formation-energy" in available_pretrained()
    model = CGCNNModel.pretrained("mp-formation-energy")
    card = pretrained_card("mp-formation-energy")
    assert card.metrics["mae"]["test"] < 0.1 and card.split["seed"] == 123
    crystals = example_structures()
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(list(crystals.values()))
    energy = dict(zip(crystals, model.predict(dc.data.NumpyDataset(graphs))[:, 0]))
    # known physics: ionic solids are strongly bound, elements sit near zero
    for name in ("NaCl (rock salt)", "MgO (rock salt)", "LiF (rock salt)"):
        assert energy[name] < -1.5, (name, energy[name])
    for name in ("Cu (fcc)", "Si (diamond)", "Fe (bcc)"):
        assert abs(energy[name]) < 0.3, (name, energy[name])


@pytest.mark.torch
def test_predict_prints_a_table_for_files(tmp_path, capsys):
    path = tmp_path / "NaCl.cif"
    example_structures()["NaCl (rock salt)"].to(filename=str(path))
    example_structures()["Cu (fcc)"].to(filename=str(tmp_path / "Cu.cif"))
    (tmp_path / "broken.cif").write_text("data_x\n_cell_length_a 1\n")
    assert main(["predict", str(path), str(tmp_path / "Cu.cif"), str(tmp_path / "broken.cif")]) == 1
    out, err = capsys.readouterr()
    header, nacl, cu, broken = (re.split(r"\s{2,}", line) for line in out.strip().splitlines())
    assert header[:2] == ["structure", "formula"] and nacl[:2] == ["NaCl.cif", "NaCl"]
    value = dict(zip(header, nacl))
    # known physics: rock-salt NaCl is strongly bound, a wide-gap insulator, not a metal
    energy, sigma = value["formation energy per atom (eV/atom)"].split(" ± ")  # an ensemble
    assert float(energy) < -1.5 and 0 < float(sigma) < 0.5
    gap, gap_sigma = value["band gap (eV)"].split(" ± ")  # the non-metals ensemble, gated
    assert float(gap) > 3.0 and 0 < float(gap_sigma) < 1.0
    assert float(value["metal probability (P(metal))"]) < 0.2
    # copper: a metal by the classifier, so its gap is 0 by definition, and the row says why
    copper = dict(zip(header, cu))
    assert copper["band gap (eV)"] == "0.000"
    assert "a metal by mp-metallicity (P(metal) = " in copper["warnings"]
    assert "failed" in broken and "broken.cif" in err


def test_command_line_entry_point_is_quiet():
    result = subprocess.run(
        [sys.executable, "-m", "deepchem_cgcnn.cli", "predict"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Skipped loading" not in result.stdout + result.stderr
    assert len(result.stdout.strip().splitlines()) == 1 + len(example_structures())


@pytest.mark.torch
def test_every_shipped_model_has_a_card_and_loads_offline(no_network):
    """Each shipped model: a full card, weights that load by name, and test metrics on record."""
    for name in available_pretrained(include_members=True):
        card = pretrained_card(name)
        for key in (
            "property",
            "units",
            "task",
            "mode",
            "data",
            "split",
            "recipe",
            "metrics",
            "wall_time_s",
            "command",
        ):
            assert getattr(card, key) is not None, (name, key)
        assert card.split["seed"] == 123 and card.split["fractions"] == [0.6, 0.2, 0.2]
        metric = "roc_auc" if card.mode == "classification" else "mae"
        assert set(card.metrics[metric]) == set(card.scored_splits), name
        if card.is_refit:  # trained on its validation crystals: the validated run's scores kept
            assert set(card.metrics[f"{metric}_before_refit"]) == {"train", "valid", "test"}
        # the history is the run that made these weights: one row per epoch run, and the
        # kept epoch is the best by validation
        errors = card.history["valid_error"]
        assert len(errors) == len(card.history["seconds"]) == card.recipe["epochs_run"], name
        assert errors[card.recipe["best_epoch"]] == min(errors), name
        model = CGCNNModel.pretrained(name)
        assert model.model.mode == card.mode


def test_a_card_still_reads_as_a_dict_for_old_scripts():
    """Scripts written against the 0.1 plain-dict cards keep working: a read-only dict view."""
    card = pretrained_card("castelli-perovskites")
    assert card["property"] == card.property and card["metrics"] == card.metrics
    assert card.get("domain") == card.domain and card.get("missing", 0) == 0
    assert "ensemble" in card and card["ensemble"] == card.extra["ensemble"]
    assert pretrained_card("mp-formation-energy").get("domain") is None
    with pytest.raises(KeyError):
        card["missing"]
    with pytest.raises(TypeError):
        card["property"] = "changed"


def test_a_refit_card_cannot_call_an_in_sample_score_a_validation_score():
    """A model refit on its validation crystals scores them in-sample: its card holds that
    score as ``valid_trained_on``, and a card that calls it ``valid`` is refused."""
    card = pretrained_card("mp-band-gap").to_dict()
    refit = {**card, "recipe": {**card["recipe"], "refit": {"epochs": 3, "train_size": 70}}}
    with pytest.raises(ValueError, match="in-sample"):
        ModelCard.from_dict(refit)
    scores = card["metrics"]["mae"]
    honest = {"train": scores["train"], "valid_trained_on": scores["valid"], "test": scores["test"]}
    refit["metrics"] = {**card["metrics"], "mae": honest}
    assert ModelCard.from_dict(refit).scored_splits == ("train", "valid_trained_on", "test")
    with pytest.raises(ValueError, match="on train, valid, test"):
        ModelCard.from_dict({**card, "metrics": {"mae": honest}})


def test_a_card_without_its_training_history_is_refused():
    card = pretrained_card("mp-band-gap").to_dict()
    del card["history"]
    with pytest.raises(ValueError, match=r"model card 'mp-band-gap': missing \['history'\]"):
        ModelCard.from_dict(card)
    history = pretrained_card("mp-band-gap").history
    for broken in ({}, {**history, "valid_error": history["valid_error"][:-1]}):
        with pytest.raises(ValueError, match="'mp-band-gap': history must hold"):
            ModelCard.from_dict({**card, "history": broken})


def test_predict_prints_one_column_per_general_shipped_model(capsys):
    general = [n for n in available_pretrained() if not pretrained_card(n).domain]
    assert main(["predict"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    for name in general:
        card = pretrained_card(name)
        assert f"{card.property} ({card.units})" in header, name
    for name in set(available_pretrained()) - set(general):
        assert pretrained_card(name).property not in header


@pytest.mark.torch
def test_train_command_exports_a_card_that_its_model_reproduces(mp_rows, tmp_path):
    """``deepchem-cgcnn train`` end to end on 100 real crystals: split, card, history, weights."""
    import json

    from deepchem_cgcnn import MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter
    from deepchem_cgcnn.registry import load_saved
    from deepchem_cgcnn.training import mean_absolute_error

    table = tmp_path / "mp100.csv"
    mp_rows.head(100).to_csv(table, index=False)
    export = tmp_path / "export"
    assert (
        main(
            [
                "train",
                "--data",
                str(table),
                "--target",
                "band_gap",
                "--name",
                "tiny",
                "--work-dir",
                str(tmp_path / "run"),
                "--export",
                str(export),
                "--num-conv",
                "1",
                "--max-epochs",
                "3",
                "--valid-size",
                "10",
                "--units",
                "eV",
            ]
        )
        == 0
    )
    card = json.loads((export / "tiny.json").read_text())
    assert (
        card["split"]["sizes"] == [60, 20, 20]
        and "on 10 validation" in card["split"]["model_selection"]
    )
    assert len(card["history"]["seconds"]) == card["recipe"]["epochs_run"] == 3
    model = load_saved(export / "tiny.pt")
    featurizer = CGCNNFeaturizer(**card["featurizer"])
    _, (_, _, test), _ = MaterialsProjectLoader(
        str(table),
        tasks=["band_gap"],
        featurizer=featurizer,
        splitter=CGCNNRandomSplitter(seed=123),
        reload=False,
    ).load()
    assert mean_absolute_error(model, test) == pytest.approx(
        card["metrics"]["mae"]["test"], rel=1e-5
    )


@pytest.mark.torch
def test_train_refit_trains_on_train_and_validation_for_the_chosen_epochs(mp_rows, tmp_path):
    """--refit: the epochs and rates the validated run chose, on train + validation crystals;
    the card keeps the validated model's scores and the exported model is the refit one."""
    from deepchem_cgcnn import MaterialsProjectLoader
    from deepchem_cgcnn.data.splitters import CGCNNRandomSplitter
    from deepchem_cgcnn.domain import training_counts
    from deepchem_cgcnn.registry import load_saved
    from deepchem_cgcnn.training import mean_absolute_error

    table = tmp_path / "mp100.csv"
    mp_rows.head(100).to_csv(table, index=False)
    export, work = tmp_path / "export", tmp_path / "run"
    args = ["train", "--data", str(table), "--target", "formation_energy_per_atom"]
    args += ["--name", "r", "--work-dir", str(work), "--export", str(export), "--num-conv", "1"]
    args += ["--max-epochs", "3", "--valid-size", "10", "--n-jobs", "1", "--refit"]
    assert main(args) == 0
    card = json.loads((export / "r.json").read_text())
    validated = json.loads((work / "r" / "record.json").read_text())
    refit = json.loads((work / "r" / "refit" / "record.json").read_text())
    epochs = validated["best_epoch"] + 1
    assert card["recipe"]["refit"]["epochs"] == epochs == len(refit["epochs"])
    assert card["recipe"]["refit"]["train_size"] == 60 + 10
    assert refit["learning_rate"] == validated["learning_rate"][:epochs]
    assert refit["config"]["refit"] == {"epochs": epochs, "train_size": 70}
    assert "refit from scratch" in card["split"]["model_selection"]
    before, after = card["metrics"]["mae_before_refit"], card["metrics"]["mae"]
    assert before["test"] != after["test"]
    assert set(after) == {"train", "valid_trained_on", "test"}  # no in-sample "valid"
    model = load_saved(export / "r.pt")
    _, (train, _, test), _ = MaterialsProjectLoader(
        str(table),
        tasks=["formation_energy_per_atom"],
        featurizer=CGCNNFeaturizer(**card["featurizer"]),
        splitter=CGCNNRandomSplitter(seed=123),
        reload=False,
    ).load()
    assert mean_absolute_error(model, test) == pytest.approx(after["test"], rel=1e-5)
    in_train = training_counts(train.X)["elements"]
    assert sum(card["training_counts"]["elements"].values()) > sum(in_train.values())
    # a rerun resumes both finished runs: the card's total still counts the training time of
    # the earlier process (made long here, as a killed and resumed refit's is)
    import torch

    last = work / "r" / "refit" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["record"]["seconds"] = [s + 1000.0 for s in state["record"]["seconds"]]
    torch.save(state, last)
    assert main(args) == 0
    again = json.loads((export / "r.json").read_text())
    assert again["training_counts"] == card["training_counts"]  # counted without a fit call
    wall = again["wall_time_s"]
    assert wall["train"] == pytest.approx(card["wall_time_s"]["train"] + 1000.0, abs=0.2)
    assert wall["total"] >= wall["train"]


@pytest.mark.torch
def test_train_refit_from_a_card_needs_no_run_folder_and_refuses_another_run(
    mp_rows, tmp_path, capsys
):
    """--refit-from: the epochs and rates come from the validated run's card (no run folder);
    the card keeps that run's scores; a card of another run (here: other convolutions) is
    refused with the differing field named."""
    table = tmp_path / "mp100.csv"
    mp_rows.head(100).to_csv(table, index=False)
    base = ["train", "--data", str(table), "--target", "formation_energy_per_atom"]
    base += ["--num-conv", "1", "--max-epochs", "3", "--n-jobs", "1"]
    first = [*base, "--name", "v", "--work-dir", str(tmp_path / "a"), "--export", str(tmp_path)]
    assert main(first) == 0
    source = json.loads((tmp_path / "v.json").read_text())
    source["history"]["seconds"] = [s + 1000.0 for s in source["history"]["seconds"]]
    (tmp_path / "v.json").write_text(json.dumps(source))  # as if it had trained for long
    refit_args = [*base, "--name", "w", "--work-dir", str(tmp_path / "b")]
    refit_args += ["--export", str(tmp_path / "out"), "--refit-from", str(tmp_path / "v.json")]
    assert main(refit_args) == 0
    card = json.loads((tmp_path / "out" / "w.json").read_text())
    refit = json.loads((tmp_path / "b" / "w" / "refit" / "record.json").read_text())
    epochs = source["recipe"]["best_epoch"] + 1
    assert card["recipe"]["refit"]["epochs"] == epochs == len(refit["epochs"])
    assert card["recipe"]["refit"]["from_card"] == "v"
    assert refit["learning_rate"] == source["history"]["learning_rate"][:epochs]
    assert card["metrics"]["mae_before_refit"] == source["metrics"]["mae"]
    assert card["history"] == source["history"]
    assert card["wall_time_s"]["train"] >= 1000.0  # the validated run's training counts
    assert card["wall_time_s"]["total"] >= card["wall_time_s"]["train"]
    assert not (tmp_path / "b" / "w" / "record.json").exists()  # nothing validated here
    assert not (tmp_path / "b" / "w" / "model").exists()  # nor a model built for it
    other = [*refit_args[: base.index("--num-conv")], "--num-conv", "2"]
    other += refit_args[base.index("--num-conv") + 2 :]
    assert main([*other, "--name", "x"]) == 2
    assert "model.num_conv: card 1, here 2" in capsys.readouterr().err


@pytest.mark.torch
def test_train_gives_each_model_its_own_run_and_refuses_a_mismatched_resume(
    mp_rows, tmp_path, capsys, caplog
):
    """A second model trained with the default --work-dir never resumes the first one's run."""
    import logging

    import torch

    table = tmp_path / "mp60.csv"
    mp_rows.head(60).to_csv(table, index=False)
    work, export = tmp_path / "work", tmp_path / "export"
    common = [
        "train",
        "--data",
        str(table),
        "--work-dir",
        str(work),
        "--export",
        str(export),
        "--num-conv",
        "1",
        "--max-epochs",
        "1",
        "--valid-size",
        "5",
        "--n-jobs",
        "1",
    ]
    assert main([*common, "--target", "formation_energy_per_atom", "--name", "fe"]) == 0
    assert f"model written to {export / 'fe.pt'}" in capsys.readouterr().out
    with caplog.at_level(logging.INFO):
        assert main([*common, "--target", "band_gap", "--name", "gap", "--units", "eV"]) == 0
    assert "resuming" not in caplog.text
    fe, gap = (torch.load(export / f"{n}.pt", weights_only=True) for n in ("fe", "gap"))
    assert not torch.equal(fe["state_dict"]["fc_out.weight"], gap["state_dict"]["fc_out.weight"])
    assert json.loads((work / "gap" / "record.json").read_text())["config"]["target"] == "band_gap"

    capsys.readouterr()
    assert main([*common, "--target", "band_gap", "--name", "fe", "--units", "eV"]) == 2
    err = capsys.readouterr().err
    assert (
        str(work / "fe") in err
        and "target: 'formation_energy_per_atom' there, 'band_gap' now" in err
    )

    # a run of the squared error (cli-v1's default, left out of the run key) resumed with
    # cli-v2's default is refused, naming both losses
    fe_mse = [*common, "--target", "formation_energy_per_atom", "--name", "fe-mse"]
    assert main([*fe_mse, "--loss", "mse"]) == 0
    card = ModelCard.from_dict(json.loads((export / "fe-mse.json").read_text()))
    assert card.recipe["loss"] == card.loss == "mse"  # named, not left to the defaults
    capsys.readouterr()
    assert main(fe_mse) == 2
    assert "loss: 'mse' there, 'l1' now" in capsys.readouterr().err

    # dropout is part of the run (and the card); left out, the run key is the one before it
    fe = [*common, "--target", "formation_energy_per_atom", "--name", "fe"]
    assert main([*fe, "--dropout", "0.2"]) == 2
    assert "model.dropout: None there, 0.2 now" in capsys.readouterr().err
    assert (
        main(
            [
                *common,
                "--target",
                "formation_energy_per_atom",
                "--name",
                "fe-drop",
                "--dropout",
                "0.2",
            ]
        )
        == 0
    )
    assert json.loads((export / "fe-drop.json").read_text())["model"]["dropout"] == 0.2
    saved = torch.load(export / "fe-drop.pt", weights_only=True)
    assert saved["hyperparameters"]["dropout"] == 0.2

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(fe) == 0
    assert f"resuming {work / 'fe'} from epoch 1" in caplog.text


@pytest.mark.torch
def test_a_card_names_the_threads_its_epochs_trained_with_not_the_exporting_process(
    mp_rows, tmp_path
):
    """A finished run exported again by a process with other torch threads keeps the threads
    it trained with (the card used to describe the exporting process)."""
    import torch

    table = tmp_path / "mp40.csv"
    mp_rows.head(40).to_csv(table, index=False)
    args = ["train", "--data", str(table), "--target", "formation_energy_per_atom", "--name", "fe"]
    args += ["--work-dir", str(tmp_path / "work"), "--export", str(tmp_path / "export")]
    args += ["--num-conv", "1", "--max-epochs", "2", "--valid-size", "5", "--n-jobs", "1"]
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert main(args) == 0
            card = json.loads((tmp_path / "export" / "fe.json").read_text())
            assert ", 1 torch threads, " in card["machine"]
    finally:
        torch.set_num_threads(before)


@pytest.mark.torch
def test_train_with_the_graph_step_trains_as_without_it_and_says_so(mp_rows, tmp_path):
    table = tmp_path / "mp40.csv"
    mp_rows.head(40).to_csv(table, index=False)
    args = ["train", "--data", str(table), "--target", "formation_energy_per_atom"]
    args += ["--work-dir", str(tmp_path / "work"), "--export", str(tmp_path / "export")]
    args += ["--num-conv", "1", "--max-epochs", "2", "--valid-size", "5", "--n-jobs", "1"]
    cards = {}
    for name, extra in (("plain", []), ("replayed", ["--graph-step"])):
        assert main([*args, "--name", name, *extra]) == 0
        cards[name] = json.loads((tmp_path / "export" / f"{name}.json").read_text())
    assert cards["replayed"]["recipe"]["graph_step"] is True
    assert "graph_step" not in cards["plain"]["recipe"]
    plain, replayed = (cards[name]["history"]["valid_error"] for name in ("plain", "replayed"))
    # padded batches (masked batch norms) round differently from the plain ones: 3e-4 here
    assert len(replayed) == 2 and replayed == pytest.approx(plain, rel=2e-3)


@pytest.mark.torch
def test_shipped_band_gap_is_never_negative():
    from pymatgen.core import Lattice, Structure

    card = pretrained_card("mp-band-gap")
    assert card.output_constraint.startswith("non-negative")
    model = CGCNNModel.pretrained("mp-band-gap")
    metals = [
        Structure(Lattice.cubic(3.165), ["W", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        example_structures()["Cu (fcc)"],
        example_structures()["Fe (bcc)"],
    ]
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(metals)
    gaps = model.predict(dc.data.NumpyDataset(graphs))[:, 0]
    assert (gaps >= 0).all(), gaps
    model.model.nonnegative = False  # the raw output does go below zero
    assert (model.predict(dc.data.NumpyDataset(graphs))[:, 0] < 0).any()


@pytest.mark.torch
@pytest.mark.shared  # the whole MP table
def test_elemental_ground_states_are_right_or_carry_a_warning(no_network):
    """Every element's lowest-energy elemental crystal in the shared MP table (and diamond,
    which the table lacks): the formation energy is within 0.2 eV/atom of MP's (about four
    times the test MAE) or the prediction carries a domain flag."""
    import pandas as pd
    from conftest import MP_TABLE, need, parse_cifs

    from deepchem_cgcnn.data.elemental import (
        DIAMOND_FORMATION_ENERGY,
        diamond,
        elemental_ground_states,
    )

    ground = elemental_ground_states(pd.read_csv(need(MP_TABLE)))
    assert len(ground) >= 60
    structures = [*parse_cifs(ground.cif), diamond()]
    for structure, element in zip(structures, ground.element):
        assert {e.symbol for e in structure.composition.elements} == {element}
    reference = [*ground.formation_energy_per_atom, DIAMOND_FORMATION_ENERGY]
    model = CGCNNModel.pretrained("mp-formation-energy")
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(structures)
    dataset = dc.data.NumpyDataset(graphs, ids=np.array([*ground.material_id, "diamond"]))
    with pytest.warns(Warning):
        predicted = model.predict(dataset)[:, 0]
    records = model.check_domain(dataset)
    silent_misses = [
        (r.id, r.formula, round(float(p), 2), round(float(e), 2))
        for r, p, e in zip(records, predicted, reference)
        if abs(p - e) > 0.2 and r.in_domain
    ]
    assert not silent_misses
    assert not records[-1].in_domain and "elemental C" in " ".join(records[-1].flags)


@pytest.mark.torch
def test_predict_takes_a_saved_model_or_an_original_checkpoint(tmp_path, capsys):
    from conftest import PRETRAINED, need

    from deepchem_cgcnn import load_model, save_model

    saved = tmp_path / "my-gap.pt"
    save_model(load_model("mp-band-gap"), str(saved), card=pretrained_card("mp-band-gap"))
    original = need(PRETRAINED / "formation-energy-per-atom.pth.tar")
    assert main(["predict", "--model", str(saved), "--model", str(original)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = re.split(r"\s{2,}", lines[0])
    assert header[2:4] == ["band gap (eV)", "formation-energy-per-atom (original checkpoint)"]
    nacl = dict(zip(header, re.split(r"\s{2,}", lines[1])))
    assert float(nacl["band gap (eV)"]) > 3 and float(nacl[header[3]]) < -1.5


@pytest.mark.torch
def test_predict_reads_folders_stdin_and_files_recognised_by_content(tmp_path, monkeypatch, capsys):
    import io

    import pandas as pd

    crystals = example_structures()
    folder = tmp_path / "crystals"
    (folder / "deeper").mkdir(parents=True)
    crystals["NaCl (rock salt)"].to(filename=str(folder / "nacl.cif"))
    (folder / "deeper" / "POSCAR").write_text(crystals["MgO (rock salt)"].to(fmt="poscar"))
    (folder / "deeper" / "licl.json").write_text(json.dumps(crystals["LiF (rock salt)"].as_dict()))
    (folder / "notes.txt").write_text("not a crystal")  # not a structure file: not picked up
    renamed = tmp_path / "cif-without-suffix.dat"
    renamed.write_text(crystals["CsCl (B2)"].to(fmt="cif"))
    for out in ("rows.json", "rows.parquet", "rows.jsonl"):
        monkeypatch.setattr("sys.stdin", io.StringIO(f"{renamed}\n\n"))
        path = tmp_path / out
        assert (
            main(
                ["predict", "--model", "mp-formation-energy", "--out", str(path), str(folder), "-"]
            )
            == 0
        )
        frame = (
            pd.read_parquet(path)
            if out.endswith("parquet")
            else pd.read_json(path, lines=out.endswith("jsonl"))
        )
        assert frame.structure.tolist() == [
            "deeper/POSCAR",
            "deeper/licl.json",
            "nacl.cif",
            "cif-without-suffix.dat",
        ]
        assert frame.formula.tolist() == ["MgO", "LiF", "NaCl", "CsCl"]
        assert (frame.error.fillna("") == "").all()
    capsys.readouterr()
    assert main(["predict", "--out", str(tmp_path / "rows.xlsx")]) == 2
    assert "use one of .csv, .jsonl, .json, .parquet" in capsys.readouterr().err


def test_version_is_the_installed_one(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"deepchem-cgcnn {version('deepchem-cgcnn')}"


@pytest.mark.torch
def test_embed_gives_the_vectors_the_head_turns_into_the_prediction(tmp_path, capsys):
    import pandas as pd
    import torch
    import torch.nn.functional as F

    model = CGCNNModel.pretrained("mp-formation-energy")
    crystals = example_structures()
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize(list(crystals.values()))
    dataset = dc.data.NumpyDataset(graphs, ids=np.array(list(crystals)))
    crystal = model.embed(dataset)
    atoms = model.embed(dataset, per_atom=True)
    assert crystal.id.tolist() == list(crystals) and len(atoms) == sum(g.num_nodes for g in graphs)
    columns = [f"v{k}" for k in range(64)]
    np.testing.assert_allclose(  # crystal vectors are the mean of the atom vectors
        atoms.groupby("id", sort=False)[columns].mean().loc[list(crystals)].to_numpy(),
        crystal[columns].to_numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    net = model.model
    with torch.no_grad():
        v = torch.tensor(crystal[columns].to_numpy(), dtype=torch.float32)
        head = net.fc_out(F.softplus(net.conv_to_fc(F.softplus(v)))) * net.target_std
        head = (head + net.target_mean).numpy()
    np.testing.assert_allclose(head, model.predict(dataset), rtol=1e-5, atol=1e-5)

    out = tmp_path / "vectors.npy"
    assert main(["embed", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), crystal[columns].to_numpy(), rtol=1e-5, atol=1e-5)
    assert pd.read_csv(tmp_path / "vectors.ids.csv").id.tolist() == list(crystals)


@pytest.mark.torch
def test_finetune_starts_from_a_shipped_model_with_frozen_and_reset_parts(tmp_path, capsys):
    import torch
    from conftest import CASTELLI_FIRST_1500, CASTELLI_TABLE, _first_rows

    from deepchem_cgcnn import load_model

    table = tmp_path / "perovskites.csv"
    _first_rows(CASTELLI_TABLE, CASTELLI_FIRST_1500, 80).to_csv(table, index=False)
    export = tmp_path / "export"
    assert (
        main(
            [
                "finetune",
                "--from",
                "mp-formation-energy",
                "--reset-head",
                "--freeze",
                "embedding",
                "--body-lr-factor",
                "0.1",
                "--data",
                str(table),
                "--target",
                "heat_all",
                "--name",
                "ft",
                "--units",
                "eV/cell",
                "--work-dir",
                str(tmp_path / "work"),
                "--export",
                str(export),
                "--max-epochs",
                "2",
                "--n-jobs",
                "1",
            ]
        )
        == 0
    )
    source, tuned = load_model("mp-formation-energy"), load_model(str(export / "ft.pt"))
    before, after = source.model.state_dict(), tuned.model.state_dict()
    assert torch.equal(before["embedding.weight"], after["embedding.weight"])  # frozen
    assert not torch.equal(before["convs.0.fc_full.weight"], after["convs.0.fc_full.weight"])
    assert tuned.featurizer_params == source.featurizer_params
    assert tuned.hyperparameters["num_conv"] == source.hyperparameters["num_conv"] == 4
    finetune = tuned.card.recipe["finetune"]
    assert finetune == {
        "from": "mp-formation-energy",
        "reset_head": True,
        "freeze": ["embedding"],
        "body_lr_factor": 0.1,
    }
    assert "predicting the training mean" in capsys.readouterr().out


@pytest.mark.torch
@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="the machine has a GPU: --device cuda is valid"
)
def test_train_refuses_an_unavailable_device_before_any_work(tmp_path, capsys):
    args = ["train", "--data", str(tmp_path / "absent.csv"), "--target", "y", "--name", "m"]
    assert main([*args, "--device", "cuda", "--work-dir", str(tmp_path)]) == 2
    assert "--device cuda: no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_refuses_a_bad_weight_average_before_any_work(tmp_path, capsys):
    args = ["train", "--data", str(tmp_path / "absent.csv"), "--target", "y", "--name", "m"]
    assert main([*args, "--ema", "1.5", "--work-dir", str(tmp_path)]) == 2
    assert "--ema is a decay in (0, 1)" in capsys.readouterr().err
    assert main([*args, "--ema", "0.99", "--devices", "2", "--work-dir", str(tmp_path)]) == 2
    assert "--ema (a weight average) is not kept by the data-parallel loop" in (
        capsys.readouterr().err
    )
    assert main([*args, "--refit", "--devices", "2", "--work-dir", str(tmp_path)]) == 2
    assert "--refit runs in one process" in capsys.readouterr().err
    assert main([*args, "--compile", "--compile-mode", "default", "--work-dir", str(tmp_path)]) == 2
    assert "--compile-mode compiles the whole model: leave out --compile" in capsys.readouterr().err
    assert main([*args, "--predict-batch-size", "0", "--work-dir", str(tmp_path)]) == 2
    assert "--predict-batch-size must be at least 1, got 0" in capsys.readouterr().err
    assert main([*args, "--graph-step", "--devices", "2", "--work-dir", str(tmp_path)]) == 2
    assert "--graph-step replays one process's step; leave out --devices" in (
        capsys.readouterr().err
    )
    mode = ["--compile-mode", "reduce-overhead"]
    assert main([*args, "--graph-step", *mode, "--work-dir", str(tmp_path)]) == 2
    assert "--graph-step captures the whole step in CUDA graphs itself: --compile-mode" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "m").exists()


def test_train_without_tensorboard_installed_says_what_to_install(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    args = ["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--name", "m"]
    assert main([*args, "--tensorboard", str(tmp_path / "tb"), "--device", "cpu"]) == 2
    assert "pip install 'deepchem-cgcnn[tensorboard]'" in capsys.readouterr().err


def test_output_piped_into_head_stops_quietly(tmp_path):
    """``deepchem-cgcnn predict | head -1``: no BrokenPipeError traceback on stderr."""
    import subprocess
    import sys

    script = f"{sys.executable} -m deepchem_cgcnn.cli predict | head -c 10"
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and len(run.stdout) == 10
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr


def test_train_defaults_to_the_absolute_error_for_regression_only():
    """cli-v2: regression trains on the error it is scored by unless --loss says otherwise; a
    classifier keeps cross entropy, and asking it for l1 is refused before any data is read."""
    from deepchem_cgcnn.cli import build_parser, training_config
    from deepchem_cgcnn.training import TrainConfigError

    base = ["train", "--data", "t.csv", "--target", "y", "--name", "m"]

    def config(*extra: str):
        return training_config(build_parser().parse_args([*base, *extra]))

    assert (config().loss, config().defaults) == ("l1", "cli-v2")
    assert config("--loss", "mse").loss == "mse"
    classifier = config("--mode", "classification")
    assert classifier.loss == "mse"  # no regression loss: cross entropy
    classifier.check()
    with pytest.raises(TrainConfigError, match="a classifier trains on cross entropy"):
        config("--mode", "classification", "--loss", "l1").check()
