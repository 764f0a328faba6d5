"""torch.compile under a schedule, and no host synchronisation in the runtime's hot path (issue #13).

Compiled with the aot_eager backend (dynamo tracing + AOT autograd, no C++ toolchain needed on CI);
bench/bench_compile.py measures inductor's speed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

import schedc_runtime
from schedc.problem import problem_from_profile
from schedc.schedule import build_schedule
from schedc.solvers.dp import solve_dp
from schedc_runtime import ScheduleFormatError, apply_schedule

from conftest import TINY_SAMPLER, make_tiny_adapter

BACKEND = {"backend": "aot_eager"}
RUNTIME_DIR = str(Path(schedc_runtime.__file__).resolve().parent)


@pytest.fixture(scope="module")
def scheduled(tiny_profile):
    """A schedule mixing native computes, reuse modes and int8 (whatever the DP picks at 0.5)."""
    sol = solve_dp(problem_from_profile(tiny_profile), 0.5)
    return build_schedule(tiny_profile, sol.actions(), {"solver": "test"})


def _compiled_frames() -> int:
    return counters["frames"]["total"]


def test_compiled_blocks_match_eager_and_never_recompile(scheduled):
    adapter = make_tiny_adapter()
    inputs = adapter.make_inputs([0, 1, 2])
    with apply_schedule(adapter.model, scheduled):
        eager = adapter.generate(inputs, TINY_SAMPLER)
    torch._dynamo.reset()
    counters.clear()
    with apply_schedule(adapter.model, scheduled, compile=BACKEND) as handle:
        first = adapter.generate(inputs, TINY_SAMPLER)
        frames = _compiled_frames()
        assert frames >= 1 and sum(counters["graph_break"].values()) == 0
        outs = [adapter.generate(inputs, TINY_SAMPLER) for _ in range(2)]
        assert _compiled_frames() == frames  # generations 2 and 3: no recompilation
        assert handle.generations == 3
    for out in (first, *outs):
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


def test_blocks_compiled_in_place_are_taken_over_and_handed_back(scheduled):
    adapter = make_tiny_adapter()
    inputs = adapter.make_inputs([0, 1])
    with apply_schedule(adapter.model, scheduled):
        eager = adapter.generate(inputs, TINY_SAMPLER)
    for block in adapter.blocks():
        block.compile(**BACKEND)
    impls = [block._compiled_call_impl for block in adapter.blocks()]
    torch._dynamo.reset()
    counters.clear()
    with apply_schedule(adapter.model, scheduled, compile=BACKEND) as handle:  # (without: default options)
        outs = [adapter.generate(inputs, TINY_SAMPLER) for _ in range(3)]
        assert counters["stats"]["unique_graphs"] <= 2 and sum(handle.block_calls) < 3 * 8 * 4  # reuses skipped
    for out in outs:
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    assert [block._compiled_call_impl for block in adapter.blocks()] == impls


def test_a_model_compiled_whole_breaks_at_the_hooks_instead_of_recompiling(scheduled):
    adapter = make_tiny_adapter()
    inputs = adapter.make_inputs([0, 1])
    with apply_schedule(adapter.model, scheduled):
        eager = adapter.generate(inputs, TINY_SAMPLER)
    adapter.model.compile(**BACKEND)
    torch._dynamo.reset()
    counters.clear()
    with apply_schedule(adapter.model, scheduled, compile=BACKEND):
        adapter.generate(inputs, TINY_SAMPLER)
        frames = _compiled_frames()
        out = adapter.generate(inputs, TINY_SAMPLER)
        assert _compiled_frames() == frames
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


def test_bad_compile_options_are_a_format_error(scheduled):
    with pytest.raises(ScheduleFormatError, match="compile must be"):
        apply_schedule(make_tiny_adapter().model, scheduled, compile="max-autotune")


class _HostSync(AssertionError):
    pass


@pytest.fixture
def no_host_sync_in_runtime(monkeypatch):
    """Tensor -> host reads (.item(), .cpu(), .tolist(), .numpy(), float/int/bool of a tensor) raise when the
    runtime's own code makes them: on a GPU each one stalls the host until the device catches up."""
    def guard(name):
        original = getattr(torch.Tensor, name)

        def checked(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if str(Path(caller).resolve()).startswith(RUNTIME_DIR):
                raise _HostSync(f"the runtime called Tensor.{name} in {caller}:{sys._getframe(1).f_lineno}")
            return original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, checked)

    for name in ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__"):
        guard(name)


def test_the_counter_hot_path_reads_no_tensor_value(scheduled, no_host_sync_in_runtime):
    adapter = make_tiny_adapter()
    inputs = adapter.make_inputs([0, 1, 2])
    with apply_schedule(adapter.model, scheduled, step_source="counter") as handle:
        for _ in range(2):
            adapter.generate(inputs, TINY_SAMPLER)
        assert handle.generations == 2


def test_the_host_sync_guard_can_fail(scheduled, no_host_sync_in_runtime):
    """The timestep step source reads the timestep's value once per call: the guard catches it."""
    adapter = make_tiny_adapter()
    with apply_schedule(adapter.model, scheduled, step_source="timestep"):
        with pytest.raises(_HostSync, match="__float__"):
            adapter.generate(adapter.make_inputs([0]), TINY_SAMPLER)
