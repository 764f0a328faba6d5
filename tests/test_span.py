"""Spans: a run of residual reuses of one compute replayed as one combined residual (runtime/spans.py).

Format round trip and refusals, the fuse pass, equality with per-block reuse on the bundled reference
DiT and the diffusers digits-dit, cache memory, and no stale span cache after an exception.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from schedc.compile import compile_schedule
from schedc.models import load_model
from schedc.schedule import decisions_from_compute
from schedc.spans import fuse_spans, span_stats, with_spans, without_spans
from schedc_runtime import ModelInfo, Schedule, ScheduleFormatError, apply_schedule, dump_schedule, load_schedule
from tests.conftest import TINY_SAMPLER, schedule_for

T, B = TINY_SAMPLER.steps, 4


def fbcache(steps: int, blocks: int, every: int = 2) -> np.ndarray:
    """FirstBlockCache's shape: block 0 computes every step, the rest only every `every` steps."""
    compute = np.ones((steps, blocks), dtype=bool)
    for t in range(steps):
        if t % every:
            compute[t, 1:] = False
    return compute


# -- the fuse pass ------------------------------------------------------------------------------------
def test_fuse_spans_finds_maximal_runs_of_one_compute_step():
    assert fuse_spans(decisions_from_compute(fbcache(4, 5))) == ((), ((1, 4),), (), ((1, 4),))
    compute = np.ones((3, 6), dtype=bool)
    compute[1, [0, 1, 3, 4]] = False  # step 1: runs 0-1 and 3-4 (2 computes between)
    compute[2, [0, 1, 2, 3, 4, 5]] = False  # step 2: 0,1,3,4 read step 0; 2, 5 read step 1
    assert fuse_spans(decisions_from_compute(compute)) == ((), ((0, 1), (3, 4)), ((0, 1), (3, 4)))
    assert fuse_spans(decisions_from_compute(compute), min_length=3) == ()
    assert fuse_spans([["native", "forecast", "forecast"], ["native", "residual", "output"]]) == ()
    # a block whose second stream is not a residual, or whose outputs differ from its neighbour's, breaks a run
    rows = decisions_from_compute(fbcache(2, 4))
    assert fuse_spans(rows, [None, None, None, None]) == ((), ((1, 3),))
    assert fuse_spans(rows, [None, ("a", ""), ("a", ""), None]) == ()
    assert fuse_spans(rows, [None, None, ("a", "b"), ("a", "b")]) == ((), ((2, 3),))


# -- format ---------------------------------------------------------------------------------------------
def test_round_trip(tiny_profile):
    schedule = with_spans(schedule_for(tiny_profile, fbcache(T, B)))
    assert schedule.spans[1] == ((1, 3),) and span_stats(schedule) == {"spans": 4, "fused_reuses": 12, "adds_saved": 8}
    text = dump_schedule(schedule)
    assert "{step: 1, span: 1-3}" in text and "reuse" not in text.split("steps:")[-1]
    assert load_schedule(yaml.safe_load(text)) == schedule
    assert without_spans(schedule) == schedule_for(tiny_profile, fbcache(T, B))
    assert load_schedule(yaml.safe_load(dump_schedule(without_spans(schedule)))).spans == ()


@pytest.mark.parametrize("entry, message", [
    ({"step": 1, "span": "2"}, "has one block"),
    ({"step": 1, "span": "1-3,2-3"}, "two decisions"),
    ({"step": 1, "span": "1-2", "reuse": "2-3"}, "two decisions"),
    ({"step": 1, "span": "0-4"}, "outside"),
    ({"step": 1, "span": 12}, "expected span ranges"),
    ({"step": 1, "span": ""}, "empty span list"),
    ({"step": 2, "span": "0-3"}, r"blocks 0 and 1 reuse residuals of different computes \(steps 1 and 0\)"),
    ({"step": 2, "span": "0-1"}, "different computes"),
])
def test_malformed_spans_are_refused(tiny_profile, entry, message):
    compute = np.ones((T, B), dtype=bool)
    compute[1, 1:] = False
    compute[2, [0, 2, 3]] = False  # step 2: block 0 reads step 1, blocks 2-3 read step 0
    data = yaml.safe_load(dump_schedule(schedule_for(tiny_profile, compute)))
    data["steps"][entry["step"]] = entry
    with pytest.raises(ScheduleFormatError, match=message):
        load_schedule(data)


def test_spans_built_in_python_are_checked(tiny_profile):
    schedule = schedule_for(tiny_profile, fbcache(T, B))
    spans = [()] * T
    with pytest.raises(ScheduleFormatError, match="block 0 is 'native'"):
        replace(schedule, spans=[((0, 2),) if t == 1 else () for t in range(T)])
    with pytest.raises(ScheduleFormatError, match="overlaps"):
        replace(schedule, spans=[((1, 2), (2, 3)) if t == 1 else () for t in range(T)])
    with pytest.raises(ScheduleFormatError, match="spans has 1 steps"):
        replace(schedule, spans=[((1, 2),)])
    assert replace(schedule, spans=spans).spans == ()
    # output-only blocks (UNet) and streams that are not residuals cannot span
    info = replace(schedule.model, block_outputs=(None, ("a", ""), ("a", ""), None))
    with pytest.raises(ScheduleFormatError, match="cannot span"):
        replace(schedule, model=info, spans=[((1, 2),) if t == 1 else () for t in range(T)])


# -- replay ---------------------------------------------------------------------------------------------
def model_schedule(adapter, compute: np.ndarray, steps: int) -> Schedule:
    sampler = replace(adapter.default_sampler, steps=steps)
    info = ModelInfo(name=adapter.name, fingerprint=adapter.fingerprint(), blocks=adapter.block_names,
                     steps=steps, timesteps=tuple(adapter.model_timesteps(sampler)), cfg=sampler.cfg,
                     block_outputs=tuple(adapter.block_outputs))
    return Schedule(model=info, decisions=decisions_from_compute(compute), sampling=sampler.to_dict())


def mixed_compute(steps: int, blocks: int) -> np.ndarray:
    """FirstBlockCache steps, a whole-model skip, and a step whose runs read different computes."""
    compute = fbcache(steps, blocks)
    compute[3, :] = False
    compute[4, : blocks // 2] = False
    return compute


def replay(adapter, schedule, inputs, sampler):
    with apply_schedule(adapter.model, schedule) as handle:
        out = adapter.generate(inputs, sampler)
    return out, handle


@pytest.mark.parametrize("name", ["reference-dit", "digits-dit"])
def test_spans_replay_like_per_block_reuse(name):
    if name == "digits-dit":
        pytest.importorskip("diffusers")
    adapter = load_model(name)
    steps = 6
    sampler = replace(adapter.default_sampler, steps=steps)
    per_block = model_schedule(adapter, mixed_compute(steps, len(adapter.block_names)), steps)
    spans = with_spans(per_block)
    assert span_stats(spans)["spans"] >= 3
    inputs = adapter.make_inputs(range(2))
    with torch.no_grad():
        expected, plain = replay(adapter, per_block, inputs, sampler)
        found, fused = replay(adapter, spans, inputs, sampler)
    assert plain.block_calls == fused.block_calls
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)
    assert fused.peak_cache_bytes < plain.peak_cache_bytes


def test_cache_bytes_smaller_and_within_prediction(tiny_adapter, tiny_profile):
    inputs = tiny_adapter.make_inputs(range(2))
    per_block = schedule_for(tiny_profile, fbcache(T, B, every=3))
    spans = with_spans(per_block)
    _, plain = replay(tiny_adapter, per_block, inputs, TINY_SAMPLER)
    _, fused = replay(tiny_adapter, spans, inputs, TINY_SAMPLER)
    one = plain.peak_cache_bytes // per_block.peak_cache_tensors()  # one block-output tensor
    assert per_block.peak_cache_tensors() == 3 and spans.peak_cache_tensors() == 1
    assert fused.peak_cache_bytes == one == plain.peak_cache_bytes // 3
    assert fused.cache_bytes() == 0  # freed after its last read


def test_exception_mid_generation_leaves_no_stale_span_cache(tiny_adapter, tiny_profile):
    """An error while a span's sum is half built (step 2, block 2) must not leak into the next generation."""
    schedule = with_spans(schedule_for(tiny_profile, fbcache(T, B)))
    a, b = tiny_adapter.make_inputs(range(2)), tiny_adapter.make_inputs(range(10, 12))
    clean_b, _ = replay(tiny_adapter, schedule, b, TINY_SAMPLER)
    calls = []

    def boom(module, args):
        calls.append(1)
        if len(calls) == 2:  # block 2's compute at step 2 (its first is at step 0)
            raise RuntimeError("boom")

    with apply_schedule(tiny_adapter.model, schedule) as handle:
        hook = tiny_adapter.blocks()[2].attn.register_forward_pre_hook(boom)
        with pytest.raises(RuntimeError, match="boom"):
            tiny_adapter.generate(a, TINY_SAMPLER)
        hook.remove()
        assert any(isinstance(k[1], tuple) for k in handle._cache)  # a half-built span sum is left behind
        again_b = tiny_adapter.generate(b, TINY_SAMPLER)
        assert handle.generations == 2
    assert torch.equal(again_b, clean_b)


def test_blocks_that_do_not_chain_are_refused(tiny_adapter, tiny_profile):
    schedule = with_spans(schedule_for(tiny_profile, fbcache(T, B)))
    tiny_adapter.blocks()[1].register_forward_hook(lambda m, args, out: out * 1.5)
    with apply_schedule(tiny_adapter.model, schedule):
        with pytest.raises(ScheduleFormatError, match="do not chain"):
            tiny_adapter.generate(tiny_adapter.make_inputs(range(2)), TINY_SAMPLER)


# -- compiler -------------------------------------------------------------------------------------------
def test_compile_fuses_by_default_and_charges_a_span_one_add(tiny_profile):
    fused = compile_schedule(tiny_profile, 0.3, cost="latency")
    plain = compile_schedule(tiny_profile, 0.3, cost="latency", spans=False)
    assert fused.decisions == plain.decisions and plain.spans == () and plain.provenance["spans"] == "off"
    assert fused.spans and fused.provenance["spans"]["spans"] == span_stats(fused)["spans"]
    predicted = fused.provenance["predicted"]
    assert 0 < predicted["reuse_overhead"] < predicted["reuse_overhead_without_spans"]
    assert predicted["reuse_overhead_without_spans"] == plain.provenance["predicted"]["reuse_overhead"]
    assert compile_schedule(tiny_profile, 0.3, cost="flops").provenance["predicted"]["reuse_overhead"] == 0


def test_fusing_never_raises_the_peak_cache():
    """Blocks whose later forecast reads the compute a span sums keep their own cache too, so that span frees
    none and only adds its sum: dropped. With residual reuse there instead, the span frees both caches: kept."""
    info = ModelInfo(name="m", fingerprint="f", blocks=("a", "b", "c"), steps=4, timesteps=(4, 3, 2, 1))
    rows = (("native",) * 3, ("native",) * 3, ("native", "residual", "residual"), ("native", "forecast", "forecast"))
    schedule = Schedule(model=info, decisions=rows)
    assert fuse_spans(rows) == ((), (), ((1, 2),), ())
    assert replace(schedule, spans=fuse_spans(rows)).peak_cache_tensors() > schedule.peak_cache_tensors() == 4
    assert with_spans(schedule).spans == ()
    residual = tuple(tuple("residual" if a == "forecast" else a for a in row) for row in rows)
    assert with_spans(replace(schedule, decisions=residual)).spans == ((), (), ((1, 2),), ((1, 2),))
