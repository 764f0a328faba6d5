"""Replay a compiled schedule inside an unchanged model. Imports only torch (and the format module).

How it works (through the hook core, hookcore.py): a hook on the model's call reads the timestep
argument of each denoiser call and maps it to the schedule's step index; a hook on each block looks
up the decision for (step, block) and either runs the block or reuses its cache. Removing the hooks
restores the model exactly.

Generations: caches belong to one generation and one CFG branch. Where each denoiser call belongs, and
when a call starts a new generation (dropping every cache), is decided by generation.py: a step that
does not move forward, a branch served twice at a step, another batch shape, or an exception that
propagated out of the last denoiser call or block. A generation interrupted at any point (Ctrl-C in a
step callback, an error in a block) therefore never leaks into the next one.

Threads: one handle runs one denoiser call at a time, for one thread's generation at a time; anything
else raises `ConcurrentUseError` (generation.py) in the offending call, before it touches a cache.

Exceptions raised here: `ScheduleFormatError` (a ValueError) when the schedule does not fit the model
or the call (wrong model, unknown timestep, a reuse with no cache, applied twice); `ConcurrentUseError`
(a RuntimeError) for concurrent or re-entrant use. Anything raised by the model itself passes through.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .blockio import BlockIO, tensors_in
from .compiled import BlockCompiler, compile_options
from .format import Schedule, ScheduleFormatError, TimestepIndex, is_reuse, load_schedule, model_fingerprint
from .generation import ConcurrentUseError, GenerationTracker
from .hookcore import HookHandle, ModelHook, add_hook, has_foreign_forward, hooks_of
from .modes import REUSE_MODES
from .quant import block_bytes, block_kernels, quantize_block
from .spanreplay import SpanReplay


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
    """What `apply_schedule` returns: `remove()` restores the model; `reset()` starts a new generation.

    Generations start by themselves (see generation.py for the rules); `reset()` is needed only after a
    pipeline with unnamed two-call CFG stopped between a step's two branch calls without an exception
    passing through the denoiser. Not for concurrent use: one handle per thread and model copy.
    """

    def __init__(
        self, model: nn.Module, schedule: Schedule, timestep_position: int, step_source: str,
        compile: dict | None = None,
    ) -> None:
        self.model = model
        self.schedule = schedule
        self.timestep_position = timestep_position
        self.step_source = step_source
        self.blocks = [model.get_submodule(name) for name in schedule.model.blocks]
        self._decisions = schedule.decisions
        self._cache_needed = schedule.cache_needed()
        self._history = [schedule.history_of(b) for b in range(len(self.blocks))]  # residuals kept per block
        self._depth = _reuse_depths(schedule)
        self._keeps_output = [schedule.outputs_of_cache(b) > 0 for b in range(len(self.blocks))]
        # quantized copies are built before any forward is shadowed (a deepcopy would copy the shadow)
        self.quantized: dict[tuple[int, str], nn.Module] = {
            (b, p): quantize_block(self.blocks[b], p) for b, p in sorted(schedule.precisions_used())
        }
        self.quantized_bytes = sum(block_bytes(m) for m in self.quantized.values())
        self.kernels = {p: sorted(set().union(*(block_kernels(m) for (b, q), m in self.quantized.items() if q == p)))
                        for p in sorted({p for _, p in self.quantized})}
        self._timestep_index = TimestepIndex(schedule.model.timesteps)
        self._gen = GenerationTracker(schedule.num_steps, schedule.model.cfg, step_source == "counter")
        self._lock = threading.Lock()  # held while a denoiser call is in flight
        self._in_call = False  # blocks replay only inside a denoiser call
        self._local = threading.local()  # per thread: the CFG branch name (see `branch`)
        self._cache: dict[tuple[Any, Any], Any] = {}  # (branch, block) -> _BlockCache; (branch, span key) -> SpanCache
        self.block_calls = [0] * len(self.blocks)  # real block computations, for tests and reports
        self._cache_bytes = 0
        self.peak_cache_bytes = 0  # the most cache memory held at once, for reports
        for index, block in enumerate(self.blocks):
            if has_foreign_forward(block) or _REPLAY in hooks_of(block):
                raise ScheduleFormatError(f"block {schedule.model.blocks[index]} already has a patched forward")
        self._io = [BlockIO(block.forward, schedule.outputs_of(i)) for i, block in enumerate(self.blocks)]
        self._spans = SpanReplay(schedule, self._io) if schedule.spans else None  # spanreplay.py
        self._compiler = BlockCompiler(self.blocks, compile)  # compiled.py: blocks compiled, decisions eager
        self._compiled = [self._compiler.wants(block) for block in self.blocks]
        self._hooks: list[HookHandle] = [add_hook(model, _StepTracker(self), _REPLAY_STEP)]
        self._hooks += [add_hook(block, _BlockReplay(self, index), _REPLAY) for index, block in enumerate(self.blocks)]
        self._shimmed_context = self._shim_cache_context(model)
        self._removed = False

    @property
    def branch(self) -> str | None:
        """This thread's CFG branch name, set by diffusers' `model.cache_context(name)` (shimmed below)
        or by hand; None = the call's position within its step (two calls per step = two branches)."""
        return getattr(self._local, "branch", None)

    @branch.setter
    def branch(self, name: str | None) -> None:
        self._local.branch = name

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
        """Drop every cache: the next call starts a new generation. ConcurrentUseError during a call."""
        if not self._lock.acquire(blocking=False):
            raise ConcurrentUseError("reset() while a denoiser call is in flight on this schedule handle")
        try:
            self._clear()
        finally:
            self._lock.release()

    def _clear(self) -> None:
        self._drop_caches()
        self._gen.clear()

    def _drop_caches(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    def remove(self) -> None:
        if self._removed:
            return
        for hook in reversed(self._hooks):
            hook.remove()  # the last hook off a module restores its forward
        if self._shimmed_context:
            del self.model.cache_context
        self._compiler.restore()
        self._clear()
        self._removed = True

    def __enter__(self) -> "ScheduleHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def step(self) -> int:
        """The step of the denoiser call in progress (or of the last one); -1 before any."""
        return self._gen.step

    @property
    def generations(self) -> int:
        """How many generations this handle has started (each one began with empty caches)."""
        return self._gen.generations

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

    def _model_call(self, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """One denoiser call: place it in a generation (new one: drop every cache), then run it.

        An exception propagating out of the call marks the generation aborted: the next call starts clean.
        """
        step = None if self.step_source == "counter" else self._resolve_step(args, kwargs)  # changes nothing
        if not self._lock.acquire(blocking=False):
            raise ConcurrentUseError(
                "a denoiser call is already in flight on this schedule handle (another thread, or a "
                "re-entrant call): use one handle (and model copy) per thread"
            )
        try:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else next(
                (kwargs[k] for k in ("hidden_states", "sample", "x") if isinstance(kwargs.get(k), torch.Tensor)), None)
            new = self._gen.admit(step, self.branch, None if x is None else x.shape, threading.get_ident())
            try:  # (ConcurrentUseError above: refused before anything changed, the generation goes on)
                if new:
                    self._drop_caches()
                self._in_call = True
                return inner(*args, **kwargs)
            except BaseException:
                self._gen.aborted = True
                raise
            finally:
                self._in_call = False
        finally:
            self._lock.release()

    def _resolve_step(self, args: tuple, kwargs: Mapping[str, Any]) -> int:
        steps = self.schedule.num_steps
        t = self._timestep_arg(args, kwargs)
        if t is None:
            raise ScheduleFormatError(
                f"the model call has no '{self.schedule.model.timestep_arg}' argument; "
                "use apply_schedule(..., step_source='counter')"
            )
        value = float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t)
        index = self._timestep_index.index(value)
        if index is None:
            raise ScheduleFormatError(
                f"timestep {value:g} is not one of the schedule's {steps} timesteps: it was compiled for "
                f"{steps} steps of its sampler (run it with num_inference_steps={steps}), or compile one for your "
                "step count with `schedc solve PROFILE --steps N`"
            )
        return index

    # -- the block call ------------------------------------------------------------------------
    def _block_call(self, index: int, original: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if not self._in_call:  # called outside a denoiser call (e.g. by a test): run as usual
            return original(*args, **kwargs)
        gen = self._gen
        step = gen.step
        action = self._decisions[step][index]
        key = (gen.key, index)
        try:
            spans = self._spans
            if is_reuse(action):
                if spans is not None and spans.serves(step, index):
                    return spans.reuse(self, gen.key, index, step, args, kwargs)
                return self._reuse(key, action, args, kwargs, step)
            run = original if action == "native" else self.quantized[(index, action)]
            if self._compiled[index]:
                out = self._compiler.call((index, action, id(run)), run, args, kwargs)
            else:
                out = run(*args, **kwargs)
            self.block_calls[index] += 1
            if self._cache_needed[step][index]:
                self._store(key, self._remember(index, self._cache.get(key), step, args, kwargs, out))
            elif key in self._cache:
                self._store(key, None)  # no later reuse reads it: free it now
            if spans is not None:  # after the old per-block cache is gone (the peak stays as predicted)
                spans.build(self, gen.key, index, step, args, kwargs, out)
        except BaseException:  # even if the model swallows it, this generation's caches are suspect
            gen.aborted = True
            raise
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
                f"(the generation did not start at step 0, the batch changed mid-generation, or the pipeline "
                f"calls the denoiser more often per step than the schedule's cfg {self.schedule.model.cfg!r} does)"
            )
        if reads_output:
            return cached.output  # DeepCache: the cached output itself
        depth = min(mode.history, len(cached.deltas))  # a forecast right after step 0 has one point
        if depth < self._depth[step][key[1]]:  # an uninterrupted generation would read more computes
            raise ScheduleFormatError(
                f"step {step}: block {self.schedule.model.blocks[key[1]]} holds {depth} of the "
                f"{self._depth[step][key[1]]} computes its {action} reuse reads (the generation did not start at step 0)"
            )
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


def _reuse_depths(schedule: Schedule) -> tuple[tuple[int, ...], ...]:
    """[T][B]: how many computes a residual reuse at (t, b) reads in a generation started at step 0
    (fewer held means the generation started later: refused rather than silently extrapolated less)."""
    held = schedule.residuals_held()
    depth = [[0] * schedule.num_blocks for _ in range(schedule.num_steps)]
    for b in range(schedule.num_blocks):
        last = 0
        for t, row in enumerate(schedule.decisions):
            if not is_reuse(row[b]):
                last = held[t][b]
            elif REUSE_MODES[row[b]].reads != "output":
                depth[t][b] = min(REUSE_MODES[row[b]].history, last)
    return tuple(tuple(row) for row in depth)


_REPLAY = "schedc.replay"  # hook names: one replay per block and per model
_REPLAY_STEP = "schedc.replay.step"


class _StepTracker(ModelHook):
    """Around the denoiser's call: which generation, step and branch the blocks are running at."""

    def __init__(self, handle: ScheduleHandle) -> None:
        self.handle = handle
        self.new_forward = handle._compiler.eager_frame(self.new_forward)  # type: ignore[method-assign]

    def new_forward(self, module: nn.Module, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return self.handle._model_call(inner, args, kwargs)


class _BlockReplay(ModelHook):
    """On one block: compute (natively or quantized) or rebuild the output from the cache."""

    def __init__(self, handle: ScheduleHandle, index: int) -> None:
        self.handle, self.index = handle, index
        self.new_forward = handle._compiler.eager_frame(self.new_forward)  # type: ignore[method-assign]

    def new_forward(self, module: nn.Module, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return self.handle._block_call(self.index, inner, args, kwargs)


def apply_schedule(
    model: nn.Module,
    schedule: "str | os.PathLike | Mapping | Schedule",
    *,
    check_fingerprint: bool = True,
    timestep_position: int = 1,
    step_source: str = "timestep",
    compile: "bool | Mapping[str, Any]" = False,
) -> ScheduleHandle:
    """Replay `schedule` inside `model` until `handle.remove()`.

    model: the denoiser (the module the pipeline calls once per step, e.g. `pipe.transformer`).
    step_source: "timestep" maps the call's timestep to the step; "counter" counts calls instead (one per
        step, two with two-call CFG; see generation.py). "counter" never reads a tensor's value: no host
        synchronisation in the hot path (the GPU / CUDA-graph path); "timestep" reads one scalar per call.
    compile: True or torch.compile options: each block's computation runs compiled (once per block and
        shape), the schedule's decisions stay eager, so a fixed schedule never recompiles (compiled.py).
        Blocks compiled in place with `block.compile()` are compiled this way whatever `compile` says.
    Raises ScheduleFormatError (a ValueError) when the schedule does not load or does not fit `model`.
    """
    sched = load_schedule(schedule)
    if step_source not in ("timestep", "counter"):
        raise ScheduleFormatError(f"step_source must be 'timestep' or 'counter', got {step_source!r}")
    check_model(model, sched, check_fingerprint)
    try:
        options = compile_options(compile)
    except ValueError as exc:
        raise ScheduleFormatError(str(exc)) from None
    return ScheduleHandle(model, sched, timestep_position, step_source, options)


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
