"""Perovskite screening: cells, lattice constants, ranking and its precision/recall."""

import numpy as np
import pytest
import torch
from conftest import parse_cifs

from deepchem_cgcnn import CGCNNEnsemble, CGCNNModel
from deepchem_cgcnn.perovskite import perovskite_sites
from deepchem_cgcnn.screening import (
    LatticeConstantModel,
    composition_of,
    cubic_perovskite,
    enumerate_candidates,
    precision_recall_at_k,
    screen,
)


def test_built_cells_are_perovskites_with_the_intended_sites():
    cell = cubic_perovskite("Ba", "Zr", ["O", "N", "O"], 4.2)
    assert perovskite_sites(cell) == ["A", "B", "X", "X", "X"]
    assert composition_of(cell) == ("Ba", "Zr", ("N", "O", "O"))
    distances = cell.distance_matrix
    assert distances[1, 2:].round(6).tolist() == [2.1, 2.1, 2.1]  # B-X = a/2


def test_lattice_constant_model_predicts_held_out_castelli_cells_within_a_tenth_of_an_angstrom(
    castelli_table,
):
    cells = parse_cifs(castelli_table.sample(n=900, random_state=1).cif)
    compositions = [composition_of(c) for c in cells]
    constants = np.array([c.lattice.a for c in cells])
    model = LatticeConstantModel().fit(compositions[:700], constants[:700])
    held_out = [
        (c, a)
        for c, a in zip(compositions[700:], constants[700:])
        if all(
            (s, e) in model.columns
            for s, e in (("A", c[0]), ("B", c[1]), *(("X", x) for x in c[2]))
        )
    ]
    errors = [abs(model.predict(*c) - a) for c, a in held_out]
    assert len(held_out) > 150
    assert np.mean(errors) < 0.1 < constants.std()  # far better than guessing the mean
    with pytest.raises(KeyError, match="no lattice-constant term"):
        model.predict("Og", "Ti", ("O", "O", "O"))


def test_candidates_exclude_a_equal_b():
    candidates = enumerate_candidates(
        ["Sr", "Ba", "Ti"], ["Ti", "Zr"], [("O",) * 3, ("N", "O", "O")]
    )
    assert len(candidates) == (3 * 2 - 1) * 2
    assert ("Ti", "Ti", ("O", "O", "O")) not in candidates


@pytest.mark.torch
def test_screen_ranks_every_buildable_candidate_with_uncertainty():
    lattice = LatticeConstantModel().fit(
        [
            ("Sr", "Ti", ("O",) * 3),
            ("Ba", "Ti", ("O",) * 3),
            ("Sr", "Zr", ("O",) * 3),
            ("Ba", "Zr", ("N", "O", "O")),
        ],
        [3.905, 4.00, 4.15, 4.3],
    )
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        members.append(CGCNNModel(num_conv=1))
    candidates = enumerate_candidates(["Sr", "Ba", "Ca"], ["Ti", "Zr"], [("O",) * 3])
    table = screen(CGCNNEnsemble(members), candidates, lattice)
    assert len(table) == 4 and len(table.attrs["skipped"]) == 2  # Ca was never seen on A
    assert table.prediction.is_monotonic_increasing
    assert {"A", "B", "X", "formula", "lattice_constant", "prediction", "std"} <= set(table.columns)
    assert (table["std"] > 0).all()


def test_precision_and_recall_at_k():
    truth = {f"c{i}": float(i) for i in range(10)}  # c0 is the most stable
    perfect = sorted(truth, key=truth.get)
    assert precision_recall_at_k(perfect, truth, k=3) == (1.0, 1.0)
    reverse = perfect[::-1]
    assert precision_recall_at_k(reverse, truth, k=3) == (0.0, 0.0)
    assert precision_recall_at_k(perfect, truth, k=2, top=4) == (1.0, 0.5)


def test_lattice_model_survives_a_json_round_trip_exactly():
    import json

    model = LatticeConstantModel().fit(
        [("Sr", "Ti", ("O",) * 3), ("Ba", "Ti", ("O",) * 3), ("Sr", "Zr", ("N", "O", "O"))],
        [3.905, 4.00, 4.15],
    )
    again = LatticeConstantModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.predict("Ba", "Zr", ("N", "O", "O")) == model.predict("Ba", "Zr", ("N", "O", "O"))
    assert again.anion_sets == model.anion_sets == [("N", "O", "O"), ("O", "O", "O")]


def test_shipped_lattice_model_knows_the_castelli_elements():
    lattice = LatticeConstantModel.pretrained("castelli-perovskites")
    assert {"Sr", "Ba", "K"} <= set(lattice.elements("A"))
    assert ("O", "O", "O") in lattice.anion_sets
    # SrTiO3: 3.905 A measured; the Castelli (DFT) cells run ~1-3 % larger
    assert 3.85 < lattice.predict("Sr", "Ti", ("O",) * 3) < 4.05


@pytest.mark.torch
def test_screen_command_ranks_known_perovskites_first_and_names_what_it_skips(tmp_path, capsys):
    import pandas as pd

    from deepchem_cgcnn.cli import main

    out = tmp_path / "ranked.csv"
    code = main(
        [
            "screen",
            "--a",
            "Sr",
            "Ba",
            "Xe",
            "--b",
            "Ti",
            "Zr",
            "Rb",
            "Cs",
            "--x",
            "O3",
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "ranked.png"),
            "--top",
            "4",
        ]
    )
    assert code == 0
    ranked = pd.read_csv(out)
    stdout, stderr = capsys.readouterr()
    # Xe is no A-site element of the training data: its 4 candidates are skipped by name
    assert len(ranked) == 8 and stderr.count("skipped Xe") == 4
    # the four titanates/zirconates (real, stable perovskites) before any alkali on the B site
    assert set(ranked.formula[:4]) == {"SrTiO3", "BaTiO3", "SrZrO3", "BaZrO3"}
    assert ranked.prediction.is_monotonic_increasing and (ranked["std"] > 0).all()
    assert "SrTiO3" in stdout or "BaTiO3" in stdout
    assert (tmp_path / "ranked.png").stat().st_size > 10_000


def test_screen_command_refuses_a_bad_anion_set_in_words(capsys):
    from deepchem_cgcnn.cli import main

    with pytest.raises(SystemExit):
        main(["screen", "--x", "O2"])
    assert "exactly three X-site atoms" in capsys.readouterr().err
