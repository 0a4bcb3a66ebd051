"""Tables 2/3: BP and SAL-K against the number of areas K (area_sweep), and the same grid with SAL
under a named preset (preset_sweep), on the shallow net of Table 2.

    out = run("digits", params_file="params.yaml", out_dir="results/quick/area_sweep/digits")
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import runs as ex
from ..method.models import PRESETS
from .schema import parse_method
from .settings import TABLE2_TRAINING, Training, method_options
from .stages import run_stage


@dataclass(frozen=True, kw_only=True)
class Table2Settings(Training):
    """The area sweep's section; for the preset sweep, the same with SAL's options under `preset`."""

    methods: tuple[str, ...]  # 'bp', 'sal-4', ... as in the paper's tables
    preset: str | None = None  # preset_sweep: the named preset (models.PRESETS) SAL runs under

    @classmethod
    def read(cls, cfg: dict, stage: str, dataset: str) -> dict:
        sweep = cfg["area_sweep"]
        preset = cfg["preset_sweep"]["preset"] if stage == "preset_sweep" else None
        options = {**sweep["options"], **(PRESETS[preset] if preset else {})}
        return {**{k: sweep[k] for k in TABLE2_TRAINING}, "methods": tuple(sweep["methods"]), "options": options,
                "preset": preset}

    def configs(self) -> list[ex.RunConfig]:
        """Each method of `methods` on the shallow net, every seed, in table order."""
        out = []
        for spec in self.methods:
            m, k = parse_method(spec)
            out += [ex.make_config(self.dataset, m, num_areas=k, hidden=self.hidden, seed=i,
                                   options=method_options(m, self.options), **self.training())
                    for i in range(self.seeds)]
        return out


def run(dataset: str, **kw):
    """The area sweep on one dataset (stages.run_stage)."""
    return run_stage("area_sweep", dataset, **kw)


def run_preset(dataset: str, **kw):
    """The preset sweep on one dataset (stages.run_stage)."""
    return run_stage("preset_sweep", dataset, **kw)
