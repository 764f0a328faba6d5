"""Replay a compiled schedule inside an unchanged model. Imports only torch (and the format module).

How it works (through the hook core, hookcore.py): a hook on the model's call reads the timestep
argument of each denoiser call and maps it to the schedule's step index; a hook on each block looks
up the decision for (step, block) and either runs the block or reuses its cache. Removing the hooks
restores the model exactly.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .blockio import BlockIO, tensors_in
from .format import Schedule, ScheduleFormatError, is_reuse, load_schedule, model_fingerprint
from .hookcore import HookHandle, ModelHook, add_hook, has_foreign_forward, hooks_of
from .modes import REUSE_MODES
from .quant import block_bytes, block_kernels, quantize_block


@dataclass
class _StepState:
    step: int = -1
    calls: int = 0  # denoiser calls in this generation (fallback step source)
    call_in_step: int = 0  # 0 for the first call at a step, 1 for the second (two-call CFG), ...
    batch_shape: tuple[int, ...] | None = None


@dataclass
class _BlockCache:
    """What one block left behind at its recent computes (only the kinds its reuse modes read).

    Streams follow the block's outputs spec (blockio.py): one per output tensor. A residual stream
    holds output - input; a stream that is not a residual of any input holds the output itself.
    `deltas`/`steps` keep the last `history` computes, most recent first (a forecast reads several).
    """

    step: int
    like_tuple: bool = False  # the block returned a tuple (rebuild one)
    deltas: list = field(default_factory=list)  # per compute (most recent first): per stream delta or output
    steps: list = field(default_factory=list)  # the compute step of each deltas entry
    is_delta: list | None = None  # per stream: whether deltas[k][i] is a residual (else replayed as is)
    output: Any = None  # the whole output at `step` (output reuse)

    def nbytes(self) -> int:
        tensors = tensors_in([*self.deltas, self.output])
        return sum(t.numel() * t.element_size() for t in tensors)


class ScheduleHandle:
    """What `apply_schedule` returns: `remove()` restores the model; `reset()` starts a new generation."""

    def __init__(
        self, model: nn.Module, schedule: Schedule, timestep_position: int, step_source: str
    ) -> None:
        self.model = model
        self.schedule = schedule
        self.timestep_position = timestep_position
        self.step_source = step_source
        self.blocks = [model.get_submodule(name) for name in schedule.model.blocks]
        self._decisions = schedule.decisions
        self._cache_needed = schedule.cache_needed()
        self._history = [schedule.history_of(b) for b in range(len(self.blocks))]  # residuals kept per block
        self._keeps_output = [any(REUSE_MODES[m].reads == "output" for m in schedule.reuse_modes_of(b))
                              for b in range(len(self.blocks))]
        # quantized copies are built before any forward is shadowed (a deepcopy would copy the shadow)
        self.quantized: dict[tuple[int, str], nn.Module] = {
            (b, p): quantize_block(self.blocks[b], p) for b, p in sorted(schedule.precisions_used())
        }
        self.quantized_bytes = sum(block_bytes(m) for m in self.quantized.values())
        self.kernels = {p: sorted(set().union(*(block_kernels(m) for (b, q), m in self.quantized.items() if q == p)))
                        for p in sorted({p for _, p in self.quantized})}
        self._timestep_index = {round(float(t), 4): i for i, t in enumerate(schedule.model.timesteps)}
        self._state = _StepState()
        self._cache: dict[tuple[str | None, int], _BlockCache] = {}
        # CFG branch of the current call: set by diffusers' `model.cache_context(name)` (shimmed below)
        # or by hand; None = the call's position within its step (two calls per step = two branches)
        self.branch: str | None = None
        self.block_calls = [0] * len(self.blocks)  # real block computations, for tests and reports
        self._cache_bytes = 0
        self.peak_cache_bytes = 0  # the most cache memory held at once, for reports
        for index, block in enumerate(self.blocks):
            if has_foreign_forward(block) or _REPLAY in hooks_of(block):
                raise ScheduleFormatError(f"block {schedule.model.blocks[index]} already has a patched forward")
        self._io = [BlockIO(block.forward, schedule.outputs_of(i)) for i, block in enumerate(self.blocks)]
        self._hooks: list[HookHandle] = [add_hook(model, _StepTracker(self), _REPLAY_STEP)]
        self._hooks += [add_hook(block, _BlockReplay(self, index), _REPLAY) for index, block in enumerate(self.blocks)]
        self._shimmed_context = self._shim_cache_context(model)
        self._removed = False

    def _shim_cache_context(self, model: nn.Module) -> bool:
        """Follow diffusers' `cache_context("cond"/"uncond")` so two-call CFG keeps one cache per branch.

        Shadows the model's `cache_context` with one that records the name, then enters the original
        (so diffusers' own hooks still see it). Duck-typed: nothing from diffusers is imported.
        """
        original = getattr(model, "cache_context", None)
        if original is None or "cache_context" in vars(model):
            return False

        @contextlib.contextmanager
        def cache_context(name: str, *args: Any, **kwargs: Any):
            previous, self.branch = self.branch, name
            try:
                with original(name, *args, **kwargs):
                    yield
            finally:
                self.branch = previous

        model.cache_context = cache_context
        return True

    # -- lifecycle --------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop every cache: the next call starts a new generation."""
        self._cache.clear()
        self._cache_bytes = 0
        self._state = _StepState()

    def remove(self) -> None:
        if self._removed:
            return
        for hook in reversed(self._hooks):
            hook.remove()  # the last hook off a module restores its forward
        if self._shimmed_context:
            del self.model.cache_context
        self.reset()
        self._removed = True

    def __enter__(self) -> "ScheduleHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def step(self) -> int:
        return self._state.step

    def cache_bytes(self) -> int:
        """Bytes held by caches right now."""
        return self._cache_bytes

    def _store(self, key: tuple, value: _BlockCache | None) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= old.nbytes()
        if value is not None:
            self._cache[key] = value
            self._cache_bytes += value.nbytes()
            self.peak_cache_bytes = max(self.peak_cache_bytes, self._cache_bytes)

    # -- step tracking ----------------------------------------------------------------------
    def _timestep_arg(self, args: tuple, kwargs: Mapping[str, Any]) -> Any:
        name = self.schedule.model.timestep_arg
        if name in kwargs:
            return kwargs[name]
        if len(args) > self.timestep_position:
            return args[self.timestep_position]
        return None

    def _on_model_call(self, args: tuple, kwargs: Mapping[str, Any]) -> None:
        state = self._state
        x = args[0] if args and isinstance(args[0], torch.Tensor) else next(
            (kwargs[k] for k in ("hidden_states", "sample", "x") if isinstance(kwargs.get(k), torch.Tensor)), None)
        shape = tuple(x.shape) if x is not None else None
        step = self._resolve_step(args, kwargs)
        new_generation = step < state.step or (shape != state.batch_shape and state.batch_shape is not None)
        if new_generation:
            self.reset()
            state = self._state
            if self.step_source == "counter":
                step = 0
        state.call_in_step = state.call_in_step + 1 if step == state.step else 0
        state.step = step
        state.calls += 1
        state.batch_shape = shape

    def _resolve_step(self, args: tuple, kwargs: Mapping[str, Any]) -> int:
        steps = self.schedule.num_steps
        if self.step_source == "counter":
            return self._state.calls % steps
        t = self._timestep_arg(args, kwargs)
        if t is None:
            raise ScheduleFormatError(
                f"the model call has no '{self.schedule.model.timestep_arg}' argument; "
                "use apply_schedule(..., step_source='counter')"
            )
        value = float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t)
        index = self._timestep_index.get(round(value, 4))
        if index is None:
            raise ScheduleFormatError(
                f"timestep {value:g} is not one of the schedule's {steps} timesteps: "
                "it was compiled for a different sampler or step count"
            )
        return index

    # -- the block call ------------------------------------------------------------------------
    def _block_call(self, index: int, original: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        step = self._state.step
        if step < 0:  # called outside a denoiser call (e.g. by a test): run as usual
            return original(*args, **kwargs)
        action = self._decisions[step][index]
        key = (self.branch if self.branch is not None else self._state.call_in_step, index)
        if is_reuse(action):
            return self._reuse(key, action, args, kwargs, step)
        run = original if action == "native" else self.quantized[(index, action)]
        out = run(*args, **kwargs)
        self.block_calls[index] += 1
        if self._cache_needed[step][index]:
            self._store(key, self._remember(index, self._cache.get(key), step, args, kwargs, out))
        elif key in self._cache:
            self._store(key, None)  # no later reuse reads it: free it now
        return out

    def _remember(self, index: int, old: _BlockCache | None, step: int, args: tuple, kwargs: Mapping[str, Any],
                  out: Any) -> _BlockCache:
        keep, io = self._history[index], self._io[index]
        entry = _BlockCache(step=step, like_tuple=isinstance(out, tuple))
        if keep:
            caches = io.caches(args, kwargs, out)  # per stream: what the block added, or its output
            entry.is_delta = [residual for residual, _ in caches]
            entry.deltas = [[tensor for _, tensor in caches]]
            entry.steps = [step]
            if keep > 1 and old is not None:  # a forecast also reads the computes before this one
                entry.deltas += old.deltas[: keep - 1]
                entry.steps += old.steps[: keep - 1]
        if self._keeps_output[index]:
            entry.output = out
        return entry

    def _reuse(self, key: tuple, action: str, args: tuple, kwargs: Mapping[str, Any], step: int) -> Any:
        cached = self._cache.get(key)
        mode = REUSE_MODES[action]
        io = self._io[key[1]]
        ins = io.stream_inputs(args, kwargs)
        batch = next((x.shape[0] for x in ins if x is not None), None)
        reads_output = mode.reads == "output"
        held = (tensors_in(cached.output if reads_output else cached.deltas[:1])) if cached is not None else []
        if not held or (batch is not None and held[0].shape[0] != batch):
            raise ScheduleFormatError(
                f"step {step}: block {self.schedule.model.blocks[key[1]]} has no cache to reuse "
                "(the generation did not start at step 0, or the batch changed mid-generation)"
            )
        if reads_output:
            return cached.output  # DeepCache: the cached output itself
        depth = min(mode.history, len(cached.deltas))  # a forecast right after step 0 has one point
        steps = cached.steps[:depth]
        streams = []
        for i, (x, r) in enumerate(zip(ins, cached.is_delta)):
            d = cached.deltas[0][i]
            if not r:
                streams.append(d)  # not a residual: replay the cached output stream
                continue
            if x is None or x.shape != d.shape:
                raise ScheduleFormatError(
                    f"step {step}: block {self.schedule.model.blocks[key[1]]} input changed shape since its cache"
                )
            streams.append(mode.rebuild_residual(x, [c[i] for c in cached.deltas[:depth]], steps, step))
        return io.rebuild(streams, cached.like_tuple)


_REPLAY = "schedc.replay"  # hook names: one replay per block and per model
_REPLAY_STEP = "schedc.replay.step"


class _StepTracker(ModelHook):
    """On the denoiser's call: which step (and which call within it) the blocks are running at."""

    def __init__(self, handle: ScheduleHandle) -> None:
        self.handle = handle

    def pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.handle._on_model_call(args, kwargs)


class _BlockReplay(ModelHook):
    """On one block: compute (natively or quantized) or rebuild the output from the cache."""

    def __init__(self, handle: ScheduleHandle, index: int) -> None:
        self.handle, self.index = handle, index

    def new_forward(self, module: nn.Module, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return self.handle._block_call(self.index, inner, args, kwargs)


def apply_schedule(
    model: nn.Module,
    schedule: "str | os.PathLike | Mapping | Schedule",
    *,
    check_fingerprint: bool = True,
    timestep_position: int = 1,
    step_source: str = "timestep",
) -> ScheduleHandle:
    """Replay `schedule` inside `model` until `handle.remove()`.

    model: the denoiser (the module the pipeline calls once per step, e.g. `pipe.transformer`).
    step_source: "timestep" maps the call's timestep to the step; "counter" counts calls instead.
    """
    sched = load_schedule(schedule)
    if step_source not in ("timestep", "counter"):
        raise ScheduleFormatError(f"step_source must be 'timestep' or 'counter', got {step_source!r}")
    check_model(model, sched, check_fingerprint)
    return ScheduleHandle(model, sched, timestep_position, step_source)


def check_model(model: nn.Module, schedule: Schedule, check_fingerprint: bool = True) -> None:
    """Raise ScheduleFormatError unless `schedule` was compiled for `model` (blocks and fingerprint)."""
    for name in schedule.model.blocks:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise ScheduleFormatError(
                f"the model has no block {name!r}: this schedule is for {schedule.model.name}"
            ) from None
    if check_fingerprint:
        found = model_fingerprint(model, schedule.model.blocks)
        if found != schedule.model.fingerprint:
            raise ScheduleFormatError(
                f"schedule is for model {schedule.model.name} ({schedule.model.fingerprint}), "
                f"not this model ({found})"
            )
