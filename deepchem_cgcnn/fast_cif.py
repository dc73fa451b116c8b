"""A fast reader for the common CIF: one block, P1, fully occupied, plain elements.

pymatgen's ``CifParser`` is most of the time of featurizing from CIF text (7 of 10 s in
``bench_cgcnn2.py``). For the CIFs that need none of its machinery (symmetry expansion,
partial occupancies, oxidation states, several blocks), gemmi's C++ CIF parser reads the
cell and sites and the ``Structure`` is built here exactly as pymatgen builds it: the
same ``Lattice.from_parameters``, pymatgen's rounding of fractional coordinates within 1e-4
(relative) of 1/3 and 2/3 to those values and its wrapping into [0, 1), and its site order
(sorted by electronegativity, file order among equals). Every other
CIF, and every CIF when gemmi is not installed, returns None: pymatgen reads it.
"""

import functools
import math
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymatgen.core import Structure

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


def _like_pymatgen(fraction: float) -> float:
    """pymatgen's reading of a fractional coordinate: 1/3 and 2/3 made ideal, then wrapped
    into [0, 1) as its symmetry expansion does (the identity operation included)."""
    for ideal in _IDEAL_FRACTIONS:
        if math.isclose(fraction / ideal, 1, abs_tol=FRAC_TOLERANCE, rel_tol=0):
            fraction = ideal
            break
    return fraction - math.floor(fraction)


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


def read_p1_cif(text: str) -> tuple["Structure", dict[str, str], dict[str, int]] | None:
    """The structure of a one-block, P1, fully occupied CIF of plain elements, the block's
    ``_chemical_formula_sum`` / ``_cell_formula_units_Z``, and the number of sites of each
    element; None for any other CIF.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> cif = Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")
    >>> structure, declared, counts = read_p1_cif(cif)  # doctest: +SKIP
    >>> structure.formula, declared["_chemical_formula_sum"]  # doctest: +SKIP
    ('Cs1 Cl1', 'Cs1 Cl1')
    """
    try:
        import gemmi
    except ImportError:
        return None
    from pymatgen.core import Element, Lattice, Structure

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
    species, coordinates = [], []
    try:
        cell = [
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
        for row in table:
            symbol = gemmi.cif.as_string(row[0])
            if not Element.is_valid_symbol(symbol):
                return None  # labels with charges or isotopes: pymatgen's business
            if row.has(4) and _number(gemmi.cif.as_string(row[4])) != 1.0:
                return None
            species.append(symbol)
            coordinates.append([_like_pymatgen(_number(row[k])) for k in (1, 2, 3)])
    except (TypeError, ValueError, AttributeError):
        return None
    if any(math.isnan(_sort_key(symbol)[0]) for symbol in set(species)):
        return None  # no electronegativity (He, Ne, Ar): pymatgen's order depends on its grouping
    structure = Structure(Lattice.from_parameters(*cell), species, coordinates)
    if not _sorted_like_pymatgen(species):
        # pymatgen sorts the sites by electronegativity (stable: same element, file order)
        structure = structure.get_sorted_structure()
    declared = {
        tag: value
        for tag in ("_chemical_formula_sum", "_cell_formula_units_Z")
        if (value := _value(block, tag)) is not None
    }
    return structure, declared, dict(Counter(species))
