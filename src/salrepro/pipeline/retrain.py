"""Retraining a profile from scratch, without putting its committed results at risk.

`dvc repro` reuses the run records committed under `results/<profile>/*/runs/`
(one JSON file per trained model), so on a fresh clone it trains nothing. To
check that the numbers come out of the code rather than out of those files:

    salrepro retrain                        # every stage of params.yaml's profile
    salrepro retrain --stage area_sweep     # one stage (all its datasets)
    dvc repro                               # then render the notebooks from the new runs

Each stage instance trains into a staging folder,
`results/<profile>/.retrain/<stage>/...`, reading no stored run. Only when
all of its runs are finished is each of its `runs/` folders swapped into
place (the old one renamed aside, the new one renamed in, the old one
deleted), so an interruption leaves the committed results exactly as they
were; running the same command again resumes the staging folder where it
stopped (runs stored, batches from their epoch checkpoints).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from . import registry
from .config import load_params

log = logging.getLogger("salrepro")
ORDER = registry.retrain_order()  # each stage after those whose runs it reuses: retrained first, they are in
# place before it reads them


def staging_root(results: Path) -> Path:
    return Path(results) / ".retrain"


def restore_interrupted_swaps(results: Path) -> None:
    """A swap interrupted between its two renames left `runs.old` and no `runs`: put the old one back."""
    for old in Path(results).glob("**/runs.old"):
        live = old.with_name("runs")
        if live.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, live)


def swap_in(new: Path, live: Path) -> None:
    """Put the finished `new` runs folder in the place of `live`."""
    old = live.with_name(live.name + ".old")
    live.parent.mkdir(parents=True, exist_ok=True)
    if live.exists():
        os.replace(live, old)
    os.replace(new, live)
    shutil.rmtree(old, ignore_errors=True)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a retrain: which stage instances were already swapped in, which were not."""

    def __init__(self, swapped: list[str], pending: list[str], results: str):
        super().__init__(f"swapped in: {swapped}; not swapped: {pending}")
        self.swapped, self.pending, self.results = swapped, pending, results


def retrain(params_file="params.yaml", stages=ORDER, results=None, progress=None) -> list[dict]:
    """Retrain the stages of a profile from scratch (see the module doc); returns what was swapped in, with times."""
    cfg = load_params(params_file)
    unknown = [s for s in stages if s not in ORDER]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; allowed: {list(ORDER)}")
    results = Path(results if results is not None else f"results/{cfg['profile']}")
    staging = staging_root(results)
    restore_interrupted_swaps(results)
    done = []
    instances = registry.instances(cfg, stages)
    name = lambda stage, dataset: stage + (f"@{dataset}" if dataset else "")  # noqa: E731
    try:
        for stage, dataset in instances:
            _retrain_one(cfg, params_file, stage, dataset, results, staging, progress, done)
    except KeyboardInterrupt:
        swapped = list(dict.fromkeys(name(d["stage"], d["dataset"]) for d in done))
        raise Interrupted(swapped, [name(s, d) for s, d in instances if name(s, d) not in swapped], str(results)) from None
    shutil.rmtree(staging, ignore_errors=True)
    return done


def _retrain_one(cfg, params_file, stage, dataset, results, staging, progress, done) -> None:
    """Retrain one stage instance into the staging folder, then swap its runs/ folders into place."""
    t0 = time.perf_counter()
    out = staging / stage / dataset if dataset else staging / stage
    registry.run(stage, dataset, params_file=params_file, out_dir=out, results=results, progress=progress)
    for new in sorted(out.glob("**/runs")):
        live = results / new.relative_to(staging)
        swap_in(new, live)
        done.append({"stage": stage, "dataset": dataset, "runs": str(live), "seconds": time.perf_counter() - t0})
    log.info("%s%s: retrained in %.0f s; its runs are in place", stage, f"@{dataset}" if dataset else "",
             time.perf_counter() - t0)
    shutil.rmtree(out, ignore_errors=True)
