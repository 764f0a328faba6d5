"""Compiler side of the schedule format: Solution + Profile -> Schedule, and file I/O.

The format itself (dataclasses, YAML, validation) lives in the runtime so deployments need only
torch and pyyaml; this module adds provenance and turns format errors into SchedcErrors.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from schedc.version import __version__
from schedc.atomic import atomic_write_text
from schedc.errors import ScheduleError
from schedc.profile import Profile
from schedc.sampler_config import SamplerConfig
from schedc.solvers.base import Solution
from schedc_runtime import ModelInfo, Schedule, ScheduleFormatError, dump_schedule, load_schedule
from schedc_runtime.format import format_ranges, is_reuse, parse_ranges


def decisions_from_compute(compute: np.ndarray, reuse: "Sequence[str] | None" = None) -> tuple[tuple[str, ...], ...]:
    """compute: bool [T, B] -> decisions[t][b]: "native", or reuse[b] (default "residual") where it reuses."""
    reuse = reuse or ["residual"] * compute.shape[1]
    return tuple(tuple("native" if c else reuse[b] for b, c in enumerate(row)) for row in compute.tolist())


def compute_from_schedule(schedule: Schedule) -> np.ndarray:
    """decisions -> bool [T, B] (True = compute, at any precision)."""
    return np.array([[not is_reuse(a) for a in row] for row in schedule.decisions], dtype=bool)


def model_info(profile: Profile, sampler: SamplerConfig | None = None,
               timesteps: "Sequence[float] | None" = None) -> ModelInfo:
    """timesteps: what the model receives at each step under `sampler` (needed for a diffusers scheduler
    at a step count other than the profile's; a solver that chose the step count knows them)."""
    meta = profile.meta
    sampler = sampler or SamplerConfig(**meta.sampler)
    if timesteps is not None:
        timesteps = tuple(float(t) for t in timesteps)
    elif sampler.steps == meta.steps:
        timesteps = tuple(float(t) for t in meta.timesteps)  # what the model received when profiled
    elif sampler.scheduler == "ddim":
        timesteps = tuple(float(t) for t in sampler.timesteps())
    else:
        raise ScheduleError(f"the profile is for {meta.steps} steps: re-profile at {sampler.steps} steps")
    return ModelInfo(
        name=meta.model,
        fingerprint=meta.fingerprint,
        blocks=meta.blocks,
        steps=sampler.steps,
        timesteps=timesteps,
        cfg=sampler.cfg,
        timestep_arg=meta.timestep_arg,
        block_outputs=meta.block_outputs or (),
    )


def build_schedule(
    profile: Profile,
    compute: "np.ndarray | tuple[tuple[str, ...], ...]",
    provenance: Mapping[str, Any],
    sampler: SamplerConfig | None = None,
    timesteps: "Sequence[float] | None" = None,
) -> Schedule:
    """compute: bool [T, B] or action names [T][B]. `sampler` overrides the profile's sampling (with the
    `timesteps` the model then receives, when a diffusers scheduler gives them)."""
    sampler = sampler or SamplerConfig(**profile.meta.sampler)
    prov = {
        "profile": profile.digest(),
        "calibration_seeds": format_ranges(profile.meta.calibration_seeds),
        "schedc": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **({"model_source": profile.meta.to_dict()["model_source"]} if profile.meta.model_source else {}),
        **provenance,
    }
    try:
        return Schedule(
            model=model_info(profile, sampler, timesteps),
            decisions=decisions_from_compute(compute) if isinstance(compute, np.ndarray) else compute,
            sampling=sampler.to_dict(),
            provenance=prov,
        )
    except ScheduleFormatError as exc:
        raise ScheduleError(str(exc)) from None


def schedule_from_solution(profile: Profile, solution: Solution, budget: float, extra: Mapping[str, Any] | None = None) -> Schedule:
    """The schedule of a solver's Solution. One that runs another step count than the profile's (the search
    chose it) records the profile's sampling as `reference_sampling`: what its quality is measured against."""
    stats = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in solution.stats.items()}
    # seeds a model-in-the-loop solver ran beyond the profile's are calibration seeds too (never evaluated on)
    extra_seeds = parse_ranges(str(stats["prediction_seeds"]), 1 << 62, "prediction_seeds") if "prediction_seeds" in stats else []
    sampler = SamplerConfig(**solution.sampling) if solution.sampling is not None else None
    moved = {"reference_sampling": dict(profile.meta.sampler)} if sampler is not None else {}
    return build_schedule(
        profile,
        solution.actions(),
        {
            "calibration_seeds": format_ranges([*profile.meta.calibration_seeds, *extra_seeds]),
            "solver": solution.solver,
            "budget": round(float(budget), 4),
            "predicted": {"cost": round(solution.cost, 4), "rel_l2": round(solution.predicted_error, 5)},
            "stats": stats,
            **moved,
            **(extra or {}),
        },
        sampler, solution.timesteps,
    )


def save_schedule(schedule: Schedule, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, dump_schedule(schedule))
    return path


def read_schedule(path: str | Path) -> Schedule:
    try:
        return load_schedule(path)
    except ScheduleFormatError as exc:
        raise ScheduleError(str(exc)) from None


def calibration_seeds(schedule: Schedule) -> set[int]:
    text = schedule.provenance.get("calibration_seeds", "")
    if not text:
        return set()
    try:
        return set(parse_ranges(str(text), 1 << 62, "provenance.calibration_seeds"))
    except ScheduleFormatError as exc:
        raise ScheduleError(str(exc)) from None


def derive_schedule(
    base: Schedule, compute: np.ndarray, sampler: SamplerConfig, provenance: Mapping[str, Any],
    timesteps: "Sequence[float] | None" = None,
) -> Schedule:
    """A schedule for the same model as `base` with other decisions (and maybe another sampler).

    timesteps: what the model receives at each step under `sampler` (default: the base's, same steps).
    """
    if timesteps is None:
        timesteps = base.model.timesteps if sampler.steps == base.num_steps else sampler.timesteps()
    model = replace(base.model, steps=sampler.steps, timesteps=tuple(float(t) for t in timesteps), cfg=sampler.cfg)
    return Schedule(
        model=model,
        # blocks whose output is not a residual of their input (UNet down/up blocks) replay their output
        decisions=decisions_from_compute(compute, ["residual" if base.residual_ok(b) else "output"
                                                   for b in range(base.num_blocks)]),
        sampling=sampler.to_dict(),
        provenance={**{k: v for k, v in base.provenance.items() if k == "calibration_seeds"}, **provenance},
    )
