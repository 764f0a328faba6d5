"""The precision registry: every compute precision is one registered `Precision` part in its own file.

    PRECISIONS["int8"]            # read-only mapping name -> part, in registration order
    get_precision("fp8")          # the part, or UnknownPrecisionError listing the known names
    register_precision(MyPart())  # a new precision: one file with a Precision subclass, plus this line

Like torchao's config -> handler registry, the runtime looks parts up by name instead of branching on
it, so adding a precision touches no other module. Needs only torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .base import NATIVE, Precision, QuantLinear, block_bytes, block_kernels, quantize_block
from .fp8 import Fp8
from .int4w import Int4w
from .int8 import Int8
from .native import Native

_REGISTRY: dict[str, Precision] = {}
PRECISIONS: Mapping[str, Precision] = MappingProxyType(_REGISTRY)


class UnknownPrecisionError(ValueError):
    """A precision name no part is registered under."""


def register_precision(part: Precision, *, replace: bool = False) -> Precision:
    """Register `part` under `part.name`; refuses to shadow an existing name unless `replace`."""
    if not isinstance(part, Precision):
        raise TypeError(f"register_precision wants a Precision part, got {type(part).__name__}")
    if part.name in _REGISTRY and not replace:
        raise ValueError(f"precision {part.name!r} is already registered")
    _REGISTRY[part.name] = part
    return part


def unregister_precision(name: str) -> Precision:
    """Remove and return the part registered as `name` (for plugins and tests)."""
    part = get_precision(name)
    del _REGISTRY[name]
    return part


def get_precision(name: str) -> Precision:
    """The part registered as `name`."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownPrecisionError(f"unknown precision {name!r} (known: {', '.join(_REGISTRY)})") from None


def reduced_precisions() -> tuple[str, ...]:
    """Registered names other than native, in registration order."""
    return tuple(name for name in _REGISTRY if name != NATIVE)


# The built-ins, in the order profiles and schedules list them.
register_precision(Native())
register_precision(Int8())
register_precision(Fp8())
register_precision(Int4w())

__all__ = [
    "NATIVE",
    "PRECISIONS",
    "Precision",
    "QuantLinear",
    "UnknownPrecisionError",
    "block_bytes",
    "block_kernels",
    "get_precision",
    "quantize_block",
    "reduced_precisions",
    "register_precision",
    "unregister_precision",
]
