"""A periodic cell as the crystal graph sees it: lattice, fractional coordinates, elements.

A pymatgen ``Structure`` builds a ``PeriodicSite`` and a ``Composition`` for every atom, and
its ``frac_coords``/``cart_coords`` gather them back site by site; featurizing thousands of CIFs,
that bookkeeping costs as much as the graph itself. A :class:`Cell` holds the arrays the graph
needs and repeats, operation for operation, the pymatgen arithmetic the graph depends on (each
site's Cartesian coordinates, the neighbour search of ``Structure.get_neighbor_list``), so a
graph built from a Cell is identical to one built from the Structure it stands for.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core.structure import Structure

NUMERICAL_TOLERANCE = 1e-8
"""``Structure.get_neighbor_list``'s default ``numerical_tol``."""


def cartesian_like_pymatgen(frac_coords: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Cartesian coordinates computed as each ``PeriodicSite.coords`` is (one ``np.dot`` per
    site), so they agree with pymatgen's to the last bit."""
    if len(frac_coords) == 0:
        return np.empty((0, 3))
    return np.array([np.dot(row, matrix) for row in frac_coords])


@dataclass(frozen=True, eq=False)
class Cell:
    """The lattice (rows are the vectors, Å), fractional and Cartesian coordinates, atomic
    numbers and element symbols of an ordered periodic structure.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> cell = Cell.from_structure(nacl)
    >>> len(cell), cell.numbers.tolist(), cell.symbols
    (2, [11, 17], ('Na', 'Cl'))
    >>> centers, neighbors, images, distances = cell.get_neighbor_list(5.0)
    >>> len(distances), round(float(distances.min()), 3)  # 8 Cl around Na, 8 Na around Cl
    (16, 4.884)
    """

    matrix: np.ndarray
    frac_coords: np.ndarray
    cart_coords: np.ndarray
    numbers: np.ndarray
    symbols: tuple[str, ...]
    pbc: tuple[bool, bool, bool] = (True, True, True)

    @classmethod
    def from_arrays(
        cls,
        matrix: np.ndarray,
        frac_coords: np.ndarray,
        numbers: np.ndarray,
        symbols: tuple[str, ...],
        pbc: tuple[bool, bool, bool] = (True, True, True),
    ) -> "Cell":
        """A cell whose Cartesian coordinates are computed as pymatgen computes them."""
        frac_coords = np.asarray(frac_coords, dtype=np.float64).reshape(-1, 3)
        return cls(
            matrix,
            frac_coords,
            cartesian_like_pymatgen(frac_coords, matrix),
            np.asarray(numbers, dtype=np.int64),
            tuple(symbols),
            pbc,
        )

    @classmethod
    def from_structure(cls, structure: "Structure", numbers: np.ndarray | None = None) -> "Cell":
        """The arrays of an ordered ``structure`` (its own coordinates, bit for bit);
        ``numbers`` are its atomic numbers when the caller has them (0 for a dummy species)."""
        species = structure.species
        if numbers is None:
            numbers = np.array([getattr(s, "Z", 0) for s in species], dtype=np.int64)
        return cls(
            structure.lattice.matrix,
            structure.frac_coords,
            structure.cart_coords,
            np.asarray(numbers, dtype=np.int64),
            tuple(str(s) for s in species),
            tuple(bool(p) for p in structure.pbc),  # type: ignore[arg-type]
        )

    def __len__(self) -> int:
        return len(self.numbers)

    def to_structure(self) -> "Structure":
        """The pymatgen ``Structure`` this cell stands for."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.matrix, pbc=self.pbc), list(self.symbols), self.frac_coords)

    def wrapped(self) -> "Cell":
        """The cell with every fractional coordinate moved into [0, 1)."""
        return Cell.from_arrays(
            self.matrix, np.mod(self.frac_coords, 1.0), self.numbers, self.symbols, self.pbc
        )

    def get_neighbor_list(
        self, r: float, numerical_tol: float = NUMERICAL_TOLERANCE, exclude_self: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``Structure.get_neighbor_list(r)``: centre and neighbour indices, the neighbour's
        image (lattice translation) and the distance of every pair within ``r`` Å, from the
        same pymatgen routine on the same arrays, in the same order."""
        from pymatgen.optimization.neighbors import find_points_in_spheres

        coords = np.ascontiguousarray(self.cart_coords, dtype=float)
        found: Any = find_points_in_spheres(
            coords,
            coords,
            r=r,
            pbc=np.ascontiguousarray(self.pbc, dtype=np.int64),
            lattice=np.ascontiguousarray(self.matrix, dtype=float),
            tol=numerical_tol,
        )
        centers, neighbors, images, distances = found
        if not exclude_self:
            return centers, neighbors, images, distances
        keep = ~((centers == neighbors) & (distances <= numerical_tol))
        return centers[keep], neighbors[keep], images[keep], distances[keep]
