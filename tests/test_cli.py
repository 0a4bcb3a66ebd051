"""The salrepro command (cli.py): what it prints and the exit codes."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salrepro.pipeline import cli


def test_help_explains_every_option(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--method", "--seeds", "--epochs", "--batch-size", "--lr", "--hidden", "--depth",
                 "--option", "--data-root", "--download", "--device", "--store", "--no-progress"):
        assert flag in out
    assert cli.main(["--help"]) == 0 and "Exit codes" in capsys.readouterr().out


def test_run_prints_a_table_and_stores_runs(tmp_path, capsys):
    args = ["run", "--method", "sal-4", "--seeds", "2", "--epochs", "2", "--hidden", "16", "--lr", "0.05",
            "--store", str(tmp_path), "--no-progress"]
    assert cli.main(args) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "SAL-4" in out and "val_accuracy_pct_mean" in out
    assert len(list(tmp_path.glob("*.json"))) == 2
    first = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    assert cli.main(args) == cli.EXIT_OK  # resumes: nothing recomputed
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.json")} == first


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["run", "--method", "adam"], cli.EXIT_USAGE, "--method"),
        (["run", "--lr", "0"], cli.EXIT_USAGE, "expected a number > 0"),
        (["run", "--seeds", "0"], cli.EXIT_USAGE, "expected an integer >= 1"),
        (["run", "--depth", "1"], cli.EXIT_USAGE, "expected an integer >= 2"),
        (["run", "--option", "divisor"], cli.EXIT_USAGE, "expected NAME=VALUE"),
        (["run", "--option", "divisr=sum", "--epochs", "1"], cli.EXIT_USAGE, "divisr: not an option"),
        (["run", "--batch-size", "100000", "--epochs", "1"], cli.EXIT_USAGE, "exceeds the 1437 training samples"),
        (["run", "--dataset", "imagenet"], cli.EXIT_USAGE, "invalid choice"),
        (["run", "--dataset", "mnist", "--data-root", "/nonexistent"], cli.EXIT_DATA, "is missing files"),
        (["sweep", "area_sweep", "--params", "/nonexistent.yaml"], cli.EXIT_USAGE, "no such params file"),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_code(args, code, needle, capsys):
    assert cli.main(args) == code
    assert needle in capsys.readouterr().err


def test_diverged_runs_exit_4(capsys):
    assert cli.main(["run", "--method", "bp", "--seeds", "1", "--epochs", "2", "--hidden", "8", "--lr", "1e20",
                     "--no-progress"]) == cli.EXIT_DIVERGED
    assert "True" in capsys.readouterr().out


def test_datasets_lists_what_is_missing(tmp_path, capsys):
    assert cli.main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "ready" in out and "mnist" in out and "missing" in out


def test_sweep_runs_a_params_section(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(open("tests/notebooks/params-test.yaml").read())
    assert cli.main(["sweep", "area_sweep", "--params", str(params), "--results", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "SAL-4" in capsys.readouterr().out
    assert json.loads((tmp_path / "r/area_sweep/digits/metrics.json").read_text())["val_accuracy_pct"]["SAL-4"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(["run", "sweep", "datasets", "--method", "sal-2", "bp", "moe-0", "--lr", "-1", "1e-3",
                                 "--seeds", "x", "--epochs", "0", "--option", "a=b", "=", "--depth", "3", "--help",
                                 "--bogus", "area_sweep", "--dataset", "nope"]), max_size=6))
def test_any_argument_list_ends_in_a_documented_exit_code(argv, capsys):
    """Random argument lists never crash: a documented exit code, no traceback.
    (Training is cut short: no argument list here asks for more than a fast run.)"""
    if "run" in argv and not any(a in argv for a in ("--help", "--bogus")):
        argv = argv + ["--epochs", "1", "--seeds", "1", "--hidden", "4", "--no-progress"]
    if argv[:1] == ["sweep"] or "sweep" in argv:
        argv = [a for a in argv if a != "sweep"]  # a real sweep is tested above; here only parsing matters
    code = cli.main(argv)
    assert code in (0, cli.EXIT_USAGE, cli.EXIT_DATA, cli.EXIT_DIVERGED)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("device", ["tpu", "cuda:7", "gpu"])
def test_an_unusable_device_is_one_line_and_exit_2(device, capsys):
    assert cli.main(["run", "--device", device, "--epochs", "1", "--seeds", "1", "--no-progress"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"device {device!r}" in err and "devices here: auto, cpu" in err


def test_cuda_without_a_gpu_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(cli_torch(), "cuda", type("NoCuda", (), {"is_available": staticmethod(lambda: False),
                                                                 "device_count": staticmethod(lambda: 0)}))
    assert cli.main(["run", "--device", "cuda", "--epochs", "1", "--no-progress"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == "salrepro run: device 'cuda': no such device on this machine; devices here: auto, cpu"


def cli_torch():
    from salrepro.runs import run as experiments
    return experiments.torch


def test_a_store_that_is_a_file_or_unwritable_is_one_line_naming_it(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli.main(["run", "--store", str(afile), "--epochs", "1", "--no-progress"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(afile) in err and "is a file" in err
    below_a_file = afile / "runs"
    assert cli.main(["run", "--store", str(below_a_file), "--epochs", "1", "--no-progress"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(below_a_file) in err and "cannot write there" in err


def _interrupt_after(n_epochs, monkeypatch):
    """Ctrl-C after n model-epochs of training (raised from the progress callback, as a real Ctrl-C would land)."""
    from salrepro.engine import batched
    real = batched.train_many
    seen = {"epochs": 0}

    def train_many(*a, on_epoch=None, **kw):
        def tick(epoch):
            seen["epochs"] += 1
            if seen["epochs"] > n_epochs:
                raise KeyboardInterrupt
            on_epoch(epoch)
        return real(*a, on_epoch=tick, **kw)

    from salrepro.runs import run as experiments
    monkeypatch.setattr(experiments, "train_many", train_many)


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    args = ["run", "--method", "bp", "--seeds", "2", "--epochs", "3", "--hidden", "8", "--lr", "0.05", "--no-progress"]
    _interrupt_after(2, monkeypatch)
    assert cli.main(args) == cli.EXIT_INTERRUPTED
    assert "nothing was kept (no --store): add --store DIR" in capsys.readouterr().err
    _interrupt_after(2, monkeypatch)
    store = tmp_path / "runs"
    assert cli.main(args + ["--store", str(store)]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert f"0 finished run(s) kept in {store} and the unfinished batch's checkpoint" in err
    assert "rerun the same command to resume" in err
    monkeypatch.undo()
    assert cli.main(args + ["--store", str(store)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "resumed from its checkpoint after epoch 2 of 3" in err
    assert cli.main(args + ["--store", str(store)]) == cli.EXIT_OK  # everything stored now
    assert "2 of 2 run(s) already stored: reused, not retrained" in capsys.readouterr().err


def test_progress_moves_at_every_epoch_of_a_batch(monkeypatch):
    from salrepro import runs as ex
    from salrepro.data import load_dataset
    updates = []
    real_update = ex.run.tqdm.update
    monkeypatch.setattr(ex.run.tqdm, "update", lambda self, n=1: (updates.append(n), real_update(self, n))[1])
    configs = [ex.make_config("digits", "bp", seed=s, hidden=8, epochs=3, batch_size=64) for s in range(2)]
    ex.run_all(configs, load_dataset("digits"), progress=False)
    assert updates == [2, 2, 2]  # one update per epoch for the two models trained together


def test_check_refuses_bad_params_and_missing_data_in_one_line(tmp_path, capsys):
    import yaml

    from salrepro.pipeline.config import read_yaml
    cfg = read_yaml("params.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(cfg))
    stamp = tmp_path / "stamp"
    assert cli.main(["check", "--params", str(good), "--stamp", str(stamp)]) == cli.EXIT_OK and stamp.exists()
    cfg["area_sweep"]["lrr"] = 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert cli.main(["check", "--params", str(bad)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "area_sweep.lrr: unknown key" in err
    cfg = read_yaml("params.yaml")
    cfg["datasets"]["mnist"] = {}
    cfg["data"]["root"] = str(tmp_path / "no-data")
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump(cfg))
    assert cli.main(["check", "--params", str(missing)]) == cli.EXIT_DATA
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "datasets.mnist: cannot run: missing" in err


def test_an_unexpected_error_exits_1_with_its_traceback():
    """Exit code 1 is for bugs: the traceback is kept, for the report."""
    import subprocess
    import sys
    code = "import sys; from salrepro.pipeline import cli; cli.cmd_datasets = lambda a: 1 / 0; sys.exit(cli.main(['datasets']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == cli.EXIT_ERROR == 1 and "ZeroDivisionError" in r.stderr


def test_prepare_and_readme_subcommands(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert cli.main(["prepare", "digits", "--cache-dir", str(cache)]) == cli.EXIT_OK
    assert (cache / "digits.pt").exists() and "digits:" in capsys.readouterr().out
    assert cli.main(["prepare", "mnist", "--cache-dir", str(cache)]) == cli.EXIT_USAGE  # not in the quick profile
    assert "not listed under datasets" in capsys.readouterr().err
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- replication-quick:begin (generated; do not edit) -->\nOLD-BLOCK-TEXT\n<!-- replication-quick:end -->\n")
    assert cli.main(["readme", "--profile", "quick", "--readme", str(readme)]) == cli.EXIT_OK
    text = readme.read_text()
    assert "OLD-BLOCK-TEXT" not in text and open("results/quick/report/summary.md").read().strip() in text


def test_the_committed_params_file_is_what_dvc_writes_for_the_quick_profile():
    """`dvc exp run -S profile=quick` rewrites params.yaml from conf/: byte for byte what is committed,
    so switching to quick leaves git status clean (the documentation lives in conf/profile/quick.yaml)."""
    from salrepro.pipeline.config import params_text, read_yaml

    root = Path(__file__).resolve().parent.parent
    assert (root / "params.yaml").read_text() == params_text(read_yaml(root / "conf/profile/quick.yaml"))


def test_a_profile_whose_data_is_missing_is_refused_and_params_stay(tmp_path, monkeypatch, capsys):
    from salrepro.pipeline.config import params_text

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    params = tmp_path / "params.yaml"
    params.write_text("unchanged\n")
    monkeypatch.setenv("SALREPRO_DATA", str(tmp_path / "nothing"))
    assert cli.main(["profile", "cpu", "--params", str(params)]) == cli.EXIT_DATA
    assert params.read_text() == "unchanged\n" and "is unchanged" in capsys.readouterr().err
    assert cli.main(["profile", "quick", "--params", str(params)]) == cli.EXIT_OK
    assert params.read_text() == (root / "params.yaml").read_text()
    assert cli.main(["profile", "huge", "--params", str(params)]) == cli.EXIT_USAGE
    assert "profiles here: cpu, paper, quick" in capsys.readouterr().err


def test_after_a_failed_switch_the_check_says_how_to_return(tmp_path, monkeypatch, capsys):
    """The trap of `dvc exp run -S profile=cpu` without the data: params.yaml is left on cpu and the next
    `dvc repro` stops at the check, whose message names the way back."""
    from salrepro.pipeline.config import params_text, read_yaml

    root = Path(__file__).resolve().parent.parent
    params = tmp_path / "params.yaml"
    params.write_text(params_text(read_yaml(root / "conf/profile/cpu.yaml")))
    monkeypatch.setenv("SALREPRO_DATA", str(tmp_path / "nothing"))
    assert cli.main(["check", "--params", str(params)]) == cli.EXIT_DATA
    err = capsys.readouterr().err
    assert "holds the cpu profile: `salrepro profile quick`" in err
    monkeypatch.chdir(root)
    assert cli.main(["profile", "quick", "--params", str(params)]) == cli.EXIT_OK
    assert cli.main(["check", "--params", str(params)]) == cli.EXIT_OK


def test_an_interrupted_retrain_says_which_stages_were_swapped_in(tmp_path, monkeypatch):
    from salrepro.pipeline import retrain

    def fake_run(stage, dataset, *, out_dir, **kw):  # every stage trains through registry.run
        if stage == "moe":
            raise KeyboardInterrupt
        (Path(out_dir) / ("digits/runs" if dataset is None else "runs")).mkdir(parents=True)

    monkeypatch.setattr(retrain.registry, "run", fake_run)
    params = Path(__file__).resolve().parent.parent / "params.yaml"
    with pytest.raises(retrain.Interrupted) as e:
        retrain.retrain(params, ("calibration", "area_sweep", "preset_sweep", "moe"), results=tmp_path / "quick")
    assert e.value.swapped == ["calibration", "area_sweep@digits"] and e.value.pending == ["moe@digits", "preset_sweep@digits"]
    assert (tmp_path / "quick/area_sweep/digits/runs").is_dir() and not (tmp_path / "quick/moe").exists()
    args = cli.build_parser().parse_args(["retrain"])
    text = cli._interrupted(args, e.value)
    assert f"swapped in (retrained, now in {tmp_path / 'quick'}): calibration, area_sweep@digits;" in text
    assert "not swapped (their committed runs untouched): moe@digits, preset_sweep@digits;" in text
    assert "<profile>" not in text and "PROFILE" not in text


def test_lr_as_the_paper_writes_it_passes_the_check_and_the_command_line(tmp_path, capsys):
    """`lr: 1e-4` in params.yaml and `--option NAME=1e-4` read as numbers (YAML 1.2, as DVC reads params)."""
    params = tmp_path / "params.yaml"
    params.write_text(Path("params.yaml").read_text().replace("  lr: 0.0001\n", "  lr: 1e-4\n"))
    assert "lr: 1e-4" in params.read_text()
    assert cli.main(["check", "--params", str(params)]) == cli.EXIT_OK, capsys.readouterr().err
    assert cli._option("feedback_scale=5E-1") == ("feedback_scale", 0.5)
    assert cli._option("divisor=sum") == ("divisor", "sum")


def test_the_usage_line_names_every_command_and_run_help_every_method(capsys):
    parser = cli.build_parser()
    commands = list(cli._subparsers(parser))
    assert {"run", "sweep", "datasets", "check", "profile", "retrain", "prepare", "readme"} <= set(commands)
    usage = " ".join(parser.format_usage().split())
    assert "{" + ",".join(commands) + "}" in usage
    assert cli.main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    from salrepro.method.models import METHODS
    for method in METHODS:
        assert (f"{method}-K" if method in ("sal", "moe", "salbp") else method) in text, method


@pytest.mark.parametrize("argv, usage", [(["run", "--bogus"], "usage: salrepro run "),
                                         (["check", "--bogus", "x"], "usage: salrepro check "),
                                         (["--bogus", "datasets"], "usage: salrepro datasets ")])
def test_an_unknown_option_is_told_with_its_command_s_usage(argv, usage, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments: " + " ".join(a for a in argv if a.startswith("--bogus") or a == "x") in err


def _say_many(i, path, together):
    """A worker (forked) logging through the command's handler to an unbuffered stderr, as PYTHONUNBUFFERED=1
    makes it: every write reaches the file at once."""
    import io
    import logging
    import os
    import sys

    sys.stderr = io.TextIOWrapper(io.FileIO(os.open(path, os.O_WRONLY | os.O_APPEND), "w"), write_through=True)
    log = logging.getLogger("salrepro")
    log.handlers = [cli._Say()]
    log.setLevel(logging.INFO)
    together.wait()  # both write at once, as two workers resuming do
    for n in range(2000):
        log.info("worker %d: resumed from its checkpoint after epoch %d", i, n)
    sys.stderr.flush()


def test_log_lines_of_processes_side_by_side_never_share_a_line(tmp_path):
    """Two workers resuming at once each log a line; with an unbuffered stderr (PYTHONUNBUFFERED=1, common
    in containers) `print` wrote the text and its newline apart, and two workers' lines came out as one."""
    import multiprocessing as mp

    path = tmp_path / "stderr.txt"
    path.touch()
    ctx = mp.get_context("fork")
    together = ctx.Barrier(2)
    workers = [ctx.Process(target=_say_many, args=(i, str(path), together)) for i in range(2)]
    [w.start() for w in workers]
    [w.join(60) for w in workers]
    lines = path.read_text().splitlines()
    assert len(lines) == 4000 and all(ln.startswith("salrepro: worker ") and ln.count("salrepro:") == 1 for ln in lines)


def test_the_readme_s_run_stores_leave_the_working_tree_clean():
    """`salrepro run --store runs/` as the usage page shows it writes where git does not look (.gitignore: /runs/)."""
    import re
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs a git checkout")
    stores = re.findall(r"--store (\S+)", (root / "docs" / "usage.md").read_text())
    assert stores
    for store in stores:
        record = str(Path(store) / "digits-sal-K4-d2-w256-s0-0123456789abcdef.json")
        assert subprocess.run(["git", "check-ignore", "-q", record], cwd=root).returncode == 0, store
