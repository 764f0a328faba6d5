"""bench/bench_zoo.py's bookkeeping: model specs from zoo.json, matching verdicts, the acceptance checks
and the summary. The model work itself is the bench's (smoke-run by hand); these run in milliseconds."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zoo():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_zoo", ROOT / "bench" / "bench_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_zoo"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _ours(budget, psnr, predicted=None):
    return {"family": "schedc", "setting": f"search b={budget:.2f}", "budget": budget, "psnr": psnr, "speedup": 1 / budget,
            "predicted_psnr": predicted, "prediction_error_db": None if predicted is None else predicted - psnr}


def test_model_spec_reads_zoo_json(zoo, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "zoo.json").write_text(json.dumps({"classes": "0-2,5", "cond": "cond.safetensors", "guidance_scale": 5.0,
                                                 "steps": 20, "cfg": "batched"}))
    spec = zoo.model_spec("zoo/m", tmp_path)
    assert spec.name == "m" and spec.classes == (0, 1, 2, 5) and spec.steps == 20 and spec.guidance_scale == 5.0
    assert spec.cond == str(folder.resolve() / "cond.safetensors")
    assert zoo.model_spec("digits-dit", tmp_path).source == "digits-dit"
    assert zoo.default_models(tmp_path) == ["zoo/m", "digits-dit"]
    with pytest.raises(zoo.SchedcError):
        zoo.model_spec("zoo/absent", tmp_path)


def test_monotone_check(zoo):
    rising = [_ours(b, 20 + 30 * b) for b in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)]
    assert zoo.monotone_check(rising, 0.1)["monotone"] is True
    flat = [_ours(b, p) for b, p in ((0.1, 20), (0.2, 25), (0.3, 30), (0.4, 30.05), (0.5, 30.08), (0.9, 40))]
    result = zoo.monotone_check(flat, 0.1)
    assert result["monotone"] is False and any(p.startswith("flat 0.30->0.50") for p in result["problems"])
    drop = [_ours(b, p) for b, p in ((0.1, 20), (0.2, 26), (0.3, 25), (0.9, 40))]
    assert any(p.startswith("drop 0.20->0.30") for p in zoo.monotone_check(drop, 0.1)["problems"])
    assert zoo.monotone_check([_ours(0.3, 30), _ours(0.5, 35)], 0.1)["monotone"] is None  # range not covered


def test_checks_count_none_as_fast_as_lost(zoo):
    rows = [{"family": "full", "setting": "full", "psnr": float("inf"), "speedup": 1.0},
            _ours(0.3, 40, predicted=40.5), _ours(0.5, 50, predicted=52)]
    rows += [{"family": "uniform", "setting": "b=0.30", "psnr": 35, "speedup": 4.0},  # faster than both: lost
             {"family": "pab", "setting": "x", "psnr": 45, "speedup": 1.5},  # b=0.5 faster, 50 > 45: won
             {"family": "magcache", "setting": "y", "psnr": 41, "speedup": 2.5}]  # b=0.3 only, 40 < 41: lost
    zoo.match_rows(rows)
    for r in rows:
        if r["family"] not in ("full", "schedc"):
            r["lost"] = r["delta_psnr"] is None or r["delta_psnr"] <= 0
    c = zoo.checks(rows, 0.1)
    assert (c["rows"], c["won"], c["lost"], c["none_as_fast"]) == (3, 1, 2, 1)
    assert c["worst_delta"] == pytest.approx(-1) and c["median_delta"] == pytest.approx(2)
    assert (c["predicted_within"], c["predicted_rows"]) == (1, 2)
    text = zoo.summary_markdown([{"settings": {"model": "m", "solver": "search", "samples": 8, "rounds": 1, "timing_batch": 8,
                                               "threads": 1, "evaluations": 2, "torch": "t", "flat_db": 0.1,
                                               "sampler": {"steps": 50, "scheduler": "DDIM", "cfg": "batched",
                                                           "guidance_scale": 3.0}},
                                  "rows": rows, "checks": c}])
    assert "| m | search |" in text and "| 3 | 1 | 2 | +2.00 | -1.00 | 1/2 (50%) |" in text
