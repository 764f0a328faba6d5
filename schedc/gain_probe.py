"""Tables and propagation gains re-measured at a retargeted step count (issue #12, step retargeting).

Why: a retargeted profile's reuse errors transfer well across step counts (dit-p1-s 50 -> 20 steps: the
native/retargeted ratio of every reuse table has median 1.00), but its propagation gains do not. A gain is
the final error per unit of local error when one block reuses one step's cache; on a coarser grid that
step's update is larger, and the ratio is not one number: 2.4-2.9x per block for blocks 0-4 and 4.3x for
the last block there. Interpolated gains therefore mis-weigh blocks against each other, and the DP compiled
from them rolled out 35.80 dB at b=0.3 where the same tables with gains measured at 20 steps gave 41.33
(native profile: 43.09). The gains are cheap to measure (the profiler's probes on its 4 probe samples: one
batched rollout per probed step), so whenever the model loads they are measured at the target steps and
only the reuse and quantization tables are transferred.

The tables do not transfer entry by entry either, though their medians do: a block's reuse error can move
10x between neighbouring steps (digits-dit block 0, age 1: 0.8 to 9.7 x 1e-3 over steps 2-3 of 50; the same
kind of swing at 20 steps), which no reading by noise level reproduces on another grid, and the DP builds
its schedule from exactly those low spots. Measuring every table at the target count on the same probe
samples costs about what the gains alone cost (the probes dominate: dit-p1-s at 30 steps, 13-18 s for
either), and the DP's tables settle by 4 samples (README section 11). So `schedc solve --steps N` with the
model at hand measures everything at N (`measure_at_steps`); the retargeted tables are what it compiles
from only when the model does not load.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from schedc.models.adapter import ModelAdapter
from schedc.profile import Profile
from schedc.profiler import ProfileConfig, profile_model
from schedc.retarget import gain_fields, step_positions
from schedc.sampling import SamplerConfig
from schedc.step_settings import retargeted_profile


def _measure(profile: Profile, adapter: ModelAdapter, sampler: SamplerConfig, progress: bool, **config) -> Profile:
    """The profiler's pass at `sampler` on calibration seeds 0..k-1 (k = `profile`'s probe samples), the probes on
    all k, no latency timing; `config`: the rest of the ProfileConfig (what to measure)."""
    if sampler.steps != profile.num_steps:
        raise ValueError(f"{profile.num_steps} steps need a sampler of that many steps, got {sampler.steps}")
    k = max(1, int(profile.meta.probe_samples))
    return profile_model(adapter, sampler, ProfileConfig(calib_samples=k, batch_size=k, probe_samples=k,
                                                         measure_latency=False, **config), progress=progress)


def measure_gains(profile: Profile, adapter: ModelAdapter, sampler: SamplerConfig, progress: bool = False) -> Profile:
    """`profile` (tables at sampler.steps, e.g. retargeted) with its gains measured by rollouts at `sampler`.

    The probes use calibration seeds 0..k-1 (k = the profile's probe samples), as the profiler's own do.
    """
    measured = _measure(profile, adapter, sampler, progress, max_age=1, forecast_gap=1,
                        probe_steps=min(10, profile.num_steps), precisions=())
    return replace(profile, probe_final_sum=measured.probe_final_sum, probe_local_sum=measured.probe_local_sum,
                   probe_count=measured.probe_count,
                   meta=profile.meta.replace(probe_steps=measured.meta.probe_steps,
                                             probe_samples=measured.meta.probe_samples))


def measure_at_steps(profile: Profile, adapter: ModelAdapter, sampler: SamplerConfig, progress: bool = False) -> Profile:
    """`profile` (retargeted to sampler.steps) with every table and its gains measured by the profiler at `sampler`.

    Measured on calibration seeds 0..k-1 (k = the profile's probe samples) with the profile's own reuse ages,
    forecast spacing and precisions; everything else (calibration seeds the search rolls out on, block costs,
    latency) stays the profile's.
    """
    meta = profile.meta
    config = dict(meta.config or {})
    measured = _measure(profile, adapter, sampler, progress, max_age=max(1, int(config.get("max_age", meta.max_age))),
                        forecast_gap=max(1, int(config.get("forecast_gap", meta.forecast_gap or 1))),
                        probe_steps=min(int(config.get("probe_steps", 10)), profile.num_steps),
                        precisions=tuple(meta.precisions))
    return replace(profile, reuse_err_sum=measured.reuse_err_sum, reuse_count=measured.reuse_count,
                   quant_err_sum=measured.quant_err_sum, quant_count=measured.quant_count,
                   probe_final_sum=measured.probe_final_sum, probe_local_sum=measured.probe_local_sum,
                   probe_count=measured.probe_count,
                   meta=meta.replace(max_age=measured.meta.max_age, forecast_gap=measured.meta.forecast_gap,
                                     kernels=measured.meta.kernels, probe_steps=measured.meta.probe_steps,
                                     probe_samples=measured.meta.probe_samples))


def with_gains(profile: Profile, gain: np.ndarray) -> Profile:
    """`profile` whose propagation gain is `gain` [B, T] at every step."""
    return replace(profile, **gain_fields(gain), meta=profile.meta.replace(probe_steps=tuple(range(profile.num_steps))))


@dataclass(frozen=True)
class GainScaling:
    """How the gains of a coarser grid exceed the profile's, measured at one step count, for every other.

    Why: the closed-loop search tries several fewer step counts, and measuring the gains at each costs
    about a fifth of a search's rollouts apiece. The excess is measured once, at the coarsest count, as
    a ratio per block and noise level (measured / retargeted gain), and read at other counts linearly in
    the step spacing: 1 at the profile's own spacing, the measured ratio at the coarsest.
    """

    positions: np.ndarray  # [T_m] the measured count's steps on the profile's step axis
    spacing: float  # profile steps per step at the measured count (> 1)
    ratio: np.ndarray  # [B, T_m] measured gain / retargeted gain

    @classmethod
    def measure(cls, source: Profile, retargeted: Profile, adapter: ModelAdapter, sampler: SamplerConfig) -> "GainScaling":
        """From `retargeted` (`source`'s tables at sampler.steps < source's steps), measuring its gains."""
        measured = measure_gains(retargeted, adapter, sampler)
        positions = step_positions(source.meta.timesteps, retargeted.meta.timesteps)
        transferred = retargeted.gain()  # [B, T_m]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(transferred > 0, measured.gain() / transferred, 1.0)
        return cls(positions, _spacing(positions), np.where(np.isfinite(ratio), ratio, 1.0))

    def apply(self, source: Profile, retargeted: Profile) -> Profile:
        """`retargeted` (`source`'s tables on a coarser grid) with its gains scaled by the measured excess."""
        positions = step_positions(source.meta.timesteps, retargeted.meta.timesteps)
        weight = 0.0 if self.spacing <= 1.0 else (_spacing(positions) - 1.0) / (self.spacing - 1.0)
        ratio = np.stack([np.interp(positions, self.positions, row) for row in self.ratio])  # [B, T']
        return with_gains(retargeted, retargeted.gain() * (1.0 + (ratio - 1.0) * max(weight, 0.0)))


def _spacing(positions: np.ndarray) -> float:
    return float((positions[-1] - positions[0]) / max(positions.size - 1, 1))


def fewer_steps_gains(adapter: ModelAdapter, profile: Profile, steps: int) -> GainScaling:
    """The gains' excess over the profile's measured at `steps` (the coarsest count the search tries)."""
    sampler = SamplerConfig(**profile.meta.sampler).with_changes(steps=steps)
    return GainScaling.measure(profile, retargeted_profile(adapter, profile, steps), adapter, sampler)


__all__ = ["GainScaling", "fewer_steps_gains", "measure_at_steps", "measure_gains", "with_gains"]
