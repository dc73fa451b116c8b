"""The composition-baseline study's element fractions: pymatgen's, from each CIF's formula."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_element_fractions_are_the_structures_compositions(mp_rows):
    from composition_residual import element_fractions
    from pymatgen.core import Structure

    cifs = list(mp_rows.cif[:60])
    fractions = element_fractions(cifs)
    assert fractions.shape == (60, 119)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=1e-12)
    for row, cif in zip(fractions, cifs):
        composition = Structure.from_str(cif, fmt="cif").composition.fractional_composition
        expected = np.zeros(119)
        for element, amount in composition.items():
            expected[element.Z] = amount
        np.testing.assert_allclose(row, expected, atol=1e-9)


def test_a_cif_without_its_formula_line_is_named(mp_rows):
    from composition_residual import element_fractions

    cifs = list(mp_rows.cif[:3])
    cifs[2] = "\n".join(
        line for line in cifs[2].splitlines() if "_chemical_formula_sum" not in line
    )
    with pytest.raises(ValueError, match="row 2: the CIF has no _chemical_formula_sum"):
        element_fractions(cifs)
