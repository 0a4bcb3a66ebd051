"""Every method at its own best learning rate: the claims against a trained baseline.

The paper trains every method at lr 1e-4, batch 16, 25 epochs, where BP is far
from trained. This stage gives each method of `tuned.methods` (BP, SAL-K under
the defaults and under each named preset, MoE-K) its own learning rate:

1. **Selection.** Every lr of `tuned.lrs` is scored by the mean of several runs, none of which reads
   the official validation split, on which every number is reported. On a dataset with fewer than
   `cv_below` training samples: a stratified `folds`-fold cross-validation of the training split
   (data option `split: cv<k>-<i>`; fold i trains with seed i), so that every training sample helps
   choose; on larger ones, `select_seeds` run(s) on the *tuning split* (the training split less a
   stratified 15% of each class, validated on that 15%: about 9,000 samples on MNIST). Runs of one
   configuration but lr train together (a per-model lr in the stacked step).
2. **Choice.** Per (method, K, reading[, depth]) the lr with the highest mean final validation
   accuracy over its selection runs (`choose_lr`). An lr with an unstable selection run (it diverged,
   ended above ln(C) in training loss, or at more than twice its best epoch's: runs.unstable)
   has failed and is never chosen; ties go to the smaller lr. Every lr within one standard error of
   the choice is listed as a near-tie (the standard error of the choice's mean over its runs; with
   one run, the binomial standard error of its accuracy on the held-out samples). A choice at the
   grid's smallest or largest lr is marked: one beyond it might do better.
3. **Report.** The chosen lr trains `seeds` runs on the full training split,
   reported on the official validation split, as Table 2 reports. Where the
   chosen lr is the paper's, the runs are those of the area sweep, preset
   sweep, MoE and depth stages (same configuration, same stored record).

`tuned.depth` does the same for Figure 2 (the depth stage's depths, width and
training) on the datasets it lists: the paper's depth claim is that BP
degrades with depth, which a trained BP may not.

    out = run_tuned("semeion", params_file="params.yaml", out_dir="results/cpu/tuned/semeion")
    out.choice      # one row per configuration: the lr chosen and every lr's tuning accuracy
    out.summary     # the reported runs at the chosen lrs (runs.summarize, with an lr column)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import runs as ex
from . import registry
from .config import load_params, parse_method, stage_settings
from ..runs import write_json_atomic
from ..method.models import PRESETS, reading_of
from ..data import TRAIN_SIZES
from .settings import TABLE2_TRAINING, Training, method_options
from .stages import runs_table

# what identifies one tuned configuration (its lr aside)
SPEC_KEYS = ["dataset", "method", "areas", "reading", "depth", "hidden"]


@dataclass(frozen=True, kw_only=True)
class TunedDepth:
    """tuned.depth: Figure 2's nets at tuned lrs, at the depth stage's depths, width and training."""

    datasets: tuple[str, ...]  # the datasets it runs on (among the stage's)
    methods: tuple[str, ...]  # 'bp', 'sal-4'
    readings: tuple[str, ...]  # SAL's readings: "default" and/or named presets (BP's runs are shared)
    depths: tuple[int, ...]
    hidden: int
    seeds: int
    epochs: int
    batch_size: int
    options: dict  # the depth stage's options
    run: bool  # does this instance's dataset run it?


@dataclass(frozen=True, kw_only=True)
class TunedSettings(Training):
    """The tuned section; Table 2's training but the lr (`lr` is the paper's: the area sweep's),
    SAL's options are the area sweep's, MoE's the moe stage's."""

    methods: tuple[str, ...]  # bp, sal-K, moe-K
    presets: tuple[str, ...] = ()  # SAL runs again under each
    lrs: tuple[float, ...]  # the grid each configuration chooses from
    select_seeds: int  # runs per lr on the tuning split (datasets of `cv_below` training samples or more)
    folds: int = 3  # k of the cross-validation that scores an lr on smaller datasets
    cv_below: int = 10_000  # datasets with fewer training samples choose by cross-validation
    sal_options: dict = field(default_factory=dict)
    moe_options: dict = field(default_factory=dict)
    depth: TunedDepth

    def configs(self) -> list[ex.RunConfig]:
        """Its runs known before any training, as every sweep's `configs()`: each configuration at every lr on
        every selection split (`selection_configs`); the reported runs follow from the choice (`final_configs`)."""
        return selection_configs(self)

    @classmethod
    def read(cls, cfg: dict, stage: str, dataset: str) -> dict:
        t, sweep, depth = cfg["tuned"], cfg["area_sweep"], cfg["depth"]
        d = t["depth"]
        return {**{k: sweep[k] for k in TABLE2_TRAINING}, "options": {}, "methods": tuple(t["methods"]),
                "presets": tuple(t["presets"]), "lrs": tuple(t["lrs"]), "select_seeds": t["select_seeds"],
                "folds": t["folds"], "cv_below": t["cv_below"],
                "sal_options": dict(sweep["options"]), "moe_options": dict(cfg["moe"]["options"]),
                "depth": TunedDepth(datasets=tuple(d["datasets"]), methods=tuple(d["methods"]), readings=tuple(d["readings"]),
                                    depths=tuple(depth["depths"]), hidden=depth["hidden"], seeds=depth["seeds"],
                                    epochs=depth["epochs"], batch_size=depth["batch_size"],
                                    options=dict(depth["options"]), run=dataset in d["datasets"])}


def readings(s: TunedSettings) -> list[tuple[str, dict]]:
    """(name, SAL options) of every reading SAL runs under: the defaults, then each preset."""
    return [("default", s.sal_options)] + [(p, {**s.sal_options, **PRESETS[p]}) for p in s.presets]


def selection_splits(s: TunedSettings) -> list[tuple[str, int]]:
    """(split, seed) of the runs that score one lr: fold i of the cross-validation with seed i on a
    dataset of fewer than `cv_below` training samples, else `select_seeds` seeds on the tuning split."""
    if TRAIN_SIZES[s.dataset] < s.cv_below:
        return [(f"cv{s.folds}-{i}", i) for i in range(s.folds)]
    return [("tuning", i) for i in range(s.select_seeds)]


def base_configs(s: TunedSettings, *, lr: float, split: str, select: bool = False,
                 seeds: range | None = None) -> list[ex.RunConfig]:
    """The stage's configurations at one lr: the shallow net of Table 2 (every method; SAL under every
    reading) and, where `tuned.depth` lists the dataset, the depth figure's nets; `seeds` runs each (a
    selection run's seed), else the area sweep's (depth stage's) seeds."""
    d = s.depth
    seeds, depth_seeds = (seeds, seeds) if seeds is not None else (range(s.seeds), range(d.seeds))
    train = s.training(lr=lr, data_options={**s.data_options, "split": split})
    out = []
    for spec in s.methods:
        m, k = parse_method(spec)
        options = {"sal": None, "moe": s.moe_options, "bp": {}}[m]
        for _, opts in (readings(s) if m == "sal" else [(None, options)]):
            out += [ex.make_config(s.dataset, m, num_areas=k, hidden=s.hidden, seed=i, options=method_options(m, opts),
                                   **train) for i in seeds]
    if d.run:
        dtrain = {**train, "epochs": d.epochs, "batch_size": d.batch_size}
        for spec in d.methods:
            m, k = parse_method(spec)
            for reading in (d.readings if m == "sal" else ("default",)):  # BP has no reading: its runs are shared
                opts = d.options if reading == "default" else {**d.options, **PRESETS[reading]}  # as the depth stage's
                out += [ex.make_config(s.dataset, m, num_areas=k, depth=depth, hidden=d.hidden, seed=i,
                                       options=method_options(m, opts), **dtrain)
                        for depth in d.depths for i in depth_seeds]
    return list(dict.fromkeys(out))  # depth 2 at Table 2's width is Table 2's net: one run, not two


def selection_configs(s: TunedSettings) -> list[ex.RunConfig]:
    """Every configuration at every lr of the grid, once per selection split (`selection_splits`)."""
    return [c for lr in s.lrs for split, seed in selection_splits(s)
            for c in base_configs(s, lr=lr, split=split, seeds=range(seed, seed + 1))]


def choose_lr(selection: pd.DataFrame, held: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per configuration (SPEC_KEYS) from the selection runs (runs.runs_frame, with
    `unstable`): the lr with the highest mean final validation accuracy among the lrs none of whose runs
    was unstable (ties: the smaller lr); `lr` is NaN when every lr failed. Columns: `acc@<lr>` each lr's
    mean (NaN where it failed), `runs` per lr, `se` the choice's standard error (its runs' std over
    sqrt(n); with one run, the binomial standard error of its accuracy over `held[dataset]` held-out
    samples), `near_ties` the other lrs within one `se` of the choice, `failed_lrs` the lrs with an
    unstable run, `at_grid_edge` whether the choice is the grid's smallest or largest lr (one beyond it
    might do better)."""
    rows = []
    for key, g in selection.groupby(SPEC_KEYS, sort=False):
        per_lr = g.groupby("lr")
        acc = per_lr["val_accuracy_pct"].mean()
        failed = (per_lr["unstable"].any() if "unstable" in g else per_lr["diverged"].any()).reindex(acc.index)
        ok = acc[~failed].dropna()
        best = ok[ok == ok.max()].index.min() if len(ok) else float("nan")
        se = float("nan")
        if len(ok):
            runs = g.loc[g["lr"] == best, "val_accuracy_pct"]
            if len(runs) > 1:
                se = float(runs.std(ddof=1) / math.sqrt(len(runs)))
            elif held and key[0] in held:
                p = ok.max() / 100
                se = 100 * math.sqrt(p * (1 - p) / held[key[0]])
        ties = [lr for lr, a in ok.items() if lr != best and a >= ok.max() - se] if len(ok) and math.isfinite(se) else []
        row = dict(zip(SPEC_KEYS, key), label=g["label"].iloc[0], lr=best,
                   tuning_accuracy_pct=ok.max() if len(ok) else float("nan"), se=se,
                   runs=int(per_lr.size().min()),
                   near_ties=" ".join(f"{lr:g}" for lr in ties),
                   failed_lrs=" ".join(f"{lr:g}" for lr in failed[failed].index),
                   at_grid_edge=bool(len(ok)) and best in (acc.index.min(), acc.index.max()))  # a larger/smaller lr might do better
        row.update({f"acc@{lr:g}": (float("nan") if failed[lr] else a) for lr, a in acc.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def final_configs(s: TunedSettings, choice: pd.DataFrame) -> list[ex.RunConfig]:
    """The configurations reported: each at its chosen lr, official split, `seeds` runs."""
    chosen = {tuple(r[k] for k in SPEC_KEYS): r["lr"] for _, r in choice.iterrows() if pd.notna(r["lr"])}
    out = []
    for c in base_configs(s, lr=s.lr, split="official"):
        key = (c.dataset, c.method, c.num_areas, reading_of(c.method, dict(c.options)), c.depth, c.hidden)
        if key in chosen:
            out.append(ex.make_config(c.dataset, c.method, num_areas=c.num_areas, depth=c.depth, hidden=c.hidden, seed=c.seed,
                                      epochs=c.epochs, batch_size=c.batch_size, lr=float(chosen[key]),
                                      options=dict(c.options), data_options=dict(c.data_options)))
    return out


@dataclass
class TunedOutput:
    settings: TunedSettings
    selection: pd.DataFrame  # one row per selection run (cross-validation folds or the tuning split)
    choice: pd.DataFrame  # one row per configuration: the chosen lr and every lr's mean selection accuracy
    runs: pd.DataFrame  # the reported runs at the chosen lrs, one row each (stages.runs_table)
    summary: pd.DataFrame  # ... their mean and std over seeds
    metrics: dict


def run_tuned(dataset: str, *, params_file="params.yaml", out_dir=None, progress=None, results=None,
              executor=None) -> TunedOutput:
    """Run (or resume) the tuned stage on one dataset and write selection.csv, choice.csv, summary.csv and
    metrics.json to `out_dir`. `results`: the profile's results folder, whose stages' stored runs are
    reused where a chosen configuration equals one of theirs (default: two levels above `out_dir`).
    `executor`: as run_stage's (the final runs are submitted once the selection's are stored)."""
    cfg = load_params(params_file)
    s = stage_settings(cfg, "tuned", dataset)
    out_dir = Path(out_dir if out_dir is not None else f"results/{cfg['profile']}/tuned/{dataset}")
    results = Path(results) if results is not None else out_dir.parent.parent
    splits = {split: s.load(split=split) for split, _ in selection_splits(s)}
    store = out_dir / "runs"
    configs = s.configs()
    selection = ex.runs_frame(ex.run_all(configs, lambda c: splits[dict(c.data_options)["split"]],
                                         store=store, device=s.device, plan=s.batching(), progress=progress,
                                         desc=f"tuned {dataset}: lr selection", executor=executor))
    choice = choose_lr(selection, {dataset: min(d.x_val.shape[0] for d in splits.values())})
    official = s.load()
    read_from = [p for stage in registry.STAGE["tuned"].reuses if (p := results / stage / dataset / "runs").is_dir()]
    records = ex.run_all(final_configs(s, choice), official, store=store, read_from=read_from, device=s.device,
                         plan=s.batching(), progress=progress, desc=f"tuned {dataset}: at the chosen lrs",
                         executor=executor)
    summary = ex.summarize(records)
    runs = runs_table(records)
    metrics = {"val_accuracy_pct": {f"{r.label}@d{r.depth}": round(float(r.val_accuracy_pct_mean), 2)
                                    for r in summary.itertuples()},
               "lr": {f"{r.label}@d{r.depth}": (None if pd.isna(r.lr) else float(r.lr)) for r in choice.itertuples()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    selection.to_csv(out_dir / "selection.csv", index=False)
    choice.to_csv(out_dir / "choice.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    runs.to_csv(out_dir / "runs.csv", index=False)
    write_json_atomic(out_dir / "metrics.json", metrics)
    return TunedOutput(s, selection, choice, runs, summary, metrics)
