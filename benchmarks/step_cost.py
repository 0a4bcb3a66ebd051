"""Cost of one SAL training step relative to one BP step (issue: the package).

Shallow MNIST-sized net 784-256-10, batch 16 and 256, K = 1, 4, 16, on CPU
and on CUDA when present. Every ratio is measured in this one run: SAL and
BP steps are timed alternately on the same random batches (median of
repeated blocks), so machine noise hits both alike.

    python benchmarks/step_cost.py [--threads N] [--repeats R]
    python benchmarks/step_cost.py --tiny      # seconds, numbers meaningless (CI runs it)

Last line (machine-readable): `sal_over_bp_b256_k16_cpu: <ratio>`.
Goal: at batch 256, K = 16, SAL/BP <= 1.5 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import salrepro


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, xs, ys, device, steps):
    """Seconds per train_step, averaged over `steps` steps."""
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        model.train_step(xs[i % len(xs)], ys[i % len(ys)], 1e-4)
    sync(device)
    return (time.perf_counter() - t0) / steps


def measure(device, batch, K, repeats, steps):
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(batch, 784, generator=g).to(device) for _ in range(8)]
    ys = [torch.randint(0, 10, (batch,), generator=g).to(device) for _ in range(8)]
    sal = salrepro.build_model("sal", 784, 10, hidden=256, num_areas=K, seed=0).to(device)
    bp = salrepro.build_model("bp", 784, 10, hidden=256, seed=0).to(device)
    for m in (sal, bp):  # warm-up
        time_steps(m, xs, ys, device, 5)
    t_sal, t_bp = [], []
    for _ in range(repeats):
        t_sal.append(time_steps(sal, xs, ys, device, steps))
        t_bp.append(time_steps(bp, xs, ys, device, steps))
    return statistics.median(t_sal), statistics.median(t_bp)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per configuration; the median is kept")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--tiny", action="store_true",
                        help="one block of two steps per configuration: the same code in seconds (CI runs it)")
    args = parser.parse_args()
    if args.tiny:
        args.repeats, args.steps = 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    print(f"{'device':6} {'batch':>5} {'K':>3} {'SAL ms':>8} {'BP ms':>8} {'SAL/BP':>7}")
    ratios = {}
    for device in devices:
        for batch in (16, 256):
            for K in (1, 4, 16):
                t_sal, t_bp = measure(device, batch, K, args.repeats, args.steps)
                ratios[(device.type, batch, K)] = t_sal / t_bp
                print(f"{device.type:6} {batch:5d} {K:3d} {t_sal * 1e3:8.3f} {t_bp * 1e3:8.3f} {t_sal / t_bp:7.2f}")
    print(f"sal_over_bp_b256_k16_cpu: {ratios[('cpu', 256, 16)]:.3f}")


if __name__ == "__main__":
    main()
