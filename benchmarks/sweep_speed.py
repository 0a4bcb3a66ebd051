"""Speed of whole sweeps: batched runner against one model at a time, and
against this machine's physical limit (issue: speed).

Measured in one run, printed as ratios:

1. Table 2 grid on Digits (bp + SAL-1..16, 5 seeds = 30 runs, 25 epochs,
   batch 16, lr 1e-4): wall time one model at a time (each by the plain
   single-model loop, `train`, with every thread) / the grid runner
   (`run_all`: models batched, and on a CPU the batches side by side in
   single-threaded workers).
2. One epoch of the same grid on MNIST: the same ratio (needs $SALREPRO_DATA
   with MNIST; skipped otherwise).
   Both grids are timed several times (`--digits-repeats`, default 5;
   `--repeats`, default 3, for MNIST), one at a time and batched
   alternating, and the least time of each is used: interference from the
   rest of a shared machine only ever adds time, and this one drifts for
   minutes at a time, so the least is the best estimate of each. Every
   repeat is printed.
3. Roofline of the MNIST grid: this run measures the dense float32 matmul rate
   (a 2048^3 matmul) and the memory bandwidth on 256 MB of real data: a copy
   (read + write) and an in-place add (read two, write one: the access
   pattern of the area update); the bound takes the faster of the two, the
   strictest. The least time a step can take is max(flops / rate, bytes /
   bandwidth), where bytes are the weights of the areas the step touches,
   read by the forward pass and read and written by the update (counted from
   the real routing of each step of each seed's model). Measured time against
   that bound, per configuration and for the grid (its wall time, model
   building and validation included). Per configuration, the machine's rate
   on it as the grid runner trains it: one batch of 5 seeds per worker
   (engine/workers.py: on a CPU, batches of small models train side by side,
   one single-threaded process per thread), the workers side by side, 600
   steps, per step of 5 models. A batch whose weights fit in the last-level
   cache can beat this DRAM bound (a fraction above 1). Beside it, where the
   time goes (the torch profiler over one more run of 5 seeds of each
   configuration, in this process: the profiler does not see workers):
   torch calls per step (as Python issues them) and leaf calls (the ops that
   do the work), and the shares of the run's wall time inside torch ops,
   inside leaf ops (kernels, with their own dispatch) and outside torch ops:
   Python, and on CPU MKL's grouped GEMM, which blas.py calls through ctypes,
   unseen by the profiler (SAL with K > 1).
4. From the measured MNIST step rate, the estimated wall time of the paper
   profile's full Table 2/3 grid (10 datasets, 30 runs each) on this device,
   scaling the per-step time with each dataset's input width (the first
   layer dominates both arithmetic and bytes).

    SALREPRO_DATA=../shared/data python benchmarks/sweep_speed.py [--device cuda]
    python benchmarks/sweep_speed.py --tiny      # the same code at toy sizes, in seconds (CI runs it)

Last three lines (machine-readable): `digits_grid_speedup: <x>`,
`mnist_grid_roofline_fraction: <y>`, `paper_grid_estimate_hours: <h>`.
Goals (issue 29): Digits speedup >= 6 on 2 CPU cores; MNIST grid >= 0.5 of its bound, and every
configuration of it >= 0.4.
"""

from __future__ import annotations

import argparse
import time

import torch

import salrepro
from salrepro import runs as ex
from salrepro.data import TRAIN_SIZES, DatasetError
from salrepro.engine import workers as pool

METHODS = [("bp", 1), ("sal", 1), ("sal", 2), ("sal", 4), ("sal", 8), ("sal", 16)]

def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def machine_limits(dev, tiny: bool = False) -> tuple[float, float, float]:
    """(float32 matmul flop/s, copy bytes/s, in-place add bytes/s) measured now (`tiny`: on small
    arrays, cache-resident: the numbers mean nothing, the code runs)."""
    n = 256 if tiny else 2048
    a = torch.randn(n, n, device=dev)
    for _ in range(3):
        a @ a
    sync(dev)
    t0, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ a
    sync(dev)
    rate = 2 * n**3 * reps / (time.perf_counter() - t0)
    # 256 MB of real data: an untouched torch.empty source reads as the kernel's
    # shared zero page, from cache, and overstated the copy bandwidth ~1.5x on 2 cores
    src = torch.randn((2**16 if tiny else 64 * 2**20), device=dev)
    dst = torch.randn((2**16 if tiny else 64 * 2**20), device=dev)
    rates = []
    for op, moved in ((lambda: dst.copy_(src), 2), (lambda: dst.add_(src), 3)):  # bytes moved per element
        op()
        sync(dev)
        t0, reps = time.perf_counter(), 10
        for _ in range(reps):
            op()
        sync(dev)
        rates.append(moved * src.numel() * 4 * reps / (time.perf_counter() - t0))
    return rate, rates[0], rates[1]


def grid_time(data, epochs, batched, device, seeds=range(5)) -> float:
    """Wall time of the grid: the batched runner, or each model alone by the
    plain single-model loop (`run_one`: `train`, the fastest way to train one
    model here; `run_all(batched=False)`, batches of one through the batched
    runner, takes ~15% longer and would flatter the ratio)."""
    configs = ex.grid(data.name, METHODS, seeds, epochs=epochs, batch_size=16, lr=1e-4, hidden=256)
    t0 = time.perf_counter()
    if batched:
        ex.run_all(configs, data, device=device, progress=False)
    else:
        for c in configs:
            ex.run_one(c, data, device=device)
    return time.perf_counter() - t0


def compare(data, epochs, device, repeats) -> tuple[float, float]:
    """Wall time of the grid one model at a time and batched, alternated
    `repeats` times; the least of each (the run least disturbed by whatever
    else the machine did meanwhile), with every repeat printed."""
    seq, bat = [], []
    for _ in range(repeats):
        seq.append(grid_time(data, epochs, False, device))
        bat.append(grid_time(data, epochs, True, device))
    print(f"  repeats (s): one at a time {' '.join(f'{t:.1f}' for t in seq)}; batched {' '.join(f'{t:.1f}' for t in bat)}")
    return min(seq), min(bat)


def synthetic_mnist(n: int = 16 * 20) -> "salrepro.data.Dataset":
    """A random set of MNIST's shape (784 inputs, 10 classes, n samples) for --tiny: no files needed."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 784, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)
    return salrepro.data.Dataset("mnist", x, y, x[:64], y[:64], {"synthetic": True, "classes": 10})


def step_bound(data, method, K, rate, bandwidth, seeds=range(5), steps=200, batch=16, hidden=256) -> float:
    """Least seconds per step of the models of this configuration (one per seed) together, each averaged
    over `steps` real batches (the areas a step touches counted from that model's own routing)."""
    n, C = data.in_features, data.num_classes
    area = 4 * (n * hidden + hidden)  # bytes of one first-layer area
    out = 4 * (hidden * C + C)
    flops = 2 * batch * (2 * n * hidden + 3 * hidden * C)  # forward + update of both layers (+ BP's dX)
    if K > 1:
        flops += 2 * batch * 2 * n * C  # router forward + selector update
    total = 0.0
    for seed in seeds:
        model = salrepro.build_model(method, n, C, hidden=hidden, num_areas=K, seed=seed)
        for i in range(steps):
            x = data.x_train[i * batch : (i + 1) * batch]
            touched = len(set(model.route(x)[0].tolist())) if K > 1 else 1
            byts = 3 * (touched * area + out + (4 * n * C if K > 1 else 0))
            total += max(flops / rate, byts / bandwidth)
    return total / steps


def where_time_goes(configs, data, device) -> dict:
    """Where a batch's time goes, from the torch profiler over one run of `data` (5 seeds trained
    together, as the grid trains them): torch calls per step (top-level ops, each one call from Python),
    leaf calls per step (the ops that do the work), time inside torch ops (dispatch and kernels) and the
    rest, outside torch ops: the engine's Python lines, and MKL's grouped GEMM (blas.py calls it through
    ctypes, which the profiler does not see); building, validation and the profiler's bookkeeping are
    included, so the shares are of this profiled run, not of the timed one."""
    from torch.profiler import ProfilerActivity, profile

    steps = -(-data.x_train.shape[0] // 16)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        ex.run_all(configs, data, device=device, progress=False, workers=1)  # in this process, where the profiler sees it
        wall = time.perf_counter() - t0
    events = list(prof.events())
    top = [e for e in events if e.cpu_parent is None]
    leaves = [e for e in events if not e.cpu_children]
    in_ops = sum(e.cpu_time_total for e in top) / 1e6
    in_leaves = sum(e.self_cpu_time_total for e in leaves) / 1e6
    return {"calls": len(top) / steps, "leaf_calls": len(leaves) / steps, "torch_share": in_ops / wall,
            "kernel_share": in_leaves / wall, "outside_share": 1 - in_ops / wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--data-root", default=None, help="folder with MNIST (default: $SALREPRO_DATA)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternated repeats of the MNIST timings (default 3)")
    parser.add_argument("--digits-repeats", type=int, default=5,
                        help="alternated repeats of the Digits grid timing, ~15 s each (default 5)")
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes (1 epoch of 160 Digits samples, a synthetic MNIST-shaped set of 5 steps, one "
                             "repeat, the profiler over 2 steps): the same code in seconds, so that CI keeps it "
                             "running; its numbers mean nothing")
    args = parser.parse_args()
    if args.tiny:
        args.repeats = args.digits_repeats = 1
    dev = ex.resolve_device(args.device)
    print(f"device: {ex.describe_device(dev)}; torch {torch.__version__}" + (" (--tiny: toy sizes)" if args.tiny else ""))
    cache = ex.last_level_cache_bytes()
    llc = f"last-level cache {cache / 2**20:.0f} MB" if cache else "last-level cache unknown"
    print(f"grid runner: batches of small models up to {ex.MAX_BATCH_BYTES[dev.type] / 1e6:.0f} MB ({llc}), "
          f"{pool.default_workers(dev)} worker(s) of one thread")
    rate, copy_bw, add_bw = machine_limits(dev, args.tiny)
    bandwidth = max(copy_bw, add_bw)  # the fastest the machine moved DRAM-sized data: the strictest bound
    print(f"measured limits: matmul {rate / 1e9:.1f} GFLOP/s, memory {copy_bw / 1e9:.1f} GB/s (256 MB copy), "
          f"{add_bw / 1e9:.1f} GB/s (256 MB in-place add); the bound uses {bandwidth / 1e9:.1f}")

    digits = salrepro.load_dataset("digits")
    if args.tiny:  # 10 steps an epoch
        digits = salrepro.data.Dataset("digits", digits.x_train[:160], digits.y_train[:160], digits.x_val[:64],
                                       digits.y_val[:64], digits.meta)
    epochs = 1 if args.tiny else 25
    t_seq, t_bat = compare(digits, epochs, dev, args.digits_repeats)
    speedup = t_seq / t_bat
    print(f"Digits Table 2 grid (30 runs x {epochs} epochs): one at a time {t_seq:.1f} s, batched {t_bat:.1f} s, "
          f"speedup {speedup:.2f}x")

    try:
        mnist = synthetic_mnist(16 * 5) if args.tiny else salrepro.load_dataset("mnist", root=args.data_root)
    except DatasetError as e:
        print(f"MNIST not available ({str(e).splitlines()[0]}): skipping the MNIST grid")
        print(f"digits_grid_speedup: {speedup:.3f}\nmnist_grid_roofline_fraction: nan\npaper_grid_estimate_hours: nan")
        return
    steps = -(-mnist.x_train.shape[0] // 16)
    t_seq, t_bat = compare(mnist, 1, dev, args.repeats)
    print(f"MNIST grid, 1 epoch (30 runs x {steps} steps): one at a time {t_seq:.1f} s, batched {t_bat:.1f} s, "
          f"speedup {t_seq / t_bat:.2f}x")

    print(f"{'config':8} {'bound ms/step':>13} {'measured ms/step':>16} {'fraction':>8} {'calls/step':>10} "
          f"{'leaf calls':>10} {'in torch':>8} {'in leaves':>9} {'outside':>7}   (per step of 5 seeds stacked; measured: "
          "the grid runner's wall time for 600 steps, one batch of 5 seeds per worker, the workers side by side, "
          "building and a 16-row validation included; the last five from the torch profiler over one more run of "
          "5 seeds in this process (workers=1): shares of a profiled run; outside: Python, and MKL's grouped GEMM "
          "through ctypes)")
    bound_grid = 0.0
    timed = 5 if args.tiny else 600  # steps per configuration
    sub = salrepro.data.Dataset("mnist", mnist.x_train[: 16 * timed], mnist.y_train[: 16 * timed],
                                mnist.x_val[:16], mnist.y_val[:16], mnist.meta)
    profiled = sub if not args.tiny else salrepro.data.Dataset("mnist", sub.x_train[:32], sub.y_train[:32],
                                                                sub.x_val, sub.y_val, sub.meta)
    workers = pool.default_workers(dev)
    for method, K in METHODS:
        bound = step_bound(mnist, method, K, rate, bandwidth, steps=min(timed, 200))
        # the machine's rate on this configuration as the grid trains it: one batch of 5 seeds per worker,
        # side by side (5 seeds, or 5 per worker); per step of 5 models
        configs = ex.grid("mnist", [(method, K)], range(5 * workers), epochs=1, batch_size=16, lr=1e-4, hidden=256)
        measured = []  # least of the repeats
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ex.run_all(configs, sub, device=dev, progress=False)
            measured.append((time.perf_counter() - t0) / (timed * workers))
        bound_grid += bound
        where = where_time_goes(configs[:5], profiled, dev)
        print(f"{ex.make_config('mnist', method, num_areas=K).label:8} {bound * 1e3:13.3f} {min(measured) * 1e3:16.3f} "
              f"{bound / min(measured):8.2f} {where['calls']:10.0f} {where['leaf_calls']:10.0f} {where['torch_share']:8.2f} "
              f"{where['kernel_share']:9.2f} {where['outside_share']:7.2f}")
    fraction = bound_grid * steps / t_bat
    print(f"MNIST grid: bound {bound_grid * steps:.1f} s per epoch, batched runner {t_bat:.1f} s (wall time, model "
          f"building and validation included): {fraction:.2f} of the limit")

    per_step_per_input = t_bat / (30 * steps * mnist.in_features)  # seconds per model-step per input feature
    inputs = dict(ex.DATA_SHAPES)
    hours = sum(30 * 25 * -(-TRAIN_SIZES[d] // 16) * per_step_per_input * inputs[d][0] for d in TRAIN_SIZES) / 3600
    print(f"paper Table 2/3 grid (10 datasets x 30 runs x 25 epochs), estimated from the MNIST rate: {hours:.1f} h")
    print(f"digits_grid_speedup: {speedup:.3f}")
    print(f"mnist_grid_roofline_fraction: {fraction:.3f}")
    print(f"paper_grid_estimate_hours: {hours:.2f}")


if __name__ == "__main__":
    main()
