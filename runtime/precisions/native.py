"""native: the model's own precision. The trivial part, so every compute action is a registered part."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import NATIVE, Precision


@dataclass(frozen=True)
class Native(Precision):
    name: str = NATIVE
    flop_cost: float = 1.0  # the unit every other precision's cost is measured in

    def quantize_linear(self, linear: nn.Linear) -> nn.Module:
        return linear  # already a copy inside quantize_block; nothing to prepare

    def kernel(self, device: torch.device) -> str:
        return NATIVE

    def weight_bytes(self, linear: nn.Linear) -> int:
        return linear.weight.numel() * linear.weight.element_size()
