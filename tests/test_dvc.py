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
    sh("dvc", "repro", "--single-item", "prepare@digits", cwd=first)  # the DVC-cached data stage
    produced = first / "data/cache/digits.pt"
    digest = hashlib.md5(produced.read_bytes()).hexdigest()
    lock = yaml.safe_load((first / "dvc.lock").read_text())
    assert lock["stages"]["prepare@digits"]["outs"][0]["md5"] == digest
    sh("dvc", "remote", "add", "--local", "-d", "store", str(remote), cwd=first)
    sh("dvc", "push", "prepare@digits", cwd=first)
    assert any(p.is_file() for p in remote.rglob("*"))

    sh("git", "clone", "-q", str(ROOT), str(second), cwd=tmp_path)
    assert not (second / "data/cache/digits.pt").exists()
    sh("dvc", "remote", "add", "--local", "-d", "store", str(remote), cwd=second)
    sh("dvc", "pull", "prepare@digits", cwd=second)
    pulled = second / "data/cache/digits.pt"
    assert hashlib.md5(pulled.read_bytes()).hexdigest() == digest
    status = sh("dvc", "status", "prepare@digits", cwd=second)
    assert "changed" not in status
