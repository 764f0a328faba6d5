"""int8 (W8A8): per-output-channel symmetric int8 weights, per-token dynamic int8 activations.

Runs the real integer matmul `torch._int_mm` (int8 x int8 -> int32) where torch has it (CPU and CUDA
in torch >= 2.2); otherwise the same arithmetic in float ("simulated"). The int32 sums are exact either
way, so both kernels give the same numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from .base import Precision, QuantLinear


def quantize_int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] -> (int8 [out, in], scale [out]) with |w - q * scale| <= scale / 2."""
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # [out]
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)  # [out, in]
    return q, scale


def quantize_int8_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, in] -> (int8 [M, in], scale [M, 1])."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0  # [M, 1]
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale


@functools.lru_cache(maxsize=None)
def _int_mm_works(device: torch.device) -> bool:
    """Whether `torch._int_mm` runs on `device` (probed once per device)."""
    if not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.ones(32, 32, dtype=torch.int8, device=device)  # [32, 32]
        return bool(torch._int_mm(a, a)[0, 0].item() == 32)
    except (RuntimeError, NotImplementedError):
        return False


class Int8Linear(QuantLinear):
    def __init__(self, linear: nn.Linear, precision: str, kernel: str) -> None:
        odd = linear.in_features % 8 or linear.out_features % 8
        if kernel == "int8-matmul" and linear.weight.device.type == "cuda" and odd:
            kernel = "simulated"  # CUDA's _int_mm takes inner and output sizes in multiples of 8 only (CPU any)
        super().__init__(linear, precision, kernel)
        q, scale = quantize_int8_per_channel(linear.weight.detach().float())  # [out, in], [out]
        self.register_buffer("weight_t", q.t().contiguous())  # [in, out] int8
        self.register_buffer("w_scale", scale)  # [out]

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        xq, xs = quantize_int8_per_token(x2.float())  # [M, in] int8, [M, 1]
        if self.kernel == "int8-matmul" and x2.shape[0] > 16:  # _int_mm wants M > 16
            acc = torch._int_mm(xq, self.weight_t).float()  # [M, out] exact int32 sums
        else:
            acc = xq.float() @ self.weight_t.float()  # [M, out], exact in float32 for these sizes
        return (acc * xs * self.w_scale[None, :]).to(x2.dtype)


@dataclass(frozen=True)
class Int8(Precision):
    name: str = "int8"
    # Half a native compute: int8 tensor cores run at twice the dense throughput of bf16 on current
    # GPUs, and W8A8 puts the whole matmul in int8.
    flop_cost: float = 0.5
    linear_class = Int8Linear

    def kernel(self, device: torch.device) -> str:
        return "int8-matmul" if _int_mm_works(torch.device(device)) else "simulated"

    def weight_bytes(self, linear: nn.Linear) -> int:
        out_f, in_f = linear.out_features, linear.in_features
        return out_f * in_f + out_f * 4  # int8 values + float32 scale per output channel
