"""The ecosystem-cache handle and what every backend shares: exact undo, block and timestep discovery."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import weakref
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import nn

from schedc_runtime.hookcore import ModelHook, add_hook

CONTEXT_NAME = "cond_uncond"  # one context: batched CFG runs cond then uncond rows in one model call

APPLIED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models with a live handle: one cache at a time

ATTN_NAMES = ("attn", "attn1", "self_attn", "attention")  # self-attention children of a block
MLP_NAMES = ("ff", "mlp", "ffn", "feed_forward")


class NotApplicable(Exception):
    """This cache cannot run on this model (the message says why); benches skip the pair."""


# ----------------------------------------------------------------------------------------------------
# exact undo


class Snapshot:
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


def block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
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


def ensure_block_metadata(blocks: nn.ModuleList) -> None:
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


def timestep_reader(model: nn.Module) -> tuple[Callable[[], int | None], Any]:
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

    class _Timestep(ModelHook):
        def pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
            t = kwargs[name] if name in kwargs else args[index] if len(args) > index else None
            if t is not None:
                current["t"] = int(t.reshape(-1)[0]) if torch.is_tensor(t) else int(t)

    handle = add_hook(model, _Timestep(), "pab-timestep")  # the one hook core, like every other hook
    return (lambda: current["t"]), handle


# ----------------------------------------------------------------------------------------------------
# backends (diffusers_caches.DiffusersHooks, dbcache.CacheDiTBackend) and the handle


class Backend(Protocol):
    """What one generation needs from a library: open a context, reset after it, detach for good."""

    def begin(self, context: str) -> None: ...

    def end(self) -> None: ...

    def detach(self) -> None: ...


class CacheHandle:
    """An applied ecosystem cache. Wrap each whole generation in `generation()`; `remove()` undoes it all."""

    def __init__(self, model: nn.Module, name: str, settings: dict, snapshot: Snapshot) -> None:
        self.model = model
        self.name = name
        self.settings = dict(settings)
        self.info: dict[str, Any] = {}  # e.g. "mag_ratios" calibrated on this model (reusable as a setting)
        self._snapshot = snapshot
        self._backend: Backend | None = None
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
            APPLIED.discard(self.model)


def make_config(cls: type, settings: dict, name: str) -> Any:
    """A library config from a settings row; a misspelt field is a ValueError naming the cache."""
    try:
        return cls(**settings)
    except TypeError as exc:
        raise ValueError(f"bad {name} settings {settings}: {exc}") from None
