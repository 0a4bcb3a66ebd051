"""Benchmarks cannot rot: each one's --tiny mode runs the same code on CPU here, in seconds."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_device_check_tiny_passes_and_writes_its_results(tmp_path):
    out = tmp_path / "device.txt"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    text = out.read_text()
    assert text.splitlines()[-1] == "device_check: passed"
    for section in ("## 1. device tests", "## 2. no host synchronisation", "## 3. the largest net", "## 4. the paper profile"):
        assert section in text
    assert "passed" in text.split("## 1.")[1].split("## 2.")[0]  # the device tests ran and passed
    for stage in ("area_sweep", "moe", "depth", "width"):
        assert f"   {stage}: " in text


@pytest.mark.parametrize("script, lines", [
    ("step_cost.py", ["sal_over_bp_b256_k16_cpu"]),
    ("deep_speed.py", ["deep_sal_roofline_fraction", "deep_bp_roofline_fraction"]),
    ("sweep_speed.py", ["digits_grid_speedup", "mnist_grid_roofline_fraction", "paper_grid_estimate_hours"]),
    ("plan_spread.py", ["plan_spread_max_seed_diff_pp", "plan_spread_welch_p"]),
])
def test_every_benchmark_runs_tiny_and_prints_its_machine_readable_lines(script, lines):
    import os

    env = {k: v for k, v in os.environ.items() if k != "SALREPRO_DATA"}  # --tiny needs no data files
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--tiny"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    tail = run.stdout.strip().splitlines()[-len(lines):]
    assert [ln.split(":")[0] for ln in tail] == lines
    for ln in tail:
        float(ln.split(":")[1])  # a number (nan allowed)


def test_there_is_no_benchmark_without_a_tiny_test():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    tested = {"step_cost.py", "deep_speed.py", "sweep_speed.py", "device_check.py"}
    assert scripts == tested
