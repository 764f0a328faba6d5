"""Speed-matched comparison: the best schedc schedule that runs at least as fast as a baseline.

Comparing at equal *budget* flatters schedc when its runtime costs more than the cost model charges
(reuse bookkeeping, forecast's elementwise ops): at the same budget it is a few percent slower than
fewer steps or uniform refresh. This module compares at equal *measured speed* instead:

1. solve the schedc solver on a grid of budgets (cheap: the DP takes 0.02-1 s per budget);
2. time full compute, two grid points and the no-block run interleaved: the non-block share o (for
   the ideal speedup and the fewer-steps baseline) and measured/ideal at those points;
3. per baseline: time it against full compute, predict every candidate's speed as ideal x
   measured/ideal (interpolated in budget between the points timed so far) and try the highest
   budget predicted to be at least as fast;
4. verify head to head: full, the baseline and the candidate timed in turn in each round (same
   process, order rotating); passing needs the median over rounds of baseline time / candidate time
   >= 1 and the candidate's median speedup >= the baseline's. Every verification adds a timed point
   to the predictions; a failing candidate moves the search to lower budgets, a passing one to
   higher, until no untried budget between the best pass and the lowest failure is predicted to
   pass or the attempts run out;
5. quality of the accepted candidate and of the baseline vs full compute on held-out seeds.

When no candidate passes, the result says so (`matched=False`) and reports the fastest one tried.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from schedc.compare import ilp_options
from schedc.errors import SchedcError, ScheduleError
from schedc.evaluate import (BASELINES, EvalConfig, baseline_schedule, block_cost, generate_with, interleaved_times,
                             time_interleaved)
from schedc.metrics import ideal_speedup, quality
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.problem import check_budget, problem_from_profile, resolve_cost
from schedc.profile import Profile
from schedc.sampling import SamplerConfig
from schedc.schedule import build_schedule, schedule_from_solution
from schedc.solvers import Constraints, get_solver
from schedc_runtime import Schedule, ScheduleFormatError, check_model

DEFAULT_GRID = tuple(round(0.10 + 0.025 * i, 4) for i in range(31))  # 0.100, 0.125, ..., 0.850
COST_MODELS = ("auto", "flops", "latency")
Log = Callable[[str], None]


@dataclass(frozen=True)
class BaselineSpec:
    """A baseline as evaluate.py builds it (`name` at block FLOP cost `budget`)."""

    name: str
    budget: float

    def __post_init__(self) -> None:
        if self.name not in BASELINES:
            raise SchedcError(f"unknown baseline {self.name!r}: choose one of {', '.join(BASELINES)}")
        check_budget(self.budget)


@dataclass(frozen=True)
class MatchConfig:
    """How to search and time. `held_out.repeats` is the number of head-to-head rounds per verification."""

    solver: str = "dp"
    cost: str = "auto"  # schedc's cost model: auto = latency when the profile has it, else flops
    allow: tuple[str, ...] | None = None  # decision set; None = all profiled (the ilp: no forecast)
    budgets: tuple[float, ...] = DEFAULT_GRID  # the schedc budgets searched
    calibration_budgets: tuple[float, ...] = (0.2, 0.5)  # grid points timed for measured/ideal
    calibration_repeats: int = 5  # rounds of the calibration and of each baseline's target timing
    max_attempts: int = 6  # head-to-head verifications per baseline
    held_out: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        get_solver(self.solver)  # unknown solver: fail before any work
        if self.solver in BASELINES:
            raise SchedcError(f"{self.solver!r} is a baseline, not a schedc solver")
        if self.cost not in COST_MODELS:
            raise SchedcError(f"cost model must be one of {', '.join(COST_MODELS)}, got {self.cost!r}")
        if not self.budgets or not self.calibration_budgets:
            raise SchedcError("the budget grid and the calibration budgets must not be empty")
        for budget in (*self.budgets, *self.calibration_budgets):
            check_budget(budget)
        if self.calibration_repeats < 1 or self.max_attempts < 1:
            raise SchedcError("calibration_repeats and max_attempts must be >= 1")


@dataclass(frozen=True)
class Quality:
    """Quality vs full compute from the same noise (held-out seeds)."""

    psnr: float
    ssim: float
    rel_l2: float
    class_acc: float | None  # None: the model has no judge (a local diffusers folder)

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.psnr, self.ssim, self.rel_l2, self.class_acc or 0.0)):
            raise SchedcError("quality metrics must be finite")
        if self.rel_l2 < 0 or not 0.0 <= (self.class_acc or 0.0) <= 1.0:
            raise SchedcError("rel_l2 must be >= 0 and class accuracy in [0, 1]")


@dataclass(frozen=True)
class Attempt:
    """One head-to-head verification of a candidate budget against the baseline."""

    budget: float
    predicted_speedup: float  # what the search expected (ideal x measured/ideal so far)
    baseline_speedup: float  # median over rounds of full time / baseline time
    schedc_speedup: float  # median over rounds of full time / candidate time
    ratio: float  # median over rounds of baseline time / candidate time (> 1: candidate faster)
    rounds: int

    def __post_init__(self) -> None:
        check_budget(self.budget)
        if min(self.baseline_speedup, self.schedc_speedup, self.ratio) <= 0 or self.rounds < 1:
            raise SchedcError("speedups and ratios must be positive and rounds >= 1")

    @property
    def passed(self) -> bool:
        """At least as fast by both readings of the same rounds, so the table can never contradict it."""
        return self.ratio >= 1.0 and self.schedc_speedup >= self.baseline_speedup


@dataclass(frozen=True)
class MatchResult:
    """The speed-matched pair. Speedups come from the accepted attempt's head-to-head rounds."""

    baseline: str
    baseline_budget: float
    baseline_steps: int
    baseline_cost: float  # block FLOPs as a fraction of full compute
    baseline_quality: Quality
    solver: str
    schedc_budget: float  # the budget the schedc solver was given (in its cost model)
    schedc_cost: float  # block FLOPs as a fraction of full compute
    schedc_quality: Quality
    attempts: tuple[Attempt, ...]
    matched: bool  # some candidate verified at least as fast; False = the fastest one tried is reported

    def __post_init__(self) -> None:
        BaselineSpec(self.baseline, self.baseline_budget)
        check_budget(self.schedc_budget)
        if not self.attempts:
            raise SchedcError("a match needs at least one head-to-head attempt")
        if self.matched != any(a.passed for a in self.attempts):
            raise SchedcError("matched must say whether any attempt passed")
        accepted = self.accepted
        if accepted.budget != self.schedc_budget:
            raise SchedcError("the reported schedc budget must be the accepted attempt's")
        if self.matched and not accepted.passed:
            raise SchedcError("a matched result must report a passing attempt")

    @property
    def accepted(self) -> Attempt:
        """The highest passing budget; without a pass, the lowest (fastest) budget tried."""
        passing = [a for a in self.attempts if a.passed]
        if passing:
            return max(passing, key=lambda a: a.budget)
        return min(self.attempts, key=lambda a: a.budget)

    @property
    def baseline_speedup(self) -> float:
        return self.accepted.baseline_speedup

    @property
    def schedc_speedup(self) -> float:
        return self.accepted.schedc_speedup

    @property
    def delta_psnr(self) -> float:
        return self.schedc_quality.psnr - self.baseline_quality.psnr

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attempts"] = [{**asdict(a), "passed": a.passed} for a in self.attempts]
        d.update(baseline_speedup=self.baseline_speedup, schedc_speedup=self.schedc_speedup,
                 head_to_head_ratio=self.accepted.ratio, delta_psnr=self.delta_psnr)
        return d


@dataclass(frozen=True)
class Candidate:
    """A schedc schedule on the budget grid, with its ideal speedup under its own cost model."""

    budget: float
    model_cost: float  # the solution's cost in the cost model it was solved with
    flop_cost: float
    ideal: float
    schedule: Schedule


class SpeedMatcher:
    """Shared work for matching many baselines on one model and profile: the solved grid, the
    held-out full-compute reference, the non-block share and the measured/ideal calibration."""

    def __init__(self, adapter: ModelAdapter, profile: Profile, config: MatchConfig = MatchConfig(),
                 log: Log = lambda _: None) -> None:
        self.adapter, self.profile, self.config, self.log = adapter, profile, config, log
        held = config.held_out
        seeds = held.seeds()
        shared = set(profile.meta.calibration_seeds) & set(seeds)
        if shared:
            raise SchedcError(f"held-out seeds overlap the profile's calibration seeds ({len(shared)} shared)")
        self.sampler = SamplerConfig(**profile.meta.sampler)
        self.cost_model = resolve_cost(profile, config.cost)
        self.block_flops, _ = adapter.flops()
        self.full_schedule = build_schedule(profile, np.ones((profile.num_steps, profile.num_blocks), dtype=bool),
                                            {"solver": "full"}, self.sampler)
        try:  # a profile of another model: say so before any work
            check_model(adapter.model, self.full_schedule)
        except ScheduleFormatError as exc:
            raise ScheduleError(str(exc)) from None
        self.inputs = adapter.make_inputs(seeds)
        self.timing_inputs: GenerationInputs = adapter.make_inputs(seeds[: held.timing_batch])
        log(f"full compute on {len(seeds)} held-out samples (seeds {seeds[0]}..{seeds[-1]})")
        self.full, _ = generate_with(adapter, None, self.inputs, held.batch_size, self.sampler)
        self._solve_grid()
        self._calibrate()

    # -- setup ----------------------------------------------------------------------------------
    def _solve_grid(self) -> None:
        cfg = self.config
        allow = set(cfg.allow) if cfg.allow is not None else None
        if allow is None and cfg.solver == "ilp":
            allow = ilp_options(self.profile)
        problem = problem_from_profile(self.profile, allow, self.cost_model)
        solve = get_solver(cfg.solver)
        solved: dict[float, tuple[float, Schedule]] = {}
        for budget in sorted(set(cfg.budgets) | set(cfg.calibration_budgets)):
            try:
                solution = solve(problem, budget, Constraints())
            except SchedcError as exc:  # e.g. below what the cache age limit allows
                self.log(f"budget {budget:.3f}: no schedule ({exc})")
                continue
            extra = {"cost_model": self.cost_model, "allowed": sorted(allow) if allow else "all profiled"}
            schedule = schedule_from_solution(self.profile, solution, budget, extra)
            solved[budget] = (solution.cost, schedule)
        if not solved:
            raise SchedcError(f"{cfg.solver} found no schedule at any budget of the grid")
        self._solved = solved
        self.log(f"{cfg.solver} ({self.cost_model} cost) solved at {len(solved)} budgets "
                 f"{min(solved):.3f}..{max(solved):.3f}")

    def _calibrate(self) -> None:
        """Non-block share o and measured/ideal at the calibration budgets, from one interleaved run."""
        points = [b for b in self.config.calibration_budgets if b in self._solved]
        if not points:
            raise SchedcError("no calibration budget has a schedule")
        variants: dict[str, Schedule | None] = {"full": None}
        variants.update({f"cal{b}": self._solved[b][1] for b in points})
        self.log(f"calibrating measured/ideal at budgets {', '.join(f'{b:.3f}' for b in points)} "
                 f"({self.config.calibration_repeats} rounds)")
        speedups, self.full_seconds = time_interleaved(self.adapter, variants, self.timing_inputs,
                                                       self.config.calibration_repeats, self.sampler)
        self.nonblock_share = 1.0 / speedups["skip"]
        self.candidates = tuple(
            Candidate(b, cost, block_cost(s, self.block_flops, self.sampler.steps),
                      ideal_speedup(cost, self.nonblock_share), s)
            for b, (cost, s) in sorted(self._solved.items()) if b in self.config.budgets
        )
        if not self.candidates:
            raise SchedcError(f"{self.config.solver} found no schedule on the budget grid")
        ideal = {b: ideal_speedup(self._solved[b][0], self.nonblock_share) for b in points}
        self.calibration = tuple((b, speedups[f"cal{b}"] / ideal[b]) for b in points)
        self.observed: dict[float, list[float]] = {b: [f] for b, f in self.calibration}  # measured/ideal
        self.log("non-block share {:.3f}; measured/ideal {}".format(
            self.nonblock_share, ", ".join(f"{f:.3f} at {b:.3f}" for b, f in self.calibration)))

    # -- prediction -----------------------------------------------------------------------------
    def factor(self, budget: float) -> float:
        """measured/ideal at `budget`: linear between the budgets timed so far (calibration and every
        verification, median per budget), constant outside them, at most 1 (a schedule cannot beat
        its ideal; a higher reading is timing noise)."""
        xs = sorted(self.observed)
        return min(1.0, float(np.interp(budget, xs, [statistics.median(self.observed[x]) for x in xs])))

    def predicted_speedup(self, candidate: Candidate) -> float:
        """ideal x measured/ideal, never above that of a lower budget (more budget is never faster)."""
        return min(c.ideal * self.factor(c.budget) for c in self.candidates if c.budget <= candidate.budget)

    def observe(self, candidate: Candidate, speedup: float) -> None:
        """A measured speedup of `candidate` refines the predictions of every later search."""
        self.observed.setdefault(candidate.budget, []).append(speedup / candidate.ideal)

    # -- matching -------------------------------------------------------------------------------
    def baseline(self, spec: BaselineSpec) -> Schedule:
        return baseline_schedule(spec.name, self.full_schedule, spec.budget, self.nonblock_share, self.adapter)

    def head_to_head(self, baseline: Schedule, candidate: Candidate, predicted: float) -> Attempt:
        """Full, baseline and candidate in turn each round; medians of within-round ratios."""
        rounds = self.config.held_out.repeats
        times = interleaved_times(self.adapter, {"full": None, "baseline": baseline, "schedc": candidate.schedule},
                                  self.timing_inputs, rounds, self.sampler)

        def median_ratio(num: str, den: str) -> float:
            return statistics.median(n / d for n, d in zip(times[num], times[den]))

        return Attempt(budget=candidate.budget, predicted_speedup=predicted,
                       baseline_speedup=median_ratio("full", "baseline"), schedc_speedup=median_ratio("full", "schedc"),
                       ratio=median_ratio("baseline", "schedc"), rounds=rounds)

    def match(self, spec: BaselineSpec) -> MatchResult:
        """The highest-budget candidate verified at least as fast as `spec`, with both qualities."""
        cfg = self.config
        baseline = self.baseline(spec)
        speedups, _ = time_interleaved(self.adapter, {"full": None, "baseline": baseline}, self.timing_inputs,
                                       cfg.calibration_repeats, self.sampler)
        targets = [speedups["baseline"]]  # the baseline's measured speedups so far (median = target)
        target = targets[0]
        self.log(f"{spec.name} @ {spec.budget:.2f}: {baseline.num_steps} steps, measured {target:.2f}x")
        by_budget = {c.budget: c for c in self.candidates}
        attempts: list[Attempt] = []
        best_pass: float | None = None
        lowest_fail: float | None = None
        while len(attempts) < cfg.max_attempts:
            open_budgets = [b for b in by_budget if (best_pass is None or b > best_pass)
                            and (lowest_fail is None or b < lowest_fail)]
            if not open_budgets:
                break
            target = statistics.median(targets)
            fast = [b for b in open_budgets if self.predicted_speedup(by_budget[b]) >= target]
            if fast:
                budget = max(fast)
            elif best_pass is None:
                budget = min(open_budgets)  # nothing is predicted fast enough: try the fastest there is
            else:
                break  # nothing above the best pass is predicted to pass
            candidate = by_budget[budget]
            predicted = self.predicted_speedup(candidate)
            attempt = self.head_to_head(baseline, candidate, predicted)
            attempts.append(attempt)
            self.log(f"  schedc @ {budget:.3f}: predicted {predicted:.2f}x, head to head {attempt.schedc_speedup:.2f}x "
                     f"vs {attempt.baseline_speedup:.2f}x (ratio {attempt.ratio:.3f}) -> "
                     f"{'pass' if attempt.passed else 'slower'}")
            self.observe(candidate, attempt.schedc_speedup)
            targets.append(attempt.baseline_speedup)
            if attempt.passed:
                best_pass = budget
            else:
                lowest_fail = budget
        matched = best_pass is not None
        accepted = max(a.budget for a in attempts if a.passed) if matched else min(a.budget for a in attempts)
        candidate = by_budget[accepted]
        held = cfg.held_out
        base_samples, _ = generate_with(self.adapter, baseline, self.inputs, held.batch_size, self.sampler)
        ours, _ = generate_with(self.adapter, candidate.schedule, self.inputs, held.batch_size, self.sampler)
        return MatchResult(
            baseline=spec.name, baseline_budget=spec.budget, baseline_steps=baseline.num_steps,
            baseline_cost=block_cost(baseline, self.block_flops, self.sampler.steps),
            baseline_quality=self._quality(base_samples), solver=cfg.solver, schedc_budget=accepted,
            schedc_cost=candidate.flop_cost, schedc_quality=self._quality(ours), attempts=tuple(attempts),
            matched=matched,
        )

    def _quality(self, samples: torch.Tensor) -> Quality:
        q = quality(self.adapter.images(samples), self.adapter.images(self.full))
        return Quality(psnr=q["psnr"], ssim=q["ssim"], rel_l2=q["rel_l2"],
                       class_acc=self.adapter.class_accuracy(samples, self.inputs.labels))

    def settings(self) -> dict:
        """What produced the numbers, for the results file."""
        held = self.config.held_out
        seeds, calibration = held.seeds(), self.profile.meta.calibration_seeds
        return {
            "solver": self.config.solver, "cost_model": self.cost_model,
            "allow": list(self.config.allow) if self.config.allow is not None else "all profiled",
            "budget_grid": [c.budget for c in self.candidates],
            "calibration": [{"budget": b, "measured_over_ideal": f} for b, f in self.calibration],
            "measured_over_ideal_seen": {f"{b:.3f}": v for b, v in sorted(self.observed.items())},
            "calibration_repeats": self.config.calibration_repeats, "head_to_head_rounds": held.repeats,
            "max_attempts": self.config.max_attempts, "nonblock_share": self.nonblock_share,
            "full_seconds": self.full_seconds, "eval_seeds": f"{seeds[0]}-{seeds[-1]}", "samples": len(seeds),
            "timing_batch": held.timing_batch, "batch_size": held.batch_size, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "sampler": self.sampler.to_dict(),
            "calibration_seeds": f"{min(calibration)}-{max(calibration)}",
            "profile": self.profile.digest(),
        }


def match_baselines(adapter: ModelAdapter, profile: Profile, baselines: Sequence[BaselineSpec],
                    config: MatchConfig = MatchConfig(), log: Log = lambda _: None) -> tuple[list[MatchResult], dict]:
    """Match every baseline in turn, sharing the solved grid and calibration; returns (results, settings)."""
    matcher = SpeedMatcher(adapter, profile, config, log)
    return [matcher.match(spec) for spec in baselines], matcher.settings()


__all__ = ["Attempt", "BaselineSpec", "Candidate", "DEFAULT_GRID", "MatchConfig", "MatchResult", "Quality",
           "SpeedMatcher", "match_baselines"]
