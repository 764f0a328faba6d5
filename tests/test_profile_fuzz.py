"""Hostile and faulty profiles (issue #10): every file is a valid Profile or one ProfileError line, in
bounded time; `schedc solve` never makes a schedule from invalid numbers. The reproductions from the
issue are named tests; a hypothesis property test mutates a small valid profile at random (the longer
run is bench/bench_fuzz_profiles.py)."""

from __future__ import annotations

import json
import random
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profile_mutations import base_profile, invalid_reason, profile_arrays, write_mutant
from schedc.cli import main
from schedc.errors import ProfileError
from schedc.profile import Profile
from schedc.profile_checks import MAX_BLOCKS, MAX_ELEMENTS, MAX_META_CHARS, MAX_META_DEPTH, MAX_STEPS

BASE = profile_arrays(base_profile())
BASE_V1 = profile_arrays(base_profile(), version=1)


def write(path: Path, arrays: dict, **changes) -> Path:
    """Save `arrays` with `changes` applied (None = drop the array)."""
    out = {**arrays, **changes}
    np.savez(path, **{k: v for k, v in out.items() if v is not None})
    return path


_FIELDS = object()


def with_meta(arrays: dict, meta=_FIELDS, **fields) -> dict:
    """`arrays` with metadata `meta`, or the base metadata with `fields` changed."""
    if meta is _FIELDS:
        meta = {**json.loads(str(arrays["meta_json"])), **fields}
    return {**arrays, "meta_json": np.array(json.dumps(meta))}


def rejected(path: Path, match: str = "") -> str:
    with pytest.raises(ProfileError) as info:
        Profile.load(path)
    message = str(info.value)
    assert "\n" not in message and match in message, message
    return message


def test_the_base_profiles_load_and_are_valid(tmp_path):
    for name, arrays in (("v2", BASE), ("v1", BASE_V1)):
        profile = Profile.load(write(tmp_path / f"{name}.npz", arrays))
        assert invalid_reason(profile) is None


# -- 1. tracebacks instead of one line ---------------------------------------------------------------------------

@pytest.mark.parametrize("meta", [[1, 2], "abc", 5, None, True])
def test_meta_of_the_wrong_type(tmp_path, meta):
    rejected(write(tmp_path / "p.npz", with_meta(BASE, meta)), "JSON object")


@pytest.mark.parametrize("field, value, match", [
    ("blocks", 3, "'blocks'"), ("steps", "abc", "'steps'"), ("steps", 2.0, "'steps'"), ("steps", True, "'steps'"),
    ("schedc_profile", True, "format version"), ("precisions", {"a": 1}, "'precisions'"),
    ("latency", [1, 2], "'latency'"), ("sampler", "abc", "'sampler'"), ("timesteps", None, "'timesteps'"),
])
def test_meta_fields_of_the_wrong_type(tmp_path, field, value, match):
    rejected(write(tmp_path / "p.npz", with_meta(BASE, **{field: value})), match)


def test_two_dimensional_reuse_err_sum_in_a_format_1_file(tmp_path):
    rejected(write(tmp_path / "p.npz", BASE_V1, reuse_err_sum=BASE_V1["reuse_err_sum"][:, 0]), "reuse_err_sum")


def test_huge_or_deeply_nested_meta_json(tmp_path):
    meta = json.loads(str(BASE["meta_json"]))
    deep = json.dumps({**meta, "config": 0}).replace('"config": 0', '"config": ' + "[" * 100_000 + "]" * 100_000)
    rejected(write(tmp_path / "deep.npz", {**BASE, "meta_json": np.array(deep)}), "not valid JSON")
    nested = json.dumps({**meta, "config": 0}).replace('"config": 0', '"config": ' + "[" * 50 + "]" * 50)
    rejected(write(tmp_path / "nested.npz", {**BASE, "meta_json": np.array(nested)}), f"{MAX_META_DEPTH} levels")
    rejected(write(tmp_path / "huge.npz", with_meta(BASE, config={"pad": "x" * MAX_META_CHARS})), "characters")
    rejected(write(tmp_path / "bigint.npz", {**BASE, "meta_json": np.array('{"steps": 1' + "0" * 5000 + "}")}))


@pytest.mark.parametrize("dtype", [object, "c16", "U3", "S3", bool])
def test_arrays_of_the_wrong_dtype(tmp_path, dtype):
    rejected(write(tmp_path / "p.npz", BASE, block_flops=BASE["block_flops"].astype(dtype)), "block_flops")


def test_object_arrays_are_never_unpickled(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    for name in ("meta_json", "quant_count", "reuse_err_sum.residual"):
        rejected(write(tmp_path / "p.npz", BASE, **{name: np.array([{"x": 1}], dtype=object)}), name)


@pytest.mark.parametrize("name, shape", [
    ("probe_count", (3, 5)), ("quant_err_sum", (3, 6)), ("block_flops", (4,)), ("reuse_count.forecast", (3, 1, 6, 6)),
    ("reuse_err_sum.output", (3, 6, 6)), ("quant_count", (3,)),
])
def test_mismatched_shapes(tmp_path, name, shape):
    rejected(write(tmp_path / "p.npz", BASE, **{name: np.zeros(shape, dtype=BASE[name].dtype)}), name)


@pytest.mark.parametrize("name", ["quant_count", "probe_count", "reuse_count.residual", "reuse_count.forecast2"])
@pytest.mark.parametrize("bad", ["negative", "fraction", "float", "huge"])
def test_counts_negative_or_not_integer(tmp_path, name, bad):
    a = BASE[name].copy()
    if bad == "negative":
        a.flat[-1] = -1
    elif bad == "huge":
        a.flat[-1] = 2**62
    else:
        a = a.astype(np.float64) + (0.5 if bad == "fraction" else 0.0)
    rejected(write(tmp_path / "p.npz", BASE, **{name: a}), name)


def test_missing_and_unknown_arrays(tmp_path):
    rejected(write(tmp_path / "a.npz", BASE, probe_local_sum=None), "probe_local_sum")
    rejected(write(tmp_path / "b.npz", BASE, **{"reuse_count.output": None}), "reuse_count.output")
    rejected(write(tmp_path / "c.npz", BASE, **{"reuse_err_sum.bogus": np.zeros(1), "reuse_count.bogus": np.zeros(1)}),
             "'bogus'")
    rejected(write(tmp_path / "d.npz", BASE, meta_json=None), "corrupt")


def test_truncated_and_foreign_files(tmp_path):
    good = write(tmp_path / "good.npz", BASE).read_bytes()
    for n in (0, 10, len(good) // 2, len(good) - 30):
        (tmp_path / "t.npz").write_bytes(good[:n])
        rejected(tmp_path / "t.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    rejected(tmp_path / "plain.npy", "not an .npz")
    rejected(tmp_path, "not a regular file")
    rejected(tmp_path / "missing.npz", "not found")


# -- 2. invalid numbers are refused, and solve makes no schedule from them -----------------------------------------

SUMS = ["block_flops", "reuse_err_sum.forecast", "reuse_err_sum.output", "reuse_err_sum.residual",
        "reuse_err_sum.forecast2", "probe_final_sum", "probe_local_sum", "quant_err_sum"]


@pytest.mark.parametrize("name", SUMS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, -0.5])
def test_nan_inf_or_negative_numbers(tmp_path, name, value):
    a = BASE[name].copy()
    a.flat[a.size // 2] = value
    rejected(write(tmp_path / "p.npz", BASE, **{name: a}), name)


def test_format_1_error_sums_with_nan_or_negatives(tmp_path):
    for name in ("reuse_err_sum", "output_err_sum", "forecast_err_sum"):
        for value in (np.nan, np.inf, -1.0):
            a = BASE_V1[name].copy()
            a.flat[a.size // 2] = value
            rejected(write(tmp_path / "p.npz", BASE_V1, **{name: a}))


def test_block_flops_zero(tmp_path):
    rejected(write(tmp_path / "p.npz", BASE, block_flops=np.zeros(3)), "block_flops")


@pytest.mark.parametrize("value", [0.0, -1e-3, float("nan"), float("inf")])
def test_latency_tables_must_be_finite_and_positive(tmp_path, value):
    meta = json.loads(str(BASE["meta_json"]))
    latency = {**meta["latency"], "int8": [1e-3, value, 1e-3]}
    rejected(write(tmp_path / "p.npz", with_meta(BASE, latency=latency)), "latency.int8")


def test_infinite_propagation_gain(tmp_path):
    final = BASE["probe_final_sum"].copy()
    local = BASE["probe_local_sum"].copy()
    final[0, 1], local[0, 1] = 1e300, 0.0
    rejected(write(tmp_path / "p.npz", BASE, probe_final_sum=final, probe_local_sum=local), "gain")


def test_zero_counts_of_an_output_only_block_stay_infinite_errors(tmp_path):
    """An output-only block has count 0 in residual modes (its sums need not be 0): +inf, never offered."""
    count = BASE["reuse_count.residual"].copy()
    count[1] = 0
    profile = Profile.load(write(tmp_path / "p.npz", BASE, **{"reuse_count.residual": count}))
    assert np.all(np.isinf(profile.reuse_error("residual")[1]))
    assert invalid_reason(profile) is None


def test_solve_refuses_a_profile_with_invalid_numbers(tmp_path, capsys):
    """The issue's example: negative / NaN sums produced a schedule with `predicted rel_l2: -0.65`."""
    for i, (name, value) in enumerate([("reuse_err_sum.forecast", -5.0), ("quant_err_sum", np.nan),
                                       ("block_flops", np.inf), ("probe_final_sum", -1.0)]):
        a = BASE[name].copy()
        a[...] = value if name != "reuse_err_sum.forecast" else np.where(BASE[name] > 0, value, 0.0)
        path = write(tmp_path / f"p{i}.npz", BASE, **{name: a})
        out = tmp_path / f"s{i}.yaml"
        code = main(["solve", str(path), "--budget", "0.5", "-o", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and name in err, err
        assert not out.exists()


# -- 3. bounded work ----------------------------------------------------------------------------------------------

def _zip_with_header(path: Path, arrays: dict, name: str, shape: tuple) -> Path:
    """A file whose member `name` claims `shape` in its header but holds almost no data."""
    import io

    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            if key == name:
                np.lib.format.write_array_header_2_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
                buf.write(b"\0" * 16)
            else:
                np.lib.format.write_array(buf, value)
            zf.writestr(key + ".npy", buf.getvalue())
    return path


@pytest.mark.parametrize("name, shape", [
    ("reuse_err_sum.forecast", (3, 2, 6, 2**40)), ("block_flops", (2**62,)), ("quant_err_sum", (MAX_ELEMENTS + 1,)),
    ("meta_json", ()),
])
def test_huge_arrays_are_refused_from_their_header(tmp_path, name, shape):
    start = time.process_time()
    rejected(_zip_with_header(tmp_path / "p.npz", BASE, name, shape))
    assert time.process_time() - start < 2


def test_block_and_step_counts_are_capped(tmp_path):
    meta = json.loads(str(BASE["meta_json"]))
    rejected(write(tmp_path / "b.npz", with_meta(BASE, blocks=[f"b{i}" for i in range(MAX_BLOCKS + 1)])), "'blocks'")
    rejected(write(tmp_path / "t.npz", with_meta(BASE, steps=MAX_STEPS + 1)), "'steps'")
    rejected(write(tmp_path / "k.npz", with_meta(BASE, forecast_gap=10_000)), "'forecast_gap'")
    assert meta["steps"] == 6  # the base is untouched


def test_too_many_members(tmp_path):
    from schedc.profile_checks import MAX_MEMBERS

    rejected(write(tmp_path / "p.npz", BASE, **{f"extra{i}": np.zeros(1) for i in range(MAX_MEMBERS)}), "at most")


# -- the property: any mutation loads valid or fails with one line, fast ------------------------------------------

@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), version=st.sampled_from([1, 2, 2, 2]))
def test_any_mutated_profile_loads_valid_or_fails_in_one_line(seed, version):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.npz"
        what = write_mutant(path, random.Random(seed), BASE_V1 if version == 1 else BASE)
        start = time.process_time()
        try:
            profile = Profile.load(path)
        except ProfileError as exc:
            assert "\n" not in str(exc), (what, str(exc))
            profile = None
        assert time.process_time() - start < 2, what
        if profile is not None:
            assert invalid_reason(profile, solve=False) is None, what
