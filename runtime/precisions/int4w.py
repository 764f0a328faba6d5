"""int4w (4-bit weights): symmetric int4 in groups of 32 input channels, packed two per byte.

Dequantised on every call for a float matmul ("weight-only"): it saves weight memory, not FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Precision, QuantLinear

INT4_GROUP = 32


def quantize_int4_groups(w: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] (in % group == 0) -> (packed uint8 [out, in // 2], scale [out, in // group])."""
    out_f, in_f = w.shape
    g = w.reshape(out_f, in_f // group, group)  # [out, G, group]
    scale = g.abs().amax(dim=2).clamp_min(1e-12) / 7.0  # [out, G]
    q = torch.round(g / scale[..., None]).clamp(-8, 7).to(torch.int16).reshape(out_f, in_f) + 8  # 0..15
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)  # [out, in // 2]
    return packed, scale


def dequantize_int4_groups(packed: torch.Tensor, scale: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    """(packed uint8 [out, in // 2], scale [out, in // group]) -> w [out, in] in scale's dtype."""
    out_f = packed.shape[0]
    low = (packed & 0x0F).to(torch.int16) - 8  # [out, in // 2], even input channels
    high = (packed >> 4).to(torch.int16) - 8  # [out, in // 2], odd input channels
    q = torch.stack([low, high], dim=2).reshape(out_f, -1)  # [out, in]
    g = q.reshape(out_f, -1, group).to(scale.dtype) * scale[..., None]  # [out, G, group]
    return g.reshape(out_f, -1)


class Int4wLinear(QuantLinear):
    def __init__(self, linear: nn.Linear, precision: str, kernel: str) -> None:
        super().__init__(linear, precision, kernel)
        if self.in_features % INT4_GROUP:
            raise ValueError(f"int4w needs in_features divisible by {INT4_GROUP}, got {self.in_features}")
        packed, scale = quantize_int4_groups(linear.weight.detach().float())
        self.register_buffer("packed", packed)  # [out, in // 2] uint8
        self.register_buffer("w_scale", scale)  # [out, in // 32]

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        return x2 @ dequantize_int4_groups(self.packed, self.w_scale).to(x2.dtype).t()  # [M, out]


@dataclass(frozen=True)
class Int4w(Precision):
    name: str = "int4w"
    # A full native compute: the weights are dequantised to the activation dtype before a float matmul,
    # so the FLOPs are unchanged; weight-only quantization saves memory and bandwidth only.
    flop_cost: float = 1.0
    linear_class = Int4wLinear

    def supports(self, linear: nn.Linear) -> bool:
        return linear.in_features % INT4_GROUP == 0  # whole groups of 32 input channels

    def kernel(self, device: torch.device) -> str:
        return "weight-only"

    def weight_bytes(self, linear: nn.Linear) -> int:
        out_f, in_f = linear.out_features, linear.in_features
        return out_f * in_f // 2 + out_f * (in_f // INT4_GROUP) * 4  # two values a byte + float32 group scales
