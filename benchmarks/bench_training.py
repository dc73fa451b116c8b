"""Training and inference throughput of ``CGCNNModel`` against the concatenating ConvLayer.

Draws ``--n`` Materials Project crystals (seeded) from the MP CSV, featurizes
them once with ``deepchem_cgcnn.CGCNNFeaturizer`` (not timed) with
``formation_energy_per_atom`` as the target, and builds two models that differ
only in how the gated convolution is computed:

* ours: ``CGCNNModel(hidden_node_dim=64, num_conv=3, batch_size=128)``, whose
  ``GatedConv`` never builds the ``(E, 2A + B)`` concatenation;
* concat: the SAME model (same initial weights, data, batch size and
  optimizer) with each ``GatedConv`` in ``model.model.convs`` replaced by
  :class:`ConcatGatedConv`, a subclass with the same parameters whose forward is
  the original CGCNN ``ConvLayer.forward``: gather ``v_j``, build
  ``cat([v_i expanded, v_j, u_ij])`` of shape ``(E, 2A + B)``, ``fc_full``,
  ``bn1``, chunk, ``sigmoid * softplus``, sum over neighbours, ``bn2``,
  ``softplus(v_i + sum)``.

It first checks that both give the same outputs on one batch in eval mode
(and the same train-mode outputs and gradients), then times
``fit(dataset, nb_epoch=1, checkpoint_interval=0, deterministic=True)``
epochs -- forward, backward, optimizer step and batch collation -- after one
warm-up epoch each, interleaving the two models (ABBA...) so that both share
the machine's noise; then ``predict`` the same way, both as DeepChem runs it
(autograd on: ``TorchModel.predict`` does not disable it) and wrapped in
``torch.no_grad()``. Medians of ``--epochs`` (``--predict-repeats``) are
reported, in crystals per second.

Torch runs on ONE intra-op thread by default (``--threads``): on a machine
whose cores are shared with another torch job, torch's default of one thread
per core oversubscribes them and epoch times swing 3-8x from one epoch to the
next, which drowns the comparison. Pass ``--threads 0`` on an idle machine.

Usage
-----
``nice -n 5 .venv/bin/python benchmarks/bench_training.py --n 2000``

Prints markdown tables on stdout.
"""

import argparse
import copy
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import (
    DEFAULT_DATA,
    environment_line,
    load_mp_structures,
    markdown_table,
    median,
    timed,
)

from deepchem_cgcnn._quiet import import_deepchem
from deepchem_cgcnn.layers import GatedConv, batch_norm, sum_over_neighbors

dc = import_deepchem()


class ConcatGatedConv(GatedConv):
    """``GatedConv`` computed as the original CGCNN ``ConvLayer.forward``: with the concatenation.

    Same parameters (``fc_full``, ``bn1``, ``bn2``) as :class:`GatedConv`, so a
    ``GatedConv``'s ``state_dict`` loads unchanged; only ``forward`` differs.
    """

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
        n_atoms = atom_fea.shape[0]
        atom_nbr_fea = atom_fea[edge_neighbor]  # v_j, (E, A)
        if uniform_degree:  # the original's (N, M, A) expand, flattened to (E, A)
            atom_self_fea = atom_fea.unsqueeze(1).expand(n_atoms, uniform_degree, a).reshape(-1, a)
        else:
            atom_self_fea = atom_fea[edge_center]
        total_nbr_fea = torch.cat([atom_self_fea, atom_nbr_fea, edge_fea], dim=1)  # (E, 2A + B)
        total_gated_fea = batch_norm(self.bn1, self.fc_full(total_nbr_fea), edge_valid)
        nbr_filter, nbr_core = total_gated_fea.chunk(2, dim=1)
        messages = torch.sigmoid(nbr_filter) * F.softplus(nbr_core)
        nbr_summed = sum_over_neighbors(messages, edge_center, n_atoms, uniform_degree)
        return F.softplus(atom_fea + batch_norm(self.bn2, nbr_summed, atom_valid))


def make_models(args, model_dirs):
    """Ours and the concatenating twin, with identical initial weights."""
    from deepchem_cgcnn import CGCNNModel

    kwargs = dict(hidden_node_dim=args.hidden, num_conv=args.num_conv, batch_size=args.batch_size)
    torch.manual_seed(args.seed)
    ours = CGCNNModel(model_dir=model_dirs[0], **kwargs)
    concat = CGCNNModel(model_dir=model_dirs[1], **kwargs)
    concat.model.load_state_dict(ours.model.state_dict())
    for k, conv in enumerate(concat.model.convs):
        twin = ConcatGatedConv(conv.atom_fea_len, conv.fc_full.in_features - 2 * conv.atom_fea_len)
        twin.load_state_dict(conv.state_dict())
        concat.model.convs[k] = twin
    assert all(type(c) is GatedConv for c in ours.model.convs)
    assert all(type(c) is ConcatGatedConv for c in concat.model.convs)
    return ours, concat


def check_equivalence(ours, concat, dataset):
    """Max |difference| of eval outputs, train-mode outputs and gradients on the first batch."""
    batch = next(iter(ours.default_generator(dataset, mode="predict", deterministic=True)))
    inputs, _, _ = ours._prepare_batch((batch[0], None, None))
    with torch.no_grad():
        eval_a = ours.model.eval()(inputs)
        eval_b = concat.model.eval()(inputs)
    net_a, net_b = copy.deepcopy(ours.model).train(), copy.deepcopy(concat.model).train()
    train_a, train_b = net_a(inputs), net_b(inputs)
    train_a.square().mean().backward()
    train_b.square().mean().backward()
    grads_a = dict(net_a.named_parameters())
    grad_diff = max(
        float((p.grad - grads_a[name].grad).abs().max())
        for name, p in net_b.named_parameters()
        if p.grad is not None
    )
    n_edges = int(inputs["edge_center"].shape[0])
    return {
        "eval": float((eval_a - eval_b).abs().max()),
        "eval_scale": float(eval_a.abs().max()),
        "train": float((train_a - train_b).detach().abs().max()),
        "grad": grad_diff,
        "n_crystals": int(inputs["n_crystals"]),
        "n_atoms": int(inputs["atomic_numbers"].shape[0]),
        "n_edges": n_edges,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="MP structures drawn from the CSV")
    parser.add_argument(
        "--epochs", type=int, default=3, help="timed epochs per model (after 1 warm-up)"
    )
    parser.add_argument(
        "--predict-repeats", type=int, default=5, help="timed predict passes per model"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64, help="hidden_node_dim (A)")
    parser.add_argument("--num-conv", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw and of the weights")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the MP CSV (read only)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1, see the module docstring); "
        "0 keeps torch's default of one per core",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    # DeepChem's TorchModel.fit averages losses that still require grad; harmless.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from deepchem_cgcnn import CGCNNFeaturizer
    from deepchem_cgcnn.graph import CrystalGraph

    _, structures, targets = load_mp_structures(args.data, args.n, args.seed)
    featurize_s, graphs = timed(lambda: CGCNNFeaturizer().featurize(structures, n_jobs=1))
    ok = np.array([isinstance(g, CrystalGraph) for g in graphs])
    dataset = dc.data.NumpyDataset(graphs[ok], targets[ok].reshape(-1, 1))
    n = len(dataset)
    n_atoms = sum(g.num_nodes for g in dataset.X)

    with tempfile.TemporaryDirectory() as dir_a, tempfile.TemporaryDirectory() as dir_b:
        ours, concat = make_models(args, (dir_a, dir_b))
        check = check_equivalence(ours, concat, dataset)
        models = {"ours": ours, "concat": concat}

        def epoch(model):
            return model.fit(dataset, nb_epoch=1, checkpoint_interval=0, deterministic=True)

        warm = {name: timed(lambda m=m: epoch(m))[0] for name, m in models.items()}
        fit_s = {name: [] for name in models}
        losses = {}
        for r in range(args.epochs):
            order = list(models) if r % 2 == 0 else list(models)[::-1]
            for name in order:
                seconds, losses[name] = timed(lambda name=name: epoch(models[name]))
                fit_s[name].append(seconds)

        def predict_no_grad(model):
            with torch.no_grad():
                return model.predict(dataset)

        for m in models.values():  # warm-up
            m.predict(dataset)
        predict_s = {name: [] for name in models}
        no_grad_s = {name: [] for name in models}
        predictions = {}
        for r in range(args.predict_repeats):
            order = list(models) if r % 2 == 0 else list(models)[::-1]
            for name in order:
                seconds, predictions[name] = timed(lambda name=name: models[name].predict(dataset))
                predict_s[name].append(seconds)
                no_grad_s[name].append(timed(lambda name=name: predict_no_grad(models[name]))[0])

    fit_rate = {k: n / median(v) for k, v in fit_s.items()}
    predict_rate = {k: n / median(v) for k, v in predict_s.items()}
    no_grad_rate = {k: n / median(v) for k, v in no_grad_s.items()}
    mae = {k: float(np.abs(p.ravel() - dataset.y.ravel()).mean()) for k, p in predictions.items()}
    edges_per_batch = check["n_edges"]
    hidden = args.hidden
    concat_mb = edges_per_batch * (2 * hidden + 41) * 4 / 2**20

    print("## Training benchmark\n")
    print(environment_line() + "\n")
    print(
        f"{n} MP crystals (seed {args.seed}, {n_atoms:,} atoms, {n_atoms / n:.1f} atoms/crystal; "
        f"{len(graphs) - n} failed to featurize), target formation_energy_per_atom; "
        f"featurized once in {featurize_s:.1f} s (not timed below). "
        f"CGCNNModel(hidden_node_dim={hidden}, num_conv={args.num_conv}, "
        f"batch_size={args.batch_size}), DeepChem default optimizer (Adam, lr 0.001). "
        f"Medians of {args.epochs} epochs after 1 warm-up epoch, models interleaved.\n"
    )
    print(
        f"Equivalence on the first batch ({check['n_crystals']} crystals, {check['n_atoms']:,} atoms, "
        f"{check['n_edges']:,} edges): eval-mode outputs max |diff| {check['eval']:.2e} "
        f"(outputs up to {check['eval_scale']:.2f}) -> "
        f"{'PASS' if check['eval'] <= 1e-5 else 'FAIL'} (tolerance 1e-5); train-mode outputs "
        f"{check['train']:.2e}, gradients {check['grad']:.2e}.\n"
    )
    labels = {
        "ours": "ours (`GatedConv`, no concatenation)",
        "concat": "concatenating `ConvLayer` forward (original)",
    }
    rows = []
    for name in models:
        rows.append(
            [
                labels[name],
                f"{median(fit_s[name]):.2f} (warm-up {warm[name]:.2f})",
                f"**{fit_rate[name]:,.0f}**",
                f"{median(predict_s[name]):.2f}",
                f"**{predict_rate[name]:,.0f}**",
                f"{no_grad_rate[name]:,.0f}",
                f"{losses[name]:.4f}",
                f"{mae[name]:.4f}",
            ]
        )
    print(
        markdown_table(
            [
                "convolution",
                "s/epoch (median)",
                "train crystals/s",
                "s/predict pass",
                "predict crystals/s",
                "predict under `torch.no_grad()` crystals/s",
                "last-epoch loss",
                "train MAE after (eV/atom)",
            ],
            rows,
        )
    )
    print()
    print(
        markdown_table(
            ["ratio", "value"],
            [
                [
                    "training, ours / concatenating",
                    f"**{fit_rate['ours'] / fit_rate['concat']:.2f}×**",
                ],
                [
                    "inference, ours / concatenating",
                    f"**{predict_rate['ours'] / predict_rate['concat']:.2f}×**",
                ],
                [
                    "inference under `torch.no_grad()`, ours / concatenating",
                    f"{no_grad_rate['ours'] / no_grad_rate['concat']:.2f}×",
                ],
                [
                    "ours, predict under `torch.no_grad()` / plain `predict`",
                    f"{no_grad_rate['ours'] / predict_rate['ours']:.2f}×",
                ],
            ],
        )
    )
    print()
    print(
        f"The concatenation the original builds is (E, 2A+B) = ({edges_per_batch:,}, "
        f"{2 * hidden + 41}) float32 = {concat_mb:.1f} MiB per convolution for the first batch; "
        f"all epoch times: ours {[round(t, 2) for t in fit_s['ours']]}, "
        f"concat {[round(t, 2) for t in fit_s['concat']]} s."
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
