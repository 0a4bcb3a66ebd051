"""A run's identity: its configuration (`RunConfig`, one trained model), the key its record is stored under
(the configuration and the results version), the package version and the commit of the code that ran it."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data import DATA_OPTIONS, DATASETS, IN_FEATURES, NUM_CLASSES, data_options
from ..method.models import label as method_label

log = logging.getLogger("salrepro")


def package_version() -> str:
    """salrepro's version, from the installed package's metadata (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("salrepro")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


@functools.lru_cache(maxsize=1)
def code_commit() -> dict:
    """The git commit of the checkout the package runs from, and whether its code (src/) differs from
    that commit: {"commit": sha or None (not a git checkout), "dirty": bool}. Asked once per process."""
    import subprocess

    root = Path(__file__).resolve().parents[3]  # the checkout: src/salrepro/runs/keys.py
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# Bump when a change to the package changes results (not when it only speeds
# things up): stored runs of another version are recomputed, never reused.
RESULTS_VERSION = "1"


# (input features, classes) of each dataset, to size batches before loading data.
DATA_SHAPES = {name: (IN_FEATURES[name], NUM_CLASSES[name]) for name in DATASETS}


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    method: str
    num_areas: int = 1  # K; run records and tables name it `areas`, as the paper's CSVs do
    depth: int = 2
    hidden: int = 256
    seed: int = 0
    epochs: int = 25
    batch_size: int = 16
    lr: float = 1e-4
    options: tuple = field(default=())  # sorted (name, value) pairs of method options
    data_options: tuple = field(default=())  # sorted (name, value) pairs of data options, defaults filled in (input_norm, ...)

    @property
    def label(self) -> str:
        """bp, SAL-4, MoE-4, ... as in the paper's tables."""
        return method_label(self.method, self.num_areas)

    def key(self) -> str:
        """Stable identity of the run (configuration + results version)."""
        opts = dict(self.data_options)
        if opts.get("split") == DATA_OPTIONS["split"][1]:
            del opts["split"]  # added after the results existed: named only when it is not the default
        fields = {**self.as_record(), "options": list(self.options), "data_options": sorted(opts.items())}
        if opts.get("input_norm", "unit") == "unit":
            # Before input_norm existed every run used [0, 1] inputs ("unit") and named only the data
            # options it changed: such runs keep the keys they had, so the pre-calibration results stay
            # readable. Every other map names all its options.
            legacy = {k: v for k, v in opts.items() if k != "input_norm" and v != DATA_OPTIONS[k][1]}
            fields["data_options"] = sorted(legacy.items())
            if not legacy:
                del fields["data_options"]
        blob = json.dumps({**fields, "v": RESULTS_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def as_record(self) -> dict:
        """The configuration as run records store it (K under `areas`, the name of the stored format)."""
        d = asdict(self)
        return {("areas" if k == "num_areas" else k): v for k, v in d.items()}

    def filename(self) -> str:
        return f"{self.dataset}-{self.method}-K{self.num_areas}-d{self.depth}-w{self.hidden}-s{self.seed}-{self.key()}.json"


def make_config(dataset, method, *, options=None, data_options=None, **kw) -> RunConfig:
    """A run's configuration; its data options are completed with their defaults (data.data_options),
    so every run names its input map, default or not, and runs under different maps never share a key."""
    return RunConfig(dataset=dataset, method=method, options=tuple(sorted((options or {}).items())),
                     data_options=tuple(sorted(_data_options(dataset, data_options).items())), **kw)


def _data_options(dataset, options) -> dict:
    return data_options(dataset, options) if dataset in DATASETS else dict(options or {})


def grid(dataset, methods, seeds, *, options=None, **shared) -> list[RunConfig]:
    """Every (method, K) pair of `methods` times every seed."""
    return [make_config(dataset, m, num_areas=k, seed=s, options=options, **shared) for m, k in methods for s in seeds]


def batch_id(configs: list[RunConfig]) -> str:
    return hashlib.sha256("".join(c.key() for c in configs).encode()).hexdigest()[:16]


