"""Spans: a contiguous run of blocks reusing one combined residual (FirstBlockCache, DBCache). No torch.

A span [a, e] at step t annotates residual reuses: blocks a..e all reuse (decision "residual") the
residuals r_i(s) of the same compute step s. Per-block residual reuse chains h_{i+1} = h_i + r_i(s),
so the run's output is in_a + sum_i r_i(s): the runtime keeps that one sum (built while a..e compute
at s), adds it once at the head a, and the members a+1..e pass their input through. Same numbers as
per-block reuse up to float rounding, with one add and one cache read instead of e - a + 1, and one
cached tensor instead of e - a + 1 where the per-block caches serve no other reuse.

In a schedule file a step lists its spans under `span`, one `a-b` range per span (comma separated,
a < b); the blocks of a span are residual reuses and are listed under no other key:

    - {step: 7, span: "1-11", int8: 0}        # block 0 computes at int8, 1..11 reuse as one span

Rules (each broken one is a one-line ScheduleFormatError): a span has >= 2 blocks; spans at a step do
not overlap; every block of a span reuses "residual" at that step and last computed at the same step
as the span's head; every block of a span has the same outputs spec and every one of its output streams
is a residual (output-only UNet blocks and "" streams cannot span).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .safeyaml import ScheduleFormatError, parse_ranges, seq, short

Span = tuple[int, int]  # (first block, last block), first < last
SpanKey = tuple[int, int, int]  # (first block, last block, compute step whose residuals it sums)
SPAN_ACTION = "residual"  # the decision every block of a span has


def span_eligible(outputs: "tuple[str, ...] | None") -> bool:
    """Whether a block with this outputs spec can be in a span: every output stream a residual."""
    return outputs is None or (len(outputs) > 0 and all(outputs))


def last_computes(decisions: Sequence[Sequence[str]], reuse: "frozenset[str] | Sequence[str]") -> list[list[int]]:
    """[T][B]: the step of block b's most recent compute before step t (-1 if none), the step a reuse at t reads."""
    blocks = len(decisions[0]) if decisions else 0
    last, out = [-1] * blocks, []
    for t, row in enumerate(decisions):
        out.append(list(last))
        for b, action in enumerate(row):
            if action not in reuse:
                last[b] = t
    return out


def parse_spans(value: Any, blocks: int, where: str) -> tuple[Span, ...]:
    """ "1-5,7-11" (or a list of such strings) -> ((1, 5), (7, 11)): each comma-separated range one span."""
    if not isinstance(value, (str, list, tuple)):
        raise ScheduleFormatError(f"{where}: expected span ranges like '1-11', got {short(value)}")
    parts = [value] if isinstance(value, str) else seq(value, where, blocks)
    spans: list[Span] = []
    for part in parts:
        if not isinstance(part, str):
            raise ScheduleFormatError(f"{where}: expected span ranges like '1-11', got {short(part)}")
        for piece in part.replace(" ", "").split(","):
            if not piece:
                continue
            indices = parse_ranges(piece, blocks, where)
            if len(indices) < 2:
                raise ScheduleFormatError(f"{where}: span {piece!r} has one block (a span is 'a-b' with a < b)")
            spans.append((indices[0], indices[-1]))
    if not spans:
        raise ScheduleFormatError(f"{where}: empty span list")
    return tuple(spans)


def format_spans(spans: Sequence[Span]) -> str:
    return ",".join(f"{a}-{e}" for a, e in spans)


def check_spans(
    spans: Any, decisions: Sequence[Sequence[str]], outputs: Sequence["tuple[str, ...] | None"],
    reuse: "frozenset[str] | Sequence[str]",
) -> tuple[tuple[Span, ...], ...]:
    """Validate and normalise spans: () when there are none, else one sorted tuple of spans per step."""
    steps, blocks = len(decisions), len(decisions[0]) if decisions else 0
    rows = seq(spans, "spans", steps)
    if not rows:
        return ()
    if len(rows) != steps:
        raise ScheduleFormatError(f"spans has {len(rows)} steps, the schedule {steps}")
    last = last_computes(decisions, reuse)
    spec = (lambda b: outputs[b]) if outputs else (lambda b: None)
    out: list[tuple[Span, ...]] = []
    for t, row in enumerate(rows):
        pairs = []
        for i, pair in enumerate(seq(row, f"spans[{t}]", blocks)):
            pair = seq(pair, f"spans[{t}][{i}]", 2)
            if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair):
                raise ScheduleFormatError(f"step {t}: a span is (first, last) block indices, got {short(pair)}")
            pairs.append((pair[0], pair[1]))
        pairs.sort()
        end = -1
        for a, e in pairs:
            where = f"step {t}, span {a}-{e}"
            if not 0 <= a < e < blocks:
                raise ScheduleFormatError(f"{where}: a span needs first < last within 0..{blocks - 1}")
            if a <= end:
                raise ScheduleFormatError(f"{where}: overlaps another span at this step")
            end = e
            for b in range(a, e + 1):
                if decisions[t][b] != SPAN_ACTION:
                    raise ScheduleFormatError(f"{where}: block {b} is '{decisions[t][b]}', every block of a span reuses '{SPAN_ACTION}'")
                if not span_eligible(spec(b)) or spec(b) != spec(a):
                    raise ScheduleFormatError(f"{where}: block {b}'s outputs are not residuals like block {a}'s, so it cannot span")
                if last[t][b] != last[t][a]:
                    raise ScheduleFormatError(
                        f"{where}: blocks {a} and {b} reuse residuals of different computes (steps {last[t][a]} and "
                        f"{last[t][b]}); a span reuses one compute step's residuals"
                    )
        out.append(tuple(pairs))
    return tuple(out) if any(out) else ()


@dataclass(frozen=True)
class SpanPlan:
    """What the runtime does for spans, worked out once from the schedule.

    heads[t]: head block -> its span key; members[t]: blocks passing their input through;
    builds[s]: block -> span keys its compute at s adds its residual to; last_read: key -> last step read.
    """

    heads: tuple[Mapping[int, SpanKey], ...]
    members: tuple[frozenset[int], ...]
    builds: tuple[Mapping[int, tuple[SpanKey, ...]], ...]
    last_read: Mapping[SpanKey, int]

    def live_at(self, t: int) -> int:
        """Span caches alive at the end of step t (built at s <= t, read again after t; the runtime frees
        one at its last read), the boundary at which per-block caches are counted too."""
        return sum(1 for (_, _, s), last in self.last_read.items() if s <= t < last)


def plan_spans(spans: Sequence[Sequence[Span]], decisions: Sequence[Sequence[str]],
               reuse: "frozenset[str] | Sequence[str]") -> SpanPlan:
    steps = len(decisions)
    heads: list[dict[int, SpanKey]] = [{} for _ in range(steps)]
    members: list[set[int]] = [set() for _ in range(steps)]
    builds: list[dict[int, list[SpanKey]]] = [{} for _ in range(steps)]
    last_read: dict[SpanKey, int] = {}
    if spans:
        last = last_computes(decisions, reuse)
        for t, row in enumerate(spans):
            for a, e in row:
                key = (a, e, last[t][a])
                heads[t][a] = key
                members[t].update(range(a + 1, e + 1))
                if key not in last_read:
                    for b in range(a, e + 1):
                        builds[key[2]].setdefault(b, []).append(key)
                last_read[key] = t
    return SpanPlan(
        heads=tuple(heads),
        members=tuple(frozenset(m) for m in members),
        builds=tuple({b: tuple(keys) for b, keys in row.items()} for row in builds),
        last_read=last_read,
    )


__all__ = ["SPAN_ACTION", "Span", "SpanKey", "SpanPlan", "check_spans", "format_spans", "last_computes",
           "parse_spans", "plan_spans", "span_eligible"]
