"""Stage grids and outputs (stages.py)."""

from dataclasses import replace


import salrepro
from salrepro.pipeline import stages
from salrepro.pipeline.config import read_yaml, stage_settings, validate


def settings(stage):
    return stage_settings(validate(read_yaml("params.yaml")), stage, "digits")


def test_area_sweep_grid_is_table2():
    configs = stages.stage_configs("area_sweep", settings("area_sweep"))
    assert len(configs) == 6 * 5
    assert [c.label for c in configs[::5]] == ["BP", "SAL-1", "SAL-2", "SAL-4", "SAL-8", "SAL-16"]
    assert {(c.epochs, c.batch_size, c.lr, c.hidden, c.depth) for c in configs} == {(25, 16, 1e-4, 256, 2)}


def test_depth_width_and_moe_grids():
    s = settings("depth")
    depth = stages.stage_configs("depth", s)
    sal = sum(m.startswith("sal") for m in s.methods)
    assert len(depth) == (len(s.methods) + sal * len(s.presets)) * len(s.depths) * s.seeds
    assert {c.hidden for c in depth} == {s.hidden} and {c.depth for c in depth} == set(s.depths)
    w = settings("width")
    assert {c.hidden for c in stages.stage_configs("width", w)} == set(w.widths)
    moe = stages.stage_configs("moe", settings("moe"))
    assert {c.method for c in moe} == {"sal", "moe", "salbp"} and len(moe) == 3 * 5 * 5
    sweep = {c.key() for c in stages.stage_configs("area_sweep", settings("area_sweep"))}
    assert {c.key() for c in moe if c.method == "sal"} <= sweep  # the moe stage reuses the area sweep's SAL runs


def test_preset_sweep_is_the_area_sweep_with_sal_under_the_preset():
    sweep = stages.stage_configs("area_sweep", settings("area_sweep"))
    preset = stages.stage_configs("preset_sweep", settings("preset_sweep"))
    assert len(preset) == len(sweep)
    for a, p in zip(sweep, preset):
        if a.method == "bp":  # BP has no SAL options: the very same runs, shared with the area sweep
            assert p.key() == a.key()
        else:
            assert dict(p.options) == salrepro.PRESETS["paper_fit"] and p.key() != a.key()
            assert (p.num_areas, p.seed, p.epochs, p.lr) == (a.num_areas, a.seed, a.epochs, a.lr)


def test_method_options_go_only_where_they_apply():
    from salrepro.pipeline.settings import method_options

    assert method_options("bp", {"divisor": "sum", "init": "torch_default"}) == {"init": "torch_default"}
    assert method_options("sal", {"divisor": "sum", "balance_coef": 0.1}) == {"divisor": "sum"}
    assert method_options("moe", {"divisor": "sum", "balance_coef": 0.1}) == {"balance_coef": 0.1}


def test_depth_and_width_run_sal_again_under_each_preset_and_bp_once():
    for stage in ("depth", "width"):
        s = settings(stage)
        assert s.presets == ("paper_fit",)
        configs = stages.stage_configs(stage, s)
        readings = {(c.method, salrepro.reading_of(c.method, dict(c.options))) for c in configs}
        assert readings == {("bp", "default"), ("sal", "default"), ("sal", "paper_fit")}
        preset = [c for c in configs if c.method == "sal" and dict(c.options)]
        assert {dict(c.options) == salrepro.PRESETS["paper_fit"] for c in preset} == {True}
        assert len({c.key() for c in configs}) == len(configs)


def test_the_widest_nets_can_run_fewer_seeds():
    s = replace(settings("width"), widths=(256, 4096), seeds=3, seeds_at={4096: 1}, presets=())
    configs = stages.stage_configs("width", s)
    per_width = {w: sorted({c.seed for c in configs if c.hidden == w}) for w in (256, 4096)}
    assert per_width == {256: [0, 1, 2], 4096: [0]}


def test_a_reading_can_stop_at_fewer_widths_while_bp_and_the_other_readings_run_them_all():
    s = replace(settings("width"), widths=(256, 2048), seeds=1, presets=("paper_fit",), widths_of={"default": [256]})
    got = {(c.method, salrepro.reading_of(c.method, dict(c.options)), c.hidden) for c in stages.stage_configs("width", s)}
    assert got == {("bp", "default", 256), ("bp", "default", 2048), ("sal", "default", 256),
                   ("sal", "paper_fit", 256), ("sal", "paper_fit", 2048)}


def test_the_widest_nets_can_run_on_fewer_datasets():
    s = replace(settings("width"), widths=(256, 2048), seeds=1, datasets_at={2048: ["semeion"]})
    assert {c.hidden for c in stages.stage_configs("width", s)} == {256}  # digits: not at 2048
    semeion = replace(s, dataset="semeion")
    assert {c.hidden for c in stages.stage_configs("width", semeion)} == {256, 2048}
