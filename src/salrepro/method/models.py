"""One builder for every method, and parameter counting.

    model = build_model("sal", 784, 10, hidden=256, depth=2, num_areas=16, seed=0)
    loss = model.train_step(x, y, lr=1e-4)
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import NamedTuple

from torch import nn

from .baselines import BPNet, FeedbackNet, MoENet, MoEOptions, SALBPNet
from .nets import FEEDBACK_DISTS, INIT, INITS
from .sal import DIVISORS, PROTOTYPE_NORMS, SALNet, SALOptions

# Options each method accepts beyond the shared arguments, with their defaults: from the options
# dataclasses (sal.SALOptions, baselines.MoEOptions), where each default is declared once.
COMMON_OPTIONS = {"init": INIT, "device": None, "dtype": None}
_SAL = asdict(SALOptions())


@dataclass(frozen=True)
class Method:
    """Everything the package knows of one method, declared once: the builder, the params checks, the
    planner's costs and memory, the figures' labels and the engines read it (`method_of`)."""
    name: str  # as params.yaml, run records and build_model write it
    title: str  # as the paper's tables write it (SAL; with areas SAL-4)
    net: type  # its model class (method/)
    options: dict  # the options it takes beyond the shared ones, with their defaults
    areas: bool = False  # takes K >= 1 areas per layer (else one)
    autograd: bool = False  # trained by autograd (a baseline): twice the bytes a weight streams per step
    autograd_areas: bool = False  # its areas train by autograd's grouped matmul: a gradient copy of every
    #                               weight, and small batches on a CPU (runs.AUTOGRAD_AREA_BATCH_BYTES)
    traces: bool = False  # its forward pass keeps every layer's trace (evaluation memory)
    batched: bool = False  # the engine stacks several of its models in one step (engine/batched.BATCHES)
    mixed_areas: bool = False  # a stacked batch may mix models of different K (else one K a batch)
    net_args: tuple = ()  # (key, value) pairs its class takes beside the shape (FeedbackNet's mode)

    def label(self, areas: int) -> str:
        return f"{self.title}-{areas}" if self.areas else self.title


METHOD = {m.name: m for m in (
    Method("bp", "BP", BPNet, {}, autograd=True, batched=True),
    Method("sal", "SAL", SALNet, _SAL, areas=True, traces=True, batched=True, mixed_areas=True),
    Method("moe", "MoE", MoENet, asdict(MoEOptions()), areas=True, autograd=True, autograd_areas=True, batched=True),
    Method("dfa", "DFA", FeedbackNet, {k: _SAL[k] for k in ("divisor", "feedback_scale")}, net_args=(("mode", "dfa"),)),
    Method("fa", "FA", FeedbackNet, {k: _SAL[k] for k in ("divisor", "feedback_scale")}, net_args=(("mode", "fa"),)),
    Method("salbp", "SAL-BP", SALBPNet, {k: _SAL[k] for k in ("router_width", "prototype_norm", "selector_lr_scale")},
           areas=True, autograd=True, autograd_areas=True, traces=True, batched=True, mixed_areas=True),
)}
METHODS = tuple(METHOD)
OPTIONS = {name: m.options for name, m in METHOD.items()}


def method_of(name: str) -> Method:
    """The record of a method; an unknown name fails here, loudly, wherever it is first used."""
    if name not in METHOD:
        raise ValueError(f"method: must be one of {METHODS}, got {name!r} (a new method needs its record in "
                         "method/models.py METHOD)")
    return METHOD[name]


def label(method: str, areas: int) -> str:
    """A method as the paper's tables write it: BP, SAL-4, MoE-16, SAL-BP-4."""
    return method_of(method).label(areas)


# Named readings of the paper's open choices. Not defaults: docs/method.md's
# defaults stay the defaults. `paper_fit` is the reading the protocol study
# (version 2, inputs in [-1, 1]) found closest to the paper's Tables 2/3 on its
# fit set, Digits and Semeion (docs/method.md, "Readings"); use it as
# build_model(..., **PRESETS["paper_fit"]). `paper_fit_unit` is the first
# study's choice, made under inputs in [0, 1] before the calibration.
PRESETS = {"sal_method": {},
           "paper_fit": {"divisor": "area", "feedback_scale": 5.0, "router_width": 32},
           "paper_fit_unit": {"divisor": "area", "feedback_scale": 10.0}}


def reading_of(method: str, options: dict) -> str:
    """The name of the reading a run trained under: "default" when its method options are the
    method's defaults, else the named preset whose options (those `method` takes) are exactly its
    options, else "custom"."""
    taken = {**COMMON_OPTIONS, **method_of(method).options}
    given = {k: v for k, v in options.items() if k in taken and v != taken[k]}
    if not given:
        return "default"
    for name, preset in PRESETS.items():
        if preset and {k: v for k, v in preset.items() if k in taken} == given:
            return name
    return "custom"


def _int_arg(name: str, value, minimum: int, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: must be an integer {allowed}, got {value!r}")
    return int(value)


def check_method_options(method: str, options: dict) -> dict:
    allowed = {**COMMON_OPTIONS, **method_of(method).options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of method {method!r}; allowed options: {sorted(allowed)}")
    opts = {**allowed, **options}
    if opts["init"] not in INITS:
        raise ValueError(f"init: must be one of {INITS}, got {opts['init']!r}")
    if "divisor" in opts and opts["divisor"] not in DIVISORS:
        raise ValueError(f"divisor: must be one of {DIVISORS}, got {opts['divisor']!r}")
    if "feedback_dist" in opts and opts["feedback_dist"] not in FEEDBACK_DISTS:
        raise ValueError(f"feedback_dist: must be one of {FEEDBACK_DISTS}, got {opts['feedback_dist']!r}")
    if "prototype_norm" in opts and opts["prototype_norm"] not in PROTOTYPE_NORMS:
        raise ValueError(f"prototype_norm: must be one of {PROTOTYPE_NORMS}, got {opts['prototype_norm']!r}")
    for key in ("feedback_scale", "selector_lr_scale", "balance_coef"):
        v = opts.get(key)
        if key in opts and (isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 0):
            raise ValueError(f"{key}: must be a number >= 0, got {v!r}")
    if opts.get("router_width") is not None:
        _int_arg("router_width", opts["router_width"], 1, ">= 1 (or None for the class count)")
    return opts


def build_model(
    method: str,
    in_features: int,
    num_classes: int,
    *,
    hidden: int = 256,
    depth: int = 2,
    num_areas: int = 1,
    seed: int = 0,
    **options,
) -> nn.Module:
    """Build a model of `method` in METHODS = bp, sal, moe, dfa, fa, salbp.

    depth 2: the shallow ReLU net of Table 2 (areas on the first layer only);
    depth > 2: the residual tanh net of Figures 2-3 (areas on the first and
    every hidden layer). `num_areas` is K (experts for moe); bp, dfa and fa have
    one area. Method options (see OPTIONS and docs/method.md) go as keywords;
    `device="meta"` builds without allocating (for count_parameters).
    """
    spec = method_of(method)
    in_features = _int_arg("in_features", in_features, 1, ">= 1")
    num_classes = _int_arg("num_classes", num_classes, 2, ">= 2")
    hidden = _int_arg("hidden", hidden, 1, ">= 1")
    depth = _int_arg("depth", depth, 2, ">= 2 (2 = shallow ReLU net, > 2 = residual tanh net)")
    num_areas = _int_arg("num_areas", num_areas, 1, ">= 1")
    if not spec.areas and num_areas != 1:
        with_areas = [m for m in METHODS if METHOD[m].areas]
        raise ValueError(f"num_areas: method {method!r} has one area per layer (num_areas=1); got {num_areas}. "
                         f"Use one of {with_areas} for K > 1")
    seed = _int_arg("seed", seed, 0, ">= 0")
    opts = check_method_options(method, options)
    areas = {"num_areas": num_areas} if spec.areas else {}
    return spec.net(in_features, num_classes, hidden=hidden, depth=depth, seed=seed, **areas, **dict(spec.net_args),
                    **opts)


class ParameterCount(NamedTuple):
    total: int  # every trainable parameter
    active: int  # parameters that compute one sample: one area per layer, plus routers/gates


def count_parameters(model: nn.Module) -> ParameterCount:
    """Total and active-per-sample trainable parameters. Frozen tensors
    (prototypes, feedback) are not parameters. Works on the meta device."""
    total = active = 0
    for layer in model.layers:
        k = layer.num_areas
        area_params = layer.weight.numel() + layer.bias.numel()
        shared = sum(p.numel() for name, p in layer.named_parameters() if name not in ("weight", "bias"))
        total += area_params + shared
        active += area_params // k + shared
    assert total == sum(p.numel() for p in model.parameters())
    return ParameterCount(total, active)


def describe(model: nn.Module) -> str:
    """One line: method, shape, parameter counts."""
    c = count_parameters(model)
    return f"{model.method} depth={model.depth} width={model.hidden} K={model.num_areas}: {c.total:,} total, {c.active:,} active"


__all__ = ["METHOD", "METHODS", "Method", "method_of", "OPTIONS", "PRESETS", "build_model", "reading_of", "count_parameters", "ParameterCount", "describe"]
