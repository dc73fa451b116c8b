"""Is a crystal inside a model's training domain? Flags that travel with every prediction.

A CGCNN model answers for any graph it is given; these checks say when the answer
deserves less trust than the model's test error suggests. Each flag is a sentence:

* **isolated atoms** -- atoms with no neighbour within the cut-off radius (an atom in
  vacuum; the original code pads them with fake neighbours);
* **few neighbours** -- atoms with fewer than ``max_neighbors`` (12) neighbours within
  the radius; every atom of the 31,297 MP crystals of the CGCNN data set has at least
  14 within 8 Å;
* **vacuum gap** -- an empty slab thicker than ``max_vacuum_gap`` (7) Å between atomic
  planes (a surface slab, an isolated layer or a molecule in a box;
  :func:`~deepchem_cgcnn.featurizer.largest_vacuum_gap`); 99.9 % of those MP crystals
  stay below 4.2 Å and 18 of 31,297 exceed 7 Å (MP's few isolated layers);
* **compressed contact** -- two atoms closer than 0.85 of the shortest contact of their
  element pair in any MP crystal of the CGCNN data set (a squeezed cell or a wrong length
  scale; :mod:`~deepchem_cgcnn.contacts`);
* **rare element** -- an element present in fewer than ``min_count`` training crystals;
* **rare elemental crystal** -- a single-element crystal whose element appears as an
  elemental crystal fewer than ``min_count`` times in training (the MP data holds 147
  elemental crystals of 68 elements: the formation energy of a pure element is learned
  from a handful of examples, often high-energy polymorphs).

The training counts come from the model card (``training_counts``); models without them
(the original checkpoints) are checked for geometry only.

Examples
--------
>>> from pymatgen.core import Lattice, Structure
>>> from deepchem_cgcnn import CGCNNFeaturizer
>>> atom_in_a_box = Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])
>>> graph = CGCNNFeaturizer().featurize([atom_in_a_box])[0]
>>> for flag in domain_flags(graph):
...     print(flag)
1 of 1 atoms have no neighbour within 8 Å
empty gap of 20.0 Å between atomic planes along lattice vector a (slab, layer or molecule in vacuum; flagged above 7 Å)
"""

import functools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepchem_cgcnn.contacts import CONTACT_MARGIN, contact_flags

MIN_COUNT = 10
"""An element (or elemental crystal) seen in fewer training crystals than this is flagged."""

MAX_VACUUM_GAP = 7.0
"""Å of empty space between atomic planes beyond which a cell is a slab or molecule-like."""


class DomainWarning(UserWarning):
    """Predictions were made for crystals outside the model's training domain."""


@dataclass
class DomainRecord:
    """The domain check of one crystal: its id, formula and the flags raised (none: in domain)."""

    id: str
    formula: str = ""
    flags: list[str] = field(default_factory=list)

    @property
    def in_domain(self) -> bool:
        return not self.flags


@functools.cache
def _symbol(z: int) -> str:
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(int(z)).symbol


def training_counts(graphs: Iterable[Any]) -> dict[str, dict[str, int]]:
    """Per element: training crystals holding it, and elemental crystals of it.

    Examples
    --------
    >>> import numpy as np
    >>> from deepchem_cgcnn.graph import CrystalGraph
    >>> def g(numbers):
    ...     n = len(numbers)
    ...     return CrystalGraph(np.array(numbers), np.zeros((n, 1)), np.ones((n, 1)), 8.0, 0.2)
    >>> training_counts([g([11, 17]), g([6, 6]), g([6, 8])])
    {'elements': {'C': 2, 'Cl': 1, 'Na': 1, 'O': 1}, 'elemental_crystals': {'C': 1}}
    """
    elements: dict[int, int] = {}
    elemental: dict[int, int] = {}
    for graph in graphs:
        if not hasattr(graph, "atomic_numbers"):
            continue
        present = np.unique(graph.atomic_numbers)
        for z in present.tolist():
            elements[z] = elements.get(z, 0) + 1
        if len(present) == 1:
            z = int(present[0])
            elemental[z] = elemental.get(z, 0) + 1

    def by_symbol(counts: dict[int, int]) -> dict[str, int]:
        return dict(sorted((_symbol(z), n) for z, n in counts.items()))

    return {"elements": by_symbol(elements), "elemental_crystals": by_symbol(elemental)}


def domain_flags(
    graph: Any,
    counts: Mapping[str, Mapping[str, int]] | None = None,
    min_count: int = MIN_COUNT,
    max_vacuum_gap: float = MAX_VACUUM_GAP,
    contact_margin: float = CONTACT_MARGIN,
) -> list[str]:
    """The reasons to distrust a model's answer for one crystal graph (empty: none).

    Parameters
    ----------
    graph: CrystalGraph
        Made by :class:`~deepchem_cgcnn.CGCNNFeaturizer` (which records the geometry facts).
    counts: mapping, optional
        The model's :func:`training_counts`; without it only the geometry is checked.
    min_count: int
        Elements (and elemental crystals) seen in fewer training crystals are flagged.
    max_vacuum_gap: float
        Å of empty space between atomic planes beyond which a cell is flagged.
    contact_margin: float
        Contacts shorter than this fraction of their element pair's shortest MP contact are
        flagged (:func:`~deepchem_cgcnn.contacts.contact_flags`).
    """
    if not hasattr(graph, "atomic_numbers"):
        return ["no crystal graph (its featurization failed)"]
    flags = []
    geometry = getattr(graph, "geometry", None) or {}
    n_atoms = len(graph.atomic_numbers)
    radius = getattr(graph, "radius", 8.0)
    if geometry.get("n_isolated"):
        flags.append(
            f"{geometry['n_isolated']} of {n_atoms} atoms have no neighbour within {radius:g} Å"
        )
    elif geometry.get("n_underfull"):
        slots = getattr(graph, "settings", {}).get("max_neighbors", 12)
        flags.append(
            f"{geometry['n_underfull']} of {n_atoms} atoms have fewer than {slots} "
            f"neighbours within {radius:g} Å"
        )
    gap = geometry.get("max_gap")
    if gap is not None and gap > max_vacuum_gap:
        flags.append(
            f"empty gap of {gap:.1f} Å between atomic planes along lattice vector "
            f"{'abc'[geometry.get('gap_axis', 0)]} (slab, layer or molecule in vacuum; "
            f"flagged above {max_vacuum_gap:g} Å)"
        )
    flags += contact_flags(graph, contact_margin)
    if counts:
        present = sorted({_symbol(z) for z in np.unique(graph.atomic_numbers).tolist()})
        seen = counts.get("elements", {})
        for symbol in present:
            if seen.get(symbol, 0) < min_count:
                flags.append(
                    f"element {symbol} is in {seen.get(symbol, 0)} training crystals "
                    f"(fewer than {min_count})"
                )
        if len(present) == 1:
            symbol = present[0]
            n = counts.get("elemental_crystals", {}).get(symbol, 0)
            if n < min_count:
                flags.append(
                    f"elemental {symbol}: {n} elemental {symbol} crystals in training "
                    f"(fewer than {min_count}); pure-element energies are poorly "
                    f"sampled"
                )
    return flags


def formula_of(graph: Any) -> str:
    """Reduced formula of a crystal graph's atoms."""
    from pymatgen.core import Composition

    if not hasattr(graph, "atomic_numbers"):
        return ""
    numbers, amounts = np.unique(graph.atomic_numbers, return_counts=True)
    return Composition({_symbol(z): int(n) for z, n in zip(numbers, amounts)}).reduced_formula


def shared_counts(
    counts: Sequence[Mapping[str, Mapping[str, int]] | None],
) -> dict[str, dict[str, int]] | None:
    """Training counts every one of several models reaches: per kind and element, the
    smallest count (an element one model never saw is absent). A model without counts (an
    original checkpoint) cannot widen them, so the others' are used; ``None`` if none has any.

    Examples
    --------
    >>> shared_counts([
    ...     {"elements": {"C": 5, "O": 2}, "elemental_crystals": {"C": 1}},
    ...     {"elements": {"C": 3, "O": 4, "Na": 9}, "elemental_crystals": {"C": 2}},
    ... ])
    {'elements': {'C': 3, 'O': 2}, 'elemental_crystals': {'C': 1}}
    >>> shared_counts([None, {"elements": {"C": 3}}]), shared_counts([None, None])
    ({'elements': {'C': 3}}, None)
    """
    present = [c for c in counts if c is not None]
    if not present:
        return None
    shared: dict[str, dict[str, int]] = {}
    for kind in (k for k in present[0] if all(k in c for c in present)):
        tables = [c[kind] for c in present]
        common = set.intersection(*(set(t) for t in tables))
        shared[kind] = {e: min(t[e] for t in tables) for e in sorted(common)}
    return shared


def check_graphs(
    graphs: Iterable[Any],
    ids: Sequence[Any] | np.ndarray,
    counts: Mapping[str, Mapping[str, int]] | None = None,
    min_count: int = MIN_COUNT,
    max_vacuum_gap: float = MAX_VACUUM_GAP,
    with_formula: bool = True,
) -> list[DomainRecord]:
    """One :class:`DomainRecord` per graph."""
    return [
        DomainRecord(
            str(i),
            formula_of(g) if with_formula else "",
            domain_flags(g, counts, min_count, max_vacuum_gap),
        )
        for g, i in zip(graphs, ids)
    ]


def warn_outside_domain(records: Sequence[DomainRecord], stacklevel: int = 3) -> None:
    """Emit one :class:`DomainWarning` naming the crystals with flags (nothing when none)."""
    flagged = [r for r in records if not r.in_domain]
    if not flagged:
        return
    shown = "; ".join(f"{r.id}: {', '.join(r.flags)}" for r in flagged[:5])
    more = f"; and {len(flagged) - 5} more" if len(flagged) > 5 else ""
    warnings.warn(
        f"{len(flagged)} of {len(records)} crystals are outside the model's training "
        f"domain, their predictions are less reliable than its test error says "
        f"({shown}{more}); see model.check_domain()",
        DomainWarning,
        stacklevel=stacklevel,
    )
