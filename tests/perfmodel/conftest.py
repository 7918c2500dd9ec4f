"""The report's two deployments, built from the shipped inventories and the hardware table alone."""

from __future__ import annotations

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir
from xpdctl.perfmodel.calibration import DEFAULT
from xpdctl.perfmodel.options import current_option
from xpdctl.perfmodel.queueing import Workload, predict
from xpdctl.perfmodel.specs import hardware_profiles, model_spec


def _deployment(name: str, isl: int):
    inv = load_inventory(data_dir("inventory") / name).inventory
    model = model_spec(inv.model.name)
    option = current_option(inv)
    return option, option.deployment(model, DEFAULT, hardware_profiles(), isl, hybrid_kv=True)


@pytest.fixture
def report_ratio():
    """report_ratio(isl, osl, c) -> (cross, single) predictions: lab.yaml (H100 TP8 prefill -> MI300X TP8
    decode, KV through host memory) against lab-single-vendor.yaml (MI300X -> MI300X, GPUDirect)."""

    def run(isl: int, osl: int, concurrency: int):
        work = Workload(isl=isl, osl=osl, concurrency=concurrency)
        return predict(_deployment("lab.yaml", isl)[1], work), predict(_deployment("lab-single-vendor.yaml", isl)[1], work)

    return run
