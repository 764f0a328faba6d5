"""Step counts: a profile retargeted to another step count, and the search weighing fewer steps against
caching at equal ideal time (tiny random DiT profiled at 8 DDIM steps)."""

from __future__ import annotations

import numpy as np
import pytest

from schedc.cli import main
from schedc.errors import ScheduleError
from schedc.evaluate import EvalConfig, evaluate, reference_sampler
from schedc.gain_probe import measure_at_steps, measure_gains
from schedc.profile import Profile
from schedc.problem import problem_from_profile
from schedc.profiler import ProfileConfig, profile_model
from schedc.retarget import retarget_profile, step_positions
from schedc.sampling import SamplerConfig
from schedc.sampler_config import ddim_timesteps
from schedc.schedule import read_schedule, schedule_from_solution
from schedc.search import RolloutScorer, search_schedule
from schedc.solvers.dp import solve_dp
from schedc.step_settings import alternative_step_counts, block_budget, time_fraction
from schedc_runtime import Schedule

from conftest import TINY_SAMPLER, make_tiny_adapter


def test_step_positions_place_each_timestep_by_noise_level():
    old = ddim_timesteps(8)
    assert np.allclose(step_positions(old, old), np.arange(8))
    assert np.allclose(step_positions(old, ddim_timesteps(4)), [0, 2, 4, 6])
    fine = step_positions(old, ddim_timesteps(16))
    assert np.all(np.diff(fine) > 0) and fine[-1] > 7  # past the last measured step, still increasing


def test_retargeting_to_the_profiles_own_steps_is_the_identity(tiny_profile):
    assert retarget_profile(tiny_profile, 8, tiny_profile.meta.timesteps) is tiny_profile


def test_retargeting_onto_every_other_step_reads_the_measured_tables(tiny_profile):
    half = retarget_profile(tiny_profile, 4, ddim_timesteps(4))
    assert half.num_steps == 4 and half.meta.sampler["steps"] == 4 and half.meta.max_age == 2
    measured, moved = tiny_profile.reuse_error("residual"), half.reuse_error("residual")
    for s, t in ((0, 1), (1, 2), (1, 3), (2, 3)):
        if t - s <= 2:  # max_age 4 measured steps = 2 target steps
            assert np.allclose(moved[:, 0, s, t], measured[:, 0, 2 * s, 2 * t])
    assert np.isinf(moved[:, 0, 0, 3]).all()  # 6 measured steps: older than the profile measured
    assert np.allclose(half.gain(), tiny_profile.gain()[:, ::2])
    assert np.allclose(half.quant_error(), tiny_profile.quant_error()[:, ::2])
    # a generation of half the steps costs half as much per sample: the search's clock charges that rate
    assert half.meta.generation_seconds == pytest.approx(tiny_profile.meta.generation_seconds / 2)
    # the forecast's 2-step spacing at 4 steps is the measured 4-step spacing... unmeasured past forecast_gap
    problem = problem_from_profile(half)
    assert solve_dp(problem, 0.5).cost <= 0.5 + 1e-9


def test_retargeted_gains_are_measured_at_the_new_step_count(tiny_profile):
    """The gains do not transfer across step counts: with the model at hand they are measured by the
    profiler's own probes at the target steps (the same probe samples), the tables stay retargeted."""
    adapter, sampler = make_tiny_adapter(), TINY_SAMPLER.with_changes(steps=4)
    half = retarget_profile(tiny_profile, 4, ddim_timesteps(4))
    measured = measure_gains(half, adapter, sampler)
    native = profile_model(adapter, sampler, ProfileConfig(calib_samples=2, batch_size=2, max_age=1, probe_steps=4,
                                                           probe_samples=2), progress=False)
    assert np.allclose(measured.gain(), native.gain())
    assert not np.allclose(measured.gain(), half.gain())  # what interpolation gave differs
    for mode in half.modes:
        assert np.array_equal(measured.reuse_error(mode), half.reuse_error(mode))
    assert np.array_equal(measured.quant_error(), half.quant_error())
    with pytest.raises(ValueError, match="4 steps"):
        measure_gains(half, adapter, TINY_SAMPLER)


def test_tables_measured_at_the_new_step_count_are_the_profilers_own(tiny_profile):
    """With the model at hand `solve --steps N` measures every table at N steps on the profile's probe samples,
    with its ages, forecast spacing and precisions; the calibration seeds, costs and latency stay the profile's."""
    adapter, sampler = make_tiny_adapter(), TINY_SAMPLER.with_changes(steps=4)
    half = retarget_profile(tiny_profile, 4, ddim_timesteps(4))
    measured = measure_at_steps(half, adapter, sampler)
    k = tiny_profile.meta.probe_samples
    native = profile_model(adapter, sampler, ProfileConfig(calib_samples=k, batch_size=k, max_age=4, probe_steps=3,
                                                           probe_samples=k), progress=False)
    for mode in native.modes:
        assert np.allclose(measured.reuse_error(mode), native.reuse_error(mode), equal_nan=True)
    assert np.allclose(measured.quant_error(), native.quant_error())
    assert np.allclose(measured.gain(), native.gain())
    assert measured.meta.max_age == native.meta.max_age == 3  # the profile's 4, capped by 4 steps
    assert measured.meta.calibration_seeds == tiny_profile.meta.calibration_seeds
    assert measured.meta.latency == tiny_profile.meta.latency and measured.meta.timesteps == half.meta.timesteps
    with pytest.raises(ValueError, match="4 steps"):
        measure_at_steps(half, adapter, TINY_SAMPLER)


def test_gain_scaling_reads_the_measured_excess_by_step_spacing(tiny_profile):
    """Measured once at the coarsest count: exactly the measured gains there, a partial excess between."""
    from schedc.gain_probe import GainScaling

    adapter = make_tiny_adapter()
    half = retarget_profile(tiny_profile, 4, ddim_timesteps(4))
    scaling = GainScaling.measure(tiny_profile, half, adapter, TINY_SAMPLER.with_changes(steps=4))
    assert np.allclose(scaling.apply(tiny_profile, half).gain(),
                       measure_gains(half, adapter, TINY_SAMPLER.with_changes(steps=4)).gain())
    six = retarget_profile(tiny_profile, 6, ddim_timesteps(6))
    scaled = scaling.apply(tiny_profile, six).gain()
    at_six = step_positions(tiny_profile.meta.timesteps, ddim_timesteps(6))
    ratio = np.stack([np.interp(at_six, scaling.positions, r) for r in scaling.ratio])
    spacing = lambda pos: (pos[-1] - pos[0]) / (len(pos) - 1)  # noqa: E731  profile steps per step
    assert np.isclose(scaling.spacing, spacing(step_positions(tiny_profile.meta.timesteps, ddim_timesteps(4))))
    assert 1 < spacing(at_six) < scaling.spacing
    weight = (spacing(at_six) - 1) / (scaling.spacing - 1)
    assert np.allclose(scaled, six.gain() * (1 + (ratio - 1) * weight))


def test_a_finer_grid_interpolates_ages_between_measured_ones(tiny_profile):
    fine = retarget_profile(tiny_profile, 16, ddim_timesteps(16))
    measured, moved = tiny_profile.reuse_error("residual"), fine.reuse_error("residual")
    s = 4  # target step 4 is measured step 2; target age 2 = measured age 1, age 1 = half of it
    assert np.allclose(moved[:, 0, s, s + 2], measured[:, 0, 2, 3])
    assert np.allclose(moved[:, 0, s, s + 1], 0.5 * measured[:, 0, 2, 3], rtol=0.02)  # timesteps are rounded
    assert np.isfinite(moved[:, 0, 14, 15]).all()  # the last steps, past the measured timesteps, still usable


def test_equal_time_across_step_counts():
    for n, full, b, o in ((6, 25, 0.15, 0.08), (13, 25, 0.5, 0.06), (40, 50, 0.4, 0.02)):
        c = block_budget(n, full, b, o)
        if c < 1:
            assert time_fraction(n, full, c, o) == pytest.approx(time_fraction(full, full, b, o))
        else:
            assert time_fraction(n, full, 1.0, o) <= time_fraction(full, full, b, o) + 1e-12
    counts = alternative_step_counts(25, 0.3, 0.065)
    assert counts[0] == 8 and counts == sorted(set(counts)) and counts[-1] < 25
    assert alternative_step_counts(10, 1.0, 0.1) == []


def test_search_over_step_counts_is_never_worse_than_fewer_steps_and_records_its_reference(tiny_profile):
    adapter = make_tiny_adapter()
    problem = problem_from_profile(tiny_profile)
    sol = search_schedule(adapter, tiny_profile, problem, 0.3, evaluations=6, samples=3, predict_samples=3,
                          progress=False, vary_steps=True, confirm=False)  # the local search's own guarantee
    stats = sol.stats
    fewest = stats["steps_tried"][1]
    assert stats["steps_tried"][0] == 8 and f"{fewest}steps:all" in stats["warm_starts"]
    assert stats["search_psnr"] >= max(stats["warm_starts"].values()) - 1e-3
    assert stats["time"] <= time_fraction(8, 8, 0.3, stats["nonblock_share"]) + 1e-9
    schedule = schedule_from_solution(tiny_profile, sol, 0.3)
    assert schedule.num_steps == stats["steps"] == len(sol.actions())
    if schedule.num_steps != 8:  # it chose fewer steps: its quality is measured against the profile's 8
        assert reference_sampler(schedule).steps == 8 and schedule.sampling["steps"] == schedule.num_steps
        scorer = RolloutScorer(adapter, tiny_profile, list(tiny_profile.meta.calibration_seeds[:3]))
        target = retarget_profile(tiny_profile, schedule.num_steps, schedule.model.timesteps)
        assert scorer(sol.actions(), target).psnr == pytest.approx(stats["search_psnr"], abs=1e-3)


def test_eval_measures_a_fewer_steps_schedule_against_the_profiled_steps(tiny_profile):
    adapter = make_tiny_adapter()
    half = retarget_profile(tiny_profile, 4, ddim_timesteps(4))
    from schedc.solvers.base import Solution

    sol = Solution(compute=np.ones((4, 4), dtype=bool), cost=0.5, predicted_error=0.0, solver="test",
                   sampling=dict(half.meta.sampler), timesteps=tuple(half.meta.timesteps))
    schedule = schedule_from_solution(tiny_profile, sol, 0.5)
    report = evaluate(adapter, schedule, EvalConfig(samples=4, batch_size=4, timing_batch=2, repeats=1),
                      baselines=True, progress=False)
    assert report.schedule.steps == 4 and report.settings["sampler"]["steps"] == 8
    assert report.schedule.cost == pytest.approx(0.5) and report.schedule.psnr < 100  # not compared to itself
    assert {m.steps for m in report.baselines.values()} >= {8}
    assert "runs 4 sampler steps" in report.table() and "profile's 8 steps" in report.table()
    # the same 4 steps as the fewer-steps baseline at this speed: the same samples
    if report.baselines["fewer-steps"].steps == 4:
        assert report.baselines["fewer-steps"].psnr == pytest.approx(report.schedule.psnr, abs=1e-6)


def test_a_reference_that_differs_in_more_than_steps_is_refused(tiny_profile):
    from schedc.schedule import build_schedule

    schedule = build_schedule(tiny_profile, np.ones((8, 4), dtype=bool), {"solver": "test"})
    bad = Schedule(model=schedule.model, decisions=schedule.decisions, sampling=schedule.sampling,
                   provenance={**schedule.provenance,
                               "reference_sampling": {**schedule.sampling, "steps": 16, "guidance_scale": 9.0}})
    with pytest.raises(ScheduleError, match="more than the step count"):
        reference_sampler(bad)


def test_cli_solve_steps_retargets_and_says_the_prediction_is_transferred(tiny_profile, tmp_path, capsys):
    path = tmp_path / "tiny.profile.npz"
    tiny_profile.save(path)
    out = tmp_path / "s4.yaml"
    assert main(["solve", str(path), "--budget", "0.5", "--steps", "4", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "transferred from the 8-step profile" in printed
    assert "`schedc profile --steps 4,8` records both" in printed  # a coarser grid: the reliable path is named
    schedule = read_schedule(out)
    assert schedule.num_steps == 4 and schedule.sampling["steps"] == 4
    assert schedule.provenance["retargeted_from"]["steps"] == 8
    assert schedule.provenance["retargeted_from"]["gains"] == "transferred"  # the tiny model is not what loads
    assert schedule.provenance["retargeted_from"]["tables"] == "transferred"
    assert "the tables and propagation gains are mapped from 8 steps" in printed
    from schedc.evaluate import _notes

    note = " ".join(_notes(schedule, TINY_SAMPLER))
    assert "8-step profile retargeted to 4 steps (propagation gains transferred)" in note and "a transfer" in note
    assert list(schedule.model.timesteps) == [float(t) for t in ddim_timesteps(4)]
    for bad in ("0", "x", "2.5"):
        assert main(["solve", str(path), "--budget", "0.5", "--steps", bad, "-o", str(tmp_path / "b.yaml")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "steps" in err
    assert not (tmp_path / "b.yaml").exists()


def test_cli_solve_steps_measures_the_tables_when_the_profiled_model_loads(tmp_path, capsys):
    """The bundled reference model loads from its profile's record: its tables and gains are measured at the
    new count, on the profile's probe samples, with the profile's ages, forecast spacing and precisions."""
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[1] / "profiles" / "reference-dit.profile.npz"
    out = tmp_path / "s25.yaml"
    assert main(["solve", str(bundled), "--solver", "dp", "--budget", "0.4", "--steps", "25", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "measuring the tables and propagation gains at 25 steps" in printed
    assert "a lighter calibration than the profile's; `schedc profile --steps 25,50`" in printed
    assert "mapped onto" not in printed
    schedule = read_schedule(out)
    source = Profile.load(bundled)
    how = f"measured at 25 steps on {source.meta.probe_samples} samples"
    assert schedule.num_steps == 25 and schedule.provenance["retargeted_from"] == {
        "steps": source.num_steps, "profile": source.digest(), "tables": how, "gains": how}
    from schedc.evaluate import _notes

    assert f"tables and gains were {how}" in " ".join(_notes(schedule, SamplerConfig(**source.meta.sampler)))


def test_a_search_with_no_feasible_move_stops_instead_of_spinning(tiny_profile):
    problem = problem_from_profile(tiny_profile)
    from schedc.solvers import Constraints

    every_step = Constraints(first_full=8)  # every block computes every step: nothing the moves could change
    sol = search_schedule(make_tiny_adapter(), tiny_profile, problem, 1.0, every_step, evaluations=5, samples=2,
                          predict_samples=0, time_limit=600, progress=False)
    assert sol.stats["stopped_by"] == "no feasible move" and sol.stats["solve_seconds"] < 60
    assert sol.compute.all()


def test_a_given_warm_start_at_fewer_steps_is_scored_at_its_own_step_count(tiny_profile):
    problem = problem_from_profile(tiny_profile)
    four = ((("native",) * 4,) + (("native", "native", "residual", "native"),) * 3)  # 4 steps, 13 of 16 computes
    sol = search_schedule(make_tiny_adapter(), tiny_profile, problem, 0.6, evaluations=2, samples=2, predict_samples=0,
                          progress=False, vary_steps=True, warm_starts=[four])
    assert "4steps:given0" in sol.stats["warm_starts"] and sol.stats["given_starts_skipped"] == 0
    assert 4 in sol.stats["steps_tried"]


def test_starts_with_a_guarantee_are_scored_before_the_families(tiny_profile):
    """Under a time limit the starts are cut short in order, so the order is: the profiled count's DP, then each
    fewer step count's given grid, all-compute run and DP, then the profiled count's families, then the fewer
    counts' families (a 60 s solve of a 30-step CFG UNet ran out on the families and ended on the 30-step DP,
    13 dB below the 10-step schedule it had been given)."""
    from schedc.search_starts import kind

    problem = problem_from_profile(tiny_profile)
    four = ((("native",) * 4,) + (("native", "native", "residual", "native"),) * 3)
    sol = search_schedule(make_tiny_adapter(), tiny_profile, problem, 0.6, evaluations=0, samples=2, predict_samples=0,
                          progress=False, vary_steps=True, warm_starts=[four], confirm=False)
    names = list(sol.stats["warm_starts"])  # in the order they were scored
    fewer = [i for i, n in enumerate(names) if "steps:" in n]
    native_families = [i for i, n in enumerate(names) if "steps:" not in n and not n.startswith("dp")]
    assert names[0].startswith("dp") and names.index("4steps:given0") < min(native_families)
    first_of_each = {n.split(":")[0]: i for i, n in reversed(list(enumerate(names))) if "steps:" in n}
    assert max(first_of_each.values()) < min(native_families)  # every fewer count's first start before them
    family_at_fewer = [i for i in fewer if not names[i].split(":")[1].startswith(("given", "all", "dp"))]
    assert all(i > max(native_families) for i in family_at_fewer)
    scores = sol.stats["warm_starts"]  # the fewer counts try the kinds that scored best at the profiled count
    top = {kind(n) for n in sorted((names[i] for i in native_families), key=lambda n: (scores[n], n))[-3:]}
    assert family_at_fewer and all(kind(names[i].split(":")[1]) in top for i in family_at_fewer)
    assert sol.stats["unscored_starts"] == 0 and len(names) == len(set(names))


def test_out_of_time_the_given_grids_and_each_step_counts_own_start_are_still_scored(tiny_profile):
    """A limit too short for anything but the re-ranking and prediction still scores the profiled count's DP,
    the given grid and one start per fewer step count, and nothing else, so the ladder keeps its guarantee."""
    problem = problem_from_profile(tiny_profile)
    four = ((("native",) * 4,) + (("native", "native", "residual", "native"),) * 3)
    sol = search_schedule(make_tiny_adapter(), tiny_profile, problem, 0.6, evaluations=10, samples=2, predict_samples=0,
                          progress=False, vary_steps=True, warm_starts=[four], confirm=False, time_limit=1e-6)
    names = list(sol.stats["warm_starts"])
    counts = [n for n in sol.stats["steps_tried"] if n != 8]
    assert sol.stats["stopped_by"] == "time limit" and sol.stats["unscored_starts"] > 0
    assert names[0] == "dp" and "4steps:given0" in names
    assert sorted(n.split("steps:")[0] for n in names if "steps:" in n and "given" not in n) == sorted(map(str, counts))
    assert len(names) == 2 + len(counts)
    assert sol.stats["search_psnr"] >= sol.stats["warm_starts"]["4steps:given0"] - 1e-9


def test_the_search_sizes_fewer_steps_with_the_profiles_recorded_nonblock_share(tiny_profile, monkeypatch):
    """o is measured once when profiling, so solving the same profile twice gives the same step counts."""
    import schedc.search_setup as search_setup

    assert 0.0 <= tiny_profile.meta.nonblock_share <= 1.0
    def no_timing(*_args, **_kwargs):
        raise AssertionError("the search timed the model although the profile records o")

    monkeypatch.setattr(search_setup, "measure_nonblock_share", no_timing)
    problem = problem_from_profile(tiny_profile)
    _, others, nonblock = search_setup.step_settings(make_tiny_adapter(), tiny_profile, problem, 0.3, [0, 1], True, [])
    assert nonblock == pytest.approx(min(tiny_profile.meta.nonblock_share, 0.95)) and others
    saved = tiny_profile.meta.replace(nonblock_share=0.2)
    assert saved.to_dict()["nonblock_share"] == 0.2
