"""DVC end to end: the pipeline's cached outputs survive `dvc push` to a
remote and `dvc pull` into a fresh clone (a local folder as the remote)."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not (ROOT / ".git").exists() or shutil.which("dvc") is None, reason="needs a git checkout and the dvc command"
)


def sh(*cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_push_then_pull_into_a_fresh_clone(tmp_path):
    remote = tmp_path / "remote"
    first, second = tmp_path / "first", tmp_path / "second"
    sh("git", "clone", "-q", str(ROOT), str(first), cwd=tmp_path)
    sh("dvc", "repro", "prepare@digits", cwd=first)  # the DVC-cached data stage (after the params check it depends on)
    produced = first / "data/cache/digits.pt"
    digest = hashlib.md5(produced.read_bytes()).hexdigest()
    lock = yaml.safe_load((first / "dvc.lock").read_text())
    assert lock["stages"]["prepare@digits"]["outs"][0]["md5"] == digest
    sh("dvc", "remote", "add", "--local", "-d", "store", str(remote), cwd=first)
    sh("dvc", "push", "check", "prepare@digits", cwd=first)
    assert any(p.is_file() for p in remote.rglob("*"))

    sh("git", "clone", "-q", str(ROOT), str(second), cwd=tmp_path)
    assert not (second / "data/cache/digits.pt").exists()
    sh("dvc", "remote", "add", "--local", "-d", "store", str(remote), cwd=second)
    sh("dvc", "pull", "check", "prepare@digits", cwd=second)
    pulled = second / "data/cache/digits.pt"
    assert hashlib.md5(pulled.read_bytes()).hexdigest() == digest
    status = sh("dvc", "status", "prepare@digits", cwd=second)
    assert "changed" not in status


def repro(cwd, env=None):
    import os
    env = {k: v for k, v in os.environ.items() if k != "SALREPRO_DATA"} | (env or {})
    return subprocess.run(["dvc", "repro"], cwd=cwd, capture_output=True, text=True, env=env)


def changed_files(cwd) -> list[str]:
    return sorted(line.strip() for line in sh("git", "status", "--porcelain", "--untracked-files=all", cwd=cwd).splitlines())


def test_bad_params_stop_dvc_repro_before_any_output_is_removed(tmp_path):
    """A bad value, an unknown key or a dataset without files: `dvc repro` fails with one line naming
    the key, and nothing committed is touched (only the edited params.yaml differs from HEAD)."""
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(ROOT), str(clone), cwd=tmp_path)
    first = repro(clone)  # a fresh clone: the committed results are up to date, nothing trains
    assert first.returncode == 0, first.stderr[-2000:]
    assert changed_files(clone) == []
    params = clone / "params.yaml"
    good = params.read_text()
    cases = [
        (good.replace("  lr: 0.0001\n", '  lr: "fast"\n', 1), "area_sweep.lr: got 'fast'"),
        (good.replace("  lr: 0.0001\n", "  lr: 0.0001\n  lrr: 0.5\n", 1), "area_sweep.lrr: unknown key (a typo?)"),
        (good.replace("  root: null", "  root: /nonexistent-data-root", 1).replace("  digits: {}", "  digits: {}\n  mnist: {}", 1),
         "datasets.mnist: cannot run: missing"),
    ]
    for text, needle in cases:
        assert text != good
        params.write_text(text)
        r = repro(clone)
        said = r.stdout + r.stderr
        assert r.returncode != 0 and needle in said, said[-2000:]
        assert "Traceback" not in said
        assert sum(needle in line for line in said.splitlines()) == 1
        assert changed_files(clone) == ["M params.yaml"]  # every committed output still there, unchanged
        params.write_text(good)
    assert repro(clone).returncode == 0 and changed_files(clone) == []
    # each stage depends on its own code: an edit to the report re-renders the report, no other stage
    with open(clone / "src/salrepro/pipeline/report.py", "a") as f:
        f.write("# an edit\n")
    import json
    assert set(json.loads(sh("dvc", "status", "--json", cwd=clone))) == {"report"}


def test_dvc_plots_show_renders_offline(tmp_path):
    """The plots page embeds the figures as images and loads no script from the network."""
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(ROOT), str(clone), cwd=tmp_path)
    sh("dvc", "plots", "show", cwd=clone)
    page = (clone / "dvc_plots" / "index.html").read_text()
    assert "<script" not in page and page.count("<img") >= 5
    assert changed_files(clone) == []  # dvc_plots/ is ignored


def test_profile_switches_leave_no_trap(tmp_path):
    """`dvc exp run -S profile=quick` rewrites params.yaml byte for byte (git status stays clean). A switch
    to a profile whose data is missing: `salrepro profile cpu` refuses and changes nothing, so the next
    plain `dvc repro` runs; `dvc exp run -S profile=cpu` leaves params.yaml on cpu, and the next `dvc repro`
    stops at the check with the way back, which restores the committed file."""
    import os

    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(ROOT), str(clone), cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "SALREPRO_DATA"} | {"SALREPRO_DATA": str(tmp_path / "no-data")}
    run = lambda *cmd: subprocess.run(cmd, cwd=clone, capture_output=True, text=True, env=env)  # noqa: E731
    r = run("dvc", "exp", "run", "-S", "profile=quick")
    assert r.returncode == 0, r.stderr[-2000:]
    assert changed_files(clone) == []
    r = run("salrepro", "profile", "cpu")
    assert r.returncode == 3 and "params.yaml is unchanged" in r.stderr and changed_files(clone) == []
    assert repro(clone).returncode == 0 and changed_files(clone) == []
    r = run("dvc", "exp", "run", "-S", "profile=cpu")
    assert r.returncode != 0 and changed_files(clone) == ["M params.yaml"]
    r = repro(clone, {"SALREPRO_DATA": str(tmp_path / "no-data")})
    assert r.returncode != 0 and "`salrepro profile quick`" in r.stdout + r.stderr
    assert run("salrepro", "profile", "quick").returncode == 0
    assert repro(clone).returncode == 0 and changed_files(clone) == []
