"""What model-in-the-loop solvers get beyond the Problem: the profile and a way to run the model.

Model-free solvers see only numbers (Problem, budget, Constraints). The learned solver and the
closed-loop refinement also roll the model out on calibration inputs; they receive this typed context
instead of reading ad-hoc attributes, and the model is loaded only when one of them asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from schedc.errors import SolverError
from schedc.profile import Profile

if TYPE_CHECKING:
    from schedc.models.adapter import ModelAdapter


@dataclass(frozen=True)
class SolveContext:
    """profile: the profile the Problem was built from (None: the one `compile_schedule` compiles); its
        calibration seeds are the only inputs a solver may run (the search also runs fresh seeds right after
        them, which its schedule records as calibration seeds), so evaluation's seeds stay disjoint.
    adapter / adapter_loader: the model, or how to load it; neither = the model the profile recorded.
    samples: calibration samples per rollout; None = the solver's default (learned 4, refine 8).
    iterations, seed: training rollouts and seed of the learned router (seed: of the search's moves too).
    evaluations: local-search rollouts of the closed-loop search; None = its default.
    progress: show progress bars.
    """

    profile: Profile | None = None
    adapter: "ModelAdapter | None" = None
    adapter_loader: "Callable[[], ModelAdapter] | None" = None
    samples: int | None = None
    iterations: int = 60
    evaluations: int | None = None
    warm_starts: tuple = ()  # decisions grids [T][B] the search also starts from (e.g. a lower budget's schedule)
    vary_steps: bool = False  # the search also tries fewer sampler steps at the same ideal time (schedc.step_settings)
    seed: int = 0
    progress: bool = True
    # the same model at other guidance scales (same step count and seeds): the schedule is scored at all of
    # them and `objective` (schedc.objectives: mean or worst) combines the scores (`schedc solve --for`)
    settings: tuple = ()
    objective: str = "mean"
    # re-rank the search's winner against its best starts on fresh seeds and keep a local-search result only
    # if it leads confidently (schedc.selection; the winner's curse, README section 11b); False: `--no-confirm`
    confirm: bool = True
    # the search also stops once the wall clock passes this many time limits (schedc.search_time.WALL_GUARD; then
    # its schedule depends on the machine's load); None = that default. A bench whose schedules the charged clock
    # under-prices on this machine (int8 computes: charged as native, run far slower on this CPU) raises it
    wall_guard: float | None = None

    def __post_init__(self) -> None:
        if self.profile is not None and not isinstance(self.profile, Profile):
            raise SolverError(f"a solve context needs the Profile, got {type(self.profile).__name__}")
        if self.adapter is not None and self.adapter_loader is not None:
            raise SolverError("give a solve context either an adapter or an adapter_loader, not both")
        if self.samples is not None and self.samples < 1:
            raise SolverError(f"a solve context's samples must be >= 1, got {self.samples}")
        if not isinstance(self.warm_starts, tuple) or any(not isinstance(g, tuple) for g in self.warm_starts):
            raise SolverError("a solve context's warm_starts must be a tuple of decisions grids (tuples of rows)")
        if self.evaluations is not None and self.evaluations < 0:
            raise SolverError(f"a solve context's evaluations must be >= 0, got {self.evaluations}")
        if not isinstance(self.settings, tuple) or any(not isinstance(p, Profile) for p in self.settings):
            raise SolverError("a solve context's settings must be a tuple of Profiles")
        from schedc.objectives import get_objective

        get_objective(self.objective)
        if self.wall_guard is not None and not self.wall_guard >= 1.0:
            raise SolverError(f"a solve context's wall_guard must be >= 1 (time limits), got {self.wall_guard}")
        if self.iterations < 1:
            raise SolverError(f"a solve context's iterations must be >= 1, got {self.iterations}")

    def for_profile(self, profile: Profile) -> "SolveContext":
        """This context bound to `profile`; refused if it was built for another one."""
        if self.profile is None:
            return replace(self, profile=profile)
        if self.profile is not profile and self.profile.digest() != profile.digest():
            raise SolverError("the solve context was built for another profile: build it for the profile being compiled")
        return self

    def model(self) -> "ModelAdapter":
        """The adapter, loading it (each call) when only a loader or the profile's record is given."""
        if self.adapter is not None:
            return self.adapter
        if self.adapter_loader is not None:
            return self.adapter_loader()
        from schedc.models import load_recorded

        return load_recorded(self.bound_profile.meta)

    @property
    def bound_profile(self) -> Profile:
        if self.profile is None:
            raise SolverError("the solve context names no profile: give it the profile the problem was built from")
        return self.profile

    def calibration_seeds(self, default_samples: int) -> list[int]:
        """The first `samples` (or `default_samples`) of the profile's calibration seeds."""
        return list(self.bound_profile.meta.calibration_seeds[: self.samples or default_samples])
