"""schedc.costmodel: integer units, per-block costs under both cost models, "auto", FLOP counting shared
by both adapters, and an import that does not pull in torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from schedc import costmodel
from schedc.costmodel import FLOP_COST, NATIVE_UNITS, block_costs, option_units, resolve_cost
from schedc.errors import ProfileError, SolverError
from schedc.profile import Profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference_profile() -> Profile:
    return Profile.load(ROOT / "profiles" / "reference-dit.profile.npz")


def test_option_units_native_first_rounded_at_least_one():
    ratio = np.array([[0.5, 1.0, 0.01], [0.3, 1.6, 0.12]])
    units = option_units(ratio)
    assert units.dtype == np.int64 and units.shape == (2, 4)
    assert units.tolist() == [[NATIVE_UNITS, 2, 4, 1], [NATIVE_UNITS, 1, 6, 1]]
    assert option_units(np.zeros((3, 0))).tolist() == [[NATIVE_UNITS]] * 3


def test_option_units_rejects_bad_ratios():
    with pytest.raises(SolverError):
        option_units(np.array([0.5, 1.0]))
    with pytest.raises(SolverError):
        option_units(np.array([[0.0]]))


def test_flop_costs_use_the_flop_table(reference_profile):
    meta, flops = reference_profile.meta, reference_profile.block_flops
    cost, ratio = block_costs(meta, flops, ("int8", "int4w"), "flops")
    assert np.array_equal(cost, flops) and cost is not flops
    assert ratio.shape == (len(meta.blocks), 2)
    assert np.all(ratio[:, 0] == FLOP_COST["int8"]) and np.all(ratio[:, 1] == FLOP_COST["int4w"])
    assert block_costs(meta, flops, (), "flops")[1].shape == (len(meta.blocks), 0)


def test_latency_costs_use_the_measured_table(reference_profile):
    meta = reference_profile.meta
    cost, ratio = block_costs(meta, reference_profile.block_flops, ("fp8",), "latency")
    native = np.array(meta.latency["native"])
    assert np.array_equal(cost, native)
    assert np.allclose(ratio[:, 0], np.array(meta.latency["fp8"]) / native)


def test_latency_without_a_table_is_a_profile_error(reference_profile):
    meta = reference_profile.meta.replace(latency=None, device=None)
    with pytest.raises(ProfileError, match="no latency table"):
        block_costs(meta, reference_profile.block_flops, (), "latency")
    with pytest.raises(SolverError, match="unknown cost model"):
        block_costs(meta, reference_profile.block_flops, (), "joules")


def test_resolve_cost(reference_profile):
    meta = reference_profile.meta
    assert resolve_cost(meta, "auto") == "latency"
    assert resolve_cost(meta.replace(latency=None), "auto") == "flops"
    assert resolve_cost(meta, "flops") == "flops"
    with pytest.raises(SolverError):
        resolve_cost(meta, "joules")


def test_problem_keeps_its_names():
    from schedc import problem

    assert problem.FLOP_COST is costmodel.FLOP_COST


def _spy(monkeypatch, module) -> list:
    calls, real = [], costmodel.count_flops

    def spy(*args, **kwargs):
        calls.append(tuple(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "count_flops", spy)
    return calls


def test_reference_adapter_counts_flops_through_costmodel(tiny_adapter, monkeypatch):
    import schedc.models.adapter as adapter_module

    calls = _spy(monkeypatch, adapter_module)
    per_block, rest = tiny_adapter.flops()
    assert calls == [tiny_adapter.block_names]
    assert len(per_block) == 4 and all(f > 0 for f in per_block) and rest > 0


def test_diffusers_adapter_counts_flops_through_costmodel(monkeypatch):
    pytest.importorskip("diffusers")
    import schedc.models.diffusers_adapter as diffusers_module
    from schedc.models import load_model

    adapter = load_model("digits-dit")
    calls = _spy(monkeypatch, diffusers_module)
    per_block, rest = adapter.flops()
    assert calls == [adapter.block_names]
    profile = Profile.load(ROOT / "profiles" / "digits-dit.profile.npz")  # counted the same way when profiled
    assert per_block == profile.block_flops.tolist() and rest == profile.meta.nonblock_flops


def test_imports_without_torch():
    code = "import sys, schedc.costmodel, schedc.profile_meta; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
