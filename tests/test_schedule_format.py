"""Schedule files: round trip, and every validation error says what is wrong."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from schedc.errors import ScheduleError
from schedc.schedule import compute_from_schedule, read_schedule, save_schedule
from schedc_runtime import Schedule, ScheduleFormatError, dump_schedule, load_schedule
from schedc_runtime.format import format_ranges, parse_ranges, schedule_to_dict
from tests.conftest import TINY_SAMPLER, schedule_for


@pytest.fixture(scope="module")
def schedule(tiny_profile) -> Schedule:
    rng = np.random.default_rng(0)
    compute = rng.random((TINY_SAMPLER.steps, 4)) < 0.5
    compute[0] = True
    return schedule_for(tiny_profile, compute)


def test_round_trip_through_yaml_file(schedule, tmp_path):
    path = save_schedule(schedule, tmp_path / "s.yaml")
    loaded = read_schedule(path)
    assert loaded == schedule
    assert dump_schedule(loaded) == path.read_text()
    assert np.array_equal(compute_from_schedule(loaded), compute_from_schedule(schedule))


def test_ranges_round_trip():
    for items in ([], [0], [0, 1, 2, 5, 7, 8, 9], list(range(28))):
        assert parse_ranges(format_ranges(items), 28, "x") == items
    assert format_ranges([3, 4, 5, 6, 7, 8, 9, 10, 11]) == "3-11"


def _broken(schedule, mutate) -> dict:
    data = copy.deepcopy(schedule_to_dict(schedule))
    mutate(data)
    return data


CASES = {
    "version": (lambda d: d.update(schedc_schedule=2), "version 2 is not supported"),
    "no version": (lambda d: d.pop("schedc_schedule"), "no 'schedc_schedule'"),
    "no model": (lambda d: d.pop("model"), "missing 'model'"),
    "step out of range": (lambda d: d["steps"].append({"step": 99}), "outside 0..7"),
    "duplicate step": (lambda d: d["steps"].append({"step": 3}), "step 3 appears twice"),
    "missing step": (lambda d: d["steps"].pop(4), "no entry for step"),
    "block out of range": (lambda d: d["steps"][2].update(reuse="2-9"), "outside 0..3"),
    "bad range": (lambda d: d["steps"][2].update(reuse="a-b"), "bad block range"),
    "unknown decision": (lambda d: d["steps"][2].update(int3="0"), "unsupported decision"),
    "reuse before compute": (lambda d: d["steps"][0].update(reuse="1"), "before any compute"),
    "two decisions": (lambda d: d["steps"][2].update(reuse="1", residual="1"), "two decisions"),
    "timesteps length": (lambda d: d["model"].update(timesteps=[1, 2]), "timesteps has 2 entries"),
    "unknown default": (lambda d: d["defaults"].update(reuse="teleport"), "defaults.reuse"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_validation_error(schedule, case):
    mutate, message = CASES[case]
    with pytest.raises(ScheduleFormatError, match=message):
        load_schedule(_broken(schedule, mutate))


def test_file_errors_are_schedc_errors(tmp_path):
    with pytest.raises(ScheduleError, match="not found"):
        read_schedule(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedc_schedule: 1\nmodel: [unclosed\n")
    with pytest.raises(ScheduleError, match="not valid YAML"):
        read_schedule(bad)
    bad.write_bytes(b"\x00\xff\xfe garbage")
    with pytest.raises(ScheduleError):
        read_schedule(bad)
    bad.write_text(yaml.safe_dump([1, 2, 3]))
    with pytest.raises(ScheduleError, match="expected a YAML mapping"):
        read_schedule(bad)


def test_save_is_atomic(schedule, tmp_path):
    """A failure half-way through writing leaves the old file untouched and no temp file behind."""
    from schedc.atomic import atomic_path

    path = save_schedule(schedule, tmp_path / "s.yaml")
    before = path.read_text()
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text(before[:20])  # half a file
            raise RuntimeError("disk full")
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]
