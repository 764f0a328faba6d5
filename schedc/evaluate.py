"""Full vs scheduled generation from the same noise: quality, class accuracy, measured speed.

Quality uses held-out evaluation seeds (never the calibration seeds). Speed is wall time of whole
generations, every variant timed in turn inside one loop (interleaved), median of repeats, quoted as
a ratio to full compute. The non-block share o is measured the same way, with every block replaced
by the identity, and gives the ideal speedup 1 / (o + (1 - o) c) at block cost c.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from schedc.errors import SchedcError, ScheduleError
from schedc.eval_settings import at_setting
from schedc.interleaved import (blocks_skipped, interleaved_times, nonblock_share, replaying,  # noqa: F401
                                sampler_of, time_interleaved)  # re-exported: benches import them from here
from schedc.metrics import check_reference, ideal_speedup, prediction_gap, quality
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.problem import FLOP_COST, Problem
from schedc.profile import Profile
from schedc.sampler_config import EVAL_SEED_START  # noqa: F401  (re-exported: benches import it from here)
from schedc.sampling import SamplerConfig
from schedc.schedule import calibration_seeds, compute_from_schedule, derive_schedule
from schedc.solvers.baselines import delta_dit_compute, fewer_steps_count, uniform_compute_steps
from schedc.step_settings import block_cost_at, time_fraction
from schedc_runtime.format import TimestepIndex, timestep_key
from schedc_runtime import Schedule, ScheduleFormatError, check_model

BASELINES = ("fewer-steps", "uniform", "delta-dit")


@dataclass(frozen=True)
class EvalConfig:
    samples: int = 64
    seed_start: int = EVAL_SEED_START
    batch_size: int = 32  # samples per generation when measuring quality
    timing_batch: int = 16  # samples per timed generation
    repeats: int = 7  # interleaved timing rounds (median)
    guidance_scale: float | None = None  # run the schedule at this scale (None: its own; schedc.eval_settings)
    steps: int | None = None  # must be the schedule's (None: its own)

    def __post_init__(self) -> None:
        if self.guidance_scale is not None and not 0.0 <= self.guidance_scale <= 100.0:
            raise SchedcError(f"evaluation guidance scale must be in [0, 100], got {self.guidance_scale}")
        if self.samples < 1 or self.batch_size < 1 or self.timing_batch < 1 or self.repeats < 1:
            raise SchedcError("evaluation samples, batch sizes and timing repeats must be >= 1")

    def seeds(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.samples))


@dataclass(frozen=True)
class Metrics:
    psnr: float
    ssim: float
    rel_l2: float
    class_acc: float | None  # None: the model has no classifier to judge its samples
    cost: float  # block FLOPs as a fraction of full compute
    speedup: float  # measured: median full time / median time
    ideal_speedup: float
    predicted_rel_l2: float | None
    steps: int
    predicted_psnr: float | None = None  # the closed-loop search's measurement on fresh calibration seeds
    psnr_se: float | None = None  # standard error of `psnr` over the held-out samples

    def to_dict(self) -> dict:
        d = asdict(self)
        d["measured_over_ideal"] = self.speedup / self.ideal_speedup if self.ideal_speedup else None
        return d


@dataclass(frozen=True)
class EvalReport:
    schedule: Metrics
    baselines: dict[str, Metrics]
    full_class_acc: float | None
    nonblock_share: float
    settings: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        return {
            "schedule": self.schedule.to_dict(),
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
            "full": {"class_acc": self.full_class_acc, "nonblock_share": self.nonblock_share},
            "settings": self.settings,
        }

    def table(self) -> str:
        header = (f"{'variant':<14}{'steps':>6}{'cost':>7}{'PSNR':>8}{'predPSNR':>9}{'SSIM':>7}{'relL2':>8}{'pred':>8}{'acc':>6}"
                  f"{'speedup':>9}{'ideal':>7}{'meas/ideal':>11}")
        rows = [header, "-" * len(header)]
        for name, m in [("schedule", self.schedule), *self.baselines.items()]:
            pred = f"{m.predicted_rel_l2:.4f}" if m.predicted_rel_l2 is not None else "-"
            pred_psnr = f"{m.predicted_psnr:.2f}" if m.predicted_psnr is not None else "-"
            rows.append(
                f"{name:<14}{m.steps:>6}{m.cost:>7.3f}{m.psnr:>8.2f}{pred_psnr:>9}{m.ssim:>7.3f}{m.rel_l2:>8.4f}{pred:>8}"
                f"{_acc(m.class_acc):>6}{m.speedup:>8.2f}x{m.ideal_speedup:>6.2f}x{m.speedup / m.ideal_speedup:>11.2f}"
            )
        kernels = self.settings.get("runtime", {}).get("kernels")
        if kernels:
            simulated = any(k != ["int8-matmul"] for k in kernels.values())
            rows.append("reduced precision ran as: " + ", ".join(f"{p} = {'/'.join(k)}" for p, k in kernels.items())
                        + (" (simulated/weight-only: the numbers of the precision, not its speed)" if simulated else ""))
        rows.append(f"full compute: class accuracy {_acc(self.full_class_acc)}; non-block share o = {self.nonblock_share:.3f}; "
                    f"caches hold at most {self.settings.get('peak_cache_tensors', '?')} block-output tensors")
        rows += [f"note: {note}" for note in self.settings.get("notes", ())]
        return "\n".join(rows)


def baseline_schedule(
    name: str, base: Schedule, cost: float, nonblock_share: float, adapter: ModelAdapter | None = None,
) -> Schedule:
    """Baseline `name` at block FLOP cost `cost`, for the model and sampler of `base`.

    One definition for every harness (eval, compare, speed matching), so each compares to the same
    baselines: fewer steps = the fewest DDIM steps whose ideal time is not below that of `cost` (needs
    the measured non-block share); uniform = every block refreshes at round(cost x T) evenly spaced
    steps; Δ-DiT = its pattern at the cost nearest `cost` from above. `adapter` gives the timesteps
    the model receives at another step count (needed for a diffusers model's own scheduler).
    """
    full_sampler = reference_sampler(base)
    steps, blocks = full_sampler.steps, base.num_blocks
    # a base at another step count (the search chose it): the baselines run the reference's steps
    full_timesteps = None
    if base.num_steps != steps:
        full_timesteps = adapter.model_timesteps(full_sampler) if adapter is not None else full_sampler.timesteps()
    if name == "fewer-steps":
        n_steps = fewer_steps_count(steps, cost, nonblock_share)
        fewer = SamplerConfig(**{**full_sampler.to_dict(), "steps": n_steps})
        return derive_schedule(
            base, np.ones((n_steps, blocks), dtype=bool), fewer,
            {"solver": "fewer-steps", "note": "fewest sampler steps whose ideal time is not below the schedule's"},
            adapter.model_timesteps(fewer) if adapter is not None else None,
        )
    if name == "uniform":
        computes = int(round(cost * steps))  # the schedule's FLOP cost, spent on whole steps
        uniform = np.zeros((steps, blocks), dtype=bool)
        uniform[uniform_compute_steps(steps, computes)] = True
        return derive_schedule(base, uniform, full_sampler, {"solver": "uniform"}, full_timesteps)
    if name == "delta-dit":
        return derive_schedule(base, delta_dit_compute(steps, blocks, cost), full_sampler, {"solver": "delta-dit"},
                               full_timesteps)
    raise SchedcError(f"unknown baseline {name!r}: choose one of {', '.join(BASELINES)}")


def block_cost(schedule: Schedule, block_flops: list[float], full_steps: int) -> float:
    """Block FLOPs of `schedule` (FLOP cost model) as a fraction of all blocks for `full_steps` steps."""
    flops = np.asarray(block_flops)
    weight = np.array([[FLOP_COST.get(a, 0.0) for a in row] for row in schedule.decisions])  # [T, B]
    return float((weight * flops[None]).sum() / (full_steps * flops.sum()))


def held_out_reference(
    adapter: ModelAdapter, profile: Profile, samples: int, batch: int = 32
) -> tuple[GenerationInputs, torch.Tensor]:
    """Held-out inputs (seeds EVAL_SEED_START..) and their full-compute samples at the profile's sampler."""
    inputs = adapter.make_inputs(range(EVAL_SEED_START, EVAL_SEED_START + samples))
    full, _ = generate_with(adapter, None, inputs, batch, SamplerConfig(**profile.meta.sampler))
    check_reference(adapter, full, inputs)
    return inputs, full


def check_timesteps(adapter: ModelAdapter, schedule: Schedule, sampler: SamplerConfig) -> None:
    """Before any model work: the timesteps the model will receive must be the schedule's own."""
    received = adapter.model_timesteps(sampler)
    if not TimestepIndex(schedule.model.timesteps).matches(received):
        expected = [timestep_key(t) for t in received]
        recorded = [timestep_key(t) for t in schedule.model.timesteps]
        raise ScheduleError(f"the schedule was compiled for {len(recorded)} steps at timesteps {recorded[0]:g}..{recorded[-1]:g}, "
                            f"but this model's sampler gives {len(expected)} steps at {expected[0]:g}..{expected[-1]:g}: "
                            "compile a schedule for this sampler (schedc solve)")


def reference_sampler(schedule: Schedule) -> SamplerConfig:
    """The full compute a schedule's quality is measured against: its own sampling settings, or, for one
    the search compiled at fewer steps than the profile's, the profile's (`reference_sampling`)."""
    own = sampler_of(schedule)
    recorded = schedule.provenance.get("reference_sampling")
    if recorded is None:
        return own
    try:
        reference = SamplerConfig(**recorded)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"schedule has invalid reference_sampling settings: {exc}") from None
    if reference.with_changes(steps=own.steps) != own:
        raise ScheduleError("schedule's reference_sampling differs from its sampling in more than the step count")
    return reference


def equivalent_cost(steps: int, full_steps: int, cost: float, nonblock_share: float) -> float:
    """Block cost (of `full_steps` steps) at which a run of `full_steps` steps takes the ideal time of a
    `steps`-step run whose block FLOPs are `cost` of `full_steps` steps: how baselines match its speed."""
    if steps == full_steps:
        return cost
    o = min(max(nonblock_share, 0.0), 0.95)
    return min(1.0, max(0.0, block_cost_at(time_fraction(steps, full_steps, cost * full_steps / steps, o), o)))


def generate_with(
    adapter: ModelAdapter, schedule: Schedule | None, inputs: GenerationInputs, batch: int, full_sampler: SamplerConfig
) -> tuple[torch.Tensor, dict]:
    """Generate `inputs` in batches, replaying `schedule` (None = the bare model at `full_sampler`).

    Returns the samples and what the runtime reported (kernels, quantized copies' memory, cache peak).
    """
    sampler = sampler_of(schedule) if schedule is not None else full_sampler
    with replaying(adapter, schedule) as handle:
        samples = torch.cat([adapter.generate(inputs.subset(slice(i, i + batch)), sampler)
                             for i in range(0, len(inputs), batch)])
        report = {} if handle is None else {"kernels": handle.kernels, "quantized_bytes": handle.quantized_bytes,
                                            "peak_cache_bytes": handle.peak_cache_bytes}
    return samples, report


def evaluate(
    adapter: ModelAdapter, schedule: Schedule, config: EvalConfig = EvalConfig(), baselines: bool = False,
    progress: bool = True, problem: Problem | None = None,
) -> EvalReport:
    """`problem` (from the schedule's profile), when given, predicts the uniform baseline's error too."""
    log = print if progress else (lambda *a, **k: None)
    schedule, setting_notes = at_setting(schedule, config.guidance_scale, config.steps)
    seeds = config.seeds()
    shared = calibration_seeds(schedule) & set(seeds)
    if shared:
        raise SchedcError(f"evaluation seeds overlap the schedule's calibration seeds ({len(shared)} shared): start the evaluation seeds elsewhere")
    try:
        check_model(adapter.model, schedule)
    except ScheduleFormatError as exc:
        raise ScheduleError(str(exc)) from None
    full_sampler = reference_sampler(schedule)  # the schedule's own sampling settings (or its reference steps)
    check_timesteps(adapter, schedule, sampler_of(schedule))
    block_flops, _ = adapter.flops()
    full_steps = full_sampler.steps
    inputs = adapter.make_inputs(seeds)
    timing_inputs = adapter.make_inputs(seeds[: config.timing_batch])

    log(f"generating {len(seeds)} held-out samples (seeds {seeds[0]}..{seeds[-1]}) at full compute")
    full, _ = generate_with(adapter, None, inputs, config.batch_size, full_sampler)
    check_reference(adapter, full, inputs)
    variants: dict[str, Schedule | None] = {"full": None, "schedule": schedule}
    predicted: dict[str, float | None] = {"schedule": _predicted(schedule)}
    cost = block_cost(schedule, block_flops, full_steps)
    if baselines:
        log("timing the non-block share to size the fewer-steps baseline")
        quick = nonblock_share(adapter, timing_inputs, full_sampler)
        matched = equivalent_cost(schedule.num_steps, full_steps, cost, quick)
        for name in BASELINES:
            variants[name] = baseline_schedule(name, schedule, matched, quick, adapter)
            predicted[name] = (None if name == "fewer-steps" or problem is None
                               else _finite(problem.predicted_error(compute_from_schedule(variants[name]))))

    samples, runtime = {}, {}
    for name, variant in variants.items():
        if name == "full":
            continue
        log(f"generating with {name}")
        samples[name], runtime[name] = generate_with(adapter, variant, inputs, config.batch_size, full_sampler)
    log(f"timing {len(variants)} variants + no-block run, {config.repeats} interleaved rounds of {config.timing_batch} samples")
    speedups, full_seconds = time_interleaved(adapter, variants, timing_inputs, config.repeats, full_sampler)
    nonblock = 1.0 / speedups["skip"]

    def metrics(name: str) -> Metrics:
        variant = variants[name]
        assert variant is not None
        c = block_cost(variant, block_flops, full_steps)
        q = quality(adapter.images(samples[name]), adapter.images(full))
        # the ideal follows the cost model the schedule was solved with (latency schedules: wall time)
        model_cost = c if variant.provenance.get("cost_model") != "latency" else float(variant.provenance["predicted"]["cost"])
        if variant.num_steps != full_steps:  # fewer steps: their block cost, and the non-block work of fewer steps
            n = variant.num_steps
            ideal = 1.0 / time_fraction(n, full_steps, min(1.0, c * full_steps / n), nonblock)
        else:
            ideal = ideal_speedup(model_cost, nonblock)
        return Metrics(
            psnr=q["psnr"], ssim=q["ssim"], rel_l2=q["rel_l2"],
            class_acc=adapter.class_accuracy(samples[name], inputs.labels),
            cost=c, speedup=speedups[name], ideal_speedup=ideal,
            predicted_rel_l2=predicted.get(name), steps=variant.num_steps,
            predicted_psnr=_predicted_psnr(variant) if name == "schedule" else None, psnr_se=q["psnr_se"],
        )

    measured = metrics("schedule")
    predicted_se = (schedule.provenance.get("stats") or {}).get("predicted_psnr_se")
    gap = ([prediction_gap(measured.predicted_psnr, predicted_se, measured.psnr, measured.psnr_se)]
           if measured.predicted_psnr is not None and predicted_se is not None else [])
    return EvalReport(
        schedule=measured,
        baselines={name: metrics(name) for name in variants if name not in ("full", "schedule")},
        full_class_acc=adapter.class_accuracy(full, inputs.labels),
        nonblock_share=nonblock,
        settings={
            "eval_seeds": f"{seeds[0]}-{seeds[-1]}", "samples": len(seeds), "timing_batch": config.timing_batch,
            "repeats": config.repeats, "threads": torch.get_num_threads(), "cost_of_schedule": cost,
            "full_seconds": full_seconds, "sampler": full_sampler.to_dict(),
            "peak_cache_tensors": schedule.peak_cache_tensors(),
            "runtime": runtime["schedule"], "notes": _notes(schedule, full_sampler) + setting_notes + gap,
        },
    )


def _notes(schedule: Schedule, reference: SamplerConfig) -> list[str]:
    """What a reader must know about the conditions the schedule runs under vs what it was measured at."""
    notes = []
    if schedule.num_steps != reference.steps:
        notes.append(f"the schedule runs {schedule.num_steps} sampler steps (the search chose fewer at the same speed); "
                     f"its quality is against full compute at the profile's {reference.steps} steps")
    moved = schedule.provenance.get("retargeted_from")
    if isinstance(moved, dict):
        tables, gains = moved.get("tables", "transferred"), moved.get("gains", "transferred")
        if tables != "transferred":
            notes.append(f"compiled for {schedule.num_steps} steps from a {moved.get('steps')}-step profile whose tables "
                         f"and gains were {tables}: a lighter calibration than the profile's own")
        else:
            notes.append(f"compiled from a {moved.get('steps')}-step profile retargeted to {schedule.num_steps} steps "
                         f"(propagation gains {gains}): outside the step count the profile measured, so its prediction "
                         "is a transfer, not a measurement")
    return notes


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _predicted_psnr(schedule: Schedule) -> float | None:
    value = (schedule.provenance.get("stats") or {}).get("predicted_psnr")
    return float(value) if value is not None else None


def _predicted(schedule: Schedule) -> float | None:
    value = (schedule.provenance.get("predicted") or {}).get("rel_l2")
    return float(value) if value is not None else None
