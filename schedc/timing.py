"""Wall time of work that may run on an accelerator: synchronise the device before reading the clock.

Why: CUDA kernels run asynchronously, so a perf_counter read right after a call times the launch, not
the work; `schedc profile --measure-latency` and eval's interleaved timing would then see every option
as equally fast on a GPU. On CPU this is perf_counter alone.
"""

from __future__ import annotations

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


__all__ = ["device_of", "synchronize", "timed"]
