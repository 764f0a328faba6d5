"""Timing helpers: a measurement of short work repeats it back to back."""

from conftest import TINY_SAMPLER, make_tiny_adapter
from schedc import timing
from schedc.interleaved import interleaved_times
from schedc.timing import repeats_for


def test_short_work_is_repeated_to_the_minimum_measurement_time():
    assert repeats_for(0.19, 1.0) == 6 and repeats_for(2.5, 1.0) == 1 and repeats_for(0.0, 1.0) == 1
    assert repeats_for(0.19) == 6  # the default: one second per measurement


def test_interleaved_timing_repeats_a_short_generation_within_each_round(monkeypatch):
    import schedc.interleaved as interleaved

    adapter = make_tiny_adapter()
    calls, asked = [], []
    generate = adapter.generate
    monkeypatch.setattr(adapter, "generate", lambda inputs, sampler: calls.append(1) or generate(inputs, sampler))
    inputs = adapter.make_inputs(range(2))
    interleaved_times(adapter, {"full": None}, inputs, 2, TINY_SAMPLER)  # the suite's 0 s minimum: one run each
    assert len(calls) == 1 + 2  # warm-up, then one generation per round
    calls.clear()
    monkeypatch.setattr(timing, "MIN_MEASURE_SECONDS", 0.5)
    monkeypatch.setattr(interleaved, "repeats_for", lambda seconds, minimum: asked.append(minimum) or 3)
    times = interleaved_times(adapter, {"full": None}, inputs, 2, TINY_SAMPLER)
    assert len(calls) == 1 + 2 * 3 and len(times["full"]) == 2 and asked == [0.5]
