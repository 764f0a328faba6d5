"""schedc_runtime: replay a compiled cache schedule inside an unchanged model (torch + pyyaml only).

The schedule format (`schedc_runtime.format`) needs only pyyaml; the hooks that replay it need torch
and are imported on first use, so compilers and tools can read and write schedules without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .format import (
    SCHEDULE_VERSION,
    ModelInfo,
    Schedule,
    ScheduleFormatError,
    dump_schedule,
    load_schedule,
    model_fingerprint,
)

from .generation import ConcurrentUseError

if TYPE_CHECKING:
    from .hooks import ScheduleHandle, apply_schedule, check_model

_HOOKS = ("ScheduleHandle", "apply_schedule", "check_model")


def __getattr__(name: str) -> Any:
    """The torch-using names, imported lazily (PEP 562)."""
    if name in _HOOKS:
        from . import hooks

        return getattr(hooks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEDULE_VERSION",
    "ConcurrentUseError",
    "ModelInfo",
    "Schedule",
    "ScheduleFormatError",
    "ScheduleHandle",
    "apply_schedule",
    "check_model",
    "dump_schedule",
    "load_schedule",
    "model_fingerprint",
]
