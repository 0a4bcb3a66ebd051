"""params.yaml and its checks (config.py)."""

import copy
from pathlib import Path

import pytest

from salrepro.pipeline.config import _leaves
from salrepro.pipeline.config import ParamsError, load_params, params_text, parse_method, read_yaml, stage_settings, validate

ROOT = Path(__file__).resolve().parent.parent


def quick():
    return read_yaml(ROOT / "params.yaml")


def test_committed_params_is_the_quick_profile():
    profile = read_yaml(ROOT / "conf/profile/quick.yaml")
    assert quick() == profile and quick()["profile"] == "quick"


@pytest.mark.parametrize("name", ["quick", "cpu", "paper"])
def test_every_profile_validates(name):
    validate(read_yaml(ROOT / f"conf/profile/{name}.yaml"))


def test_paper_profile_covers_the_paper():
    p = read_yaml(ROOT / "conf/profile/paper.yaml")
    assert len(p["area_sweep"]["datasets"]) == 10 and max(p["depth"]["depths"]) == 128
    assert max(p["width"]["widths"]) == 4096 and p["width"]["depth"] == 64 and p["device"] == "cuda"


@pytest.mark.parametrize(
    "path, value, needle",
    [
        (("area_sweep", "epocs"), 3, "area_sweep.epocs: unknown key (a typo?)"),
        (("area_sweep", "lr"), 0, "area_sweep.lr: got 0; allowed: a number > 0"),
        (("area_sweep", "lr"), "fast", "area_sweep.lr: got 'fast'"),
        (("area_sweep", "methods"), ["bp", "sal-0"], "area_sweep.methods: got ['bp', 'sal-0']"),
        (("depth", "depths"), [1, 2], "depth.depths: got [1, 2]; allowed: a list of integers >= 2"),
        (("area_sweep", "datasets"), ["imagenet"], "area_sweep.datasets: got ['imagenet']"),
        (("profile",), "huge", "profile: got 'huge'; allowed: one of"),
        (("device",), "tpu", "device: got 'tpu'"),
        (("area_sweep", "options"), {"divisr": "sum"}, "area_sweep.options.divisr: not an option"),
        (("datasets", "digits"), {"scale": "raw"}, "datasets.digits.scale: unknown data option"),
        (("moe", "datasets"), ["mnist"], "moe.datasets: 'mnist' is not listed under datasets"),
        (("datasets", "digits"), {"input_norm": "zscore"},
         "datasets.digits.input_norm: got 'zscore'; allowed: one of ['pm1', 'unit', 'standard', 'global'] (default 'pm1')"),
        (("datasets", "digits"), {"usps_train": "rebuilt"}, "datasets.digits: data option 'usps_train' applies to usps only"),
        (("calibration", "input_norms"), ["pm1", "zscore"], "calibration.input_norms: got ['pm1', 'zscore']"),
        (("calibration", "datasets"), ["mnist"], "calibration.datasets: 'mnist' is not listed under datasets"),
        (("calibration", "inputs"), ["pm1"], "calibration.inputs: unknown key (a typo?)"),
        (("area_sweep", "batch_size"), 2000, "area_sweep.batch_size: got 2000; allowed: at most the 1437 training samples of digits"),
        (("depth", "seeds"), 0, "depth.seeds: got 0; allowed: an integer >= 1"),
        (("width", "widths"), [], "width.widths: got []"),
        (("preset_sweep", "preset"), "best", "preset_sweep.preset: got 'best'; allowed: a named preset of models.PRESETS"),
        (("preset_sweep", "preset"), "sal_method", "preset_sweep.preset: got 'sal_method'"),  # the defaults are no preset
        (("tuned", "lrs"), [], "tuned.lrs: got []; allowed: a non-empty list of learning rates > 0"),
        (("tuned", "lrs"), [1e-3, -1], "tuned.lrs: got [0.001, -1]"),
        (("tuned", "methods"), ["bp", "salbp-4"], "tuned.methods: got ['bp', 'salbp-4']; allowed: a non-empty list of methods from bp, sal-K, moe-K"),
        (("tuned", "presets"), ["best"], "tuned.presets: got ['best']"),
        (("tuned", "select_seeds"), 0, "tuned.select_seeds: got 0"),
        (("tuned", "depth", "readings"), ["best"], "tuned.depth.readings: got ['best']"),
        (("tuned", "depth", "methods"), ["moe-4"], "tuned.depth.methods: got ['moe-4']"),
        (("tuned", "depth", "datasets"), ["mnist"], "tuned.depth.datasets: 'mnist' is not listed under datasets"),
        (("tuned", "datasets"), ["mnist"], "tuned.datasets: 'mnist' is not listed under datasets"),
        (("tuned", "lr"), 0.1, "tuned.lr: unknown key (a typo?)"),
        (("depth", "presets"), ["best"], "depth.presets: got ['best']"),
        (("width", "presets"), "paper_fit", "width.presets: got 'paper_fit'"),
        (("width", "seeds_at"), {4096: 0}, "width.seeds_at: got {4096: 0}"),
        (("width", "widths_of"), {"default": []}, "width.widths_of: got {'default': []}"),
        (("width", "widths_of"), {"best": [256]}, "width.widths_of.best: not a reading of this stage"),
        (("width", "widths_of"), {"default": [8192]}, "width.widths_of.default: got [8192]; allowed: a subset"),
        (("width", "datasets_at"), {4096: "semeion"}, "width.datasets_at: got {4096: 'semeion'}"),
        (("width", "datasets_at"), {8192: ["digits"]}, "width.datasets_at.8192: not a width of width.widths"),
        (("width", "datasets_at"), {256: ["semeion"]}, "width.datasets_at.256: got ['semeion']; allowed: a subset of width.datasets"),
    ],
)
def test_bad_params_name_key_value_and_allowed(path, value, needle):
    cfg = copy.deepcopy(quick())
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ParamsError) as err:
        validate(cfg)
    assert needle in str(err.value)


def test_parse_method():
    assert parse_method("sal-16") == ("sal", 16) and parse_method("bp") == ("bp", 1) and parse_method("moe-2") == ("moe", 2)
    for bad in ("bp-2", "sal-x", "adam", 3):
        with pytest.raises(ParamsError):
            parse_method(bad)


def test_moe_settings_come_from_the_area_sweep(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text((ROOT / "params.yaml").read_text())
    s = stage_settings(load_params(p), "moe", "digits")
    assert (s.epochs, s.batch_size, s.lr, s.hidden, s.seeds) == (25, 16, 0.0001, 256, 5)
    with pytest.raises(ParamsError, match="not in this profile's list"):
        stage_settings(load_params(p), "depth", "mnist")


def test_missing_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------------------------------
# one YAML reading: params as DVC reads them (YAML 1.2), not as PyYAML does (YAML 1.1)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", ["1e-4", "1E-4", ".0001", "1.0e-4", "0.0001", "1e-04"])
def test_a_learning_rate_reads_as_the_number_a_user_typed(tmp_path, typed):
    """`lr: 1e-4` is how the paper and the README write it; under YAML 1.1 (PyYAML) it is the string '1e-4'
    and the check refused it, while DVC, which reads YAML 1.2, took it for a number."""
    text = (ROOT / "params.yaml").read_text()
    assert text.count("  lr: 0.0001\n") >= 2
    params = tmp_path / "params.yaml"
    params.write_text(text.replace("  lr: 0.0001\n", f"  lr: {typed}\n"))
    cfg = load_params(params)
    assert cfg["area_sweep"]["lr"] == cfg["depth"]["lr"] == 1e-4 and isinstance(cfg["area_sweep"]["lr"], float)
    assert stage_settings(cfg, "area_sweep", "digits").lr == 1e-4


def test_our_reading_of_every_params_file_is_dvc_s():
    """DVC tracks params.yaml's values with its own parser; the stages must see the same values."""
    dvc_serialize = pytest.importorskip("dvc.utils.serialize")
    for path in [ROOT / "params.yaml", ROOT / "conf/base.yaml", *sorted((ROOT / "conf/profile").glob("*.yaml")),
                 ROOT / "tests/notebooks/params-test.yaml"]:
        own = dvc_serialize.parse_yaml(path.read_text(), str(path))  # a profile: its own keys, DVC's reading of them
        composed = read_yaml(path)
        for key, value in own.items():
            if key != "defaults":
                assert composed[key] == value or isinstance(value, dict), (path.name, key)
    text = "a: 1e-4\nb: yes\nc: .5\nd: [1, 1E3]\n"
    assert read_yaml_text(text) == dvc_serialize.parse_yaml(text, "x") == {"a": 1e-4, "b": "yes", "c": 0.5, "d": [1, 1e3]}


def read_yaml_text(text):
    from salrepro.pipeline.config import parse_yaml

    return parse_yaml(text)


def test_bad_yaml_is_one_line_naming_the_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("area_sweep: [1, 2\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML: ") as err:
        load_params(params)
    assert "\n" not in str(err.value)


def test_params_are_read_by_one_loader():
    """No module of the package reads YAML but through config.parse_yaml: a second reader (PyYAML's
    safe_load reads YAML 1.1) would make the same file mean two things."""
    import ast

    readers = []
    for path in sorted((ROOT / "src" / "salrepro").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"safe_load", "load", "full_load", "unsafe_load", "load_all"} \
                    and isinstance(node.value, ast.Name) and node.value.id in {"yaml", "YAML"}:
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


@pytest.mark.parametrize("name", ["quick", "cpu", "paper"])
def test_a_profile_is_the_base_plus_its_overrides_as_dvc_composes_it(name, tmp_path):
    """`dvc exp run -S profile=NAME` (Hydra) and `salrepro profile NAME` (config.compose) write the same
    params.yaml, byte for byte, and the quick profile's is the committed one. A profile lists only what
    differs from conf/base.yaml."""
    hydra = pytest.importorskip("dvc.utils.hydra")
    out = tmp_path / "params.yaml"
    hydra.compose_and_dump(out, str(ROOT / "conf"), None, "config", str(tmp_path), [f"profile={name}"])
    ours = read_yaml(ROOT / f"conf/profile/{name}.yaml")
    assert out.read_text() == params_text(ours)
    if name == "quick":
        assert out.read_text() == (ROOT / "params.yaml").read_text()
    own = read_yaml_text((ROOT / f"conf/profile/{name}.yaml").read_text())
    base = read_yaml_text((ROOT / "conf/base.yaml").read_text())
    assert own.pop("defaults") == ["/base", "_self_"]
    for key, value in _leaves(own):  # overrides only: nothing the base already says
        node = base
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        assert node == {} or node != value, f"{name}.yaml restates the base's {key}"


def test_composition_merges_mappings_replaces_the_rest_and_refuses_an_unset_key(tmp_path):
    (tmp_path / "conf" / "profile").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "salrepro"\n')
    (tmp_path / "conf" / "base.yaml").write_text("profile: ???\na: {x: 1, y: [1, 2]}\nb: {}\n")
    prof = tmp_path / "conf" / "profile" / "p.yaml"
    prof.write_text("defaults:\n  - /base\n  - _self_\nprofile: p\na: {y: [3]}\nb: {z: 1}\n")
    assert read_yaml(prof) == {"profile": "p", "a": {"x": 1, "y": [3]}, "b": {"z": 1}}
    prof.write_text("defaults:\n  - /base\na: {x: 2}\n")
    with pytest.raises(ParamsError, match="profile: missing"):
        read_yaml(prof)
    prof.write_text("defaults:\n  - /nothing\nprofile: p\n")
    with pytest.raises(ParamsError, match="defaults: /nothing: no "):
        read_yaml(prof)
