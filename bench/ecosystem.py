"""The ecosystem's own caches behind one apply/remove API, so benches compare them with schedc schedules.

A fair comparison runs every method on the same denoiser, noise, labels and sampler. This module applies
each cache with its library's code -- diffusers' FirstBlockCache, MagCache, TaylorSeer and Pyramid
Attention Broadcast hooks, cache-dit's DBCache -- and adds only what those libraries expect a pipeline to
provide and a bare denoiser does not:

* block metadata for block classes diffusers does not know (the reference DiT's blocks take `(x, c)`);
* the cache context around one generation (one name, because batched CFG runs cond and uncond rows in
  one call), and a reset of the hooks' state after it, so every generation starts clean;
* the current timestep for PAB (read from the denoiser's own `timestep` argument);
* MagCache's calibration on this model (its calibration mode, then the recorded ratios);
* an exact undo: `remove()` calls the library's own removal, then restores every module's attributes
  and children to what they were (the libraries leave instance `forward` attributes, hook registries
  and, for cache-dit's DiT patch, a registered `_norm1_emb` submodule behind).

    handle = apply_ecosystem_cache(model, "first-block", {"threshold": 0.1}, num_steps=50)
    with handle.generation():
        samples = adapter.generate(...)       # the model's own call, unchanged; one generation
    handle.remove()                           # the model is exactly as before

diffusers is needed for every cache; cache_dit (an optional bench extra) only for "cache-dit-dbcache"
and is imported lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import re
import weakref
from typing import Any, Callable, Iterator

import torch
from torch import nn

CONTEXT_NAME = "cond_uncond"  # one context: batched CFG runs cond then uncond rows in one model call

# Mild -> aggressive, for a 50-step DDIM sampler. Keys are the libraries' own config fields (plus
# "targets" for TaylorSeer, see _apply_taylorseer), so a row reads as the config it becomes.
ECOSYSTEM_CACHES: dict[str, list[dict]] = {
    # relative L1 change of the first block's residual below which the other blocks are skipped
    "first-block": [{"threshold": t} for t in (0.03, 0.05, 0.1, 0.2, 0.4)],
    # accumulated |1 - prod(mag ratio)| budget, max consecutive skips, fraction of first steps never skipped
    "magcache": [
        {"threshold": 0.02, "max_skip_steps": 2, "retention_ratio": 0.2},
        {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2},
        {"threshold": 0.12, "max_skip_steps": 4, "retention_ratio": 0.1},
        {"threshold": 0.25, "max_skip_steps": 6, "retention_ratio": 0.1},
    ],
    # full compute every cache_interval steps after disable_cache_before_step warmup steps; Taylor forecast between
    "taylorseer": [
        {"cache_interval": 2, "disable_cache_before_step": 5, "max_order": 1},
        {"cache_interval": 3, "disable_cache_before_step": 4, "max_order": 1},
        {"cache_interval": 4, "disable_cache_before_step": 3, "max_order": 2},
        {"cache_interval": 6, "disable_cache_before_step": 3, "max_order": 2},
    ],
    # self-attention output reused for block_skip_range - 1 calls while 100 < t < 800 (or the given range)
    "pab": [
        {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (100, 800)},
        {"spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (100, 800)},
        {"spatial_attention_block_skip_range": 4, "spatial_attention_timestep_skip_range": (50, 900)},
        {"spatial_attention_block_skip_range": 6, "spatial_attention_timestep_skip_range": (0, 1000)},
    ],
    # Fn first / Bn last blocks always computed; the middle reused while the Fn residual's relative L1
    # change stays below residual_diff_threshold, after max_warmup_steps full steps
    "cache-dit-dbcache": [
        {"Fn_compute_blocks": 2, "Bn_compute_blocks": 1, "residual_diff_threshold": 0.04, "max_warmup_steps": 8},
        {"Fn_compute_blocks": 1, "Bn_compute_blocks": 1, "residual_diff_threshold": 0.08, "max_warmup_steps": 8},
        {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "residual_diff_threshold": 0.12, "max_warmup_steps": 4},
        {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "residual_diff_threshold": 0.24, "max_warmup_steps": 4},
    ],
}

_APPLIED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models with a live handle: one cache at a time

_ATTN_NAMES = ("attn", "attn1", "self_attn", "attention")  # self-attention children of a block
_MLP_NAMES = ("ff", "mlp", "ffn", "feed_forward")


class NotApplicable(Exception):
    """This cache cannot run on this model (the message says why); benches skip the pair."""


# ----------------------------------------------------------------------------------------------------
# exact undo


class _Snapshot:
    """Every module's attribute dict and children as they were, restored by identity.

    The libraries' own removal leaves traces (an instance `forward` holding the original bound method,
    `_diffusers_hook` registries, cache-dit's `_context_*` attributes, the DiT patch's `forward` and its
    `_norm1_emb` submodule, which would also add state_dict keys; mock-patching `blocks` during forward
    moves it to the end of `_modules`). Restoring the dicts leaves the model as it was, module for module.
    """

    def __init__(self, model: nn.Module) -> None:
        self.entries = [(m, dict(vars(m)), dict(m._modules)) for m in model.modules()]

    def restore(self) -> None:
        missing = object()
        for module, attrs, children in self.entries:
            current = vars(module)
            for key in [k for k in current if k not in attrs]:
                del current[key]
            for key, value in attrs.items():
                if key != "training" and current.get(key, missing) is not value:
                    current[key] = value
            if list(module._modules.items()) != list(children.items()):
                module._modules.clear()
                module._modules.update(children)


# ----------------------------------------------------------------------------------------------------
# model introspection


def _block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """The block lists diffusers' block caches hook: direct ModuleList children with a block-list name."""
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    lists = [(name, child) for name, child in model.named_children()
             if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, nn.ModuleList) and len(child)]
    if not lists:
        raise NotApplicable(f"{type(model).__name__} has no transformer block list "
                            f"(a ModuleList child named one of {sorted(_ALL_TRANSFORMER_BLOCK_IDENTIFIERS)})")
    return lists


def _forward_params(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls.forward).parameters][1:]  # without self


@functools.cache
def _aliased_metadata_class() -> type:
    """TransformerBlockMetadata whose parameter lookup maps requested names to the block's own names."""
    from diffusers.hooks._helpers import TransformerBlockMetadata

    @dataclasses.dataclass
    class AliasedBlockMetadata(TransformerBlockMetadata):
        aliases: dict = dataclasses.field(default_factory=dict)

        def _get_parameter_from_args_kwargs(self, identifier, args=(), kwargs=None):
            return super()._get_parameter_from_args_kwargs(self.aliases.get(identifier, identifier), args, kwargs)

    return AliasedBlockMetadata


def _ensure_block_metadata(blocks: nn.ModuleList) -> None:
    """Register a non-diffusers block class with diffusers' TransformerBlockRegistry.

    FirstBlockCache and MagCache look a block class up there to find the hidden states among the call's
    arguments. FirstBlockCache asks for the parameter literally named "hidden_states", MagCache for
    `hidden_states_argument_name`; the alias answers both with the block's first parameter. A block
    returning a tensor needs nothing else (the hooks treat tensor outputs as the hidden states). The
    registration is global and idempotent; it is left in place (it only describes the class).
    """
    from diffusers.hooks._helpers import TransformerBlockRegistry

    for cls in {type(block) for block in blocks}:
        try:
            TransformerBlockRegistry.get(cls)
            continue
        except ValueError:
            pass
        if cls.__module__.startswith("diffusers"):
            raise NotApplicable(f"diffusers has no block metadata for {cls.__name__} (its output layout is unknown)")
        params = _forward_params(cls)
        if not params:
            raise NotApplicable(f"{cls.__name__}.forward takes no hidden states")
        hidden = params[0]
        TransformerBlockRegistry.register(cls, _aliased_metadata_class()(
            return_hidden_states_index=0, return_encoder_hidden_states_index=None,
            hidden_states_argument_name=hidden, aliases={"hidden_states": hidden}))


def _timestep_reader(model: nn.Module) -> tuple[Callable[[], int | None], Any]:
    """A forward pre-hook that records the timestep of the current call, and the callback reading it.

    PAB asks a callback for the current timestep (pipelines pass `lambda: pipe.current_timestep`). The
    denoising loop passes it to the denoiser, so a pre-hook on the denoiser reads it from there: the
    `timestep` (or `t`) argument, a scalar or a per-row tensor (all rows share it in one rollout).
    """
    params = _forward_params(type(model))
    name = next((p for p in ("timestep", "timesteps", "t") if p in params), None)
    if name is None:
        raise NotApplicable(f"{type(model).__name__}.forward has no timestep argument for PAB's timestep callback")
    index = params.index(name)
    current: dict[str, int | None] = {"t": None}

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        t = kwargs[name] if name in kwargs else args[index] if len(args) > index else None
        if t is not None:
            current["t"] = int(t.reshape(-1)[0]) if torch.is_tensor(t) else int(t)

    handle = model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    return (lambda: current["t"]), handle


# ----------------------------------------------------------------------------------------------------
# backends: what one generation needs from each library


class _DiffusersHooks:
    """diffusers' block/attention hooks: a named context per generation, then reset_stateful_hooks."""

    def __init__(self, model: nn.Module, hook_names: tuple[str, ...], extra_handles: tuple = ()) -> None:
        from diffusers.hooks import HookRegistry

        self.model = model
        self.hook_names = hook_names
        self.extra_handles = extra_handles
        # Applying hooks on children stales a root registry's cached child list (diffusers' enable_cache
        # does the same invalidation).
        HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()

    def begin(self, context: str) -> None:
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        _set_cache_context(self.model, CacheContext(context))

    def end(self) -> None:
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.hooks import _set_cache_context

        HookRegistry.check_if_exists_or_initialize(self.model).reset_stateful_hooks(recurse=True)
        _set_cache_context(self.model, None)

    def detach(self) -> None:
        from diffusers.hooks import HookRegistry

        registry = HookRegistry.check_if_exists_or_initialize(self.model)
        for name in self.hook_names:
            registry.remove_hook(name, recurse=True)
        registry.invalidate_child_registries_cache()
        for handle in self.extra_handles:
            handle.remove()


class _CacheDiT:
    """cache-dit's DBCache on a bare transformer: a persistent context it keys itself, refreshed per generation."""

    def __init__(self, model: nn.Module, created_class_flag: type | None) -> None:
        self.model = model
        self.created_class_flag = created_class_flag

    def begin(self, context: str) -> None:
        # cache-dit keys its context by block list; batched CFG is one call per step (enable_separate_cfg=False)
        pass

    def end(self) -> None:
        import cache_dit

        with _quiet_cache_dit():
            # Recreate the context with the same config: steps, buffers and stats start over. (With
            # num_inference_steps set it would also refresh on the next call after the last step; this
            # also covers an interrupted generation.)
            cache_dit.refresh_context(self.model)

    def detach(self) -> None:
        import cache_dit

        with _quiet_cache_dit():
            cache_dit.disable_cache(self.model)
        if self.created_class_flag is not None:
            # cache-dit marks the placeholder pipeline *class* as cached; undo what this apply set.
            with contextlib.suppress(AttributeError):
                delattr(self.created_class_flag, "_is_cached")


@contextlib.contextmanager
def _quiet_cache_dit() -> Iterator[None]:
    """cache-dit logs every adapter decision at INFO/WARNING; benches print tables."""
    # cache-dit gives every module its own non-propagating logger, so each one is quieted
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("cache_dit")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


# ----------------------------------------------------------------------------------------------------
# the handle


class CacheHandle:
    """An applied ecosystem cache. Wrap each whole generation in `generation()`; `remove()` undoes it all."""

    def __init__(self, model: nn.Module, name: str, settings: dict, snapshot: _Snapshot) -> None:
        self.model = model
        self.name = name
        self.settings = dict(settings)
        self.info: dict[str, Any] = {}  # e.g. "mag_ratios" calibrated on this model (reusable as a setting)
        self._snapshot = snapshot
        self._backend: _DiffusersHooks | _CacheDiT | None = None
        self._active = False

    @contextlib.contextmanager
    def generation(self, context: str = CONTEXT_NAME) -> Iterator[None]:
        """One whole generation (all steps, batched CFG). Sets the cache context; afterwards resets the
        hooks' state (step counters, cached residuals, Taylor factors) so the next generation starts clean.
        """
        if self._backend is None:
            raise RuntimeError(f"{self.name} cache was removed")
        if self._active:
            raise RuntimeError("generation() does not nest: wrap one whole generation")
        self._active = True
        self._backend.begin(context)
        try:
            yield
        finally:
            self._active = False
            self._backend.end()

    def remove(self) -> None:
        """Detach with the library's own removal, then restore every module exactly (idempotent)."""
        if self._backend is None:
            return
        if self._active:
            raise RuntimeError("remove() inside generation()")
        backend, self._backend = self._backend, None
        try:
            backend.detach()
        finally:
            self._snapshot.restore()
            _APPLIED.discard(self.model)


# ----------------------------------------------------------------------------------------------------
# appliers


def _config(cls: type, settings: dict, name: str) -> Any:
    try:
        return cls(**settings)
    except TypeError as exc:
        raise ValueError(f"bad {name} settings {settings}: {exc}") from None


def _apply_first_block(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> _DiffusersHooks:
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from diffusers.hooks.first_block_cache import _FBC_BLOCK_HOOK, _FBC_LEADER_BLOCK_HOOK

    model = handle.model
    blocks = [b for _, lst in _block_lists(model) for b in lst]
    if len(blocks) < 2:
        raise NotApplicable("FirstBlockCache needs at least two blocks (a head and a tail)")
    for _, lst in _block_lists(model):
        _ensure_block_metadata(lst)
    apply_first_block_cache(model, _config(FirstBlockCacheConfig, settings, "first-block"))
    return _DiffusersHooks(model, (_FBC_LEADER_BLOCK_HOOK, _FBC_BLOCK_HOOK))


def _apply_magcache(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> _DiffusersHooks:
    from diffusers.hooks import HookRegistry, MagCacheConfig, apply_mag_cache
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK

    model = handle.model
    names = (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK)
    for _, lst in _block_lists(model):
        _ensure_block_metadata(lst)
    settings = dict(settings)
    ratios = settings.pop("mag_ratios", None)
    if ratios is None:
        if calibrate is None:
            raise ValueError("magcache needs calibrate= (one full generation) or mag_ratios in its settings")
        # Calibration mode: no skipping; the tail hook records mean ||r_t|| / ||r_{t-1}|| of the whole
        # stack's residual each step. It prints and clears the ratios once num_inference_steps steps
        # have run, so calibrate with one step more and read them from the hook state before the reset.
        apply_mag_cache(model, MagCacheConfig(calibrate=True, num_inference_steps=num_steps + 1))
        backend = _DiffusersHooks(model, names)
        backend.begin(CONTEXT_NAME)
        try:
            calibrate()
            head = next(m._diffusers_hook.hooks[_MAG_CACHE_LEADER_BLOCK_HOOK] for m in model.modules()
                        if _MAG_CACHE_LEADER_BLOCK_HOOK in getattr(getattr(m, "_diffusers_hook", None), "hooks", {}))
            state = head.state_manager._state_cache.get(CONTEXT_NAME)
            ratios = list(state.calibration_ratios) if state is not None else []
        finally:
            backend.end()
            backend.detach()
            HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()
        if len(ratios) != num_steps:
            raise ValueError(f"MagCache calibration saw {len(ratios)} denoiser calls, expected num_steps={num_steps}: "
                             "calibrate() must run exactly one generation")
    ratios = [float(r) for r in ratios]
    handle.info["mag_ratios"] = ratios
    config = _config(MagCacheConfig, {**settings, "mag_ratios": ratios, "num_inference_steps": num_steps}, "magcache")
    apply_mag_cache(model, config)
    return _DiffusersHooks(model, names)


def _apply_taylorseer(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> _DiffusersHooks:
    """TaylorSeer on each block's self-attention and MLP (settings["targets"] = "attn" for attention only).

    diffusers' default patterns end in "attn" (`^transformer_blocks.*attn`), which match the reference
    DiT's `blocks.i.attn` but none of BasicTransformerBlock's `attn1`/`ff`; explicit names hook the same
    modules on every model. Taylor factors are kept in the model's dtype unless taylor_factors_dtype is
    given (diffusers' default bf16 would add rounding error the other methods do not have).
    """
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    model = handle.model
    settings = dict(settings)
    targets = settings.pop("targets", "attn+mlp")
    if targets not in ("attn", "attn+mlp"):
        raise ValueError(f"taylorseer targets must be 'attn' or 'attn+mlp', got {targets!r}")
    child_names = _ATTN_NAMES + (_MLP_NAMES if targets == "attn+mlp" else ())
    identifiers = [re.escape(f"{list_name}.{i}.{child}")
                   for list_name, lst in _block_lists(model) for i, block in enumerate(lst)
                   for child in child_names if isinstance(getattr(block, child, None), nn.Module)]
    if not identifiers:
        raise NotApplicable(f"no attention/MLP modules ({', '.join(child_names)}) inside the blocks")
    settings.setdefault("taylor_factors_dtype", next(model.parameters()).dtype)
    apply_taylorseer_cache(model, _config(TaylorSeerCacheConfig, {**settings, "cache_identifiers": identifiers},
                                          "taylorseer"))
    return _DiffusersHooks(model, (_TAYLORSEER_CACHE_HOOK,))


def _apply_pab(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> _DiffusersHooks:
    """Pyramid Attention Broadcast on the blocks' self-attention.

    `apply_pyramid_attention_broadcast` only hooks diffusers attention classes (Attention,
    AttentionModuleMixin) and silently hooks nothing otherwise. Its hook itself only caches a module's
    output, so on a model with its own attention class (the reference DiT) the same diffusers hook is
    attached to each block's self-attention child directly, with the same skip ranges.
    """
    from diffusers.hooks import HookRegistry, PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast
    from diffusers.hooks.pyramid_attention_broadcast import (
        _PYRAMID_ATTENTION_BROADCAST_HOOK,
        _apply_pyramid_attention_broadcast_hook,
    )

    model = handle.model
    allowed = {"spatial_attention_block_skip_range", "spatial_attention_timestep_skip_range"}
    if set(settings) - allowed:
        raise ValueError(f"pab settings take {sorted(allowed)} (these models have no temporal or cross attention), "
                         f"got {sorted(settings)}")
    config = _config(PyramidAttentionBroadcastConfig, {"spatial_attention_block_skip_range": 2, **settings}, "pab")
    lists = _block_lists(model)
    callback, pre_hook = _timestep_reader(model)
    config.current_timestep_callback = callback

    def hooked() -> int:
        return sum(_PYRAMID_ATTENTION_BROADCAST_HOOK in getattr(getattr(m, "_diffusers_hook", None), "hooks", {})
                   for m in model.modules())

    try:
        apply_pyramid_attention_broadcast(model, config)
        if hooked() == 0:
            for _, lst in lists:
                for block in lst:
                    attn = next((getattr(block, n) for n in _ATTN_NAMES if isinstance(getattr(block, n, None), nn.Module)),
                                None)
                    if attn is not None:
                        _apply_pyramid_attention_broadcast_hook(
                            attn, config.spatial_attention_timestep_skip_range,
                            config.spatial_attention_block_skip_range, callback)
        if hooked() == 0:
            raise NotApplicable("no self-attention module inside the blocks "
                                f"(diffusers Attention or a child named one of {_ATTN_NAMES})")
    except BaseException:
        pre_hook.remove()
        HookRegistry.check_if_exists_or_initialize(model).remove_hook(_PYRAMID_ATTENTION_BROADCAST_HOOK, recurse=True)
        raise
    return _DiffusersHooks(model, (_PYRAMID_ATTENTION_BROADCAST_HOOK,), extra_handles=(pre_hook,))


def _apply_cache_dit(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> _CacheDiT:
    """cache-dit's DBCache on the bare transformer.

    Models cache-dit knows (DiTTransformer2DModel: its "DiT" adapter plus a patch functor that replaces
    the transformer's forward) go through `cache_dit.enable_cache(transformer, ...)`; others through a
    BlockAdapter over their one block list with ForwardPattern.Pattern_3 (block(hidden, *args) -> hidden).
    Either way cache-dit swaps the block list for one wrapper module during each forward and keeps a
    persistent context for the transformer; num_inference_steps = num_steps lets it refresh after a
    generation, enable_separate_cfg=False because CFG is batched into one call per step.
    """
    try:
        import cache_dit
        from cache_dit.caching.block_adapters import BlockAdapter, BlockAdapterRegister, FakeDiffusionPipeline
    except ImportError as exc:
        raise NotApplicable(f"cache-dit is not installed (optional bench extra): {exc}") from None

    model = handle.model
    lists = _block_lists(model)
    num_blocks = sum(len(lst) for _, lst in lists)
    config = _config(cache_dit.DBCacheConfig, {
        "max_warmup_steps": 4, **settings, "num_inference_steps": num_steps, "enable_separate_cfg": False,
    }, "cache-dit-dbcache")
    if config.Fn_compute_blocks + config.Bn_compute_blocks >= num_blocks:
        raise NotApplicable(f"Fn_compute_blocks + Bn_compute_blocks = {config.Fn_compute_blocks + config.Bn_compute_blocks} "
                            f"leaves no cacheable block among {num_blocks}")
    flag_created = None if "_is_cached" in vars(FakeDiffusionPipeline) else FakeDiffusionPipeline
    with _quiet_cache_dit():
        if BlockAdapterRegister.is_supported(model):
            cache_dit.enable_cache(model, cache_config=config)
        else:
            if len(lists) != 1:
                raise NotApplicable(f"cache-dit needs one block list for an unregistered model, found {[n for n, _ in lists]}")
            name, blocks = lists[0]
            adapter = BlockAdapter(pipe=FakeDiffusionPipeline(model), transformer=model, blocks=blocks,
                                   blocks_name=name, forward_pattern=cache_dit.ForwardPattern.Pattern_3,
                                   check_forward_pattern=False)
            cache_dit.enable_cache(adapter, cache_config=config)
    if not getattr(model, "_is_cached", False):
        raise NotApplicable("cache-dit did not attach to this model")
    return _CacheDiT(model, flag_created)


_APPLIERS: dict[str, Callable[..., _DiffusersHooks | _CacheDiT]] = {
    "first-block": _apply_first_block,
    "magcache": _apply_magcache,
    "taylorseer": _apply_taylorseer,
    "pab": _apply_pab,
    "cache-dit-dbcache": _apply_cache_dit,
}


def apply_ecosystem_cache(
    model: nn.Module,
    name: str,
    settings: dict,
    *,
    num_steps: int,
    calibrate: Callable[[], None] | None = None,
) -> CacheHandle:
    """Apply the ecosystem cache `name` (a key of ECOSYSTEM_CACHES) with `settings` to the denoiser.

    num_steps: the sampler's step count (MagCache interpolates/indexes its ratios by step, cache-dit
    refreshes its context after it). calibrate: runs one full generation with `model` (the same sampler);
    MagCache calibrates on it unless settings carry "mag_ratios" (handle.info["mag_ratios"] holds the
    calibrated ones, so a bench can calibrate once per model and reuse them across a grid).

    Raises NotApplicable when the cache cannot run on this model (the model is left untouched), and
    ValueError for bad settings.
    """
    if name not in _APPLIERS:
        raise ValueError(f"unknown ecosystem cache {name!r}; known: {', '.join(_APPLIERS)}")
    if num_steps < 1:
        raise ValueError("num_steps must be >= 1")
    if model in _APPLIED:
        raise RuntimeError("this model already has an ecosystem cache applied: remove() it first")
    handle = CacheHandle(model, name, settings, _Snapshot(model))
    try:
        handle._backend = _APPLIERS[name](handle, dict(settings), num_steps, calibrate)
    except BaseException:
        handle._snapshot.restore()
        raise
    _APPLIED.add(model)
    return handle


__all__ = ["CONTEXT_NAME", "ECOSYSTEM_CACHES", "CacheHandle", "NotApplicable", "apply_ecosystem_cache"]
