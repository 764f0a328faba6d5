"""The replay runtime: exactness, remove(), no block work on reuse, per-generation reset, CFG rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schedc_runtime import ScheduleFormatError, apply_schedule
from tests.conftest import TINY_SAMPLER, make_tiny_adapter, schedule_for

T, B = TINY_SAMPLER.steps, 4


def all_compute() -> np.ndarray:
    return np.ones((T, B), dtype=bool)


def every_other() -> np.ndarray:
    compute = np.ones((T, B), dtype=bool)
    compute[1::2, 1:] = False  # blocks 1..3 reuse on odd steps
    return compute


def test_all_compute_schedule_is_bit_identical(tiny_adapter, tiny_profile):
    inputs = tiny_adapter.make_inputs(range(100, 106))
    bare = tiny_adapter.generate(inputs, TINY_SAMPLER)
    with apply_schedule(tiny_adapter.model, schedule_for(tiny_profile, all_compute())):
        hooked = tiny_adapter.generate(inputs, TINY_SAMPLER)
    assert torch.equal(bare, hooked)


def test_remove_restores_the_model_exactly(tiny_adapter, tiny_profile):
    model = tiny_adapter.model
    inputs = tiny_adapter.make_inputs(range(3))
    before_out = tiny_adapter.generate(inputs, TINY_SAMPLER)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_attrs = [set(vars(m)) for m in model.modules()]
    handle = apply_schedule(model, schedule_for(tiny_profile, every_other()))
    tiny_adapter.generate(inputs, TINY_SAMPLER)
    handle.remove()
    assert [set(vars(m)) for m in model.modules()] == before_attrs
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, before_state[k]) for k, v in model.state_dict().items())
    assert torch.equal(tiny_adapter.generate(inputs, TINY_SAMPLER), before_out)
    handle.remove()  # idempotent


def test_reuse_runs_no_block_work(tiny_adapter, tiny_profile):
    compute = every_other()
    attn_calls = [0] * B  # attention runs only when a block really computes
    for b, block in enumerate(tiny_adapter.blocks()):
        block.attn.register_forward_pre_hook(lambda m, a, b=b: attn_calls.__setitem__(b, attn_calls[b] + 1))
    with apply_schedule(tiny_adapter.model, schedule_for(tiny_profile, compute)) as handle:
        tiny_adapter.generate(tiny_adapter.make_inputs(range(2)), TINY_SAMPLER)
    assert handle.block_calls == compute.sum(axis=0).tolist()
    assert attn_calls == compute.sum(axis=0).tolist()


def test_residual_reuse_matches_hand_computation(tiny_adapter, tiny_profile):
    """Block 2 reuses at step 1: its output must be its step-1 input + (output - input) of step 0."""
    compute = all_compute()
    compute[1, 2] = False
    seen = []  # (input, output) of block 2 at every step, reuse included
    tiny_adapter.blocks()[2].register_forward_hook(lambda m, a, o: seen.append((a[0].clone(), o.clone())))
    with apply_schedule(tiny_adapter.model, schedule_for(tiny_profile, compute)):
        tiny_adapter.generate(tiny_adapter.make_inputs(range(2)), TINY_SAMPLER)
    (x0, y0), (x1, y1) = seen[0], seen[1]
    assert not torch.equal(x0, x1)
    assert torch.equal(y1, x1 + (y0 - x0))


def test_caches_reset_between_generations(tiny_adapter, tiny_profile):
    schedule = schedule_for(tiny_profile, every_other())
    a, b = tiny_adapter.make_inputs(range(4)), tiny_adapter.make_inputs(range(50, 54))
    with apply_schedule(tiny_adapter.model, schedule) as handle:
        first_a = tiny_adapter.generate(a, TINY_SAMPLER)
        tiny_adapter.generate(b, TINY_SAMPLER)  # leaves caches from b behind
        again_a = tiny_adapter.generate(a, TINY_SAMPLER)
        assert handle.step == T - 1
    assert torch.equal(first_a, again_a)


def test_batched_cfg_rows_never_mix(tiny_adapter, tiny_profile):
    """Under reuse, a sample's result depends only on its own rows: changing another sample's noise
    or generating it alone changes nothing (beyond float noise from batch size)."""
    schedule = schedule_for(tiny_profile, every_other())
    batch = tiny_adapter.make_inputs([7, 8, 9])
    alone = tiny_adapter.make_inputs([7])
    other = tiny_adapter.make_inputs([7, 20, 21])
    with apply_schedule(tiny_adapter.model, schedule):
        out_batch = tiny_adapter.generate(batch, TINY_SAMPLER)
        out_alone = tiny_adapter.generate(alone, TINY_SAMPLER)
        out_other = tiny_adapter.generate(other, TINY_SAMPLER)
    assert torch.allclose(out_batch[0], out_alone[0], atol=1e-5)
    assert torch.allclose(out_batch[0], out_other[0], atol=1e-5)
    # and the uncond branch's cache is not the cond branch's: reusing must differ from a schedule
    # that would copy cond residuals into uncond rows (sanity: reuse changed the result at all)
    bare = tiny_adapter.generate(batch, TINY_SAMPLER)
    assert not torch.allclose(bare, out_batch)


def test_fingerprint_and_step_count_mismatch_are_refused(tiny_adapter, tiny_profile):
    other_model = make_tiny_adapter(depth=5).model
    schedule = schedule_for(tiny_profile, all_compute())
    with pytest.raises(ScheduleFormatError, match="not this model|no block"):
        apply_schedule(other_model, schedule)
    with apply_schedule(tiny_adapter.model, schedule):
        with pytest.raises(ScheduleFormatError, match="num_inference_steps=.*schedc solve PROFILE --steps N"):
            tiny_adapter.generate(tiny_adapter.make_inputs([1]), TINY_SAMPLER.__class__(steps=5))


def test_counter_step_source_matches_timestep_source(tiny_adapter, tiny_profile):
    schedule = schedule_for(tiny_profile, every_other())
    inputs = tiny_adapter.make_inputs(range(3))
    with apply_schedule(tiny_adapter.model, schedule):
        by_timestep = tiny_adapter.generate(inputs, TINY_SAMPLER)
    with apply_schedule(tiny_adapter.model, schedule, step_source="counter"):
        by_counter = tiny_adapter.generate(inputs, TINY_SAMPLER)
        by_counter_again = tiny_adapter.generate(inputs, TINY_SAMPLER)
    assert torch.equal(by_timestep, by_counter)
    assert torch.equal(by_counter, by_counter_again)


def test_runtime_imports_only_torch_and_yaml():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "runtime"
    import sys

    allowed = {"torch", "yaml"} | set(sys.stdlib_module_names)
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert set(names) <= allowed, f"{path.name} imports {names}"


def test_cache_memory_is_known_in_advance(tiny_adapter, tiny_profile):
    schedule = schedule_for(tiny_profile, every_other())
    inputs = tiny_adapter.make_inputs(range(3))
    with apply_schedule(tiny_adapter.model, schedule) as handle:
        tiny_adapter.generate(inputs, TINY_SAMPLER)
        per_block = 2 * 3 * 16 * 32 * 4  # [CFG rows, tokens, width] float32
        assert handle.peak_cache_bytes == schedule.peak_cache_tensors() * per_block
        assert schedule.peak_cache_tensors() == 3
        assert handle.cache_bytes() == 0 or handle.cache_bytes() <= handle.peak_cache_bytes


def test_forecast_caches_only_the_computes_it_reads(tiny_adapter, tiny_profile):
    """Block 1 forecasts at steps 4 and 7: only computes 2, 3 and 5, 6 store a residual (the others are read
    by nothing), the memory is what the schedule predicts, and each forecast is the line through its two
    computes: x_t + 2 d_(t-1) - d_(t-2)."""
    from schedc.schedule import build_schedule

    rows = [["native"] * B for _ in range(T)]
    rows[4][1] = rows[7][1] = "forecast"
    schedule = build_schedule(tiny_profile, tuple(map(tuple, rows)), {"solver": "test"})
    assert [t for t in range(T) if schedule.cache_needed()[t][1]] == [2, 3, 5, 6]
    assert schedule.peak_cache_tensors() == 2
    block = tiny_adapter.blocks()[1]
    seen = []  # per step: (input, output) of block 1, computed or forecast
    hook = block.register_forward_hook(lambda m, a, o: seen.append((a[0].clone(), o.clone())))
    try:
        with apply_schedule(tiny_adapter.model, schedule) as handle:
            tiny_adapter.generate(tiny_adapter.make_inputs(range(3)), TINY_SAMPLER)
            per_block = 2 * 3 * 16 * 32 * 4  # [CFG rows, tokens, width] float32
            assert handle.peak_cache_bytes == 2 * per_block  # not one residual per compute of a forecasting block
            assert handle.block_calls[1] == T - 2
    finally:
        hook.remove()
    delta = lambda t: seen[t][1] - seen[t][0]  # noqa: E731
    for t in (4, 7):
        assert torch.allclose(seen[t][1], seen[t][0] + 2 * delta(t - 1) - delta(t - 2), atol=1e-5)


def test_timesteps_match_within_a_tolerance_not_by_a_rounded_key():
    """FLUX at 100 steps received float32 0.10965 for a recorded 0.109650: a 4-decimal key put them on two
    sides of a rounding boundary (0.1097 vs 0.1096) and the runtime refused its own step."""
    from schedc_runtime.format import TIMESTEP_TOLERANCE, TimestepIndex

    received = float(np.float32(0.10965))
    assert round(received, 4) != round(0.10965, 4)  # the old key's failure
    index = TimestepIndex([1.0, 0.5, 0.10965, 0.05])
    assert index.index(received) == 2 and index.index(1.0) == 0 and index.index(0.05) == 3
    assert index.index(0.10965 + 2 * TIMESTEP_TOLERANCE) is None  # between steps: refused
    assert index.matches([1.0, 0.5, received, 0.05]) and not index.matches([1.0, 0.5, 0.05])
    dense = TimestepIndex([0.0003, 0.0002, 0.0001, 0.0])  # gaps below the tolerance: a quarter gap
    assert dense.tolerance == pytest.approx(0.000025) and dense.index(0.00015) is None and dense.index(0.00021) == 1


def test_the_runtime_finds_its_steps_from_timesteps_recorded_with_round_off(tiny_adapter, tiny_profile):
    from dataclasses import replace

    schedule = schedule_for(tiny_profile, every_other())
    inputs = tiny_adapter.make_inputs(range(2))
    with apply_schedule(tiny_adapter.model, schedule):
        exact = tiny_adapter.generate(inputs, TINY_SAMPLER)
    shifted = replace(schedule, model=replace(schedule.model, timesteps=tuple(t + 6e-5 for t in schedule.model.timesteps)))
    with apply_schedule(tiny_adapter.model, shifted):  # 6e-5 off each: a 4-decimal key would differ
        assert torch.equal(tiny_adapter.generate(inputs, TINY_SAMPLER), exact)
