"""Planned batches as cluster jobs, through submitit: SLURM (or submitit's local processes) instead of workers.

    executor = SubmititExecutor("results/cpu/.jobs", cluster="slurm", partition="cpu")
    records = runs.run_all(configs, data, store="results/cpu/area_sweep/mnist/runs", executor=executor)

`runs.run_all` plans a grid's batches as it always does (`plan_batches`) and hands the batches
not yet stored to `SubmititExecutor.train`. Each batch becomes one job (`BatchJob`): the job trains it
(`runs.train_planned`, the function the local runner calls) and writes its records into the run
store itself (`runs.store_batch`: each record a temporary file renamed over its name, so that
any number of jobs write into one store on a shared filesystem and a reader sees a whole record or
none). The batches that need the same resources go together as one job array.

A job's resources come from the planner's estimates: memory from `runs.training_bytes`, its time
limit from `runs.batch_seconds` (both with a margin, rounded up to a few steps), CPUs from the
batch's size: one for a batch of small models (the local runner trains those in one-thread workers:
they gain little from a second thread), LARGE_JOB_CPUS for the deep and wide nets, whose steps are large
matrix products, and a node to itself for a model too large to share a batch with another
(`runs.MAX_LARGE_BATCH_BYTES`: the 4096-wide nets), which streams its weights from memory at
every step and wants all of the node's memory bandwidth.

Nothing here queues, places or retries: SLURM does, and submitit, which requeues a job that SLURM
preempts or whose time runs out (a `BatchJob` is `Checkpointable`: the requeued job calls the same batch
again, and `train_many` resumes it from its last epoch checkpoint in the store). What this module keeps
is a note of which job trains which batch (`jobs.json` in the jobs folder): the same command run again
follows the jobs still queued or running and submits again only the batches whose job ended without
storing them (an error, cancelled, out of memory, a node lost); those resume from their checkpoints too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

try:
    import submitit
    from submitit.core.utils import pickle_load
except ImportError as error:  # pragma: no cover
    raise ImportError("the submitit executor needs submitit: pip install 'salrepro[cluster]' (or pip install submitit)") \
        from error

from .. import runs as ex
from ..engine.train import unpack

log = logging.getLogger("salrepro")

# Resources of a job, from the planner's estimates. Memory: training_bytes (tested within 30% of what a
# net alone uses) with a margin, plus the process itself (Python, torch and salrepro imported: 0.72 GB
# resident measured on x86_64 Linux). Time: batch_seconds, four times over, plus the job's start. It
# estimates the training steps on one thread (within -9% and +16% of 23 measured batches of small nets);
# the cpu profile's recorded stage times (results/cpu/report/stage_times.csv: each epoch's evaluation
# included, two workers sharing two cores) ran 2.0 to 2.9 times its estimate: MNIST's Tables 2/3 70 min
# against 24, depth on Digits 53 against 26, width on Semeion 418 against 181. A job that still runs out
# of time is requeued by submitit and resumes from its checkpoint.
MEMORY_MARGIN, PROCESS_BYTES = 1.3, 1e9
TIME_MARGIN, START_SECONDS = 4.0, 300.0
LARGE_JOB_CPUS = 4  # the deep and wide nets (weights beyond the CPU batch budget): threads share their products
GPU_JOB_CPUS = 2
# Limits are rounded up to these steps, so that batches of similar size share one job array.
MEMORY_STEPS_GB = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
MINUTE_STEPS = (15, 30, 60, 120, 240, 480, 720, 1440, 2880)

# SLURM job states (sacct, as submitit reads them) of a job that has not ended. PREEMPTED too, as submitit
# counts it: its handler requeues a preempted job. A job SLURM has not reported yet ("UNKNOWN", just after
# submission) counts as queued for UNKNOWN_SECONDS.
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "SUSPENDED", "RESV_DEL_HOLD",
          "PREEMPTED"}
RUNNING = {"RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
UNKNOWN_SECONDS = 600.0


class JobsPending(Exception):
    """Not an error: jobs were submitted (or, in a dry run, planned) and have not all finished; the
    message says what to do next."""


class JobsFailed(Exception):
    """Some jobs ended without storing their runs; `failures` holds one line per job (its error and log)."""

    def __init__(self, failures: list[str]):
        super().__init__(f"{len(failures)} job(s) failed:\n" + "\n".join(failures))
        self.failures = failures


@dataclass(frozen=True)
class Resources:
    """What one job asks the scheduler for."""

    cpus: int  # CPUs, and the job's torch threads (whole_node: all the node has)
    gpus: int
    mem_gb: int
    minutes: int  # time limit
    whole_node: bool = False

    def describe(self) -> str:
        cpus = "a whole node" if self.whole_node else f"{self.cpus} CPU{'s' if self.cpus > 1 else ''}"
        gpus = f", {self.gpus} GPU{'s' if self.gpus > 1 else ''}" if self.gpus else ""
        hours = f"{self.minutes // 60} h" if self.minutes >= 60 else f"{self.minutes} min"
        return f"{cpus}{gpus}, {self.mem_gb} GB, {hours}"


def _step(value: float, steps) -> int:
    """The first step at least `value`; beyond the last, `value` rounded up."""
    return next((s for s in steps if s >= value), math.ceil(value))


def resources(batch: list[ex.RunConfig], data_bytes: float, gpus: int = 0) -> Resources:
    """A batch's job: memory and time from the planner's estimates, CPUs from the size of its models."""
    mem_gb = _step((ex.training_bytes(batch, data_bytes) * MEMORY_MARGIN + PROCESS_BYTES) / 2**30, MEMORY_STEPS_GB)
    # at most the last step (two days, what partitions commonly allow): a longer batch is requeued and resumes
    minutes = min(_step((ex.batch_seconds(batch) * TIME_MARGIN + START_SECONDS) / 60, MINUTE_STEPS), MINUTE_STEPS[-1])
    if gpus:
        return Resources(GPU_JOB_CPUS, gpus, mem_gb, minutes)
    if any(ex.weight_bytes(c) > ex.MAX_LARGE_BATCH_BYTES["cpu"] for c in batch):
        return Resources(0, 0, mem_gb, minutes, whole_node=True)
    small = ex.weight_bytes(batch[0]) <= ex.MAX_BATCH_BYTES["cpu"]
    return Resources(1 if small else LARGE_JOB_CPUS, 0, mem_gb, minutes)


def describe_batch(batch: list[ex.RunConfig]) -> str:
    """`mnist SAL-1..16 d2 w256 x10`: what a batch trains, for messages."""
    c, labels = batch[0], list(dict.fromkeys(x.label for x in batch))
    label = labels[0] if len(labels) == 1 else f"{labels[0]}..{labels[-1].rsplit('-', 1)[-1]}"
    return f"{c.dataset} {label} d{c.depth} w{c.hidden} x{len(batch)}"


class BatchJob(submitit.helpers.Checkpointable):
    """One job: train one planned batch and write its records into the run store.

    Checkpointable: when SLURM preempts the job or its time limit nears, submitit calls `checkpoint`
    (Checkpointable's: this same call again) and requeues the job; the new start resumes the batch from
    its last epoch checkpoint in the store (`runs.batch_checkpoint`). A job whose runs are all
    stored when it starts (a requeue after it wrote them, or a second job for the same batch) trains
    nothing."""

    def __init__(self, batch: list[ex.RunConfig], data_file: str, store: str, device: str, threads: int,
                 plan: ex.Plan | None = None):
        self.batch, self.data_file, self.store, self.device, self.threads = batch, data_file, store, device, threads
        self.plan = plan  # the plan that cut the batch, named in its records

    def __call__(self) -> dict:
        here = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(min(self.threads, here) if self.threads else here)
        _log_to_stderr()
        store, what = Path(self.store), describe_batch(self.batch)
        if all(ex.load_stored(store, c) is not None for c in self.batch):
            log.info("%s: every run is stored already; nothing to train", what)
            return {"trained": 0, "seconds": 0.0}
        log.info("%s: training on %s with %d thread(s) into %s", what, self.device, torch.get_num_threads(), store)
        data = torch.load(self.data_file, mmap=True, weights_only=False)  # the staged dataset, mapped, not copied
        t0, epochs = time.perf_counter(), self.batch[0].epochs
        records = ex.train_planned(self.batch, data, device=self.device, checkpoint=ex.batch_checkpoint(store, self.batch),
                                   on_epoch=lambda epoch: log.info("%s: epoch %d of %d", what, epoch, epochs),
                                   plan=getattr(self, "plan", None))
        ex.store_batch(store, self.batch, records)
        seconds = time.perf_counter() - t0
        log.info("%s: %d run(s) stored in %.1f s", what, len(records), seconds)
        return {"trained": len(records), "seconds": seconds}


def _log_to_stderr() -> None:
    """The package's log lines (resumes, epochs) into the job's error log, as the command line prints them."""
    logger = logging.getLogger("salrepro")
    if not any(getattr(h, "_salrepro_job", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("salrepro: %(message)s"))
        handler._salrepro_job = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def stage_data(data, folder: Path, write: bool = True) -> tuple[Path, float]:
    """The dataset written once into the jobs folder (`data/<name>-<hash>.pt`, named by its tensors, so
    that jobs of any stage training on the same data share one file) and its tensors' bytes. Jobs map
    the file rather than load the dataset again: they need no data root, and they train on exactly the
    tensors the command planned with."""
    tensors = unpack(data)
    digest = hashlib.sha256(type(data).__name__.encode() + str(getattr(data, "name", "")).encode())
    for t in tensors:
        digest.update(str((t.dtype, tuple(t.shape))).encode())
        digest.update(t.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy().data)
    path = folder / "data" / f"{getattr(data, 'name', 'data')}-{digest.hexdigest()[:16]}.pt"
    if write and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        torch.save(data, tmp)
        os.replace(tmp, path)
    return path, float(sum(t.numel() * t.element_size() for t in tensors))


@dataclass
class Tracked:
    """A submitted job and the batch it trains; its status is read from the scheduler and the store."""

    job: submitit.Job
    batch: list[ex.RunConfig]
    store: Path
    submitted: float
    final: str | None = None  # "done" or "failed" once the job has ended

    def status(self) -> str:
        """queued, running, done (every run of its batch is stored) or failed (ended without them)."""
        if self.final is None:
            state = job_state(self.job, self.submitted)
            if state != "ended":
                return state
            self.final = "done" if all(ex.load_stored(self.store, c) is not None for c in self.batch) else "failed"
        return self.final

    def failure(self) -> str:
        """One line: which job, which batch, its error, and its log."""
        return (f"job {self.job.job_id} ({describe_batch(self.batch)}) failed: {job_error(self.job)}; "
                f"log: {self.job.paths.stderr}")


def job_state(job: submitit.Job, submitted: float) -> str:
    """queued, running or ended, as the scheduler (or, for local jobs, the process) says."""
    if job.paths.result_pickle.exists():
        return "ended"
    state = job.state
    if isinstance(job, submitit.LocalJob):  # a process of this machine: running while it lives
        if state == "RUNNING" or (state.startswith("NO PROCESS") and _alive(int(job.job_id))):
            return "running"  # (NO PROCESS: submitted by an earlier command; its controller may still run)
        return "ended"
    state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 1234"
    if state in RUNNING:
        return "running"
    if state in QUEUED or (state == "UNKNOWN" and time.time() - submitted < UNKNOWN_SECONDS):
        return "queued"
    return "ended"


def _alive(pid: int) -> bool:
    """A submitit controller of this machine with that process id still runs (a reused id is not one)."""
    try:
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def job_error(job: submitit.Job) -> str:
    """Why an ended job stored nothing: the last line of its traceback, or how it ended."""
    if job.paths.result_pickle.exists():
        try:
            outcome, value = pickle_load(job.paths.result_pickle)
        except Exception as e:  # noqa: BLE001 (an unreadable result says so)
            return f"its result file is unreadable ({e})"
        if outcome == "error":
            lines = [line for line in str(value).strip().splitlines() if line.strip()]
            return lines[-1].strip() if lines else "an error without a message"
        return "it finished, but its runs are not in the store (was the store moved?)"
    return (f"it ended without a result (state {job.state}): cancelled, or killed for time, memory or a lost "
            f"node")


class SubmititExecutor:
    """Batches as jobs through submitit: `cluster="slurm"` (sbatch, job arrays) or `"local"` (submitit's
    local executor: one process per job, all started at once; for tests and a workstation).

    folder: the jobs folder (on a filesystem the cluster's nodes share): submitit's scripts and logs,
    the staged datasets, jobs.json. partition: SLURM's partition (None: the cluster's default).
    gpus_per_job: GPUs per job (0: CPU jobs); the batches are then planned for a GPU. wait: `train`
    returns when every job is done (raises JobsFailed if some failed); False: it raises JobsPending
    once submitted. dry_run: plan and describe the jobs, submit nothing (raises JobsPending).
    poll_seconds: how often a wait asks (default 1 s for local jobs; on SLURM 60 s, one sacct call for all)."""

    Pending = JobsPending  # what `train` raises when it does not wait (and in a dry run)

    def __init__(self, folder, *, cluster: str = "slurm", partition: str | None = None, gpus_per_job: int = 0,
                 wait: bool = True, dry_run: bool = False, poll_seconds: float | None = None, say=None):
        if cluster not in ("slurm", "local"):
            raise ex.SetupError(f"cluster {cluster!r}: slurm (sbatch) or local (local processes)")
        if cluster == "slurm" and not dry_run and shutil.which("srun") is None:
            raise ex.SetupError("executor submitit: no SLURM here (srun not found): run it on the cluster's login node, "
                                "or use --cluster local to run the jobs as processes of this machine")
        if isinstance(gpus_per_job, bool) or not isinstance(gpus_per_job, int) or gpus_per_job < 0:
            raise ex.SetupError(f"gpus per job: a whole number >= 0, got {gpus_per_job!r}")
        self.folder = Path(folder).resolve()
        self.cluster, self.partition, self.gpus = cluster, partition, gpus_per_job
        self.wait, self.dry_run = wait, dry_run
        self.poll = poll_seconds if poll_seconds is not None else (1.0 if cluster == "local" else 60.0)
        self.say = say or (lambda line: print(f"salrepro: {line}", file=sys.stderr, flush=True))
        self.jobs: dict[str, Tracked] = {}  # "store:batch id" -> its job, this command's and those it follows
        self.planned: list[tuple[str, Resources, int, float]] = []  # dry run: (what, resources, jobs, est. seconds)
        self._reported: set[str] = set()

    # -- the hook runs.run_all calls --------------------------------------------------------
    def device_for(self, device) -> torch.device:
        """The device the jobs train on (and the batches are planned for): CPU, or CUDA with GPUs per job.
        A device the jobs will not have is refused (SetupError)."""
        name = "auto" if device is None else str(device)
        if name not in ("auto", "cpu") and not name.startswith("cuda"):
            ex.resolve_device(name)  # not a device salrepro trains on: its message
        if self.gpus:
            if name == "cpu":
                raise ex.SetupError(f"device cpu: --gpus-per-job {self.gpus} asks for GPUs its runs would not use; "
                                    "set device: auto (or cuda) in the params, or drop --gpus-per-job")
            return torch.device("cuda")
        if name.startswith("cuda"):
            raise ex.SetupError(f"device {name!r}: the jobs get no GPU; add --gpus-per-job 1 (or set device: auto)")
        return torch.device("cpu")

    def train(self, batches: list[list[ex.RunConfig]], data_for, *, store, device="auto", desc="runs",
              plan: ex.Plan | None = None) -> None:
        """Have every batch trained by a job into `store`: follow the jobs of earlier commands that still
        train some of them, submit one job for each of the others (one job array per set of resources),
        then wait for them all (`wait`) or raise JobsPending. `data_for(config)`: a batch's dataset (its
        runs share their data options); `plan`: the plan that cut the batches, named in their records."""
        store, dev = Path(store).resolve(), self.device_for(device).type
        loader = data_for if callable(data_for) else (lambda config: data_for)
        earlier = self._read_notes()
        followed, new = 0, []
        for batch in batches:
            key = f"{store}:{ex.batch_id(batch)}"
            tracked = self.jobs.get(key) or self._tracked(earlier.get(key), batch, store)
            status = tracked.status() if tracked is not None else None
            if status in ("queued", "running"):
                self.jobs[key], followed = tracked, followed + 1
            elif status != "done":  # (done: its job stored it since run_all looked)
                new.append((key, batch))  # never submitted, or its job ended without storing it: (again) a job
        staged: dict[str, tuple[Path, float]] = {}
        groups: dict[Resources, list[tuple[str, list[ex.RunConfig], Path]]] = {}
        for key, batch in new:
            name = (batch[0].dataset, batch[0].data_options)  # e.g. a cross-validation fold: its own tensors
            if name not in staged:
                staged[name] = stage_data(loader(batch[0]), self.folder, write=not self.dry_run)
            path, data_bytes = staged[name]
            groups.setdefault(resources(batch, data_bytes, self.gpus), []).append((key, batch, path))
        if followed:
            self.say(f"{desc}: following {followed} job(s) submitted earlier, still queued or running")
        for res, members in groups.items():
            what = f"{desc}: {len(members)} job(s) of {res.describe()}"
            if self.dry_run:
                self.planned.append((desc, res, len(members), sum(ex.batch_seconds(b) for _, b, _ in members)))
                self.say(f"{what} (dry run, not submitted): " + "; ".join(describe_batch(b) for _, b, _ in members))
                continue
            jobs = self._submit(res, desc, [BatchJob(b, str(p), str(store), dev, res.cpus, plan) for _, b, p in members])
            now = time.time()
            for (key, batch, _), job in zip(members, jobs):
                self.jobs[key] = Tracked(job, batch, store, now)
            self._write_notes(earlier, {key: self.jobs[key] for key, _, _ in members})
            ids = f"{jobs[0].job_id}" + (f" .. {jobs[-1].job_id}" if len(jobs) > 1 else "")
            self.say(f"{what} submitted ({self.cluster} job{'s' if len(jobs) > 1 else ''} {ids}; logs in {self.folder})")
        if self.dry_run and new:
            raise JobsPending(f"{desc}: dry run, nothing submitted")
        if not followed and not new:
            return
        if not self.wait:
            raise JobsPending(f"{desc}: {followed + len(new)} job(s) queued or running")
        self.wait_all()

    # -- waiting ----------------------------------------------------------------------------------
    def counts(self) -> Counter:
        """The jobs of this command (and those it follows) by status; a newly failed one is said at once."""
        counts = Counter()
        for key, tracked in self.jobs.items():
            status = tracked.status()
            counts[status] += 1
            if status == "failed" and key not in self._reported:
                self._reported.add(key)
                self.say(tracked.failure())
        return counts

    def progress(self, counts: Counter) -> str:
        return (f"{sum(counts.values())} job(s): {counts['queued']} queued, {counts['running']} running, "
                f"{counts['done']} done, {counts['failed']} failed")

    def wait_all(self) -> None:
        """Wait until every job has ended, saying its progress when it changes (and every five minutes);
        raise JobsFailed naming each job that ended without storing its runs."""
        t0, said, last = time.time(), None, 0.0
        while True:
            if self.cluster == "slurm":  # one sacct call for every job (submitit's own would wait up to 10 min)
                submitit.SlurmJob.watcher.update()
            counts = self.counts()
            line = self.progress(counts)
            if line != said or time.time() - last > 300:
                self.say(f"{line} ({_elapsed(time.time() - t0)})")
                said, last = line, time.time()
            if not counts["queued"] and not counts["running"]:
                break
            time.sleep(self.poll)
        failed = [t.failure() for t in self.jobs.values() if t.status() == "failed"]
        if failed:
            raise JobsFailed(failed)

    # -- submitit -----------------------------------------------------------------------------------
    def _submit(self, res: Resources, desc: str, calls: list[BatchJob]) -> list[submitit.Job]:
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters(res, desc))
        return executor.submit_array(calls)

    def parameters(self, res: Resources, desc: str) -> dict:
        """submitit's parameters for jobs of these resources (AutoExecutor's names; slurm_ for SLURM's own)."""
        p = {"name": "salrepro-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", desc).strip("-"), "timeout_min": res.minutes,
             "mem_gb": res.mem_gb, "nodes": 1, "tasks_per_node": 1}
        if res.gpus:
            p["gpus_per_node"] = res.gpus
        if not res.whole_node:
            p["cpus_per_task"] = res.cpus
        if self.cluster == "slurm":
            if self.partition:
                p["slurm_partition"] = self.partition
            if res.whole_node:
                p["slurm_exclusive"] = True
        return p

    # -- jobs.json: which job trains which batch, for the next command ---------------------------------
    def _notes_file(self) -> Path:
        return self.folder / "jobs.json"

    def _read_notes(self) -> dict:
        try:
            return json.loads(self._notes_file().read_text())
        except (OSError, ValueError):
            return {}

    def _write_notes(self, earlier: dict, new: dict[str, Tracked]) -> None:
        earlier.update({key: {"job_id": t.job.job_id, "cluster": self.cluster, "submitted": t.submitted,
                              "batch": describe_batch(t.batch)} for key, t in new.items()})
        ex.write_json_atomic(self._notes_file(), earlier)

    def _tracked(self, note: dict | None, batch, store: Path) -> Tracked | None:
        """The job an earlier command submitted for this batch (None if none, or on another kind of cluster)."""
        if not note or note.get("cluster") != self.cluster:
            return None
        kind = submitit.SlurmJob if self.cluster == "slurm" else submitit.LocalJob
        return Tracked(kind(folder=self.folder, job_id=note["job_id"]), batch, store, float(note["submitted"]))


def _elapsed(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
