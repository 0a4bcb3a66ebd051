"""The pipeline's configuration: `params.yaml`, read and checked.

    cfg = load_params("params.yaml")
    s = stage_settings(cfg, "area_sweep", "digits")   # one stage instance's settings (settings.py)

`params.yaml` as committed is the `quick` profile; `conf/profile/*.yaml`
hold every profile, documented there; `salrepro profile cpu` writes one into params.yaml
(as DVC's Hydra composition, `dvc exp run -S profile=cpu`, does) after checking it can run here.
Methods are written as in the paper's tables: `bp`, `sal-4`, `moe-16`,
`dfa`, `fa`. Everything is checked before any stage trains: an unknown key,
a wrong type or an out-of-range value raises `ParamsError` naming the key,
the value and what is allowed.

Every params and profile file is read by `read_yaml` / `parse_yaml`, the way DVC reads params.yaml
(ruamel.yaml's safe loader, YAML 1.2): `lr: 1e-4` is the number 0.0001 here as it is for DVC. PyYAML
reads YAML 1.1, where `1e-4` (no dot) is the string '1e-4' and `yes` is True: the same file would mean
one thing to `dvc repro`'s params tracking and another to the stages.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..data import DATA_OPTIONS, DATASETS, TRAIN_SIZES, data_options
from ..method.models import OPTIONS, check_method_options
from . import registry, schema
from .schema import PROFILES, ParamsError, parse_method  # noqa: F401  (the config API)
from .settings import instance_fields

STAGES = registry.sweep_stages()  # the stages with a grid per dataset and a summary.csv each
SCHEMA = {**schema.TOP, **registry.section_schema()}  # each stage's section declared with its Stage

# data options (data.DATA_OPTIONS): name -> (check, what is allowed)
DATASET_OPTIONS = {key: ((lambda allowed: lambda v: v in allowed)(allowed),
                         f"one of {list(allowed)} (default {default!r}{'; ' + ', '.join(only) + ' only' if only else ''}): {what}")
                   for key, (allowed, default, only, what) in DATA_OPTIONS.items()}


def parse_yaml(text: str, where: str = "params"):
    """YAML text as DVC reads params.yaml (`dvc.utils.serialize.parse_yaml`: ruamel.yaml, typ="safe",
    YAML 1.2): plain dicts, lists, ints, floats (`1e-4`, `1E-4`, `.0001`, `1.0e-4` alike), strings; None
    for an empty document. A syntax error raises ParamsError naming `where`."""
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as e:
        raise ParamsError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None


def read_yaml(path):
    """A params or profile file, read as DVC reads it (`parse_yaml`); a profile's `defaults` list composed
    first, as DVC's Hydra composition does (`compose`)."""
    path = Path(path)
    tree = parse_yaml(path.read_text(), str(path))
    return compose(tree, path) if isinstance(tree, dict) and "defaults" in tree else tree


def compose(tree: dict, path: Path) -> dict:
    """Hydra's composition, for the form the profiles use (conf/base.yaml): `defaults`, a list of configs
    (`/name`: conf/name.yaml; `name`: beside this file) and `_self_` (this file's keys; last if not listed),
    each merged over those before it: mappings key by key, anything else replaced. A test holds it to
    DVC's own composition of every profile."""
    own = {k: v for k, v in tree.items() if k != "defaults"}
    entries = list(tree["defaults"] or [])
    entries += [] if "_self_" in entries else ["_self_"]
    out: dict = {}
    for entry in entries:
        if entry == "_self_":
            part = own
        elif isinstance(entry, str) and entry:
            source = _config_root(path) / f"{entry[1:]}.yaml" if entry.startswith("/") else path.parent / f"{entry}.yaml"
            if not source.is_file():
                raise ParamsError(f"{path}: defaults: {entry}: no {source} (run from the project root)")
            part = read_yaml(source)
        else:
            raise ParamsError(f"{path}: defaults: got {entry!r}; allowed: '/name' (conf/name.yaml), 'name' "
                              "(beside this file) or '_self_'")
        out = _merge(out, part)
    unset = [k for k, v in _leaves(out) if v == "???"]
    if unset:
        raise ParamsError(f"{path}: {unset[0]}: missing (conf/base.yaml leaves it to each profile: set it here)")
    return out


def _config_root(path: Path) -> Path:
    """The folder `/name` defaults resolve in: conf/ of the checkout holding `path`, else (a profile copied
    out of it) of the checkout here."""
    from ..data import project_root

    own = project_root(Path(path).resolve().parent) / "conf"
    return own if own.is_dir() else project_root() / "conf"


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _leaves(tree: dict, where: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{where}{k}.")
        else:
            yield f"{where}{k}", v


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
    for st in registry.STAGES:  # every dataset a stage lists is declared, with its data options
        for key in st.dataset_keys if st.section is not None else ():
            for name in registry.section_value(cfg[st.name], key):
                if name not in ds:
                    raise ParamsError(f"{st.name}.{key}: {name!r} is not listed under datasets: {sorted(ds)}; add it there first")
    trained = [(st.name, n) for st in registry.STAGES if st.section and "batch_size" in st.section
               for n in registry.datasets_of(st.name, cfg)]  # every stage with its own batch size
    trained += [("depth", n) for n in cfg["tuned"]["depth"]["datasets"]]  # tuned depth trains at depth's settings
    trained += [("area_sweep", n) for n in cfg["calibration"]["datasets"]]  # calibration trains at area_sweep's settings
    for stage, name in trained:  # moe and preset_sweep train on area_sweep's datasets (checked below)
        if cfg[stage]["batch_size"] > TRAIN_SIZES[name]:
            raise ParamsError(f"{stage}.batch_size: got {cfg[stage]['batch_size']}; allowed: at most the "
                              f"{TRAIN_SIZES[name]} training samples of {name}")
    for st in registry.STAGES:  # a stage that reuses another's runs trains on some of its datasets
        if st.within is not None:
            for name in cfg[st.name]["datasets"]:
                if name not in cfg[st.within]["datasets"]:
                    raise ParamsError(f"{st.name}.datasets: {name!r} must also be in {st.within}.datasets (runs are shared with it)")


def _check_widths_of(cfg: dict) -> None:
    width = cfg["width"]
    for reading, widths in width["widths_of"].items():
        if reading != "default" and reading not in width["presets"]:
            raise ParamsError(f"width.widths_of.{reading}: not a reading of this stage; allowed: "
                              f"{['default', *width['presets']]}")
        if not set(widths) <= set(width["widths"]):
            raise ParamsError(f"width.widths_of.{reading}: got {widths}; allowed: a subset of width.widths {width['widths']}")
    for w, names in width["datasets_at"].items():
        if w not in width["widths"]:
            raise ParamsError(f"width.datasets_at.{w}: not a width of width.widths {width['widths']}")
        if not set(names) <= set(width["datasets"]):
            raise ParamsError(f"width.datasets_at.{w}: got {names}; allowed: a subset of width.datasets {width['datasets']}")


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
    _check_widths_of(cfg)
    _check_readings(cfg)
    return cfg


def params_text(cfg: dict) -> str:
    """A params tree as DVC's Hydra composition writes params.yaml (`dvc exp run -S profile=NAME`): block
    lists, no comments. The committed params.yaml is exactly this for the quick profile, so switching to
    quick rewrites it byte for byte; the profiles' documentation lives in conf/profile/*.yaml. (Written with
    PyYAML, whose output both YAML versions read alike: floats always carry a dot or an exponent with one.)"""
    return yaml.safe_dump(cfg, sort_keys=False)


def profile_file(name: str, root=None) -> Path:
    """conf/profile/NAME.yaml of the checkout; ParamsError naming the profiles there if there is none."""
    from ..data import project_root

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
    return validate(read_yaml(path))


def stage_settings(cfg: dict, stage: str, dataset: str):
    """One stage instance's settings, typed: its Stage's settings class (settings.py), with the fields
    every instance has and the stage's own, read from its section and those it shares training with."""
    if stage not in STAGES:
        raise ParamsError(f"stage {stage!r}: expected one of {STAGES}")
    if dataset not in cfg[stage]["datasets"]:
        raise ParamsError(f"{stage}.datasets: {dataset!r} is not in this profile's list {cfg[stage]['datasets']}")
    cls = registry.settings_class(stage)
    return cls(**instance_fields(cfg, stage, dataset), **cls.read(cfg, stage, dataset))
