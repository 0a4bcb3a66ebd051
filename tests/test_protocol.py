"""The protocol study (protocol.py)."""

import copy

import pandas as pd
import pytest
import yaml

from salrepro import protocol
from salrepro.config import ParamsError, validate


def test_readings_split_into_model_and_data_choices():
    assert protocol.split_reading({"divisor": "sum", "digits_scale": "raw"}) == ({"divisor": "sum"}, {"digits_scale": "raw"})
    assert protocol.applies({"digits_scale": "raw"}, "digits") and not protocol.applies({"digits_scale": "raw"}, "semeion")
    assert protocol.applies({"divisor": "sum"}, "semeion")


def test_reading_configs_carry_their_choices():
    s = {"methods": ["bp", "sal-4"], "epochs": 2, "batch_size": 16, "lr": 0.1, "hidden": 8, "seeds": 2,
         "data_options": {"digits": {}}}
    configs = protocol.reading_configs("digits", {"divisor": "sum", "init": "torch_default", "digits_scale": "raw"}, s)
    bp, sal = configs[0], configs[-1]
    assert dict(bp.options) == {"init": "torch_default"} and dict(sal.options) == {"divisor": "sum", "init": "torch_default"}
    assert dict(sal.data_options) == {"digits_scale": "raw", "input_norm": "pm1"}  # the default map, named
    default = protocol.reading_configs("digits", {}, s)
    assert {c.key() for c in default}.isdisjoint({c.key() for c in configs})  # different readings never share runs


def test_conclusion_names_the_closest_reading_and_surviving_claims():
    table = pd.DataFrame([
        {"dataset": "digits", "reading": "default", "choices": "defaults", "mean_abs_z": 4.0, "acc_rmse_pp": 40.0,
         "cells_within": 2, "cells": 18, "sal_above_bp": False, "rises_with_k": False},
        {"dataset": "digits", "reading": "divisor_sum", "choices": "divisor=sum", "mean_abs_z": 2.0, "acc_rmse_pp": 10.0,
         "cells_within": 9, "cells": 18, "sal_above_bp": True, "rises_with_k": False},
    ])
    text = protocol.conclusion(table)
    assert "closest to the paper is 'divisor_sum'" in text and "the defaults give mean |z| 4.0" in text
    assert "'accuracy rising with K' survives under no reading" in text
    assert "'SAL above BP' holds under 1 of 2" in text


def test_bad_readings_are_rejected():
    cfg = yaml.safe_load(open("conf/profile/cpu.yaml"))
    bad = copy.deepcopy(cfg)
    bad["protocol_study"]["readings"]["x"] = {"divisr": "sum"}
    with pytest.raises(ParamsError, match="protocol_study.readings.x.divisr: not a choice"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["protocol_study"]["datasets"] = ["svhn"]
    with pytest.raises(ParamsError, match="protocol_study.datasets: 'svhn' is not listed under datasets"):
        validate(bad)
