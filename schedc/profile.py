"""The Profile: what the profiler measured, stored as sums and counts so shards merge exactly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from schedc.atomic import atomic_savez
from schedc.errors import ProfileError
from schedc_runtime.modes import REUSE_MODES
from schedc.profile_checks import (READ_ERRORS, SET_KEY, as_counts, open_profile_file, as_sums, check_dims, check_gain, check_shape,
                                   check_sums, parse_meta)
from schedc.profile_meta import PROFILE_VERSION, READABLE_VERSIONS, ProfileMeta  # noqa: F401  (re-exported)

_ARRAYS = ("quant_err_sum", "quant_count", "probe_final_sum", "probe_local_sum", "probe_count", "block_flops")


@dataclass(frozen=True)
class Profile:
    """Measured at full compute on calibration inputs.

    reuse_err_sum[mode][b, k, s, t] / reuse_count[mode][b, k, s, t]: mean relative error of block b's
        output at step t when it reuses in `mode` (runtime/modes/) the computes at s and before, spaced
        as the mode's pattern k (residual/output have one pattern: the last compute s); counted per
        sample row.
    quant_err_sum[b, t, p] / quant_count[b, t]: block b's output error at step t when it computes at
        precision meta.precisions[p] on the same input.
    probe_final_sum[b, t] / probe_local_sum[b, t]: propagation gain at probed steps: the final
        sample's relative error per unit of local relative error when only (b, t) reuses from t-1.
    block_flops[b]: FLOPs of one call of block b for one sample; meta.nonblock_flops for the rest.
    meta: model name, fingerprint, block names, steps, timesteps, sampler, calibration seeds, ... (ProfileMeta)
    """

    reuse_err_sum: Mapping[str, np.ndarray]  # mode -> [B, K, T, T] float64
    reuse_count: Mapping[str, np.ndarray]  # mode -> [B, K, T, T] int64
    quant_err_sum: np.ndarray  # [B, T, P] float64
    quant_count: np.ndarray  # [B, T] int64
    probe_final_sum: np.ndarray  # [B, T] float64
    probe_local_sum: np.ndarray  # [B, T] float64
    probe_count: np.ndarray  # [B, T] int64
    block_flops: np.ndarray  # [B] float64
    meta: ProfileMeta

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived quantities -------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return int(self.quant_count.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.quant_count.shape[1])

    @property
    def modes(self) -> tuple[str, ...]:
        """Reuse modes this profile measured, in registry order."""
        return tuple(m for m in REUSE_MODES if m in self.reuse_err_sum)

    def patterns(self, mode: str) -> tuple[tuple[int, ...], ...]:
        """The spacings (most recent first) of the computes each slice k of `mode`'s table reads."""
        return _pattern_table(mode, self.meta.forecast_gap)

    def reuse_error(self, mode: str = "residual") -> np.ndarray:
        """[B, K, T, T] mean relative error indexed [b, pattern, s, t]; +inf where never measured
        (s >= t, beyond the max age, or a mode the block cannot use)."""
        if mode not in self.reuse_err_sum:
            raise ProfileError(f"the profile did not measure {mode} reuse; re-profile with this schedc")
        sums, counts = self.reuse_err_sum[mode], self.reuse_count[mode]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
        return np.where(counts > 0, mean, np.inf)

    def quant_error(self) -> np.ndarray:
        """[B, T, P] mean relative error of computing at each of meta.precisions."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.quant_count[..., None] > 0, self.quant_err_sum / self.quant_count[..., None], np.inf)

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.meta.precisions

    def gain(self) -> np.ndarray:
        """[B, T] propagation gain, linearly interpolated over steps between the probed ones."""
        probed = self.probe_count.sum(axis=0) > 0  # [T]
        steps = np.flatnonzero(probed)
        if steps.size == 0:
            return np.ones((self.num_blocks, self.num_steps))
        with np.errstate(invalid="ignore", divide="ignore"):
            g = self.probe_final_sum[:, steps] / np.maximum(self.probe_local_sum[:, steps], 1e-30)  # [B, P]
        grid = np.arange(self.num_steps)
        return np.stack([np.interp(grid, steps, g[b]) for b in range(self.num_blocks)])

    def digest(self) -> str:
        """sha256 of every array and the metadata; computed once (a Profile is immutable), since the search
        builds a schedule, which records it, for every move it checks against a memory limit."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            cached = self._hash()
            object.__setattr__(self, "_digest", cached)
        return cached

    def _hash(self) -> str:
        h = hashlib.sha256()
        for name, array in self._named_arrays().items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(json.dumps(self.meta.to_dict(), sort_keys=True).encode())
        return "sha256:" + h.hexdigest()[:32]

    # -- merging shards --------------------------------------------------------------------------
    def merge(self, other: "Profile") -> "Profile":
        """Exact: sums and counts add. Shards must be of the same model and settings, disjoint seeds."""
        for key in ("fingerprint", "steps", "timesteps", "sampler", "max_age", "precisions", "forecast_gap", "model_source"):
            if getattr(self.meta, key) != getattr(other.meta, key):
                raise ProfileError(f"cannot merge profiles with different {key}")
        mine, theirs = ({k: v for k, v in m.config.items() if k not in ("shard", "rank")} for m in (self.meta, other.meta))
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differ:
            raise ProfileError(f"cannot merge profiles made with different profiler options ({', '.join(differ)})")
        overlap = set(self.meta.calibration_seeds) & set(other.meta.calibration_seeds)
        if overlap:
            raise ProfileError(f"cannot merge profiles sharing calibration seeds ({len(overlap)} in common)")
        if set(self.reuse_err_sum) != set(other.reuse_err_sum):
            raise ProfileError("cannot merge profiles that measured different reuse modes")
        meta = self.meta.replace(calibration_seeds=sorted(self.meta.calibration_seeds + other.meta.calibration_seeds))
        return replace(
            self,
            **{name: getattr(self, name) + getattr(other, name) for name in _ARRAYS if name != "block_flops"},
            reuse_err_sum={m: a + other.reuse_err_sum[m] for m, a in self.reuse_err_sum.items()},
            reuse_count={m: a + other.reuse_count[m] for m, a in self.reuse_count.items()},
            meta=meta,
        )

    def _named_arrays(self) -> dict[str, np.ndarray]:
        """Every array under its file name: mode tables as `reuse_err_sum.<mode>` / `reuse_count.<mode>`."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        for mode in self.modes:
            arrays[f"reuse_err_sum.{mode}"] = self.reuse_err_sum[mode]
            arrays[f"reuse_count.{mode}"] = self.reuse_count[mode]
        return arrays

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return atomic_savez(path, self.arrays_for_file())

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        """Any file -> a valid Profile or one ProfileError line, within the limits of schedc.profile_checks.

        A multi-setting file (schedc.profile_set) is refused here, naming what reads it."""
        path = Path(path)
        if not path.exists():
            raise ProfileError(f"profile not found: {path} (run `schedc profile` first)")
        with open_profile_file(path) as data:
            if SET_KEY in data.files:
                raise ProfileError(f"profile {path} holds several settings (guidance scales / step counts): "
                                   "`schedc solve` compiles for them (--for mean|worst, or --guidance-scale/--steps to pick one)")
            return cls.read(data, f"profile {path}")

    @classmethod
    def read(cls, data: Any, where: str) -> "Profile":
        """One profile from an open NpzReader (or a prefixed view of one: schedc.profile_set)."""
        try:
            meta = parse_meta(str(data["meta_json"]), where)
            version = meta.get("schedc_profile")
            if type(version) is not int or version not in READABLE_VERSIONS:  # not true, 1.0 or "1"
                raise ProfileError(f"{where} has format version {version!r}; this schedc reads "
                                   f"{', '.join(map(str, READABLE_VERSIONS))}: re-profile the model with `schedc profile`")
            profile_meta = ProfileMeta.from_file_dict(meta, where=where)
            _check_headers(data, profile_meta, version)
            arrays = {name: data[name] for name in _ARRAYS}
            tables = _tables_v1(data) if version == 1 else _tables(data)
        except ProfileError:
            raise
        except READ_ERRORS as exc:
            raise ProfileError(f"{where} is corrupt or not a schedc profile ({type(exc).__name__})") from None
        try:
            return cls(meta=profile_meta, **arrays, **tables)
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc}") from None

    def arrays_for_file(self) -> dict[str, np.ndarray]:
        """What `save` writes: every array under its member name, and the metadata JSON."""
        arrays = self._named_arrays()
        arrays["meta_json"] = np.array(json.dumps(self.meta.to_file_dict()))
        return arrays


def _validate(p: Profile) -> None:
    """Types, shapes (from meta) and numbers of every array; coerces sums to float64, counts to int64."""
    if not isinstance(p.meta, ProfileMeta):
        raise ProfileError(f"profile meta must be a ProfileMeta, got {type(p.meta).__name__}")
    if (not isinstance(p.reuse_err_sum, Mapping) or not isinstance(p.reuse_count, Mapping) or not p.reuse_err_sum
            or set(p.reuse_err_sum) != set(p.reuse_count)):
        raise ProfileError("profile has no reuse tables, or sums and counts for different modes")
    b, t, n_p = len(p.meta.blocks), p.meta.steps, len(p.meta.precisions)
    k = {mode: len(_pattern_table(mode, p.meta.forecast_gap)) for mode in p.reuse_err_sum}
    check_dims(b, t, k)
    put = object.__setattr__  # frozen dataclass: store the coerced arrays
    put(p, "reuse_err_sum", {m: as_sums(f"reuse_err_sum.{m}", a) for m, a in p.reuse_err_sum.items()})
    put(p, "reuse_count", {m: as_counts(f"reuse_count.{m}", a) for m, a in p.reuse_count.items()})
    for name in ("quant_err_sum", "probe_final_sum", "probe_local_sum", "block_flops"):
        put(p, name, as_sums(name, getattr(p, name)))
    for name in ("quant_count", "probe_count"):
        put(p, name, as_counts(name, getattr(p, name)))
    for mode in p.reuse_err_sum:
        check_shape(f"reuse_err_sum.{mode}", p.reuse_err_sum[mode], "B, K, T, T", (b, k[mode], t, t))
        check_shape(f"reuse_count.{mode}", p.reuse_count[mode], "B, K, T, T", (b, k[mode], t, t))
        check_sums(f"reuse_err_sum.{mode}", p.reuse_err_sum[mode])
    check_shape("quant_err_sum", p.quant_err_sum, "B, T, P (P = meta.precisions)", (b, t, n_p))
    for name in ("quant_count", "probe_final_sum", "probe_local_sum", "probe_count"):
        check_shape(name, getattr(p, name), "B, T", (b, t))
    check_shape("block_flops", p.block_flops, "B", (b,))
    for name in ("quant_err_sum", "probe_final_sum", "probe_local_sum"):
        check_sums(name, getattr(p, name))
    if not np.all(np.isfinite(p.block_flops)) or not np.all(p.block_flops > 0):
        raise ProfileError("profile block_flops must be finite and positive (every block does work)")
    if n_p and np.any(p.quant_count == 0):
        raise ProfileError("profile quant_count is 0 somewhere: every precision must be measured at every block and step")
    check_gain(p.probe_final_sum, p.probe_local_sum, p.probe_count)


def _check_headers(data: Any, meta: ProfileMeta, version: int) -> None:
    """Before any large array is read: every member it will read has the shape meta implies."""
    b, t = len(meta.blocks), meta.steps
    check_dims(b, t, {})
    want = {"quant_err_sum": (b, t, len(meta.precisions)), "block_flops": (b,),
            **{n: (b, t) for n in ("quant_count", "probe_final_sum", "probe_local_sum", "probe_count")}}
    if version == 1:
        want.update({"reuse_err_sum": (b, t, t), "output_err_sum": (b, t, t), "reuse_count": (b, t, t),
                     "forecast_err_sum": (b, meta.forecast_gap, t, t), "forecast_count": (b, meta.forecast_gap, t, t)})
    else:
        for mode in (n.split(".", 1)[1] for n in data.files if n.startswith(("reuse_err_sum.", "reuse_count."))):
            shape = (b, len(_pattern_table(mode, meta.forecast_gap)), t, t)
            want.update({f"reuse_err_sum.{mode}": shape, f"reuse_count.{mode}": shape})
    for name, shape in want.items():
        if name not in data.files:
            raise ProfileError(f"profile has no array {name!r}: it is incomplete or not a schedc profile")
        got = data.header(name)[0]
        if got != shape:
            raise ProfileError(f"profile array {name} must have shape {shape} (from its metadata), got {got}")


def _pattern_table(mode: str, gap: int) -> tuple[tuple[int, ...], ...]:
    if mode not in REUSE_MODES:
        raise ProfileError(f"the profile has tables for reuse mode {mode!r}, which this schedc does not know")
    return REUSE_MODES[mode].patterns(gap)


def _tables(data: Any) -> dict[str, dict[str, np.ndarray]]:
    """Version 2: one sum and one count table per measured mode."""
    modes = [k.split(".", 1)[1] for k in data.files if k.startswith("reuse_err_sum.")]
    return {"reuse_err_sum": {m: data[f"reuse_err_sum.{m}"] for m in modes},
            "reuse_count": {m: data[f"reuse_count.{m}"] for m in modes}}


def _tables_v1(data: Any) -> dict[str, dict[str, np.ndarray]]:
    """Version 1 kept one field per mode (residual, output sharing its count, forecast): same numbers."""
    count = data["reuse_count"][:, None]
    return {"reuse_err_sum": {"residual": data["reuse_err_sum"][:, None],
                              "output": data["output_err_sum"][:, None],
                              "forecast": data["forecast_err_sum"]},
            "reuse_count": {"residual": count, "output": count.copy(), "forecast": data["forecast_count"]}}

