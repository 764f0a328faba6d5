"""Span fusion: turn runs of per-block residual reuses into spans (one combined residual per run).

A span (runtime/spans.py) replays exactly what the per-block reuses it replaces would (up to float
rounding), so fusing changes no decision, cost or predicted error; it saves the reuse adds after the
run's head and the per-block caches only the span read. That is why it is a compile pass every solver
gets (on by default) rather than a separate decision the error model must price. Solvers that build
structured schedules call `fuse_spans` on their decisions directly: FirstBlockCache is "block 0
computes every step, blocks 1..B-1 compute on refresh steps", which fuses into one span 1..B-1 per
reuse step.

Imports without torch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from schedc_runtime import Schedule
from schedc_runtime.format import REUSE_MODES
from schedc_runtime.spans import SPAN_ACTION, Span, last_computes, span_eligible

MIN_SPAN = 2  # a one-block "span" saves nothing


def fuse_spans(
    decisions: Sequence[Sequence[str]], block_outputs: Sequence["tuple[str, ...] | None"] = (),
    min_length: int = MIN_SPAN,
) -> tuple[tuple[Span, ...], ...]:
    """decisions[t][b] -> per step, every maximal run of >= `min_length` contiguous blocks that reuse
    "residual" the residuals of one compute step (with the same, all-residual outputs spec); () if none.

    block_outputs: per block outputs spec as in the schedule's `model.block_outputs` (() = every block
    one tensor, a residual of its input).
    """
    if min_length < 2:
        raise ValueError(f"a span has at least 2 blocks, got min_length={min_length}")
    if not decisions:
        return ()
    last = last_computes(decisions, REUSE_MODES)
    spec = (lambda b: block_outputs[b]) if block_outputs else (lambda b: None)
    out: list[tuple[Span, ...]] = []
    for t, row in enumerate(decisions):
        runs: list[Span] = []
        start = None
        for b in range(len(row) + 1):
            joins = (b < len(row) and row[b] == SPAN_ACTION and span_eligible(spec(b)) and last[t][b] >= 0
                     and (start is None or (last[t][b] == last[t][start] and spec(b) == spec(start))))
            if joins and start is None:
                start = b
            elif not joins:
                if start is not None and b - start >= min_length:
                    runs.append((start, b - 1))
                # this block may begin the next run
                start = b if (b < len(row) and row[b] == SPAN_ACTION and span_eligible(spec(b))
                              and last[t][b] >= 0) else None
        out.append(tuple(runs))
    return tuple(out) if any(out) else ()


def with_spans(schedule: Schedule, min_length: int = MIN_SPAN) -> Schedule:
    """`schedule` with every eligible run fused into a span (its decisions unchanged), never more cache.

    A span's sum is one more tensor; it frees the per-block caches of its blocks only where no reuse
    outside a span reads them. When fusing everything would raise the peak cache (reference DiT, DP at
    0.4), spans that free no per-block cache are dropped, and if that is not enough, all of them.
    """
    fused = replace(schedule, spans=fuse_spans(schedule.decisions, schedule.model.block_outputs, min_length))
    limit = schedule.peak_cache_tensors()
    if not fused.spans or fused.peak_cache_tensors() <= limit:
        return fused
    needed, last = fused.cache_needed(), last_computes(fused.decisions, REUSE_MODES)
    frees = [tuple((a, e) for a, e in row if not all(needed[last[t][a]][b] for b in range(a, e + 1)))
             for t, row in enumerate(fused.spans)]
    lean = replace(schedule, spans=tuple(frees) if any(frees) else ())
    return lean if lean.peak_cache_tensors() <= limit else schedule


def without_spans(schedule: Schedule) -> Schedule:
    return replace(schedule, spans=())


def span_stats(schedule: Schedule) -> dict[str, int]:
    """spans: span reuses in the schedule; fused_reuses: block reuses they cover; adds_saved: reuse adds
    (and cache reads) the spans save over per-block reuse."""
    spans = [s for row in schedule.spans for s in row]
    covered = sum(e - a + 1 for a, e in spans)
    return {"spans": len(spans), "fused_reuses": covered, "adds_saved": covered - len(spans)}


__all__ = ["MIN_SPAN", "fuse_spans", "span_stats", "with_spans", "without_spans"]
