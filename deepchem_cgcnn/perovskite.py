"""ABX3 perovskites: which site is A, B or X, read from the structure itself."""

import numpy as np


class PerovskiteSiteError(ValueError):
    """The structure's coordination does not look like an ABX3 perovskite."""


IDEAL_POSITIONS = np.array(
    [
        [0.0, 0.0, 0.0],  # A: cube corner, 12-fold cage
        [0.5, 0.5, 0.5],  # B: body centre, octahedron of X
        [0.5, 0.0, 0.5],  # X: face centres, bridging two B
        [0.5, 0.5, 0.0],
        [0.0, 0.5, 0.5],
    ]
)


def _displacement(frac: np.ndarray, ideal: np.ndarray) -> float:
    """RMS periodic distance (fractional) between sites and ideal positions, best rigid shift."""
    difference = frac - ideal
    angle = 2 * np.pi * difference
    shift = np.arctan2(np.sin(angle).mean(axis=0), np.cos(angle).mean(axis=0)) / (2 * np.pi)
    residual = difference - shift
    residual -= np.round(residual)
    return float(np.sqrt((residual**2).sum(axis=1).mean()))


def perovskite_sites(structure, max_displacement: float = 0.35) -> list[str]:
    """Label each site of a 5-atom ABX3 perovskite ``"A"``, ``"B"`` or ``"X"``.

    Anion chemistry picks the X sites: the three most electronegative sites (O, N,
    F, S, ... in the Castelli data). Coordination tells A from B: the two cation
    sites and the three anions are matched to the ideal cubic perovskite (A on the
    cube corner in a 12-fold cage of X, B at the body centre in an octahedron of 6 X,
    X on the face centres bridging two B), both ways round and with every order of
    the X sites, each after the best rigid shift, and the assignment with the
    smallest RMS displacement wins. The formula's order is never used.

    Parameters
    ----------
    structure: pymatgen Structure
        An ordered 5-atom ABX3 perovskite cell, as in the Castelli data.
    max_displacement: float, default 0.35
        Largest RMS displacement from the ideal positions (fraction of the cell edge)
        that still counts as a perovskite (relaxed Castelli cells reach 0.32).

    Raises
    ------
    PerovskiteSiteError
        Not 5 sites, or no assignment within ``max_displacement``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> srtio3 = Structure(Lattice.cubic(3.905), ["O", "Ti", "O", "Sr", "O"],
    ...                    [[0, 0.5, 0], [0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0.5]])
    >>> perovskite_sites(srtio3)
    ['X', 'B', 'X', 'A', 'X']
    """
    from itertools import permutations

    formula = structure.composition.reduced_formula
    if len(structure) != 5:
        raise PerovskiteSiteError(f"{formula}: {len(structure)} sites; expected a 5-atom ABX3 cell")
    electronegativity = np.array([np.nan_to_num(site.specie.X, nan=0.0) for site in structure])
    ranked = np.argsort(-electronegativity, kind="stable")
    anions, cations = sorted(ranked[:3]), list(ranked[3:])
    frac = structure.frac_coords
    displacement, a_site, b_site = min(
        (_displacement(frac[[a, b, *x]], IDEAL_POSITIONS), a, b)
        for a, b in (cations, cations[::-1])
        for x in permutations(anions)
    )
    if displacement > max_displacement:
        raise PerovskiteSiteError(
            f"{formula}: no A/B assignment within {max_displacement} of "
            f"the ideal cubic perovskite (best {displacement:.3f})"
        )
    return ["A" if i == a_site else "B" if i == b_site else "X" for i in range(5)]
