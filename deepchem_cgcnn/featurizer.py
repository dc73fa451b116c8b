"""CGCNNFeaturizer: pymatgen Structure (or CIF) -> compact crystal graph."""

import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.cell import Cell
from deepchem_cgcnn.elements import has_embedding
from deepchem_cgcnn.graph import CrystalGraph

dc = import_deepchem()
if TYPE_CHECKING:
    from deepchem.feat import MaterialStructureFeaturizer
    from pymatgen.core.structure import Structure
else:
    MaterialStructureFeaturizer = dc.feat.MaterialStructureFeaturizer
logger = logging.getLogger(__name__)

SELECTIONS = ("cgcnn", "complete")
PADDINGS = ("cgcnn", "mask")


class FeaturizationError(ValueError):
    """A structure that cannot become a crystal graph; the message says which and why."""


class CGCNNFeaturizer(MaterialStructureFeaturizer):
    """Crystal graphs for CGCNN, as the original code builds them, fast and offline.

    Each atom keeps its nearest neighbours within ``radius`` (periodic images
    included, sorted by distance). Atom features are the 92-dim CGCNN element
    embedding (read from matminer, never downloaded) and edge features the
    Gaussian expansion ``exp(-(d - mu)^2 / step^2)``, ``mu = 0, step, ..., radius``;
    both are expanded on demand from the stored atomic numbers and distances
    (see :class:`~deepchem_cgcnn.graph.CrystalGraph`).

    Two neighbour selections:

    * ``'cgcnn'`` (default): the original's. A stable sort by distance of
      pymatgen's neighbour list, first ``max_neighbors`` kept. Where several
      neighbours tie at the cut-off, which are kept depends on the order of the
      sites in the file -- exactly as in the original, which the published
      checkpoints need.
    * ``'complete'``: every neighbour tied (within ``tie_tolerance``) with the
      ``max_neighbors``-th is kept too, so the graph, and any model's
      prediction, is invariant to permuting the sites.

    Two paddings for atoms with fewer neighbours than slots:

    * ``'cgcnn'`` (default with ``selection='cgcnn'``): index 0 at distance
      ``radius + 1``, edges the model sees, as in the original.
    * ``'mask'`` (always with ``selection='complete'``): padded slots contribute
      nothing.

    Parameters
    ----------
    radius: float, default 8.0
        Neighbour search radius in Å.
    max_neighbors: int, default 12
        Neighbours kept per atom (before tie completion).
    step: float, default 0.2
        Spacing and width of the Gaussian distance expansion in Å.
    selection: str, default 'cgcnn'
        ``'cgcnn'`` or ``'complete'``, see above.
    padding: str, optional
        ``'cgcnn'`` or ``'mask'``; default ``'cgcnn'`` for ``selection='cgcnn'``
        and ``'mask'`` for ``'complete'``.
    tie_tolerance: float, default 1e-5
        Distances within this many Å of the last kept one count as tied
        (``selection='complete'`` only).
    min_distance: float, default 0.5
        Structures with two atoms (or an atom and its own periodic image) closer than
        this many Å are refused as overlapping; no real crystal comes close (the
        shortest interatomic distance in the 31,297 MP crystals of the CGCNN data set
        is 0.746 Å, an O-H bond).
    max_neighbor_pairs: int, default 4,000,000
        A structure whose neighbour list within ``radius`` would hold more pairs than
        this (estimated from its atom count and density before searching) is refused:
        it bounds the memory and time one structure can take (a dense real crystal has
        ~400 neighbours per atom within 8 Å, so this admits ~10,000-atom cells).
    n_jobs: int, default 1
        Processes used by :meth:`featurize`; -1 for all cores.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graph = CGCNNFeaturizer().featurize([nacl])[0]
    >>> graph.node_features.shape, graph.edge_features.shape
    ((2, 92), (24, 41))
    >>> round(float(graph.edge_distance.min()), 3)
    4.884

    Failures never sink a batch: the failed entry is an empty array, as in DeepChem,
    and ``failures`` says which and why.

    >>> featurizer = CGCNNFeaturizer()
    >>> graphs = featurizer.featurize([nacl, "missing.cif"])
    >>> graphs[1].size, featurizer.failures
    (0, [(1, "FeaturizationError: 'missing.cif' is neither a file nor a CIF string")])
    """

    def __init__(
        self,
        radius: float = 8.0,
        max_neighbors: int = 12,
        step: float = 0.2,
        selection: str = "cgcnn",
        padding: str | None = None,
        tie_tolerance: float = 1e-5,
        min_distance: float = 0.5,
        max_neighbor_pairs: int = 4_000_000,
        n_jobs: int = 1,
    ):
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if padding is None:
            padding = "cgcnn" if selection == "cgcnn" else "mask"
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if selection == "complete" and padding != "mask":
            raise ValueError(
                "selection='complete' keeps a varying number of neighbours "
                "per atom, so it needs padding='mask'"
            )
        if not radius > 0 or not step > 0 or int(max_neighbors) < 1:
            raise ValueError(
                f"need radius > 0, step > 0 and max_neighbors >= 1; got "
                f"radius={radius}, step={step}, max_neighbors={max_neighbors}"
            )
        self.radius = float(radius)
        self.max_neighbors = int(max_neighbors)
        self.step = float(step)
        self.selection = selection
        self.padding = padding
        self.tie_tolerance = float(tie_tolerance)
        self.min_distance = float(min_distance)
        self.max_neighbor_pairs = int(max_neighbor_pairs)
        self.n_jobs = n_jobs
        self.failures: list[tuple[int, str]] = []

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def to_structure(datapoint: Any) -> "Structure":
        """Turn a Structure, a Structure dict, a CIF/POSCAR path or a CIF string into a Structure."""
        return _as_structure(_read(datapoint))

    @staticmethod
    def to_cell(datapoint: Any) -> Cell:
        """The checked :class:`~deepchem_cgcnn.cell.Cell` of anything :meth:`to_structure`
        reads; a common CIF (one block, P1, ordered) becomes one without a Structure built.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        >>> cell = CGCNNFeaturizer.to_cell(nacl.to(fmt="cif"))
        >>> cell.symbols, cell.numbers.tolist(), cell.matrix.round(6)[0].tolist()
        (('Na', 'Cl'), [11, 17], [5.64, 0.0, 0.0])
        """
        found = _read(datapoint)
        if isinstance(found, Cell):
            check_sites(found.matrix, found.frac_coords, found.numbers, found.symbols)
            return found
        return Cell.from_structure(found, check_structure(found))

    @staticmethod
    def check_structure(structure: "Structure") -> np.ndarray:
        """Raise :class:`FeaturizationError` for a structure CGCNN cannot use; return its atomic numbers."""
        return check_structure(structure)

    # ------------------------------------------------------------------ graph
    def _featurize(self, datapoint: Any, **kwargs: Any) -> CrystalGraph:
        """Crystal graph of one structure; raises :class:`FeaturizationError` on bad input."""
        cell = wrapped_into_cell(self.to_cell(datapoint))
        spacings = plane_spacings(cell.matrix)
        check_bounds(cell, self.radius, self.min_distance, self.max_neighbor_pairs, spacings)
        # one neighbour search serves the overlap check and the graph
        pairs = cell.get_neighbor_list(self.radius)
        if self.min_distance > 0:
            near = (
                pairs
                if self.min_distance <= self.radius
                else cell.get_neighbor_list(self.min_distance, exclude_self=False)
            )
            check_pair_distances(near, self.min_distance, cell.symbols)
        index, distance, counts = neighbors_from_pairs(
            len(cell),
            pairs,
            self.radius,
            self.max_neighbors,
            self.selection,
            self.padding,
            self.tie_tolerance,
        )
        geometry = {
            "n_isolated": int((counts == 0).sum()),
            "n_underfull": int((counts < self.max_neighbors).sum()),
            **largest_vacuum_gap(cell.frac_coords, cell.matrix, spacings),
        }
        return CrystalGraph(
            cell.numbers,
            index,
            distance,
            self.radius,
            self.step,
            settings=featurizer_params(self),
            geometry=geometry,
        )

    def _featurize_or_reason(self, datapoint: Any) -> CrystalGraph | str:
        try:
            return self._featurize(datapoint)
        except Exception as error:  # one bad structure must never sink the batch
            return f"{type(error).__name__}: {error}"

    def featurize(
        self,
        datapoints: Any | Iterable[Any],
        log_every_n: int = 1000,
        n_jobs: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Featurize structures; failures become empty arrays, as in DeepChem.

        Parameters
        ----------
        datapoints: Structure, dict, path, CIF string, or an iterable of them
            The crystals.
        log_every_n: int, default 1000
            Log progress every this many structures.
        n_jobs: int, optional
            Processes to use; defaults to the featurizer's ``n_jobs``.

        Returns
        -------
        np.ndarray
            1-D object array of :class:`CrystalGraph`, with ``np.array([])`` for
            each structure that failed. ``self.failures`` lists ``(index, reason)``
            for those, and each is logged as a warning.
        """
        from pymatgen.core import Structure

        if isinstance(datapoints, (Structure, dict, str, os.PathLike)):
            datapoints = [datapoints]
        datapoints = list(datapoints)
        n_jobs = self.n_jobs if n_jobs is None else n_jobs
        if n_jobs != 1 and len(datapoints) > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=n_jobs, batch_size=64)(
                delayed(self._featurize_or_reason)(point) for point in datapoints
            )
        else:
            results = []
            for i, point in enumerate(datapoints):
                if i % log_every_n == 0:
                    logger.info("Featurizing datapoint %i", i)
                results.append(self._featurize_or_reason(point))
        features = np.empty(len(datapoints), dtype=object)
        self.failures = []
        for i, result in enumerate(results):
            if isinstance(result, str):
                self.failures.append((i, result))
                logger.warning("Failed to featurize datapoint %i: %s", i, result)
                features[i] = np.array([])
            else:
                features[i] = result
        return features

    @property
    def n_failed(self) -> int:
        """How many structures the last :meth:`featurize` call could not featurize."""
        return len(self.failures)


def check_structure(structure: "Structure") -> np.ndarray:
    """Raise :class:`FeaturizationError` for a structure CGCNN cannot use; return its atomic numbers."""
    if not structure.is_ordered:
        disordered = [i for i, site in enumerate(structure) if not site.is_ordered]
        raise FeaturizationError(
            f"disordered structure: sites {disordered[:10]} have partial occupancy "
            f"({structure[disordered[0]].species}); CGCNN needs one element per site"
        )
    atomic_numbers = np.array([getattr(site.specie, "Z", 0) for site in structure])
    check_sites(structure.lattice.matrix, structure.frac_coords, atomic_numbers, structure.species)
    return atomic_numbers


def check_sites(
    matrix: np.ndarray, frac_coords: np.ndarray, atomic_numbers: np.ndarray, species: Sequence[Any]
) -> None:
    """Raise :class:`FeaturizationError` for a lattice, coordinates or elements CGCNN cannot
    use: no sites, non-finite numbers, a flat cell, an element without an embedding
    (``species`` name the sites in the messages)."""
    if len(atomic_numbers) == 0:
        raise FeaturizationError("empty structure (no sites)")
    if not np.all(np.isfinite(matrix)):
        raise FeaturizationError("non-finite lattice vectors")
    if not np.all(np.isfinite(frac_coords)):
        bad = np.nonzero(~np.isfinite(frac_coords).all(axis=1))[0]
        raise FeaturizationError(f"non-finite coordinates at sites {bad[:10].tolist()}")
    volume = abs(np.linalg.det(matrix))
    lengths = np.linalg.norm(matrix, axis=1)
    if not volume > 1e-6 * max(lengths.prod(), 1e-30):
        raise FeaturizationError(
            f"degenerate lattice (volume {volume:.3g} Å^3, lattice vectors "
            f"{np.round(lengths, 4).tolist()} Å are coplanar or zero)"
        )
    known = has_embedding(atomic_numbers)
    if not known.all():
        i = int(np.argmin(known))
        raise FeaturizationError(
            f"element {species[i]} at site {i} has no CGCNN embedding (the table covers Z = 1..100)"
        )


def select_neighbors(
    structure: "Structure",
    radius: float,
    max_neighbors: int,
    selection: str = "cgcnn",
    padding: str = "cgcnn",
    tie_tolerance: float = 1e-5,
    pairs: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each atom's nearest neighbours within ``radius`` (periodic images included).

    Neighbours are sorted by distance; among equal distances pymatgen's own order decides,
    as in the original CGCNN code. ``selection='cgcnn'`` keeps the first ``max_neighbors``
    (the original's rule); ``'complete'`` also keeps every neighbour tied with the last
    kept one (within ``tie_tolerance`` Å), so the graph does not depend on site order.
    Atoms with fewer neighbours are padded: ``padding='cgcnn'`` with atom 0 at distance
    ``radius + 1`` (the original's padding, real edges the model sees), ``'mask'`` with
    the atom itself at distance ``inf`` (dropped from the graph).

    ``pairs`` is ``structure.get_neighbor_list(radius)`` when the caller has it already.

    Returns
    -------
    index, distance: np.ndarray
        ``(n_atoms, n_slots)`` neighbour indices and distances (Å), ``n_slots >= max_neighbors``.
    counts: np.ndarray
        ``(n_atoms,)`` how many neighbours each atom has within ``radius``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> index, distance, counts = select_neighbors(nacl, 8.0, 12)
    >>> index.shape, round(float(distance[0, 0]), 3), counts.tolist()
    ((2, 12), 4.884, [26, 26])
    """
    return neighbors_from_pairs(
        len(structure),
        pairs or structure.get_neighbor_list(radius),
        radius,
        max_neighbors,
        selection,
        padding,
        tie_tolerance,
    )


def neighbors_from_pairs(
    n_atoms: int,
    pairs: tuple[np.ndarray, ...],
    radius: float,
    max_neighbors: int,
    selection: str = "cgcnn",
    padding: str = "cgcnn",
    tie_tolerance: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`select_neighbors` from a neighbour list ``(centers, neighbors, images,
    distances)`` of ``n_atoms`` atoms within ``radius``."""
    centers, neighbors, _, distances = pairs
    # np.lexsort((distances, centers)) as two stable sorts, the same order, 1.8x faster; the
    # second in int16 where it fits, which NumPy's stable sort does by radix (1.8x again)
    order = np.argsort(distances, kind="stable")
    grouping = centers[order]
    if n_atoms <= np.iinfo(np.int16).max:
        grouping = grouping.astype(np.int16)
    order = order[np.argsort(grouping, kind="stable")]
    centers, neighbors, distances = centers[order], neighbors[order], distances[order]
    counts = np.bincount(centers, minlength=n_atoms)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(centers)) - starts[centers]
    keep = rank < max_neighbors
    if selection == "complete":
        has_full_shell = counts >= max_neighbors
        last_kept = np.full(n_atoms, np.inf)
        last_kept[has_full_shell] = distances[starts[has_full_shell] + max_neighbors - 1]
        keep |= distances <= last_kept[centers] + tie_tolerance
    n_slots = max(max_neighbors, int(np.bincount(centers[keep], minlength=n_atoms).max(initial=0)))
    if padding == "cgcnn":
        index = np.zeros((n_atoms, n_slots), dtype=np.int64)
        distance = np.full((n_atoms, n_slots), radius + 1.0)
    else:
        index = np.tile(np.arange(n_atoms)[:, None], (1, n_slots))
        distance = np.full((n_atoms, n_slots), np.inf)
    index[centers[keep], rank[keep]] = neighbors[keep]
    distance[centers[keep], rank[keep]] = distances[keep]
    return index, distance, counts


TRUSTED_MODULES = ("pymatgen.core", "pymatgen.electronic_structure.core", "numpy")
"""Modules a structure dict may name in ``@module``: pymatgen's own classes and NumPy arrays."""


def structure_from_dict(data: dict[str, Any], name: str = "structure dict") -> "Structure":
    """A pymatgen Structure from its ``as_dict()`` form, importing nothing the dict names.

    pymatgen decodes every nested ``{"@module": ..., "@class": ...}`` by importing that
    module, so a structure file can make the reader import any installed module. Here a
    dict naming a module outside pymatgen's core classes and NumPy (anywhere, site
    properties included), or a top-level class other than ``Structure``/``IStructure``,
    raises :class:`FeaturizationError` before pymatgen sees it.

    Examples
    --------
    >>> structure_from_dict({"@module": "os", "@class": "Structure", "lattice": {}})
    Traceback (most recent call last):
    ...
    deepchem_cgcnn.featurizer.FeaturizationError: structure dict: @module 'os' at the top level; only pymatgen structures (pymatgen.core, pymatgen.electronic_structure.core, numpy) are read
    """
    from pymatgen.core import Structure

    if data.get("@class", "Structure") not in ("Structure", "IStructure"):
        raise FeaturizationError(
            f"{name}: @class {data.get('@class')!r} is not a pymatgen Structure"
        )
    _check_modules(data, "the top level", name)
    try:
        structure: Structure = Structure.from_dict(data)
        return structure
    except Exception as error:
        raise FeaturizationError(
            f"{name}: not a valid pymatgen structure dict ({type(error).__name__}: {error})"
        ) from error


def _check_modules(node: Any, where: str, name: str) -> None:
    if isinstance(node, dict):
        module = node.get("@module")
        if module is not None and not (
            isinstance(module, str)
            and any(module == m or module.startswith(m + ".") for m in TRUSTED_MODULES)
        ):
            raise FeaturizationError(
                f"{name}: @module {module!r} at {where}; only pymatgen structures "
                f"({', '.join(TRUSTED_MODULES)}) are read"
            )
        for key, value in node.items():
            _check_modules(value, f"{where}/{key}" if where != "the top level" else key, name)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_modules(value, f"{where}[{index}]", name)


def _read(datapoint: Any) -> "Structure | Cell":
    """What :meth:`CGCNNFeaturizer.to_structure` reads, as a Cell where the fast CIF reader
    read it (no Structure built) and a Structure otherwise."""
    from pymatgen.core import Structure

    if isinstance(datapoint, Structure):
        return datapoint
    if isinstance(datapoint, dict):
        return structure_from_dict(datapoint)
    if isinstance(datapoint, os.PathLike) or (isinstance(datapoint, str) and "\n" not in datapoint):
        path = os.fspath(datapoint)
        if not os.path.isfile(path):
            raise FeaturizationError(f"{path!r} is neither a file nor a CIF string")
        return _read_structure_file(path)
    if isinstance(datapoint, str):
        return _read_cif(datapoint, "CIF string")
    raise FeaturizationError(f"cannot read a crystal structure from {type(datapoint).__name__}")


def _as_structure(found: "Structure | Cell") -> "Structure":
    return found.to_structure() if isinstance(found, Cell) else found


def read_structure_file(path: str) -> "Structure":
    """A Structure from a CIF, POSCAR/CONTCAR/vasp or pymatgen-JSON file, recognised by its
    suffix or, failing that, by its content; JSON is read without importing anything."""
    return _as_structure(_read_structure_file(path))


def _read_structure_file(path: str) -> "Structure | Cell":
    from pymatgen.core import Structure
    from pymatgen.io.vasp import Poscar

    name = os.path.basename(path)
    with open(path, "rb") as handle:
        data = handle.read()
    text = _cif_text(data, name)
    stripped = text.lstrip()
    if name.lower().endswith((".cif", ".mcif")) or (
        "_cell_length_a" in text and "_atom_site_" in text
    ):
        return _read_cif(text, name)
    if name.lower().endswith(".json") or stripped.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError as error:
            raise FeaturizationError(f"{name}: not valid JSON ({error})") from error
        if not isinstance(loaded, dict):
            raise FeaturizationError(f"{name}: JSON that is not a structure object")
        return structure_from_dict(loaded, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            structure: Structure = Structure.from_file(path)
            return structure
        except Exception:
            pass
        try:
            poscar: Structure = Poscar.from_str(text).structure
            return poscar
        except Exception as error:
            raise FeaturizationError(
                f"{name}: not a CIF, POSCAR or structure JSON ({type(error).__name__}: {error})"
            ) from error


def _cif_text(data: bytes, name: str) -> str:
    """The text of a CIF file, refusing empty, UTF-16 and binary files by name."""
    if not data.strip():
        raise FeaturizationError(f"{name}: empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FeaturizationError(f"{name}: UTF-16 text; save the CIF as UTF-8 or ASCII")
    if b"\0" in data[:4096]:
        raise FeaturizationError(f"{name}: a binary file, not CIF text")
    return data.decode("utf-8", errors="replace")


def read_cif(text: str, name: str = "CIF string") -> "Structure":
    """One pymatgen Structure from CIF text, refusing what would be silently wrong.

    pymatgen takes the first data block of a multi-block file and parses a truncated
    atom list as a smaller crystal; here a file with several structures, or whose
    atom sites do not add up to its declared ``_chemical_formula_sum`` (times
    ``_cell_formula_units_Z``, or a whole multiple of it where Z is absent), raises
    :class:`FeaturizationError` naming ``name``. The structure is otherwise exactly
    ``Structure.from_str(text, fmt="cif")``; the common case (one block, P1, fully occupied,
    plain elements) is read by gemmi when it is installed, identically and ~6x faster
    (:mod:`deepchem_cgcnn.fast_cif`).
    """
    return _as_structure(_read_cif(text, name))


def _read_cif(text: str, name: str) -> "Structure | Cell":
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifParser

    from deepchem_cgcnn.fast_cif import read_p1_cif

    fast = read_p1_cif(text)
    if fast is not None:
        _check_declared_formula(fast[1], name, fast[2])
        return fast[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parser = CifParser.from_str(text)
            blocks = parser.as_dict()
            structures = parser.parse_structures(primitive=False)
        except Exception as error:
            raise FeaturizationError(
                f"{name}: pymatgen cannot read this CIF ({type(error).__name__}: "
                f"{error}); the file may be truncated, not a CIF, or in a form pymatgen "
                f"does not parse (e.g. partial occupancies without _atom_site_label)"
            ) from error
    with_atoms = [
        b
        for b, data in blocks.items()
        if "_atom_site_fract_x" in data or "_atom_site_Cartn_x" in data
    ]
    if len(with_atoms) > 1:
        raise FeaturizationError(
            f"{name}: holds {len(with_atoms)} structures (data blocks "
            f"{', '.join('data_' + b for b in with_atoms[:5])}); give one structure per file"
        )
    structure = structures[0]
    block = blocks[with_atoms[0]] if with_atoms else next(iter(blocks.values()))
    _check_declared_formula(block, name, _site_counts(structure))
    result: Structure = Structure.from_sites(structure, properties=structure.properties)
    return result


def _site_counts(structure: "Structure") -> dict[str, float] | None:
    """Sites of each element of an ordered structure (None for a disordered one)."""
    if not structure.is_ordered:
        return None
    composition = structure.composition.element_composition
    return {e.symbol: composition[e] for e in composition.elements}


_PLAIN_FORMULA = re.compile(r"\s*(?:[A-Z][a-z]?(?:\d+(?:\.\d+)?)?\s*)+")
_FORMULA_TERM = re.compile(r"([A-Z][a-z]?)(\d+(?:\.\d+)?)?")


def _element_amounts(formula: str) -> dict[str, float] | None:
    """``Composition(formula).element_composition`` as {symbol: amount}; None where pymatgen
    cannot read it. A plain formula (``"Li1 Fe1 P1 O4"``: elements and unsigned numbers, each
    element once) is read here, the same numbers 20x faster; anything else by pymatgen."""
    from pymatgen.core import Composition, Element

    if _PLAIN_FORMULA.fullmatch(formula):
        amounts = {}
        for symbol, amount in _FORMULA_TERM.findall(formula):
            if symbol in amounts or symbol in ("D", "T") or not Element.is_valid_symbol(symbol):
                break
            amounts[symbol] = float(amount) if amount else 1.0
        else:
            if all(amounts.values()):
                return amounts
    try:
        parsed = Composition(formula).element_composition
    except Exception:
        return None
    return {e.symbol: parsed[e] for e in parsed.elements}


def _check_declared_formula(
    block: dict[str, Any], name: str, site_counts: dict[str, float] | dict[str, int] | None
) -> None:
    """Refuse a structure whose sites (``site_counts``: element symbol -> sites; None for a
    disordered structure, which is not checked) do not add up to the block's declared formula."""
    from pymatgen.core import Composition

    declared = block.get("_chemical_formula_sum")
    if not isinstance(declared, str) or site_counts is None:
        return
    formula = _element_amounts(declared.replace("'", ""))
    if formula is None:
        return
    if set(formula) != set(site_counts):
        ratios = None
    else:
        ratios = {round(site_counts[e] / formula[e], 4) for e in formula}
    z_text = str(block.get("_cell_formula_units_Z", "")).split("(")[0]
    try:
        z: float | None = float(z_text)
    except ValueError:
        z = None
    if ratios is not None and len(ratios) == 1:
        ratio = ratios.pop()
        if (
            ratio == 1
            or (z is not None and abs(ratio - z) < 1e-3)
            or (z is None and ratio >= 1 and abs(ratio - round(ratio)) < 1e-3)
        ):
            return
    raise FeaturizationError(
        f"{name}: its atom sites give {Composition(site_counts).formula.replace(' ', '')} "
        f"but it declares "
        f"_chemical_formula_sum {declared!r}"
        + (f" with Z = {z:g}" if z is not None else "")
        + "; the file is probably truncated or damaged"
    )


MAX_FRACTIONAL_COORDINATE = 1e6
"""Fractional coordinates beyond this are corrupt input, not positions to wrap."""


def wrapped_into_cell(cell: Cell) -> Cell:
    """The cell with every site moved into the unit cell, if any lies far outside it.

    Sites within two cells of the origin are left as they are (the neighbour search
    handles them, and the original code's tie order depends on them); farther ones,
    which make pymatgen's neighbour search enumerate an enormous image range, are
    wrapped; beyond :data:`MAX_FRACTIONAL_COORDINATE` the structure is refused.
    """
    largest = np.abs(cell.frac_coords).max(axis=1)
    if largest.max() <= 2.0:
        return cell
    if largest.max() > MAX_FRACTIONAL_COORDINATE:
        i = int(np.argmax(largest))
        raise FeaturizationError(
            f"site {i} ({cell.symbols[i]}) has fractional coordinates "
            f"{np.round(cell.frac_coords[i], 3).tolist()}: not a position in any sensible cell "
            f"(a corrupted file?)"
        )
    return cell.wrapped()


def plane_spacings(matrix: np.ndarray) -> np.ndarray:
    """Distances between the lattice planes normal to each reciprocal vector, in Å
    (``1 / |b_k|`` of the crystallographic reciprocal lattice ``inv(matrix).T``).

    Examples
    --------
    >>> plane_spacings(np.diag([3.0, 4.0, 5.0])).tolist()
    [3.0, 4.0, 5.0]
    """
    # pymatgen's reciprocal_lattice_crystallographic.abc, operation for operation, so that
    # ties between axes resolve as they always have (no Lattice objects: 4x faster)
    reciprocal = np.linalg.inv(matrix).T * 2 * np.pi / (2 * np.pi)
    spacings: np.ndarray = 1.0 / np.sqrt(np.sum(reciprocal**2, axis=1))
    return spacings


def check_bounds(
    cell: Cell,
    radius: float,
    min_distance: float,
    max_pairs: int,
    spacings: np.ndarray | None = None,
) -> None:
    """Refuse, before any neighbour search, a cell that would take unbounded time or memory.

    A lattice plane spacing below ``min_distance`` puts every atom on top of its own
    periodic image; otherwise the number of neighbour pairs within ``radius`` is about
    ``n_atoms * density * 4/3 pi radius^3``, refused above ``max_pairs``. ``spacings`` are
    :func:`plane_spacings` of the lattice when the caller has them.
    """
    matrix = cell.matrix
    spacing = plane_spacings(matrix) if spacings is None else spacings
    if spacing.min() < min_distance:
        raise FeaturizationError(
            f"overlapping atoms: the cell's lattice planes are {spacing.min():.3g} Å apart, "
            f"closer than min_distance={min_distance:g} Å, so each atom overlaps its own "
            f"periodic image (a wrong cell?)"
        )
    n_atoms = len(cell)
    # periodic images within the radius of each atom, including the cell's own extent
    reach = np.prod(2 * np.ceil(radius / spacing) + 1) * n_atoms
    density = n_atoms / abs(np.linalg.det(matrix))
    expected = n_atoms * min(density * 4 / 3 * np.pi * radius**3, reach)
    if expected > max_pairs:
        raise FeaturizationError(
            f"{n_atoms} atoms at {density:.3g} atoms/Å^3 would give about "
            f"{expected:.3g} neighbour pairs within {radius:g} Å, more than "
            f"max_neighbor_pairs={max_pairs:,}; refused to bound memory (split the cell, or "
            f"raise the limit)"
        )


def check_overlaps(
    structure: "Structure", min_distance: float, pairs: tuple[np.ndarray, ...] | None = None
) -> None:
    """Raise :class:`FeaturizationError` when two atoms are closer than ``min_distance`` Å.

    An atom and its own periodic image count too (a lattice vector shorter than
    ``min_distance``), and so do two sites on the very same spot. ``pairs`` is
    ``structure.get_neighbor_list(r)`` for some ``r >= min_distance`` when the caller has
    it already (pymatgen leaves out only each atom's zero-distance pair with itself).
    """
    if min_distance > 0:
        check_pair_distances(
            pairs or structure.get_neighbor_list(min_distance, exclude_self=False),
            min_distance,
            structure.species,
        )


def check_pair_distances(
    pairs: tuple[np.ndarray, ...], min_distance: float, species: Sequence[Any]
) -> None:
    """:func:`check_overlaps` on a neighbour list ``(centers, neighbors, images, distances)``;
    ``species`` name the sites in the message."""
    centers, neighbors, images, distances = pairs
    close = np.flatnonzero(distances < min_distance)
    real = close[(centers[close] != neighbors[close]) | np.any(images[close] != 0, axis=1)]
    if len(real):
        k = int(real[np.argmin(distances[real])])
        i, j = int(centers[k]), int(neighbors[k])
        what = (
            f"atom {i} ({species[i]}) and its own periodic image"
            if i == j
            else f"atoms {i} ({species[i]}) and {j} ({species[j]})"
        )
        raise FeaturizationError(
            f"overlapping atoms: {what} are {distances[k]:.4g} Å apart, closer than "
            f"min_distance={min_distance:g} Å (a duplicated site or a wrong cell)"
        )


def largest_vacuum_gap(
    frac_coords: np.ndarray, matrix: np.ndarray, spacings: np.ndarray | None = None
) -> dict[str, Any]:
    """The thickest atom-free slab parallel to a pair of lattice vectors, in Å.

    For each lattice vector ``a_k``, the atoms' fractional coordinates along it are
    sorted around the periodic cell; the widest empty interval, times the spacing of
    the lattice planes normal to it (``1 / |b_k|``, ``b`` the reciprocal lattice), is
    the thickness of empty space between atomic planes. A slab with 15 Å of vacuum
    shows ~15 Å; an isolated molecule shows its vacuum along all three; bulk crystals
    show the spacing of their atomic planes (below 4.2 Å for 99.9 % of the 31,297 MP
    crystals of the CGCNN data set).

    Returns ``{"max_gap": Å, "gap_axis": k}`` for the sites' fractional coordinates and the
    lattice ``matrix`` (rows are the vectors); ``spacings`` are :func:`plane_spacings` of
    the lattice when the caller has them.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> slab = Structure(Lattice.tetragonal(3.0, 20.0), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.1]])
    >>> largest_vacuum_gap(slab.frac_coords, slab.lattice.matrix)
    {'max_gap': 18.0, 'gap_axis': 2}
    """
    fractions = np.mod(frac_coords, 1.0)
    if spacings is None:
        spacings = plane_spacings(matrix)
    values = np.sort(fractions, axis=0)
    widths = np.diff(np.vstack([values, values[:1] + 1.0]), axis=0)
    gaps = widths.max(axis=0) * spacings
    axis = int(np.argmax(gaps))
    return {"max_gap": round(float(gaps[axis]), 3), "gap_axis": axis}


def featurizer_params(featurizer: CGCNNFeaturizer) -> dict[str, Any]:
    """The settings that determine a featurizer's output graphs (what a model was trained on)."""
    return {
        "radius": featurizer.radius,
        "max_neighbors": featurizer.max_neighbors,
        "step": featurizer.step,
        "selection": featurizer.selection,
        "padding": featurizer.padding,
        "tie_tolerance": featurizer.tie_tolerance,
    }
