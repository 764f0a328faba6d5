"""Which generation, step and CFG branch each denoiser call belongs to. Standard library only.

A schedule handle keeps caches for one generation at a time, one set per CFG branch. Caches must never
carry over from one sample, branch or generation to another, whatever happened to the last generation
(an exception in a step callback, in a block, Ctrl-C). The hook on the denoiser's call asks this
tracker where each call belongs, before any block runs.

Branch key of a call: the name set by diffusers' `model.cache_context(name)` (or `handle.branch`) when
there is one, else the call's position among the unnamed calls of its step (0, 1, ...). The schedule's
`model.cfg` says how many positions a step has: "batched" and "none" make one denoiser call per step,
"two-call" one per CFG branch (two). Names are authoritative: two differently named calls at one step
are two branches whatever the schedule's cfg says.

A call STARTS A NEW GENERATION (every cache is dropped first) when any of:
  1. it is the first call since the handle was made or `reset()`;
  2. the last generation was aborted: an exception propagated out of a denoiser call or a block;
  3. its step is before the current step (the step does not move forward);
  4. its step is the current step and its branch was already served at that step (the same name
     again, or one unnamed call more than the cfg's calls per step);
  5. its latent's shape differs from the generation's (another batch size or resolution).
With step_source="counter" the step is not read from the call: a call whose branch was already served
moves to the next step, and the step after the last one starts a new generation.

A call that does not start a new generation must come from the thread that started the current one,
and only one denoiser call may be in flight on a handle: otherwise `ConcurrentUseError`, raised before
the call touches any cache (the generation in progress is left as it was).

What stays ambiguous: with unnamed two-call CFG (positional keys), a generation stopped *between* the
two branch calls of a step without an exception passing through the denoiser (e.g. raised by the
pipeline's own code between them), followed by a generation starting at that same step, is
indistinguishable from the missing branch call: the new generation's first call is taken as the old
step's second branch. Exceptions from step callbacks (between steps) and from inside the denoiser are
never ambiguous, nor are named branches. Call `handle.reset()` before the next generation when a
pipeline may have been stopped that way.
"""

from __future__ import annotations

from typing import Any, Hashable


class ConcurrentUseError(RuntimeError):
    """A schedule handle was used from two threads at once (or re-entered). The message is one line.

    Raised in the offending call before it touches any cache: the other thread's generation goes on.
    One handle replays one generation at a time; give each thread its own model copy and handle.
    """


class GenerationTracker:
    """The current generation's position: step, branches served at it, owner thread, aborted flag."""

    __slots__ = ("num_steps", "calls_per_step", "counter", "generations", "step", "served", "unnamed", "shape",
                 "owner", "key", "aborted")

    def __init__(self, num_steps: int, cfg: str, counter: bool) -> None:
        self.num_steps = num_steps
        self.calls_per_step = 2 if cfg == "two-call" else 1
        self.counter = counter
        self.generations = 0  # generations started so far (for tests and reports)
        self.clear()

    def clear(self) -> None:
        """Forget the generation: the next call starts a new one."""
        self.step = -1
        self.served: set[Hashable] = set()  # branch keys served at `step`
        self.unnamed = 0  # unnamed calls at `step` (the next one's position)
        self.shape: Any = None
        self.owner: int | None = None  # thread that started the generation
        self.key: Hashable = None  # branch key of the call in progress (or the last one)
        self.aborted = False

    def _served(self, name: Hashable) -> bool:
        return name in self.served if name is not None else self.unnamed >= self.calls_per_step

    def admit(self, step: int | None, name: Hashable, shape: Any, thread: int) -> bool:
        """Place one denoiser call (step None: step_source="counter"). True when it starts a new
        generation: the caller drops every cache. Raises ConcurrentUseError without changing anything."""
        new = self.step < 0 or self.aborted or (self.shape is not None and shape != self.shape)
        if step is None:  # counter: the step moves on when the branch was already served at this one
            step = 0 if new else self.step + self._served(name)
            if step >= self.num_steps:
                new, step = True, 0
        elif not new:
            new = step < self.step or (step == self.step and self._served(name))
        if new:
            self.clear()
            self.owner = thread
            self.generations += 1
        elif thread != self.owner:
            raise ConcurrentUseError(
                "this schedule handle's generation is being run by another thread: "
                "use one handle (and model copy) per thread, or finish that generation first"
            )
        if step != self.step:
            self.step, self.unnamed = step, 0
            self.served.clear()
        key = name
        if name is None:
            key, self.unnamed = self.unnamed, self.unnamed + 1
        self.served.add(key)
        self.key, self.shape = key, shape
        return new
