"""Second-order forecast (TaylorSeer order 2, HiCache): the residual extrapolated along the parabola
through the last three computes (Newton backward differences; Lagrange weights for their spacing).

Measured and scheduled for equally spaced computes (s - s' = s' - s''), the spacing TaylorSeer's
finite differences assume; that keeps the error table and the solvers' state small.
"""

from __future__ import annotations

from .base import ReuseMode


class Forecast2(ReuseMode):
    def patterns(self, max_gap: int) -> tuple[tuple[int, ...], ...]:
        return tuple((g, g) for g in range(1, max_gap + 1))


# Opt-in: on the reference DiT the additive model predicts gains from it at budgets <= 0.2 that do not
# happen (README section 2b); `allow` it explicitly until a closed-loop solver checks its picks.
FORECAST2 = Forecast2(name="forecast2", history=3, default=False,
                      summary="residual extrapolated quadratically from the last three computes")
