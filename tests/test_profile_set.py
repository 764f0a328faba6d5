"""One profile file for several guidance scales / step counts, and one schedule compiled for all the
guidance scales of a step count (mean or worst case); tiny random DiT."""

from __future__ import annotations

import numpy as np
import pytest

from schedc.errors import ProfileError, SolverError
from schedc.objectives import combine_problems
from schedc.problem import problem_from_profile
from schedc.profile import Profile
from schedc.profile_set import ProfileSet, choose, setting_of
from schedc.profiler import ProfileConfig, profile_model
from schedc.search import search_schedule

from conftest import TINY_SAMPLER, make_tiny_adapter

CONFIG = ProfileConfig(calib_samples=4, batch_size=4, max_age=4, probe_steps=2, probe_samples=2, measure_latency=False)


@pytest.fixture(scope="module")
def settings():
    adapter = make_tiny_adapter()
    return ProfileSet(tuple(profile_model(adapter, TINY_SAMPLER.with_changes(guidance_scale=g, steps=n), CONFIG,
                                          progress=False) for g in (1.0, 4.0) for n in (6, 8)))


def test_a_set_saves_and_loads_every_setting_exactly(settings, tmp_path):
    assert settings.settings == ((1.0, 6), (4.0, 6), (1.0, 8), (4.0, 8)) and settings.step_counts == (6, 8)
    path = settings.save(tmp_path / "set.npz")
    back = ProfileSet.load(path)
    assert [p.digest() for p in back.profiles] == [p.digest() for p in settings.profiles]
    with pytest.raises(ProfileError, match="several settings") as err:
        Profile.load(path)
    assert "\n" not in str(err.value)
    one = ProfileSet((settings.profiles[0],))
    assert one.save(tmp_path / "one.npz") and Profile.load(tmp_path / "one.npz").digest() == one.digest()


def test_settings_of_other_models_or_twice_the_same_are_refused(settings):
    with pytest.raises(ProfileError, match="same setting twice"):
        ProfileSet((settings.profiles[0], settings.profiles[0]))
    other = make_tiny_adapter(seed=1, depth=3)
    alien = profile_model(other, TINY_SAMPLER.with_changes(guidance_scale=9.0), CONFIG, progress=False)
    with pytest.raises(ProfileError, match="differs"):
        ProfileSet((settings.profiles[0], alien))


def test_shards_of_a_set_merge_setting_by_setting(tmp_path):
    adapter = make_tiny_adapter()
    shards = [ProfileSet(tuple(profile_model(adapter, TINY_SAMPLER.with_changes(guidance_scale=g),
                                             ProfileConfig(calib_samples=4, batch_size=2, max_age=4, probe_steps=2,
                                                           probe_samples=1, measure_latency=False, shard=(i, 2)),
                                             progress=False) for g in (1.0, 3.0))) for i in range(2)]
    merged = shards[0].merge(shards[1])
    assert [len(p.meta.calibration_seeds) for p in merged.profiles] == [4, 4]
    assert np.array_equal(merged.profiles[1].quant_count, shards[0].profiles[1].quant_count * 2)
    with pytest.raises(ProfileError, match="different settings"):
        shards[0].merge(ProfileSet(shards[1].profiles[:1]))


def test_a_corrupt_settings_list_is_one_line(settings, tmp_path):
    import zipfile

    path = settings.save(tmp_path / "set.npz")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "settings_json.npy":
                np.save(tmp_path / "s.npy", np.array('{"schedc_profile_set": 1, "settings": [[1.0, 6]]}'))
                data = (tmp_path / "s.npy").read_bytes()
            dst.writestr(item, data)
    with pytest.raises(ProfileError, match="does not match") as err:
        ProfileSet.load(bad)
    assert "\n" not in str(err.value)


def test_choose_keeps_one_step_count_and_picks_scales(settings):
    with pytest.raises(ProfileError, match="one step count"):
        choose(settings, None, "auto")
    primary, others = choose(settings, None, 8)
    assert {setting_of(p) for p in (primary, *others)} == {(1.0, 8), (4.0, 8)}
    assert choose(settings, 4.0, 6) == (settings.select(4.0, 6)[0], ())
    with pytest.raises(ProfileError, match="not retargeted"):
        choose(settings, None, 7)
    with pytest.raises(ProfileError, match="did not measure g=2"):
        choose(settings, 2.0, 8)


def test_combined_tables_are_the_mean_or_the_elementwise_worst(settings):
    a, b = (problem_from_profile(p) for p in settings.select(steps=8))
    mean, worst = combine_problems([a, b], "mean"), combine_problems([a, b], "worst")
    finite = np.isfinite(a.errors["residual"])
    assert np.allclose(mean.errors["residual"][finite], (a.errors["residual"] + b.errors["residual"])[finite] / 2)
    assert np.array_equal(worst.gain, np.maximum(a.gain, b.gain))
    with pytest.raises(SolverError, match="unknown objective"):
        combine_problems([a, b], "median")


def test_a_worst_case_search_never_loses_to_a_single_settings_dp_on_calibration(settings):
    adapter = make_tiny_adapter()
    primary, others = choose(settings, None, 8)
    problem = combine_problems([problem_from_profile(p) for p in (primary, *others)], "worst")
    sol = search_schedule(adapter, primary, problem, 0.5, evaluations=4, samples=3, predict_samples=3, progress=False,
                          settings=others, objective="worst")
    starts = sol.stats["warm_starts"]
    assert {"dp@g=1", "dp@g=4"} <= set(starts)
    # the winner and the best starts re-ranked on fresh seeds: the pick is the best there
    fresh = sol.stats["selected_on_fresh_seeds"]
    assert len(fresh) >= 2 and fresh[sol.stats["selected"]] == max(fresh.values())
    assert sol.stats["prediction_seeds"].startswith(f"{max(primary.meta.calibration_seeds) + 1}-")
    by = sol.stats["by_setting"]
    assert set(by) == {"1", "4"} and sol.stats["objective"] == "worst"
    assert sol.stats["predicted_psnr"] == pytest.approx(min(v["predicted_psnr"] for v in by.values()))
    with pytest.raises(SolverError, match="step count"):
        search_schedule(adapter, primary, problem, 0.5, evaluations=0, samples=2, predict_samples=0, progress=False,
                        settings=others, vary_steps=True)


def test_single_setting_schedules_are_always_re_ranked_on_fresh_seeds(settings):
    """A schedule for several settings is picked on fresh seeds among the winner, the best starts and every
    single-setting schedule, even one that scored last on calibration (it may win on new seeds)."""
    from schedc.objectives import get_objective
    from schedc.rollout import Score
    from schedc.selection import SELECT_CONFIDENCE, SELECT_STARTS, SINGLE_SETTING_STARTS, select_on_fresh_seeds
    from schedc.solvers.families import Candidate

    adapter = make_tiny_adapter()
    primary, others = choose(settings, None, 8)
    steps, blocks = primary.num_steps, primary.num_blocks
    grid = lambda reuse: tuple(tuple("native" if (t < 1 or b not in reuse or t % 2 == 0) else "residual"  # noqa: E731
                                     for b in range(blocks)) for t in range(steps))
    best = Candidate("winner", grid({0}))
    tops = [Candidate(f"top{i}", grid({i % blocks, (i + 1) % blocks})) for i in range(SELECT_STARTS + 1)]
    single = Candidate("given0", grid(set(range(blocks))), "given")  # scored last on calibration
    scored = [(Score(40.0 - i, 0.01), c, None) for i, c in enumerate(tops)] + [(Score(1.0, 0.5), single, None)]
    fresh = list(range(max(primary.meta.calibration_seeds) + 1, max(primary.meta.calibration_seeds) + 3))
    chosen, scores, confidence = select_on_fresh_seeds(adapter, (primary, *others), get_objective("worst"), fresh,
                                                       scored, best)
    assert "given0" in scores and "winner" in scores
    leader = max(scores, key=scores.get)
    if leader == "given0":  # a single-setting schedule leads: no contest
        assert chosen.name == "given0" and confidence is None
    else:  # the leader is kept only when it leads the single-setting schedule confidently
        assert 0.0 <= confidence <= 1.0
        assert chosen.name == (leader if confidence >= SELECT_CONFIDENCE else "given0")
        assert (chosen.origin in SINGLE_SETTING_STARTS) == (confidence < SELECT_CONFIDENCE)


def test_a_lead_within_the_seeds_noise_is_not_confident():
    """Paired bootstrap over seeds: a lead every seed agrees on is confident; one a single seed makes is not."""
    from schedc.objectives import get_objective
    from schedc.rollout import Score
    from schedc.selection import lead_confidence

    rng = np.random.default_rng(0)
    base = rng.normal(40.0, 3.0, size=(3, 64))  # [settings, seeds]
    score = lambda a: [Score(float(r.mean()), 0.01, tuple(r.tolist())) for r in a]  # noqa: E731
    worst = get_objective("worst")
    assert lead_confidence(worst, score(base + 0.5), score(base)) == 1.0  # every seed 0.5 dB better
    noisy = base + rng.normal(0.0, 3.0, size=base.shape)
    noisy[:, 0] += 200.0  # one seed carries the whole lead (absent from ~37% of resamples)
    assert lead_confidence(worst, score(noisy), score(base)) < 0.95
    assert lead_confidence(worst, score(base), score(base)) == 0.0  # a tie is no lead
    assert lead_confidence(worst, score(base), score(base + 0.5)) == 0.0
