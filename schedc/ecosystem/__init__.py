"""The ecosystem's own caches behind one apply/remove API, so benches compare them with schedc schedules.

A fair comparison runs every method on the same denoiser, noise, labels and sampler. This package applies
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

Layout: `core` (the handle, exact undo, model introspection), `diffusers_caches` (diffusers' hooks),
`dbcache` (cache-dit); this file holds the settings grids and the one apply function. Tests and benches
both use it, so it lives in the package rather than in bench/.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from schedc.ecosystem.core import APPLIED, CONTEXT_NAME, Backend, CacheHandle, NotApplicable, Snapshot
from schedc.ecosystem.dbcache import apply_cache_dit
from schedc.ecosystem.diffusers_caches import apply_first_block, apply_magcache, apply_pab, apply_taylorseer

# Mild -> aggressive, for a 50-step DDIM sampler. Keys are the libraries' own config fields (plus
# "targets" for TaylorSeer, see apply_taylorseer), so a row reads as the config it becomes.
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

_APPLIERS: dict[str, Callable[..., Backend]] = {
    "first-block": apply_first_block,
    "magcache": apply_magcache,
    "taylorseer": apply_taylorseer,
    "pab": apply_pab,
    "cache-dit-dbcache": apply_cache_dit,
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
    if model in APPLIED:
        raise RuntimeError("this model already has an ecosystem cache applied: remove() it first")
    handle = CacheHandle(model, name, settings, Snapshot(model))
    try:
        handle._backend = _APPLIERS[name](handle, dict(settings), num_steps, calibrate)
    except BaseException:
        handle._snapshot.restore()
        raise
    APPLIED.add(model)
    return handle


__all__ = ["CONTEXT_NAME", "ECOSYSTEM_CACHES", "CacheHandle", "NotApplicable", "apply_ecosystem_cache"]
