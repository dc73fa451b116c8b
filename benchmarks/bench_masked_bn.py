"""The masked batch norm of padded batches (``layers.batch_norm``): forward + backward time
against its first form, on one tensor the size of a padded edge batch.

The GPU profile of 2026-11-27 (``benchmarks/results/gpu/profile-step-h100-2026-11-27.txt``)
found a padded training step at 2.4× the GPU time of an unpadded one, mostly the mask's
products and sums over every edge row. The first form multiplied the rows by the mask before
each sum (nine passes over the rows); the current one takes the masked sums as matrix-vector
products and the affine map as one fused multiply-add (five). Both must give the same outputs.

Usage: ``.venv/bin/python benchmarks/bench_masked_bn.py [--rows 20480] [--device cuda]``
"""

import argparse
import functools

import torch
from _common import environment_line, markdown_table, median, timed
from torch import nn


def first_form(bn: nn.BatchNorm1d, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``layers.batch_norm`` as first written (training mode, affine, running statistics)."""
    weight = valid.to(x.dtype)[:, None]
    count = weight.sum()
    mean = (x * weight).sum(0) / count
    centered = x - mean
    var = (centered.square() * weight).sum(0) / count
    with torch.no_grad():
        bn.running_mean.lerp_(mean, 0.1)
        bn.running_var.lerp_(var * count / (count - 1), 0.1)
    out = centered * torch.rsqrt(var + bn.eps)
    return out * bn.weight + bn.bias


def main(argv=None) -> dict:
    from deepchem_cgcnn.layers import batch_norm
    from deepchem_cgcnn.model import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20480, help="padded rows (edges)")
    parser.add_argument("--padding", type=int, default=1500, help="of which padding")
    parser.add_argument("--channels", type=int, default=128, help="2 × the atom vector length")
    parser.add_argument("--repeats", type=int, default=20, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.channels, device=device, requires_grad=True)
    valid = torch.arange(args.rows, device=device) < args.rows - args.padding
    grad = torch.randn(args.rows, args.channels, device=device)
    bn = nn.BatchNorm1d(args.channels).to(device)
    forms = {"first form (mask products)": first_form, "current (matrix-vector sums)": batch_norm}
    same = torch.allclose(first_form(bn, x, valid), batch_norm(bn, x, valid), atol=1e-5)

    def run(form) -> None:
        for _ in range(args.repeats):
            form(bn, x, valid).backward(grad)
            x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()

    for form in forms.values():
        run(form)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in forms}
    for round_ in range(args.rounds):
        for name in sorted(forms, reverse=bool(round_ % 2)):
            times[name].append(timed(functools.partial(run, forms[name]))[0] / args.repeats)
    print(environment_line())
    print(
        f"\nmasked batch norm, {args.rows:,} × {args.channels} rows ({args.padding:,} padding), "
        f"forward + backward, device {device}; medians of {args.rounds} alternated rounds of "
        f"{args.repeats} calls; same outputs (1e-5): {same}\n"
    )
    print(
        markdown_table(
            ["form", "ms per call"], [[n, f"{1e3 * median(t):.3f}"] for n, t in times.items()]
        )
    )
    first, current = (median(t) for t in times.values())
    print(f"\nfirst form / current: **{first / current:.2f}×**")
    return {"ms": {n: 1e3 * median(t) for n, t in times.items()}, "same_outputs": same}


if __name__ == "__main__":
    main()
