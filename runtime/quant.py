"""Quantized copies of a block for `compute` at reduced precision: a thin facade over the registry.

Each precision is one registered part in `schedc_runtime.precisions` (int8, fp8, int4w; native as the
trivial one); this module keeps the names the runtime, the profiler and the tests import. Needs only torch.
"""

from __future__ import annotations

from torch import nn

from .precisions import NATIVE, QuantLinear, UnknownPrecisionError, block_bytes, block_kernels, get_precision
from .precisions import quantize_block as _quantize_block_with
from .precisions import reduced_precisions
from .precisions.fp8 import FP8_MAX, fake_fp8
from .precisions.int4w import INT4_GROUP, dequantize_int4_groups, quantize_int4_groups
from .precisions.int8 import quantize_int8_per_channel, quantize_int8_per_token

PRECISIONS: tuple[str, ...] = reduced_precisions()  # ("int8", "fp8", "int4w"): the built-in reduced ones


def QuantizedLinear(linear: nn.Linear, precision: str) -> QuantLinear:  # noqa: N802 (was a class)
    """A drop-in nn.Linear at reduced `precision`; its `kernel` says which path runs."""
    if precision == NATIVE:
        raise UnknownPrecisionError(f"{NATIVE!r} is not a reduced precision (known: {', '.join(reduced_precisions())})")
    return get_precision(precision).quantize_linear(linear)


def quantize_block(block: nn.Module, precision: str) -> nn.Module:
    """A copy of `block` whose every nn.Linear runs at `precision` (the original is untouched)."""
    return _quantize_block_with(block, get_precision(precision))


__all__ = [
    "FP8_MAX",
    "INT4_GROUP",
    "PRECISIONS",
    "QuantLinear",
    "QuantizedLinear",
    "block_bytes",
    "block_kernels",
    "dequantize_int4_groups",
    "fake_fp8",
    "quantize_block",
    "quantize_int4_groups",
    "quantize_int8_per_channel",
    "quantize_int8_per_token",
]
