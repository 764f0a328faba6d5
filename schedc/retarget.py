"""A profile's tables mapped onto another step count, by noise level (issue #12, retargeting).

Why: a profile is measured at one step count, but users run others, and the closed-loop search also
weighs running fewer steps against caching. Every table of a profile is a function of the steps it
was measured at; here each new step is placed at its noise level on the measured axis (its timestep
between the measured timesteps: a fractional measured step) and the tables are read there:

- reuse errors [b, k, s, t] are read at (position of s, age = position of t - position of s), linearly
  between measured sources and ages (age 0 has no error), so a cache age is rescaled by the step
  spacing: one step of a 25-step run is about two of a 50-step one. A forecast's compute spacing is
  rescaled the same way. Entries that would need an age or spacing the profile did not measure stay
  unmeasured (+inf), so solvers never use them.
- quantization errors and propagation gains are read at the position of each new step.

The result is a valid Profile with counts of 1 (its sums are the interpolated means); its prediction is
a transfer, not a measurement, and schedules built from it say so (`retargeted_from`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from schedc.errors import ProfileError
from schedc.profile import Profile
from schedc.profile_checks import MAX_PATTERNS
from schedc_runtime.modes import REUSE_MODES


def step_positions(measured: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """[T'] fractional index on the measured step axis of each target timestep (both decreasing).

    Linear between measured timesteps, extrapolated with the end spacings beyond them, so the first
    and last steps of a finer grid keep distinct positions.
    """
    old = np.asarray(measured, dtype=np.float64)  # [T] decreasing
    new = np.asarray(target, dtype=np.float64)  # [T'] decreasing
    if old.size < 2:
        return np.zeros(new.size)
    pos = np.interp(new, old[::-1], np.arange(old.size, dtype=np.float64)[::-1])
    head, tail = old[0] - old[1], old[-2] - old[-1]  # > 0
    pos = np.where(new > old[0], (old[0] - new) / head, pos)
    return np.where(new < old[-1], old.size - 1 + (old[-1] - new) / tail, pos)


def _lerp_axis(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fractional index -> (lower, upper, weight of upper), clamped into 0..size-1."""
    x = np.clip(index, 0.0, size - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    return lo, hi, x - lo


def _read_reuse(table: np.ndarray, source: np.ndarray, age: np.ndarray) -> np.ndarray:
    """table [B, T, T] (mean error, +inf unmeasured) read at fractional (source, age) -> [B, N].

    Age 0 is error 0; an age past the last measured step shifts the source back (the same age is
    measured earlier); any corner the reading needs that is unmeasured makes it +inf.
    """
    steps = table.shape[-1]
    out = np.zeros((table.shape[0], source.size))
    a_lo = np.floor(age).astype(np.int64)
    wa = age - a_lo
    a_hi = a_lo + (wa > 0)
    ok = (age > 0) & (a_hi <= steps - 1)
    s = np.clip(source, 0.0, np.maximum(steps - 1 - a_hi, 0))
    s_lo, s_hi, ws = _lerp_axis(s, steps)
    for a_idx, w_a in ((a_lo, 1 - wa), (a_hi, wa)):
        for s_idx, w_s in ((s_lo, 1 - ws), (s_hi, ws)):
            w = w_a * w_s  # [N]
            t_idx = np.clip(s_idx + a_idx, 0, steps - 1)
            value = np.where(a_idx[None] > 0, table[:, s_idx, t_idx], 0.0)  # [B, N]
            used = (w > 0)[None]
            out = out + np.where(used, np.where(np.isinf(value), np.inf, value * w[None]), 0.0)
    return np.where(ok[None], out, np.inf)


def _retarget_mode(profile: Profile, mode: str, pos: np.ndarray, gap: int) -> np.ndarray:
    """[B, K', T', T'] mean errors of `mode` on the target steps (K' = patterns at forecast gap `gap`)."""
    table = profile.reuse_error(mode)  # [B, K, T, T]
    old_patterns = profile.patterns(mode)
    new_patterns = REUSE_MODES[mode].patterns(gap)
    steps = pos.size
    s_idx, t_idx = np.triu_indices(steps, k=1)  # every (s < t) pair
    out = np.full((table.shape[0], len(new_patterns), steps, steps), np.inf)
    for k, gaps in enumerate(new_patterns):
        if not gaps:  # one pattern: the last compute only
            out[:, k, s_idx, t_idx] = _read_reuse(table[:, 0], pos[s_idx], pos[t_idx] - pos[s_idx])
            continue
        # the computes' spacing in measured steps, read between the measured patterns' spacings
        # (their first gaps are consecutive integers: a hat function of width 1 around each)
        first = np.array([p[0] for p in old_patterns], dtype=np.float64)
        earlier = s_idx - gaps[0]
        spacing = np.where(earlier >= 0, pos[s_idx] - pos[np.maximum(earlier, 0)], -np.inf)  # [N]
        covered = (spacing >= first[0] - 1e-9) & (spacing <= first[-1] + 1e-9)
        reading = np.zeros((table.shape[0], s_idx.size))
        for j, g in enumerate(first):
            w = np.clip(1.0 - np.abs(spacing - g), 0.0, 1.0)  # [N]
            if np.any(w > 0):
                part = _read_reuse(table[:, j], pos[s_idx], pos[t_idx] - pos[s_idx])
                reading = reading + np.where((w > 0)[None], np.where(np.isinf(part), np.inf, part * w[None]), 0.0)
        out[:, k, s_idx, t_idx] = np.where(covered[None], reading, np.inf)
    return out


def gain_fields(gain: np.ndarray) -> dict[str, np.ndarray]:
    """A Profile's probe arrays stating `gain` [B, T] directly at every step (its meta's probe_steps: all)."""
    gain = np.asarray(gain, dtype=np.float64)
    return {"probe_final_sum": gain, "probe_local_sum": np.ones_like(gain),
            "probe_count": np.ones(gain.shape, dtype=np.int64)}


def retarget_profile(profile: Profile, steps: int, timesteps: Sequence[float],
                     sampler: Mapping[str, Any] | None = None) -> Profile:
    """`profile`'s tables on `steps` steps at `timesteps` (what the model receives at each; decreasing).

    sampler: the sampler settings the result records (another scheduler of the same model, whose
    timesteps these are); default the profile's at `steps`. The profile's own timesteps return it unchanged.
    """
    meta = profile.meta
    timesteps = tuple(float(t) for t in timesteps)
    if len(timesteps) != steps or steps < 1:
        raise ProfileError(f"retargeting to {steps} steps needs {steps} timesteps, got {len(timesteps)}")
    if any(not b < a for a, b in zip(timesteps, timesteps[1:])):
        raise ProfileError("retargeting needs strictly decreasing timesteps")
    target_sampler = dict(sampler) if sampler is not None else {**dict(meta.sampler), "steps": steps}
    if target_sampler.get("steps") != steps:
        raise ProfileError(f"retargeting to {steps} steps needs sampler settings of {steps} steps")
    if steps == meta.steps and np.allclose(timesteps, meta.timesteps) and target_sampler == dict(meta.sampler):
        return profile
    pos = step_positions(meta.timesteps, timesteps)  # [T']
    spacing = (pos[-1] - pos[0]) / max(steps - 1, 1)  # measured steps per target step
    gap = min(MAX_PATTERNS, int(np.floor(meta.forecast_gap / spacing + 1e-9))) if meta.forecast_gap else 0
    with np.errstate(invalid="ignore"):  # inf x 0 weights are masked out
        means = {m: _retarget_mode(profile, m, pos, max(gap, 1)) for m in profile.modes}
    if gap == 0:  # no spacing the profile measured fits a whole target step: multi-compute modes unusable
        means = {m: (t if REUSE_MODES[m].history == 1 else np.full_like(t, np.inf)) for m, t in means.items()}
    lo, hi, w = _lerp_axis(pos, meta.steps)
    quant = profile.quant_error()  # [B, T, P]
    quant_new = quant[:, lo] * (1 - w)[None, :, None] + quant[:, hi] * w[None, :, None]
    gain = profile.gain()  # [B, T]
    gain_new = gain[:, lo] * (1 - w)[None] + gain[:, hi] * w[None]
    ages = [t - s for table in means.values() for s, t in zip(*np.nonzero(np.isfinite(table).any(axis=(0, 1))))]
    ones = np.ones((profile.num_blocks, steps), dtype=np.int64)
    new_meta = meta.replace(
        steps=steps, timesteps=timesteps, sampler=target_sampler,
        max_age=int(min(steps - 1, max(ages, default=0))), forecast_gap=max(gap, 1) if meta.forecast_gap else 0,
        probe_steps=tuple(range(steps)),
        # per sample at the new step count: the search's clock charges generations at this rate
        generation_seconds=None if meta.generation_seconds is None else meta.generation_seconds * steps / meta.steps,
    )
    return replace(
        profile,
        reuse_err_sum={m: np.where(np.isfinite(t), t, 0.0) for m, t in means.items()},
        reuse_count={m: np.isfinite(t).astype(np.int64) for m, t in means.items()},
        quant_err_sum=np.where(np.isfinite(quant_new), quant_new, 0.0), quant_count=ones.copy(),
        **gain_fields(gain_new), meta=new_meta,
    )


__all__ = ["gain_fields", "retarget_profile", "step_positions"]
