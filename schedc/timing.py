"""Wall time of work that may run on an accelerator: synchronise the device before reading the clock.

Why: CUDA kernels run asynchronously, so a perf_counter read right after a call times the launch, not
the work; `schedc profile --measure-latency` and eval's interleaved timing would then see every option
as equally fast on a GPU. On CPU this is perf_counter alone.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch


def device_of(module: torch.nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds `fn()` takes on `device`, including the device work it queued."""
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - started


MIN_MEASURE_SECONDS = 1.0  # one timed measurement runs its work this long at least


def repeats_for(seconds: float, min_seconds: float = MIN_MEASURE_SECONDS) -> int:
    """How many back-to-back runs of work that took `seconds` make one measurement of at least `min_seconds`.

    Why: a 7-step generation of 16 samples on a small UNet takes 0.19 s, and single runs of it scattered by
    ±15% between rounds on an idle 2-core machine: two near-identical schedules then timed 10% apart and decided
    matched-speed comparisons. Timing a second of repeats per measurement averages that jitter out."""
    return max(1, math.ceil(min_seconds / seconds)) if seconds > 0 else 1


__all__ = ["MIN_MEASURE_SECONDS", "device_of", "repeats_for", "synchronize", "timed"]
