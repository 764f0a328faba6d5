"""One way to observe or replace a module's call: hooks chained on a per-module registry. Torch only.

Why: the replay runtime, the profiler's recorders and probes, the learned router and evaluation's
block skipping all need to run code around (or instead of) a block's forward, and the step tracker
needs the denoiser's call. Each used to patch `forward` its own way; stacking two of them (a probe
over a replay) or removing one without breaking the other was not possible.

How: the first hook on a module shadows its `forward` with one instance attribute (the chain's
outermost call); each later add/remove rebuilds the chain once, so a call pays one Python call per
hook and nothing else. Hooks run outermost-last-added: the hook added last sees the call first and
the output last. Removing the last hook restores `vars(module)` exactly (a forward that was already
an instance attribute, e.g. accelerate's, is put back). The registry lives on the shadow itself, so
an unhooked module carries no trace of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from torch import nn

_TAG = "_schedc_hook_registry"  # attribute of the shadow forward pointing back to its registry
_MISSING = object()


class ModelHook:
    """One technique on one module. Override only what you need: the parts left as they are cost nothing.

    - `pre_forward(module, args, kwargs)`: observe (or return new `(args, kwargs)`) before the call.
    - `new_forward(module, inner, args, kwargs)`: replace the call; `inner(*args, **kwargs)` runs the
      rest of the chain (hooks added earlier, then the module's own forward). Not calling it skips it.
    - `post_forward(module, args, kwargs, output)`: observe the output, or return a replacement
      (None keeps it, as torch's forward hooks do).
    - `on_remove(module)`: called once when the hook leaves the module.
    """

    def pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> "tuple[tuple, dict] | None":
        return None

    def new_forward(self, module: nn.Module, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return inner(*args, **kwargs)

    def post_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        return None

    def on_remove(self, module: nn.Module) -> None:
        return None


class OutputHook(ModelHook):
    """A plain function `fn(module, args, kwargs, output) -> replacement or None` as a hook
    (the signature of torch's `register_forward_hook(..., with_kwargs=True)`)."""

    def __init__(self, fn: Callable[[nn.Module, tuple, dict, Any], Any]) -> None:
        self.fn = fn

    def post_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        return self.fn(module, args, kwargs, output)


class CallHook(ModelHook):
    """A plain function `fn(inner, args, kwargs) -> output` that replaces the call as a hook."""

    def __init__(self, fn: Callable[[Callable[..., Any], tuple, dict], Any]) -> None:
        self.fn = fn

    def new_forward(self, module: nn.Module, inner: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return self.fn(inner, args, kwargs)


def _overrides(hook: ModelHook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(ModelHook, name)


def _link(module: nn.Module, hook: ModelHook, inner: Callable[..., Any]) -> Callable[..., Any]:
    """One link of the chain, specialised to what the hook overrides (the common cases are one call)."""
    pre = hook.pre_forward if _overrides(hook, "pre_forward") else None
    new = hook.new_forward if _overrides(hook, "new_forward") else None
    post = hook.post_forward if _overrides(hook, "post_forward") else None
    if new is not None and pre is None and post is None:
        def call(*args: Any, **kwargs: Any) -> Any:
            return new(module, inner, args, kwargs)
    elif post is not None and pre is None and new is None:
        def call(*args: Any, **kwargs: Any) -> Any:
            output = inner(*args, **kwargs)
            replaced = post(module, args, kwargs, output)
            return output if replaced is None else replaced
    else:
        def call(*args: Any, **kwargs: Any) -> Any:
            if pre is not None:
                changed = pre(module, args, kwargs)
                if changed is not None:
                    args, kwargs = changed
            output = inner(*args, **kwargs) if new is None else new(module, inner, args, kwargs)
            if post is not None:
                replaced = post(module, args, kwargs, output)
                if replaced is not None:
                    output = replaced
            return output
    return call


@dataclass(frozen=True)
class _Entry:
    name: str
    hook: ModelHook


class HookRegistry:
    """The hooks on one module, innermost first. Get it with `HookRegistry.of(module)`."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._entries: list[_Entry] = []
        self._saved: Any = _MISSING  # the module's own instance `forward`, if it had one
        self._original: Callable[..., Any] | None = None  # what the innermost link calls

    @staticmethod
    def of(module: nn.Module, create: bool = True) -> "HookRegistry | None":
        """The module's registry (a new empty one if it has none and `create`)."""
        registry = getattr(vars(module).get("forward"), _TAG, None)
        if registry is not None and registry.module is module:
            return registry
        return HookRegistry(module) if create else None

    # -- reading ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Hook names, innermost (added first) to outermost."""
        return [e.name for e in self._entries]

    def get(self, name: str) -> ModelHook | None:
        return next((e.hook for e in self._entries if e.name == name), None)

    def __contains__(self, name: str) -> bool:
        return any(e.name == name for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ModelHook]:
        return iter([e.hook for e in self._entries])

    # -- changing -----------------------------------------------------------------------------
    def add(self, hook: ModelHook, name: str | None = None) -> "HookHandle":
        """Put `hook` outermost. Names are unique per module (None: a fresh one)."""
        live = HookRegistry.of(self.module, create=False)
        if not self._entries and live is not None and live is not self:  # a stale registry object: use the module's live one
            return live.add(hook, name)
        if name is None:
            name = f"{type(hook).__name__}@{id(hook):x}"
        if name in self:
            raise ValueError(f"{type(self.module).__name__} already has a hook named {name!r}")
        if not self._entries:
            self._saved = vars(self.module).get("forward", _MISSING)
            self._original = self.module.forward
        self._entries.append(_Entry(name, hook))
        try:
            self._install()
        except BaseException:
            self._entries.pop()
            self._install()
            raise
        return HookHandle(self, name)

    def remove(self, name: str) -> None:
        """Take the named hook out (no-op if absent); the last one out restores the module."""
        index = next((i for i, e in enumerate(self._entries) if e.name == name), None)
        if index is None:
            return
        entry = self._entries.pop(index)
        try:
            self._install()
        finally:
            entry.hook.on_remove(self.module)

    def remove_all(self) -> None:
        """Take every hook out, outermost first, and restore the module."""
        while self._entries:
            self.remove(self._entries[-1].name)

    def _install(self) -> None:
        """Rebuild the chain from the entries; no entries: put the module back as it was."""
        own = vars(self.module)
        if not self._entries:
            own.pop("forward", None)
            if self._saved is not _MISSING:
                own["forward"] = self._saved
            self._saved, self._original = _MISSING, None
            return
        call = self._original
        for entry in self._entries:
            call = _link(self.module, entry.hook, call)
        setattr(call, _TAG, self)
        call.__wrapped__ = self._original  # inspect.signature(module.forward) still sees the real one
        own["forward"] = call


@dataclass(frozen=True)
class HookHandle:
    """What adding a hook returns: `remove()` takes just that hook out (idempotent); a context manager."""

    registry: HookRegistry
    name: str

    @property
    def hook(self) -> ModelHook | None:
        return self.registry.get(self.name)

    def remove(self) -> None:
        self.registry.remove(self.name)

    def __enter__(self) -> "HookHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def add_hook(module: nn.Module, hook: ModelHook, name: str | None = None) -> HookHandle:
    """Add `hook` outermost on `module` (its registry is created on the first hook)."""
    return HookRegistry.of(module).add(hook, name)


def hooks_of(module: nn.Module) -> list[str]:
    """Names of the hooks on `module`, innermost first ([] when it has none)."""
    registry = HookRegistry.of(module, create=False)
    return registry.names if registry is not None else []


def has_foreign_forward(module: nn.Module) -> bool:
    """Whether something other than this core shadows the module's forward (we would wrap it)."""
    registry = HookRegistry.of(module, create=False)
    own = vars(module).get("forward", _MISSING)
    return own is not _MISSING and (registry is None or registry._saved is not _MISSING)


def remove_all_hooks(model: nn.Module) -> None:
    """Remove every hook of this core from `model` and all its submodules."""
    for module in model.modules():
        registry = HookRegistry.of(module, create=False)
        if registry is not None:
            registry.remove_all()


__all__ = ["CallHook", "HookHandle", "HookRegistry", "ModelHook", "OutputHook", "add_hook", "has_foreign_forward",
           "hooks_of", "remove_all_hooks"]
