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
        ours, reference = fast[0], _pymatgen(cif)
        assert [s.specie for s in ours] == [s.specie for s in reference], material_id
        assert np.array_equal(ours.lattice.matrix, reference.lattice.matrix), material_id
        assert np.array_equal(ours.frac_coords, reference.frac_coords), material_id


def test_coordinates_near_thirds_and_outside_the_cell_as_pymatgen():
    cif = Structure(
        Lattice.hexagonal(3.0, 5.0),
        ["Mg", "B", "B"],
        [[0, 0, 0], [0.33334, 0.66665, 0.5], [0.6667, 0.3333, 1.25]],
    ).to(fmt="cif")
    cif = cif.replace("0.25000000", "1.25000000")
    ours, reference = read_p1_cif(cif)[0], _pymatgen(cif)
    assert np.array_equal(ours.frac_coords, reference.frac_coords)
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
    ours, reference = read_p1_cif(cif)[0], _pymatgen(cif)
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
