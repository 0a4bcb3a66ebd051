"""Deep and wide nets against this machine's limit (issue: deep and wide nets near the machine's limit).

The depth and width workloads of the cpu profile: a depth-64 residual net (784 inputs, 10 classes)
at widths 256 and 1024, SAL-4 and BP, batch 16, trained as the depth and width stages train them:
the seeds of one configuration together (runs.plan_batches: 5 seeds at width 256, the depth
stage's; 3 at width 1024, the width stage's), and one model alone for comparison. For each, the
least time per training step over `--repeats` passes (SAL and BP alternated; every repeat printed),
against the roofline this benchmark shares with sweep_speed.py (summed over the models): the larger of

- arithmetic over the measured float32 matmul rate: forward, and SAL's update (or BP's backward
  data and weight gradients), of every layer, plus the routers and selectors of SAL's 63 routed
  layers;
- bytes over the measured memory bandwidth (the faster of a copy and an in-place add): the weights
  of the areas the step touches (counted from the real routing), read by the forward pass, read
  and written by the update (BP: read again by its backward pass).

A batch whose weights fit in the last-level cache can beat this DRAM bound (a fraction above 1).

    python benchmarks/deep_speed.py [--device cpu] [--repeats 3]

Last lines (machine-readable): `deep_sal_roofline_fraction: <x>` and `deep_bp_roofline_fraction: <y>`,
the lower of the two widths for each, seeds batched as the stages train them. Goal: 0.40 or more on
2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import torch

import salrepro
from salrepro.engine.batched import BATCHES
from sweep_speed import machine_limits, sync

DEPTH, N_IN, CLASSES, BATCH, K = 64, 784, 10, 16, 4
STAGE_SEEDS = {256: 5, 1024: 3}  # seeds trained together by the depth (width 256) and width (1024) stages


def build(method: str, width: int, dev, models: int = 1, depth: int = DEPTH):
    lone = [salrepro.build_model(method, N_IN, CLASSES, hidden=width, depth=depth, num_areas=K if method == "sal" else 1,
                                 seed=s, device=dev) for s in range(models)]
    return lone, BATCHES[type(lone[0])](lone)


def bound(model, method: str, width: int, x: torch.Tensor, rate: float, bandwidth: float, depth: int = DEPTH) -> float:
    """Least seconds for one step on batch x (touched areas from the model's routing)."""
    layers = [(N_IN, width)] + [(width, width)] * (depth - 2) + [(width, CLASSES)]
    passes = 2 if method == "sal" else 3  # SAL: forward + update; BP: forward + backward data + weight gradient
    flops = sum(2 * BATCH * n * m * passes for n, m in layers)
    if method == "sal":
        routes = model.route(x)
        touched = [len(set(routes[i].tolist())) if i in routes else 1 for i in range(depth)]
        flops += sum(2 * BATCH * n * CLASSES * 2 for n, _ in layers[:-1])  # router + selector update
        weight_bytes = sum(4 * (n * m + m) * t * 3 for (n, m), t in zip(layers, touched))  # read, read + write
        weight_bytes += sum(4 * n * CLASSES * 3 for n, _ in layers[:-1])  # routers
    else:
        weight_bytes = sum(4 * (n * m + m) * 4 for n, m in layers)  # read fwd, read bwd, read + write update
    return max(flops / rate, weight_bytes / bandwidth)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--tiny", action="store_true",
                        help="depth 4, width 32, one repeat of two steps: the same code in seconds (CI runs it)")
    args = parser.parse_args()
    depth = 4 if args.tiny else DEPTH
    if args.tiny:
        args.repeats, args.steps, args.widths = 1, 2, [32]
    dev = torch.device(args.device)
    rate, copy_bw, add_bw = machine_limits(dev, args.tiny)
    bandwidth = max(copy_bw, add_bw)
    print(f"device {dev}, {torch.get_num_threads()} threads, torch {torch.__version__}: matmul {rate / 1e9:.1f} GFLOP/s, "
          f"bandwidth {bandwidth / 1e9:.1f} GB/s (copy {copy_bw / 1e9:.1f}, add {add_bw / 1e9:.1f})")
    g = torch.Generator().manual_seed(0)
    fractions = {"sal": [], "bp": []}
    for width in args.widths:
        for models in sorted({1, STAGE_SEEDS.get(width, 1)}):
            x = torch.randn(models, BATCH, N_IN, generator=g).to(dev)
            y = torch.randint(0, CLASSES, (models, BATCH), generator=g).to(dev)
            nets = {m: build(m, width, dev, models, depth) for m in ("sal", "bp")}
            times = {m: [] for m in nets}
            for m, (_, net) in nets.items():
                net.train_step(x, y, 1e-4)  # warm-up
            for _ in range(args.repeats):
                for m, (_, net) in nets.items():  # alternated
                    sync(dev)
                    t0 = time.perf_counter()
                    for _ in range(args.steps):
                        net.train_step(x, y, 1e-4)
                    sync(dev)
                    times[m].append((time.perf_counter() - t0) / args.steps)
            for m, (lone, net) in nets.items():
                net.load_into(lone)
                b = sum(bound(model, m, width, x[i], rate, bandwidth, depth) for i, model in enumerate(lone))
                best = min(times[m])
                if models == STAGE_SEEDS.get(width, 1):
                    fractions[m].append(b / best)
                print(f"width {width:5d} {m.upper():>3}{'-4' if m == 'sal' else '  '} x{models}: repeats (ms/step) "
                      f"{' '.join(f'{t * 1e3:.2f}' for t in times[m])}; least {best * 1e3:.2f} "
                      f"({best * 1e3 / models:.2f} per model); bound {b * 1e3:.2f}; fraction {b / best:.2f}", flush=True)
            del nets
    print(f"deep_sal_roofline_fraction: {min(fractions['sal']):.3f}")
    print(f"deep_bp_roofline_fraction: {min(fractions['bp']):.3f}")


if __name__ == "__main__":
    main()
