"""The closed-loop search solver and the structured families it starts from (tiny random DiT, 8 steps)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from schedc.cli import main
from schedc.errors import SolverError
from schedc.problem import problem_from_profile
from schedc.schedule import read_schedule
from schedc.solvers import Constraints, SolveContext, get_solver
from schedc.solvers.families import Candidate, family_candidates, grid_from_compute, step_dp, step_dp_two, warmup_interval
from schedc.search import RolloutScorer, prediction_seeds, search_schedule
from schedc.search_starts import by_prediction
from schedc_runtime.modes import REUSE_MODES

from conftest import make_tiny_adapter


def _search(adapter, profile, budget=0.5, seed=0, evaluations=12, confirm=False):
    """The local search alone by default (its calibration-sample guarantees); the fresh-seed confirmation that
    `schedc solve` adds is tested on its own below."""
    problem = problem_from_profile(profile)
    return problem, search_schedule(adapter, profile, problem, budget, evaluations=evaluations, samples=3,
                                    predict_samples=3, seed=seed, progress=False, confirm=confirm)


def test_search_is_never_worse_than_any_warm_start_and_fits_the_budget(tiny_profile):
    adapter = make_tiny_adapter()
    problem, sol = _search(adapter, tiny_profile)
    assert sol.cost <= 0.5 + 1e-9 and sol.solver == "search"
    starts = sol.stats["warm_starts"]
    assert {"dp", "warmup1/residual", "delta-dit/residual"} <= set(starts)
    assert sol.stats["search_psnr"] >= max(starts.values()) - 1e-3
    # re-scored independently on the same calibration samples: the winner beats every family
    scorer = RolloutScorer(adapter, tiny_profile, list(tiny_profile.meta.calibration_seeds[:3]))
    winner = scorer(sol.actions()).psnr
    for cand in family_candidates(problem, 0.5):
        assert winner >= scorer(cand.decisions).psnr - 1e-3, cand.name


def test_search_is_deterministic_by_seed_and_predicts_on_unsearched_seeds(tiny_profile):
    adapter = make_tiny_adapter()
    _, a = _search(adapter, tiny_profile, seed=3)
    _, b = _search(adapter, tiny_profile, seed=3)
    assert a.actions() == b.actions() and a.stats["stopped_by"] == "evaluations"
    calib = list(tiny_profile.meta.calibration_seeds)
    held = prediction_seeds(calib, 3)
    assert a.stats["predict_seeds"] == len(held) == 3 and not set(held) & set(calib)
    again = RolloutScorer(adapter, tiny_profile, held)(a.actions())
    assert a.stats["predicted_psnr"] == pytest.approx(again.psnr, abs=1e-4)
    assert a.predicted_error == pytest.approx(again.rel_l2, rel=1e-4)
    # the prediction's standard error: the spread of those seeds' PSNRs over sqrt(3)
    assert a.stats["predicted_psnr_se"] == pytest.approx(np.std(again.samples, ddof=1) / np.sqrt(3), rel=1e-4)
    assert a.stats["predicted_psnr_se"] > 0


def test_a_start_with_no_move_hands_the_evaluations_to_the_next_start_that_has_one(tiny_profile):
    """With the first 8 steps forced to compute, every generated start computes everything (nothing to move);
    a given start that reuses is where the local search goes on, spending its evaluations there, and the
    result is still the best schedule scored."""
    from schedc.solvers import Constraints

    adapter = make_tiny_adapter()
    problem = problem_from_profile(tiny_profile)
    reusing = _search(adapter, tiny_profile, budget=0.6)[1].actions()
    assert any(a in REUSE_MODES for row in reusing for a in row)

    def run(evaluations=6):
        return search_schedule(adapter, tiny_profile, problem, 1.0, Constraints(first_full=8),
                               evaluations=evaluations, samples=2, predict_samples=0, progress=False,
                               warm_starts=[reusing])
    sol = run()
    assert sol.stats["restarted_from"] == ["given0"] and sol.stats["stopped_by"] == "evaluations"
    assert sol.stats["rollouts"] > run(evaluations=0).stats["rollouts"]  # evaluations spent after the restart
    best_start = max(sol.stats["warm_starts"].values())
    assert sol.stats["search_psnr"] >= best_start - 1e-3
    again = run()
    assert again.actions() == sol.actions() and again.stats["rollouts"] == sol.stats["rollouts"]


def test_a_confirmed_search_keeps_a_local_search_result_only_with_a_confident_lead(tiny_profile):
    """confirm=True: the winner and the best starts are re-ranked on fresh seeds; a local-search result is kept
    only with a confident lead over the best start, otherwise that start is; the prediction moves past them."""
    from schedc.selection import SELECT_CONFIDENCE

    adapter = make_tiny_adapter()
    problem = problem_from_profile(tiny_profile)
    sol = search_schedule(adapter, tiny_profile, problem, 0.5, evaluations=12, samples=3, predict_samples=3,
                          progress=False, confirm=True)
    fresh, kept, confidence = sol.stats["selected_on_fresh_seeds"], sol.stats["selected"], sol.stats["lead_confidence"]
    assert kept in fresh and sol.cost <= 0.5 + 1e-9
    if "+" in kept:  # a local-search result: it led the best start confidently
        assert confidence >= SELECT_CONFIDENCE
    elif confidence is not None:  # the local search's result led on the fresh seeds, but not confidently
        assert confidence < SELECT_CONFIDENCE and fresh[kept] < max(fresh.values())
    calib = list(tiny_profile.meta.calibration_seeds)
    # the 64 seeds it picked on, then the 3 it predicted on: calibration-side, none the search scored
    assert sol.stats["prediction_seeds"] == f"{max(calib) + 1}-{max(calib) + 64 + 3}" and sol.stats["predict_seeds"] == 3
    again = search_schedule(adapter, tiny_profile, problem, 0.5, evaluations=12, samples=3, predict_samples=3,
                            progress=False, confirm=True)
    assert again.actions() == sol.actions()


def test_a_start_clearly_behind_the_best_is_not_reranked():
    """A start trailing the best by more than CLEARLY_BEHIND_SE paired standard errors on the search's samples is
    left out of the re-ranking; one within noise of it stays, and so does anything without per-sample PSNRs."""
    from schedc.rollout import Score
    from schedc.selection import clearly_behind, finalist_starts

    rng = np.random.default_rng(0)
    base = 40 + rng.normal(0, 2, 16)  # [16] per-sample PSNRs of the best start
    lead = Score(float(base.mean()), 0.01, tuple(base))
    close = base - 0.05 + rng.normal(0, 0.5, 16)  # within noise of it
    far = base - 3.0 + rng.normal(0, 0.5, 16)  # behind on every seed
    as_score = lambda a: Score(float(a.mean()), 0.01, tuple(a))  # noqa: E731
    assert clearly_behind(as_score(far), lead) and not clearly_behind(as_score(close), lead)
    assert not clearly_behind(Score(30.0, 0.1), lead)  # no per-sample PSNRs: kept
    assert not clearly_behind(as_score(np.append(far[:-1], np.inf)), lead)  # an identical sample: kept
    grid = lambda i: (("native",), ("reuse",) if i else ("native",), ("native",) * (i + 1))  # noqa: E731
    scored = [(lead, Candidate("best", grid(0), "dp"), None), (as_score(close), Candidate("close", grid(1), "family"), None),
              (as_score(far), Candidate("far", grid(2), "family"), None)]
    assert [c.name for _, c, _ in finalist_starts(scored)] == ["best", "close", "far"]
    assert [c.name for _, c, _ in finalist_starts(scored, prune=True)] == ["best", "close"]


def test_a_confirmed_search_reranks_only_the_starts_in_contention(tiny_profile):
    """The re-ranking leaves out the starts clearly behind the best (and says which); the local search runs in
    the time they would have taken; the schedule is still never worse on the fresh seeds than a re-ranked start."""
    from schedc.selection import SELECT_STARTS

    adapter = make_tiny_adapter()
    problem = problem_from_profile(tiny_profile)
    sol = search_schedule(adapter, tiny_profile, problem, 0.3, evaluations=12, samples=6, predict_samples=3,
                          progress=False, confirm=True)
    fresh, skipped = sol.stats["selected_on_fresh_seeds"], sol.stats.get("not_reranked", [])
    assert sol.stats["selected"] in fresh and not set(skipped) & set(fresh)
    starts = sol.stats["warm_starts"]
    best = max(starts, key=starts.get)
    for name in skipped:  # each was among the best starts, behind the best one
        assert starts[name] < starts[best]
    assert skipped and len(fresh) + len(skipped) <= 1 + SELECT_STARTS


def test_the_reranking_time_of_starts_clearly_behind_goes_to_the_local_search(tiny_profile, monkeypatch):
    """Under a time limit, a solve that leaves the clearly-behind starts out of the re-ranking runs more rollouts
    in the same charged time than one that re-ranks every best start, and re-ranks fewer finalists."""
    import math

    import schedc.selection as selection

    adapter, problem = make_tiny_adapter(), problem_from_profile(tiny_profile)
    runs = {}
    for name, limit in (("all", math.inf), ("pruned", selection.CLEARLY_BEHIND_SE)):
        monkeypatch.setattr(selection, "CLEARLY_BEHIND_SE", limit)
        runs[name] = search_schedule(adapter, tiny_profile, problem, 0.3, evaluations=50, samples=6, predict_samples=3,
                                     progress=False, confirm=True, time_limit=0.8).stats
    assert runs["all"]["stopped_by"] == runs["pruned"]["stopped_by"] == "time limit"
    assert runs["pruned"]["rollouts"] > runs["all"]["rollouts"] and runs["pruned"]["not_reranked"]
    assert len(runs["pruned"]["selected_on_fresh_seeds"]) < len(runs["all"]["selected_on_fresh_seeds"])
    assert runs["pruned"]["charged_seconds"] <= 0.8 + 1e-9 and "not_reranked" not in runs["all"]


def test_search_refuses_a_model_that_is_not_the_profiled_one(tiny_profile):
    with pytest.raises(SolverError, match="not it"):
        _search(make_tiny_adapter(depth=3), tiny_profile)


def test_registry_entry_takes_the_model_from_the_context(tiny_profile):
    problem = problem_from_profile(tiny_profile)
    context = SolveContext(profile=tiny_profile, adapter=make_tiny_adapter(), samples=2, evaluations=3, progress=False)
    sol = get_solver("search")(problem, 0.4, context=context)
    assert sol.cost <= 0.4 + 1e-9 and sol.stats["rollouts"] >= 1


@pytest.mark.parametrize("budget", [0.2, 0.35, 0.6, 0.9])
def test_families_fit_the_budget_and_keep_their_pattern(tiny_profile, budget):
    problem = problem_from_profile(tiny_profile)
    cands = family_candidates(problem, budget)
    assert cands
    for cand in cands:
        _, cost = problem.evaluate_decisions(cand.decisions)
        assert cost <= budget + 1e-9, cand.name
        assert all(a == "native" for a in cand.decisions[0])
        # a multi-compute mode is only used once its block has the history it reads
        for b in range(problem.num_blocks):
            computed = 0
            for row in cand.decisions:
                if row[b] in REUSE_MODES:
                    assert REUSE_MODES[row[b]].history <= computed, cand.name
                else:
                    computed += 1
    fb = warmup_interval(problem, budget, 1, first=1)
    if fb is not None:
        assert fb[:, 0].all()  # FirstBlockCache-like: the first block computes every step
    warm = warmup_interval(problem, budget, 3)
    if warm is not None:
        assert warm[:3].all()
    assert {c.origin for c in cands} == {"family"}


def test_a_candidate_says_where_it_came_from():
    """The search treats starts by origin (a setting's DP and given starts are always re-ranked), not by name."""
    grid = (("native", "native"), ("residual", "native"))
    assert Candidate("x", grid, "given").origin == "given"
    with pytest.raises(ValueError, match="origin"):
        Candidate("x", grid, "dp@")
    with pytest.raises(ValueError, match="step 0"):
        Candidate("x", tuple(reversed(grid)))


def test_step_dp_is_optimal_for_the_summed_additive_error(tiny_profile):
    problem = problem_from_profile(tiny_profile)
    steps, blocks = problem.num_steps, problem.num_blocks

    def error(chosen) -> float:
        compute = np.zeros((steps, blocks), dtype=bool)
        compute[list(chosen)] = True
        return problem.predicted_error(compute)

    for budget in (0.3, 0.5):
        got = step_dp(problem, budget)
        n = int(got.any(axis=1).sum())
        assert problem.cost_of(got) <= budget + 1e-9
        best = min(error((0, *rest)) for k in range(n) for rest in itertools.combinations(range(1, steps), k))
        assert error(np.flatnonzero(got.any(axis=1))) == pytest.approx(best, rel=1e-9)


def test_forecast_step_dp_is_optimal_for_the_forecast_it_schedules(tiny_profile):
    """Whole-model refreshes placed for forecast reuse between them: each reuse forecasts from the last two
    computes where their spacing was measured, else reuses the last one's residual (the first compute's run too)."""
    problem = problem_from_profile(tiny_profile)
    steps, blocks = problem.num_steps, problem.num_blocks

    def error(chosen) -> float:
        total = 0.0
        for b in range(blocks):
            for t in range(steps):
                done = [s for s in sorted(chosen, reverse=True) if s <= t]
                if done[0] == t:
                    continue
                two = len(done) > 1 and done[0] - done[1] <= problem.max_gap
                total += problem.step_error(b, "forecast" if two else "residual", done, t)
        return total

    for budget in (0.3, 0.5, 0.7):
        got = step_dp_two(problem, budget, "forecast")
        chosen = tuple(np.flatnonzero(got.any(axis=1)))
        assert got[list(chosen)].all() and problem.cost_of(got) <= budget + 1e-9
        n = len(chosen)
        best = min(error((0, *rest)) for k in range(n) for rest in itertools.combinations(range(1, steps), k))
        assert np.isfinite(best) and error(chosen) == pytest.approx(best, rel=1e-9)
        # the forecast family the search starts from: these refreshes, forecasting in between
        grid = grid_from_compute(problem, got, "forecast")
        named = {c.name: c.decisions for c in family_candidates(problem, budget)}
        assert named.get("step-dp-forecast/forecast", grid) == grid
    assert step_dp_two(problem, 0.5, "residual") is None  # a one-compute mode is step_dp's


def test_unmeasured_spacings_stand_in_as_single_compute_reuse_for_ranking_only(tiny_profile):
    """A forecast whose two computes are further apart than the profile measured has no prediction (+inf); ranked
    with stand_in it counts as the residual reuse of its last compute, so such schedules are ordered, not last."""
    problem = problem_from_profile(tiny_profile)
    steps, blocks = problem.num_steps, problem.num_blocks
    far = problem.max_gap + 1
    assert far + 1 < steps
    compute = np.zeros((steps, blocks), dtype=bool)
    compute[[0, far]] = True
    grid = grid_from_compute(problem, compute, "forecast")
    assert grid[far + 1][0] == "forecast"  # forecast from computes `far` apart: not measured
    assert problem.step_error(0, "forecast", [far, 0], far + 1) == float("inf")
    stand_in = problem.step_error(0, "forecast", [far, 0], far + 1, stand_in=True)
    assert stand_in == pytest.approx(problem.step_error(0, "residual", [far, 0], far + 1))
    assert problem.evaluate_decisions(grid)[0] == float("inf")
    assert np.isfinite(problem.evaluate_decisions(grid, stand_in=True)[0])
    # measured spacings are untouched, and the search's order is best predicted first, stable on ties
    cands = family_candidates(problem, 0.5)
    for cand in cands:
        plain = problem.evaluate_decisions(cand.decisions)[0]
        if np.isfinite(plain):
            assert problem.evaluate_decisions(cand.decisions, stand_in=True)[0] == pytest.approx(plain)
    ranked = by_prediction(problem, cands)
    keys = [problem.evaluate_decisions(c.decisions, stand_in=True)[0] for c in ranked]
    assert sorted(c.name for c in ranked) == sorted(c.name for c in cands) and keys == sorted(keys)


def test_cli_falls_back_to_the_dp_when_the_profiled_model_is_not_here(tiny_profile, tmp_path, capsys):
    path = tmp_path / "tiny.profile.npz"
    tiny_profile.save(path)  # records the built-in reference-dit, whose shapes differ from the tiny model's
    out = tmp_path / "s.yaml"
    assert main(["solve", str(path), "--budget", "0.5", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert not captured.err and "is not the profiled one" in captured.out and "solved with the dp" in captured.out
    assert read_schedule(out).provenance["solver"] == "dp"
    assert read_schedule(out).provenance["profile_file"] == str(path)  # eval finds the error model through it


def test_the_schedule_records_the_prediction_seeds_as_calibration_seeds(tiny_profile):
    from schedc.schedule import calibration_seeds, schedule_from_solution

    _, sol = _search(make_tiny_adapter(), tiny_profile, evaluations=2)
    schedule = schedule_from_solution(tiny_profile, sol, 0.5)
    calib = set(tiny_profile.meta.calibration_seeds)
    assert calibration_seeds(schedule) == calib | set(prediction_seeds(sorted(calib), 3))


def test_a_time_limit_stops_the_search_and_says_so(tiny_profile):
    problem = problem_from_profile(tiny_profile)
    sol = search_schedule(make_tiny_adapter(), tiny_profile, problem, 0.5, evaluations=50, samples=2,
                          predict_samples=2, time_limit=1e-6, progress=False)
    assert sol.stats["stopped_by"] == "time limit" and sol.stats["warm_starts"] and sol.cost <= 0.5 + 1e-9
    assert sol.stats["unscored_starts"] == len(family_candidates(problem, 0.5)) + 3 - len(sol.stats["warm_starts"])


def test_a_lower_budgets_schedule_as_warm_start_is_never_lost(tiny_profile):
    adapter = make_tiny_adapter()
    problem, low = _search(adapter, tiny_profile, budget=0.5, evaluations=6)
    high = search_schedule(adapter, tiny_profile, problem, 0.7, evaluations=2, samples=3, predict_samples=2,
                           progress=False, warm_starts=[low.actions()])
    assert high.stats["warm_starts"]["given0"] == pytest.approx(low.stats["search_psnr"], abs=1e-3)
    assert high.stats["search_psnr"] >= low.stats["search_psnr"] - 1e-3
    # a start over the budget, or not a schedule of this problem, is skipped and counted
    tight = search_schedule(adapter, tiny_profile, problem, 0.3, evaluations=0, samples=2, predict_samples=2,
                            progress=False, warm_starts=[high.actions(), (("native",),)])
    assert tight.stats["given_starts_skipped"] == 2 and "given0" not in tight.stats["warm_starts"]


def test_cli_warm_start_must_come_from_the_same_profile(tiny_profile, tmp_path, capsys):
    from schedc.schedule import save_schedule, schedule_from_solution

    path = tmp_path / "tiny.profile.npz"
    tiny_profile.save(path)
    _, sol = _search(make_tiny_adapter(), tiny_profile, evaluations=1)
    start = save_schedule(schedule_from_solution(tiny_profile, sol, 0.5), tmp_path / "start.yaml")
    other = tmp_path / "other.profile.npz"
    from conftest import TINY_SAMPLER
    from schedc.profiler import ProfileConfig, profile_model
    profile_model(make_tiny_adapter(seed=1), TINY_SAMPLER, ProfileConfig(calib_samples=2, batch_size=2, max_age=4,
                  probe_steps=2, probe_samples=1), progress=False).save(other)
    assert main(["solve", str(other), "--budget", "0.5", "--warm-start", str(start), "-o", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was not compiled from" in err


def test_the_search_keeps_its_caches_within_a_memory_limit_and_reports_the_peak(tiny_profile):
    """--max-cache-mb with the default solver: every start and move is checked with the runtime's own
    accounting, and the peak the schedule reports is what the runtime holds at the profiling batch."""
    from schedc.compile import compile_solution
    from schedc.solvers import Constraints, SolveContext
    from schedc_runtime import apply_schedule

    from conftest import TINY_SAMPLER, make_tiny_adapter

    adapter = make_tiny_adapter()
    context = SolveContext(adapter=adapter, progress=False, evaluations=4, samples=2)
    free = compile_solution(tiny_profile, 0.4, "search", Constraints(), context=context).schedule
    peak = free.provenance["predicted"]["peak_cache_mib"]
    assert peak > 0 and free.provenance["predicted"]["cache_batch"] == 4
    limit = peak * 2**20 / 2
    tight = compile_solution(tiny_profile, 0.4, "search", Constraints(max_cache_bytes=limit), context=context).schedule
    assert tight.provenance["predicted"]["peak_cache_mib"] * 2**20 <= limit * (1 + 1e-6)
    with apply_schedule(adapter.model, tight) as handle:
        adapter.generate(adapter.make_inputs(list(range(4))), TINY_SAMPLER)
        assert handle.peak_cache_bytes == pytest.approx(tight.provenance["predicted"]["peak_cache_mib"] * 2**20, rel=1e-3)


def _on_a_sample_clock(profile):
    """The tiny profile as if a full generation took one second per sample (8 steps): the search's clock
    charges its rollouts, references and probes at that rate, whatever this machine's speed."""
    return dataclasses.replace(profile, meta=profile.meta.replace(generation_seconds=1.0))


def test_the_time_limit_covers_the_fresh_seed_reranking_and_the_prediction(tiny_profile):
    """The local search stops early enough that re-ranking its finalists on 64 fresh seeds and predicting on
    more (each with full compute) still finish within the limit."""
    profile = _on_a_sample_clock(tiny_profile)
    problem = problem_from_profile(profile)
    sol = search_schedule(make_tiny_adapter(), profile, problem, 0.5, evaluations=500, samples=2, predict_samples=4,
                          time_limit=500.0, progress=False, confirm=True, vary_steps=True)
    assert sol.stats["stopped_by"] == "time limit" and "selected" in sol.stats and len(sol.stats["steps_tried"]) > 1
    assert sol.stats["clock"] == "profile" and sol.stats["rollouts"] > 40  # the local search ran
    assert sol.stats["select_seeds"] == 64 and sol.stats["predict_seeds"] == 4  # they fitted: as asked
    assert "after_search_shrunk_from" not in sol.stats
    # within the limit up to the last rollout's and the finalists' spread in cost (their computed shares differ)
    assert 450.0 < sol.stats["charged_seconds"] <= 1.05 * 500.0 and sol.stats["solve_seconds"] < 60.0


def test_a_slow_model_gets_a_smaller_reranking_and_prediction_that_fit_the_limit(tiny_profile):
    """Where re-ranking on 64 seeds and predicting on 128 would not fit after the starts scored whatever the
    time, both shrink in proportion (never below 32 and 64 seeds), the stats say so, and the solve fits."""
    from schedc.search_time import MIN_PREDICT_SAMPLES, MIN_SELECT_SAMPLES

    profile = _on_a_sample_clock(tiny_profile)
    problem = problem_from_profile(profile)
    sol = search_schedule(make_tiny_adapter(), profile, problem, 0.5, evaluations=500, samples=2,
                          predict_samples=128, time_limit=450.0, progress=False, confirm=True, vary_steps=True)
    assert sol.stats["after_search_shrunk_from"] == {"select": 64, "predict": 128}
    assert MIN_SELECT_SAMPLES <= sol.stats["select_seeds"] < 64
    assert MIN_PREDICT_SAMPLES <= sol.stats["predict_seeds"] < 128
    assert sol.stats["charged_seconds"] <= 450.0
    calib = list(profile.meta.calibration_seeds)
    used = sol.stats["select_seeds"] + sol.stats["predict_seeds"]
    assert sol.stats["prediction_seeds"] == f"{calib[-1] + 1}-{calib[-1] + used}"


def test_a_time_limited_search_gives_the_same_schedule_on_a_busy_machine(tiny_profile, monkeypatch):
    """The clock charges model work at the profile's recorded rate, not wall time: a machine three times
    slower (every generation sleeps) stops at the same points and compiles the same schedule."""
    import time

    profile = _on_a_sample_clock(tiny_profile)
    problem = problem_from_profile(profile)
    run = lambda adapter: search_schedule(adapter, profile, problem, 0.5, evaluations=500, samples=2,  # noqa: E731
                                          predict_samples=4, time_limit=120.0, progress=False)
    quiet = run(make_tiny_adapter())
    busy = make_tiny_adapter()
    generate = busy.generate

    def slow(inputs, sampler, **kwargs):
        begun = time.perf_counter()
        out = generate(inputs, sampler, **kwargs)
        time.sleep(2 * (time.perf_counter() - begun))
        return out

    monkeypatch.setattr(busy, "generate", slow)
    loaded = run(busy)
    assert quiet.stats["stopped_by"] == loaded.stats["stopped_by"] == "time limit"
    assert quiet.actions() == loaded.actions() and quiet.stats["rollouts"] == loaded.stats["rollouts"]
    assert quiet.stats["charged_seconds"] == loaded.stats["charged_seconds"]
    assert loaded.stats["solve_seconds"] > quiet.stats["solve_seconds"]
    assert busy.generate is slow  # the clock's metering is gone again


def test_a_machine_far_slower_than_the_profiles_is_stopped_by_the_wall_clock_guard(tiny_profile):
    """A profile whose recorded rate is far too fast for this machine would let the charged clock run on for
    ever: the wall clock stops the search at WALL_GUARD limits, and the stats say so."""
    from schedc.search_time import WALL_GUARD

    profile = dataclasses.replace(tiny_profile, meta=tiny_profile.meta.replace(generation_seconds=1e-9))
    sol = search_schedule(make_tiny_adapter(), profile, problem_from_profile(profile), 0.5, evaluations=100000,
                          samples=2, predict_samples=2, time_limit=0.5, progress=False)
    assert sol.stats["stopped_by"] == "wall-clock guard"
    assert WALL_GUARD * 0.5 <= sol.stats["solve_seconds"] < WALL_GUARD * 0.5 + 10
    # a caller may set the guard (a bench whose schedules the clock under-prices), through the solve context too
    ctx = SolveContext(adapter=make_tiny_adapter(), progress=False, samples=2, evaluations=100000, wall_guard=6.0)
    longer = get_solver("search")(problem_from_profile(profile), 0.5, Constraints(time_limit=0.5), ctx.for_profile(profile))
    assert longer.stats["stopped_by"] == "wall-clock guard" and 6.0 * 0.5 <= longer.stats["solve_seconds"] < 6.0 * 0.5 + 10
    with pytest.raises(SolverError, match="wall_guard"):
        SolveContext(wall_guard=0.5)


def test_a_profile_without_a_recorded_generation_time_runs_on_the_wall_clock(tiny_profile):
    profile = dataclasses.replace(tiny_profile, meta=tiny_profile.meta.replace(generation_seconds=None))
    sol = search_schedule(make_tiny_adapter(), profile, problem_from_profile(profile), 0.5, evaluations=2,
                          samples=2, predict_samples=2, progress=False)
    assert sol.stats["clock"] == "wall" and "charged_seconds" not in sol.stats


def test_after_search_sizes_shrink_in_proportion_down_to_their_floors():
    from schedc.search_time import AfterSearch, RolloutRate

    rate = RolloutRate(full=1.0)  # one second per sample, rollouts and full compute alike
    after = AfterSearch(select=64, predict=128, finalists=4)
    assert after.seconds(rate) == 4 * 64 + 128 + 64 + 128
    assert after.fitted(1e9, rate) is after
    half = after.fitted(after.seconds(rate) / 2, rate)
    assert (half.select, half.predict) == (32, 64) and half.seconds(rate) <= after.seconds(rate) / 2
    assert after.fitted(0.0, rate) == AfterSearch(select=32, predict=64, finalists=4)  # the floors
    assert AfterSearch(select=8, predict=8, finalists=4).fitted(0.0, rate).predict == 8  # never above what was asked
    assert not AfterSearch(select=0, predict=8, finalists=4).reranks
    with pytest.raises(ValueError):
        AfterSearch(select=-1, predict=8, finalists=4)
