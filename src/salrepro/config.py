"""The pipeline's configuration: `params.yaml`, read and checked.

    cfg = load_params("params.yaml")
    s = stage_settings(cfg, "area_sweep", "digits")   # dict for one stage instance

`params.yaml` as committed is the `quick` profile; `conf/profile/*.yaml`
hold every profile, documented there; `salrepro profile cpu` writes one into params.yaml
(as DVC's Hydra composition, `dvc exp run -S profile=cpu`, does) after checking it can run here.
Methods are written as in the paper's tables: `bp`, `sal-4`, `moe-16`,
`dfa`, `fa`. Everything is checked before any stage trains: an unknown key,
a wrong type or an out-of-range value raises `ParamsError` naming the key,
the value and what is allowed.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import yaml

from .data import DATA_OPTIONS, DATASETS, INPUT_NORMS, TRAIN_SIZES, data_options
from .models import METHODS, OPTIONS, PRESETS, check_method_options

PROFILES = ("quick", "cpu", "paper", "test")
STAGES = ("area_sweep", "preset_sweep", "depth", "width", "moe", "tuned")


class ParamsError(ValueError):
    """A bad value in params.yaml."""


# ---------------------------------------------------------------------------
# Schema: key -> (checker, description of what is allowed)
# ---------------------------------------------------------------------------
def _is_int(v, lo=None, hi=None):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)


def _is_pos_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0


def _is_list(check):
    return lambda v: isinstance(v, list) and len(v) > 0 and all(check(x) for x in v)


def _is_choice_lists(v):
    return isinstance(v, dict) and all(isinstance(x, list) and x for x in v.values())


def parse_method(spec: str) -> tuple[str, int]:
    """'sal-4' -> ('sal', 4); 'bp' -> ('bp', 1)."""
    if not isinstance(spec, str):
        raise ParamsError(f"method {spec!r}: expected a string like 'bp', 'sal-4' or 'moe-16'")
    name, _, k = spec.partition("-")
    if name not in METHODS or (k and not k.isdigit()) or (k and int(k) < 1):
        raise ParamsError(f"method {spec!r}: expected one of {METHODS}, with '-K' (K >= 1) for sal, moe and salbp, e.g. 'sal-4'")
    areas = int(k) if k else 1
    if name in ("bp", "dfa", "fa") and areas != 1:
        raise ParamsError(f"method {spec!r}: {name} has one area; write {name!r}")
    return name, areas


def _is_method(v):
    try:
        parse_method(v)
        return True
    except ParamsError:
        return False


_TRAINING = {
    "seeds": (lambda v: _is_int(v, 1), "an integer >= 1 (number of seeds, 0..seeds-1)"),
    "epochs": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "batch_size": (lambda v: _is_int(v, 1), "an integer >= 1 (and at most the training set size)"),
    "lr": (_is_pos_number, "a number > 0"),
    "options": (lambda v: isinstance(v, dict), "a mapping of method options (docs/method.md), {} for the defaults"),
}
_DATASETS_LIST = (_is_list(lambda d: d in DATASETS), f"a non-empty list of datasets from {DATASETS}")
_METHODS_LIST = (_is_list(_is_method), "a non-empty list of methods like 'bp', 'sal-4', 'moe-16', 'dfa', 'fa'")
_NAMED_PRESETS = [p for p in PRESETS if PRESETS[p]]
_PRESETS_LIST = (lambda v: isinstance(v, list) and all(p in _NAMED_PRESETS for p in v),
                 f"a list (possibly empty) of named presets of models.PRESETS, {_NAMED_PRESETS}: the SAL methods run "
                 "again under each (BP runs are shared)")

SCHEMA = {
    "profile": (lambda v: v in PROFILES, f"one of {PROFILES}"),
    "device": (lambda v: isinstance(v, str) and (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")),
               "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'"),
    "data": {
        "root": (lambda v: v is None or isinstance(v, str), "null ($SALREPRO_DATA, else data/raw) or a folder path"),
        "download": (lambda v: isinstance(v, bool), "true or false"),
    },
    "datasets": None,  # checked by _check_datasets
    "calibration": {"datasets": _DATASETS_LIST,
                    "input_norms": (_is_list(lambda v: v in INPUT_NORMS), f"a non-empty list of input maps from {INPUT_NORMS}")},
    "area_sweep": {"datasets": _DATASETS_LIST, "methods": _METHODS_LIST, "hidden": (lambda v: _is_int(v, 1), "an integer >= 1"),
                   **_TRAINING},
    "depth": {"datasets": _DATASETS_LIST, "methods": _METHODS_LIST, "depths": (_is_list(lambda v: _is_int(v, 2)), "a list of integers >= 2"),
              "hidden": (lambda v: _is_int(v, 1), "an integer >= 1 (the hidden width, as in area_sweep)"),
              "presets": _PRESETS_LIST, **_TRAINING},
    "width": {"datasets": _DATASETS_LIST, "methods": _METHODS_LIST, "widths": (_is_list(lambda v: _is_int(v, 1)), "a list of integers >= 1"),
              "depth": (lambda v: _is_int(v, 2), "an integer >= 2"), "presets": _PRESETS_LIST,
              "seeds_at": (lambda v: isinstance(v, dict) and all(_is_int(k, 1) and _is_int(n, 1) for k, n in v.items()),
                           "a mapping from a width to its number of seeds where it differs from `seeds` (the widest "
                           "nets take an hour a run on a CPU), {} for none"),
              **_TRAINING},
    "moe": {"datasets": _DATASETS_LIST, "areas": (_is_list(lambda v: _is_int(v, 1)), "a list of integers >= 1 (K of sal-K and moe-K)"),
            "methods": (_is_list(lambda v: v in ("moe", "salbp")), "a non-empty list from ['moe', 'salbp']: the methods run beside SAL at each K"),
            "options": _TRAINING["options"]},
    "preset_sweep": {"preset": (lambda v: v in PRESETS and bool(PRESETS[v]), f"a named preset of models.PRESETS other than the defaults: {[p for p in PRESETS if PRESETS[p]]}"),
                     "datasets": _DATASETS_LIST},
    "protocol_study": {"fit": _DATASETS_LIST,
                       "held_out": (lambda v: v == [] or _DATASETS_LIST[0](v), f"a list (possibly empty) of datasets from {DATASETS}"),
                       "seeds": _TRAINING["seeds"],
                       "grid": (_is_choice_lists, "a mapping from a choice to the non-empty list of its values (crossed); {} for none"),
                       "one_at_a_time": (_is_choice_lists, "a mapping from a choice to the non-empty list of its values, each tried "
                                                           "alone from the best grid reading; {} for none"),
                       "readings": (lambda v: isinstance(v, dict) and all(isinstance(r, dict) for r in v.values()),
                                    "a mapping from reading name to its choices (method options and data options); {} for none"),
                       "held_out_readings": (lambda v: _is_int(v, 0), "an integer >= 0: the best fit-set readings run on the held-out set, with the defaults")},
    "tuned": {"datasets": _DATASETS_LIST,
              "methods": (_is_list(lambda v: _is_method(v) and parse_method(v)[0] in ("bp", "sal", "moe")),
                          "a non-empty list of methods from bp, sal-K, moe-K (the shallow net of Table 2)"),
              "presets": _PRESETS_LIST,
              "lrs": (_is_list(_is_pos_number), "a non-empty list of learning rates > 0 (the grid each method chooses from)"),
              "select_seeds": (lambda v: _is_int(v, 1), "an integer >= 1: runs per learning rate on the tuning split"),
              "depth": {"datasets": (lambda v: isinstance(v, list) and all(d in DATASETS for d in v),
                                     f"a list (possibly empty) of datasets from {DATASETS}: Figure 2 at tuned learning rates"),
                        "methods": (_is_list(lambda v: _is_method(v) and parse_method(v)[0] in ("bp", "sal")),
                                    "a non-empty list of methods from bp, sal-K"),
                        "preset": (lambda v: v is None or v in _NAMED_PRESETS,
                                   f"null (SAL under the defaults) or a named preset from {_NAMED_PRESETS}")}},
    "report": {"sigma": (_is_pos_number, "a number > 0 (verdict: |ours - paper| <= sigma x combined std)")},
}
# data options (data.DATA_OPTIONS): name -> (check, what is allowed)
DATASET_OPTIONS = {key: ((lambda allowed: lambda v: v in allowed)(allowed),
                         f"one of {list(allowed)} (default {default!r}{'; ' + ', '.join(only) + ' only' if only else ''}): {what}")
                   for key, (allowed, default, only, what) in DATA_OPTIONS.items()}


def _check(tree: dict, schema: dict, where: str) -> None:
    for key in tree:
        if key not in schema:
            raise ParamsError(f"{where}{key}: unknown key (a typo?); allowed here: {sorted(schema)}")
    for key, rule in schema.items():
        path = f"{where}{key}"
        if key not in tree:
            raise ParamsError(f"{path}: missing; expected {rule[1] if isinstance(rule, tuple) else 'a mapping'}")
        value = tree[key]
        if rule is None:
            continue
        if isinstance(rule, dict):
            if not isinstance(value, dict):
                raise ParamsError(f"{path}: expected a mapping with keys {sorted(rule)}, got {value!r}")
            _check(value, rule, path + ".")
        elif not rule[0](value):
            raise ParamsError(f"{path}: got {value!r}; allowed: {rule[1]}")


def _check_datasets(cfg: dict) -> None:
    ds = cfg["datasets"]
    if not isinstance(ds, dict) or not ds:
        raise ParamsError(f"datasets: expected a mapping from dataset name to its data options, got {ds!r}")
    for name, opts in ds.items():
        if name not in DATASETS:
            raise ParamsError(f"datasets.{name}: unknown dataset; allowed: {DATASETS}")
        if not isinstance(opts, dict):
            raise ParamsError(f"datasets.{name}: expected a mapping of data options ({sorted(DATASET_OPTIONS)}) or {{}}, got {opts!r}")
        for key, value in opts.items():
            if key not in DATASET_OPTIONS:
                raise ParamsError(f"datasets.{name}.{key}: unknown data option; allowed: {sorted(DATASET_OPTIONS)}")
            if not DATASET_OPTIONS[key][0](value):
                raise ParamsError(f"datasets.{name}.{key}: got {value!r}; allowed: {DATASET_OPTIONS[key][1]}")
        try:
            data_options(name, opts)
        except ValueError as e:
            raise ParamsError(f"datasets.{name}: {e}") from None
    for stage in ("calibration", *STAGES):
        for name in cfg[stage]["datasets"]:
            if name not in ds:
                raise ParamsError(f"{stage}.datasets: {name!r} is not listed under datasets: {sorted(ds)}; add it there first")
    for name in cfg["tuned"]["depth"]["datasets"]:
        if name not in ds:
            raise ParamsError(f"tuned.depth.datasets: {name!r} is not listed under datasets: {sorted(ds)}; add it there first")
    trained = [(st, n) for st in ("area_sweep", "depth", "width") for n in cfg[st]["datasets"]]
    trained += [("depth", n) for n in cfg["tuned"]["depth"]["datasets"]]  # tuned depth trains at depth's settings
    trained += [("area_sweep", n) for n in cfg["calibration"]["datasets"]]  # calibration trains at area_sweep's settings
    for stage, name in trained:  # moe and preset_sweep train on area_sweep's datasets (checked below)
        if cfg[stage]["batch_size"] > TRAIN_SIZES[name]:
            raise ParamsError(f"{stage}.batch_size: got {cfg[stage]['batch_size']}; allowed: at most the "
                              f"{TRAIN_SIZES[name]} training samples of {name}")
    for stage in ("moe", "preset_sweep", "tuned"):  # they train at area_sweep's settings
        for name in cfg[stage]["datasets"]:
            if name not in cfg["area_sweep"]["datasets"]:
                raise ParamsError(f"{stage}.datasets: {name!r} must also be in area_sweep.datasets (runs are shared with it)")


def _check_stage_options(cfg: dict) -> None:
    for stage in (s for s in STAGES if "options" in SCHEMA[s]):
        opts = cfg[stage]["options"]
        methods = ([parse_method(m)[0] for m in cfg[stage].get("methods", [])] if stage != "moe" else cfg[stage]["methods"]) or ["sal"]
        allowed = set().union(*(OPTIONS[m] for m in methods), {"init"})
        for key in opts:
            if key not in allowed:
                raise ParamsError(f"{stage}.options.{key}: not an option of {sorted(set(methods))}; allowed: {sorted(allowed)}")


def _check_readings(cfg: dict) -> None:
    study = cfg["protocol_study"]
    allowed = set(OPTIONS["sal"]) | {"init"} | set(DATASET_OPTIONS)
    choices = [(f"readings.{name}.{key}", key, [value]) for name, reading in study["readings"].items() for key, value in reading.items()]
    choices += [(f"{part}.{key}", key, values) for part in ("grid", "one_at_a_time") for key, values in study[part].items()]
    for where, key, values in choices:
        if key not in allowed:
            raise ParamsError(f"protocol_study.{where}: not a choice of the study; allowed: {sorted(allowed)}")
        for value in values:
            if key in DATASET_OPTIONS and not DATASET_OPTIONS[key][0](value):
                raise ParamsError(f"protocol_study.{where}: got {value!r}; allowed: {DATASET_OPTIONS[key][1]}")
            if key not in DATASET_OPTIONS:
                try:
                    check_method_options("sal", {key: value})
                except ValueError as err:
                    raise ParamsError(f"protocol_study.{where}: {err}") from None
    if not study["grid"] and not study["readings"]:
        raise ParamsError("protocol_study: needs a grid or named readings (both are empty)")
    for part in ("fit", "held_out"):
        for name in study[part]:
            if name not in cfg["datasets"]:
                raise ParamsError(f"protocol_study.{part}: {name!r} is not listed under datasets: {sorted(cfg['datasets'])}")


def validate(cfg: dict) -> dict:
    """Check a whole params tree; return it unchanged or raise ParamsError."""
    if not isinstance(cfg, dict):
        raise ParamsError(f"params: expected a mapping at the top level, got {type(cfg).__name__}")
    _check(cfg, SCHEMA, "")
    _check_datasets(cfg)
    _check_stage_options(cfg)
    _check_readings(cfg)
    return cfg


def params_text(cfg: dict) -> str:
    """A params tree as DVC's Hydra composition writes params.yaml (`dvc exp run -S profile=NAME`): block
    lists, no comments. The committed params.yaml is exactly this for the quick profile, so switching to
    quick rewrites it byte for byte; the profiles' documentation lives in conf/profile/*.yaml."""
    return yaml.safe_dump(cfg, sort_keys=False)


def profile_file(name: str, root=None) -> Path:
    """conf/profile/NAME.yaml of the checkout; ParamsError naming the profiles there if there is none."""
    from .data import project_root

    folder = Path(root if root is not None else project_root()) / "conf" / "profile"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ParamsError(f"profile {name!r}: no {path.relative_to(folder.parent.parent) if folder.is_dir() else path}; "
                          f"profiles here: {', '.join(have) or 'none (run from the project root)'}")
    return path


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file (run from the project root, or pass params_file=)")
    with open(path) as f:
        return validate(yaml.safe_load(f))


def stage_settings(cfg: dict, stage: str, dataset: str) -> dict:
    """Everything one stage instance needs, flattened: the stage's section,
    the training settings shared with area_sweep for moe, data options."""
    if stage not in STAGES:
        raise ParamsError(f"stage {stage!r}: expected one of {STAGES}")
    if dataset not in cfg[stage]["datasets"]:
        raise ParamsError(f"{stage}.datasets: {dataset!r} is not in this profile's list {cfg[stage]['datasets']}")
    s = dict(cfg[stage])
    if stage == "preset_sweep":  # the area sweep again, its SAL runs under a named preset (models.PRESETS)
        s.update({k: v for k, v in cfg["area_sweep"].items() if k != "datasets"})
        s["options"] = {**cfg["area_sweep"]["options"], **PRESETS[s["preset"]]}
    if stage == "moe":  # same training as Table 2: the SAL runs are the area sweep's
        sweep = cfg["area_sweep"]
        s.update({k: sweep[k] for k in ("seeds", "epochs", "batch_size", "lr", "hidden")})
        s["sal_options"] = sweep["options"]
    if stage == "tuned":  # Table 2's training but the learning rate, chosen per method from `lrs`
        sweep = cfg["area_sweep"]
        s.update({k: sweep[k] for k in ("seeds", "epochs", "batch_size", "hidden")})
        s["paper_lr"], s["sal_options"], s["moe_options"] = sweep["lr"], sweep["options"], cfg["moe"]["options"]
        depth = cfg["depth"]
        s["depth"] = {**s["depth"], **{k: depth[k] for k in ("depths", "hidden", "seeds", "epochs", "batch_size", "options")},
                      "run": dataset in s["depth"]["datasets"]}
    s["dataset"] = dataset
    s["data_options"] = dict(cfg["datasets"][dataset])
    s["data_root"] = cfg["data"]["root"]
    s["download"] = cfg["data"]["download"]
    s["device"] = cfg["device"]
    s["profile"] = cfg["profile"]
    return s
