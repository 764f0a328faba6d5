"""Propagation gains re-measured at a retargeted step count (issue #12, step retargeting).

Why: a retargeted profile's reuse errors transfer well across step counts (dit-p1-s 50 -> 20 steps: the
native/retargeted ratio of every reuse table has median 1.00), but its propagation gains do not. A gain is
the final error per unit of local error when one block reuses one step's cache; on a coarser grid that
step's update is larger, and the ratio is not one number: 2.4-2.9x per block for blocks 0-4 and 4.3x for
the last block there. Interpolated gains therefore mis-weigh blocks against each other, and the DP compiled
from them rolled out 35.80 dB at b=0.3 where the same tables with gains measured at 20 steps gave 41.33
(native profile: 43.09). The gains are cheap to measure (the profiler's probes on its 4 probe samples: one
batched rollout per probed step), so whenever the model loads they are measured at the target steps and
only the reuse and quantization tables are transferred.
"""

from __future__ import annotations

from dataclasses import replace

from schedc.models.adapter import ModelAdapter
from schedc.profile import Profile
from schedc.profiler import ProfileConfig, profile_model
from schedc.sampling import SamplerConfig


def measure_gains(profile: Profile, adapter: ModelAdapter, sampler: SamplerConfig, progress: bool = False) -> Profile:
    """`profile` (tables at sampler.steps, e.g. retargeted) with its gains measured by rollouts at `sampler`.

    The probes use calibration seeds 0..k-1 (k = the profile's probe samples), as the profiler's own do.
    """
    if sampler.steps != profile.num_steps:
        raise ValueError(f"gains for {profile.num_steps} steps need a sampler of that many steps, got {sampler.steps}")
    k = max(1, int(profile.meta.probe_samples))
    probe_steps = min(10, profile.num_steps)
    measured = profile_model(adapter, sampler, ProfileConfig(
        calib_samples=k, batch_size=k, max_age=1, forecast_gap=1, probe_steps=probe_steps, probe_samples=k,
        precisions=(), measure_latency=False), progress=progress)
    return replace(profile, probe_final_sum=measured.probe_final_sum, probe_local_sum=measured.probe_local_sum,
                   probe_count=measured.probe_count,
                   meta=profile.meta.replace(probe_steps=measured.meta.probe_steps, probe_samples=k))


__all__ = ["measure_gains"]
