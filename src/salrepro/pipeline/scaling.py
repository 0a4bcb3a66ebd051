"""Figures 2 and 3: BP and SAL against depth (depth) and against width at depth 64 (width), under
the stage's options and again, SAL only, under each named preset.

    out = run_depth("semeion", params_file="params.yaml", out_dir="results/quick/depth/semeion")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import runs as ex
from ..method.models import PRESETS
from .schema import parse_method
from .settings import Training, method_options
from .stages import run_stage


@dataclass(frozen=True, kw_only=True)
class ScalingSettings(Training):
    """The depth or the width stage's section."""

    methods: tuple[str, ...]
    presets: tuple[str, ...] = ()  # SAL runs again under each (BP's runs are shared)
    depths: tuple[int, ...] = ()  # depth: the depths, at width `hidden`
    widths: tuple[int, ...] = ()  # width: the widths, at depth `depth`
    depth: int | None = None  # width: the depth of every net
    seeds_at: dict = field(default_factory=dict)  # width: {width: seeds} where it differs from `seeds`
    datasets_at: dict = field(default_factory=dict)  # width: {width: datasets} where not every dataset runs it
    widths_of: dict = field(default_factory=dict)  # width: {SAL reading: widths} where not all of `widths`

    @classmethod
    def read(cls, cfg: dict, stage: str, dataset: str) -> dict:
        s = {k: v for k, v in cfg[stage].items() if k != "datasets"}
        return {**s, **{k: tuple(s[k]) for k in ("methods", "presets", "depths", "widths") if k in s}}

    def shapes(self) -> list[tuple[int, int]]:
        """(depth, width) of every net of the stage."""
        if self.depths:
            return [(d, self.hidden) for d in self.depths]
        return [(self.depth, w) for w in self.widths if self.dataset in self.datasets_at.get(w, [self.dataset])]

    def configs(self) -> list[ex.RunConfig]:
        """Each method at each shape under the options, then SAL again under each named preset."""
        out = []
        for reading in (None, *self.presets):
            options = self.options if reading is None else {**self.options, **PRESETS[reading]}
            for spec in self.methods:
                m, k = parse_method(spec)
                if reading is not None and m != "sal":
                    continue  # BP has no reading: its runs are shared
                only = self.widths_of.get(reading or "default") if m == "sal" else None
                out += [ex.make_config(self.dataset, m, num_areas=k, depth=d, hidden=w, seed=i,
                                       options=method_options(m, options), **self.training())
                        for d, w in self.shapes() if only is None or w in only
                        for i in range(self.seeds_at.get(w, self.seeds))]
        return out


def run_depth(dataset: str, **kw):
    """Figure 2 on one dataset (stages.run_stage)."""
    return run_stage("depth", dataset, **kw)


def run_width(dataset: str, **kw):
    """Figure 3 on one dataset (stages.run_stage)."""
    return run_stage("width", dataset, **kw)
