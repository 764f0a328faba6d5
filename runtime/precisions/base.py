"""What every precision part and every quantized nn.Linear share. Needs only torch.

A precision is a `Precision` part (name, FLOP cost ratio, how to build the replacement of an
`nn.Linear`, which kernel runs, how many bytes its weights take). `quantize_block` walks a block and
swaps each `nn.Linear` for the part's replacement in a deepcopy, so the original block (and any
runtime shadow or hook on it) stays untouched. Parts are registered in `schedc_runtime.precisions`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

NATIVE = "native"

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


class QuantLinear(nn.Module):
    """A drop-in nn.Linear at a reduced precision; subclasses prepare weights once and define `matmul`.

    `kernel` names the path that actually runs ("int8-matmul", "simulated", "weight-only") so the runtime
    can report it and nobody mistakes a simulated precision for a speedup.
    """

    def __init__(self, linear: nn.Linear, precision: str, kernel: str) -> None:
        super().__init__()
        self.precision = precision
        self.kernel = kernel
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.dtype = linear.weight.dtype

    def weight_bytes(self) -> int:
        """Bytes of the prepared weights (buffers: quantized values and scales; the bias is not counted)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        """x2 [M, in] -> [M, out] without bias, in x2's dtype."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # [..., in]
        y = self.matmul(x.reshape(-1, shape[-1]))  # [M, out]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)  # [..., out]


@dataclass(frozen=True)
class Precision:
    """One compute precision: subclass it in its own file, then `register_precision(MyPrecision())`.

    `flop_cost` is the FLOP cost of a compute at this precision relative to a native one; the solvers
    charge it under the FLOP cost model.
    """

    name: str
    flop_cost: float
    linear_class: ClassVar["type[QuantLinear] | None"] = None  # the nn.Linear replacement this precision runs

    def quantize_linear(self, linear: nn.Linear) -> nn.Module:
        """The replacement of `linear` at this precision (weights prepared here, once)."""
        if self.linear_class is None:
            raise NotImplementedError(f"precision {self.name} names no linear_class")
        return self.linear_class(linear, self.name, self.kernel(linear.weight.device))

    def supports(self, linear: nn.Linear) -> bool:
        """Whether this precision can run `linear` (a layer it cannot stays native in the quantized block, as
        torchao's filter skips layers whose shape its kernel does not take)."""
        return True

    def kernel(self, device: torch.device) -> str:
        """Which kernel the replacement runs on `device`."""
        raise NotImplementedError

    def weight_bytes(self, linear: nn.Linear) -> int:
        """Bytes the replacement's weights take (without the bias), known before building it."""
        raise NotImplementedError


def quantize_block(block: nn.Module, precision: Precision) -> nn.Module:
    """A copy of `block` whose every nn.Linear the precision supports runs at `precision` (the others stay
    native; the original is untouched)."""
    quantized = copy.deepcopy(block)
    vars(quantized).pop("forward", None)  # a runtime shadow on the original is not part of the block
    for module in quantized.modules():  # nor are hooks others registered on it
        for name in _HOOK_DICTS:
            hooks = getattr(module, name, None)
            if hooks is not None:
                hooks.clear()
    for _, module in list(quantized.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and precision.supports(child):
                setattr(module, child_name, precision.quantize_linear(child))
    return quantized.eval().requires_grad_(False)


def block_kernels(block: nn.Module) -> set[str]:
    """Kernels the quantized linears of `block` run (empty for a native block)."""
    return {m.kernel for m in block.modules() if isinstance(m, QuantLinear)}


def block_bytes(block: nn.Module) -> int:
    """Parameter + buffer bytes of a (quantized) block copy."""
    return sum(t.numel() * t.element_size() for t in list(block.parameters()) + list(block.buffers()))
