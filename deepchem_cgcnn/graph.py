"""The compact crystal-graph record and how many of them batch into one graph."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.elements import element_embedding_table

GraphData: Any = import_deepchem().feat.GraphData


GAUSSIAN_CUTOFF = 40.0
"""Gaussian terms below ``exp(-40)`` (4e-18) are set to zero. For any distance up to the radius
(and the original code's padding edges at radius + 1 Å) a dropped term is at least ten orders of
magnitude below the edge's largest term, far under float32's resolution of the sums it enters;
left in, the far terms underflow to subnormal floats (from ``exp(-87)`` on), which make every
matrix product over the edges several times slower on x86 CPUs."""


def gaussian_centers(radius: float, step: float) -> np.ndarray:
    """Centres of the Gaussian distance expansion, as the original code builds them.

    ``np.arange(0, radius + step, step)``: 41 values for ``radius=8, step=0.2``.

    Examples
    --------
    >>> len(gaussian_centers(8.0, 0.2))
    41
    """
    return np.arange(0.0, radius + step, step)


def gaussian_expand(distances: np.ndarray, radius: float, step: float) -> np.ndarray:
    """``exp(-(d - mu)^2 / step^2)`` for every centre ``mu``: shape ``distances.shape + (K,)``;
    terms below ``exp(-GAUSSIAN_CUTOFF)`` are zero."""
    centers = gaussian_centers(radius, step)
    d = np.asarray(distances, dtype=np.float64)[..., None]
    exponent = ((d - centers) / step) ** 2
    expanded: np.ndarray = np.where(exponent > GAUSSIAN_CUTOFF, 0.0, np.exp(-exponent))
    return expanded


class CrystalGraph(GraphData):
    """A crystal graph stored compactly: atomic numbers, neighbour indices, distances.

    The record keeps only what the model cannot recompute: each atom's atomic
    number, and for each atom the indices and distances of its selected
    neighbours in a padded ``(n_atoms, n_slots)`` layout. The 92-dim atom
    features and the Gaussian edge features are expanded on demand (here, for
    DeepChem's ``GraphData`` API, and inside the model during training), which
    keeps a stored atom at ~121 bytes instead of ~2.3 kB.

    Padded slots come in two kinds. With the original code's padding
    (``padding='cgcnn'``) they point at atom 0 at distance ``radius + 1`` and are
    real edges that the model sees. With ``padding='mask'`` their distance is
    ``inf`` and they are dropped from the graph.

    As a ``GraphData``, ``edge_index`` follows DeepChem's ``CGCNNFeaturizer``:
    row 0 holds the centre atom ``i``, row 1 its neighbour ``j``, one column per
    kept (unmasked) slot in row-major order.

    Parameters
    ----------
    atomic_numbers: np.ndarray
        ``(n_atoms,)`` atomic numbers.
    neighbor_index: np.ndarray
        ``(n_atoms, n_slots)`` index of each neighbour (uint16 or int32).
    neighbor_distance: np.ndarray
        ``(n_atoms, n_slots)`` distances in Å; ``inf`` marks a masked slot.
    radius: float
        Cut-off radius the graph was built with (Å).
    step: float
        Width and spacing of the Gaussian distance expansion (Å).
    settings: dict, optional
        The featurizer settings that made the graph
        (:func:`~deepchem_cgcnn.featurizer.featurizer_params`); a model refuses graphs
        made with settings other than its own. Default: only ``radius`` and ``step``.
    geometry: dict, optional
        Facts about the structure that decide whether a model's answer can be trusted
        (atoms without neighbours, the largest vacuum gap; see
        :mod:`deepchem_cgcnn.domain`).

    Examples
    --------
    >>> import numpy as np
    >>> g = CrystalGraph(np.array([11, 17]), np.array([[1], [0]]),
    ...                  np.array([[2.8], [2.8]]), radius=8.0, step=0.2)
    >>> g
    CrystalGraph(node_features=[2, 92], edge_index=[2, 2], edge_features=[2, 41])
    """

    node_pos_features = None
    settings: dict[str, Any] = {}
    geometry: dict[str, Any] = {}

    def __init__(
        self,
        atomic_numbers: np.ndarray,
        neighbor_index: np.ndarray,
        neighbor_distance: np.ndarray,
        radius: float,
        step: float,
        settings: dict[str, Any] | None = None,
        geometry: dict[str, Any] | None = None,
    ):
        n_atoms = len(atomic_numbers)
        index_dtype = np.uint16 if n_atoms <= np.iinfo(np.uint16).max else np.int32
        self.atomic_numbers = np.asarray(atomic_numbers, dtype=np.uint8)
        self.neighbor_index = np.asarray(neighbor_index, dtype=index_dtype)
        self.neighbor_distance = np.asarray(neighbor_distance, dtype=np.float64)
        self.radius = float(radius)
        self.step = float(step)
        self.settings = dict(settings) if settings else {"radius": self.radius, "step": self.step}
        self.geometry = dict(geometry or {})
        self.kwargs: dict[str, Any] = {}
        if (
            self.neighbor_index.shape != self.neighbor_distance.shape
            or self.neighbor_index.shape[0] != n_atoms
        ):
            raise ValueError(
                f"neighbor_index {self.neighbor_index.shape} and neighbor_distance "
                f"{self.neighbor_distance.shape} must both be (n_atoms={n_atoms}, n_slots)"
            )

    @property
    def mask(self) -> np.ndarray:
        """``(n_atoms, n_slots)`` True where a slot is an edge the model uses."""
        return np.isfinite(self.neighbor_distance)

    @property
    def num_nodes(self) -> int:
        return len(self.atomic_numbers)

    @property
    def num_node_features(self) -> int:
        return int(element_embedding_table().shape[1])

    @property
    def num_edges(self) -> int:
        return int(self.mask.sum())

    @property
    def num_edge_features(self) -> int:
        return len(gaussian_centers(self.radius, self.step))

    @property
    def node_features(self) -> np.ndarray:
        """``(n_atoms, 92)`` CGCNN element embedding of each atom."""
        return element_embedding_table()[self.atomic_numbers.astype(np.int64)]

    @property
    def edge_index(self) -> np.ndarray:
        """``(2, n_edges)`` int64: centre atoms in row 0, neighbours in row 1."""
        centers, slots = np.nonzero(self.mask)
        return np.stack([centers, self.neighbor_index[centers, slots].astype(np.int64)])

    @property
    def edge_distance(self) -> np.ndarray:
        """``(n_edges,)`` distances, in the column order of :attr:`edge_index`."""
        distances: np.ndarray = self.neighbor_distance[self.mask]
        return distances

    @property
    def edge_features(self) -> np.ndarray:
        """``(n_edges, K)`` Gaussian expansion of the distances, float32 as the original."""
        return gaussian_expand(self.edge_distance, self.radius, self.step).astype(np.float32)

    def to_graph_data(self) -> Any:
        """The same graph as a plain, expanded DeepChem ``GraphData`` (what DeepChem's own
        ``CGCNNFeaturizer`` returns), for code that sets its fields."""
        return GraphData(self.node_features, self.edge_index, self.edge_features)

    def numpy_to_torch(self, device: str = "cpu") -> Any:
        """``GraphData.numpy_to_torch``: a ``GraphData`` whose arrays are torch tensors.

        The compact record computes its features on demand (read-only properties), so the
        conversion goes through :meth:`to_graph_data`.

        Examples
        --------
        >>> import numpy as np
        >>> g = CrystalGraph(np.array([11, 17]), np.array([[1], [0]]),
        ...                  np.array([[2.8], [2.8]]), radius=8.0, step=0.2)
        >>> t = g.numpy_to_torch()
        >>> type(t.node_features).__name__, tuple(t.edge_features.shape)
        ('Tensor', (2, 41))
        """
        return self.to_graph_data().numpy_to_torch(device)

    @property
    def nbytes(self) -> int:
        """Bytes of array data this record stores."""
        return (
            self.atomic_numbers.nbytes + self.neighbor_index.nbytes + self.neighbor_distance.nbytes
        )


@dataclass
class CrystalGraphBatch:
    """Many crystal graphs as one disconnected graph, as flat edge lists.

    Attributes
    ----------
    atomic_numbers: np.ndarray
        ``(N,)`` int64, all atoms of the batch.
    edge_center, edge_neighbor: np.ndarray
        ``(E,)`` int64 batch-level atom indices of each edge's centre and neighbour;
        edges are grouped by centre in increasing order.
    edge_distance: np.ndarray
        ``(E,)`` float32 distances.
    crystal_index: np.ndarray
        ``(N,)`` int64, which crystal each atom belongs to.
    n_crystals: int
        Number of crystals.
    uniform_degree: int
        ``M`` when every atom has exactly ``M`` edges (sums over neighbours can then
        be a reshape), else 0.
    """

    atomic_numbers: np.ndarray
    edge_center: np.ndarray
    edge_neighbor: np.ndarray
    edge_distance: np.ndarray
    crystal_index: np.ndarray
    n_crystals: int
    uniform_degree: int

    def tensors(self, device: Any = "cpu") -> dict[str, Any]:
        """The model's input: the arrays as tensors on ``device``, plus the two counts."""
        import torch

        def move(array: np.ndarray) -> Any:
            return torch.from_numpy(array).to(device)

        return {
            "atomic_numbers": move(self.atomic_numbers),
            "edge_center": move(self.edge_center),
            "edge_neighbor": move(self.edge_neighbor),
            "edge_distance": move(self.edge_distance),
            "crystal_index": move(self.crystal_index),
            "n_crystals": self.n_crystals,
            "uniform_degree": self.uniform_degree,
        }


def batch_graphs(graphs: Sequence[CrystalGraph]) -> CrystalGraphBatch:
    """Join crystal graphs into one :class:`CrystalGraphBatch` with vectorized index arithmetic.

    Examples
    --------
    >>> import numpy as np
    >>> g = CrystalGraph(np.array([11, 17]), np.array([[1], [0]]),
    ...                  np.array([[2.8], [2.8]]), radius=8.0, step=0.2)
    >>> b = batch_graphs([g, g])
    >>> b.edge_neighbor.tolist(), b.crystal_index.tolist()
    ([1, 0, 3, 2], [0, 0, 1, 1])
    """
    if len(graphs) == 0:
        raise ValueError("cannot batch an empty list of crystal graphs")
    n_atoms = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    atom_offset = np.cumsum(n_atoms) - n_atoms
    centers, neighbors, distances = [], [], []
    degree: int | None = graphs[0].neighbor_index.shape[1]
    for graph, offset in zip(graphs, atom_offset):
        mask = graph.mask
        center, slot = np.nonzero(mask)
        centers.append(center + offset)
        neighbors.append(graph.neighbor_index[mask].astype(np.int64) + offset)
        distances.append(graph.neighbor_distance[mask])
        if degree and (mask.shape[1] != degree or not mask.all()):
            degree = 0
    return CrystalGraphBatch(
        atomic_numbers=np.concatenate([g.atomic_numbers for g in graphs]).astype(np.int64),
        edge_center=np.concatenate(centers),
        edge_neighbor=np.concatenate(neighbors),
        edge_distance=np.concatenate(distances).astype(np.float32),
        crystal_index=np.repeat(np.arange(len(graphs), dtype=np.int64), n_atoms),
        n_crystals=len(graphs),
        uniform_degree=int(degree or 0),
    )
