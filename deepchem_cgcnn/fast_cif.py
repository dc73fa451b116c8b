"""A fast reader for the common CIF: one block, P1, fully occupied, plain elements.

pymatgen's ``CifParser`` is most of the time of featurizing from CIF text (7 of 10 s in
``bench_cgcnn2.py``). For the CIFs that need none of its machinery (symmetry expansion,
partial occupancies, oxidation states, several blocks), gemmi's C++ CIF parser reads the
cell and sites, and the arrays of the ``Structure`` pymatgen would build (a
:class:`~deepchem_cgcnn.cell.Cell`; no per-site objects) are computed here exactly as pymatgen
computes them: the same ``Lattice.from_parameters``, pymatgen's rounding of fractional
coordinates within 1e-4 (relative) of 1/3 and 2/3 to those values and its wrapping into
[0, 1), and its site order (sorted by electronegativity, file order among equals). Every other
CIF, and every CIF when gemmi is not installed, returns None: pymatgen reads it.
"""

import functools
import math
import warnings
from collections import Counter
from typing import Any

import numpy as np

from deepchem_cgcnn.cell import Cell

FRAC_TOLERANCE = 1e-4
"""pymatgen ``CifParser``'s default ``frac_tolerance``."""

_IDEAL_FRACTIONS = (1 / 3, 2 / 3)
_IDENTITY = {"x,y,z", "+x,+y,+z"}


def _value(block: Any, tag: str) -> str | None:
    value = block.find_value(tag)
    return None if value is None else value.strip().strip("'\"")


def _number(text: str) -> float:
    """A CIF number without its standard uncertainty: ``4.2790(3)`` -> 4.279."""
    return float(text.split("(")[0])


def _numbers(texts: list[str]) -> np.ndarray:
    """CIF numbers, without their standard uncertainties where they have them."""
    try:
        return np.array(texts, dtype=np.float64)
    except ValueError:
        return np.array([_number(text) for text in texts])


@functools.cache
def _plain_element(symbol: str) -> bool:
    from pymatgen.core import Element

    return bool(Element.is_valid_symbol(symbol))


def _like_pymatgen(fractions: np.ndarray) -> np.ndarray:
    """pymatgen's reading of fractional coordinates: within 1e-4 (relative) of 1/3 or 2/3
    made exactly that, then wrapped into [0, 1) as its symmetry expansion does (the identity
    operation included); the arithmetic of ``math.isclose`` and ``math.floor``, elementwise."""
    fractions = fractions.copy()
    for ideal in _IDEAL_FRACTIONS:
        fractions[np.abs(fractions / ideal - 1.0) <= FRAC_TOLERANCE] = ideal
    wrapped: np.ndarray = fractions - np.floor(fractions)
    return wrapped


@functools.cache
def _atomic_number(symbol: str) -> int:
    from pymatgen.core import Element

    return int(Element(symbol).Z)


@functools.cache
def _sort_key(symbol: str) -> tuple[float, str]:
    from pymatgen.core import Element

    with warnings.catch_warnings():  # an element without an electronegativity gives NaN
        warnings.simplefilter("ignore")
        return float(Element(symbol).X), symbol


def _sorted_like_pymatgen(species: list[str]) -> bool:
    """Whether pymatgen's stable sort of the sites (``Site.__lt__``: electronegativity, then
    symbol) would leave them where they are: no site is "less" than the one before it."""

    def less(a: tuple[float, str], b: tuple[float, str]) -> bool:
        if a[0] < b[0]:
            return True
        if a[0] > b[0]:
            return False
        return a[1] < b[1]

    keys = [_sort_key(symbol) for symbol in species]
    return not any(less(after, before) for before, after in zip(keys, keys[1:]))


def read_p1_cif(text: str) -> tuple[Cell, dict[str, str], dict[str, int]] | None:
    """The cell of a one-block, P1, fully occupied CIF of plain elements (the arrays of the
    ``Structure`` pymatgen reads from it; ``.to_structure()`` builds that), the block's
    ``_chemical_formula_sum`` / ``_cell_formula_units_Z``, and the number of sites of each
    element; None for any other CIF.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> cif = Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")
    >>> cell, declared, counts = read_p1_cif(cif)  # doctest: +SKIP
    >>> cell.to_structure().formula, declared["_chemical_formula_sum"]  # doctest: +SKIP
    ('Cs1 Cl1', 'Cs1 Cl1')
    """
    try:
        import gemmi
    except ImportError:
        return None
    from pymatgen.core import Lattice

    try:
        document = gemmi.cif.read_string(text)
    except Exception:  # pymatgen reads it, or says why it cannot
        return None
    if len(document) != 1:
        return None
    block = document[0]
    if block.find_value("_atom_type_oxidation_number") is not None:
        return None  # pymatgen gives species with oxidation states
    operations = [
        op.strip("'\"").replace(" ", "").lower()
        for tag in ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
        for op in block.find_values(tag)
    ]
    if not operations or not set(operations) <= _IDENTITY:
        return None
    table = block.find(
        "_atom_site_", ["type_symbol", "fract_x", "fract_y", "fract_z", "?occupancy"]
    )
    if len(table) == 0:
        return None
    try:
        parameters = [
            _number(block.find_value(f"_cell_{tag}"))
            for tag in (
                "length_a",
                "length_b",
                "length_c",
                "angle_alpha",
                "angle_beta",
                "angle_gamma",
            )
        ]
        species = [gemmi.cif.as_string(value) for value in table.column(0)]
        if not all(_plain_element(symbol) for symbol in set(species)):
            return None  # labels with charges or isotopes: pymatgen's business
        if table.has_column(4) and not np.all(_numbers(list(table.column(4))) == 1.0):
            return None
        fractions = _numbers([value for k in (1, 2, 3) for value in table.column(k)])
        fractions = fractions.reshape(3, -1).T.copy()
    except (TypeError, ValueError, AttributeError):
        return None
    if not np.isfinite(fractions).all() or not all(math.isfinite(v) for v in parameters):
        return None
    if any(math.isnan(_sort_key(symbol)[0]) for symbol in set(species)):
        return None  # no electronegativity (He, Ne, Ar): pymatgen's order depends on its grouping
    matrix = Lattice.from_parameters(*parameters).matrix
    if not _sorted_like_pymatgen(species):
        # pymatgen sorts the sites by electronegativity (stable: same element, file order)
        order = sorted(range(len(species)), key=lambda i: _sort_key(species[i]))
        species = [species[i] for i in order]
        fractions = fractions[order]
    numbers = np.array([_atomic_number(symbol) for symbol in species])
    cell = Cell.from_arrays(matrix, _like_pymatgen(fractions), numbers, tuple(species))
    declared = {
        tag: value
        for tag in ("_chemical_formula_sum", "_cell_formula_units_Z")
        if (value := _value(block, tag)) is not None
    }
    return cell, declared, dict(Counter(species))
