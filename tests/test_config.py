"""params.yaml and its checks (config.py)."""

import copy
from pathlib import Path

import pytest
import yaml

from salrepro.pipeline.config import ParamsError, load_params, parse_method, stage_settings, validate

ROOT = Path(__file__).resolve().parent.parent


def quick():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_is_the_quick_profile():
    profile = yaml.safe_load((ROOT / "conf/profile/quick.yaml").read_text())
    assert quick() == profile and quick()["profile"] == "quick"


@pytest.mark.parametrize("name", ["quick", "cpu", "paper"])
def test_every_profile_validates(name):
    validate(yaml.safe_load((ROOT / f"conf/profile/{name}.yaml").read_text()))


def test_paper_profile_covers_the_paper():
    p = yaml.safe_load((ROOT / "conf/profile/paper.yaml").read_text())
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
        (("tuned", "depth", "preset"), "best", "tuned.depth.preset: got 'best'"),
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
