"""The GPU check cannot rot between GPU runs: its --tiny mode runs the same code on CPU here."""

import subprocess
import sys
from pathlib import Path

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
