"""Profile + cost + budget -> Problem: plain numpy arrays, so solvers never touch torch.

The error model is additive: choosing to reuse block b's cache made at step s at a later step t adds
`gain[b, t] * reuse_error[b, s, t]` to the predicted relative L2 error of the final sample. `gain` is
the measured propagation gain (how a unit of relative error at that block and step moves the final
sample), so the objective reads directly as a predicted final error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from schedc import costmodel
from schedc.costmodel import FLOP_COST  # noqa: F401  (re-exported: the cost model lives in schedc.costmodel)
from schedc.errors import BudgetError, SolverError

if TYPE_CHECKING:
    from schedc.profile import Profile


def check_budget(budget: float) -> float:
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise BudgetError(f"budget must be a number in (0, 1], got {budget!r}") from None
    if not (0.0 < value <= 1.0) or not np.isfinite(value):
        raise BudgetError(f"budget must be in (0, 1] (fraction of full compute), got {budget!r}")
    return value


@dataclass(frozen=True)
class Problem:
    """A cache-scheduling problem for B blocks over T steps.

    reuse_error[b, s, t]: relative error of block b's output at step t when it reuses the cache made
        at step s (only s < t and t - s <= max_age are finite; everything else is +inf).
    gain[b, t]: propagation gain of a unit relative error at block b, step t, to the final sample.
    block_cost[b]: cost of one computation of block b (any unit; only ratios matter).
    """

    reuse_error: np.ndarray  # [B, T, T]
    gain: np.ndarray  # [B, T]
    block_cost: np.ndarray  # [B]
    block_names: tuple[str, ...] = field(default=())
    # the joint decisions (issue: cache + precision); None/() = residual reuse and native compute only
    output_error: np.ndarray | None = None  # [B, T, T] output (DeepCache) reuse
    forecast_error: np.ndarray | None = None  # [B, G, T, T]: [b, s - s' - 1, s, t] forecast reuse
    precisions: tuple[str, ...] = ()  # reduced precisions the solver may choose
    quant_error: np.ndarray | None = None  # [B, T, P] relative error of computing at precisions[p]
    precision_cost: np.ndarray | None = None  # [B, P] cost of a compute at precisions[p] / native cost
    allow_residual: bool = True

    def __post_init__(self) -> None:
        e, g, c = self.reuse_error, self.gain, self.block_cost
        if e.ndim != 3 or e.shape[1] != e.shape[2]:
            raise SolverError(f"reuse_error must be [B, T, T], got {e.shape}")
        b, t, _ = e.shape
        if g.shape != (b, t):
            raise SolverError(f"gain must be [B, T] = {(b, t)}, got {g.shape}")
        if c.shape != (b,) or not np.all(c > 0):
            raise SolverError("block_cost must be [B] and positive")
        if np.any(np.isnan(e)) or np.any(e[np.isfinite(e)] < 0) or np.any(g < 0):
            raise SolverError("errors and gains must be non-negative numbers")
        if self.block_names and len(self.block_names) != b:
            raise SolverError("block_names must name every block")
        if self.output_error is not None and self.output_error.shape != e.shape:
            raise SolverError(f"output_error must be [B, T, T] = {e.shape}")
        if self.forecast_error is not None and (self.forecast_error.ndim != 4 or self.forecast_error.shape[0::2] != (b, t)):
            raise SolverError("forecast_error must be [B, G, T, T]")
        p = len(self.precisions)
        if p and (self.quant_error is None or self.quant_error.shape != (b, t, p)):
            raise SolverError(f"quant_error must be [B, T, P] = {(b, t, p)}")
        if p and (self.precision_cost is None or self.precision_cost.shape != (b, p) or np.any(self.precision_cost <= 0)):
            raise SolverError(f"precision_cost must be [B, P] = {(b, p)} and positive")

    @property
    def is_joint(self) -> bool:
        """More than compute-native / reuse-residual: needs the joint DP."""
        return bool(self.precisions) or self.output_error is not None or self.forecast_error is not None or not self.allow_residual

    @property
    def reuse_modes(self) -> tuple[str, ...]:
        modes = ("residual",) if self.allow_residual else ()
        if self.output_error is not None:
            modes += ("output",)
        if self.forecast_error is not None:
            modes += ("forecast",)
        return modes

    def carried_quant_error(self, block: int, step: int, precision: str) -> float:
        """Relative error a compute at `precision` leaves in its output (0 at native)."""
        if precision == "native":
            return 0.0
        return float(self.quant_error[block, step, self.precisions.index(precision)])

    def step_error(self, block: int, mode: str, prev: int | None, src: int, t: int, precision: str = "native") -> float:
        """Weighted error of block `block` reusing at t in `mode` from its computes at src (and prev).

        A cache made at reduced precision carries that compute's error into every reuse: once for
        residual/output; for forecast, extrapolating by lam = (t - src) / (src - prev), (1 + lam) times
        the error at src plus lam times the error at prev, estimated at src's precision.
        """
        carry = self.carried_quant_error(block, src, precision)
        if mode == "residual":
            e = self.reuse_error[block, src, t] + carry if self.allow_residual else np.inf
        elif mode == "output" and self.output_error is not None:
            e = self.output_error[block, src, t] + carry
        elif mode == "forecast" and self.forecast_error is not None and prev is not None:
            gap = src - prev - 1
            lam = (t - src) / (src - prev)
            e = (self.forecast_error[block, gap, src, t] + (1 + lam) * carry
                 + lam * self.carried_quant_error(block, prev, precision)) if 0 <= gap < self.forecast_error.shape[1] else np.inf
        else:
            e = np.inf
        return float(e) if np.isinf(e) else float(e * self.gain[block, t])

    def evaluate_decisions(self, decisions) -> tuple[float, float]:
        """decisions[t][b] action names -> (predicted error, cost fraction) under the additive model."""
        total, cost = 0.0, 0.0
        for b in range(self.num_blocks):
            prev = last = None
            last_precision = "native"
            for t in range(self.num_steps):
                action = decisions[t][b]
                if action in ("residual", "output", "forecast"):
                    if last is None:
                        return float("inf"), float("inf")
                    total += self.step_error(b, action, prev, last, t, last_precision)
                    continue
                if action == "native":
                    cost += self.block_cost[b]
                else:
                    p = self.precisions.index(action)
                    cost += self.block_cost[b] * self.precision_cost[b, p]
                    total += float(self.gain[b, t] * self.quant_error[b, t, p])
                prev, last, last_precision = last, t, action
        return total, float(cost / (self.num_steps * self.block_cost.sum()))

    @property
    def num_blocks(self) -> int:
        return int(self.reuse_error.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.reuse_error.shape[1])

    @property
    def weighted_error(self) -> np.ndarray:
        """[B, T, T]: the objective's term for reusing the cache of step s at step t (inf stays inf)."""
        with np.errstate(invalid="ignore"):
            w = self.reuse_error * self.gain[:, None, :]
        return np.where(np.isinf(self.reuse_error), np.inf, w)

    def cost_of(self, compute: np.ndarray) -> float:
        """compute: bool [T, B]. Cost as a fraction of computing every block at every step."""
        return float((compute * self.block_cost[None, :]).sum() / (self.num_steps * self.block_cost.sum()))

    def predicted_error(self, compute: np.ndarray) -> float:
        """compute: bool [T, B] (reuse = residual). Predicted error; inf if a reuse exceeds the max age."""
        actions = [["native" if c else "residual" for c in row] for row in compute.tolist()]
        return self.evaluate_decisions(actions)[0]

def resolve_cost(profile: "Profile", cost: str) -> str:
    """schedc.costmodel.resolve_cost for callers holding a Profile (it reads only profile.meta)."""
    return costmodel.resolve_cost(profile.meta, cost)


def problem_from_profile(profile: "Profile", allow: "set[str] | None" = None, cost: str = "flops") -> Problem:
    """The profile's error model restricted to the `allow`ed options, with a FLOP or latency cost model.

    allow: reuse modes and precisions (residual, output, forecast, int8, fp8, int4w); None = all measured.
    cost: "flops" charges int8/fp8 half a native compute (2x tensor-core throughput) and int4w a full
        one (weight-only saves memory, not FLOPs); "latency" charges what `schedc profile` timed
        on the profiling device.
    """
    from schedc.errors import ProfileError

    measured = {"residual", "output", "forecast", *profile.precisions}
    allow = set(measured if allow is None else allow)
    unknown = allow - {"residual", "output", "forecast", "int8", "fp8", "int4w"}
    if unknown:
        raise SolverError(f"unknown option(s) in --allow: {', '.join(sorted(unknown))}")
    missing = allow - measured
    if missing:
        raise ProfileError(f"the profile did not measure {', '.join(sorted(missing))}; re-profile with them")
    if not allow & {"residual", "output", "forecast"}:
        raise SolverError("--allow needs at least one reuse mode (residual, output or forecast)")
    precisions = tuple(p for p in profile.precisions if p in allow)
    idx = [profile.precisions.index(p) for p in precisions]
    if cost == "flops":
        ratio = np.array([[FLOP_COST[p] for p in precisions]] * profile.num_blocks).reshape(profile.num_blocks, len(precisions))
        block_cost = profile.block_flops.copy()
    elif cost == "latency":
        table = profile.meta.get("latency")
        if not table:
            raise ProfileError("the profile has no latency table: re-run `schedc profile` without --no-latency")
        native = np.asarray(table["native"], dtype=float)
        ratio = np.stack([np.asarray(table[p], dtype=float) / native for p in precisions], axis=1) if precisions \
            else np.zeros((profile.num_blocks, 0))
        block_cost = native
    else:
        raise SolverError(f"unknown cost model {cost!r}: choose flops or latency")
    return Problem(
        reuse_error=profile.reuse_error("residual"),
        gain=profile.gain(),
        block_cost=block_cost,
        block_names=tuple(profile.meta["blocks"]),
        output_error=profile.reuse_error("output") if "output" in allow else None,
        forecast_error=profile.reuse_error("forecast") if "forecast" in allow else None,
        precisions=precisions,
        quant_error=profile.quant_error()[:, :, idx] if precisions else None,
        precision_cost=ratio if precisions else None,
        allow_residual="residual" in allow,
    )
