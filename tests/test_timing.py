"""Timing helpers: a measurement of short work repeats it back to back."""

from schedc.timing import repeats_for


def test_short_work_is_repeated_to_the_minimum_measurement_time():
    assert repeats_for(0.19, 1.0) == 6 and repeats_for(2.5, 1.0) == 1 and repeats_for(0.0, 1.0) == 1
    assert repeats_for(0.19) == 6  # the default: one second per measurement
