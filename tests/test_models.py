"""build_model and count_parameters (models.py)."""

import math

import pytest
import torch

import salrepro


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(method="adam"), f"method: must be one of {salrepro.METHODS}"),
        (dict(num_areas=0), "areas: must be an integer >= 1"),
        (dict(num_areas=2.5), "areas: must be an integer >= 1"),
        (dict(depth=1), "depth: must be an integer >= 2"),
        (dict(hidden=0), "hidden: must be an integer >= 1"),
        (dict(method="bp", num_areas=4), "areas: method 'bp' has one area per layer"),
        (dict(divisor="mean"), "divisor: must be one of ('batch', 'area', 'sum')"),
        (dict(init="xavier"), "init: must be one of"),
        (dict(prototype_norm="l1"), "prototype_norm: must be one of ('unit', 'none')"),
        (dict(feedback_scale=-1.0), "feedback_scale: must be a number >= 0"),
        (dict(balance_coef=0.1), "balance_coef: not an option of method 'sal'"),
        (dict(num_classes=1), "num_classes: must be an integer >= 2"),
    ],
)
def test_bad_arguments_name_the_argument_and_allowed_values(kwargs, needle):
    args = dict(method="sal", in_features=8, num_classes=3, num_areas=2)
    args.update(kwargs)
    method, n, c = args.pop("method"), args.pop("in_features"), args.pop("num_classes")
    with pytest.raises(ValueError) as err:
        salrepro.build_model(method, n, c, **args)
    assert needle in str(err.value)


@pytest.mark.parametrize("method", ["bp", "sal", "moe", "dfa", "fa"])
def test_bad_batches_raise_value_error(method):
    model = salrepro.build_model(method, 8, 3, hidden=4, num_areas=2 if method in ("sal", "moe") else 1)
    with pytest.raises(ValueError, match=r"x: expected a \(batch, 8\) tensor \(in_features=8\)"):
        model.train_step(torch.zeros(4, 7), torch.zeros(4, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match=r"y: labels must lie in 0..2 \(num_classes=3\), got values in 0..3"):
        model.train_step(torch.zeros(4, 8), torch.tensor([0, 1, 2, 3]), 0.1)
    with pytest.raises(ValueError, match="y: labels must lie in 0..2"):
        model.train_step(torch.zeros(2, 8), torch.tensor([-1, 0]), 0.1)
    with pytest.raises(ValueError, match="x: expected"):
        model(torch.zeros(4, 9))


def test_count_parameters_paper_widest_net_on_meta():
    """Width 4096, depth 64, K = 4: about 1.07B active and 4.3B total."""
    n, C, w, D, K = 9216, 10, 4096, 64, 4  # STL-10 input (96 x 96 gray)
    model = salrepro.build_model("sal", n, C, hidden=w, depth=D, num_areas=K, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    counts = salrepro.count_parameters(model)
    routed = [(n, w)] + [(w, w)] * (D - 2)
    area = sum(i * o + o for i, o in routed)
    routers = sum(C * i for i, _ in routed)
    out = w * C + C
    total = K * area + routers + out
    active = area + routers + out
    assert counts.total == pytest.approx(total, rel=0.01) and counts.active == pytest.approx(active, rel=0.01)
    assert 1.05e9 < counts.active < 1.10e9 and 4.25e9 < counts.total < 4.35e9  # the paper's 1.07B / 4.3B


def test_count_parameters_small_closed_form():
    model = salrepro.build_model("sal", 8, 3, hidden=5, num_areas=4)
    assert salrepro.count_parameters(model) == (4 * (8 * 5 + 5) + 3 * 8 + 5 * 3 + 3, (8 * 5 + 5) + 3 * 8 + 5 * 3 + 3)
    moe = salrepro.build_model("moe", 8, 3, hidden=5, num_areas=4)
    assert salrepro.count_parameters(moe) == (4 * 45 + 4 * 8 + 18, 45 + 4 * 8 + 18)
    bp = salrepro.build_model("bp", 8, 3, hidden=5)
    assert salrepro.count_parameters(bp).total == salrepro.count_parameters(bp).active == 45 + 18


@pytest.mark.parametrize("method", ["bp", "sal", "moe", "dfa", "fa"])
def test_depth_128_trains_without_nan(method):
    K = 4 if method in ("sal", "moe") else 1
    model = salrepro.build_model(method, 16, 4, hidden=16, depth=128, num_areas=K, seed=0)
    assert len(model.layers) == 128
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 16, generator=g), torch.randint(0, 4, (16,), generator=g)
    losses = [model.train_step(x, y, 1e-3) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_same_seed_same_init_across_methods():
    """bp, dfa, fa and sal with one area start from identical weights."""
    models = [salrepro.build_model(m, 8, 3, hidden=5, depth=4, seed=7) for m in ("bp", "dfa", "fa", "sal")]
    for other in models[1:]:
        for a, b in zip(models[0].layers, other.layers):
            assert torch.equal(a.weight, b.weight)
    assert not torch.equal(models[0].layers[0].weight, salrepro.build_model("bp", 8, 3, hidden=5, seed=8).layers[0].weight)


@pytest.mark.parametrize("init", ["kaiming_normal", "kaiming_uniform", "torch_default"])
def test_init_options(init):
    model = salrepro.build_model("sal", 400, 3, hidden=300, num_areas=2, init=init, seed=0)
    w, b = model.layers[0].weight.detach(), model.layers[0].bias.detach()
    expected_std = {"kaiming_normal": math.sqrt(2 / 400), "kaiming_uniform": math.sqrt(2 / 400),
                    "torch_default": 1 / math.sqrt(3 * 400)}[init]
    assert float(w.std()) == pytest.approx(expected_std, rel=0.02)
    assert (b == 0).all() == (init != "torch_default")
    assert not torch.equal(w[0], w[1])  # areas initialised independently


def test_presets_are_valid_options_and_not_the_defaults():
    assert salrepro.PRESETS["sal_method"] == {}
    model = salrepro.build_model("sal", 8, 3, hidden=5, num_areas=4, **salrepro.PRESETS["paper_fit"])
    assert model.divisor == "area" and model.divisor != salrepro.build_model("sal", 8, 3, hidden=5, num_areas=4).divisor
    assert model.layers[0].router.shape[0] == 32  # router width 32, not the class count
    for name, options in salrepro.PRESETS.items():
        salrepro.build_model("sal", 8, 3, hidden=5, num_areas=4, **options)  # every preset is a valid reading


def test_the_docs_options_table_is_the_options_declared_in_code():
    """docs/method.md's table of options (name, methods, default) against models.OPTIONS, which comes from
    the options dataclasses: a default changed in one place and not the other fails here."""
    import ast
    from pathlib import Path

    from salrepro.method.models import COMMON_OPTIONS, OPTIONS

    text = (Path(__file__).resolve().parent.parent / "docs" / "method.md").read_text()
    table = text.split("## Options, defaults and why")[1].split("\n\n")[2]
    documented = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name, methods, default = cells[0].strip("`"), cells[1], cells[2]
        if name.startswith("device"):
            continue
        value = ast.literal_eval(default.split("`")[1])
        documented[name] = ({m.strip() for m in methods.split(",")}, value)
    in_code = {}
    for method, options in OPTIONS.items():
        for name, value in options.items():
            in_code.setdefault(name, (set(), value))[0].add(method)
    in_code["init"] = ({"all"}, COMMON_OPTIONS["init"])
    assert documented == in_code


def test_each_method_is_one_record_that_the_builder_the_planner_and_the_engine_read():
    """METHOD is the one declaration: the builder builds each record's class, the engine stacks exactly the
    methods whose record says batched, and a name without a record fails loudly at build, plan and label."""
    import dataclasses as dc

    from salrepro import runs as ex
    from salrepro.engine import batched
    from salrepro.method.models import METHOD, build_model, method_of

    assert set(batched.BATCHES) == {m.net for m in METHOD.values() if m.batched}
    for m in METHOD.values():
        k = 2 if m.areas else 1
        model = build_model(m.name, 4, 3, hidden=8, num_areas=k)
        assert type(model) is m.net and model.method == m.name and batched.batchable(model) == m.batched
        assert method_of(m.name).label(k) == (f"{m.title}-2" if m.areas else m.title)
    config = ex.RunConfig(dataset="digits", method="sal", num_areas=2, depth=2, hidden=8, seed=0, epochs=1,
                          batch_size=4, lr=0.01)
    for call in (lambda: build_model("xyz", 4, 3), lambda: ex.train_seconds(dc.replace(config, method="xyz")),
                 lambda: ex.training_bytes([dc.replace(config, method="xyz")]), lambda: method_of("xyz").label(1)):
        with pytest.raises(ValueError, match="method: must be one of"):
            call()
    lone = build_model("sal", 4, 3, hidden=8, num_areas=2)
    lone.method = "xyz"  # a model whose method has no record: the engine refuses it
    with pytest.raises(ValueError, match="method: must be one of"):
        batched.batchable(lone)
