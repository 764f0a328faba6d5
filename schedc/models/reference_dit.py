"""The bundled reference model: a small class-conditional DiT for 8x8 digits.

It follows DiT's `models.py` (adaLN-Zero blocks, patchify, sinusoidal timestep embedding) at a size
that trains on 2 CPU cores in minutes and still makes block compute dominate a sampling step.
Only torch is needed, so the model can be built wherever the runtime runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ReferenceDiTConfig:
    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    hidden_size: int = 96
    depth: int = 12
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10  # label `num_classes` is the null (unconditional) class

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.depth < 1:
            raise ValueError("depth must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x: [N, L, D]; shift, scale: [N, D]
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal frequencies of the (0..999) timestep, then a 2-layer MLP."""

    def __init__(self, hidden_size: int, freq_size: int = 128) -> None:
        super().__init__()
        self.freq_size = freq_size
        self.mlp = nn.Sequential(
            nn.Linear(freq_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_size // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t.float()[:, None] * freqs[None]  # [N, half]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [N, freq_size]
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [N, H, L, Dh]
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # [N, H, L, Dh]
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: the unit schedc caches. forward(x [N,L,D], c [N,D]) -> [N,L,D]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, [grid*grid, dim]."""
    coords = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), 0)
    coords = coords.reshape(2, -1).float()  # [2, L]
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    parts = []
    for axis in range(2):
        args = coords[axis][:, None] * omega[None]  # [L, quarter]
        parts += [torch.sin(args), torch.cos(args)]
    return torch.cat(parts, dim=1)  # [L, dim]


class ReferenceDiT(nn.Module):
    """forward(x [N,C,H,W], timestep [N], class_labels [N]) -> predicted noise [N,C,H,W]."""

    def __init__(self, config: ReferenceDiTConfig = ReferenceDiTConfig()) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.grid = cfg.image_size // cfg.patch_size
        patch_dim = cfg.in_channels * cfg.patch_size**2
        self.x_embedder = nn.Linear(patch_dim, cfg.hidden_size)
        self.t_embedder = TimestepEmbedder(cfg.hidden_size)
        self.y_embedder = nn.Embedding(cfg.num_classes + 1, cfg.hidden_size)
        self.register_buffer("pos_embed", sincos_pos_embed(cfg.hidden_size, self.grid), persistent=False)
        self.blocks = nn.ModuleList(
            DiTBlock(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        self.final_layer = FinalLayer(cfg.hidden_size, cfg.patch_size, cfg.in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        for mlp_layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(mlp_layer.weight, std=0.02)
        # adaLN-Zero: every block starts as the identity
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.config.patch_size
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # [N, gh, gw, C, p, p]
        return x.reshape(n, (h // p) * (w // p), c * p * p)  # [N, L, C*p*p]

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        p, c, g = self.config.patch_size, self.config.in_channels, self.grid
        x = x.reshape(n, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5)  # [N, C, g, p, g, p]
        return x.reshape(n, c, g * p, g * p)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        if timestep.ndim == 0:
            timestep = timestep.expand(x.shape[0])
        h = self.x_embedder(self.patchify(x)) + self.pos_embed  # [N, L, D]
        c = self.t_embedder(timestep) + self.y_embedder(class_labels)  # [N, D]
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final_layer(h, c))  # [N, C, H, W]
