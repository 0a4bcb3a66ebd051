"""Tests of salrepro.pipeline.registry: each stage declared once, and everything derived from it."""

import ast
import dataclasses
from pathlib import Path

import pandas as pd
import yaml

from salrepro.pipeline import claims, config, registry, retrain, schema, stages
from salrepro.pipeline.settings import Instance

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "salrepro"


def test_dvc_yaml_is_the_registry_s():
    """dvc.yaml is generated (python -m salrepro.pipeline.registry); an edit by hand, or a Stage changed
    without regenerating it, fails here."""
    assert (ROOT / "dvc.yaml").read_text() == registry.dvc_yaml()
    dvc = yaml.safe_load(registry.dvc_yaml())["stages"]
    assert list(dvc) == ["check", "prepare", *(s.name for s in registry.STAGES)]
    for st in registry.STAGES:
        entry = dvc[st.name]["do"] if st.per_dataset else dvc[st.name]
        assert entry["params"] == list(st.params)
        assert ("foreach" in dvc[st.name]) == st.per_dataset


def test_each_stage_depends_on_the_code_it_loads_and_no_other():
    """dvc.yaml's code deps per stage: every module its notebook and runner load at run time (imported in a
    fresh interpreter, importlib included) lies under a listed path; the training stages do not list the
    report, so an edit to report.py re-renders the report alone."""
    import json
    import subprocess
    import sys

    loads = {st.name: sorted(registry.notebook_imports(ROOT / "notebooks" / f"{st.notebook or st.name}.ipynb")
                             | {p.partition(":")[0] for p in (st.runner, st.settings) if p}) for st in registry.STAGES}
    # one interpreter with the third-party libraries loaded, forked per stage: each child imports its stage's modules
    code = (f"import importlib, json, os, sys\nimport torch, torchvision.datasets, pandas, scipy.stats, matplotlib.pyplot, statsmodels.api\n"
            f"loads = {json.dumps(loads)}\nout = {{}}\n"
            "for name, modules in loads.items():\n"
            "    r, w = os.pipe()\n"
            "    if os.fork() == 0:\n"
            "        for m in modules: importlib.import_module(m)\n"
            "        os.write(w, json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'salrepro')).encode())\n"
            "        os._exit(0)\n"
            "    os.close(w); os.wait()\n"
            "    with os.fdopen(r) as f: out[name] = json.load(f)\n"
            "print(json.dumps(out))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       cwd=ROOT).stdout)
    for st in registry.STAGES:
        deps = registry.code_deps(st, ROOT)
        assert all((ROOT / d).exists() for d in deps), deps
        for module in loaded[st.name]:
            path = registry._module_file(module).relative_to(ROOT)
            assert any(path == Path(d) or Path(d) in path.parents for d in deps), f"{st.name} loads {module}: not in {deps}"
        assert ("src/salrepro/pipeline/report.py" in deps) == (st.name == "report")
        assert any(d.startswith("src/salrepro/paper") for d in deps)  # the paper's numbers, read as data


def test_the_import_closure_follows_relative_and_absolute_imports_and_the_packages_above():
    found = registry.import_closure({"salrepro.pipeline.stats"})
    assert {"salrepro", "salrepro.pipeline", "salrepro.pipeline.stats"} <= found
    assert "salrepro.pipeline.report" not in found and "salrepro.method.sal" in found  # salrepro/__init__ loads the method


def test_every_dvc_param_is_a_key_of_every_profile():
    """A key dvc.yaml names that a profile lacks would stop `dvc repro` under that profile."""
    for path in [ROOT / "params.yaml", *sorted((ROOT / "conf" / "profile").glob("*.yaml"))]:
        cfg = config.read_yaml(path)
        for st in registry.STAGES:
            for key in st.params:
                node = cfg
                for part in key.replace("${item}", next(iter(cfg["datasets"]))).split("."):
                    assert part in node, f"{path.name}: {st.name} names {key}"
                    node = node[part]


def test_nothing_outside_the_pipeline_imports_it():
    """The layers: method, kernels, engines, runs and data never import the pipeline above them."""
    pipeline = {p.stem for p in (PACKAGE / "pipeline").glob("*.py")} | {"pipeline"}
    for path in (p for p in PACKAGE.rglob("*.py") if "pipeline" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names] if node.level else [node.module or ""]
                if node.level:  # relative: from .x import y / from . import x
                    first = [(node.module or "").split(".")[0]] if node.module else [a.name for a in node.names]
                    assert not set(first) & pipeline, f"{path.name} imports {first}"
                else:
                    assert not any(n.startswith("salrepro.pipeline") for n in names), f"{path.name} imports {names}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("salrepro.pipeline") for a in node.names), path.name


def test_the_schema_the_sweep_stages_and_the_retrain_order_come_from_the_registry():
    sections = registry.section_schema()
    assert {k: config.SCHEMA[k] for k in sections} == sections and set(config.SCHEMA) == set(schema.TOP) | set(sections)
    assert config.STAGES == tuple(s.name for s in registry.STAGES if s.sweep)
    order = retrain.ORDER
    assert set(order) == {s.name for s in registry.STAGES if s.trains}
    for st in registry.STAGES:
        for other in st.reuses:  # a stage retrains after every stage whose runs it reuses
            if st.trains and registry.STAGE[other].trains:
                assert order.index(other) < order.index(st.name), (st.name, other)
        cls = registry.settings_class(st.name)
        assert issubclass(cls, Instance)
        if st.sweep:  # a sweep stage's runs are its settings' configs() (tuned: those known before training)
            assert callable(getattr(cls, "configs", None)), st.name
        if st.settings is not None:  # every key of its section is a typed field of its settings
            assert set(st.section) - {"datasets"} <= {f.name for f in dataclasses.fields(cls)}, st.name
        assert (ROOT / "notebooks" / f"{st.notebook or st.name}.ipynb").is_file()


def test_a_stage_within_another_is_refused_a_dataset_the_other_lacks():
    cfg = config.load_params(ROOT / "params.yaml")
    for st in (s for s in registry.STAGES if s.within):
        bad = {**cfg, "datasets": {**cfg["datasets"], "semeion": {}}, st.name: {**cfg[st.name], "datasets": ["semeion"]}}
        try:
            config.validate(bad)
        except config.ParamsError as e:
            assert f"{st.name}.datasets: 'semeion' must also be in {st.within}.datasets" in str(e)
        else:
            raise AssertionError(f"{st.name} accepted a dataset {st.within} does not run")


def test_each_claim_is_judged_by_a_stage_and_each_stage_judges_its_own():
    ids = [c.id for c in claims.CLAIMS]
    for st in registry.STAGES:
        assert set(st.claims) <= set(ids), st.name
    judged = {c for st in registry.STAGES if st.name != "report" for c in st.claims}
    assert judged == set(ids) and set(registry.STAGE["report"].claims) == set(ids)
    for st in (s for s in registry.STAGES if s.claims and s.name != "report"):  # its notebook asks the registry
        source = (ROOT / "notebooks" / f"{st.notebook or st.name}.ipynb").read_text()
        assert f'registry.judge(\\"{st.name}\\"' in source or "registry.judge(stage," in source, st.name  # or its `stage`


def test_judge_runs_a_stage_s_claims_in_the_claims_table_s_order():
    runs = pd.DataFrame([{"dataset": "digits", "display": "Digits", "method": m, "areas": k, "depth": 2, "hidden": 256,
                          "reading": "default", "seed": i, "val_accuracy_pct": acc + i, "train_loss": 1.0 - acc / 100,
                          "diverged": False, "unstable": False, "label": label}
                         for m, k, acc, label in (("bp", 1, 50.0, "BP"), ("sal", 1, 60.0, "SAL-1"), ("sal", 16, 70.0, "SAL-16"))
                         for i in range(3)])
    found = registry.judge("area_sweep", runs)
    assert [c["claim"] for c in found] == [c.statement for c in claims.CLAIMS if c.data == "table2"]
    assert found[0]["datasets"][0]["estimate"] == 20.0  # SAL-16 - BP
    assert [c["claim"] for c in registry.judge("tuned", runs, data=("depth",))] == [
        c.statement for c in claims.CLAIMS if c.id in ("gap_grows_with_depth", "trains_at_every_depth")]


def test_instances_follow_the_retrain_order_with_datasets_from_each_section():
    cfg = config.load_params(ROOT / "params.yaml")
    got = registry.instances(cfg)
    assert [s for s, _ in got] == [s for s in retrain.ORDER for _ in (cfg[s]["datasets"] if registry.STAGE[s].per_dataset else [0])]
    assert registry.datasets_of("protocol_study", cfg) == list(dict.fromkeys(
        cfg["protocol_study"]["fit"] + cfg["protocol_study"]["held_out"]))


def test_every_module_function_string_of_the_registry_resolves():
    """A Stage's runner and settings are "module:name" strings resolved at run time: each names a callable
    (the runner takes the stage's keyword arguments) and a settings class with `read` (configs() for sweeps)."""
    import inspect

    from salrepro.pipeline.settings import Instance

    for st in registry.STAGES:
        if st.runner:
            fn = registry._function(st.runner)
            params = inspect.signature(fn).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            assert takes_any or {"params_file", "out_dir", "progress", "results"} <= set(params), st.name
            assert (next(iter(params)) == "dataset") == st.per_dataset, st.name
        cls = registry.settings_class(st.name)
        assert issubclass(cls, Instance) and hasattr(cls, "read"), st.name
        if st.sweep:
            assert callable(getattr(cls, "configs", None)), st.name


def test_each_runner_reads_exactly_the_stores_its_stage_declares(tmp_path, monkeypatch):
    """The stores a runner passes to run_all (read_from) are its Stage's `reuses` and `reads`, as far as they
    exist: every store is planted, each runner called with run_all stopped at its first call."""
    from salrepro import runs as ex

    params = ROOT / "tests/notebooks/params-test.yaml"
    results = tmp_path / "results"
    for st in registry.STAGES:
        for d in ("digits",):
            (results / st.name / d / "runs").mkdir(parents=True)

    class Stop(Exception):
        pass

    seen = {}

    def fake_run_all(configs, data_for, *, read_from=(), **kw):
        seen.setdefault(current, set()).update(p.parent.parent.name for p in read_from)
        raise Stop

    monkeypatch.setattr(ex, "run_all", fake_run_all)  # the runners call it through the runs package
    for st in registry.STAGES:
        if not st.trains:
            continue
        current = st.name
        try:
            registry.run(st.name, "digits" if st.per_dataset else None, params_file=str(params),
                         out_dir=tmp_path / "out" / st.name, results=results)
        except Stop:
            pass
        if st.name == "tuned":  # its selection trains first, in its own store; its reported runs read
            continue  # registry.STAGE["tuned"].reuses itself (tuned.run_tuned)
        assert seen.get(st.name, set()) == set(st.reuses) | set(st.reads), st.name
