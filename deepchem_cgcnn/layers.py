"""CGCNN building blocks: Gaussian expansion, gated (Eq. 5) and simple (Eq. 4) convolutions, pooling.

All layers work on flat edge lists (``edge_center``, ``edge_neighbor``) so a
batch of crystals is one disconnected graph and no per-crystal Python loop runs.
"""

import torch
import torch.nn.functional as F
from torch import nn

from deepchem_cgcnn.graph import GAUSSIAN_CUTOFF, gaussian_centers


def _compiling_for_training() -> bool:
    return torch.compiler.is_compiling() and torch.is_grad_enabled()


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for a 1-d ``index``: one row of ``x`` per edge.

    An ``index_select``, except when compiled with gradients on: then a ``torch.gather``
    over the index expanded along the features, whose gradient is a ``scatter_add``.
    TorchInductor writes the gradient of ``index_select`` (an ``index_add``) as a loop
    of atomic adds when it runs on more than one CPU thread, which made a compiled
    convolution's training step slower on two threads than on one.

    Examples
    --------
    >>> gather_rows(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1, 1, 0]))
    tensor([[3., 4.],
            [3., 4.],
            [1., 2.]])
    """
    if _compiling_for_training():
        return torch.gather(x, 0, index[:, None].expand(-1, x.shape[1]))
    return x.index_select(0, index)


def sum_over_neighbors(
    messages: torch.Tensor, edge_center: torch.Tensor, n_atoms: int, uniform_degree: int = 0
) -> torch.Tensor:
    """Sum ``(E, F)`` edge messages onto their centre atoms: ``(n_atoms, F)``.

    Edges are grouped by centre; when every atom has ``uniform_degree`` edges the
    sum is a reshape, otherwise an ``index_add`` (compiled with gradients on, a
    ``scatter_add``, for the reason given in :func:`gather_rows`).
    """
    if uniform_degree:
        return messages.view(n_atoms, uniform_degree, -1).sum(dim=1)
    out = messages.new_zeros((n_atoms, messages.shape[1]))
    if _compiling_for_training():
        return out.scatter_add(0, edge_center[:, None].expand_as(messages), messages)
    return out.index_add_(0, edge_center, messages)


def batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``bn(x)`` with the training statistics taken over the rows where ``valid`` is True.

    Padding rows (a batch padded to a fixed shape) then change neither the output of the
    other rows, nor the running statistics, nor the gradients. In evaluation, or with
    ``valid=None``, this is ``bn(x)``.

    Examples
    --------
    >>> bn = nn.BatchNorm1d(2)
    >>> x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [100.0, -7.0]])
    >>> valid = torch.tensor([True, True, False])
    >>> torch.allclose(batch_norm(bn, x, valid)[:2], nn.BatchNorm1d(2)(x[:2]))
    True
    >>> bn.running_mean
    tensor([0.2000, 0.3500])
    """
    if valid is None or not bn.training:
        normalized: torch.Tensor = bn(x)
        return normalized
    # The masked sums are matrix-vector products (one pass over x each, no masked copy of it),
    # and the affine map one fused multiply-add: five passes over the rows, not nine.
    weight = valid.to(x.dtype)
    count = weight.sum()
    mean = (weight @ x) / count
    centered = x - mean
    var = (weight @ centered.square()) / count
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        momentum = 0.1 if bn.momentum is None else bn.momentum
        with torch.no_grad():
            bn.running_mean.lerp_(mean, momentum)
            bn.running_var.lerp_(var * count / (count - 1), momentum)
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
    scale = torch.rsqrt(var + bn.eps)
    if not bn.affine:
        return centered * scale
    return torch.addcmul(bn.bias, centered, scale * bn.weight)


class GaussianExpansion(nn.Module):
    """``u_k(d) = exp(-(d - mu_k)^2 / step^2)`` for ``mu_k = 0, step, ..., radius``.

    Terms below ``exp(-GAUSSIAN_CUTOFF)`` are set to zero (:data:`deepchem_cgcnn.graph.GAUSSIAN_CUTOFF`).

    Examples
    --------
    >>> import torch
    >>> u = GaussianExpansion(8.0, 0.2)(torch.tensor([0.0, 2.0]))
    >>> tuple(u.shape), float(u[0, 0]), float(u[0, 2]), float(u[0, 40])
    ((2, 41), 1.0, 0.018315639346837997, 0.0)
    """

    def __init__(self, radius: float = 8.0, step: float = 0.2):
        super().__init__()
        self.step = step
        centers = torch.tensor(gaussian_centers(radius, step), dtype=torch.float32)
        self.register_buffer("centers", centers, persistent=False)

    centers: torch.Tensor

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        exponent = -(((distance[:, None] - self.centers) / self.step) ** 2)
        return exponent.masked_fill_(exponent < -GAUSSIAN_CUTOFF, -torch.inf).exp_()


class GatedConv(nn.Module):
    r"""The gated crystal graph convolution of the paper (Eq. 5) and the original ``ConvLayer``.

    .. math::

        z_{ij} &= \mathrm{BN}_1\big(W [v_i \oplus v_j \oplus u_{ij}] + b\big) = z^f_{ij} \oplus z^s_{ij} \\
        v_i &\leftarrow \mathrm{softplus}\Big(v_i + \mathrm{BN}_2\big(\textstyle\sum_j
              \sigma(z^f_{ij}) \odot \mathrm{softplus}(z^s_{ij})\big)\Big)

    ``W`` is stored as the original's single ``fc_full`` Linear(2A + B, 2A), so the
    published checkpoints load unchanged, but the ``(E, 2A + B)`` concatenation is
    never built: ``W [v_i; v_j; u_ij] = W_s v_i + W_n v_j + W_e u_ij``, with the
    first two terms computed once per atom (with the bias) and gathered per edge. In
    evaluation ``BN_1`` is an affine map, folded into ``W`` and ``b``: one pass over the
    edges fewer.

    ``edge_valid`` and ``atom_valid`` (optional boolean masks) mark the real rows of a batch
    padded to a fixed shape: the batch norms take their statistics over those rows only, so
    the real rows come out as without the padding (:func:`batch_norm`).

    Parameters
    ----------
    atom_fea_len: int
        A, the size of the atom vectors.
    nbr_fea_len: int
        B, the size of the edge vectors.
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int):
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def _weights_with_bn1_folded(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """``fc_full``'s weight and bias, with ``bn1`` folded in when it uses running
        statistics (evaluation): ``BN_1(W z + b) = (s W) z + s (b - mean) + beta``."""
        weight: torch.Tensor = self.fc_full.weight
        bias: torch.Tensor = self.fc_full.bias
        bn = self.bn1
        mean, var = bn.running_mean, bn.running_var
        if bn.training or mean is None or var is None:
            return weight, bias, False
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = (bias - mean) * scale
        if bn.bias is not None:
            bias = bias + bn.bias
        return weight * scale[:, None], bias, True

    def forward(
        self,
        atom_fea: torch.Tensor,
        edge_fea: torch.Tensor,
        edge_center: torch.Tensor,
        edge_neighbor: torch.Tensor,
        uniform_degree: int = 0,
        edge_valid: torch.Tensor | None = None,
        atom_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        a = self.atom_fea_len
        weight, bias, folded = self._weights_with_bn1_folded()
        per_atom = atom_fea @ torch.cat([weight[:, :a], weight[:, a : 2 * a]]).t()
        as_center, as_neighbor = per_atom[:, : 2 * a] + bias, per_atom[:, 2 * a :]
        gated = F.linear(edge_fea, weight[:, 2 * a :])
        gated = gated + gather_rows(as_center, edge_center)
        gated = gated + gather_rows(as_neighbor, edge_neighbor)
        if not folded:
            gated = batch_norm(self.bn1, gated, edge_valid)
        nbr_filter, nbr_core = gated.chunk(2, dim=1)
        messages = torch.sigmoid(nbr_filter) * F.softplus(nbr_core)
        summed = sum_over_neighbors(messages, edge_center, atom_fea.shape[0], uniform_degree)
        return F.softplus(atom_fea + batch_norm(self.bn2, summed, atom_valid))


class SimpleConv(nn.Module):
    r"""The paper's first, ungated convolution (Eq. 4).

    .. math::

        v_i \leftarrow \mathrm{softplus}\Big(\big(\textstyle\sum_j v_j \oplus u_{ij}\big) W_c
              + v_i W_s + b\Big)

    The sum of concatenations is the concatenation of sums, so each crystal's
    neighbour sums are computed once per layer without an ``(E, A + B)`` tensor.
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int):
        super().__init__()
        self.fc_neighbors = nn.Linear(atom_fea_len + nbr_fea_len, atom_fea_len, bias=False)
        self.fc_self = nn.Linear(atom_fea_len, atom_fea_len)

    def forward(
        self,
        atom_fea: torch.Tensor,
        edge_fea: torch.Tensor,
        edge_center: torch.Tensor,
        edge_neighbor: torch.Tensor,
        uniform_degree: int = 0,
        edge_valid: torch.Tensor | None = None,
        atom_valid: torch.Tensor | None = None,
        edge_fea_sum: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n_atoms = atom_fea.shape[0]
        nbr_sum = sum_over_neighbors(
            gather_rows(atom_fea, edge_neighbor), edge_center, n_atoms, uniform_degree
        )
        if edge_fea_sum is None:
            edge_fea_sum = sum_over_neighbors(edge_fea, edge_center, n_atoms, uniform_degree)
        return F.softplus(
            self.fc_neighbors(torch.cat([nbr_sum, edge_fea_sum], dim=1)) + self.fc_self(atom_fea)
        )


def atoms_per_crystal(
    crystal_index: torch.Tensor, n_crystals: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """How many atoms each crystal has, as ``dtype``: ``bincount`` without its
    device-to-host copy of the largest index on CUDA, so a training step never waits on it.

    Examples
    --------
    >>> atoms_per_crystal(torch.tensor([0, 0, 2]), 4)
    tensor([2., 0., 1., 0.])
    """
    ones = torch.ones_like(crystal_index, dtype=dtype)
    counts = torch.zeros(n_crystals, dtype=dtype, device=crystal_index.device)
    return counts.index_add_(0, crystal_index, ones)


def pool_atoms(
    atom_fea: torch.Tensor, crystal_index: torch.Tensor, n_crystals: int, how: str = "mean"
) -> torch.Tensor:
    """Pool ``(N, F)`` atom vectors into ``(n_crystals, F)`` by ``'mean'``, ``'sum'`` or ``'max'``."""
    index = crystal_index[:, None].expand_as(atom_fea)
    out = atom_fea.new_zeros((n_crystals, atom_fea.shape[1]))
    if how == "max":
        return out.scatter_reduce(0, index, atom_fea, reduce="amax", include_self=False)
    summed = out.index_add(0, crystal_index, atom_fea)
    if how == "sum":
        return summed
    if how == "mean":
        return (
            summed
            / atoms_per_crystal(crystal_index, n_crystals, summed.dtype).clamp(min=1)[:, None]
        )
    raise ValueError(f"pooling must be 'mean', 'sum' or 'max', got {how!r}")
