"""Replay a compiled schedule inside an unchanged model. Imports only torch (and the format module).

How it works: a forward pre-hook on the model reads the timestep argument of each denoiser call and
maps it to the schedule's step index; each block's `forward` is shadowed by an instance attribute
that looks up the decision for (step, block) and either runs the block or reuses its cache. Deleting
the instance attributes and the pre-hook restores the model exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .format import Schedule, ScheduleFormatError, is_reuse, load_schedule, model_fingerprint
from .quant import block_bytes, block_kernels, quantize_block


@dataclass
class _StepState:
    step: int = -1
    calls: int = 0  # denoiser calls in this generation (fallback step source)
    batch_shape: tuple[int, ...] | None = None


@dataclass
class _BlockCache:
    """What one block left behind at its last computes (only the kinds its reuse modes read)."""

    step: int
    delta: torch.Tensor | None = None  # output - input at `step` (residual, forecast)
    output: torch.Tensor | None = None  # output at `step` (output reuse)
    slope: torch.Tensor | None = None  # (delta - delta before) / steps between the last two computes (forecast)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.delta, self.output, self.slope) if t is not None)


def _hidden_states(args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor:
    """The block's main input: first positional tensor, or `hidden_states`/`x` keyword."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "x"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    raise ScheduleFormatError("cannot find the block's hidden-states input (first tensor argument)")


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
        self._modes = [schedule.reuse_modes_of(b) for b in range(len(self.blocks))]
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
        self.branch: str | None = None  # CFG branch for two-call guidance; None = batched/unguided
        self.block_calls = [0] * len(self.blocks)  # real block computations, for tests and reports
        self._cache_bytes = 0
        self.peak_cache_bytes = 0  # the most cache memory held at once, for reports
        self._pre_hook = model.register_forward_pre_hook(self._on_model_call, with_kwargs=True)
        for index, block in enumerate(self.blocks):
            if "forward" in vars(block):
                self._pre_hook.remove()
                raise ScheduleFormatError(f"block {schedule.model.blocks[index]} already has a patched forward")
        for index, block in enumerate(self.blocks):
            block.forward = self._make_forward(index, block.forward)
        self._removed = False

    # -- lifecycle --------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop every cache: the next call starts a new generation."""
        self._cache.clear()
        self._cache_bytes = 0
        self._state = _StepState()

    def remove(self) -> None:
        if self._removed:
            return
        self._pre_hook.remove()
        for block in self.blocks:
            del block.forward  # the instance attribute shadowed the class's forward
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

    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        state = self._state
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        shape = tuple(x.shape) if x is not None else None
        step = self._resolve_step(args, kwargs)
        new_generation = step < state.step or (shape != state.batch_shape and state.batch_shape is not None)
        if new_generation:
            self.reset()
            state = self._state
            if self.step_source == "counter":
                step = 0
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

    # -- the block wrapper --------------------------------------------------------------------
    def _make_forward(self, index: int, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            step = self._state.step
            if step < 0:  # called outside a denoiser call (e.g. by a test): run as usual
                return original(*args, **kwargs)
            action = self._decisions[step][index]
            key = (self.branch, index)
            if is_reuse(action):
                return self._reuse(key, action, args, kwargs, step)
            run = original if action == "native" else self.quantized[(index, action)]
            out = run(*args, **kwargs)
            self.block_calls[index] += 1
            if self._cache_needed[step][index]:
                self._store(key, self._remember(index, self._cache.get(key), step, _hidden_states(args, kwargs), out))
            elif key in self._cache:
                self._store(key, None)  # no later reuse reads it: free it now
            return out

        return forward

    def _remember(self, index: int, old: _BlockCache | None, step: int, x: torch.Tensor, out: torch.Tensor) -> _BlockCache:
        modes = self._modes[index]
        entry = _BlockCache(step=step)
        if modes & {"residual", "forecast"}:
            entry.delta = out - x  # what the block added to its input
        if "output" in modes:
            entry.output = out
        if "forecast" in modes and old is not None and old.delta is not None:
            entry.slope = (entry.delta - old.delta) / (step - old.step)
        return entry

    def _reuse(self, key: tuple, action: str, args: tuple, kwargs: Mapping[str, Any], step: int) -> torch.Tensor:
        x = _hidden_states(args, kwargs)
        cached = self._cache.get(key)
        if cached is None or (cached.delta if cached.delta is not None else cached.output).shape != x.shape:
            raise ScheduleFormatError(
                f"step {step}: block {self.schedule.model.blocks[key[1]]} has no cache to reuse "
                "(the generation did not start at step 0, or the batch changed mid-generation)"
            )
        if action == "output":
            return cached.output  # DeepCache: the cached output itself
        if action == "forecast" and cached.slope is not None:
            # TaylorSeer, first order, on the residual: extrapolate along the last two computes
            return (x + cached.delta).add_(cached.slope, alpha=step - cached.step)
        return x + cached.delta  # residual (FORA / Delta-DiT): input + cached (output - input)


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
