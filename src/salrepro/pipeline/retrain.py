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

Before a folder is swapped in, each new run is compared with the committed
record of the same name (`compare_records`), and where they agree the
committed file is put back byte for byte, so a retrain that reproduces the
results leaves `git status` clean and `dvc repro` with nothing to render:

- *bit-identical*: the history, final metrics and divergence equal exactly;
- *equal within the tolerance*: every accuracy, occupancy and epoch equal
  exactly, and every loss within `LOSS_RTOL` = 1e-4 relative. Float rounding
  differs between CPUs (Intel AVX-512 and AMD AVX2 kernels in MKL/oneDNN) and
  thread counts: measured, losses of the same run on an Intel Xeon and an AMD
  EPYC agree to 3.5e-5 relative or better in the shallow nets (README,
  "Retraining from scratch"; 1.2e-6 on the EPYC of issue 37). 1e-4 lies above
  that and below what any printed loss resolves (three decimals on losses of
  0.01-3). Accuracies and occupancies are counts of samples: rounding that moves
  no prediction leaves them exactly equal, and one that moves a prediction
  changes a reported number, so they get no tolerance;
- *changed*: anything else, and new runs with no committed record; the new
  record replaces the committed one, and the command names it.

Committed records that the profile no longer trains (the first protocol's
`unit` runs kept beside the cpu profile's) are kept: a retrain replaces only
the runs it made.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
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


LOSS_RTOL = 1e-4  # a retrained loss this close (relative) to the committed one is the same result (module doc)


def _relative(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|); 0 for equal values (two NaNs included), inf where only one is finite."""
    if a == b or math.isnan(a) and math.isnan(b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def _differences(new, old, key: str, out: list) -> bool:
    """Walk two parsed records side by side; collect each loss's relative difference in `out`; False at the
    first difference that no tolerance covers (a structure, a count, an accuracy)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return new.keys() == old.keys() and all(_differences(new[k], old[k], k, out) for k in new)
    if isinstance(new, list) and isinstance(old, list):
        return len(new) == len(old) and all(_differences(a, b, key, out) for a, b in zip(new, old))
    if isinstance(new, float) and isinstance(old, float) and "loss" in key:
        out.append(_relative(new, old))
        return True
    if isinstance(new, float) and isinstance(old, float) and math.isnan(new) and math.isnan(old):
        return True
    return type(new) is type(old) and new == old


def compare_records(new: dict, old: dict) -> tuple[str, float]:
    """("identical" | "within" | "changed", the largest relative loss difference) of a retrained run record
    against the committed one, on what the run computed (history, final metrics, divergence), not on the
    circumstances (seconds, machine, versions). See the module doc for the tolerance and why."""
    losses: list[float] = []
    same = all(_differences(new.get(k), old.get(k), k, losses) for k in ("history", "final", "diverged"))
    largest = max(losses, default=0.0)
    if not same:
        return "changed", largest
    if largest == 0.0:
        return "identical", 0.0
    return ("within" if largest <= LOSS_RTOL else "changed"), largest


@dataclass
class Kept:
    """What `keep_unchanged` did to one stage instance's runs: counts, and the names of changed runs."""
    identical: int = 0
    within: int = 0
    largest_within: float = 0.0  # the largest relative loss difference among the `within` runs
    changed: list = field(default_factory=list)  # (run file, why)
    carried: int = 0  # committed records the retrain did not make, kept

    def add(self, other: "Kept") -> None:
        self.identical += other.identical
        self.within += other.within
        self.largest_within = max(self.largest_within, other.largest_within)
        self.changed += other.changed
        self.carried += other.carried


def keep_unchanged(new: Path, live: Path, name: str = "") -> Kept:
    """Before `new` replaces `live`: put the committed bytes back into `new` for every run that agrees with
    its committed record (bit-identical or within the tolerance), and carry over the committed records the
    retrain did not make. `name` prefixes the changed runs' names."""
    kept = Kept()
    for path in sorted(Path(new).glob("*.json")):
        committed = Path(live) / path.name
        if not committed.is_file():
            kept.changed.append((f"{name}{path.name}", "new: no committed record"))
            continue
        new_bytes, old_bytes = path.read_bytes(), committed.read_bytes()
        try:
            kind, largest = compare_records(json.loads(new_bytes), json.loads(old_bytes))
        except (ValueError, AttributeError):  # not a run record: the bytes decide
            kind, largest = ("identical" if new_bytes == old_bytes else "changed"), 0.0
        if kind == "changed":
            why = (f"losses differ by up to {largest:.1e} relative" if largest > LOSS_RTOL else
                   "an accuracy, occupancy or divergence differs" + (f" (losses by up to {largest:.1e} relative)"
                                                                     if largest else ""))
            kept.changed.append((f"{name}{path.name}", why))
            continue
        if kind == "identical":
            kept.identical += 1
        else:
            kept.within += 1
            kept.largest_within = max(kept.largest_within, largest)
        if new_bytes != old_bytes:
            path.write_bytes(old_bytes)
    made = {p.name for p in Path(new).glob("*.json")}
    for committed in sorted(Path(live).glob("*.json")) if Path(live).is_dir() else ():
        if committed.name not in made:
            shutil.copyfile(committed, Path(new) / committed.name)
            kept.carried += 1
    return kept


def summary_lines(done: list[dict]) -> list[str]:
    """What a retrain did to the committed runs, for the command to print."""
    total = Kept()
    for d in done:
        total.add(d["kept"])
    lines = [f"runs against the committed records: {total.identical} bit-identical; {total.within} equal within the "
             f"tolerance (losses within {LOSS_RTOL:g} relative, accuracies and occupancy identical"
             + (f"; largest loss difference {total.largest_within:.1e} relative" if total.within else "")
             + f"); {len(total.changed)} changed. Committed files kept byte for byte: {total.identical + total.within}"]
    if total.carried:
        lines.append(f"committed records this profile does not train, kept as they were: {total.carried}")
    lines += [f"  changed: {run}: {why}" for run, why in total.changed]
    return lines


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a retrain: which stage instances were already swapped in, which were not."""

    def __init__(self, swapped: list[str], pending: list[str], results: str):
        super().__init__(f"swapped in: {swapped}; not swapped: {pending}")
        self.swapped, self.pending, self.results = swapped, pending, results


def retrain(params_file="params.yaml", stages=ORDER, results=None, progress=None) -> list[dict]:
    """Retrain the stages of a profile from scratch (see the module doc); returns what was swapped in: per runs/
    folder its stage, dataset, path, seconds and `kept` (a `Kept`: how its runs compared with the committed ones)."""
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
        kept = keep_unchanged(new, live, f"{live.relative_to(results)}/")
        swap_in(new, live)
        done.append({"stage": stage, "dataset": dataset, "runs": str(live), "seconds": time.perf_counter() - t0,
                     "kept": kept})
    log.info("%s%s: retrained in %.0f s; its runs are in place", stage, f"@{dataset}" if dataset else "",
             time.perf_counter() - t0)
    shutil.rmtree(out, ignore_errors=True)
