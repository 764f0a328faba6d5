"""First-order forecast (TaylorSeer order 1): the residual extrapolated along the line through the
last two computes, x + d_s + lam (d_s - d_s'), lam = (t - s) / (s - s')."""

from __future__ import annotations

from .base import ReuseMode


class Forecast(ReuseMode):
    def patterns(self, max_gap: int) -> tuple[tuple[int, ...], ...]:
        """Any spacing s - s' of the two computes up to max_gap: the pattern index is s - s' - 1."""
        return tuple((g,) for g in range(1, max_gap + 1))


FORECAST = Forecast(name="forecast", history=2, summary="residual extrapolated linearly from the last two computes")
