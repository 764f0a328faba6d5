"""Compiled blocks under a schedule (torch.compile). Needs only torch.

Why: a schedule changes which blocks run at each step, so a compiler that traced the runtime's own
Python (its step counter, its cache dict) would guard on the step and recompile at every one
(dynamo's recompile limit is hit within one generation). Here the runtime's decisions stay eager and
only each block's computation is compiled, once per block and input shape: a reuse step simply does not
call the compiled block. Blocks the user compiled in place (`block.compile()`) are taken over the same
way for as long as the schedule is applied (with apply_schedule's `compile` options, torch.compile's defaults
when none are given), and handed back exactly as they were on `remove()`.

With compilation on, the runtime's hook frames are excluded from tracing (`torch.compiler.disable`),
so a model compiled as a whole graph-breaks at the schedule's hooks instead of recompiling per step.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn


def compile_options(compile: "bool | Mapping[str, Any] | None") -> dict | None:
    """apply_schedule's `compile` argument -> torch.compile keyword arguments (None: do not compile)."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if isinstance(compile, Mapping) and all(isinstance(k, str) for k in compile):
        return dict(compile)
    raise ValueError(f"compile must be True, False or a dict of torch.compile options, got {compile!r}")


class BlockCompiler:
    """One compiled callable per (block, precision), built on first use; Module.compile()d blocks taken over."""

    def __init__(self, blocks: list[nn.Module], options: dict | None) -> None:
        self.taken = [b for b in blocks if getattr(b, "_compiled_call_impl", None) is not None]
        self.options = options if options is not None else ({} if self.taken else None)
        self.active = self.options is not None
        self._compiled_blocks = {id(b) for b in blocks} if options is not None else {id(b) for b in self.taken}
        self._fns: dict[Any, Callable[..., Any]] = {}
        self._saved = [(b, b._compiled_call_impl) for b in self.taken]  # type: ignore[attr-defined]
        for block in self.taken:  # its compiled _call_impl would trace the runtime's hooks: run them eager
            block._compiled_call_impl = None  # type: ignore[attr-defined]

    def wants(self, block: nn.Module) -> bool:
        return id(block) in self._compiled_blocks

    def call(self, key: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """fn(*args, **kwargs), compiled under `key` (the same key must always name the same fn)."""
        compiled = self._fns.get(key)
        if compiled is None:
            compiled = self._fns[key] = torch.compile(fn, **self.options)
        return compiled(*args, **kwargs)

    def eager_frame(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` kept out of tracing when compiling (a no-op otherwise: no per-call cost)."""
        return torch.compiler.disable(fn) if self.active else fn

    def restore(self) -> None:
        """Hand blocks compiled in place back exactly as they were (their own compiled call, options kept)."""
        for block, impl in self._saved:
            block._compiled_call_impl = impl  # type: ignore[attr-defined]
        self._saved = []


__all__ = ["BlockCompiler", "compile_options"]
