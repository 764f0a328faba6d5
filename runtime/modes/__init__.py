"""The reuse-mode registry: every reuse decision schedc knows, each one part in its own file.

A new mode is one file defining a `ReuseMode` (or subclass) plus one `register_mode` line here; the
schedule format, runtime, profiler and solvers all read this registry.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .base import ReuseMode, RingView, lagrange_weights

_MODES: dict[str, ReuseMode] = {}
REUSE_MODES: Mapping[str, ReuseMode] = MappingProxyType(_MODES)  # name -> mode, in registration order


def register_mode(mode: ReuseMode) -> ReuseMode:
    if mode.name in _MODES:
        raise ValueError(f"reuse mode {mode.name!r} is already registered")
    _MODES[mode.name] = mode
    return mode


def get_mode(name: str) -> ReuseMode:
    try:
        return _MODES[name]
    except KeyError:
        raise ValueError(f"unknown reuse mode {name!r} (known: {', '.join(_MODES)})") from None


from .residual import RESIDUAL  # noqa: E402  (registration order = the order schedules list modes)
from .output import OUTPUT  # noqa: E402
from .forecast import FORECAST  # noqa: E402
from .forecast2 import FORECAST2  # noqa: E402

register_mode(RESIDUAL)
register_mode(OUTPUT)
register_mode(FORECAST)
register_mode(FORECAST2)

__all__ = ["REUSE_MODES", "ReuseMode", "RingView", "get_mode", "lagrange_weights", "register_mode"]
