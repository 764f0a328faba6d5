"""Image quality against the full-compute sample from the same noise and condition.

Samples live in [-1, 1] (data range 2). Every metric is computed per sample and averaged.
SSIM uses a 5x5 Gaussian window (sigma 1.0) because the reference images are 8x8: the usual 11x11
window would not fit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DATA_RANGE = 2.0
PSNR_CAP = 100.0  # identical images: report a finite cap instead of +inf (JSON-friendly)


def rel_l2(test: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[N]: ||test - ref|| / ||ref|| per sample."""
    return (test - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-12)


def psnr(test: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[N] in dB, capped at PSNR_CAP."""
    mse = (test - ref).pow(2).flatten(1).mean(dim=1)
    value = 10.0 * torch.log10(DATA_RANGE**2 / mse.clamp_min(1e-30))
    return value.clamp(max=PSNR_CAP)


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = torch.outer(g, g)  # [size, size]
    return window.expand(channels, 1, size, size).contiguous()


def ssim(test: torch.Tensor, ref: torch.Tensor, window: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """[N] mean SSIM over valid window positions; images [N, C, H, W]."""
    x, y = test.double(), ref.double()
    c = x.shape[1]
    size = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, sigma, c)
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    var_x = F.conv2d(x * x, w, groups=c) - mu_x**2
    var_y = F.conv2d(y * y, w, groups=c) - mu_y**2
    cov = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1).float()


def quality(test: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    test, ref = test.float().clamp(-1, 1), ref.float().clamp(-1, 1)
    return {
        "psnr": float(psnr(test, ref).mean()),
        "ssim": float(ssim(test, ref).mean()),
        "rel_l2": float(rel_l2(test, ref).mean()),
    }


def ideal_speedup(cost: float, nonblock_share: float) -> float:
    """1 / (o + (1 - o) c): the best a schedule at block cost c can do when the rest costs o."""
    denom = nonblock_share + (1.0 - nonblock_share) * cost
    return math.inf if denom <= 0 else 1.0 / denom
