"""The search's clock: what its rollouts cost per sample, and the work after the search sized to the time left.

Why: after the warm starts and the local search, the finalists are re-ranked on fresh seeds and the pick's
prediction is measured on more (schedc.search, steps 3-4), each with full compute on its seeds. On a slow
model (a 30-step CFG UNet, seconds per rollout) those two alone took ~50 s of a 60 s limit, and the starts
scored whatever the time pushed the solve to 75-86 s. The sizes asked for are kept when they fit; otherwise
both shrink in proportion to what is left, never below a floor that keeps the prediction's standard error
within ~1.4x of the full size's (the stats record the sizes used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

MIN_SELECT_SAMPLES = 32  # fresh seeds the finalists are re-ranked on, at the least
MIN_PREDICT_SAMPLES = 64  # fresh seeds the prediction is measured on, at the least (standard error x1.4 of 128)


@dataclass
class RolloutRate:
    """Seconds per sample of the search's rollouts (and of full compute), measured as it goes: what the
    work after the search will take, so the time limit can leave room for it. Kept per step count: the
    finalists re-ranked afterwards may be the profiled step count's, dearer per sample than the fewer-step
    rollouts that a plain mean would mix in (the bundled model's solve overran 60 s by 2 s that way)."""

    full: float
    by_steps: dict = field(default_factory=dict)  # step count -> [seconds, samples]

    def add(self, seconds: float, samples: int, steps: int = 0) -> None:
        if samples:
            total = self.by_steps.setdefault(steps, [0.0, 0])
            total[0], total[1] = total[0] + seconds, total[1] + samples

    def per_sample(self) -> float:
        return max((sec / n for sec, n in self.by_steps.values()), default=self.full)


@dataclass(frozen=True)
class AfterSearch:
    """The samples run after the search, per setting: `finalists` schedules re-ranked on `select` fresh seeds
    (0 finalists: no re-ranking) and the pick measured on `predict` more, each seed also with full compute."""

    select: int
    predict: int
    finalists: int

    def __post_init__(self) -> None:
        if self.select < 0 or self.predict < 0 or self.finalists < 0:
            raise ValueError(f"after-search sizes must be >= 0, got {self}")

    @property
    def reranks(self) -> bool:
        return self.finalists > 0 and self.select > 0

    def seconds(self, rate: RolloutRate, settings: int = 1) -> float:
        """What it takes at `rate` for `settings` settings (rollouts at the dearest step count seen)."""
        select = self.select if self.reranks else 0
        rollouts = self.finalists * select + self.predict
        return settings * (rate.per_sample() * rollouts + rate.full * (select + self.predict))

    def fitted(self, seconds_left: float, rate: RolloutRate, settings: int = 1) -> "AfterSearch":
        """Shrunk in proportion to fit `seconds_left` where it does not, never below the floors (nor above
        the sizes asked); unchanged where it fits."""
        need = self.seconds(rate, settings)
        if need <= seconds_left or need <= 0:
            return self
        scale = max(seconds_left, 0.0) / need
        return replace(self, select=_shrunk(self.select, scale, MIN_SELECT_SAMPLES),
                       predict=_shrunk(self.predict, scale, MIN_PREDICT_SAMPLES))


def _shrunk(size: int, scale: float, floor: int) -> int:
    return min(size, max(floor, math.floor(size * scale)))


__all__ = ["AfterSearch", "MIN_PREDICT_SAMPLES", "MIN_SELECT_SAMPLES", "RolloutRate"]
