"""Closed-loop search: schedules scored by the final-sample error they really produce.

Why: the additive error model treats blocks and steps as independent. On models it was not tuned on,
a block recomputed on a stale input, errors compounding across blocks, or a forecast drifting make
its ranking wrong (issue #11: the DP lost to uniform refresh on a DiT trained elsewhere and
over-predicted 6x). Here every candidate is run for real through the replay runtime on calibration
seeds and scored by its mean PSNR against full compute (HarmoniCa's image-error proxy), so every
interaction is in the score.

1. Warm starts: the DP's schedule (default decisions, cache-only, residual-only) and every structured
   family (`schedc.solvers.families`: uniform, TaylorSeer-like warm-up + interval, FirstBlockCache /
   DBCache-like first-blocks, Δ-DiT, a step-level DP), each placed at the budget and scored.
2. Local search from the best: budget-feasible moves (`schedc.search_moves`), first improvement,
   deterministic by seed. A start with no feasible move (every block computes every step, e.g. a
   fewer-step run that fills the budget exactly) hands the remaining evaluations to the next-best start
   that has one; the result is still the best schedule scored.
3. Confirmation (default; `confirm=False` / `--no-confirm` skips it): the local search keeps any move that
   raises the mean over 16 samples, so after ~80 comparisons its winner is biased upwards (the winner's
   curse; held out it fell up to 1.3 dB below its own DP start, README section 11b). The winner and the
   best three starts are re-ranked on 64 fresh calibration-side seeds right after the profile's; the
   winner is kept only if it leads the best start there in 95% of paired bootstrap resamples, else the
   start that scores best there is (`schedc.selection`).
4. Prediction: the pick is measured again on the fresh seeds after those (the schedule records all of
   them as calibration seeds, so evaluation never uses them), so the predicted PSNR / rel L2 in the
   schedule is an unbiased estimate for new inputs. Steps 3-4 use 64 and 128 seeds when the time limit
   allows, fewer (down to 32 and 64, recorded in the stats) when it does not (schedc.search_time).

Without the confirmation the result is never worse on the search's calibration samples than any warm
start it scored (all of them unless the time limit ends the warm starts, DP first; `unscored_starts`
counts the rest); with it, it is the best on the fresh seeds of the winner and the best starts, and it is
a local-search result only with a confident lead there. A schedule for several settings (`settings`, the
worst case or mean over guidance scales) is always re-ranked so (a worst case over 16 samples per setting
overfits): a pick made for several settings must lead the best single-setting schedule with 95% bootstrap
confidence on the fresh seeds, else that one is kept.
Deterministic by seed: the evaluation budget (`evaluations`) or the time limit ends the search (the stats
record which), and the time limit counts model work charged at the generation time the profile recorded
(schedc.search_time.WorkClock), not the wall clock, so a busy or slower machine gives the same schedule,
only later. The DP starts and bookkeeping are not charged (they are seconds at most, on top of the limit).
A profile that records no generation time (written before it was recorded) leaves the solve on the wall
clock (the stats' "clock" says which).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
from tqdm import tqdm

from schedc.errors import SolverError
from schedc.models.adapter import ModelAdapter
from schedc.problem import Problem, check_budget
from schedc.profile import Profile
from schedc.objectives import get_objective
from schedc.profile_set import setting_of
from schedc.rollout import RolloutScorer, Score, SettingsScorer
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.context import SolveContext
from schedc.search_moves import has_reuse, moves_at
from schedc.selection import SELECT_STARTS, confirm_on_fresh_seeds, finalist_starts, select_on_fresh_seeds
from schedc.search_time import WALL_GUARD, AfterSearch, RolloutRate, WorkClock
from schedc.solvers.families import Candidate, Decisions, family_candidates
from schedc.search_starts import (by_prediction, dp_candidates as _dp_candidates, family_starts_at, first_starts_at,
                                  fits as _fits, kind as start_kind, setting_dp_candidates as _setting_dp_candidates)
from schedc.search_setup import cache_check, check_settings, prediction_seeds, standard_error, step_settings
from schedc.step_settings import StepSetting, block_cost_at, time_fraction
from schedc_runtime.modes import REUSE_MODES
from schedc_runtime.safeyaml import format_ranges

SEARCH_SAMPLES = 16  # calibration samples each candidate is scored on
PREDICT_SAMPLES = 128  # fresh calibration-side samples the winner's prediction is measured on: one 64-seed mean
# scatters by 0.4-0.6 dB (bench_prediction), as much as the held-out mean it is checked against; 128 halve that
# variance for ~3 s of the main solve
EVALUATIONS = 80  # rollouts of the local search (the deterministic stopping rule)
MAX_MISSES = 2000  # proposals in a row without a feasible move: the schedule has none, stop
SELECT_SAMPLES = 64  # fresh seeds a schedule for several settings is re-ranked on (the worst case is noisy; 32
# left held-out losses of 0.16-0.36 dB against a finalist, README section 10)


def search_schedule(
    adapter: ModelAdapter, profile: Profile, problem: Problem, budget: float, constraints: Constraints = Constraints(),
    *, evaluations: int = EVALUATIONS, samples: int = SEARCH_SAMPLES, predict_samples: int = PREDICT_SAMPLES,
    seed: int = 0, time_limit: float = 60.0, progress: bool = True, warm_starts: Sequence[Decisions] = (),
    vary_steps: bool = False, settings: Sequence[Profile] = (), objective: str = "mean", confirm: bool = True,
    wall_guard: float = WALL_GUARD,
) -> Solution:
    """Warm starts + local search on measured final error; see the module docstring.

    warm_starts: extra decisions grids to start from (e.g. the schedule found at a lower budget, so a
    ladder of budgets never loses quality on calibration data as the budget rises); one that does not
    fit this problem or budget (at any step count tried) is skipped and counted in the stats.
    vary_steps: also try fewer sampler steps than the profile's at the same ideal time (schedc.step_settings);
    a schedule that wins there runs at its own step count and records the profile's as its reference.
    settings: profiles of the same model and step count at other guidance scales: every candidate is also
    run at each of them and scored by `objective` over all (schedc.objectives); each setting's own DP
    schedule is a warm start too, so the result is never worse on calibration data than any of them.
    confirm: (one setting) re-rank the winner and the best starts on fresh seeds and keep a local-search
    result only if it leads the best start confidently (schedc.selection); several settings always are.
    time_limit: seconds of model work, charged at the rate the profile recorded (schedc.search_time.WorkClock),
    so the same profile, seed and limit give the same schedule at any load; wall_guard: it also stops once the
    wall clock passes this many limits (a machine far slower than the profile's; the stats then say so).
    """
    clock = WorkClock.of(profile)
    with clock.metering(adapter):
        return _search(adapter, profile, problem, budget, constraints, clock, evaluations=evaluations, samples=samples,
                       predict_samples=predict_samples, seed=seed, time_limit=time_limit, progress=progress,
                       warm_starts=warm_starts, vary_steps=vary_steps, settings=settings, objective=objective,
                       confirm=confirm, wall_guard=wall_guard)


def _search(
    adapter: ModelAdapter, profile: Profile, problem: Problem, budget: float, constraints: Constraints,
    clock: WorkClock, *, evaluations: int, samples: int, predict_samples: int, seed: int, time_limit: float,
    progress: bool, warm_starts: Sequence[Decisions], vary_steps: bool, settings: Sequence[Profile], objective: str,
    confirm: bool, wall_guard: float,
) -> Solution:
    """search_schedule's body, every generation it runs charged to `clock`."""
    budget = check_budget(budget)
    if evaluations < 0 or samples < 1 or predict_samples < 0 or time_limit <= 0:
        raise SolverError("search needs evaluations >= 0, samples >= 1, predict_samples >= 0 and a positive time limit")
    if adapter.fingerprint() != profile.meta.fingerprint:
        raise SolverError(f"the search runs the profiled model, and {adapter.name} is not it (its blocks or weights' "
                          "shapes differ): give the solve context the model the profile was made from")
    settings = tuple(settings)
    check_settings(profile, settings, vary_steps)
    first = min(constraints.first_full, problem.num_steps)
    seeds = list(profile.meta.calibration_seeds)
    native, others, nonblock = step_settings(adapter, profile, problem, budget, seeds[:samples], vary_steps,
                                        warm_starts)
    dp_starts, failures = _dp_candidates(problem, budget, constraints)
    if settings:
        dp_starts += _setting_dp_candidates(problem, budget, constraints, (profile, *settings))
    given = [Candidate(f"given{i}", tuple(tuple(row) for row in grid), "given") for i, grid in enumerate(warm_starts)
             if _fits(problem, budget, grid)]
    cache_ok = cache_check(constraints)
    starts = [c for c in dp_starts + given + family_candidates(problem, budget, first) if cache_ok(profile, c.decisions)]
    if not starts and not others:
        raise failures[0] if failures else SolverError(f"no schedule family fits budget {budget:.3f}: raise the budget")
    goal = get_objective(objective)
    begun = clock.now()
    scorer = SettingsScorer([RolloutScorer(adapter, p, seeds[:samples]) for p in (profile, *settings)], goal)
    rate = RolloutRate(full=(clock.now() - begun) / (min(samples, len(seeds)) * (1 + len(settings))))
    bar = tqdm(total=len(starts) + evaluations, desc=f"search b={budget:.2f}", disable=not progress, leave=False)
    scored: list[tuple[Score, Candidate, StepSetting]] = []
    stopped = "evaluations"

    # samples run after the search, per setting: the finalists re-ranked on fresh seeds and the prediction
    # (sized to the time left once the starts scored whatever the time are in: schedc.search_time)
    after = AfterSearch(select=SELECT_SAMPLES if (confirm or settings) and predict_samples else 0,
                        predict=predict_samples, finalists=SELECT_STARTS + 1)
    asked = after

    def out_of_time() -> str | None:
        """"time limit" once past it less what the next rollout and the work after the search will take at the
        per-sample times charged so far (rollouts and full compute), so the whole solve fits the limit;
        "wall-clock guard" once the wall clock passes `wall_guard` limits (a machine far slower than the
        profile's); None while neither."""
        reserve = reserved().seconds(rate, 1 + len(settings)) + rate.per_sample() * min(samples, len(seeds)) * (1 + len(settings))
        if clock.now() + reserve > time_limit:
            return "time limit"
        return "wall-clock guard" if clock.wall() > wall_guard * time_limit else None

    prune = confirm and not settings  # one setting: starts clearly behind the best are not re-ranked

    def reserved() -> AfterSearch:
        """The work after the search for the finalists in contention so far: starts clearly behind the best one
        are not re-ranked (schedc.selection), so their re-ranking time goes to more starts and the local search.
        A start entering contention late can overrun the limit by one finalist's re-ranking, at most."""
        if not (prune and after.reranks):
            return after
        return replace(after, finalists=min(after.finalists, 1 + len(finalist_starts(scored, prune=True))))

    def rollout(decisions, target) -> Score:
        calls, begun = scorer.calls, clock.now()
        score = scorer(decisions, target)
        rate.add(clock.now() - begun, (scorer.calls - calls) * min(samples, len(seeds)),
                 (target or profile).num_steps)
        return score

    def score_all(cands: list[Candidate], setting: StepSetting, must: bool = False) -> None:
        """Roll out `cands` at `setting` until the time limit; `must`: whatever the time (see below). A grid
        scored before under another name (a family equal to a DP) costs nothing: the scorer memoises."""
        nonlocal stopped
        for cand in cands:
            if not must and stopped != "evaluations":
                return
            reason = None if must or not scored else out_of_time()
            if reason:
                stopped = reason
                return
            target = None if setting is native else setting.profile
            scored.append((rollout(cand.decisions, target), cand, setting))
            bar.update(1)

    # What is scored whatever the time limit: the profiled count's DP, every given grid (a lower budget's schedule:
    # the ladder's guarantee) and each fewer step count's own first start (all-compute run or DP). A slow model
    # (a 30-step CFG UNet, seconds per rollout) cannot afford more within 60 s once the re-ranking and the
    # prediction are reserved for, and with the DP alone scored its solves ended 13 dB below the 10-step schedule
    # they had been given. Then, while time lasts: the other DP starts, the fewer counts' other first starts, the
    # profiled count's families, the fewer counts' families of the kinds that scored best.
    planned = len(starts)
    head = [c for c in starts if c.origin != "family"]
    must_native = [c for c in head if c.origin == "given" or c is head[0]]
    score_all(must_native, native, must=True)
    grids_used = len(given)
    firsts = []
    for setting in others:
        extra = [c for c in first_starts_at(setting, constraints, first, warm_starts) if cache_ok(setting.profile, c.decisions)]
        grids_used += sum(c.origin == "given" for c in extra)
        planned += len(extra)
        bar.total += len(extra)
        own = next((c for c in extra if c.origin != "given"), None)
        score_all([c for c in extra if c.origin == "given" or c is own], setting, must=True)
        firsts.append((setting, [c for c in extra if c.origin != "given" and c is not own]))
    after = after.fitted(time_limit - clock.now(), rate, 1 + len(settings))
    score_all([c for c in head if c not in must_native], native)
    for setting, rest in firsts:
        score_all(rest, setting)
    score_all(by_prediction(problem, [c for c in starts if c.origin == "family"]), native)
    # the profiled count's families only (a fewer count's all-compute run is a "family" too, scored earlier now)
    ranked = sorted((s.psnr, c.name) for s, c, at in scored if c.origin == "family" and at is native)
    kinds = {start_kind(name) for _, name in ranked[::-1][:3]}
    for setting in others:
        extra = [c for c in family_starts_at(setting, first, kinds) if cache_ok(setting.profile, c.decisions)]
        planned += len(extra)
        bar.total += len(extra)
        score_all(by_prediction(setting.problem, extra), setting)
    if not scored:
        raise SolverError(f"no start could be scored within the time limit at budget {budget:.3f}")
    best_score, best, setting = max(scored, key=lambda sc: sc[0].psnr)
    start_name, start_scores = best.name, {c.name: round(s.psnr, 3) for s, c, _ in scored}
    # restarts: when the current start has no feasible move (every block computes every step, e.g. a
    # fewer-step run that fits exactly), the local search goes on from the best start that has one
    restarts = [sc for sc in sorted(scored, key=lambda sc: -sc[0].psnr) if has_reuse(sc[1].decisions)]
    current_score, current, at = best_score, best, setting
    rng = np.random.default_rng(seed)
    moves = moves_at(at, first, rng, cache_ok)
    accepted: dict[str, int] = {}
    tried = misses = 0
    restarted_from: list[str] = []
    while tried < evaluations and stopped == "evaluations":
        reason = out_of_time()
        if reason:
            stopped = reason
            break
        proposal = moves.propose(current.decisions)
        if proposal is None:  # e.g. every block computes every step: nothing to move
            misses += 1
            if misses >= MAX_MISSES:
                restarts = [sc for sc in restarts if sc[1].decisions != current.decisions
                            and sc[1].name not in restarted_from]
                if not restarts:
                    stopped = "no feasible move"
                    continue
                current_score, current, at = restarts.pop(0)
                restarted_from.append(current.name)
                moves, misses = moves_at(at, first, rng, cache_ok), 0
            continue
        misses = 0
        kind, grid = proposal
        tried += 1
        bar.update(1)
        score = rollout(grid, None if at is native else at.profile)
        if score.better_than(current_score):
            current_score, current = score, Candidate(f"{current.name}+{kind}", grid, "search")
            accepted[kind] = accepted.get(kind, 0) + 1
            if current_score.better_than(best_score):
                best_score, best, setting = current_score, current, at
                bar.set_postfix(psnr=f"{best_score.psnr:.2f}")
    target = None if setting is native else setting.profile
    bar.close()
    selection: dict = {}
    not_reranked: list[str] = []
    picked = prediction_seeds(seeds, after.select) if settings and after.reranks else []
    if picked:  # a worst case over settings on few samples overfits: re-rank on fresh ones
        best, selection, confidence = select_on_fresh_seeds(adapter, (profile, *settings), goal, picked, scored, best)
        best_score = scorer(best.decisions)  # memoised: its score on the search's samples
    elif confirm and after.reranks:
        picked = prediction_seeds(seeds, after.select)
        kept = {c.decisions for _, c, _ in finalist_starts(scored, prune=True, besides=best.decisions)}
        not_reranked = [c.name for _, c, _ in finalist_starts(scored, besides=best.decisions) if c.decisions not in kept]
        best, setting, selection, confidence = confirm_on_fresh_seeds(adapter, profile, native, picked, scored, best,
                                                                       setting)
        target = None if setting is native else setting.profile
        best_score = scorer(best.decisions, target)  # memoised: its score on the search's samples
    predicted, by_setting = best_score, scorer.each(best.decisions, target)
    held = prediction_seeds(seeds, after.predict, after=len(picked))
    if held:
        by_setting = [RolloutScorer(adapter, p, held)(best.decisions, target) for p in (profile, *settings)]
        predicted = Score(goal.psnr([s.psnr for s in by_setting]), goal.rel_l2([s.rel_l2 for s in by_setting]))
    pred_error, block = setting.problem.evaluate_decisions(best.decisions)
    cost = block
    steps_stats: dict = {}
    if nonblock is not None:
        share = time_fraction(setting.steps, profile.num_steps, block, nonblock)
        cost = block if setting is native else max(0.0, block_cost_at(share, nonblock))
        steps_stats = {"steps": setting.steps, "steps_tried": [profile.num_steps, *(s.steps for s in others)],
                       "nonblock_share": nonblock, "time": share,
                       "block_flops_cost": block * setting.steps / profile.num_steps}
    stats = {"solve_seconds": clock.wall(), "clock": clock.source,
             **({"charged_seconds": round(clock.elapsed, 2)} if clock.source == "profile" else {}),
             "start": start_name, "search_psnr": best_score.psnr,
             "predicted_psnr": predicted.psnr, **standard_error(by_setting, goal.name, held),
             "predict_seeds": len(held), "search_seeds": min(samples, len(seeds)),
             **({"select_seeds": len(picked)} if picked else {}),
             **({"after_search_shrunk_from": {"select": asked.select, "predict": asked.predict}}
                if after != asked else {}),
             **({"prediction_seeds": format_ranges(picked + held)} if held or picked else {}),
             **({"selected_on_fresh_seeds": selection, "selected": best.name, "selected_origin": best.origin,
                 "lead_confidence": confidence}
                if selection else {}),
             "rollouts": scorer.calls, "accepted": sum(accepted.values()), "stopped_by": stopped, "seed": seed,
             **({"restarted_from": restarted_from} if restarted_from else {}),
             **({"not_reranked": not_reranked} if not_reranked else {}),
             "additive_rel_l2": pred_error if math.isfinite(pred_error) else None, "warm_starts": start_scores,
             "unscored_starts": planned - len(scored),
             "given_starts_skipped": len(warm_starts) - grids_used, **steps_stats}
    if settings:
        stats.update(objective=goal.name, by_setting={
            f"{setting_of(p)[0]:g}": {"predicted_psnr": sc.psnr, "predicted_rel_l2": sc.rel_l2,
                                      **standard_error([sc], goal.name, held)}
            for p, sc in zip((profile, *settings), by_setting)})
    compute = np.array([[a not in REUSE_MODES for a in row] for row in best.decisions], dtype=bool)
    moved = {} if setting is native else {"sampling": setting.sampler.to_dict(),
                                          "timesteps": tuple(float(t) for t in setting.profile.meta.timesteps)}
    return Solution(compute=compute, cost=cost, predicted_error=predicted.rel_l2, solver="search", stats=stats,
                    decisions=best.decisions, **moved)


def solve_search(problem: Problem, budget: float, constraints: Constraints, context: SolveContext) -> Solution:
    """Registry entry: the model, seed and sample count come from the typed context."""
    return search_schedule(context.model(), context.bound_profile, problem, budget, constraints,
                           samples=context.samples or SEARCH_SAMPLES, seed=context.seed,
                           evaluations=EVALUATIONS if context.evaluations is None else context.evaluations,
                           time_limit=constraints.time_limit, progress=context.progress,
                           warm_starts=context.warm_starts, vary_steps=context.vary_steps,
                           settings=context.settings, objective=context.objective, confirm=context.confirm,
                           wall_guard=WALL_GUARD if context.wall_guard is None else context.wall_guard)


__all__ = ["prediction_seeds", "search_schedule", "solve_search"]
