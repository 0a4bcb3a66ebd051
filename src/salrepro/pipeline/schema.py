"""The params.yaml schema's pieces: checkers, and each section's keys with what is allowed.

A rule is (checker, description of what is allowed); a section is a mapping key -> rule (or a nested
section). `registry.py` gives each stage its section; `config.py` assembles and checks the whole tree.
"""

from __future__ import annotations

import numbers

from ..data import DATASETS, INPUT_NORMS
from ..method.models import METHODS, PRESETS, method_of


class ParamsError(ValueError):
    """A bad value in params.yaml."""


PROFILES = ("quick", "cpu", "paper", "test")

# ---------------------------------------------------------------------------
# Checkers
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
    if not method_of(name).areas and areas != 1:
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


# The profile-wide keys (the stages' sections come from registry.STAGES)
TOP = {
    "profile": (lambda v: v in PROFILES, f"one of {PROFILES}"),
    "device": (lambda v: isinstance(v, str) and (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")),
               "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'"),
    "data": {
        "root": (lambda v: v is None or isinstance(v, str), "null ($SALREPRO_DATA, else data/raw) or a folder path"),
        "download": (lambda v: isinstance(v, bool), "true or false"),
    },
    "datasets": None,  # checked by config._check_datasets
    "plan": {  # runs.Plan: how grids are cut into batches, the same on every machine
        "batch_mb": (_is_pos_number, "a number > 0: MB of weights of small models trained together in one batch"),
        "large_batch_mb": (_is_pos_number, "a number > 0: MB of weights of larger models (deep, wide) batched together"),
        "workers": (lambda v: _is_int(v, 1), "an integer >= 1: the small batches of a group are cut to a multiple of it "
                                             "(the processes that run them follow the machine)"),
    },
}

# Each stage's section
CALIBRATION = {"datasets": _DATASETS_LIST,
               "input_norms": (_is_list(lambda v: v in INPUT_NORMS), f"a non-empty list of input maps from {INPUT_NORMS}")}

AREA_SWEEP = {"datasets": _DATASETS_LIST, "methods": _METHODS_LIST, "hidden": (lambda v: _is_int(v, 1), "an integer >= 1"),
              **_TRAINING}

DEPTH = {"datasets": _DATASETS_LIST, "methods": _METHODS_LIST, "depths": (_is_list(lambda v: _is_int(v, 2)), "a list of integers >= 2"),
         "hidden": (lambda v: _is_int(v, 1), "an integer >= 1 (the hidden width, as in area_sweep)"),
         "presets": _PRESETS_LIST, **_TRAINING}

WIDTH = {"datasets": _DATASETS_LIST, "methods": _METHODS_LIST, "widths": (_is_list(lambda v: _is_int(v, 1)), "a list of integers >= 1"),
         "depth": (lambda v: _is_int(v, 2), "an integer >= 2"), "presets": _PRESETS_LIST,
         "seeds_at": (lambda v: isinstance(v, dict) and all(_is_int(k, 1) and _is_int(n, 1) for k, n in v.items()),
                      "a mapping from a width to its number of seeds where it differs from `seeds` (the widest "
                      "nets take an hour a run on a CPU), {} for none"),
         "datasets_at": (lambda v: isinstance(v, dict) and all(_is_int(k, 1) and isinstance(ds, list) and all(d in DATASETS for d in ds)
                                                               for k, ds in v.items()),
                         "a mapping from a width to the datasets that run it where not all of `datasets` (the widest nets "
                         "take an hour a run on a CPU), {} for none"),
         "widths_of": (lambda v: isinstance(v, dict) and all(isinstance(r, str) and _is_list(lambda w: _is_int(w, 1))(ws)
                                                             for r, ws in v.items()),
                       "a mapping from SAL's reading ('default', or a preset of `presets`) to the widths it runs at where "
                       "not all of `widths` (BP, shared by every reading, runs at all), {} for none"),
         **_TRAINING}

MOE = {"datasets": _DATASETS_LIST, "areas": (_is_list(lambda v: _is_int(v, 1)), "a list of integers >= 1 (K of sal-K and moe-K)"),
       "methods": (_is_list(lambda v: v in ("moe", "salbp")), "a non-empty list from ['moe', 'salbp']: the methods run beside SAL at each K"),
       "options": _TRAINING["options"]}

PRESET_SWEEP = {"preset": (lambda v: v in PRESETS and bool(PRESETS[v]), f"a named preset of models.PRESETS other than the defaults: {[p for p in PRESETS if PRESETS[p]]}"),
                "datasets": _DATASETS_LIST}

PROTOCOL_STUDY = {"fit": _DATASETS_LIST,
                  "held_out": (lambda v: v == [] or _DATASETS_LIST[0](v), f"a list (possibly empty) of datasets from {DATASETS}"),
                  "seeds": _TRAINING["seeds"],
                  "grid": (_is_choice_lists, "a mapping from a choice to the non-empty list of its values (crossed); {} for none"),
                  "one_at_a_time": (_is_choice_lists, "a mapping from a choice to the non-empty list of its values, each tried "
                                                      "alone from the best grid reading; {} for none"),
                  "readings": (lambda v: isinstance(v, dict) and all(isinstance(r, dict) for r in v.values()),
                               "a mapping from reading name to its choices (method options and data options); {} for none"),
                  "held_out_readings": (lambda v: _is_int(v, 0), "an integer >= 0: the best fit-set readings run on the held-out set, with the defaults")}

TUNED = {"datasets": _DATASETS_LIST,
         "methods": (_is_list(lambda v: _is_method(v) and parse_method(v)[0] in ("bp", "sal", "moe")),
                     "a non-empty list of methods from bp, sal-K, moe-K (the shallow net of Table 2)"),
         "presets": _PRESETS_LIST,
         "lrs": (_is_list(_is_pos_number), "a non-empty list of learning rates > 0 (the grid each method chooses from)"),
         "select_seeds": (lambda v: _is_int(v, 1), "an integer >= 1: runs per learning rate on the tuning split "
                                                   "(datasets of cv_below training samples or more)"),
         "folds": (lambda v: _is_int(v, 3) and v <= 10, "an integer 3..10: the folds of the cross-validation that "
                                                        "scores each learning rate on smaller datasets"),
         "cv_below": (lambda v: _is_int(v, 0), "an integer >= 0: datasets with fewer training samples choose by "
                                               "cross-validation (0: none)"),
         "depth": {"datasets": (lambda v: isinstance(v, list) and all(d in DATASETS for d in v),
                                f"a list (possibly empty) of datasets from {DATASETS}: Figure 2 at tuned learning rates"),
                   "methods": (_is_list(lambda v: _is_method(v) and parse_method(v)[0] in ("bp", "sal")),
                               "a non-empty list of methods from bp, sal-K"),
                   "readings": (lambda v: isinstance(v, list) and len(v) > 0 and len(set(v)) == len(v)
                                and all(r == "default" or r in _NAMED_PRESETS for r in v),
                                f"a non-empty list of SAL's readings: 'default' and/or named presets from {_NAMED_PRESETS}")}}

REPORT = {"sigma": (_is_pos_number, "a number > 0 (verdict: |ours - paper| <= sigma x combined std)")}
