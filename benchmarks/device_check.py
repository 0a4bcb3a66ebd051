"""Everything a GPU must show, in one command (issue: ready for the GPU).

    python benchmarks/device_check.py            # on a CUDA machine: under 8 minutes on one GPU
    python benchmarks/device_check.py --tiny     # the same code on CPU at toy sizes (CI runs it)

1. Device tests: `pytest -m device --device <dev>` (tests/test_device.py: dispatch paths, the batched
   engine for SAL, BP, MoE and SAL-BP against each model alone on CPU, the run store). --tiny: collected,
   not run (`--collect-only`): on CPU the test suite runs them itself, and twice would only cost time.
2. No host sync in the step loop: N batched SAL (mixed K), BP and MoE steps under
   `torch.cuda.set_sync_debug_mode("error")`; any synchronisation inside the loop fails the check
   (losses stay on the device and are read once after the loop). Skipped on CPU (--tiny).
3. The paper's largest net (depth 64, width 4096, K = 4, the 9216-input STL-10/PCam shape, 2
   classes) for SAL and BP: built on the device, training steps at batch 16, peak memory
   (`torch.cuda.max_memory_allocated`) and time per step. If it does not fit, a one-line message
   with the sizes. --tiny: depth 4, width 64, 96 inputs.
4. The paper profile's hours, stage by stage (Tables 2/3, MoE, depth, width), estimated from step
   rates measured here on three representative batches (shallow Table 2 grid, deep width-256
   pair, the largest net), each configuration's step scaled by its weights against its
   representative's; plus `benchmarks/sweep_speed.py` run on the device (not with --tiny).
5. Everything is written to `benchmarks/results/device-<gpu name>.txt` (--tiny: `--out`, default a
   temporary file) with the device, driver, torch version and date.

Exit code 0 when every check passed, 1 otherwise. Last line: `device_check: passed` or `device_check: FAILED (...)`.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import salrepro
from salrepro.engine.batched import BATCHES
from salrepro.pipeline.config import load_params, stage_settings
from salrepro.data import IN_FEATURES, NUM_CLASSES, TRAIN_SIZES
from salrepro.pipeline.stages import stage_configs

ROOT = Path(__file__).resolve().parent.parent
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def models(method: str, ks, dev, n_in: int, classes: int, hidden: int, depth: int):
    return [salrepro.build_model(method, n_in, classes, hidden=hidden, depth=depth, num_areas=k, seed=s, device=dev)
            for s, k in enumerate(ks)]


def batch(method: str, ks, dev, n_in: int, classes: int, hidden: int, depth: int):
    """The batched engine over len(ks) models of `method` (K = ks[i], seed i) on `dev`."""
    ms = models(method, ks, dev, n_in, classes, hidden, depth)
    return BATCHES[type(ms[0])](ms)


def active_weights(method: str, k: int, n_in: int, classes: int, hidden: int, depth: int) -> int:
    """Weights that compute one sample, counted on the meta device."""
    return salrepro.count_parameters(models(method, [k], "meta", n_in, classes, hidden, depth)[0]).active


def step_time(net, dev, N: int, n_in: int, classes: int, batch: int, steps: int) -> float:
    """Seconds per batched training step (the least of two timed passes, after one warm-up step)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, batch, n_in, generator=g).to(dev)
    y = torch.randint(0, classes, (N, batch), generator=g).to(dev)
    net.train_step(x, y, 1e-4)
    best = math.inf
    for _ in range(2):
        sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            net.train_step(x, y, 1e-4)
        sync(dev)
        best = min(best, (time.perf_counter() - t) / steps)
    return best


# ---------------------------------------------------------------------------
def check_tests(dev: torch.device, tiny: bool = False) -> bool:
    say(f"## 1. device tests (pytest -m device --device {dev}{'; --tiny: collected, not run' if tiny else ''})")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-p", "no:nbval",  # no
           "-m", "device", f"--device={dev}", *(["--collect-only"] if tiny else []),  # notebook plugin: seconds saved
           str(ROOT / "tests" / "test_device.py")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (out.stdout + out.stderr).strip().splitlines()[-1:] or ["(no output)"]
    say(f"   {tail[0]}")
    return out.returncode == 0


def check_no_sync(dev: torch.device, tiny: bool) -> bool:
    say("## 2. no host synchronisation inside the step loop")
    specs = [("sal", [1, 2, 4, 8, 16] * 2), ("bp", [1] * 5), ("moe", [4] * 5), ("salbp", [1, 4, 16])]
    n_in, classes, hidden, steps = (64, 10, 32, 3) if tiny else (784, 10, 256, 20)
    ok = True
    for method, ks in specs:
        net = batch(method, ks, dev, n_in, classes, hidden, 2)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(len(ks), 16, n_in, generator=g).to(dev)
        y = torch.randint(0, classes, (len(ks), 16), generator=g).to(dev)
        net.train_step(x, y, 1e-4)  # warm-up (allocations, kernel choice) outside the check
        total = torch.zeros(len(ks), device=dev, dtype=torch.float64)
        try:
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            for _ in range(steps):
                total.add_(net.train_step(x, y, 1e-4))
        except RuntimeError as err:
            ok = False
            say(f"   {method}: FAILED, a synchronisation inside the step loop: {str(err).splitlines()[0]}")
            continue
        finally:
            if dev.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
        finite = bool(torch.isfinite(total).all())  # the one read, after the loop
        ok &= finite
        mode = "checked" if dev.type == "cuda" else "ran (sync check skipped on CPU)"
        say(f"   {method} ({len(ks)} models, K {sorted(set(ks))}): {steps} steps {mode}; losses finite: {finite}")
    return ok


def check_largest(dev: torch.device, tiny: bool) -> tuple[bool, dict]:
    depth, width, n_in, classes, K = (4, 64, 96, 2, 4) if tiny else (64, 4096, 9216, 2, 4)
    say(f"## 3. the largest net: depth {depth}, width {width}, K = {K}, {n_in} inputs, {classes} classes, batch 16")
    ok, rates = True, {}
    for method, k in (("sal", K), ("bp", 1)):
        total, active = salrepro.count_parameters(salrepro.build_model(method, n_in, classes, hidden=width, depth=depth,
                                                                        num_areas=k, device="meta"))
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            net = batch(method, [k], dev, n_in, classes, width, depth)
            t = step_time(net, dev, 1, n_in, classes, 16, 2 if tiny else 5)
            peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
            rates[method] = (t, active)
            say(f"   {method}-{k}: {total / 1e6:.2f}M weights ({active / 1e6:.2f}M active), {t * 1e3:.1f} ms per step, "
                f"peak memory {peak:.1f} GiB")
            del net
        except torch.OutOfMemoryError:
            ok = False
            say(f"   {method}-{k}: does NOT fit on {dev}: {total / 1e9:.2f}B weights = {4 * total / 2**30:.1f} GiB in float32 "
                f"before activations and the update's temporaries")
    return ok, rates


def estimate_hours(dev: torch.device, tiny: bool, largest: dict) -> None:
    say("## 4. the paper profile's hours, estimated from step rates measured here"
        + (" (toy sizes: the hours mean nothing)" if tiny else ""))
    cfg = load_params(ROOT / "conf" / "profile" / "paper.yaml")
    n_in, classes = 784, 10
    ks = [1, 2, 4, 8, 16] * 5
    steps = 3 if tiny else 20
    hidden = 32 if tiny else 256
    reps = {}
    net = batch("sal", ks, dev, n_in, classes, hidden, 2)
    reps["shallow"] = (step_time(net, dev, len(ks), n_in, classes, 16, steps) / len(ks),
                       active_weights("sal", 4, n_in, classes, hidden, 2))
    d = 8 if tiny else 64
    net = batch("sal", [4] * 5, dev, n_in, classes, hidden, d)
    reps["deep"] = (step_time(net, dev, 5, n_in, classes, 16, steps) / 5, active_weights("sal", 4, n_in, classes, hidden, d))
    if "sal" in largest:
        reps["largest"] = largest["sal"]
    for name, (t, active) in reps.items():
        say(f"   representative {name}: {t * 1e3:.3f} ms per model-step ({active / 1e6:.2f}M active weights)")
    for stage in ("area_sweep", "moe", "depth", "width"):
        hours = 0.0
        for ds in cfg[stage]["datasets"]:
            s = stage_settings(cfg, stage, ds)
            for c in stage_configs(stage, s):
                m = salrepro.build_model(c.method, IN_FEATURES[c.dataset], NUM_CLASSES[c.dataset], hidden=c.hidden,
                                         depth=c.depth, num_areas=c.num_areas, device="meta")
                active = salrepro.count_parameters(m).active
                rep = "shallow" if c.depth == 2 else ("largest" if c.hidden >= 2048 and "largest" in reps else "deep")
                t, a = reps[rep]
                per_step = max(t * active / a, reps["shallow"][0])  # a step never costs less than the shallow grid's
                n_steps = c.epochs * math.ceil(TRAIN_SIZES[c.dataset] / c.batch_size)
                hours += per_step * n_steps / 3600
        say(f"   {stage}: {hours:.1f} h")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="toy sizes on CPU (what CI runs)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--out", default=None, help="results file (default: benchmarks/results/device-<gpu>.txt; "
                                                    "--tiny: a temporary file)")
    args = parser.parse_args()
    dev = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("device_check: no CUDA device here; run with --tiny for the CPU check", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    driver = torch.version.cuda if dev.type == "cuda" else "none"
    start = time.perf_counter()
    say(f"# benchmarks/device_check.py{' --tiny' if args.tiny else ''}, {datetime.date.today()}")
    say(f"device: {name}; CUDA {driver}; torch {torch.__version__}; salrepro {salrepro.__version__}")
    results = {"tests": check_tests(dev, args.tiny), "no_sync": check_no_sync(dev, args.tiny)}
    results["largest"], largest = check_largest(dev, args.tiny)
    estimate_hours(dev, args.tiny, largest)
    if not args.tiny:
        say("## 5. benchmarks/sweep_speed.py on the device")
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweep_speed.py"), "--device", str(dev),
                              "--repeats", "1", "--digits-repeats", "1"], cwd=ROOT, capture_output=True, text=True)
        for line in out.stdout.strip().splitlines()[-3:]:
            say(f"   {line}")
    failed = [k for k, v in results.items() if not v]
    say(f"wall time: {time.perf_counter() - start:.0f} s")
    say("device_check: passed" if not failed else f"device_check: FAILED ({', '.join(failed)})")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    out_path = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / f"device-{slug}-tiny.txt" if args.tiny
                                                  else ROOT / "benchmarks" / "results" / f"device-{slug}.txt")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(LINES) + "\n")
    print(f"written: {out_path}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
