"""Quantized copies of a block for `compute` at reduced precision. Needs only torch.

- int8  (W8A8): per-output-channel symmetric int8 weights, per-token dynamic int8 activations.
        Runs the real integer matmul `torch._int_mm` (int8 x int8 -> int32) where torch has it
        (CPU and CUDA in torch >= 2.2); otherwise the same arithmetic in float ("simulated").
- fp8   (e4m3): per-output-channel weight scales and per-token activation scales, values rounded
        through torch.float8_e4m3fn. On CPU there is no fp8 matmul, so it is always "simulated"
        (quantise -> dequantise -> float matmul); the numbers are those of a real fp8 kernel.
- int4w (4-bit weights): symmetric int4 in groups of 32 input channels, packed two per byte;
        dequantised on the fly for a float matmul (weight-only: saves memory, not FLOPs).

`QuantizedLinear.kernel` says which path runs; the runtime reports it so nobody mistakes a
simulated precision for a speedup.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = ("int8", "fp8", "int4w")
FP8_MAX = 448.0  # largest finite float8_e4m3fn value
INT4_GROUP = 32


def quantize_int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] -> (int8 [out, in], scale [out]) with |w - q * scale| <= scale / 2."""
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # [out]
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def quantize_int8_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, in] -> (int8 [M, in], scale [M, 1])."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0  # [M, 1]
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale


def fake_fp8(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Round x through e4m3 with one scale per slice along `dim` (amax maps to 448)."""
    scale = x.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return (x / scale).to(torch.float8_e4m3fn).to(x.dtype) * scale


def quantize_int4_groups(w: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] (in % group == 0) -> (packed uint8 [out, in // 2], scale [out, in // group])."""
    out_f, in_f = w.shape
    g = w.reshape(out_f, in_f // group, group)  # [out, G, group]
    scale = g.abs().amax(dim=2).clamp_min(1e-12) / 7.0  # [out, G]
    q = torch.round(g / scale[..., None]).clamp(-8, 7).to(torch.int16).reshape(out_f, in_f) + 8  # 0..15
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)  # [out, in // 2]
    return packed, scale


def dequantize_int4_groups(packed: torch.Tensor, scale: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    out_f = packed.shape[0]
    low = (packed & 0x0F).to(torch.int16) - 8
    high = (packed >> 4).to(torch.int16) - 8
    q = torch.stack([low, high], dim=2).reshape(out_f, -1)  # [out, in]
    g = q.reshape(out_f, -1, group).to(scale.dtype) * scale[..., None]
    return g.reshape(out_f, -1)


def _int_mm_works(device: torch.device) -> bool:
    if not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.ones(32, 32, dtype=torch.int8, device=device)
        return bool(torch._int_mm(a, a)[0, 0].item() == 32)
    except (RuntimeError, NotImplementedError):
        return False


class QuantizedLinear(nn.Module):
    """A drop-in nn.Linear at `precision`; `kernel` is "int8-matmul" or "simulated"/"weight-only"."""

    def __init__(self, linear: nn.Linear, precision: str) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        self.precision = precision
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.dtype = linear.weight.dtype
        if precision == "int8":
            q, scale = quantize_int8_per_channel(w)
            self.register_buffer("weight_t", q.t().contiguous())  # [in, out] int8
            self.register_buffer("w_scale", scale)
            self.kernel = "int8-matmul" if _int_mm_works(w.device) else "simulated"
        elif precision == "fp8":
            scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / FP8_MAX  # [out, 1]
            self.register_buffer("weight_fp8", (w / scale).to(torch.float8_e4m3fn))  # [out, in], 1 byte each
            self.register_buffer("w_scale", scale)
            self.kernel = "simulated"
        else:
            if self.in_features % INT4_GROUP:
                raise ValueError(f"int4w needs in_features divisible by {INT4_GROUP}, got {self.in_features}")
            packed, scale = quantize_int4_groups(w)
            self.register_buffer("packed", packed)
            self.register_buffer("w_scale", scale)
            self.kernel = "weight-only"

    def weight_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # [M, in]
        if self.precision == "int8":
            xq, xs = quantize_int8_per_token(x2.float())
            if self.kernel == "int8-matmul" and x2.shape[0] > 16:
                acc = torch._int_mm(xq, self.weight_t).float()  # [M, out] exact int32 sums
            else:
                acc = xq.float() @ self.weight_t.float()
            y = (acc * xs * self.w_scale[None, :]).to(x.dtype)
        elif self.precision == "fp8":
            w = self.weight_fp8.to(x.dtype) * self.w_scale.to(x.dtype)  # dequantised e4m3 weights
            y = fake_fp8(x2, dim=1) @ w.t()
        else:
            y = x2 @ dequantize_int4_groups(self.packed, self.w_scale).to(x.dtype).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def quantize_block(block: nn.Module, precision: str) -> nn.Module:
    """A copy of `block` whose every nn.Linear runs at `precision` (the original is untouched)."""
    quantized = copy.deepcopy(block)
    vars(quantized).pop("forward", None)  # a runtime shadow on the original is not part of the block
    for module in quantized.modules():  # nor are hooks others registered on it
        for name in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                     "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            hooks = getattr(module, name, None)
            if hooks is not None:
                hooks.clear()
    for name, module in list(quantized.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, QuantizedLinear(child, precision))
    return quantized.eval().requires_grad_(False)


def block_kernels(block: nn.Module) -> set[str]:
    return {m.kernel for m in block.modules() if isinstance(m, QuantizedLinear)}


def block_bytes(block: nn.Module) -> int:
    """Parameter + buffer bytes of a (quantized) block copy."""
    return sum(t.numel() * t.element_size() for t in list(block.parameters()) + list(block.buffers()))
