"""Timing generations side by side: variants interleaved round by round in one process, so a noisy
machine's slow drifts cancel in the ratios; the no-block run that gives the non-block share; replaying a
schedule for the duration of a block of code. Split from schedc.evaluate, which scores what these time."""

from __future__ import annotations

import statistics
from contextlib import contextmanager
from typing import Iterator

from schedc.errors import ScheduleError
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.sampling import SamplerConfig
from schedc.step_settings import usable_nonblock
from schedc import timing
from schedc.timing import device_of, repeats_for, timed
from schedc_runtime import Schedule, ScheduleFormatError, ScheduleHandle, apply_schedule
from schedc_runtime.blockio import BlockIO
from schedc_runtime.hookcore import CallHook, add_hook


def nonblock_share(adapter: ModelAdapter, inputs: GenerationInputs, sampler: SamplerConfig, repeats: int = 3) -> float:
    """o: the time of a generation with every block skipped, as a fraction of one with every block computed
    (median over `repeats` interleaved rounds)."""
    speedups, _ = time_interleaved(adapter, {"full": None}, inputs, repeats, sampler)
    return 1.0 / speedups["skip"]


def measure_nonblock_share(adapter: ModelAdapter, sampler: SamplerConfig, seeds: list[int], repeats: int = 3) -> float:
    """o (`nonblock_share` on `seeds`), kept usable (schedc.step_settings.usable_nonblock)."""
    return measure_generation(adapter, sampler, seeds, repeats)[0]


def measure_generation(adapter: ModelAdapter, sampler: SamplerConfig, seeds: list[int],
                       repeats: int = 3) -> tuple[float, float]:
    """(o kept usable, seconds of one full-compute generation per sample) on `seeds`, from the same interleaved
    rounds. The profiler records both: o sizes the search's step counts, the seconds are its clock
    (schedc.search_time.WorkClock), so the same profile gives the same schedule at any load."""
    speedups, full = time_interleaved(adapter, {"full": None}, adapter.make_inputs(seeds), repeats, sampler)
    return usable_nonblock(1.0 / speedups["skip"]), full / len(seeds)


def sampler_of(schedule: Schedule) -> SamplerConfig:
    """The sampling settings recorded in a schedule."""
    try:
        sampler = SamplerConfig(**schedule.sampling)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"schedule has missing or invalid sampling settings: {exc}") from None
    if sampler.steps != schedule.num_steps:
        raise ScheduleError(f"schedule has {schedule.num_steps} steps but its sampling settings say {sampler.steps}")
    return sampler


@contextmanager
def replaying(adapter: ModelAdapter, schedule: Schedule | None) -> Iterator["ScheduleHandle | None"]:
    """Attach `schedule` (None = the bare model) for the duration of the block."""
    if schedule is None:
        yield None
        return
    try:
        handle = apply_schedule(adapter.model, schedule)
    except ScheduleFormatError as exc:
        raise ScheduleError(str(exc)) from None
    try:
        yield handle
    except ScheduleFormatError as exc:
        raise ScheduleError(str(exc)) from None
    finally:
        handle.remove()


@contextmanager
def blocks_skipped(adapter: ModelAdapter, replay: dict | None = None) -> Iterator[None]:
    """No block work: what a generation costs without its blocks (the non-block share).

    A block whose output is a residual of its input returns its input. An output-only block (UNet
    down/up blocks change shape) cannot: it replays what it returned at the same call of an earlier
    generation kept in `replay` (its first skipped generation computes and records it once).
    """
    blocks = adapter.blocks()
    replay = {} if replay is None else replay
    calls = [0] * len(blocks)

    def replayed(b: int):
        def call(inner, args, kwargs):
            key = (b, calls[b])
            calls[b] += 1
            if key not in replay:
                replay[key] = inner(*args, **kwargs)
            return replay[key]
        return CallHook(call)

    skips = []
    for b, block in enumerate(blocks):
        io = BlockIO(block.forward, adapter.outputs_of(b))
        skips.append(CallHook(lambda inner, args, kwargs, _io=io: _io.identity(
            args, kwargs, _io.outputs is not None and len(_io.outputs) > 1)) if io.residual_ok else replayed(b))
    handles = [add_hook(block, skip, "schedc.skip") for block, skip in zip(blocks, skips)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def time_interleaved(
    adapter: ModelAdapter, variants: dict[str, Schedule | None], inputs: GenerationInputs, repeats: int,
    full_sampler: SamplerConfig,
) -> tuple[dict[str, float], float]:
    """Speedup of each variant vs "full" and the median full seconds. "skip" = no block work.

    Every round times each variant once (order rotating); the speedup is the median over rounds of
    full time / variant time within the same round, so slow drifts of a noisy machine cancel.
    """
    times = interleaved_times(adapter, variants, inputs, repeats, full_sampler, skip=True)
    speedups = {n: statistics.median(f / v for f, v in zip(times["full"], times[n])) for n in times}
    return speedups, statistics.median(times["full"])


def interleaved_times(
    adapter: ModelAdapter, variants: dict[str, Schedule | None], inputs: GenerationInputs, repeats: int,
    full_sampler: SamplerConfig, skip: bool = False,
) -> dict[str, list[float]]:
    """Seconds of each variant in each round (one warm-up first; `skip` adds the no-block run). A variant whose
    warm-up took less than schedc.timing.MIN_MEASURE_SECONDS runs back to back enough times per round to fill it.

    Raw per-round times, so callers can take ratios between any two variants within a round.
    """
    names = list(variants) + (["skip"] if skip else [])
    device = device_of(adapter.model)  # an accelerator is synchronised around each timed generation
    times: dict[str, list[float]] = {n: [] for n in names}
    replay: dict = {}  # output-only blocks' outputs, recorded by the warm-up's skip run

    def run(name: str, runs: int = 1) -> float:
        """Seconds per generation over `runs` back to back (short generations jitter: schedc.timing)."""
        if name == "skip":
            with blocks_skipped(adapter, replay):
                return timed(lambda: [adapter.generate(inputs, full_sampler) for _ in range(runs)], device) / runs
        schedule = variants[name]
        sampler = sampler_of(schedule) if schedule is not None else full_sampler
        with replaying(adapter, schedule):
            return timed(lambda: [adapter.generate(inputs, sampler) for _ in range(runs)], device) / runs

    runs = {name: repeats_for(run(name), timing.MIN_MEASURE_SECONDS) for name in names}  # warm-up, and its duration
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            times[name].append(run(name, runs[name]))
    return times


__all__ = ["blocks_skipped", "interleaved_times", "measure_generation", "measure_nonblock_share", "nonblock_share", "replaying", "sampler_of",
           "time_interleaved"]
