"""diffusers' own cache hooks on a bare denoiser: FirstBlockCache, MagCache, TaylorSeer, PAB."""

from __future__ import annotations

import re

from torch import nn

from schedc.ecosystem.core import (
    ATTN_NAMES,
    CONTEXT_NAME,
    MLP_NAMES,
    CacheHandle,
    NotApplicable,
    block_lists,
    ensure_block_metadata,
    make_config,
    timestep_reader,
)


class DiffusersHooks:
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


def apply_first_block(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> DiffusersHooks:
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from diffusers.hooks.first_block_cache import _FBC_BLOCK_HOOK, _FBC_LEADER_BLOCK_HOOK

    model = handle.model
    blocks = [b for _, lst in block_lists(model) for b in lst]
    if len(blocks) < 2:
        raise NotApplicable("FirstBlockCache needs at least two blocks (a head and a tail)")
    for _, lst in block_lists(model):
        ensure_block_metadata(lst)
    apply_first_block_cache(model, make_config(FirstBlockCacheConfig, settings, "first-block"))
    return DiffusersHooks(model, (_FBC_LEADER_BLOCK_HOOK, _FBC_BLOCK_HOOK))


def apply_magcache(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> DiffusersHooks:
    from diffusers.hooks import HookRegistry, MagCacheConfig, apply_mag_cache
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK

    model = handle.model
    names = (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK)
    for _, lst in block_lists(model):
        ensure_block_metadata(lst)
    settings = dict(settings)
    ratios = settings.pop("mag_ratios", None)
    if ratios is None:
        if calibrate is None:
            raise ValueError("magcache needs calibrate= (one full generation) or mag_ratios in its settings")
        # Calibration mode: no skipping; the tail hook records mean ||r_t|| / ||r_{t-1}|| of the whole
        # stack's residual each step. It prints and clears the ratios once num_inference_steps steps
        # have run, so calibrate with one step more and read them from the hook state before the reset.
        apply_mag_cache(model, MagCacheConfig(calibrate=True, num_inference_steps=num_steps + 1))
        backend = DiffusersHooks(model, names)
        backend.begin(CONTEXT_NAME)
        try:
            calibrate()
            head = next(m._diffusers_hook.hooks[_MAG_CACHE_LEADER_BLOCK_HOOK] for m in model.modules()
                        if _MAG_CACHE_LEADER_BLOCK_HOOK in getattr(getattr(m, "_diffusers_hook", None), "hooks", {}))
            ratios = _calibration_ratios(head.state_manager._state_cache)
        finally:
            backend.end()
            backend.detach()
            HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()
        if len(ratios) != num_steps:
            raise ValueError(f"MagCache calibration saw {len(ratios)} denoiser calls, expected num_steps={num_steps}: "
                             "calibrate() must run exactly one generation")
    ratios = [float(r) for r in ratios]
    handle.info["mag_ratios"] = ratios
    config = make_config(MagCacheConfig, {**settings, "mag_ratios": ratios, "num_inference_steps": num_steps}, "magcache")
    apply_mag_cache(model, config)
    return DiffusersHooks(model, names)


def _calibration_ratios(states: dict) -> list:
    """The ratios MagCache's calibration recorded, from the one context that ran the generation: ours
    (CONTEXT_NAME), or the name a model's own `cache_context` gave its CFG branch (FLUX and Wan call theirs
    "cond", "uncond" or "cond_uncond"; with two-call CFG the conditional branch's)."""
    recorded = {name: list(state.calibration_ratios) for name, state in states.items() if state.calibration_ratios}
    for name in (CONTEXT_NAME, "cond_uncond", "cond"):
        if name in recorded:
            return recorded[name]
    return next(iter(recorded.values()), [])


def apply_taylorseer(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> DiffusersHooks:
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
    child_names = ATTN_NAMES + (MLP_NAMES if targets == "attn+mlp" else ())
    identifiers = [re.escape(f"{list_name}.{i}.{child}")
                   for list_name, lst in block_lists(model) for i, block in enumerate(lst)
                   for child in child_names if isinstance(getattr(block, child, None), nn.Module)]
    if not identifiers:
        raise NotApplicable(f"no attention/MLP modules ({', '.join(child_names)}) inside the blocks")
    settings.setdefault("taylor_factors_dtype", next(model.parameters()).dtype)
    apply_taylorseer_cache(model, make_config(TaylorSeerCacheConfig, {**settings, "cache_identifiers": identifiers},
                                          "taylorseer"))
    return DiffusersHooks(model, (_TAYLORSEER_CACHE_HOOK,))


def apply_pab(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> DiffusersHooks:
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
    config = make_config(PyramidAttentionBroadcastConfig, {"spatial_attention_block_skip_range": 2, **settings}, "pab")
    lists = block_lists(model)
    callback, pre_hook = timestep_reader(model)
    config.current_timestep_callback = callback

    def hooked() -> int:
        return sum(_PYRAMID_ATTENTION_BROADCAST_HOOK in getattr(getattr(m, "_diffusers_hook", None), "hooks", {})
                   for m in model.modules())

    try:
        apply_pyramid_attention_broadcast(model, config)
        if hooked() == 0:
            for _, lst in lists:
                for block in lst:
                    attn = next((getattr(block, n) for n in ATTN_NAMES if isinstance(getattr(block, n, None), nn.Module)),
                                None)
                    if attn is not None:
                        _apply_pyramid_attention_broadcast_hook(
                            attn, config.spatial_attention_timestep_skip_range,
                            config.spatial_attention_block_skip_range, callback)
        if hooked() == 0:
            raise NotApplicable("no self-attention module inside the blocks "
                                f"(diffusers Attention or a child named one of {ATTN_NAMES})")
    except BaseException:
        pre_hook.remove()
        HookRegistry.check_if_exists_or_initialize(model).remove_hook(_PYRAMID_ATTENTION_BROADCAST_HOOK, recurse=True)
        raise
    return DiffusersHooks(model, (_PYRAMID_ATTENTION_BROADCAST_HOOK,), extra_handles=(pre_hook,))
