"""Profile + cost + budget -> Problem: plain numpy arrays, so solvers never touch torch.

The error model is additive: reusing block b's cache at step t in a mode adds `gain[b, t]` times
that mode's measured relative error (plus the quantization error the cached computes carry) to the
predicted relative L2 error of the final sample. `gain` is the measured propagation gain (how a unit
of relative error at that block and step moves the final sample), so the objective reads directly as
a predicted final error. Which modes exist and what their error term is comes from the mode
registry (runtime/modes/); this module only holds the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from schedc import costmodel
from schedc.costmodel import FLOP_COST  # noqa: F401  (re-exported: the cost model lives in schedc.costmodel)
from schedc.errors import BudgetError, ProfileError, SolverError
from schedc_runtime.format import COMPUTE_PRECISIONS
from schedc_runtime.modes import REUSE_MODES

if TYPE_CHECKING:
    from schedc.profile import Profile

PRECISION_NAMES = tuple(p for p in COMPUTE_PRECISIONS if p != "native")  # the reduced precisions the format knows


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

    errors[mode][b, k, s, t]: relative error of block b's output at step t when it reuses in `mode`
        the computes at s and before, spaced as the mode's pattern k (`patterns(mode)`); finite only
        where measured (s < t, t - s <= max age, a block that can use the mode), +inf elsewhere.
    gain[b, t]: propagation gain of a unit relative error at block b, step t, to the final sample.
    block_cost[b]: cost of one native computation of block b (any unit; only ratios matter).
    precisions / quant_error[b, t, p] / precision_cost[b, p]: reduced-precision computes, their
        relative error and their cost as a fraction of a native compute.
    max_gap: the longest spacing between computes a multi-compute mode's patterns cover.
    """

    errors: Mapping[str, np.ndarray]
    gain: np.ndarray  # [B, T]
    block_cost: np.ndarray  # [B]
    block_names: tuple[str, ...] = field(default=())
    precisions: tuple[str, ...] = ()
    quant_error: np.ndarray | None = None  # [B, T, P]
    precision_cost: np.ndarray | None = None  # [B, P]
    max_gap: int = 1

    def __post_init__(self) -> None:
        if not self.errors:
            raise SolverError("a problem needs at least one reuse mode")
        g, c = self.gain, self.block_cost
        if g.ndim != 2:
            raise SolverError(f"gain must be [B, T], got {g.shape}")
        b, t = g.shape
        for mode, table in self.errors.items():
            if mode not in REUSE_MODES:
                raise SolverError(f"unknown reuse mode {mode!r}")
            k = len(self.patterns(mode))
            if table.shape != (b, k, t, t):
                raise SolverError(f"{mode} errors must be [B, K, T, T] = {(b, k, t, t)}, got {table.shape}")
            if np.any(np.isnan(table)) or np.any(table[np.isfinite(table)] < 0):
                raise SolverError("errors and gains must be non-negative numbers")
        if c.shape != (b,) or not np.all(c > 0) or not np.all(np.isfinite(c)):
            raise SolverError("block_cost must be [B], finite and positive")
        if not np.all(np.isfinite(g)) or np.any(g < 0):
            raise SolverError("errors and gains must be non-negative numbers")
        if self.block_names and len(self.block_names) != b:
            raise SolverError("block_names must name every block")
        p = len(self.precisions)
        if p and (self.quant_error is None or self.quant_error.shape != (b, t, p)):
            raise SolverError(f"quant_error must be [B, T, P] = {(b, t, p)}")
        if p and (self.precision_cost is None or self.precision_cost.shape != (b, p) or np.any(self.precision_cost <= 0)):
            raise SolverError(f"precision_cost must be [B, P] = {(b, p)} and positive")

    @classmethod
    def residual_only(cls, reuse_error: np.ndarray, gain: np.ndarray, block_cost: np.ndarray, **kwargs) -> "Problem":
        """The vertical slice: compute natively or reuse the residual; reuse_error [B, T, T]."""
        return cls(errors={"residual": reuse_error[:, None]}, gain=gain, block_cost=block_cost, **kwargs)

    # -- shape and modes -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return int(self.gain.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.gain.shape[1])

    @property
    def reuse_modes(self) -> tuple[str, ...]:
        """The allowed reuse modes, in registry order."""
        return tuple(m for m in REUSE_MODES if m in self.errors)

    def patterns(self, mode: str) -> tuple[tuple[int, ...], ...]:
        return REUSE_MODES[mode].patterns(self.max_gap)

    @property
    def is_joint(self) -> bool:
        """More than compute-native / reuse-residual: needs the joint DP."""
        return bool(self.precisions) or self.reuse_modes != ("residual",)

    @property
    def reuse_error(self) -> np.ndarray:
        """[B, T, T] residual reuse error of the last compute (+inf everywhere if not allowed)."""
        if "residual" in self.errors:
            return self.errors["residual"][:, 0]
        return np.full((self.num_blocks, self.num_steps, self.num_steps), np.inf)

    @property
    def weighted_error(self) -> np.ndarray:
        """[B, T, T]: the objective's term for a residual reuse of step s's cache at t (inf stays inf)."""
        e = self.reuse_error
        with np.errstate(invalid="ignore"):
            w = e * self.gain[:, None, :]
        return np.where(np.isinf(e), np.inf, w)

    # -- the error model --------------------------------------------------------------------------
    def quant_of(self, block: int, step: int, precision: str) -> float:
        """Relative error a compute at `precision` leaves in its output (0 at native)."""
        if precision == "native":
            return 0.0
        return float(self.quant_error[block, step, self.precisions.index(precision)])

    def step_error(self, block: int, mode: str, computes: Sequence[int], t: int,
                   precisions: Sequence[str] = (), stand_in: bool = False) -> float:
        """Weighted error of `block` reusing at t in `mode` from its computes (most recent first).

        The reuse also carries the quantization error of every compute it reads, weighted by the
        mode's |coefficient| for it, at that compute's own precision (`precisions`, parallel to
        `computes`; missing ones are native). A multi-compute mode whose spacing the profile did not
        measure is +inf, or with `stand_in` the block's single-compute reuse of the last compute (an
        estimate for ranking schedules, never a prediction).
        """
        spec = REUSE_MODES[mode]
        if mode not in self.errors or len(computes) < spec.history:
            return float("inf")
        used = list(computes[: spec.history])
        gaps = tuple(a - b for a, b in zip(used, used[1:]))
        try:
            k = self.patterns(mode).index(gaps)
        except ValueError:
            if not stand_in:
                return float("inf")
            single = self.single_compute_mode(block)
            return self.step_error(block, single, computes, t, precisions) if single else float("inf")
        e = float(self.errors[mode][block, k, used[0], t])
        if np.isinf(e):
            return e
        read = [*precisions, *["native"] * len(used)]  # zip stops at the computes read
        carry = sum(w * self.quant_of(block, s, p) for w, s, p in zip(spec.carried_weight(gaps, t - used[0]), used, read))
        return float((e + carry) * self.gain[block, t])

    def single_compute_mode(self, block: int) -> str | None:
        """The first reuse mode (registry order) that reads one compute and that `block` can use (residual, else
        output for a block that changes shape); None if it can use none. What a multi-compute reuse falls back on
        where its spacing was not measured."""
        return next((m for m in self.reuse_modes if REUSE_MODES[m].history == 1 and np.isfinite(self.errors[m][block]).any()),
                    None)

    def evaluate_decisions(self, decisions, stand_in: bool = False) -> tuple[float, float]:
        """decisions[t][b] action names -> (predicted error, cost fraction) under the additive model;
        `stand_in`: a reuse at a spacing the profile did not measure counts as a single-compute reuse
        (step_error) instead of +inf, to rank schedules the model cannot predict."""
        total, cost = 0.0, 0.0
        for b in range(self.num_blocks):
            computes: list[int] = []
            precisions: list[str] = []  # parallel to computes, most recent first
            for t in range(self.num_steps):
                action = decisions[t][b]
                if action in REUSE_MODES:
                    if not computes:
                        return float("inf"), float("inf")
                    total += self.step_error(b, action, computes, t, precisions, stand_in)
                    continue
                if action == "native":
                    cost += self.block_cost[b]
                else:
                    p = self.precisions.index(action)
                    cost += self.block_cost[b] * self.precision_cost[b, p]
                    total += float(self.gain[b, t] * self.quant_error[b, t, p])
                computes.insert(0, t)
                precisions.insert(0, action)
        return total, float(cost / (self.num_steps * self.block_cost.sum()))

    def reads_across_precisions(self, decisions) -> bool:
        """Whether some reuse reads computes of different precisions (e.g. a forecast from an int8 compute
        and a native one): valid for the runtime, but outside the space the DP and the ILP search, whose
        state keeps one precision for the computes a reuse reads."""
        for b in range(self.num_blocks):
            precisions: list[str] = []
            for t in range(self.num_steps):
                action = decisions[t][b]
                if action not in REUSE_MODES:
                    precisions.insert(0, action)
                elif len(set(precisions[: REUSE_MODES[action].history])) > 1:
                    return True
        return False

    def cost_of(self, compute: np.ndarray) -> float:
        """compute: bool [T, B]. Cost as a fraction of computing every block at every step."""
        return float((compute * self.block_cost[None, :]).sum() / (self.num_steps * self.block_cost.sum()))

    def predicted_error(self, compute: np.ndarray) -> float:
        """compute: bool [T, B] (reuse = residual). Predicted error; inf if a reuse exceeds the max age."""
        actions = [["native" if c else "residual" for c in row] for row in compute.tolist()]
        return self.evaluate_decisions(actions)[0]

    # -- variants ----------------------------------------------------------------------------------
    def scaled(self, reuse_scale: float, quant_scale: float) -> "Problem":
        """The problem with every reuse error x reuse_scale and quantization errors x quant_scale."""

        def mul(a: np.ndarray | None, k: float) -> np.ndarray | None:
            return None if a is None else np.where(np.isinf(a), np.inf, a * k)

        return replace(self, errors={m: mul(e, reuse_scale) for m, e in self.errors.items()},
                       quant_error=mul(self.quant_error, quant_scale))

    def with_precisions(self, keep: Sequence[str]) -> "Problem":
        """The same problem with the reduced precisions narrowed to `keep` (in this problem's order)."""
        idx = [i for i, p in enumerate(self.precisions) if p in keep]
        return replace(
            self,
            precisions=tuple(self.precisions[i] for i in idx),
            quant_error=self.quant_error[:, :, idx] if idx else None,
            precision_cost=self.precision_cost[:, idx] if idx else None,
        )


def resolve_cost(profile: "Profile", cost: str) -> str:
    """schedc.costmodel.resolve_cost for callers holding a Profile (it reads only profile.meta)."""
    return costmodel.resolve_cost(profile.meta, cost)


def problem_from_profile(profile: "Profile", allow: "set[str] | None" = None, cost: str = "flops") -> Problem:
    """The profile's error model restricted to the `allow`ed options, with a FLOP or latency cost model.

    allow: reuse modes and precisions; None = every precision and every default mode the profile measured
        (opt-in modes such as forecast2 only when named).
    cost: "flops" or "latency" (see schedc.costmodel).
    """
    measured = {*profile.modes, *profile.precisions}
    default = {m for m in profile.modes if REUSE_MODES[m].default} | set(profile.precisions)
    allow = set(default if allow is None else allow)
    unknown = allow - set(REUSE_MODES) - set(PRECISION_NAMES)
    if unknown:
        raise SolverError(f"unknown option(s) {', '.join(sorted(unknown))}: choose from "
                          f"{', '.join([*REUSE_MODES, *PRECISION_NAMES])}")
    missing = allow - measured
    if missing:
        raise ProfileError(f"the profile did not measure {', '.join(sorted(missing))}; re-profile with them")
    modes = [m for m in profile.modes if m in allow]
    if not modes:
        raise SolverError(f"the allowed options need at least one reuse mode ({', '.join(REUSE_MODES)})")
    precisions = tuple(p for p in profile.precisions if p in allow)
    idx = [profile.precisions.index(p) for p in precisions]
    block_cost, ratio = costmodel.block_costs(profile.meta, profile.block_flops, precisions, cost)
    return Problem(
        errors={m: profile.reuse_error(m) for m in modes},
        gain=profile.gain(),
        block_cost=block_cost,
        block_names=tuple(profile.meta.blocks),
        precisions=precisions,
        quant_error=profile.quant_error()[:, :, idx] if precisions else None,
        precision_cost=ratio if precisions else None,
        max_gap=int(profile.meta.forecast_gap),
    )


def problem_like(profile: "Profile", like: Problem) -> Problem:
    """`profile`'s error tables with `like`'s options and costs: the same decisions priced the same at
    another setting of the model (another guidance scale, or the profile retargeted to another step count)."""
    moved = problem_from_profile(profile, set(like.reuse_modes) | set(like.precisions), "flops")
    return replace(moved, block_cost=like.block_cost, precision_cost=like.precision_cost)
