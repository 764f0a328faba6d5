"""The zoo bench's settling of close speeds (bench/bench_settle.py): which rows are raced, and what a race decides."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_settle import SETTLE_MARGIN, settle_rows  # noqa: E402


def _rows(*ours, baseline=(3.68, 33.27)):
    rows = [{"family": "full", "setting": "full compute", "speedup": 1.0, "psnr": float("inf"), "samples_key": "full"},
            {"family": "fewer-steps", "setting": "7 steps", "speedup": baseline[0], "psnr": baseline[1],
             "samples_key": "base"}]
    rows += [{"family": "schedc", "setting": f"b={i}", "speedup": sp, "psnr": q, "samples_key": f"k{i}"}
             for i, (sp, q) in enumerate(ours)]
    return rows


def _race(ratios: dict):
    asked = []

    def race(mine: str, theirs: str) -> float:
        asked.append((mine, theirs))
        return ratios[mine]
    return race, asked


def test_a_close_schedule_measured_slower_wins_the_match_when_the_race_says_it_is_as_fast():
    rows = _rows((3.40, 33.38), (4.35, 31.24))  # unet-dpm: b=0.20 measured 8% slower, 0.1875 clearly faster
    race, asked = _race({"k0": 1.003})
    assert settle_rows(rows, race) == 1 and asked == [("k0", "base")]
    base = rows[1]
    assert base["schedc"]["setting"] == "b=0" and abs(base["delta_psnr"] - 0.11) < 1e-9
    assert base["settled"] == {"raced": [{"setting": "b=0", "ratio": 1.003}], "won_by": "b=0"}


def test_a_close_schedule_measured_faster_loses_the_match_when_the_race_says_it_is_slower():
    rows = _rows((3.75, 35.0), (4.35, 31.24))
    race, _ = _race({"k0": 0.97})
    settle_rows(rows, race)
    assert rows[1]["schedc"]["setting"] == "b=1" and rows[1]["delta_psnr"] < 0  # the clearly faster one
    assert rows[1]["settled"]["won_by"] is None
    race, _ = _race({"k0": 0.97})
    alone = _rows((3.75, 35.0))
    settle_rows(alone, race)
    assert alone[1]["schedc"] is None and alone[1]["delta_psnr"] is None  # none as fast


def test_races_go_best_psnr_first_and_stop_at_the_first_as_fast():
    rows = _rows((3.60, 36.0), (3.70, 35.0), (3.50, 34.0))
    race, asked = _race({"k0": 0.95, "k1": 1.01, "k2": 1.2})
    settle_rows(rows, race)
    assert [m for m, _ in asked] == ["k0", "k1"] and rows[1]["schedc"]["setting"] == "b=1"


def test_rows_far_apart_in_speed_or_below_a_clearly_faster_psnr_are_not_raced():
    far = (3.68 * (1 - SETTLE_MARGIN) - 0.01, 40.0)  # clearly slower: stays slower, never raced
    rows = _rows(far, (4.5, 35.0), (3.70, 34.0))  # the close one's PSNR is below the clearly faster one's
    race, asked = _race({})
    assert settle_rows(rows, race) == 0 and asked == [] and "settled" not in rows[1]


def test_the_baselines_own_schedule_is_not_raced_and_stays_a_tie():
    rows = _rows((3.68, 33.27), (3.50, 33.20))
    rows[2]["samples_key"] = "base"  # schedc compiled the baseline's very schedule
    race, asked = _race({})
    assert settle_rows(rows, race) == 0 and asked == []  # the close one is below the tie's PSNR: nothing to race
    rows = _rows((3.68, 33.27), (3.60, 33.50))
    rows[2]["samples_key"] = "base"
    race, asked = _race({"k1": 0.98})  # the better close one is slower head to head: the tie stands
    settle_rows(rows, race)
    assert asked == [("k1", "base")] and rows[1]["schedc"]["setting"] == "b=0" and rows[1]["delta_psnr"] == 0.0
