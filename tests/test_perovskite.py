"""A/B/X site assignment of perovskites from the structure, checked on the Castelli data."""

import re

import numpy as np
import pytest
from conftest import parse_cifs
from pymatgen.core import Lattice, Structure

from deepchem_cgcnn.perovskite import PerovskiteSiteError, perovskite_sites


def _srtio3(order):
    positions = {
        "Sr": [0, 0, 0],
        "Ti": [0.5, 0.5, 0.5],
        "O1": [0.5, 0.5, 0],
        "O2": [0.5, 0, 0.5],
        "O3": [0, 0.5, 0.5],
    }
    names = [list(positions)[i] for i in order]
    return Structure(
        Lattice.cubic(3.905), [n[:2].rstrip("123") for n in names], [positions[n] for n in names]
    ), names


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (2, 0, 4, 1, 3)])
def test_site_order_and_origin_do_not_matter(order):
    structure, names = _srtio3(order)
    expected = ["A" if n == "Sr" else "B" if n == "Ti" else "X" for n in names]
    assert perovskite_sites(structure) == expected
    shifted = structure.copy()
    shifted.translate_sites(list(range(5)), [0.5, 0.5, 0.5])  # B now on the corner
    assert perovskite_sites(shifted) == expected


def test_geometry_not_formula_decides_a_and_b():
    # Ti on the 12-fold corner and Sr in the octahedron: the labels follow the sites
    swapped = Structure(
        Lattice.cubic(3.905),
        ["Ti", "Sr", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    assert perovskite_sites(swapped) == ["A", "B", "X", "X", "X"]


def test_non_perovskites_are_refused_in_words():
    with pytest.raises(PerovskiteSiteError, match="5-atom"):
        perovskite_sites(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    rng = np.random.default_rng(0)
    clustered = Structure(
        Lattice.cubic(6.0), ["K", "Ti", "O", "O", "O"], 0.08 * rng.random((5, 3))
    )  # all five sites bunched in one corner
    with pytest.raises(PerovskiteSiteError, match="ideal cubic perovskite"):
        perovskite_sites(clustered)


def test_castelli_sites_agree_with_the_databases_a_b_x3_formulas(castelli_table):
    """The Castelli formulas are written A B X3; our assignment never reads them."""
    sample = castelli_table.sample(n=400, random_state=0)
    structures = parse_cifs(sample.cif)
    for structure, formula in zip(structures, sample.formula):
        labels = perovskite_sites(structure)
        elements = [re.sub(r"\d", "", e) for e in re.findall(r"[A-Z][a-z]?\d*", formula)]
        a = [str(structure[i].specie) for i, role in enumerate(labels) if role == "A"]
        b = [str(structure[i].specie) for i, role in enumerate(labels) if role == "B"]
        assert (a, b) == ([elements[0]], [elements[1]]), formula
