"""The user's path, scripted on the shipped fixtures: train -> predict -> explain -> embed ->
finetune, each checked for its outputs and exit code."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from deepchem_cgcnn.cli import main


@pytest.mark.torch
def test_train_predict_explain_embed_finetune(mp_rows, tmp_path, capsys):
    table = tmp_path / "mp.csv"
    mp_rows.head(120).to_csv(table, index=False)
    folder = tmp_path / "cifs"
    folder.mkdir()
    for material_id, cif in zip(mp_rows.material_id[200:205], mp_rows.cif[200:205]):
        (folder / f"{material_id}.cif").write_text(cif)
    work, export = tmp_path / "work", tmp_path / "export"
    common = [
        "--data",
        str(table),
        "--work-dir",
        str(work),
        "--export",
        str(export),
        "--max-epochs",
        "3",
        "--n-jobs",
        "1",
        "--num-conv",
        "2",
    ]

    # 1. train a linear-pooling formation-energy model
    assert (
        main(
            [
                "train",
                *common,
                "--target",
                "formation_energy_per_atom",
                "--name",
                "fe",
                "--pooling",
                "linear-mean",
                "--device",
                "cpu",
                "--tensorboard",
                str(tmp_path / "tensorboard"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert re.search(r"test MAE \d+\.\d+ eV/atom \(predicting the training mean: \d", out)
    assert (export / "fe.pt").exists() and (export / "fe.json").exists()
    log = pd.read_csv(work / "fe" / "log.csv")
    assert log.epoch.tolist() == [0, 1, 2] and (log.valid_error > 0).all()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = events.Scalars("validation/MAE")
    assert [e.step for e in logged] == [0, 1, 2]
    assert [e.value for e in logged] == pytest.approx(log.valid_error.tolist(), rel=1e-5)
    assert json.loads((export / "fe.json").read_text())["machine"].endswith("trained on CPU")

    # 2. predict with it on a folder, to a CSV
    rows = tmp_path / "rows.csv"
    assert main(["predict", "--model", str(export / "fe.pt"), "--out", str(rows), str(folder)]) == 0
    predicted = pd.read_csv(rows)
    assert predicted.structure.tolist() == sorted(f"{i}.cif" for i in mp_rows.material_id[200:205])
    column = "formation_energy_per_atom (eV/atom)"
    assert np.isfinite(predicted[column]).all()
    capsys.readouterr()

    # 3. explain one crystal with it: the site contributions average to the prediction
    first = sorted(folder.iterdir())[0]
    assert main(["explain", "--model", str(export / "fe.pt"), "--force", str(first)]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = float(lines[0].split("formation_energy_per_atom ")[1].split()[0])
    sites = [float(line.split()[-1]) for line in lines[1:]]
    assert total == pytest.approx(np.mean(sites), abs=2e-3)
    assert total == pytest.approx(predicted[column].iloc[0], abs=2e-3)

    # 4. embed the folder
    vectors = tmp_path / "vectors.parquet"
    assert (
        main(["embed", "--model", str(export / "fe.pt"), "--out", str(vectors), str(folder)]) == 0
    )
    embedded = pd.read_parquet(vectors)
    assert len(embedded) == 5 and embedded.shape[1] == 1 + 64

    # 5. fine-tune it on band gaps, with a new head
    assert (
        main(
            [
                "finetune",
                "--from",
                str(export / "fe.pt"),
                "--reset-head",
                *common,
                "--target",
                "band_gap",
                "--name",
                "gap",
                "--units",
                "eV",
            ]
        )
        == 0
    )
    assert (export / "gap.pt").exists()
    capsys.readouterr()
    assert main(["predict", "--model", str(export / "gap.pt"), str(folder)]) == 0
    assert "band_gap (eV)" in capsys.readouterr().out
