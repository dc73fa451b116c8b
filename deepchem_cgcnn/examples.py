"""Well-known crystals, built with pymatgen from their space groups and experimental lattice constants."""

from importlib import resources
from pathlib import Path

from pymatgen.core import Lattice, Structure


def example_files() -> list[Path]:
    """The same twelve crystals as CIF files shipped with the package (sorted by name).

    Examples
    --------
    >>> [p.name for p in example_files()][:2]
    ['C_diamond.cif', 'CsCl_B2.cif']
    """
    folder = resources.files("deepchem_cgcnn") / "example_cifs"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".cif"))


def example_structures() -> dict[str, Structure]:
    """A dozen textbook crystals keyed by name, for demos and ``deepchem-cgcnn predict``.

    Examples
    --------
    >>> crystals = example_structures()
    >>> crystals["NaCl (rock salt)"].composition.reduced_formula
    'NaCl'
    >>> len(crystals["Si (diamond)"])
    8
    """
    cubic = Lattice.cubic
    return {
        "NaCl (rock salt)": Structure.from_spacegroup(
            "Fm-3m", cubic(5.640), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "MgO (rock salt)": Structure.from_spacegroup(
            "Fm-3m", cubic(4.212), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "LiF (rock salt)": Structure.from_spacegroup(
            "Fm-3m", cubic(4.027), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "CsCl (B2)": Structure(cubic(4.123), ["Cs", "Cl"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
        "Si (diamond)": Structure.from_spacegroup("Fd-3m", cubic(5.431), ["Si"], [[0, 0, 0]]),
        "C (diamond)": Structure.from_spacegroup("Fd-3m", cubic(3.567), ["C"], [[0, 0, 0]]),
        "GaAs (zinc blende)": Structure.from_spacegroup(
            "F-43m", cubic(5.653), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]
        ),
        "Cu (fcc)": Structure.from_spacegroup("Fm-3m", cubic(3.615), ["Cu"], [[0, 0, 0]]),
        "Fe (bcc)": Structure.from_spacegroup("Im-3m", cubic(2.867), ["Fe"], [[0, 0, 0]]),
        "SrTiO3 (cubic perovskite)": Structure(
            cubic(3.905),
            ["Sr", "Ti", "O", "O", "O"],
            [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]],
        ),
        "TiO2 (rutile)": Structure.from_spacegroup(
            "P4_2/mnm",
            Lattice.tetragonal(4.594, 2.959),
            ["Ti", "O"],
            [[0, 0, 0], [0.3053, 0.3053, 0]],
        ),
        "ZnO (wurtzite)": Structure.from_spacegroup(
            "P6_3mc",
            Lattice.hexagonal(3.250, 5.207),
            ["Zn", "O"],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.3819]],
        ),
    }
