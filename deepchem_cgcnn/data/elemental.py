"""Each element's ground state in a table of formation energies: a check for any
formation-energy model, since an element's most stable crystal has a formation energy near
zero by construction."""

from typing import Any

import pandas as pd

DIAMOND_FORMATION_ENERGY = 0.14
"""Materials Project's formation energy of diamond in eV/atom (graphite is the reference)."""


def elemental_ground_states(
    frame: pd.DataFrame, energy: str = "formation_energy_per_atom", cif: str = "cif"
) -> pd.DataFrame:
    """The rows of ``frame`` holding each element's lowest-energy elemental crystal.

    Parameters
    ----------
    frame: pd.DataFrame
        A table with CIF text in column ``cif`` and formation energies in ``energy``.
    energy, cif: str
        The column names.

    Returns
    -------
    pd.DataFrame
        One row per element (sorted by symbol), the original columns plus ``element``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> def cif(species, a):
    ...     return Structure(Lattice.cubic(a), species, [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)]).to(fmt="cif")
    >>> frame = pd.DataFrame({
    ...     "material_id": ["mp-a", "mp-b", "mp-c"],
    ...     "formation_energy_per_atom": [0.3, 0.01, -2.0],
    ...     "cif": [cif(["Cu"], 2.5), cif(["Cu", "Cu"], 2.9), cif(["Na", "Cl"], 5.6)],
    ... })
    >>> elemental_ground_states(frame)[["material_id", "element"]].values.tolist()
    [['mp-b', 'Cu']]
    """
    from pymatgen.core import Composition

    formulas = frame[cif].str.extract(r"_chemical_formula_sum\s+'?([^'\n]+)")[0]
    elements = [Composition(f).elements if isinstance(f, str) else [] for f in formulas.str.strip()]
    unary = frame[[len(e) == 1 for e in elements]]
    unary = unary.assign(element=[e[0].symbol for e in elements if len(e) == 1])
    ground = unary.loc[unary.groupby("element")[energy].idxmin()]
    return ground.sort_values("element")


def diamond() -> Any:
    """Diamond's primitive cell (Fd-3m, a = 3.567 Å) as a pymatgen ``Structure``: the MP
    table holds graphite but not diamond (formation energy :data:`DIAMOND_FORMATION_ENERGY`).

    >>> diamond().composition.reduced_formula, len(diamond())
    ('C', 2)
    """
    from pymatgen.core import Lattice, Structure

    cell = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])
    return cell.get_primitive_structure()
