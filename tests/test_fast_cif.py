"""The gemmi reader of common CIFs gives exactly pymatgen's structure, and declines the rest."""

import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn.fast_cif import read_p1_cif
from deepchem_cgcnn.featurizer import FeaturizationError, read_cif


def _pymatgen(text: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(text, fmt="cif")


def test_mp_cifs_read_exactly_as_pymatgen_reads_them(mp_rows):
    for material_id, cif in zip(mp_rows.material_id, mp_rows.cif):
        fast = read_p1_cif(cif)
        assert fast is not None, material_id
        cell, reference = fast[0], _pymatgen(cif)
        assert cell.symbols == tuple(str(s.specie) for s in reference), material_id
        assert cell.numbers.tolist() == [s.specie.Z for s in reference], material_id
        assert np.array_equal(cell.matrix, reference.lattice.matrix), material_id
        assert np.array_equal(cell.frac_coords, reference.frac_coords), material_id
        assert np.array_equal(cell.cart_coords, reference.cart_coords), material_id
        assert cell.to_structure() == reference, material_id


def test_coordinates_near_thirds_and_outside_the_cell_as_pymatgen():
    cif = Structure(
        Lattice.hexagonal(3.0, 5.0),
        ["Mg", "B", "B"],
        [[0, 0, 0], [0.33334, 0.66665, 0.5], [0.6667, 0.3333, 1.25]],
    ).to(fmt="cif")
    cif = cif.replace("0.25000000", "1.25000000")
    ours, reference = read_p1_cif(cif)[0], _pymatgen(cif)
    assert np.array_equal(ours.frac_coords, reference.frac_coords)
    assert np.array_equal(ours.cart_coords, reference.cart_coords)
    assert ours.frac_coords[1].tolist() == [1 / 3, 2 / 3, 0.5]


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]])
def test_sites_in_any_file_order_come_out_in_pymatgens_order(order):
    """pymatgen sorts sites by electronegativity, file order among equals; an element
    without one (He) leaves the order to pymatgen's own grouping, so pymatgen reads it."""
    crystal = Structure(
        Lattice.cubic(6.0),
        ["F", "Xe", "Ti", "F"],
        [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]],
    )
    text = crystal.to(fmt="cif").rstrip("\n").splitlines()
    atoms = text[-4:]
    cif = "\n".join(text[:-4] + [atoms[k] for k in order]) + "\n"
    ours, reference = read_p1_cif(cif)[0].to_structure(), _pymatgen(cif)
    assert [str(s.specie) for s in ours] == [str(s.specie) for s in reference]
    assert np.array_equal(ours.frac_coords, reference.frac_coords)
    assert read_p1_cif(cif.replace("Xe", "He")) is None
    assert [str(s.specie) for s in read_cif(cif.replace("Xe", "He"))] == [
        str(s.specie) for s in _pymatgen(cif.replace("Xe", "He"))
    ]


def test_everything_else_is_left_to_pymatgen(reference_cifs):
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")
    with_symmetry = [p.read_text() for p in reference_cifs]  # the original code's COD files
    assert any(read_p1_cif(text) is None for text in with_symmetry)
    two_blocks = nacl + "\n" + nacl.replace("data_NaCl", "data_other")
    partial = nacl.replace(
        " Na  Na0  1  0.00000000  0.00000000  0.00000000  1",
        " Na  Na0  1  0.00000000  0.00000000  0.00000000  0.5",
    )
    charged = nacl.replace("Na  Na0", "Na+  Na0")
    assert read_p1_cif(nacl) is not None
    for text in (two_blocks, partial, charged, "not a cif"):
        assert read_p1_cif(text) is None
    for text in with_symmetry:  # whichever reader: exactly pymatgen's structure
        assert np.allclose(read_cif(text).frac_coords, _pymatgen(text).frac_coords)


def test_a_truncated_p1_cif_is_still_refused():
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    lines = nacl.to(fmt="cif").rstrip("\n").splitlines()
    cut = "\n".join(lines[:-1]) + "\n"  # the last atom site lost
    assert read_p1_cif(cut) is not None  # the fast reader reads it ...
    with pytest.raises(FeaturizationError, match="_chemical_formula_sum"):
        read_cif(cut, name="cut.cif")  # ... and the declared formula still refuses it


@pytest.mark.parametrize("selection", ["cgcnn", "complete"])
def test_graphs_from_cif_text_equal_graphs_from_pymatgens_structure(mp_rows, selection):
    """The fast path (no Structure built) gives the very graph of pymatgen's structure:
    same neighbours in the same slots at the same distances, bit for bit."""
    from deepchem_cgcnn import CGCNNFeaturizer

    featurizer = CGCNNFeaturizer(selection=selection)
    texts = list(mp_rows.cif)
    fast = featurizer.featurize(texts)
    reference = featurizer.featurize([_pymatgen(text) for text in texts])
    assert featurizer.n_failed == 0
    for material_id, ours, theirs in zip(mp_rows.material_id, fast, reference):
        assert np.array_equal(ours.atomic_numbers, theirs.atomic_numbers), material_id
        assert np.array_equal(ours.neighbor_index, theirs.neighbor_index), material_id
        assert np.array_equal(ours.neighbor_distance, theirs.neighbor_distance), material_id
        assert ours.geometry == theirs.geometry, material_id


def test_a_cells_neighbour_list_is_pymatgens(mp_rows):
    from deepchem_cgcnn.cell import Cell

    for material_id, text in zip(mp_rows.material_id[:12], mp_rows.cif[:12]):
        structure = _pymatgen(text)
        reference = structure.get_neighbor_list(8.0)
        for cell in (Cell.from_structure(structure), read_p1_cif(text)[0]):
            for ours, theirs in zip(cell.get_neighbor_list(8.0), reference):
                assert np.array_equal(ours, theirs), material_id
        with_self = structure.get_neighbor_list(0.5, exclude_self=False)
        for ours, theirs in zip(
            Cell.from_structure(structure).get_neighbor_list(0.5, exclude_self=False), with_self
        ):
            assert np.array_equal(ours, theirs), material_id


@pytest.mark.parametrize(
    "formula",
    [
        "Li1 Fe1 P1 O4",
        "Fe2O3",
        "CO2",
        "Co O",
        "Fe2.5 O1",
        "Na0.5 Cl0.5",
        "H2 O D",
        "Fe O Fe",
        "Ca(OH)2",
        "Fe2+ O",
        "Uuo",
        "Xx2 O",
        "Fe0 O1",
        "Al2 (SO4)3",
    ],
)
def test_declared_formulas_read_as_pymatgen_reads_them(formula):
    from pymatgen.core import Composition

    from deepchem_cgcnn.featurizer import _element_amounts

    try:
        parsed = Composition(formula).element_composition
        expected = {e.symbol: parsed[e] for e in parsed.elements}
    except Exception:
        expected = None
    assert _element_amounts(formula) == expected
