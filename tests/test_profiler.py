"""The profiler measures what the runtime will do: reuse errors, probe gains, exact shard merges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schedc.errors import ProfileError
from schedc.metrics import rel_l2
from schedc.profile import Profile
from schedc.profiler import ProfileConfig, _ReuseErrorRecorder, profile_model
from schedc_runtime import apply_schedule
from tests.conftest import TINY_SAMPLER, make_tiny_adapter, schedule_for

CONFIG = ProfileConfig(calib_samples=6, batch_size=4, max_age=4, probe_steps=3, probe_samples=2)


def test_reuse_error_is_finite_exactly_inside_the_age_window(tiny_profile):
    e = tiny_profile.reuse_error()[:, 0]
    t = np.arange(TINY_SAMPLER.steps)
    age = t[None, :] - t[:, None]  # [s, t]
    inside = (age >= 1) & (age <= CONFIG.max_age)
    assert np.all(np.isfinite(e[:, inside])) and np.all(e[:, inside] >= 0)
    assert np.all(np.isinf(e[:, ~inside]))
    assert np.all(tiny_profile.reuse_count["residual"][:, 0][:, inside] == 6 * 2)  # 6 samples x 2 CFG rows


def test_reuse_error_matches_a_direct_measurement(tiny_adapter, tiny_profile):
    """E[b, s, t] = mean over rows of ||delta_s - delta_t|| / ||out_t|| from a plain rollout."""
    seen: dict[int, list] = {1: [], 3: []}
    for b in seen:
        tiny_adapter.blocks()[b].register_forward_hook(lambda m, a, o, b=b: seen[b].append((a[0].clone(), o.clone())))
    inputs = tiny_adapter.make_inputs(range(6))
    tiny_adapter.generate(inputs.subset(slice(0, 4)), TINY_SAMPLER)
    tiny_adapter.generate(inputs.subset(slice(4, 6)), TINY_SAMPLER)
    steps = TINY_SAMPLER.steps
    for b, calls in seen.items():
        for s, t in [(0, 1), (2, 5), (3, 7)]:
            total = 0.0
            for run in (calls[:steps], calls[steps:]):
                (xs, ys), (xt, yt) = run[s], run[t]
                total += float(((ys - xs) - (yt - xt)).flatten(1).norm(dim=1).div(yt.flatten(1).norm(dim=1)).sum())
            assert tiny_profile.reuse_error()[b, 0, s, t] == pytest.approx(total / 12, rel=1e-4)


def test_output_forecast_and_quant_errors_match_direct_measurement(tiny_adapter, tiny_profile):
    from schedc_runtime.quant import quantize_block

    block = tiny_adapter.blocks()[2]
    calls = []
    block.register_forward_hook(lambda m, a, o: calls.append((tuple(x.clone() for x in a), o.clone())))
    inputs = tiny_adapter.make_inputs(range(6))
    tiny_adapter.generate(inputs.subset(slice(0, 4)), TINY_SAMPLER)
    tiny_adapter.generate(inputs.subset(slice(4, 6)), TINY_SAMPLER)
    steps = TINY_SAMPLER.steps
    runs = (calls[:steps], calls[steps:])

    def mean_rel(pred_fn, t):
        total = 0.0
        for run in runs:
            yt = run[t][1]
            total += float((pred_fn(run) - yt).flatten(1).norm(dim=1).div(yt.flatten(1).norm(dim=1)).sum())
        return total / 12

    delta = lambda run, u: run[u][1] - run[u][0][0]  # noqa: E731
    s, s_prev, t = 4, 2, 6
    out_direct = mean_rel(lambda run: run[s][1], t)
    assert tiny_profile.reuse_error("output")[2, 0, s, t] == pytest.approx(out_direct, rel=1e-4)
    lam = (t - s) / (s - s_prev)
    fc_direct = mean_rel(lambda run: run[t][0][0] + delta(run, s) + lam * (delta(run, s) - delta(run, s_prev)), t)
    assert tiny_profile.reuse_error("forecast")[2, s - s_prev - 1, s, t] == pytest.approx(fc_direct, rel=1e-4)
    for p, precision in enumerate(tiny_profile.precisions):
        copy = quantize_block(block, precision)
        q_direct = mean_rel(lambda run: copy(*run[t][0]), t)
        assert tiny_profile.quant_error()[2, t, p] == pytest.approx(q_direct, rel=1e-3)


def test_every_registered_mode_measures_what_its_runtime_rebuild_makes(tiny_adapter, tiny_profile):
    """E[mode][b, k, s, t] is the error of the mode's own runtime rebuild from the computes it reads."""
    from schedc_runtime.modes import REUSE_MODES

    block = tiny_adapter.blocks()[1]
    calls = []
    block.register_forward_hook(lambda m, a, o: calls.append((a[0].clone(), o.clone())))
    inputs = tiny_adapter.make_inputs(range(6))
    tiny_adapter.generate(inputs.subset(slice(0, 4)), TINY_SAMPLER)
    tiny_adapter.generate(inputs.subset(slice(4, 6)), TINY_SAMPLER)
    steps = TINY_SAMPLER.steps
    runs = (calls[:steps], calls[steps:])
    t = steps - 1
    for name, mode in REUSE_MODES.items():
        for k, gaps in enumerate(tiny_profile.patterns(name)):
            s = t - 1
            reads = [s - sum(gaps[:j]) for j in range(len(gaps) + 1)]
            if t - reads[-1] > CONFIG.max_age:
                assert np.isinf(tiny_profile.reuse_error(name)[1, k, s, t])
                continue
            total = 0.0
            for run in runs:
                xt, yt = run[t]
                if mode.reads == "output":
                    pred = run[s][1]
                else:
                    pred = mode.rebuild_residual(xt, [run[u][1] - run[u][0] for u in reads], reads, t)
                total += float((pred - yt).flatten(1).norm(dim=1).div(yt.flatten(1).norm(dim=1)).sum())
            assert tiny_profile.reuse_error(name)[1, k, s, t] == pytest.approx(total / 12, rel=1e-4), (name, gaps)


def test_gain_probe_equals_a_runtime_rollout(tiny_adapter, tiny_profile):
    """The probe for (b, t) is exactly a schedule where only block b reuses at step t."""
    probed = tiny_profile.meta.probe_steps
    k = tiny_profile.meta.probe_samples
    inputs = tiny_adapter.make_inputs(range(k))
    full = tiny_adapter.generate(inputs, TINY_SAMPLER)
    for t in probed[:2]:
        for b in (0, 2):
            compute = np.ones((TINY_SAMPLER.steps, 4), dtype=bool)
            compute[t, b] = False
            with apply_schedule(tiny_adapter.model, schedule_for(tiny_profile, compute)):
                out = tiny_adapter.generate(inputs, TINY_SAMPLER)
            measured = float(rel_l2(out, full).sum())
            assert tiny_profile.probe_final_sum[b, t] == pytest.approx(measured, rel=1e-3, abs=1e-7)
    gain = tiny_profile.gain()
    assert gain.shape == (4, TINY_SAMPLER.steps) and np.all(np.isfinite(gain)) and np.all(gain >= 0)


def test_shards_merge_exactly(tiny_profile):
    shards = [
        profile_model(make_tiny_adapter(), TINY_SAMPLER,
                      ProfileConfig(**{**CONFIG.__dict__, "shard": (i, 2), "batch_size": 4}), progress=False)
        for i in range(2)
    ]
    merged = shards[0].merge(shards[1])
    assert merged.meta.calibration_seeds == tuple(range(6))
    assert merged.modes == tiny_profile.modes
    for mode in merged.modes:
        assert np.array_equal(merged.reuse_count[mode], tiny_profile.reuse_count[mode])
        assert np.allclose(merged.reuse_err_sum[mode], tiny_profile.reuse_err_sum[mode], rtol=1e-5)
    with pytest.raises(ProfileError, match="sharing calibration seeds"):
        shards[0].merge(shards[0])


def test_memory_is_bounded_by_max_age():
    recorder = _ReuseErrorRecorder(num_blocks=2, steps=50, max_age=4, forecast_gap=2, probe_at=set(), probe_rows=[])
    hook = recorder.hook(0)
    for t in range(50):
        recorder.step = t
        x = torch.randn(3, 5, 8)
        hook(None, (x,), {}, x + 0.1 * torch.randn_like(x))
    assert recorder.deltas[0].shape[0] == 4 and recorder.outputs[0].shape[0] == 4
    assert recorder.gram[0].shape == (4, 4, 3)


def test_save_load_round_trip_and_errors(tiny_profile, tmp_path):
    path = tiny_profile.save(tmp_path / "p.profile.npz")
    loaded = Profile.load(path)
    assert loaded.digest() == tiny_profile.digest()
    with pytest.raises(ProfileError, match="not found"):
        Profile.load(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ProfileError, match="corrupt"):
        Profile.load(corrupt)
    with pytest.raises(ProfileError):
        ProfileConfig(shard=(2, 2))


def test_a_crashed_profile_resumes_from_its_finished_batches(tmp_path):
    """Every finished batch after the first is kept; the same run restarted profiles only the rest (and the
    first batch, which also probes) and gives the profile an uninterrupted run gives."""
    from schedc.profile_resume import BatchStore

    config = ProfileConfig(calib_samples=8, batch_size=2, max_age=4, probe_steps=2, probe_samples=1, measure_latency=False)
    straight = profile_model(make_tiny_adapter(), TINY_SAMPLER, config, progress=False)
    crashing, calls = make_tiny_adapter(), []
    generate = crashing.generate

    def dies_on_the_third_batch(inputs, sampler, *args, **kwargs):
        if kwargs.get("on_step") is not None and not kwargs.get("start"):  # a batch, not a gain probe
            calls.append(len(inputs))
            if len(calls) == 3:
                raise RuntimeError("killed")
        return generate(inputs, sampler, *args, **kwargs)

    crashing.generate = dies_on_the_third_batch
    with pytest.raises(RuntimeError, match="killed"):
        profile_model(crashing, TINY_SAMPLER, config, progress=False, resume=tmp_path)
    assert len(list(tmp_path.glob("*/batch*.npz"))) == 1  # batch 1 (batch 0 is always run again)
    calls.clear()
    crashing.generate = lambda inputs, sampler, *a, **k: (calls.append(len(inputs)) if k.get("on_step") and not k.get("start")
                                                          else None) or generate(inputs, sampler, *a, **k)
    resumed = profile_model(crashing, TINY_SAMPLER, config, progress=False, resume=tmp_path)
    assert len(calls) == 3  # batches 0, 2, 3
    for name, array in straight._named_arrays().items():
        assert np.allclose(array, resumed._named_arrays()[name], rtol=1e-12), name
    other = BatchStore(tmp_path, {"changed": True})
    assert other.load(1) is None  # another command never reads these sums
