"""Sampler settings without torch: schedules record them and the compiler reads them, so they must
import where torch is absent (the compiler path, deployment tooling). The sampler itself is in
`schedc.sampling`, which re-exports everything here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from schedc.errors import SchedcError

NUM_TRAIN_TIMESTEPS = 1000
CfgMode = Literal["batched", "two-call", "none"]
CFG_ORDERS = ("cond-first", "uncond-first")
EVAL_SEED_START = 1_000_000  # held-out (evaluation) seeds start here; calibration-side seeds stay below it


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 50
    guidance_scale: float = 3.0
    cfg: CfgMode = "batched"
    scheduler: str = "ddim"  # "ddim" (schedc's own) or the class name of a diffusers model's own scheduler
    clip_sample: bool = True
    cfg_order: str = "cond-first"  # row order of a batched-CFG call

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"steps must be in 1..{NUM_TRAIN_TIMESTEPS}, got {self.steps}")
        if self.cfg not in ("batched", "two-call", "none"):
            raise ValueError(f"cfg must be 'batched', 'two-call' or 'none', got {self.cfg!r}")
        if self.cfg_order not in CFG_ORDERS:
            raise ValueError(f"cfg_order must be one of {', '.join(CFG_ORDERS)}, got {self.cfg_order!r}")
        if not self.scheduler:
            raise ValueError("scheduler must be named")
        if self.guidance_scale < 0:
            raise ValueError("guidance_scale must be >= 0")

    def with_changes(self, **changes: Any) -> "SamplerConfig":
        """This config with the given settings changed (None keeps one): user overrides of a model's default."""
        try:
            return replace(self, **{k: v for k, v in changes.items() if v is not None})
        except (TypeError, ValueError) as exc:
            raise SchedcError(str(exc)) from None

    def to_dict(self) -> dict:
        return asdict(self)

    def timesteps(self) -> list[int]:
        """schedc's own DDIM timesteps; a diffusers scheduler's come from its adapter (model_timesteps)."""
        if self.scheduler != "ddim":
            raise ValueError(f"the {self.scheduler} scheduler's timesteps come from its model adapter")
        return ddim_timesteps(self.steps)


def ddim_timesteps(steps: int) -> list[int]:
    """Trailing spacing: 999, ..., strictly decreasing, `steps` values."""
    ts = np.round(np.arange(NUM_TRAIN_TIMESTEPS, 0, -NUM_TRAIN_TIMESTEPS / steps)).astype(np.int64) - 1
    return [int(t) for t in ts]
