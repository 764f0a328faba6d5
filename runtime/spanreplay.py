"""Replaying spans (spans.py): build each combined residual at its compute step, add it once. Torch only.

At the compute step s of a span key (a, e, s), block a starts the sum with its residual (out - in, per
output stream) and blocks a+1..e add theirs, each checked to take the previous block's output as its
input (the chain the combined residual assumes; a model that changes hidden states between two blocks
is refused with a ScheduleFormatError rather than replayed wrong). At a span step the head returns
in + sum and the members return their input. The sum lives in the handle's cache under the call's
branch key, so the generation tracker drops it with every other cache (new generation, CFG branch,
exception); it is freed right after its last read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import torch

from .blockio import BlockIO
from .format import Schedule, ScheduleFormatError
from .modes import REUSE_MODES
from .spans import plan_spans


class CacheOwner(Protocol):
    """What span replay needs of the handle that owns the caches (hooks.ScheduleHandle), named here so
    this module does not import the handle's."""

    _cache: dict
    _cache_needed: Any

    def _store(self, key: tuple, value: Any) -> None: ...


@dataclass
class SpanCache:
    """One combined residual: per output stream, the sum of blocks first..upto's residuals at `step`."""

    step: int
    upto: int  # the last block added so far (complete when it is the span's last block)
    like_tuple: bool
    sums: list = field(default_factory=list)  # per stream
    outs: list | None = None  # while building: block `upto`'s stream outputs (the next block's inputs)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.sums if t is not None)


def _same(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
    return x is y or (x is not None and y is not None and x.shape == y.shape and torch.equal(x, y))


class SpanReplay:
    """The span part of one schedule handle: which calls it serves and how."""

    def __init__(self, schedule: Schedule, ios: list[BlockIO]) -> None:
        self.plan = plan_spans(schedule.spans, schedule.decisions, REUSE_MODES)
        self.names = schedule.model.blocks
        self.ios = ios
        # per block: whether it returns a tuple (seen at its computes; a member returns its input alike)
        self._tuple = [io.outputs is not None and len(io.outputs) > 1 for io in ios]

    def serves(self, step: int, index: int) -> bool:
        """Whether the reuse at (step, index) runs through a span."""
        return index in self.plan.heads[step] or index in self.plan.members[step]

    def reuse(self, handle: CacheOwner, branch: Any, index: int, step: int, args: tuple,
              kwargs: Mapping[str, Any]) -> Any:
        io = self.ios[index]
        key = self.plan.heads[step].get(index)
        if key is None:  # a member: the head already added the whole run's residual
            return io.identity(args, kwargs, self._tuple[index])
        cached = handle._cache.get((branch, key))
        ins = io.stream_inputs(args, kwargs)
        if cached is None or cached.step != key[2] or cached.upto != key[1] or any(
            s is not None and (x is None or x.shape != s.shape) for x, s in zip(ins, cached.sums)
        ):
            raise ScheduleFormatError(
                f"step {step}: span {self.names[key[0]]}..{self.names[key[1]]} has no combined residual from step "
                f"{key[2]} (the generation did not start at step 0, or the batch changed mid-generation)"
            )
        # a stream the span's blocks returned as None (SD3's last block drops the text stream) stays None
        out = io.rebuild([None if s is None else x + s for x, s in zip(ins, cached.sums)], cached.like_tuple)
        if self.plan.last_read[key] == step:
            handle._store((branch, key), None)  # no later step reads it
        return out

    def build(self, handle: CacheOwner, branch: Any, index: int, step: int, args: tuple,
              kwargs: Mapping[str, Any], out: Any) -> None:
        """After block `index` computed at `step`: add its residual to every span sum it belongs to."""
        keys = self.plan.builds[step].get(index)
        if not keys:
            return
        io = self.ios[index]
        self._tuple[index] = isinstance(out, tuple)
        ins, outs = io.stream_inputs(args, kwargs), io.stream_outputs(out)
        if any(o is not None and (x is None or x.shape != o.shape) for x, o in zip(ins, outs)):
            raise ScheduleFormatError(
                f"block {self.names[index]} returned an output that is not a residual of its input, so it cannot span"
            )
        deltas = [None if o is None else o - x for x, o in zip(ins, outs)]  # None: the block ends that stream
        for key in keys:
            if index == key[0]:
                for b in range(key[0] + 1, key[1] + 1):  # they compute later this step: their old caches are
                    if not handle._cache_needed[step][b]:  # read by nothing, free them before the sum appears
                        handle._store((branch, b), None)
                sums = deltas if len(keys) == 1 else [None if d is None else d.clone() for d in deltas]
                entry = SpanCache(step=step, upto=index, like_tuple=isinstance(out, tuple), sums=sums, outs=outs)
                handle._store((branch, key), entry)
                continue
            entry = handle._cache.get((branch, key))
            if entry is None or entry.step != step or entry.upto != index - 1:
                handle._store((branch, key), None)  # incomplete (a generation started mid-step): reuse refuses
                continue
            if not all(_same(x, o) for x, o in zip(ins, entry.outs)):
                raise ScheduleFormatError(
                    f"blocks {self.names[index - 1]} and {self.names[index]} do not chain (the model changes the "
                    f"hidden states between them), so they cannot reuse as one span: recompile without spans"
                )
            if any(s is None and d is not None for s, d in zip(entry.sums, deltas)):
                raise ScheduleFormatError(f"block {self.names[index]} continues a stream an earlier block of its span "
                                          "ended, so they cannot reuse as one span: recompile without spans")
            entry.sums = [None if d is None else s.add_(d) for s, d in zip(entry.sums, deltas)]
            entry.upto, entry.outs = index, (outs if index < key[1] else None)


__all__ = ["SpanCache", "SpanReplay"]
