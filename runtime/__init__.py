"""schedc_runtime: replay a compiled cache schedule inside an unchanged model (torch + pyyaml only)."""

from .format import (
    SCHEDULE_VERSION,
    ModelInfo,
    Schedule,
    ScheduleFormatError,
    dump_schedule,
    load_schedule,
    model_fingerprint,
)
from .hooks import ScheduleHandle, apply_schedule, check_model

__all__ = [
    "SCHEDULE_VERSION",
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
