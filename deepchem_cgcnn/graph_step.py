"""The whole training step (forward, loss, backward, optimizer update) replayed from CUDA graphs.

A GPU training step at batch 256 is a few hundred small kernels, and the host launching them
one by one takes longer than the GPU runs them (docs/benchmarks.md, "The resident path").
:class:`GraphStep` captures the step once per padded batch shape
(:func:`deepchem_cgcnn.resident.padded_size`: a few shapes per dataset) and replays it: the
batch is copied into that shape's input tensors and one launch runs the step.
``CGCNNModel(graph_step=True)`` trains this way (:meth:`CGCNNModel.fit_generator`).

What a replay needs, and :class:`GraphStep` provides:

* fixed shapes: the batches are padded (``static_shapes``), and a shape not seen before is
  captured on first use, after two warm-up steps on a side stream whose updates are undone;
* no host reads in the step: the loss stays on the device (:mod:`deepchem_cgcnn.layers`
  counts atoms without ``bincount``'s read);
* an optimizer whose update runs on the device: Adam or AdamW with ``capturable=True`` and
  its learning rates held as device tensors. A learning rate set later as a number (a
  schedule, or ``param_groups[i]["lr"] = ...``) is copied into that tensor before each
  replay, so the captured update never uses a stale rate.

Each new shape's graph is checked once: it is replayed on its first batch, the same step is
taken eagerly from the same state, and the two must agree (loss and update); a shape whose
replay does not reproduce the eager step trains eagerly, with a :class:`GraphStepWarning`. On a
CPU, for a batch that is not padded, or before the optimizer has state (its first step), the
same step runs eagerly.
"""

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

LossFn = Callable[[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]], torch.Tensor]

CAPTURABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
"""The torch optimizers whose update :class:`GraphStep` captures."""


class GraphStep:
    """One training step of ``module`` on padded resident batches, replayed from a CUDA graph
    per batch shape on a GPU, run eagerly elsewhere.

    Parameters
    ----------
    module: nn.Module
        The network (or its ``torch.compile``'d form); called on a batch's input dict.
    loss_fn: callable
        ``loss_fn(outputs, labels, weights)``, DeepChem's form.
    optimizer: torch.optim.Optimizer
        Updates ``module``'s parameters; on a GPU an Adam or AdamW (made ``capturable``, its
        learning rates device tensors).
    loss_outputs: list of int, optional
        The outputs the loss takes (DeepChem's ``TorchModel._loss_outputs``).
    graphs: bool, optional
        Replay from CUDA graphs (default: when the parameters are on a GPU); False: always
        eager (a reference to check the replayed step against).

    Examples
    --------
    >>> import torch
    >>> class Network(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = torch.nn.Linear(2, 1)
    ...     def forward(self, batch):
    ...         return self.linear(batch["x"])
    >>> network = Network()
    >>> step = GraphStep(
    ...     network,
    ...     lambda outputs, labels, weights: ((outputs[0] - labels[0]) ** 2).mean(),
    ...     torch.optim.Adam(network.parameters(), lr=0.1),
    ... )
    >>> loss = step({"x": torch.ones(4, 2)}, [torch.zeros(4, 1)], [torch.ones(4, 1)])
    >>> loss.shape, loss.requires_grad, step.graphs
    (torch.Size([]), False, 0)
    """

    def __init__(
        self,
        module: nn.Module,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        loss_outputs: Sequence[int] | None = None,
        graphs: bool | None = None,
    ) -> None:
        self.module = module
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.loss_outputs = loss_outputs
        self.use_graphs = _on_cuda(optimizer) if graphs is None else graphs
        self._captured: dict[tuple, _Captured | None] = {}
        self._bound: list[torch.Tensor] = []  # the tensors the captured graphs read and write
        self._pool: Any = None
        self._rates: list[torch.Tensor] = []
        if self.use_graphs:
            if not isinstance(optimizer, CAPTURABLE_OPTIMIZERS):
                raise ValueError(
                    f"graph_step captures the update of Adam or AdamW only, not "
                    f"{type(optimizer).__name__}"
                )
            self._rates = learning_rates_as_tensors(optimizer)
            self._pool = torch.cuda.graph_pool_handle()

    @property
    def graphs(self) -> int:
        """How many batch shapes are replayed from a captured graph."""
        return sum(captured is not None for captured in self._captured.values())

    def bound_to(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
        """Whether the captured graphs still act on ``module``'s and ``optimizer``'s tensors:
        ``optimizer.load_state_dict`` (a restored checkpoint) puts new state tensors in place
        of those a graph updates, and the graphs must then be captured again."""
        current = trained_tensors(module, optimizer)
        return optimizer is self.optimizer and (
            not self._bound
            or len(current) == len(self._bound)
            and all(a is b for a, b in zip(current, self._bound, strict=True))
        )

    def __call__(
        self, inputs: dict[str, Any], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> torch.Tensor:
        """Train on one batch; return its loss (a device scalar, detached)."""
        if not (self.use_graphs and "atom_valid" in inputs and self.optimizer.state):
            return self._step(inputs, labels, weights)
        sync_learning_rates(self.optimizer, self._rates)
        key = _shape_key(inputs, labels, weights)
        if key not in self._captured:
            self._captured[key], loss = self._capture_checked(inputs, labels, weights)
            return loss
        captured = self._captured[key]
        if captured is None:  # its replay did not reproduce the eager step
            return self._step(inputs, labels, weights)
        return captured.run(inputs, labels, weights)

    def _step(
        self, inputs: dict[str, Any], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.module(inputs)
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if self.loss_outputs is not None:
            outputs = [outputs[i] for i in self.loss_outputs]
        loss = self.loss_fn(outputs, labels, weights)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _capture_checked(
        self, inputs: dict[str, Any], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> tuple["_Captured | None", torch.Tensor]:
        """Capture the step for this batch's shape, replay it on the batch, then take the same
        step eagerly from the same state: the replay must give the eager loss and update, or
        the shape runs eagerly from then on (with a :class:`GraphStepWarning`), as it does when
        the capture fails. The eager step's result is the one kept."""
        trained = trained_tensors(self.module, self.optimizer)
        self._bound = self._bound or trained
        before = _clones(trained)
        try:
            captured = self._capture(inputs, labels, weights, trained, before)
            replayed_loss = captured.run(inputs, labels, weights)
        except RuntimeError as error:  # an operation that cannot be captured
            copy_in_place(before, trained)
            _warn_eager(inputs, f"it cannot be captured ({str(error).splitlines()[0][:200]})")
            return None, self._step(inputs, labels, weights)
        replayed = _clones(trained)
        copy_in_place(before, trained)
        loss = self._step(inputs, labels, weights)
        problem = _disagreement(replayed_loss, loss, before, replayed, trained)
        if problem is None:
            return captured, loss
        _warn_eager(inputs, f"it does not reproduce the eager step ({problem})")
        return None, loss

    def _capture(
        self,
        inputs: dict[str, Any],
        labels: list[torch.Tensor],
        weights: list[torch.Tensor],
        trained: list[torch.Tensor],
        before: list[torch.Tensor],
    ) -> "_Captured":
        static_inputs = {k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()}
        static_labels = [t.clone() for t in labels]
        static_weights = [t.clone() for t in weights]
        replay, loss = self._record(
            lambda: self._step(static_inputs, static_labels, static_weights)
        )
        copy_in_place(before, trained)  # the warm-up steps trained: undone
        return _Captured(replay, static_inputs, static_labels + static_weights, loss)

    def _record(self, step: Callable[[], torch.Tensor]) -> tuple[Callable[[], Any], torch.Tensor]:
        """``step`` captured as a CUDA graph, after the two warm-up runs a capture needs on a
        side stream; returns the graph's replay and the tensor its loss is written to."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, pool=self._pool):
            loss = step()
        return graph.replay, loss


class GraphStepWarning(UserWarning):
    """A batch shape whose replayed training step did not reproduce the eager step, and so
    trains eagerly."""


@dataclass
class _Captured:
    """One batch shape's captured step: its replay, the static tensors it reads, its loss."""

    replay: Callable[[], Any]
    inputs: dict[str, Any]
    targets: list[torch.Tensor]  # the labels, then the weights
    loss: torch.Tensor

    def run(
        self, inputs: dict[str, Any], labels: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> torch.Tensor:
        for name, value in inputs.items():
            if torch.is_tensor(value):
                self.inputs[name].copy_(value)
        for static, value in zip(self.targets, labels + weights, strict=True):
            static.copy_(value)
        self.replay()
        return self.loss.clone()


def _warn_eager(inputs: dict[str, Any], problem: str) -> None:
    warnings.warn(
        f"a training step replayed from a CUDA graph: {problem}; batches of this shape "
        f"({inputs['n_crystals']} crystals, {len(inputs['atomic_numbers'])} atom rows) "
        f"train eagerly",
        GraphStepWarning,
        stacklevel=4,
    )


def _clones(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors]


def copy_in_place(sources: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
    """Copy ``sources`` into ``targets`` in place: captured graphs keep reading and writing the
    targets' memory, so state is restored into them, never rebound."""
    with torch.no_grad():
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source)


def _disagreement(
    replayed_loss: torch.Tensor,
    loss: torch.Tensor,
    before: list[torch.Tensor],
    replayed: list[torch.Tensor],
    stepped: list[torch.Tensor],
) -> str | None:
    """What differs between a replayed and an eager step from the same state, or None.

    The losses must agree within 1e-4, and 99 % of the changes the step made to the weights,
    statistics and optimizer state within 1e-3 (relative): a GPU's atomic adds sum in
    another order on each run, and the few weights whose gradient is pure rounding noise (the
    biases that batch norm cancels) take Adam's full step in either direction."""
    if not torch.allclose(replayed_loss, loss, rtol=1e-4, atol=1e-6):
        return f"loss {float(replayed_loss):.6g} against {float(loss):.6g}"
    agree = total = 0
    for start, after_replay, after_step in zip(before, replayed, stepped, strict=True):
        if not start.is_floating_point():
            continue
        change, expected = after_replay - start, after_step.detach() - start
        agree += int(torch.isclose(change, expected, rtol=1e-3, atol=1e-8).sum())
        total += expected.numel()
    if agree < 0.99 * total:
        return f"{total - agree} of {total} updated values differ"
    return None


def trained_tensors(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor a training step changes, in a fixed order: ``module``'s parameters and
    buffers (batch-norm statistics), ``optimizer``'s state.

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.BatchNorm1d(3)
    >>> len(trained_tensors(layer, torch.optim.Adam(layer.parameters())))  # weight, bias, 3 stats
    5
    """
    tensors = list(module.state_dict(keep_vars=True).values())
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    return tensors


def _on_cuda(optimizer: torch.optim.Optimizer) -> bool:
    return any(p.is_cuda for group in optimizer.param_groups for p in group["params"])


def _shape_key(inputs: dict[str, Any], labels: list, weights: list) -> tuple:
    """What a captured graph is specific to: every tensor's shape and dtype, every other
    input's value (``n_crystals``...)."""
    return tuple(
        (name, tuple(v.shape), v.dtype) if torch.is_tensor(v) else (name, v)
        for name, v in [*sorted(inputs.items()), *enumerate(labels + weights)]
    )


def learning_rates_as_tensors(
    optimizer: torch.optim.Optimizer, capturable: bool = True
) -> list[torch.Tensor]:
    """Make ``optimizer`` ``capturable``, with each parameter group's learning rate a float32
    device tensor (so a captured update reads the current rate); return those tensors.

    Examples
    --------
    >>> import torch
    >>> optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    >>> rates = learning_rates_as_tensors(optimizer)
    >>> group = optimizer.param_groups[0]
    >>> group["lr"] is rates[0], round(float(rates[0]), 6), group["capturable"]
    (True, 0.01, True)
    """
    rates = []
    for group in optimizer.param_groups:
        device = group["params"][0].device
        rate = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        group["lr"], group["capturable"] = rate, capturable
        rates.append(rate)
    for state in optimizer.state.values():  # a restored optimizer's step counts live on the host
        if "step" in state and torch.is_tensor(state["step"]):
            state["step"] = state["step"].to(rates[0].device)
    return rates


def sync_learning_rates(optimizer: torch.optim.Optimizer, rates: list[torch.Tensor]) -> None:
    """Copy a learning rate set as a number since (``group["lr"] = 1e-3``) into its group's
    device tensor, and put the tensor back in the group.

    Examples
    --------
    >>> import torch
    >>> optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    >>> rates = learning_rates_as_tensors(optimizer)
    >>> optimizer.param_groups[0]["lr"] = 0.5
    >>> sync_learning_rates(optimizer, rates)
    >>> float(rates[0]), optimizer.param_groups[0]["lr"] is rates[0]
    (0.5, True)
    """
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        if group["lr"] is not rate:
            rate.fill_(float(group["lr"]))
            group["lr"] = rate
