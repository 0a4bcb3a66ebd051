"""What one stage instance reads from params.yaml, typed.

    s = config.stage_settings(cfg, "area_sweep", "digits")   # an area_sweep.Table2Settings
    s.methods, s.seeds, s.lr, s.load()

Every instance has the fields of `Instance` (its dataset and the profile-wide settings); a stage's
own fields are those of its settings class, which its `Stage` names (registry.py) and whose `read`
takes them from its params section and from the sections it shares training with. The classes
live with their experiments (area_sweep.py, scaling.py, moe.py, tuned.py); the two bases are here.
The params schema (schema.py) checks the file before any of this reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import load_dataset


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One stage instance: the stage, its dataset, and what every stage reads."""

    stage: str
    dataset: str
    profile: str  # quick, cpu, paper, test
    device: str  # auto, cpu, cuda, cuda:N
    data_root: str | None  # null: $SALREPRO_DATA, else data/raw
    download: bool
    data_options: dict  # the dataset's data options (params.yaml datasets.<name>), defaults not filled in
    plan: dict = field(default_factory=dict)  # params.yaml `plan`: how its grids are cut into batches (runs.Plan)

    @classmethod
    def read(cls, cfg: dict, stage: str, dataset: str) -> dict:
        """The stage's own fields from the checked params `cfg` (none here)."""
        return {}

    def view(self, *names: str) -> dict:
        """The fields `names` as a notebook shows them (tuples as lists)."""
        return {n: list(v) if isinstance(v, tuple) else v for n in names for v in (getattr(self, n),)}

    def batching(self):
        """The profile's batch plan (runs.Plan), for run_all."""
        from ..runs import Plan

        return Plan.from_params(self.plan)

    def load(self, **data_options):
        """The instance's dataset, under its data options and `data_options` on top."""
        return load_dataset(self.dataset, root=self.data_root, download=self.download,
                            **{**self.data_options, **data_options})


@dataclass(frozen=True, kw_only=True)
class Training(Instance):
    """A grid of nets trained alike: Table 2's training (the area sweep's section), or a depth or
    width stage's."""

    seeds: int  # seeds 0 .. seeds-1
    epochs: int
    batch_size: int
    lr: float
    options: dict = field(default_factory=dict)  # method options ({} the defaults; each method takes its own)
    hidden: int | None = None  # the hidden width (None where the stage varies it: width)

    def training(self, **overrides) -> dict:
        """The keywords of runs.make_config that every run of the grid shares."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "data_options": dict(self.data_options), **overrides}


TABLE2_TRAINING = ("seeds", "epochs", "batch_size", "lr", "hidden")  # the area sweep's keys other stages train by


def instance_fields(cfg: dict, stage: str, dataset: str) -> dict:
    """The fields of `Instance` for (stage, dataset) under params `cfg`."""
    return {"stage": stage, "dataset": dataset, "profile": cfg["profile"], "device": cfg["device"],
            "data_root": cfg["data"]["root"], "download": cfg["data"]["download"],
            "data_options": dict(cfg["datasets"][dataset]), "plan": dict(cfg["plan"])}


def table2_training(cfg: dict, stage: str, dataset: str) -> Training:
    """Table 2's training (the area sweep's section) for another stage's instance on `dataset`
    (calibration, the protocol study)."""
    sweep = cfg["area_sweep"]
    return Training(**instance_fields(cfg, stage, dataset), **{k: sweep[k] for k in TABLE2_TRAINING},
                    options=dict(sweep["options"]))


def method_options(method: str, options: dict) -> dict:
    """The subset of `options` that `method` accepts (e.g. divisor goes to sal, not bp)."""
    from ..method.models import OPTIONS

    allowed = set(OPTIONS[method]) | {"init"}
    return {k: v for k, v in options.items() if k in allowed}
