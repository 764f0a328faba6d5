"""fp8 (e4m3): per-output-channel weight scales and per-token activation scales, values rounded
through torch.float8_e4m3fn.

There is no fp8 matmul here (CPU has none), so it is always "simulated": quantise -> dequantise ->
float matmul. The numbers are those of a real fp8 kernel; the speed is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Precision, QuantLinear

FP8_MAX = 448.0  # largest finite float8_e4m3fn value


def fake_fp8(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Round x through e4m3 with one scale per slice along `dim` (amax maps to 448); same shape as x."""
    scale = x.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return (x / scale).to(torch.float8_e4m3fn).to(x.dtype) * scale


class Fp8Linear(QuantLinear):
    def __init__(self, linear: nn.Linear, precision: str, kernel: str) -> None:
        super().__init__(linear, precision, kernel)
        w = linear.weight.detach().float()  # [out, in]
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / FP8_MAX  # [out, 1]
        self.register_buffer("weight_fp8", (w / scale).to(torch.float8_e4m3fn))  # [out, in], 1 byte each
        self.register_buffer("w_scale", scale)  # [out, 1]

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        w = self.weight_fp8.to(x2.dtype) * self.w_scale.to(x2.dtype)  # [out, in] dequantised e4m3 weights
        return fake_fp8(x2, dim=1) @ w.t()  # [M, out]


@dataclass(frozen=True)
class Fp8(Precision):
    name: str = "fp8"
    # Half a native compute: fp8 tensor cores (Hopper, Ada) run at twice the dense throughput of bf16.
    # This is the cost of a real fp8 kernel; the simulated one here is not faster.
    flop_cost: float = 0.5
    linear_class = Fp8Linear

    def kernel(self, device: torch.device) -> str:
        return "simulated"

    def weight_bytes(self, linear: nn.Linear) -> int:
        out_f, in_f = linear.out_features, linear.in_features
        return out_f * in_f + out_f * 4  # e4m3 values + float32 scale per output channel
