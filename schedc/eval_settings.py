"""Running a schedule at a setting chosen at evaluation time (`schedc eval --guidance-scale/--steps`).

A schedule's decisions are per step, so it runs only at its own step count; the guidance scale is a
sampler setting it can run at unchanged. Whether its prediction applies depends on whether it was
compiled for that scale: a schedule compiled for several (`schedc solve --for`) carries one prediction
per scale, one compiled for a single scale only that one; anywhere else eval says the setting is outside
what the profile measured and shows no prediction.
"""

from __future__ import annotations

from dataclasses import replace

from schedc.errors import ScheduleError
from schedc_runtime import Schedule


def compiled_scales(schedule: Schedule) -> list[float]:
    """The guidance scales the schedule's prediction was measured at."""
    compiled = schedule.provenance.get("compiled_for")
    if isinstance(compiled, dict) and compiled.get("settings"):
        return [float(s["guidance_scale"]) for s in compiled["settings"]]
    return [float(schedule.sampling.get("guidance_scale", 0.0))]


def at_setting(schedule: Schedule, guidance_scale: float | None, steps: int | None) -> tuple[Schedule, list[str]]:
    """(the schedule set to run at `guidance_scale`, the notes eval prints about it)."""
    if steps is not None and steps != schedule.num_steps:
        raise ScheduleError(f"the schedule runs {schedule.num_steps} sampler steps, not {steps}: compile one for {steps} "
                            f"with `schedc solve PROFILE --steps {steps}`")
    scales = compiled_scales(schedule)
    compiled = schedule.provenance.get("compiled_for")
    objective = compiled.get("objective") if isinstance(compiled, dict) else None
    if guidance_scale is None:
        return schedule, ([f"compiled for the {objective} over g = {', '.join(f'{g:g}' for g in scales)}; runs at "
                           f"g={float(schedule.sampling.get('guidance_scale', 0.0)):g} (eval --guidance-scale picks another)"]
                          if objective else [])
    if schedule.sampling.get("cfg") == "none":
        raise ScheduleError("the schedule samples without classifier-free guidance: --guidance-scale does not apply")
    provenance = dict(schedule.provenance)
    if "reference_sampling" in provenance:
        provenance["reference_sampling"] = {**provenance["reference_sampling"], "guidance_scale": guidance_scale}
    stats, predicted = dict(provenance.get("stats") or {}), dict(provenance.get("predicted") or {})
    by_setting = (stats.get("by_setting") or {}).get(f"{guidance_scale:g}")
    if any(abs(g - guidance_scale) < 1e-9 for g in scales):
        if by_setting:  # this scale's own prediction, not the objective's combination
            stats["predicted_psnr"] = by_setting["predicted_psnr"]
            stats.pop("predicted_psnr_se", None)
            if "predicted_psnr_se" in by_setting:
                stats["predicted_psnr_se"] = by_setting["predicted_psnr_se"]
            predicted["rel_l2"] = by_setting["predicted_rel_l2"]
        notes = [f"runs at g={guidance_scale:g}, a guidance scale it was compiled for"
                 + (f" (the {objective} over {', '.join(f'{g:g}' for g in scales)})" if objective else "")]
    else:
        stats.pop("predicted_psnr", None)
        stats.pop("predicted_psnr_se", None)
        predicted.pop("rel_l2", None)
        notes = [f"g={guidance_scale:g} is outside the guidance scales the profile measured "
                 f"({', '.join(f'{g:g}' for g in scales)}): the schedule runs unchanged, and no prediction applies"]
    provenance.update(stats=stats, predicted=predicted)
    moved = replace(schedule, sampling={**schedule.sampling, "guidance_scale": guidance_scale}, provenance=provenance)
    return moved, notes


__all__ = ["at_setting", "compiled_scales"]
