"""The one solver interface: solve(problem, budget, constraints) -> Solution."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem


# the constraints only the ilp solver models (Constraints field names)
DEPLOYMENT = ("last_full", "max_reuse", "max_cache_bytes", "dependencies")


@dataclass(frozen=True)
class Constraints:
    """Deployment constraints. The DP honours first_full and static_precision; the ILP all of them."""

    first_full: int = 1  # the first k steps compute every block (step 0 always does)
    static_precision: bool = False  # each block uses at most one reduced precision (one copy in memory)
    last_full: int = 0  # the last k steps compute every block
    max_reuse: int | None = None  # most consecutive reuses per block
    max_cache_bytes: float | None = None  # bytes of live caches at any step
    cache_bytes: tuple[float, ...] = ()  # bytes of one cache of each block (with max_cache_bytes; () = the profile's)
    dependencies: tuple[tuple[int, int], ...] = ()  # (up, down): if up computes at t, so does down
    time_limit: float = 30.0  # seconds, for search-based solvers

    def __post_init__(self) -> None:
        if self.first_full < 1:
            raise SolverError("first_full must be >= 1: step 0 computes every block")
        if self.last_full < 0 or (self.max_reuse is not None and self.max_reuse < 0) or self.time_limit <= 0:
            raise SolverError("last_full and max_reuse must be >= 0 and the time limit positive")
        if self.max_cache_bytes is not None and self.max_cache_bytes < 0:
            raise SolverError("max_cache_bytes must be >= 0")
        if any(b < 0 for b in self.cache_bytes):
            raise SolverError("cache_bytes must be >= 0 for every block")

    def deployment(self) -> list[str]:
        """The constraints only the ilp solver models that are set, by field name."""
        defaults = Constraints.__dataclass_fields__
        return [name for name in DEPLOYMENT if getattr(self, name) != defaults[name].default]

    def with_cache_bytes(self, cache_bytes: "tuple[float, ...] | list[float]") -> "Constraints":
        """A cache-memory limit needs each block's cache size; the profile knows it, the caller may not."""
        if self.max_cache_bytes is None or self.cache_bytes:
            return self
        if not cache_bytes:
            raise SolverError("max_cache_bytes needs the bytes of one cache of each block: re-profile to record them")
        return replace(self, cache_bytes=tuple(float(x) for x in cache_bytes))


@dataclass(frozen=True)
class Solution:
    compute: np.ndarray  # bool [T, B]: True = compute, False = reuse (residual)
    cost: float  # fraction of full compute
    predicted_error: float  # predicted relative L2 of the final sample
    solver: str
    stats: dict = field(default_factory=dict)
    decisions: tuple[tuple[str, ...], ...] | None = None  # [T][B] action names; None = from `compute`
    # a solver that chose another step count than the profile's: the sampler settings it runs at
    # (SamplerConfig.to_dict()) and the timesteps the model then receives; None = the profile's
    sampling: dict | None = None
    timesteps: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.compute.dtype != np.bool_ or self.compute.ndim != 2:
            raise SolverError("compute must be a bool [T, B] array")
        if not self.compute[0].all():
            raise SolverError("step 0 must compute every block")
        if (self.sampling is None) != (self.timesteps is None):
            raise SolverError("a solution at another step count needs both its sampling settings and its timesteps")
        if self.timesteps is not None and (len(self.timesteps) != self.compute.shape[0]
                                           or self.sampling.get("steps") != self.compute.shape[0]):
            raise SolverError(f"a solution of {self.compute.shape[0]} steps needs that many timesteps and sampler steps")

    def actions(self) -> tuple[tuple[str, ...], ...]:
        """[T][B] action names: compute precisions or reuse modes."""
        if self.decisions is not None:
            return self.decisions
        return tuple(tuple("native" if c else "residual" for c in row) for row in self.compute.tolist())


SolverFn = Callable[[Problem, float, Constraints], Solution]
