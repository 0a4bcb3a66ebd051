"""A stage's batches as cluster jobs (pipeline/cluster.py), with real submitit: its local executor runs
every job as a process of this machine, the code path a SLURM job runs (pickled call, submitit's own
signal handling and requeue); SLURM itself is stood in for by three small scripts (sbatch, srun, sacct)
that only record what is submitted.

Each job imports torch and salrepro afresh (about 4 s of CPU here), so the tests start as few as they can:
ten job processes in all."""

import json
import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

submitit = pytest.importorskip("submitit", reason="the cluster executor needs submitit: pip install 'salrepro[cluster]'")

import salrepro  # noqa: E402
from salrepro import runs as ex  # noqa: E402
from salrepro.pipeline import cluster  # noqa: E402
from salrepro.pipeline.cluster import JobsPending, SubmititExecutor  # noqa: E402
from salrepro.pipeline import cli, stages  # noqa: E402
from salrepro.pipeline.config import load_params, read_yaml, stage_settings  # noqa: E402

TEST_PARAMS = Path(__file__).parent / "notebooks" / "params-test.yaml"


def params(tmp_path, methods=None) -> Path:
    """The test profile (Digits, 2 seeds, 2 epochs, width 32) with the area sweep's methods replaced (if given)."""
    cfg = read_yaml(TEST_PARAMS)  # composed: the test profile lists only what it changes from conf/base.yaml
    if methods is not None:
        cfg["area_sweep"]["methods"] = methods
    cfg["plan"]["workers"] = 1  # the profile's plan cuts the jobs: one batch per group here, not one per worker
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def sweep_argv(params_file, results) -> list[str]:
    return ["sweep", "area_sweep", "--params", str(params_file), "--results", str(results), "--executor", "submitit",
            "--cluster", "local", "--no-progress"]


@contextmanager
def one_thread():
    """Train here as a job does: one torch thread (its batches are small), so the floats are the same."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def wait_for(condition, what: str, seconds: float = 180.0) -> None:
    end = time.time() + seconds
    while not condition():
        if time.time() > end:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.05)


def runs_of(store: Path) -> dict:
    return {f.name: json.loads(f.read_text()) for f in ex.stored_files(store)}


def test_a_stage_fanned_out_over_jobs_lands_the_local_runners_records_then_renders_training_nothing(
        tmp_path, capsys, monkeypatch):
    p = params(tmp_path, ["bp", "sal-4", "moe-2"])  # three groups that cannot train together: three batches
    assert cli.main(sweep_argv(p, tmp_path / "cluster")) == 0
    out, err = capsys.readouterr()
    assert "3 job(s) of 1 CPU, 2 GB, 15 min submitted" in err
    assert "3 job(s): 0 queued, 0 running, 3 done, 0 failed" in err
    assert "MoE-2" in out  # rendered, the table printed
    notes = json.loads((tmp_path / "cluster/.jobs/jobs.json").read_text())
    assert len(notes) == 3 and len({n["job_id"] for n in notes.values()}) == 3  # one job per batch
    with one_thread():  # the local runner (SALREPRO_WORKERS=1: here, by the same plan)
        local = stages.run_stage("area_sweep", "digits", params_file=p, out_dir=tmp_path / "local/area_sweep/digits")
    got, want = runs_of(tmp_path / "cluster/area_sweep/digits/runs"), runs_of(tmp_path / "local/area_sweep/digits/runs")
    assert len(got) == 6 and got.keys() == want.keys()
    for name in got:  # bit for bit: the same batches, on the same CPU, with one thread
        assert got[name]["history"] == want[name]["history"] and got[name]["final"] == want[name]["final"]
        assert got[name]["batched_with"] == want[name]["batched_with"] == 2

    def trains(*args, **kwargs):
        raise AssertionError("the rendering path trained a batch")

    monkeypatch.setattr(ex.run, "train_planned", trains)  # the one function run_all trains a batch through
    # what dvc repro's notebook calls: everything is read from the store the jobs wrote
    rendered = stages.run_stage("area_sweep", "digits", params_file=p, out_dir=tmp_path / "cluster/area_sweep/digits")
    assert rendered.metrics == local.metrics
    assert runs_of(tmp_path / "cluster/area_sweep/digits/runs") == got  # untouched


def _task_of(job) -> int:
    """The process that runs a local job's call: the child of its controller (whose id is the job id)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == int(job.job_id):  # the parent's id
            return int(stat.parent.name)
    raise AssertionError(f"no task process under job {job.job_id}")


def test_a_job_preempted_then_killed_resumes_from_its_checkpoint(tmp_path):
    data = salrepro.load_dataset("digits", cache=False)
    configs = ex.grid("digits", [("sal", 4)], seeds=[0, 1, 2], epochs=40, batch_size=16, lr=0.01, hidden=128)
    with one_thread():
        want = ex.run_all(configs, data, device="cpu", progress=False)  # uninterrupted, here
    store, folder = tmp_path / "runs", tmp_path / "jobs"
    first = SubmititExecutor(folder, cluster="local", wait=False, poll_seconds=0.1, say=lambda line: None)
    with pytest.raises(JobsPending):
        ex.run_all(configs, data, store=store, device="cpu", executor=first)
    (tracked,) = first.jobs.values()
    ckpt, log = ex.batch_checkpoint(store, configs), tracked.job.paths.stderr
    wait_for(ckpt.exists, "the job's first epoch checkpoint")
    os.kill(_task_of(tracked.job), signal.SIGUSR2)  # what SLURM sends before it preempts a job
    wait_for(lambda: "resumed from its checkpoint" in log.read_text(), "submitit to requeue the job")
    assert "Requeued job" in tracked.job.paths.stdout.read_text()  # submitit's: the same job, started again
    tracked.job.cancel()  # then killed outright (scancel, a lost node): it ends without storing its runs
    wait_for(lambda: tracked.status() == "failed", "the cancelled job to end")
    assert not ex.stored_files(store) and ckpt.exists()

    said = []
    again = SubmititExecutor(folder, cluster="local", poll_seconds=0.1, say=said.append)  # the same command, later
    got = ex.run_all(configs, data, store=store, device="cpu", executor=again)
    (second,) = again.jobs.values()
    assert second.job.job_id != tracked.job.job_id  # resubmitted, since the first ended without its runs
    resumed = re.findall(r"resumed from its checkpoint after epoch (\d+) of 40", second.job.paths.stderr.read_text())
    assert len(resumed) == 1 and int(resumed[0]) >= 1
    assert [r["history"] for r in got] == [r["history"] for r in want]  # as if never interrupted, bit for bit
    assert [r["final"] for r in got] == [r["final"] for r in want]
    assert not ckpt.exists() and len(ex.stored_files(store)) == 3


def hammer(store: str, writer: int, go: str, seconds: float) -> int:
    """A job that writes 20 records into the store again and again for `seconds` (the writer's code path:
    runs.store_batch), once both writers are ready."""
    import time
    from pathlib import Path

    from salrepro import runs as ex

    configs = ex.grid("digits", [("bp", 1)], seeds=range(20), epochs=1, hidden=8)
    Path(go).with_name(f"ready-{writer}").touch()
    while not Path(go).exists():
        time.sleep(0.01)
    rounds, end = 0, time.time() + seconds
    while time.time() < end:
        ex.store_batch(store, configs, [{"key": c.key(), "writer": writer, "round": rounds, "pad": "x" * 20000}
                                        for c in configs])
        rounds += 1
    return rounds


def test_two_jobs_writing_one_store_at_once_lose_nothing(tmp_path):
    import cloudpickle

    store, go = tmp_path / "runs", tmp_path / "go"
    store.mkdir()
    executor = submitit.AutoExecutor(tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=5)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the jobs cannot import this test module
    try:
        jobs = executor.map_array(hammer, [str(store)] * 2, [0, 1], [str(go)] * 2, [1.5] * 2)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    wait_for(lambda: all((tmp_path / f"ready-{i}").exists() for i in (0, 1)), "both writers to start")
    go.touch()
    reads = 0
    while not all(job.done() for job in jobs):  # a reader meanwhile (the report): whole records or none
        for path in ex.stored_files(store):
            record = ex.read_record(path)
            assert record is None or record["pad"] == "x" * 20000
            reads += record is not None
    rounds = [job.result() for job in jobs]
    configs = ex.grid("digits", [("bp", 1)], seeds=range(20), epochs=1, hidden=8)
    final = [ex.load_stored(store, c) for c in configs]
    assert min(rounds) >= 2 and reads > 0  # both wrote, many times over, while it was being read
    assert all(r is not None and r["writer"] in (0, 1) for r in final)  # every record there, whole
    assert not list(store.glob(".tmp-*"))  # no writer's temporary left behind


def test_a_failed_job_is_named_with_its_error_and_log_and_the_same_command_resubmits_it(tmp_path, capsys):
    p, results = params(tmp_path, ["bp"]), tmp_path / "r"
    argv = sweep_argv(p, results)
    # a fault the job meets and the command does not: the dataset it maps is corrupt where it was staged
    staged, _ = cluster.stage_data(stage_settings(load_params(p), "area_sweep", "digits").load(), results / ".jobs",
                                   write=False)
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"not a dataset")
    assert cli.main(argv + ["--no-wait"]) == cli.EXIT_OK  # submitted, not waited for
    err = capsys.readouterr().err
    assert "1 job(s) of 1 CPU, 2 GB, 15 min submitted" in err and "queued or running for digits" in err
    assert cli.main(argv) == cli.EXIT_JOBS_FAILED  # the same command, later: follows the job, which fails
    err = capsys.readouterr().err
    assert "following 1 job(s) submitted earlier" in err and "submitted (" not in err  # not submitted twice
    (line,) = [line for line in err.splitlines() if " failed: " in line]
    assert re.search(r"job \d+ \(digits BP d2 w32 x2\) failed: \S*Error: .*; log: ", line)
    log = Path(line.rsplit("log: ", 1)[1])
    assert log.is_file() and "Traceback" in log.read_text()
    assert "run the same command again to resubmit" in err
    staged.unlink()  # the fault mended: the next command stages the dataset again
    assert cli.main(argv) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert "1 job(s) of 1 CPU, 2 GB, 15 min submitted" in err and "== area_sweep digits ==" in out
    assert len(ex.stored_files(results / "area_sweep/digits/runs")) == 2


FAKE_SLURM = {
    "sbatch": '#!/bin/sh\nn=$(ls "$FAKE_SLURM_LOG" | wc -l)\ncp "$1" "$FAKE_SLURM_LOG/script-$n.sh"\n'
              'echo "Submitted batch job $((4200 + n))"\n',
    "srun": "#!/bin/sh\nexit 0\n",
    "sacct": "#!/bin/sh\nexit 0\n",  # knows no job: submitit reads UNKNOWN (queued, just submitted)
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch, srun and sacct stand-ins on PATH; returns the folder where each sbatch script is kept."""
    bin_dir, submitted = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir(), submitted.mkdir()
    for name, text in FAKE_SLURM.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_LOG", str(submitted))
    return submitted


def test_slurm_jobs_ask_for_what_the_planner_estimates_and_a_second_command_submits_nothing_again(
        tmp_path, fake_slurm):
    submitted = fake_slurm
    data = salrepro.load_dataset("digits", cache=False)
    shared = dict(epochs=2, batch_size=16, lr=0.01)
    configs = (ex.grid("digits", [("bp", 1), ("sal", 4)], seeds=[0, 1], hidden=32, **shared)  # two small batches
               + ex.grid("digits", [("sal", 4)], seeds=[0], depth=8, hidden=1024, **shared)  # past the cache budget
               + ex.grid("digits", [("sal", 4)], seeds=[0], depth=64, hidden=4096, **shared))  # 17 GB: alone on a node

    def submit():
        executor = SubmititExecutor(tmp_path / "jobs", cluster="slurm", partition="cpu", wait=False, say=lambda line: None)
        with pytest.raises(JobsPending):
            ex.run_all(configs, data, store=tmp_path / "runs", device="auto", executor=executor)
        return executor

    executor = submit()
    scripts = [p.read_text() for p in sorted(submitted.glob("script-*.sh"))]
    assert len(scripts) == 3 and len(executor.jobs) == 4  # three sets of resources, four batches
    small, large, node = (next(s for s in scripts if needle in s) for needle in
                          ("--array=0-1%2", "--cpus-per-task=4", "--exclusive"))
    for script in scripts:
        assert "#SBATCH --partition=cpu" in script and "#SBATCH --signal=USR2@90" in script  # submitit's requeue signal
    assert "#SBATCH --cpus-per-task=1" in small and "#SBATCH --mem=2GB" in small and "#SBATCH --time=15" in small
    assert "--cpus-per-task" not in node
    node_gb = int(re.search(r"--mem=(\d+)GB", node).group(1))
    assert node_gb >= ex.training_bytes(configs[-1:]) / 2**30  # the planner's estimate, with its margin
    assert {t.job.job_id for t in executor.jobs.values()} == {"4200_0", "4200_1", "4201", "4202"}
    submit()  # the same command again: its jobs are queued (sacct does not know them yet): nothing resubmitted
    assert len(list(submitted.glob("script-*.sh"))) == 3


def test_a_stage_run_once_submits_all_its_jobs_before_it_returns(tmp_path, fake_slurm, capsys):
    test_params = params(tmp_path)  # the plan: one batch per group

    def sweep(stage):
        argv = ["sweep", stage, "--params", str(test_params), "--results", str(tmp_path / "r"), "--executor", "submitit",
                "--partition", "cpu", "--no-wait", "--no-progress"]
        assert cli.main(argv) == cli.EXIT_OK
        assert f"sweep: {stage}: jobs queued or running; run the same command again" in capsys.readouterr().err
        return len(list(fake_slurm.glob("script-*.sh")))

    assert sweep("calibration") == 2  # BP under each of its two input maps, both submitted
    # the study's first phase: both readings of its grid; their BP runs are the same batch, submitted once
    assert sweep("protocol_study") == 2 + 2
    notes = json.loads((tmp_path / "r/.jobs/jobs.json").read_text())
    assert sorted(n["batch"] for n in notes.values()) == sorted(
        ["digits BP d2 w32 x2"] * 2 + ["digits BP d2 w32 x2", "digits SAL-1..4 d2 w32 x4", "digits SAL-1..4 d2 w32 x4"])


def test_executor_options_need_the_executor_and_the_jobs_need_a_device_they_have(tmp_path, capsys):
    p = params(tmp_path, ["bp"])
    code = cli.main(["sweep", "area_sweep", "--params", str(p), "--partition", "cpu", "--no-wait"])
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == ("salrepro sweep: --partition, --no-wait: only with --executor submitit")
    assert cli.main(sweep_argv(p, tmp_path / "r") + ["--gpus-per-job", "1"]) == cli.EXIT_USAGE  # params: device cpu
    assert "--gpus-per-job 1 asks for GPUs its runs would not use" in capsys.readouterr().err
    with pytest.raises(ex.SetupError, match="add --gpus-per-job 1"):
        SubmititExecutor(tmp_path, cluster="local").device_for("cuda")
    with pytest.raises(ex.SetupError, match="not a device salrepro trains on"):
        SubmititExecutor(tmp_path, cluster="local", gpus_per_job=1).device_for("tpu")
    with pytest.raises(ex.SetupError, match="store"):
        ex.run_all([], None, executor=SubmititExecutor(tmp_path, cluster="local"))
