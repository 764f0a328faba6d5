"""The runtime is dtype- and device-agnostic: under bf16 and fp16 (on CPU, where torch supports them) a
schedule's caches stay in the model's dtype and device, and the samples follow the fp32 scheduled ones
within that dtype's precision (issue #13)."""

from __future__ import annotations

import pytest
import torch

from schedc.schedule import build_schedule
from schedc_runtime import apply_schedule

from conftest import TINY_SAMPLER, make_tiny_adapter

MODES = ("residual", "forecast", "output", "int8")


def _decisions(steps: int, blocks: int) -> tuple[tuple[str, ...], ...]:
    """Step 0 computes; then every block alternates a compute with one of the modes (int8: a reduced compute)."""
    rows = []
    for t in range(steps):
        rows.append(tuple("native" if t == 0 or (t + b) % 2 == 0 else MODES[(t + b) % len(MODES)] for b in range(blocks)))
    return tuple(rows)


def _run(model: torch.nn.Module, schedule, dtype: torch.dtype) -> tuple[torch.Tensor, int, set]:
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)  # [N, C, H, W]
    labels = torch.tensor([0, 1, 2])
    held: set = set()
    with torch.no_grad(), apply_schedule(model, schedule, step_source="counter") as handle:
        for t in schedule.model.timesteps:
            x = x - 0.05 * model(x, torch.full((3,), t), labels)
            held |= {(v.dtype, v.device.type) for c in handle._cache.values()
                     for v in getattr(c, "deltas", [[]])[0] if isinstance(v, torch.Tensor)}
        peak = handle.peak_cache_bytes
    return x, peak, held


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_caches_stay_in_the_models_dtype_and_samples_follow_fp32(tiny_profile, dtype):
    schedule = build_schedule(tiny_profile, _decisions(8, 4), {"solver": "test"}, TINY_SAMPLER)
    ref, ref_peak, _ = _run(make_tiny_adapter().model, schedule, torch.float32)
    out, peak, held = _run(make_tiny_adapter().model.to(dtype), schedule, dtype)
    assert out.dtype == dtype and held == {(dtype, "cpu")}
    assert peak == ref_peak // 2  # the same tensors, at half the bytes
    err = (out.float() - ref).norm() / ref.norm()
    assert err < (0.05 if dtype == torch.bfloat16 else 0.01), float(err)
