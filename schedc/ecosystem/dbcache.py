"""cache-dit's DBCache on a bare transformer (cache-dit is an optional bench extra, imported lazily)."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from torch import nn

from schedc.ecosystem.core import CacheHandle, NotApplicable, block_lists, make_config


class CacheDiTBackend:
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


def apply_cache_dit(handle: CacheHandle, settings: dict, num_steps: int, calibrate) -> CacheDiTBackend:
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
    lists = block_lists(model)
    num_blocks = sum(len(lst) for _, lst in lists)
    config = make_config(cache_dit.DBCacheConfig, {
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
    return CacheDiTBackend(model, flag_created)
