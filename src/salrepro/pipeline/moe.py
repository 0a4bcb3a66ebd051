"""Figures 4-5: SAL against a top-1 mixture of experts trained by backpropagation (and SAL-BP, SAL's
areas and routing trained by BP) at equal K, with Table 2's training; the SAL runs are the area
sweep's.

    out = run("digits", params_file="params.yaml", out_dir="results/quick/moe/digits")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import runs as ex
from .settings import TABLE2_TRAINING, Training, method_options
from .stages import run_stage


@dataclass(frozen=True, kw_only=True)
class MoESettings(Training):
    """The moe section; training, hidden width and SAL's options are the area sweep's."""

    areas: tuple[int, ...]  # the K of sal-K and of each method at K (the params key, as in the paper)
    methods: tuple[str, ...]  # 'moe', 'salbp': run beside SAL at each K, under `options`
    sal_options: dict = field(default_factory=dict)  # the area sweep's options (its SAL runs)

    @classmethod
    def read(cls, cfg: dict, stage: str, dataset: str) -> dict:
        sweep, moe = cfg["area_sweep"], cfg["moe"]
        return {**{k: sweep[k] for k in TABLE2_TRAINING}, "areas": tuple(moe["areas"]), "methods": tuple(moe["methods"]),
                "options": dict(moe["options"]), "sal_options": dict(sweep["options"])}

    def configs(self) -> list[ex.RunConfig]:
        """At each K: SAL-K, then each method at K, every seed."""
        out = []
        for k in self.areas:
            for m, opts in (("sal", self.sal_options), *((m, self.options) for m in self.methods)):
                out += [ex.make_config(self.dataset, m, num_areas=k, hidden=self.hidden, seed=i,
                                       options=method_options(m, opts), **self.training())
                        for i in range(self.seeds)]
        return out


def run(dataset: str, **kw):
    """Figures 4-5 on one dataset (stages.run_stage)."""
    return run_stage("moe", dataset, **kw)
