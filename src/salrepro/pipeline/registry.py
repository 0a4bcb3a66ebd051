"""The pipeline's stages, each declared once.

A `Stage` says all that the rest of the pipeline knows of one stage: its params.yaml section and how
a stage instance's settings are read from it, whether it runs once per dataset, the run stores of
other stages it reuses, the runs it trains (`configs`), what it writes, and which of the paper's
claims its notebook judges. Everything else is derived from `STAGES`:

- `config.SCHEMA` (each stage's section) and the dataset checks (`within`);
- `config.STAGES` (the sweep stages: `salrepro sweep`, the report's inputs) and `stage_settings` (each
  instance's settings, typed: the class a Stage names, whose `configs()` are its runs);
- `stages.run_stage`'s reused stores;
- the retrain order (`retrain_order`: a stage after the stages whose runs it reuses) and `run`;
- the report's training times (`instances`);
- the claims each notebook judges (`judge`);
- dvc.yaml (`dvc_yaml`; `python -m salrepro.pipeline.registry` writes it, a test holds the file to it), each
  stage depending on the package files its notebook and runner load (`code_deps`), and
  the command that renders each executed notebook to HTML (`nbconvert_command`).

Adding a stage: a `Stage` here; its module (its settings dataclass, a subclass of settings.Training
whose `read` takes its fields from params.yaml and whose `configs()` are its runs, and its runner); its
section in `schema.py` and in conf/base.yaml (profiles list only what they change); its notebook
in notebooks/make_notebooks.py; then this module's command rewrites dvc.yaml.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import schema


@dataclass(frozen=True)
class Stage:
    name: str  # the params.yaml section, the results folder, the DVC stage
    what: str  # one line: what it reproduces (dvc.yaml's comment)
    section: dict | None  # its params.yaml section (schema.py); None: it has none
    params: tuple[str, ...]  # the params.yaml keys its outputs depend on (dvc.yaml's params:)
    per_dataset: bool = True  # one instance per dataset of its section's `datasets` (DVC foreach)
    notebook: str | None = None  # notebooks/<notebook>.ipynb, if not its own name (papermill gets `-p stage`)
    dataset_keys: tuple[str, ...] = ("datasets",)  # the section's keys (dotted if nested) listing datasets it trains on
    within: str | None = None  # a stage whose datasets must include this one's (it reuses that stage's runs)
    reuses: tuple[str, ...] = ()  # stages whose stored runs it reads (retrained before it; dvc deps)
    reads: tuple[str, ...] = ()  # stores it also takes equal runs from where present: a cache, not an order (a
    #                              run's key is its content), so not a dvc dep (the preset sweep reuses the study)
    runner: str | None = None  # "module:function" that trains it: (dataset, *, params_file, out_dir, progress,
    #                            results) for a stage per dataset, the same without dataset for one run once
    settings: str | None = None  # "module:class" of its settings (settings.py; sweep stages: `configs()` its runs)
    outs: tuple[str, ...] = ()  # files it writes in its folder, beside its runs/, notebook and page
    figures: tuple[str, ...] = ()  # figures/<profile>/..., with {item} for the dataset
    folder_out: bool = False  # its whole results folder is one output (runs/ per dataset inside)
    claims: tuple[str, ...] = ()  # ids of claims.CLAIMS its notebook judges
    axis: str | None = None  # the shape it varies: "depth" or "hidden" (curve names, headline metrics)
    table2: bool = False  # compared with the paper's Tables 2/3 cell by cell (comparison.csv)
    notebook_params: tuple[tuple[str, str], ...] = ()  # papermill -p pairs beyond the usual ones
    sweep: bool = False  # trains a grid per dataset and writes summary.csv (`salrepro sweep`, the report's input)
    page: str | None = None  # also render the executed notebook as one page for readers, <folder>/<page>.html:
    #                          its text, tables and figures, no code (nbconvert_command)

    @property
    def trains(self) -> bool:
        return self.runner is not None


_TABLE2 = ("area_sweep.seeds", "area_sweep.epochs", "area_sweep.batch_size", "area_sweep.lr", "area_sweep.hidden")
_SWEEP_OUTS = ("summary.csv", "runs.csv", "curves_all.csv", "occupancy.csv")
_TABLE2_CLAIMS = ("sal_beats_bp", "accuracy_rises_with_k", "train_loss_falls_with_k")

STAGES: tuple[Stage, ...] = (
    Stage("calibration", "BP under every input map: which map reproduces the paper's BP row (read before any SAL verdict)",
          schema.CALIBRATION, ("device", "plan", "data", "datasets", "calibration", *_TABLE2, "report.sigma"),
          per_dataset=False, runner="salrepro.pipeline.calibration:run_calibration",
          figures=("calibration.png",), folder_out=True),
    Stage("datasets", "Table 1 from the loaders, beside the paper's", None, ("data",), per_dataset=False,
          outs=("table1.csv",)),
    Stage("area_sweep", "Tables 2/3: BP and SAL-K against the number of areas K", schema.AREA_SWEEP,
          ("device", "plan", "datasets.${item}", "area_sweep.methods", *_TABLE2, "area_sweep.options", "report.sigma"),
          runner="salrepro.pipeline.area_sweep:run", sweep=True, settings="salrepro.pipeline.area_sweep:Table2Settings",
          table2=True,
          outs=(*_SWEEP_OUTS[:1], "comparison.csv", *_SWEEP_OUTS[1:]),
          figures=("area_sweep-{item}-curves.png", "area_sweep-{item}-vs-paper.png", "area_sweep-{item}-occupancy.png"),
          claims=_TABLE2_CLAIMS),
    Stage("preset_sweep", "Tables 2/3 with SAL under a named preset (the area sweep's notebook)", schema.PRESET_SWEEP,
          ("device", "plan", "datasets.${item}", "area_sweep.methods", *_TABLE2, "area_sweep.options", "preset_sweep.preset",
           "report.sigma"),
          notebook="area_sweep", within="area_sweep", reuses=("area_sweep", "protocol_study"),
          runner="salrepro.pipeline.area_sweep:run_preset", sweep=True, settings="salrepro.pipeline.area_sweep:Table2Settings",
          table2=True, outs=(*_SWEEP_OUTS[:1], "comparison.csv", *_SWEEP_OUTS[1:]),
          figures=("preset_sweep-{item}-curves.png", "preset_sweep-{item}-vs-paper.png", "preset_sweep-{item}-occupancy.png"),
          claims=_TABLE2_CLAIMS),
    Stage("moe", "Figures 4-5: SAL against a BP-trained top-1 MoE (and SAL-BP) at equal K", schema.MOE,
          ("device", "plan", "datasets.${item}", "moe.areas", "moe.methods", "moe.options", *_TABLE2[:4], "area_sweep.hidden",
           "area_sweep.options"),
          within="area_sweep", reuses=("area_sweep",), runner="salrepro.pipeline.moe:run", sweep=True,
          settings="salrepro.pipeline.moe:MoESettings", outs=_SWEEP_OUTS, figures=("moe-{item}.png",),
          claims=("sal_beats_moe",)),
    Stage("depth", "Figure 2: BP and SAL against depth", schema.DEPTH,
          ("device", "plan", "datasets.${item}", *(f"depth.{k}" for k in ("methods", "depths", "hidden", "seeds", "epochs",
                                                                  "batch_size", "lr", "options", "presets"))),
          runner="salrepro.pipeline.scaling:run_depth", sweep=True, settings="salrepro.pipeline.scaling:ScalingSettings",
          axis="depth", outs=_SWEEP_OUTS,
          figures=("depth-{item}.png",), claims=("gap_grows_with_depth", "trains_at_every_depth")),
    Stage("width", "Figure 3: BP and SAL against width, at depth 64", schema.WIDTH,
          ("device", "plan", "datasets.${item}", *(f"width.{k}" for k in ("methods", "widths", "depth", "seeds", "epochs",
                                                                  "batch_size", "lr", "options", "presets", "seeds_at",
                                                                  "datasets_at", "widths_of"))),
          runner="salrepro.pipeline.scaling:run_width", sweep=True, settings="salrepro.pipeline.scaling:ScalingSettings",
          axis="hidden", outs=_SWEEP_OUTS,
          figures=("width-{item}.png",), claims=("gap_grows_with_width",)),
    Stage("tuned", "every method at its own best learning rate, chosen on a split carved out of the training split",
          schema.TUNED,
          ("device", "plan", "datasets.${item}", "tuned", "moe.options", *_TABLE2, "area_sweep.options",
           *(f"depth.{k}" for k in ("depths", "hidden", "seeds", "epochs", "batch_size", "options"))),
          within="area_sweep", reuses=("area_sweep", "preset_sweep", "moe", "depth", "protocol_study"),
          dataset_keys=("datasets", "depth.datasets"), runner="salrepro.pipeline.tuned:run_tuned", sweep=True,
          settings="salrepro.pipeline.tuned:TunedSettings",
          outs=("selection.csv", "choice.csv", "summary.csv", "runs.csv"), figures=("tuned-{item}-lr.png",),
          claims=("sal_beats_bp", "accuracy_rises_with_k", "sal_beats_moe", "gap_grows_with_depth",
                  "trains_at_every_depth")),
    Stage("protocol_study", "the open choices of the method, ranked on a fit set and checked on held-out datasets",
          schema.PROTOCOL_STUDY,
          ("profile", "device", "plan", "datasets", "protocol_study", "area_sweep.methods", *_TABLE2[1:], "report.sigma"),
          per_dataset=False, dataset_keys=("fit", "held_out"), runner="salrepro.pipeline.protocol:run_study",
          reads=("area_sweep", "preset_sweep"),
          figures=("protocol_study.png", "protocol_loss_accuracy.png"), folder_out=True),
    Stage("report", "the verdicts: every table and claim against the paper's, README's summary", schema.REPORT,
          ("profile", "data", "report", "calibration", "area_sweep.datasets", "preset_sweep", "depth.datasets",
           "width.datasets", "moe.datasets", "tuned.datasets", "tuned.depth", "protocol_study.fit"),
          per_dataset=False, dataset_keys=(), reuses=("calibration", "area_sweep", "preset_sweep", "depth", "width", "moe",
                                     "protocol_study", "tuned"),
          outs=("comparison.csv", "preset_comparison.csv", "not_run.csv", "summary.md", "finding.md", "claims.json",
                "claims_table.csv", "claims_forest.csv", "report.json", "headline.json"),
          figures=("claims_forest.png", "tuned_lr.png", "paper_vs_ours.png"),
          claims=("sal_beats_bp", "accuracy_rises_with_k", "train_loss_falls_with_k", "gap_grows_with_depth",
                  "gap_grows_with_width", "trains_at_every_depth", "sal_beats_moe"),
          notebook_params=(("results_dir", "results/${profile}"), ("readme", "README.md")), page="replication"),
)
STAGE = {s.name: s for s in STAGES}


def section_schema() -> dict:
    """Each stage's params.yaml section, by name (config.SCHEMA's stage part)."""
    return {s.name: s.section for s in STAGES if s.section is not None}


def sweep_stages() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES if s.sweep)


def section_value(section: dict, key: str):
    """`section`'s value at a dotted key ("depth.datasets": section["depth"]["datasets"])."""
    for part in key.split("."):
        section = section[part]
    return section


def datasets_of(stage: str, cfg: dict) -> list[str]:
    """The datasets a stage trains on under params `cfg` (its section's dataset lists, in order)."""
    return list(dict.fromkeys(d for key in STAGE[stage].dataset_keys for d in section_value(cfg[stage], key)))


def settings_class(stage: str):
    """The settings class of a stage (settings.Instance if it declares none)."""
    from .settings import Instance

    path = STAGE[stage].settings
    return Instance if path is None else _function(path)


def pipeline_order() -> tuple[str, ...]:
    """Every stage, each after every stage whose runs or outputs it reuses (registry order otherwise)."""
    order: list[str] = []
    todo = list(STAGES)
    while todo:
        ready = next(s for s in todo if all(r in order for r in s.reuses))
        order.append(ready.name)
        todo.remove(ready)
    return tuple(order)


def retrain_order() -> tuple[str, ...]:
    """The stages that train, in pipeline order: retrained first, a stage's reused runs are in place."""
    return tuple(name for name in pipeline_order() if STAGE[name].trains)


def instances(cfg: dict, stages=None) -> list[tuple[str, str | None]]:
    """(stage, dataset) of every instance that trains, in retrain order; dataset None for a stage run once."""
    out = []
    for name in retrain_order():
        if stages is not None and name not in stages:
            continue
        out += [(name, d) for d in cfg[name]["datasets"]] if STAGE[name].per_dataset else [(name, None)]
    return out


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def run(stage: str, dataset: str | None, *, params_file: str, out_dir, results, progress=None, executor=None):
    """Train (or resume) one stage instance into `out_dir`, reusing the stored runs under `results`
    (dataset None for a stage run once); `executor`: its runs train as cluster jobs (the sweep stages)."""
    st = STAGE[stage]
    args = (dataset,) if st.per_dataset else ()
    cluster = {"executor": executor} if executor is not None else {}  # (the runners of stages run once take none)
    return _function(st.runner)(*args, params_file=params_file, out_dir=out_dir, progress=progress, results=results,
                                **cluster)


def judge(stage: str, runs, data: tuple[str, ...] | None = None) -> list[dict]:
    """The claims a stage's notebook judges, on `runs` (a view of its runs): those of claims.CLAIMS
    the stage declares, limited to those that read `data` ("table2", "depth", "width", "moe") if given."""
    from .claims import CLAIMS, adjust_table, judge as judge_claim

    own = STAGE[stage].claims
    cells = [judge_claim(c, runs) for c in CLAIMS if c.id in own and (data is None or c.data in data)]
    adjust_table(cells)  # BH over this stage's tests
    return cells


# ---------------------------------------------------------------------------
# A stage's code: what its notebook and runner import (dvc.yaml's deps)
# ---------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1]  # src/salrepro
READS = {"salrepro.pipeline.paper": ("paper",)}  # package data a module reads, beside its code (folders of PACKAGE)


def _module_file(module: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path / "__init__.py" if (path / "__init__.py").is_file() else (
        path.with_suffix(".py") if path.with_suffix(".py").is_file() else None)


def _imports(tree: ast.AST, package: str) -> set[str]:
    """The salrepro modules a parsed source imports (`package`: the one its relative imports start from)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if _module_file(f"{base}.{a.name}") else base for a in node.names}
    return {m for m in found if m.split(".")[0] == "salrepro" and _module_file(m)}


@functools.lru_cache(maxsize=None)
def _module_imports(module: str) -> frozenset[str]:
    path = _module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return frozenset(_imports(ast.parse(path.read_text()), package))


def import_closure(modules) -> set[str]:
    """Every salrepro module loaded by importing `modules`: their imports, transitively, and the packages
    above each (a package's __init__ runs first). Read statically (ast), so what it finds is what a
    reader of the source sees; the stages' "module:function" strings count through `code_deps`."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _module_imports(module)
    return seen


def notebook_imports(path: Path) -> set[str]:
    """The salrepro modules a notebook's code cells import."""
    cells = json.loads(Path(path).read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return _imports(ast.parse(source), "salrepro")


def code_deps(st: Stage, root: Path | None = None) -> list[str]:
    """The package's files a stage's outputs depend on (dvc.yaml's deps, relative to the checkout `root`):
    every module its notebook and runner load, the data they read, and the HTML template. A folder of the
    package stands for its files where the stage loads all of them. An edit elsewhere (say, to the
    report) leaves the stage up to date in `dvc status`."""
    root = Path.cwd() if root is None else root
    start = notebook_imports(root / "notebooks" / f"{st.notebook or st.name}.ipynb")
    start |= {path.partition(":")[0] for path in (st.runner, st.settings) if path}
    files = {_module_file(m) for m in import_closure(start)}
    files |= {PACKAGE / folder for m in import_closure(start) for folder in READS.get(m, ())}
    deps = set()
    for f in files:
        folder = f.parent
        if f.is_file() and folder != PACKAGE and set(folder.glob("*.py")) <= files:
            deps.add(folder)  # the whole subpackage
        else:
            deps.add(f)
    deps.add(PACKAGE / "pipeline" / "templates")
    return sorted(str(Path("src") / d.relative_to(PACKAGE.parent)) for d in deps)


# ---------------------------------------------------------------------------
# dvc.yaml, generated
# ---------------------------------------------------------------------------
_HEADER = """\
# The replication pipeline, generated from src/salrepro/pipeline/registry.py (python -m salrepro.pipeline.registry
# rewrites it; a test holds this file to it: edit the registry, not this file). Each notebook stage runs a
# notebook with papermill (parameters from params.yaml, the quick profile as committed) and renders it to HTML
# (src/salrepro/pipeline/templates/salrepro: read offline, long lines wrapped; the report also as one page of
# text, tables and figures with no code, report/replication.html).
# Other profiles: salrepro profile cpu | paper, then dvc repro   (see conf/profile/).
# Results that a reader needs (metrics, tables, figures, executed notebooks)
# and the run records (one small JSON per trained model) are git-tracked
# (cache: false); the preprocessed data cache is DVC-cached. The HTML pages leave out the notebooks'
# default parameters cell (papermill's injected one follows it) and the cells that print numbers for the
# nbval regression tests (their tables are shown above them).

stages:
  check:   # first: params.yaml (every key, unknown ones too) and its data are checked before DVC removes any output
    cmd: salrepro check --params params.yaml --stamp data/params-checked
    deps:
      - params.yaml   # the whole file: a typo'd key reruns this check, not only the keys a stage names
    outs:
      - data/params-checked

  prepare:
    foreach: ${datasets}
    do:
      cmd: salrepro prepare ${key}
      deps:
        - data/params-checked
        - src/salrepro/data
      params:
        - data
        - datasets.${key}
      outs:
        - data/cache/${key}.pt
"""

_FOOTER = """
# `dvc metrics show` prints one row per profile's committed results, a few numbers each (the report's
# headline.json); each stage's metrics.json and report.json hold the rest.
metrics:
  - results/quick/report/headline.json
  - results/cpu/report/headline.json

# `dvc plots show` renders the pipeline's figures (PNG) as images in one page that loads nothing from the
# network (no plotting library is needed for images). The per-epoch curves behind them are CSV files in
# each stage's curves/ folder.
plots:
  - figures/${profile}
"""

TEMPLATES = "src/salrepro/pipeline/templates"  # nbconvert's template `salrepro` (lab's, offline, lines wrapped)


def nbconvert_command(executed: str, page: str | None = None) -> str:
    """The command that renders an executed notebook to HTML beside it, run from the project root: the notebook
    page (`<name>.html`: code and outputs, without the default parameters cell and the cells that print numbers
    for the nbval tests), or with `page` the reader's page `<page>.html`: no code at all (nbconvert's
    --no-input), every figure embedded as a data: URI, so that the one file is the whole report.
    Both use the template `salrepro` (templates/salrepro/index.html.j2): JupyterLab's, with nothing loaded from
    the network and long lines wrapped inside their cells."""
    tags = ["parameters", "nbval-check-output"] + (["injected-parameters"] if page else [])
    words = ["jupyter nbconvert --to html --log-level WARN --template salrepro",
             f"--TemplateExporter.extra_template_basedirs={TEMPLATES} --TagRemovePreprocessor.enabled=True",
             " ".join(f"--TagRemovePreprocessor.remove_cell_tags {t}" for t in tags)]
    if page:
        words.append(f"--no-input --HTMLExporter.embed_images=True --output {page}")
    return " ".join(words + [executed])


def _stage_yaml(st: Stage) -> list[str]:
    item = st.per_dataset
    folder = f"results/${{profile}}/{st.name}" + ("/${item}" if item else "")
    executed = f"{folder}/{st.name}.ipynb"
    nb = st.notebook or st.name
    args = ([("stage", st.name)] if st.notebook else []) + ([("dataset", "${item}")] if item else [])
    args += [("params_file", "params.yaml"), ("out_dir", folder)]
    args += [("figures_dir", "figures/${profile}")] if st.figures else []
    args += list(st.notebook_params)
    cmd = [f"mkdir -p {folder} &&",
           f"papermill notebooks/{nb}.ipynb {executed} -k python3 --cwd . --no-progress-bar",
           " ".join(f"-p {k} {v}" for k, v in args),
           f"&& {nbconvert_command(executed)}"]
    cmd += [f"&& {nbconvert_command(executed, st.page)}"] if st.page else []
    deps = ["data/params-checked", f"notebooks/{nb}.ipynb", *code_deps(st)]
    deps += ["data/cache/${item}.pt"] if item and st.trains else []
    deps += [f"results/${{profile}}/{r}/${{item}}/runs" if r == st.within else f"results/${{profile}}/{r}"
             for r in st.reuses]
    outs: list[tuple[str, str]] = []  # (path, comment)
    if st.folder_out:
        outs.append((folder, "persist"))
    elif st.trains:
        outs.append((f"{folder}/runs", "runs"))
    if not st.folder_out:
        outs += [(executed, ""), (f"{folder}/{st.name}.html", "")] + [(f"{folder}/{o}", "") for o in st.outs]
        outs += [(f"{folder}/{st.page}.html", "")] if st.page else []
    outs += [(f"figures/${{profile}}/{f.format(item='${item}')}", "") for f in st.figures]
    if st.sweep and st.trains:
        outs.append((f"{folder}/metrics.json", ""))
    pad = "    " if item else ""
    lines = [f"  {st.name}:   # {st.what}"]
    if item:
        lines += [f"    foreach: ${{{st.name}.datasets}}", "    do:"]
    lines += [f"{pad}    cmd: >-"] + [f"{pad}      {c}" for c in cmd]
    lines += [f"{pad}    deps:"] + [f"{pad}      - {d}" for d in deps]
    lines += [f"{pad}    params:"] + [f"{pad}      - {p}" for p in st.params]
    lines += [f"{pad}    outs:"]
    for path, kind in outs:
        lines.append(f"{pad}      - {path}:")
        if kind == "runs":
            lines += [f"{pad}          persist: true   # resumable: finished runs survive an interrupted or changed stage",
                      f"{pad}          cache: false    # git-tracked: results survive across machines and sessions"]
        elif kind == "persist":
            lines += [f"{pad}          persist: true   # runs/ per dataset, the tables, the executed notebook",
                      f"{pad}          cache: false"]
        else:
            lines.append(f"{pad}          cache: false")
    return lines


def dvc_yaml() -> str:
    """dvc.yaml's text: the check and prepare stages, then one notebook stage per Stage."""
    body = "\n\n".join("\n".join(_stage_yaml(st)) for st in STAGES)
    return _HEADER + "\n" + body + "\n" + _FOOTER


if __name__ == "__main__":  # python -m salrepro.pipeline.registry: rewrite dvc.yaml in the current folder
    from pathlib import Path

    Path("dvc.yaml").write_text(dvc_yaml())
    print("dvc.yaml written from src/salrepro/pipeline/registry.py")
