"""Benchmarks cannot rot: each one's --tiny mode runs the same code on CPU here, in seconds.

Each script runs in this process (`runpy`, as `python benchmarks/<script> --tiny` would run it, its stdout
captured): a process of its own would import torch and the package again, about 4 s of CPU each, more than
the toy sizes take. All five together take under 30 s of CPU on 2 cores (the goal; docs/developing.md, "Tests")."""

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tiny(script: str, *args: str, monkeypatch, capsys) -> tuple[int, str]:
    """`python benchmarks/<script> --tiny <args>`, in this process, on one torch thread (toy sizes gain nothing
    from more, and on a busy machine idle threads spin): (exit code, stdout)."""
    import torch

    monkeypatch.delenv("SALREPRO_DATA", raising=False)  # --tiny needs no data files
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / script), "--tiny", *args])
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as for a script: its folder first (deep_speed imports sweep_speed)
    threads, code = torch.get_num_threads(), 0
    torch.set_num_threads(1)
    try:
        runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        torch.set_num_threads(threads)
    return code, capsys.readouterr().out


def test_device_check_tiny_passes_and_writes_its_results(tmp_path, monkeypatch, capsys):
    out = tmp_path / "device.txt"
    code, said = run_tiny("device_check.py", "--out", str(out), monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, said[-3000:]
    text = out.read_text()
    assert text.splitlines()[-1] == "device_check: passed"
    for section in ("## 1. device tests", "## 2. no host synchronisation", "## 3. the largest net", "## 4. the paper profile"):
        assert section in text
    tests = text.split("## 1.")[1].split("## 2.")[0]
    assert re.search(r"\b\d\d+ tests collected\b", tests), tests  # the device tests found (--tiny: the suite runs them)
    for stage in ("area_sweep", "moe", "depth", "width"):
        assert f"   {stage}: " in text


@pytest.mark.parametrize("script, lines", [
    ("step_cost.py", ["sal_over_bp_b256_k16_cpu"]),
    ("deep_speed.py", ["deep_sal_roofline_fraction", "deep_bp_roofline_fraction"]),
    ("sweep_speed.py", ["digits_grid_speedup", "mnist_grid_roofline_fraction", "paper_grid_estimate_hours"]),
    ("plan_spread.py", ["plan_spread_max_seed_diff_pp", "plan_spread_welch_p"]),
])
def test_every_benchmark_runs_tiny_and_prints_its_machine_readable_lines(script, lines, monkeypatch, capsys):
    code, said = run_tiny(script, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, said[-3000:]
    tail = said.strip().splitlines()[-len(lines):]
    assert [ln.split(":")[0] for ln in tail] == lines
    for ln in tail:
        float(ln.split(":")[1])  # a number (nan allowed)


def test_there_is_no_benchmark_without_a_tiny_test():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    tested = {"step_cost.py", "deep_speed.py", "sweep_speed.py", "device_check.py", "plan_spread.py"}
    assert scripts == tested
