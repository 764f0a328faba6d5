"""Image quality against the full-compute sample from the same noise and condition.

Samples live in [-1, 1] (data range 2). Every metric is computed per sample and averaged.
SSIM uses a 5x5 Gaussian window (sigma 1.0) because the reference images are 8x8: the usual 11x11
window would not fit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from schedc.errors import ReferenceSampleError

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
    """Means over samples; psnr_se: the PSNR mean's standard error (per-sample spread / sqrt(N), 0 for one
    sample): how far another set of as many seeds may land from this one."""
    test, ref = test.float().clamp(-1, 1), ref.float().clamp(-1, 1)
    each = psnr(test, ref)  # [N]
    return {
        "psnr": float(each.mean()),
        "psnr_se": float(each.std() / math.sqrt(len(each))) if len(each) > 1 else 0.0,
        "ssim": float(ssim(test, ref).mean()),
        "rel_l2": float(rel_l2(test, ref).mean()),
    }


NOISE_SE = 2.0  # a gap within this many standard errors of the difference is what seed noise gives 95% of the time


def difference_se(se_a: float, se_b: float) -> float:
    """Standard error of the difference of two means measured on independent seed sets."""
    return math.hypot(se_a, se_b)


def within_noise(gap: float, se: float) -> bool:
    """Whether a gap between two means is within NOISE_SE standard errors `se` of their difference."""
    return abs(gap) <= NOISE_SE * se


def prediction_gap(predicted: float, predicted_se: float, measured: float, measured_se: float) -> str:
    """One line on a predicted vs measured PSNR, each with its standard error: whether the gap is more than
    the two seed sets' own noise."""
    gap, se = predicted - measured, difference_se(predicted_se, measured_se)
    within = "within" if within_noise(gap, se) else "more than"
    return (f"predicted {predicted:.2f} ± {predicted_se:.2f} dB, measured {measured:.2f} ± {measured_se:.2f} dB "
            f"(± one standard error): the gap {gap:+.2f} dB is {within} two standard errors of the difference "
            f"({NOISE_SE * se:.2f} dB), {'what seed noise alone explains' if within == 'within' else 'more than seed noise explains'}")


def ideal_speedup(cost: float, nonblock_share: float) -> float:
    """1 / (o + (1 - o) c): the best a schedule at block cost c can do when the rest costs o."""
    denom = nonblock_share + (1.0 - nonblock_share) * cost
    return math.inf if denom <= 0 else 1.0 / denom


REFERENCE_NOISE_FACTOR = 20.0  # a finished sample more than 20x the starting noise's magnitude has diverged


def check_reference(adapter: Any, full: torch.Tensor, inputs: Any) -> None:
    """Refuse to measure against a full-compute reference that is not a sample of the model's data.

    A diverging sampler (e.g. DPM-Solver++ on a cosine schedule without lambda_min_clipped) gives
    samples in the thousands; every schedule then "matches" it at ~100 dB. The reference must be
    finite and inside the model's sample range (or, when unknown, within REFERENCE_NOISE_FACTOR x the
    starting noise). adapter: anything with `sample_range`; inputs: anything with `noise`.
    """
    if not torch.isfinite(full).all():
        raise ReferenceSampleError("the full-compute reference has NaN or inf values: the model or its sampler diverges, "
                             "so no quality figure against it means anything")
    lo, hi = float(full.min()), float(full.max())
    if adapter.sample_range is not None:
        a, b = adapter.sample_range
        slack = 0.05 * (b - a)
        if lo < a - slack or hi > b + slack:
            raise ReferenceSampleError(f"the full-compute reference spans [{lo:.3g}, {hi:.3g}], outside the model's sample "
                                 f"range [{a:g}, {b:g}]: the sampler diverges; check its scheduler settings")
        return
    bound = REFERENCE_NOISE_FACTOR * float(inputs.noise.abs().max())
    if max(abs(lo), abs(hi)) > bound:
        raise ReferenceSampleError(f"the full-compute reference reaches {max(abs(lo), abs(hi)):.3g}, over "
                             f"{REFERENCE_NOISE_FACTOR:g}x the starting noise ({bound:.3g}): the sampler diverges; "
                             "check its scheduler settings")
