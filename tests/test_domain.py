"""Inputs a model must not answer silently: refused, or answered with a DomainWarning."""

import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn import CGCNNFeaturizer, CGCNNModel, DomainWarning, GraphSettingsError
from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.examples import example_structures

dc = import_deepchem()

NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _fails(datapoint, featurizer=None):
    featurizer = featurizer or CGCNNFeaturizer()
    graphs = featurizer.featurize([datapoint])
    assert isinstance(graphs[0], np.ndarray), "featurized what it should refuse"
    return featurizer.failures[0][1]


# ---------------------------------------------------------------- refused
@pytest.mark.parametrize("gap", [0.0, 0.0025, 0.3])
def test_overlapping_atoms_are_refused(gap):
    crowded = Structure(
        Lattice.cubic(4.0), ["Cu", "Cu", "Cu"], [[0, 0, 0], [gap / 4.0, 0, 0], [0.5, 0.5, 0.5]]
    )
    reason = _fails(crowded)
    assert "overlapping atoms: atoms 0 (Cu) and 1 (Cu)" in reason and "0.5 Å" in reason


def test_the_overlap_threshold_is_configurable():
    close = Structure(Lattice.cubic(4.0), ["H", "H"], [[0, 0, 0], [0.1, 0, 0]])  # 0.4 Å
    assert "overlapping" in _fails(close)
    graph = CGCNNFeaturizer(min_distance=0.3).featurize([close])[0]
    assert graph.num_nodes == 2


def test_a_lattice_vector_shorter_than_the_threshold_is_an_overlap():
    squashed = Structure(Lattice.orthorhombic(0.2, 5.0, 5.0), ["Cu"], [[0, 0, 0]])
    assert "its own periodic image" in _fails(squashed)


def test_a_truncated_cif_is_refused_not_predicted_as_another_formula(tmp_path):
    cif = Structure(
        Lattice.hexagonal(2.78, 4.50), ["Re", "Re"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    ).to(fmt="cif")
    lines = cif.rstrip("\n").splitlines()
    truncated = "\n".join(lines[:-1]) + "\n"  # the last atom line lost
    path = tmp_path / "Re.cif"
    path.write_text(truncated)
    for datapoint in (truncated, str(path)):
        reason = _fails(datapoint)
        assert "atom sites give Re1" in reason and "'Re2'" in reason and "truncated" in reason
    assert "Re.cif" in _fails(str(path))


def test_a_cif_pymatgen_cannot_read_is_refused_by_name(tmp_path):
    """pymatgen fails on partial occupancies without site labels (a KeyError); the file is
    refused with its name and pymatgen's reason, and the other inputs are still featurized."""
    path = tmp_path / "half.cif"
    path.write_text(
        "data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n"
        "loop_\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
        "_atom_site_fract_z\n_atom_site_occupancy\nNa 0 0 0 0.5\nCl 0.5 0.5 0.5 1\n"
    )
    featurizer = CGCNNFeaturizer()
    graphs = featurizer.featurize([str(path), NACL])
    assert [i for i, _ in featurizer.failures] == [0] and graphs[1].num_nodes == 2
    reason = featurizer.failures[0][1]
    assert "half.cif: pymatgen cannot read this CIF (KeyError" in reason, reason


def test_a_cif_with_several_data_blocks_is_reported(tmp_path):
    two = NACL.to(fmt="cif") + "\n" + example_structures()["Cu (fcc)"].to(fmt="cif")
    path = tmp_path / "two.cif"
    path.write_text(two)
    reason = _fails(str(path))
    assert "two.cif: holds 2 structures" in reason and "data_NaCl" in reason


def test_icsd_style_formula_with_z_is_accepted(reference_cifs):
    featurizer = CGCNNFeaturizer()
    featurizer.featurize([str(p) for p in reference_cifs])
    assert featurizer.failures == []


# ---------------------------------------------------------------- flagged
@pytest.fixture(scope="module")
def model():
    return CGCNNModel.pretrained("mp-formation-energy")


def _flags(model, structure):
    return model.check_domain([structure])[0].flags


def test_domain_flags_of_crystals_outside_the_training_data(model):
    atom_in_a_box = Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])
    water = Structure(
        Lattice.cubic(15.0), ["O", "H", "H"], [[0, 0, 0], [0.0639, 0, 0], [-0.016, 0.0619, 0]]
    )
    slab = Structure(
        Lattice.tetragonal(2.55, 25.0),
        ["Cu"] * 4,
        [[0, 0, 0], [0.5, 0.5, 0.072], [0, 0, 0.144], [0.5, 0.5, 0.216]],
    )
    assert "1 of 1 atoms have no neighbour within 8 Å" in _flags(model, atom_in_a_box)
    assert any("3 of 3 atoms have fewer than 12 neighbours" in f for f in _flags(model, water))
    assert any("empty gap of 15.0 Å" in f for f in _flags(model, water))
    assert any("empty gap of 19.6 Å" in f and "vector c" in f for f in _flags(model, slab))
    # bulk rock salt is in the domain
    assert model.check_domain([NACL])[0].in_domain


def _rock_salt(a: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )


def test_a_squeezed_cell_is_flagged_against_the_shortest_mp_contacts(model):
    """Real rock salt (Na-Cl 2.82 Å) passes; squeezed to a = 4.0 Å (2.00 Å, shorter than
    any Na-Cl contact in the MP crystals, 2.53 Å) it is flagged, naming the pair; so is bcc
    iron at 1.2 Å, for which the shipped model answers +5 eV/atom."""
    assert model.check_domain([_rock_salt(5.64)])[0].in_domain
    assert model.check_domain([_rock_salt(4.6)])[0].in_domain  # 2.30 Å: 91 % of 2.53
    flags = _flags(model, _rock_salt(4.0))
    assert (
        "Na–Cl contact of 2.00 Å, 79 % of the shortest Na–Cl contact in the MP crystals "
        "(2.53 Å; flagged below 85 %)" in flags[0]
    )
    iron = Structure(Lattice.cubic(1.2), ["Fe"], [[0, 0, 0]])
    assert any("Fe–Fe contact of 1.20 Å" in f for f in _flags(model, iron))


def test_a_pair_no_mp_crystal_has_in_contact_is_held_to_its_covalent_radii():
    from deepchem_cgcnn.contacts import contact_flags

    def cu_ar(gap: float):
        crystal = Structure(Lattice.cubic(4.0), ["Cu", "Ar"], [[0, 0, 0], [gap / 4.0, 0, 0]])
        return CGCNNFeaturizer().featurize([crystal])[0]

    # Cordero's covalent radii: Cu 1.32 + Ar 1.06 = 2.38 Å; flagged below 0.6 of it
    assert (
        "Ar–Cu contact of 1.00 Å, 42 % of their covalent radii's sum (2.38 Å"
        in (contact_flags(cu_ar(1.0))[0])
    )
    assert contact_flags(cu_ar(2.0)) == []


def test_the_packaged_contacts_are_the_mp_crystals_shortest(mp_rows, mp_graphs):
    """The packaged table is the minimum over all 31,297 MP crystals: the first 400 of them
    reach it for some pairs and never go below it, and none of them is flagged."""
    import hashlib
    import json

    from conftest import MP_TABLE

    from deepchem_cgcnn.contacts import TABLE_PATH, contact_flags, shortest_contacts

    packaged = json.loads(TABLE_PATH.read_text())
    assert packaged["n_crystals"] == 31297 and len(packaged["pairs"]) > 3000
    if MP_TABLE.exists():
        assert packaged["sha256"] == hashlib.sha256(MP_TABLE.read_bytes()).hexdigest()
    found = shortest_contacts(mp_graphs)
    assert set(found) <= set(packaged["pairs"])
    assert all(found[p] >= packaged["pairs"][p] for p in found)
    assert sum(found[p] == packaged["pairs"][p] for p in found) >= 20  # 24 of them
    assert not any(contact_flags(g) for g in mp_graphs)


def test_rare_elements_are_flagged_from_the_card_counts(model):
    counts = model.training_counts
    assert counts["elements"]["O"] > 5000  # the card records per-element training counts
    rare = [s for s, n in counts["elements"].items() if n < 10]
    assert rare, "no rare element in the training data to test with"
    element = rare[0]
    crystal = Structure(Lattice.cubic(4.2), ["Na", element], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert any(
        f"element {element} is in {counts['elements'][element]} training crystals" in f
        for f in _flags(model, crystal)
    )


def test_predict_warns_naming_the_crystals_and_still_returns_arrays(model):
    lonely = Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize([NACL, lonely])
    dataset = dc.data.NumpyDataset(graphs, ids=np.array(["rock-salt", "atom-in-a-box"]))
    with pytest.warns(DomainWarning, match=r"1 of 2 crystals .*atom-in-a-box: 1 of 1 atoms"):
        prediction = model.predict(dataset)
    assert prediction.shape == (2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        model.predict(dc.data.NumpyDataset(graphs[:1]))  # in domain: no warning


# ---------------------------------------------------------------- featurizer settings
def test_a_model_refuses_graphs_made_with_other_settings(model):
    assert model.featurizer_params["selection"] == "complete"
    default_graphs = CGCNNFeaturizer().featurize([NACL])  # selection='cgcnn'
    with pytest.raises(GraphSettingsError, match=r"'selection': 'cgcnn'.*'selection': 'complete'"):
        model.predict(dc.data.NumpyDataset(default_graphs))
    graphs = CGCNNFeaturizer(**model.featurizer_params).featurize([NACL])
    assert graphs[0].settings == model.featurizer_params
    assert np.isfinite(model.predict(dc.data.NumpyDataset(graphs))).all()


def test_a_new_model_takes_the_settings_of_its_training_graphs():
    crystals = list(example_structures().values())[:4]
    graphs = CGCNNFeaturizer(max_neighbors=8).featurize(crystals)
    model = CGCNNModel(num_conv=1, batch_size=4)
    model.fit(dc.data.NumpyDataset(graphs, np.arange(4.0)), nb_epoch=1)
    assert model.featurizer_params["max_neighbors"] == 8
    with pytest.raises(GraphSettingsError, match="'max_neighbors': 12.*'max_neighbors': 8"):
        model.predict(dc.data.NumpyDataset(CGCNNFeaturizer().featurize(crystals)))


@pytest.mark.torch
def test_original_checkpoints_expect_the_original_settings():
    from conftest import PRETRAINED, need

    model = CGCNNModel.from_cgcnn_checkpoint(
        str(need(PRETRAINED / "formation-energy-per-atom.pth.tar"))
    )
    complete = CGCNNFeaturizer(selection="complete").featurize([NACL])
    with pytest.raises(GraphSettingsError, match="selection"):
        model.predict(dc.data.NumpyDataset(complete))
