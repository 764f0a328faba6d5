"""Speed-matched comparison: the search ends on a feasible, verified budget or says it found none.

Correctness only (tiny model, two timing rounds); the benchmark reports the numbers.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from schedc.errors import SchedcError
from schedc.evaluate import EvalConfig, block_cost
from schedc.matched import Attempt, BaselineSpec, MatchConfig, MatchResult, Quality, SpeedMatcher
from schedc.solvers.baselines import fewer_steps_count
from tests.conftest import make_tiny_adapter

TINY = MatchConfig(budgets=(0.25, 0.375, 0.5, 0.625, 0.75), calibration_budgets=(0.25, 0.75), calibration_repeats=1,
                   max_attempts=3, held_out=EvalConfig(samples=4, batch_size=4, timing_batch=2, repeats=2))


@pytest.fixture(scope="module")
def matcher(tiny_profile) -> SpeedMatcher:
    return SpeedMatcher(make_tiny_adapter(), tiny_profile, TINY)


def check_result(result: MatchResult, matcher: SpeedMatcher, spec: BaselineSpec) -> None:
    assert (result.baseline, result.baseline_budget) == (spec.name, spec.budget)
    assert 1 <= len(result.attempts) <= TINY.max_attempts
    assert len({a.budget for a in result.attempts}) == len(result.attempts)  # never re-verifies a budget
    candidate = {c.budget: c for c in matcher.candidates}[result.schedc_budget]
    assert candidate.model_cost <= result.schedc_budget + 1e-9  # the solver kept to the budget it was given
    assert result.schedc_cost == pytest.approx(candidate.flop_cost)
    if result.matched:
        accepted = result.accepted
        assert accepted.passed and accepted.ratio >= 1.0 and result.schedc_speedup >= result.baseline_speedup
        assert result.schedc_budget == max(a.budget for a in result.attempts if a.passed)
    else:  # honest failure: nothing passed, the fastest candidate tried is the one reported
        assert not any(a.passed for a in result.attempts)
        assert result.schedc_budget == min(a.budget for a in result.attempts)
    assert result.delta_psnr == pytest.approx(result.schedc_quality.psnr - result.baseline_quality.psnr)
    json.dumps(result.to_dict())


def test_match_is_feasible_and_verified_or_reports_failure(matcher):
    spec = BaselineSpec("fewer-steps", 0.5)
    check_result(matcher.match(spec), matcher, spec)


def test_baselines_are_evaluate_py_baselines(matcher):
    steps = matcher.sampler.steps
    fewer = matcher.baseline(BaselineSpec("fewer-steps", 0.5))
    assert fewer.num_steps == fewer_steps_count(steps, 0.5, matcher.nonblock_share)
    for name in ("uniform", "delta-dit"):
        schedule = matcher.baseline(BaselineSpec(name, 0.5))
        assert schedule.num_steps == steps
        assert block_cost(schedule, matcher.block_flops, steps) == pytest.approx(0.5, abs=1 / steps)


def test_search_ends_on_the_best_budget_that_is_really_fast_enough(matcher, monkeypatch):
    """Timing replaced by a consistent model (20% slower than calibrated): the search must find the
    highest budget that model says is at least as fast as the baseline, and verify it."""
    monkeypatch.setattr(matcher, "observed", {b: list(v) for b, v in matcher.observed.items()})  # restored after
    monkeypatch.setattr(matcher, "config", replace(TINY, max_attempts=len(matcher.candidates)))
    true_speed = {c.budget: matcher.predicted_speedup(c) * 0.8 for c in matcher.candidates}
    target = true_speed[matcher.candidates[2].budget] * 0.999  # candidate 2 is fast enough
    monkeypatch.setattr("schedc.matched.time_interleaved", lambda *a, **k: ({"full": 1.0, "baseline": target}, 1.0))

    def fake_head_to_head(baseline, candidate, predicted):
        speed = true_speed[candidate.budget]
        return Attempt(candidate.budget, predicted, target, speed, speed / target, 2)

    monkeypatch.setattr(matcher, "head_to_head", fake_head_to_head)
    spec = BaselineSpec("uniform", 0.5)
    result = matcher.match(spec)
    best = max(b for b, speed in true_speed.items() if speed >= target)
    assert result.matched and result.schedc_budget == best
    check_result(result, matcher, spec)


def test_search_reports_failure_when_nothing_is_fast_enough(matcher, monkeypatch):
    monkeypatch.setattr(matcher, "observed", {b: list(v) for b, v in matcher.observed.items()})
    monkeypatch.setattr("schedc.matched.time_interleaved", lambda *a, **k: ({"full": 1.0, "baseline": 1e6}, 1.0))
    monkeypatch.setattr(matcher, "head_to_head", lambda baseline, candidate, predicted: Attempt(
        candidate.budget, predicted, 1e6, 1.0, 1e-6, 2))
    spec = BaselineSpec("fewer-steps", 0.25)
    result = matcher.match(spec)
    assert not result.matched and result.schedc_budget == matcher.candidates[0].budget
    check_result(result, matcher, spec)


def test_settings_name_what_produced_the_numbers(matcher):
    settings = matcher.settings()
    assert settings["solver"] == "dp" and settings["head_to_head_rounds"] == 2
    assert settings["eval_seeds"] == "1000000-1000003" and 0 < settings["nonblock_share"] < 1
    json.dumps(settings)


def _quality(psnr: float = 30.0) -> Quality:
    return Quality(psnr=psnr, ssim=0.9, rel_l2=0.1, class_acc=1.0)


def _result(attempts: tuple[Attempt, ...], matched: bool, budget: float) -> MatchResult:
    return MatchResult("uniform", 0.3, 50, 0.3, _quality(30.0), "dp", budget, 0.25, _quality(35.0), attempts, matched)


def test_results_validate():
    fast = Attempt(0.25, 3.0, 3.0, 3.1, 1.03, 7)
    slow = Attempt(0.3, 3.0, 3.0, 2.9, 0.97, 7)
    assert not Attempt(0.3, 3.0, 3.0, 3.01, 0.99, 7).passed  # both readings must agree
    ok = _result((slow, fast), True, 0.25)
    assert ok.delta_psnr == pytest.approx(5.0) and ok.schedc_speedup == 3.1
    assert not _result((slow,), False, 0.3).matched
    with pytest.raises(SchedcError):
        _result((slow,), True, 0.3)  # claims a match no attempt shows
    with pytest.raises(SchedcError):
        _result((slow, fast), False, 0.3)  # hides a passing attempt
    with pytest.raises(SchedcError):
        _result((slow, fast), True, 0.3)  # reports a budget other than the accepted one
    with pytest.raises(SchedcError):
        _result((), False, 0.3)
    with pytest.raises(SchedcError):
        Quality(psnr=float("nan"), ssim=0.9, rel_l2=0.1, class_acc=1.0)
    with pytest.raises(SchedcError):
        Quality(psnr=30.0, ssim=0.9, rel_l2=0.1, class_acc=1.5)
    assert Quality(psnr=30.0, ssim=0.9, rel_l2=0.1, class_acc=None).class_acc is None  # a model with no judge


def test_profile_of_another_model_is_refused(tiny_profile):
    with pytest.raises(SchedcError):
        SpeedMatcher(make_tiny_adapter(depth=3), tiny_profile, TINY)


def test_configs_validate():
    with pytest.raises(SchedcError):
        BaselineSpec("fewer", 0.3)
    with pytest.raises(SchedcError):
        BaselineSpec("uniform", 1.5)
    with pytest.raises(SchedcError):
        MatchConfig(solver="nope")
    with pytest.raises(SchedcError):
        MatchConfig(solver="uniform")  # a baseline is not a schedc solver
    with pytest.raises(SchedcError):
        MatchConfig(cost="wall")
    with pytest.raises(SchedcError):
        MatchConfig(budgets=())
    with pytest.raises(SchedcError):
        MatchConfig(max_attempts=0)
