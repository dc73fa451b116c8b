"""Interatomic contacts shorter than real crystals have: a compressed cell or a wrong scale.

A model answers for a crystal squeezed to 75 % of its size as readily as for the real one;
its error there is unknown. The reference is the shortest contact of every element pair
among the 31,297 Materials Project crystals of the CGCNN data set
(``shortest_contacts.json`` beside this module, built by ``dev/shortest_contacts.py`` from
their 12-nearest-neighbour graphs): a graph edge shorter than :data:`CONTACT_MARGIN` times
its pair's shortest MP contact is flagged. A pair MP never has in contact falls back to the
sum of covalent radii (Cordero et al., *Dalton Trans.* 2008, as pymatgen ships them): below
:data:`COVALENT_MARGIN` of it (no MP crystal's contact is shorter than 0.607 of it).

Held out (``benchmarks/domain_survey.py --contacts``: the table built from the 18,778
training crystals, the 6,260 test crystals checked), 0.8 % of the test crystals are flagged
at the 0.85 margin, and ``mp-formation-energy`` errs 3.4 times as much on them as on the rest.

Examples
--------
>>> from pymatgen.core import Lattice, Structure
>>> from deepchem_cgcnn import CGCNNFeaturizer
>>> def rock_salt(a):
...     return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
>>> contact_flags(CGCNNFeaturizer().featurize([rock_salt(5.64)])[0])
[]
>>> print(contact_flags(CGCNNFeaturizer().featurize([rock_salt(4.0)])[0])[0])
Na–Cl contact of 2.00 Å, 79 % of the shortest Na–Cl contact in the MP crystals (2.53 Å; flagged below 85 %): a compressed cell or a wrong scale?
"""

import functools
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CONTACT_MARGIN = 0.85
"""A contact shorter than this fraction of its element pair's shortest MP contact is flagged."""

COVALENT_MARGIN = 0.6
"""For a pair without an MP contact: flagged below this fraction of its covalent radii's sum."""

TABLE_PATH = Path(__file__).with_name("shortest_contacts.json")
_PAIR_BASE = 128


def _pair_keys(graph: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each edge's unordered element pair (as ``128 * min(Z) + max(Z)``) and its length."""
    numbers = np.asarray(graph.atomic_numbers, dtype=np.int64)
    distances = np.asarray(graph.neighbor_distance)
    kept = np.isfinite(distances)
    center = np.broadcast_to(numbers[:, None], distances.shape)[kept]
    neighbor = numbers[np.asarray(graph.neighbor_index, dtype=np.int64)][kept]
    low, high = np.minimum(center, neighbor), np.maximum(center, neighbor)
    return low * _PAIR_BASE + high, distances[kept]


def _symbol(z: int) -> str:
    from deepchem_cgcnn.domain import _symbol as symbol

    return symbol(z)


def _pair_name(key: int) -> str:
    return f"{_symbol(key // _PAIR_BASE)}–{_symbol(key % _PAIR_BASE)}"


def shortest_contacts(graphs: Iterable[Any]) -> dict[str, float]:
    """The shortest edge of each element pair over ``graphs``, as ``{"Cl-Na": Å}`` (symbols
    in alphabetical order, rounded down to 0.1 mÅ).

    >>> import numpy as np
    >>> from deepchem_cgcnn.graph import CrystalGraph
    >>> g = CrystalGraph(np.array([11, 17]), np.array([[1], [0]]), np.array([[2.82], [2.82]]), 8.0, 0.2)
    >>> shortest_contacts([g])
    {'Cl-Na': 2.82}
    """
    table = np.full(_PAIR_BASE * _PAIR_BASE, np.inf)
    for graph in graphs:
        keys, distances = _pair_keys(graph)
        np.minimum.at(table, keys, distances)
    found = {}
    for key in np.flatnonzero(np.isfinite(table)).tolist():
        pair = "-".join(sorted((_symbol(key // _PAIR_BASE), _symbol(key % _PAIR_BASE))))
        found[pair] = math.floor(float(table[key]) * 1e4) / 1e4
    return dict(sorted(found.items()))


class ContactReference:
    """Shortest contacts per element pair (``{"Cl-Na": Å}``), ready to check graphs against.

    Examples
    --------
    >>> import numpy as np
    >>> from deepchem_cgcnn.graph import CrystalGraph
    >>> reference = ContactReference({"Cl-Na": 2.5})
    >>> g = CrystalGraph(np.array([11, 17]), np.array([[1], [0]]), np.array([[2.0], [2.0]]), 8.0, 0.2)
    >>> reference.shortest_ratio(g)
    0.8
    """

    def __init__(self, pairs: Mapping[str, float]):
        from pymatgen.core.periodic_table import Element

        self.table = np.full(_PAIR_BASE * _PAIR_BASE, np.inf)
        for pair, distance in pairs.items():
            a, b = sorted(Element(s).Z for s in pair.split("-"))
            self.table[a * _PAIR_BASE + b] = distance

    def _lookup(self, graph: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The graph's edge pair keys and lengths, each pair's reference and whether it has one."""
        keys, distances = _pair_keys(graph)
        reference = self.table[keys]
        return keys, distances, reference, np.isfinite(reference)

    def shortest_ratio(self, graph: Any) -> float:
        """The smallest edge length over its pair's shortest contact (inf: no pair known)."""
        _, distances, reference, seen = self._lookup(graph)
        return float(np.min(distances[seen] / reference[seen])) if seen.any() else math.inf

    def flags(
        self, graph: Any, margin: float = CONTACT_MARGIN, covalent_margin: float = COVALENT_MARGIN
    ) -> list[str]:
        """The shortest offending contact of ``graph``, as a one-sentence flag (or none)."""
        keys, distances, reference, seen = self._lookup(graph)
        if not len(keys):
            return []
        ratio = np.full(len(keys), np.inf)
        ratio[seen] = distances[seen] / reference[seen] / margin
        if not seen.all():
            radii = _covalent_radii()
            bond = radii[keys[~seen] // _PAIR_BASE] + radii[keys[~seen] % _PAIR_BASE]
            with np.errstate(invalid="ignore"):
                ratio[~seen] = np.where(
                    np.isnan(bond), np.inf, distances[~seen] / bond / covalent_margin
                )
        worst = int(np.argmin(ratio))
        if ratio[worst] >= 1.0:
            return []
        pair, distance = _pair_name(int(keys[worst])), float(distances[worst])
        if seen[worst]:
            shortest = float(reference[worst])
            return [
                f"{pair} contact of {distance:.2f} Å, {distance / shortest:.0%} of the shortest "
                f"{pair} contact in the MP crystals ({shortest:.2f} Å; flagged below "
                f"{margin:.0%}): a compressed cell or a wrong scale?".replace("%", " %")
            ]
        bond = distance / (ratio[worst] * covalent_margin)
        return [
            f"{pair} contact of {distance:.2f} Å, {distance / bond:.0%} of their covalent "
            f"radii's sum ({bond:.2f} Å; no MP crystal has this pair in contact; flagged "
            f"below {covalent_margin:.0%}): overlapping atoms or a wrong scale?".replace("%", " %")
        ]


@functools.cache
def mp_contacts() -> ContactReference:
    """The packaged reference: shortest contacts in the MP crystals of the CGCNN data set."""
    return ContactReference(json.loads(TABLE_PATH.read_text())["pairs"])


@functools.cache
def _covalent_radii() -> np.ndarray:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    radii = np.full(_PAIR_BASE, np.nan)
    for z in range(1, 119):
        radii[z] = CovalentRadius.radius.get(Element.from_Z(z).symbol, np.nan)
    return radii


def contact_flags(
    graph: Any, margin: float = CONTACT_MARGIN, covalent_margin: float = COVALENT_MARGIN
) -> list[str]:
    """The shortest offending contact of a crystal graph against the MP crystals' contacts
    (:func:`mp_contacts`), as a one-sentence flag (or none).

    Parameters
    ----------
    graph: CrystalGraph
        Any graph of :class:`~deepchem_cgcnn.CGCNNFeaturizer`.
    margin: float
        Flag an edge shorter than this fraction of its pair's shortest MP contact.
    covalent_margin: float
        For pairs without an MP contact: flag below this fraction of the covalent radii's sum.
    """
    return mp_contacts().flags(graph, margin, covalent_margin)
