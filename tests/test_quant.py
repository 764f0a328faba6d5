"""Reduced-precision compute and the output/forecast reuse modes, checked against hand computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from schedc_runtime import apply_schedule
from schedc_runtime.quant import (
    QuantizedLinear,
    dequantize_int4_groups,
    fake_fp8,
    quantize_block,
    quantize_int4_groups,
    quantize_int8_per_channel,
)
from tests.conftest import TINY_SAMPLER, schedule_for

T, B = TINY_SAMPLER.steps, 4


@pytest.fixture
def weight() -> torch.Tensor:
    return torch.randn(48, 64, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 3, 64)


def test_int8_round_trip_within_half_a_step(weight):
    q, scale = quantize_int8_per_channel(weight)
    assert q.dtype == torch.int8 and scale.shape == (48,)
    err = (weight - q.float() * scale[:, None]).abs()
    assert torch.all(err <= scale[:, None] / 2 + 1e-7)


def test_fp8_round_trip_relative_error(weight):
    fq = fake_fp8(weight, dim=1)
    amax = weight.abs().amax(dim=1, keepdim=True)
    # e4m3 keeps 3 mantissa bits: half-ulp 1/16 relative for normals; absolute 2^-10 * scale below
    bound = torch.maximum(weight.abs() / 16, amax / 448 * 2.0**-10)
    assert torch.all((weight - fq).abs() <= bound + 1e-7)
    assert not torch.equal(fq, weight)


def test_int4_round_trip_and_packing(weight):
    packed, scale = quantize_int4_groups(weight)
    assert packed.dtype == torch.uint8 and packed.shape == (48, 32) and scale.shape == (48, 2)
    deq = dequantize_int4_groups(packed, scale)
    per_elem_scale = scale.repeat_interleave(32, dim=1)
    assert torch.all((weight - deq).abs() <= per_elem_scale / 2 + 1e-6)
    assert torch.equal(quantize_int4_groups(deq)[0], packed)  # exact on already-quantised values


@pytest.mark.parametrize("precision, tol", [("int8", 0.03), ("fp8", 0.06), ("int4w", 0.15)])
def test_quantized_linear_is_close_to_float(weight, precision, tol):
    linear = nn.Linear(64, 48)
    linear.weight.data.copy_(weight)
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(1))
    q = QuantizedLinear(linear, precision)
    with torch.no_grad():
        ref, out = linear(x), q(x)
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < tol
    assert q.weight_bytes() < linear.weight.numel() * 4


def test_int8_uses_a_real_integer_matmul_on_this_cpu(weight):
    linear = nn.Linear(64, 48)
    linear.weight.data.copy_(weight)
    q = QuantizedLinear(linear, "int8")
    assert q.kernel == "int8-matmul"
    x = torch.randn(32, 64)
    simulated_kernel = QuantizedLinear(linear, "int8")
    simulated_kernel.kernel = "simulated"
    assert torch.allclose(q(x), simulated_kernel(x), atol=1e-5)  # exact int32 sums either way


def _with_decisions(profile, rows):
    base = schedule_for(profile, np.ones((T, B), dtype=bool))
    return dataclasses.replace(base, decisions=tuple(tuple(r) for r in rows))


def test_switching_precision_per_step_runs_the_quantized_copy(tiny_adapter, tiny_profile):
    rows = [["native"] * B for _ in range(T)]
    rows[2][1], rows[3][1], rows[4][1] = "int8", "fp8", "int4w"
    schedule = _with_decisions(tiny_profile, rows)
    seen = []
    tiny_adapter.blocks()[1].register_forward_hook(lambda m, a, o: seen.append((a, o.clone())))
    with apply_schedule(tiny_adapter.model, schedule) as handle:
        tiny_adapter.generate(tiny_adapter.make_inputs(range(2)), TINY_SAMPLER)
        assert set(handle.quantized) == {(1, "int8"), (1, "fp8"), (1, "int4w")}
        assert handle.kernels == {"fp8": ["simulated"], "int4w": ["weight-only"], "int8": ["int8-matmul"]}
        assert handle.quantized_bytes > 0
        for step, precision in ((2, "int8"), (3, "fp8"), (4, "int4w")):
            args, out = seen[step]
            direct = quantize_block(tiny_adapter.blocks()[1], precision)
            assert torch.equal(out, handle.quantized[(1, precision)](*args))
            assert torch.allclose(out, direct(*args), atol=1e-6)
        native_args, native_out = seen[1]
        assert torch.equal(native_out, tiny_adapter.blocks()[1].__class__.forward(tiny_adapter.blocks()[1], *native_args))


def test_forecast_matches_hand_extrapolation(tiny_adapter, tiny_profile):
    """Block 2 computes at steps 0, 2, 5 and forecasts at 3, 4: x_t + d_2 + (t-2)/(2-0) (d_2 - d_0)."""
    rows = [["native"] * B for _ in range(T)]
    for t in (1, 3, 4):
        rows[t][2] = "forecast"
    seen = []  # (input, output) of block 2 at every step
    tiny_adapter.blocks()[2].register_forward_hook(lambda m, a, o: seen.append((a[0].clone(), o.clone())))
    with apply_schedule(tiny_adapter.model, _with_decisions(tiny_profile, rows)):
        tiny_adapter.generate(tiny_adapter.make_inputs(range(2)), TINY_SAMPLER)
    d = {t: seen[t][1] - seen[t][0] for t in (0, 2)}
    x1, y1 = seen[1]
    assert torch.equal(y1, x1 + d[0])  # one compute so far: the forecast falls back to residual
    for t in (3, 4):
        xt, yt = seen[t]
        expected = xt + d[2] + (t - 2) / (2 - 0) * (d[2] - d[0])
        assert torch.allclose(yt, expected, atol=1e-6)


def test_output_reuse_returns_the_cached_output(tiny_adapter, tiny_profile):
    rows = [["native"] * B for _ in range(T)]
    rows[4][0] = rows[5][0] = "output"
    seen = []
    tiny_adapter.blocks()[0].register_forward_hook(lambda m, a, o: seen.append(o.clone()))
    with apply_schedule(tiny_adapter.model, _with_decisions(tiny_profile, rows)) as handle:
        tiny_adapter.generate(tiny_adapter.make_inputs(range(2)), TINY_SAMPLER)
        assert handle.block_calls[0] == T - 2
    assert torch.equal(seen[4], seen[3]) and torch.equal(seen[5], seen[3])


def test_a_layer_a_precision_cannot_take_stays_native():
    """int4w packs groups of 32 input channels: a width-48 layer (pixart-dpm's blocks) keeps its float
    weights in the int4w copy of the block, and the layers that fit are quantized as usual."""
    from schedc_runtime.precisions.base import QuantLinear

    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(48, 64), nn.GELU(), nn.Linear(64, 48))
    quantized = quantize_block(block, "int4w")
    assert type(quantized[0]) is nn.Linear and torch.equal(quantized[0].weight, block[0].weight)
    assert isinstance(quantized[2], QuantLinear) and quantized[2].precision == "int4w"
    x = torch.randn(5, 48)
    with torch.no_grad():
        assert 0 < float((quantized(x) - block(x)).norm() / block(x).norm()) < 0.15
