"""A dataset's crystal graphs held on the model's device, so each batch is an index gather.

DeepChem's loop collates every batch on the host (NumPy concatenation of the batch's
graphs) and copies it to the device; on a GPU that, not arithmetic, is most of an epoch.
:class:`ResidentGraphs` concatenates a whole dataset once into a few tensors on the device
(atomic numbers, edge lists, distances, labels, weights, per-crystal atom and edge ranges);
a batch is then a handful of ``index_select``s there. :class:`~deepchem_cgcnn.CGCNNModel`
uses it from its ``default_generator`` (so ``fit``, ``predict`` and ``evaluate`` keep
DeepChem's loop, callbacks and checkpoints) whenever the dataset fits; the batches are the
ones DeepChem's own loop would make, in the same order, from the same random permutation.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deepchem_cgcnn.graph import CrystalGraph, batch_graphs

MAX_DEVICE_FRACTION = 0.5
"""A dataset is made resident on a GPU only if it needs at most this share of its free memory."""


def _ranges(starts: torch.Tensor, counts: torch.Tensor, total: int) -> torch.Tensor:
    """The concatenation of ``arange(s, s + c)`` for each start ``s`` and count ``c``."""
    offsets = torch.cumsum(counts, 0) - counts
    base = torch.repeat_interleave(starts - offsets, counts, output_size=total)
    return base + torch.arange(total, device=starts.device)


class ResidentGraphs:
    """The crystal graphs, labels and weights of a dataset as concatenated tensors on a device.

    Parameters
    ----------
    graphs: sequence of CrystalGraph
        The dataset's X.
    y, w: np.ndarray, optional
        Labels and weights; stored as DeepChem's ``_prepare_batch`` would convert them
        (float64 becomes float32).
    device: torch.device
        Where the tensors live.

    Examples
    --------
    >>> import numpy as np
    >>> from deepchem_cgcnn import CGCNNFeaturizer
    >>> from deepchem_cgcnn.examples import example_structures
    >>> graphs = CGCNNFeaturizer().featurize(list(example_structures().values())[:3])
    >>> resident = ResidentGraphs(graphs, None, None, torch.device("cpu"))
    >>> batch = resident.batch(np.array([2, 0]))
    >>> expected = batch_graphs([graphs[2], graphs[0]])
    >>> bool((batch["edge_neighbor"].numpy() == expected.edge_neighbor).all())
    True
    """

    def __init__(
        self,
        graphs: Sequence[CrystalGraph],
        y: np.ndarray | None,
        w: np.ndarray | None,
        device: torch.device,
    ) -> None:
        joined = batch_graphs(graphs)
        self.device = device
        self.n_atoms = np.array([g.num_nodes for g in graphs], dtype=np.int64)
        self.n_edges = np.bincount(
            joined.crystal_index[joined.edge_center], minlength=len(graphs)
        ).astype(np.int64)
        self.uniform_degree = joined.uniform_degree

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), device=device)

        self.atomic_numbers = put(joined.atomic_numbers)
        self.edge_center = put(joined.edge_center)
        self.edge_neighbor = put(joined.edge_neighbor)
        self.edge_distance = put(joined.edge_distance)
        self.atom_start = put(np.cumsum(self.n_atoms) - self.n_atoms)
        self.edge_start = put(np.cumsum(self.n_edges) - self.n_edges)
        self.atom_count = put(self.n_atoms)
        self.edge_count = put(self.n_edges)
        self.y = None if y is None else put(_as_deepchem_label(y))
        self.w = None if w is None else put(_as_deepchem_label(w))

    def __len__(self) -> int:
        return len(self.n_atoms)

    @staticmethod
    def nbytes_needed(graphs: Sequence[CrystalGraph]) -> int:
        """Device bytes a dataset of these graphs needs (edges dominate: 2 int64 + 1 float32)."""
        n_edges = sum(int(g.mask.sum()) for g in graphs)
        n_atoms = sum(g.num_nodes for g in graphs)
        return 20 * n_edges + 16 * n_atoms + 64 * len(graphs)

    def batch(
        self, index: np.ndarray, index_on_device: torch.Tensor | None = None, pad: bool = False
    ) -> dict[str, Any]:
        """The batch of crystals ``index`` (in that order), as :func:`batch_graphs` would make
        it, as the model's input tensors.

        With ``pad``, atoms and edges are padded to :func:`padded_size` (a few sizes per
        dataset, so compiled kernels and CUDA graphs see few shapes): padding atoms belong to
        an extra crystal ``n_crystals``, padding edges join the first padding atom to itself,
        and ``atom_valid``/``edge_valid`` mark the real rows for the batch norms."""
        index = np.asarray(index, dtype=np.int64)
        idx = (
            index_on_device
            if index_on_device is not None
            else torch.as_tensor(index, device=self.device)
        )
        atom_count, edge_count = self.atom_count[idx], self.edge_count[idx]
        n_atoms, n_edges = int(self.n_atoms[index].sum()), int(self.n_edges[index].sum())
        atoms = _ranges(self.atom_start[idx], atom_count, n_atoms)
        edges = _ranges(self.edge_start[idx], edge_count, n_edges)
        new_start = torch.cumsum(atom_count, 0) - atom_count
        shift = torch.repeat_interleave(
            new_start - self.atom_start[idx], edge_count, output_size=n_edges
        )
        crystal = torch.arange(len(index), device=self.device)
        batch = {
            "atomic_numbers": self.atomic_numbers[atoms],
            "edge_center": self.edge_center[edges] + shift,
            "edge_neighbor": self.edge_neighbor[edges] + shift,
            "edge_distance": self.edge_distance[edges],
            "crystal_index": torch.repeat_interleave(crystal, atom_count, output_size=n_atoms),
            "n_crystals": len(index),
            "uniform_degree": self.uniform_degree,
        }
        return _padded(batch, n_atoms, n_edges) if pad else batch


def padded_size(n: int) -> int:
    """The padded size of ``n`` rows: at least ``n + 1`` (room for a padding row), rounded up
    to a multiple of 1/16 to 1/8 of it, so a dataset's batches take a few sizes.

    >>> [padded_size(n) for n in (0, 7, 100, 7_000, 7_700, 92_000)]
    [1, 8, 104, 7168, 8192, 98304]
    """
    n += 1
    step = 1 << max(0, n.bit_length() - 4)
    return -(-n // step) * step


def _padded(batch: dict[str, Any], n_atoms: int, n_edges: int) -> dict[str, Any]:
    atoms, edges = padded_size(n_atoms), padded_size(n_edges)
    device = batch["atomic_numbers"].device

    def extend(tensor: torch.Tensor, size: int, value: float) -> torch.Tensor:
        fill = torch.full((size - len(tensor),), value, dtype=tensor.dtype, device=device)
        return torch.cat([tensor, fill])

    return {
        "atomic_numbers": extend(batch["atomic_numbers"], atoms, 1),
        "edge_center": extend(batch["edge_center"], edges, n_atoms),
        "edge_neighbor": extend(batch["edge_neighbor"], edges, n_atoms),
        "edge_distance": extend(batch["edge_distance"], edges, 0.0),
        "crystal_index": extend(batch["crystal_index"], atoms, batch["n_crystals"]),
        "n_crystals": batch["n_crystals"],
        "uniform_degree": 0,
        "atom_valid": torch.arange(atoms, device=device) < n_atoms,
        "edge_valid": torch.arange(edges, device=device) < n_edges,
    }


def _as_deepchem_label(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.astype(np.float32) if array.dtype == np.float64 else array


@dataclass
class ResidentBatch:
    """What the resident generator yields as a batch's input: crystals ``index`` of ``graphs``."""

    graphs: ResidentGraphs
    index: np.ndarray
    index_on_device: torch.Tensor
    pad: bool = False

    def inputs(self) -> dict[str, Any]:
        return self.graphs.batch(self.index, self.index_on_device, self.pad)

    def labels(self) -> list[torch.Tensor] | None:
        return None if self.graphs.y is None else [self.graphs.y[self.index_on_device]]

    def weights(self) -> list[torch.Tensor] | None:
        return None if self.graphs.w is None else [self.graphs.w[self.index_on_device]]


def resident_batches(
    graphs: ResidentGraphs, batch_size: int, epochs: int, deterministic: bool, pad: bool = False
) -> Iterator[tuple[list[ResidentBatch], list[None], list[None]]]:
    """Batches in the order ``NumpyDataset.iterbatches`` gives (one ``np.random.permutation``
    per epoch unless ``deterministic``), as ``([ResidentBatch], [None], [None])``; padded to
    a few fixed shapes with ``pad`` (see :meth:`ResidentGraphs.batch`)."""
    n = len(graphs)
    for _ in range(epochs):
        order = np.arange(n) if deterministic else np.random.permutation(n)
        on_device = torch.as_tensor(order, device=graphs.device)
        for start in range(0, n, batch_size):
            end = min(n, start + batch_size)
            item = ResidentBatch(graphs, order[start:end], on_device[start:end], pad)
            yield [item], [None], [None]
