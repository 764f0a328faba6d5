"""Hostile and faulty profile files, for the fuzz test (tests/test_profile_fuzz.py) and its longer run
(bench/bench_fuzz_profiles.py): a small valid profile, mutated at random, and an independent check that
whatever `Profile.load` accepts holds only valid numbers and solves to a valid prediction."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np

from schedc.errors import SchedcError
from schedc.profile import Profile
from schedc.profile_meta import ProfileMeta
from schedc_runtime.modes import REUSE_MODES

B, T, GAP, MAX_AGE = 3, 6, 2, 4
PRECISIONS = ("int8", "fp8")


def base_profile(seed: int = 0) -> Profile:
    """A valid 3-block x 6-step profile with every registered mode and two precisions, built directly."""
    rng = np.random.default_rng(seed)
    meta = ProfileMeta(
        model="fuzz", fingerprint="sha256:00", blocks=tuple(f"blocks.{i}" for i in range(B)), timestep_arg="timestep",
        steps=T, timesteps=tuple(float(999 - 150 * i) for i in range(T)),
        sampler={"steps": T, "guidance_scale": 2.0, "cfg": "batched"}, calibration_seeds=(0, 1, 2), max_age=MAX_AGE,
        forecast_gap=GAP, precisions=PRECISIONS, kernels={p: ("simulated",) for p in PRECISIONS}, probe_steps=(1, 3, 5),
        probe_samples=2, nonblock_flops=100.0, profile_seconds=1.0, versions={"schedc": "0.1.0"}, config={"x": 1},
        model_source={"path": "fuzz"}, block_outputs=(), cache_bytes=(64,) * B,
        latency={"native": (1e-3,) * B, "reuse": (1e-5,) * B, **{p: (6e-4,) * B for p in PRECISIONS}}, device="x86_64",
    )
    s, t = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    age = t - s
    sums, counts = {}, {}
    for mode, spec in REUSE_MODES.items():
        k = len(spec.patterns(GAP))
        reach = (age > 0) & (age <= MAX_AGE)
        c = np.zeros((B, k, T, T), dtype=np.int64)
        for j, gaps in enumerate(spec.patterns(GAP)):
            c[:, j] = np.where(reach & (s >= sum(gaps)), 6, 0)
        sums[mode] = c * rng.uniform(0.0, 0.1, c.shape) * np.maximum(age, 0)
        counts[mode] = c
    probe = np.zeros((B, T), dtype=np.int64)
    probe[:, [1, 3, 5]] = 2
    local = probe * rng.uniform(0.01, 0.1, (B, T))
    return Profile(
        reuse_err_sum=sums, reuse_count=counts,
        quant_err_sum=rng.uniform(0.0, 0.05, (B, T, len(PRECISIONS))) * 6, quant_count=np.full((B, T), 6, dtype=np.int64),
        probe_final_sum=local * rng.uniform(0.5, 3.0, (B, T)), probe_local_sum=local, probe_count=probe,
        block_flops=np.full(B, 1e6), meta=meta,
    )


def profile_arrays(profile: Profile, version: int = 2) -> dict[str, np.ndarray]:
    """What the profile's file holds: its arrays and `meta_json`, in format 2 or converted back to format 1."""
    arrays = dict(profile._named_arrays())
    meta = profile.meta.to_file_dict()
    if version == 1:
        for mode in REUSE_MODES:
            arrays.pop(f"reuse_err_sum.{mode}"), arrays.pop(f"reuse_count.{mode}")
        arrays.update(reuse_err_sum=profile.reuse_err_sum["residual"][:, 0],
                      output_err_sum=profile.reuse_err_sum["output"][:, 0],
                      reuse_count=profile.reuse_count["residual"][:, 0],
                      forecast_err_sum=profile.reuse_err_sum["forecast"],
                      forecast_count=profile.reuse_count["forecast"])
        meta["schedc_profile"] = 1
    arrays["meta_json"] = np.array(json.dumps(meta))
    return arrays


# -- mutations: each takes (arrays, meta dict, rng) and changes them in place ------------------------------------

JUNK: list[Any] = [None, True, False, 0, -1, 3, 2**63, 10**40, 1.5, -0.0, float("nan"), float("inf"), -float("inf"),
                   "", "abc", "3", [], [1, 2], ["a"], {}, {"a": 1}, [[[]]], "x" * 10_000, list(range(2000))]


def _numeric(arrays: dict) -> list[str]:
    return [n for n in arrays if n != "meta_json"]


def m_drop(arrays, meta, rng):
    arrays.pop(rng.choice(list(arrays)))


def m_rename(arrays, meta, rng):
    name = rng.choice(list(arrays))
    new = rng.choice(["reuse_err_sum.bogus", "reuse_count.bogus", "reuse_err_sum.forecast9", name.upper(), name + "x",
                      "reuse_err_sum", "meta_json", "reuse_err_sum.residual", ""])
    arrays[new] = arrays.pop(name)


def m_shape(arrays, meta, rng):
    name = rng.choice(_numeric(arrays))
    a = arrays[name]
    choice = rng.randrange(6)
    if choice == 0 and a.ndim:
        arrays[name] = a[tuple(slice(0, max(0, n - 1)) for n in a.shape)]
    elif choice == 1:
        arrays[name] = a[..., None]
    elif choice == 2:
        arrays[name] = a.reshape(-1)
    elif choice == 3 and a.ndim:
        arrays[name] = a[0]
    elif choice == 4:
        arrays[name] = np.asarray(a).T.copy()
    else:
        arrays[name] = np.zeros((0,) * max(a.ndim, 1), dtype=a.dtype)


def m_dtype(arrays, meta, rng):
    name = rng.choice(_numeric(arrays))
    a = arrays[name]
    kind = rng.choice(["f4", "f2", "i8", "u8", "i1", "bool", "c16", "U3", "S3", "object", "V8", "f8"])
    if kind == "object":
        arrays[name] = a.astype(object)
    elif kind == "V8":
        arrays[name] = np.zeros(a.shape, dtype=[("a", "f4"), ("b", "i4")])
    else:
        with np.errstate(all="ignore"):
            arrays[name] = a.astype(kind)


def m_values(arrays, meta, rng):
    name = rng.choice(_numeric(arrays))
    a = np.array(arrays[name])
    if a.size == 0:
        return
    value = rng.choice([np.nan, np.inf, -np.inf, -1.0, -1e-300, 1e308, 1e300, 0.0, 1e-300, 2.5, -7, 2**62, 2**40 + 1])
    idx = rng.randrange(a.size) if rng.random() < 0.7 else slice(None)
    if a.dtype.kind in "iu" and (rng.random() < 0.5 or (isinstance(value, float) and not math.isfinite(value))):
        a = a.astype(np.float64)  # counts that are not integers
    try:
        with np.errstate(all="ignore"):
            a.flat[idx] = value
    except (OverflowError, ValueError, TypeError):
        return  # a value this dtype cannot hold
    arrays[name] = a


def m_zero_counts(arrays, meta, rng):
    """Counts 0 under non-zero sums: legitimate (an output-only block's residual modes), the mean is +inf."""
    name = rng.choice([n for n in arrays if "count" in n] or _numeric(arrays))
    a = np.array(arrays[name])
    if a.ndim == 0 or a.shape[0] == 0 or a.dtype.kind not in "iuf":
        return
    a[rng.randrange(a.shape[0])] = 0
    arrays[name] = a


def m_meta_field(arrays, meta, rng):
    key = rng.choice(list(meta) + ["surprise", "latency.native", "sampler.steps", "cache_bytes.0", "timesteps.0"])
    head, _, tail = key.partition(".")
    if tail and isinstance(meta.get(head), dict) and tail in meta[head] or tail and isinstance(meta.get(head), list):
        target, sub = meta[head], (int(tail) if isinstance(meta[head], list) else tail)
        if isinstance(target, list) and not target:
            return
        target[sub] = rng.choice(JUNK)
    elif rng.random() < 0.2:
        meta.pop(head, None)
    else:
        meta[head] = rng.choice(JUNK)


def m_meta_numbers(arrays, meta, rng):
    key = rng.choice(["steps", "max_age", "forecast_gap", "probe_samples", "nonblock_flops", "profile_seconds",
                      "schedc_profile", "latency", "cache_bytes"])
    if key == "latency" and isinstance(meta.get("latency"), dict):
        row = rng.choice(list(meta["latency"]))
        meta["latency"][row] = [rng.choice([0.0, -1e-3, float("nan"), float("inf"), 1e-3]) for _ in range(B)]
    else:
        meta[key] = rng.choice([0, 1, -1, T - 1, T, T + 1, 1000, 1001, 10**6, 2**31, 1.0, 2.0, 1e308, True])


def m_meta_structure(arrays, meta, rng):
    choice = rng.randrange(6)
    if choice == 0:
        text = json.dumps(rng.choice([[1, 2], "abc", 5, None, True]))
    elif choice == 1:
        depth = rng.choice([40, 1000, 100_000])
        text = json.dumps({**meta, "config": None}).replace("null", "[" * depth + "]" * depth)
    elif choice == 2:
        text = json.dumps({**meta, "config": {"pad": "x" * (4 * 2**20 + 10)}})
    elif choice == 3:
        text = json.dumps(meta)[: rng.randrange(len(json.dumps(meta)))]
    elif choice == 4:
        text = json.dumps({**meta, "steps": 1}).replace('"steps": 1', '"steps": 1' + "0" * 5000)
    else:
        arrays["meta_json"] = rng.choice([np.array(3.0), np.array([json.dumps(meta)] * 2), np.array(b"{}"),
                                          np.zeros((2, 2))])
        return
    arrays["meta_json"] = np.array(text)


def m_huge_header(arrays, meta, rng):
    """A member whose header claims a huge shape (the reader must refuse before reading data)."""
    name = rng.choice(_numeric(arrays) or ["block_flops"])
    shape = rng.choice([(2**40,), (B, 2**20, T, T), (10**6, 10**6), (B, 200, 1000, 1000)])
    arrays[name] = ("HUGE", shape)


MUTATIONS: list[Callable] = [m_drop, m_rename, m_shape, m_dtype, m_values, m_values, m_values, m_zero_counts,
                             m_meta_field, m_meta_field, m_meta_numbers, m_meta_structure, m_huge_header]


def _npy_bytes(value: Any) -> bytes:
    buf = io.BytesIO()
    if isinstance(value, tuple) and value and value[0] == "HUGE":  # header only, data truncated
        np.lib.format.write_array_header_2_0(buf, {"descr": "<f8", "fortran_order": False, "shape": value[1]})
        buf.write(b"\0" * 64)
    else:
        np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
    return buf.getvalue()


def write_mutant(path: Path, rng: random.Random, base: dict[str, np.ndarray]) -> str:
    """Write a mutated copy of `base` (a profile file's arrays) to `path`; returns what was done."""
    import zipfile

    arrays = dict(base)
    meta = json.loads(str(arrays["meta_json"]))
    done = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        m = rng.choice(MUTATIONS)
        done.append(m.__name__)
        m(arrays, meta, rng)
        if m not in (m_meta_structure,) and "meta_json" in arrays and arrays["meta_json"].dtype.kind == "U" \
                and arrays["meta_json"].shape == () and m in (m_meta_field, m_meta_numbers):
            arrays["meta_json"] = np.array(json.dumps(meta))
    method = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, value in arrays.items():
            zf.writestr(name + ".npy", _npy_bytes(value))
    data = buf.getvalue()
    r = rng.random()
    if r < 0.06:
        data = data[: rng.randrange(len(data))]
        done.append("truncate")
    elif r < 0.12:
        data = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
        done.append("flip-bytes")
    elif r < 0.14:
        data = rng.choice([b"", b"\x93NUMPY" + bytes(20), _npy_bytes(np.zeros(3)), bytes(rng.randrange(256) for _ in range(300))])
        done.append("not-a-zip")
    path.write_bytes(data)
    return "+".join(done) or "none"


# -- the independent re-check of an accepted profile ---------------------------------------------------------------

def invalid_reason(profile: Profile, solve: bool = True) -> str | None:
    """None if every number of `profile` is valid and the dp solver predicts a valid error from it."""
    b, t = len(profile.meta.blocks), profile.meta.steps
    sums = [profile.quant_err_sum, profile.probe_final_sum, profile.probe_local_sum, *profile.reuse_err_sum.values()]
    counts = [profile.quant_count, profile.probe_count, *profile.reuse_count.values()]
    if not all(a.dtype == np.float64 and np.all(np.isfinite(a)) and np.all(a >= 0) for a in sums):
        return "a sum is not finite and >= 0"
    if not all(a.dtype == np.int64 and np.all(a >= 0) for a in counts):
        return "a count is not an integer >= 0"
    if profile.block_flops.shape != (b,) or not np.all(np.isfinite(profile.block_flops)) or np.any(profile.block_flops <= 0):
        return "block_flops not finite and > 0"
    if profile.quant_count.shape != (b, t) or profile.quant_err_sum.shape != (b, t, len(profile.precisions)):
        return "shapes"
    for mode in profile.modes:
        e = profile.reuse_error(mode)
        if e.shape[0] != b or e.shape[2:] != (t, t) or np.any(np.isnan(e)) or np.any(e < 0):
            return f"{mode} errors invalid"
    q = profile.quant_error()
    if np.any(np.isnan(q)) or np.any(q < 0):
        return "quant errors invalid"
    g = profile.gain()
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        return "gain invalid"
    latency = profile.meta.latency or {}
    if any(not (math.isfinite(x) and x > 0) for row in latency.values() for x in row):
        return "latency invalid"
    if not solve:
        return None
    from schedc.problem import problem_from_profile
    from schedc.solvers import get_solver

    for cost in ("flops", "latency") if latency else ("flops",):
        for budget in (0.4,):
            try:
                solution = get_solver("dp")(problem_from_profile(profile, cost=cost), budget)
            except SchedcError:
                continue  # an infeasible budget is a one-line error, not a wrong answer
            p = solution.predicted_error
            if math.isnan(p) or p < 0:
                return f"dp predicted {p} ({cost}, budget {budget})"
    return None
