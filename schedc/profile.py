"""The Profile: what the profiler measured, stored as sums and counts so shards merge exactly."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from schedc.atomic import atomic_path
from schedc.errors import ProfileError
from schedc.profile_meta import PROFILE_VERSION, ProfileMeta  # noqa: F401  (PROFILE_VERSION: re-exported)

_ARRAYS = ("reuse_err_sum", "reuse_count", "output_err_sum", "forecast_err_sum", "forecast_count",
           "quant_err_sum", "quant_count", "probe_final_sum", "probe_local_sum", "probe_count", "block_flops")
REUSE_MODES = ("residual", "output", "forecast")


@dataclass(frozen=True)
class Profile:
    """Measured at full compute on calibration inputs.

    reuse_err_sum[b, s, t] / reuse_count[b, s, t]: mean relative error of block b's output at step t
        when it reuses (residual) the cache made at step s; counted per sample row.
    output_err_sum[b, s, t] / reuse_count: the same for output reuse (the cached output itself).
    forecast_err_sum[b, g, s, t] / forecast_count: forecast reuse at t from the computes at s and
        s' = s - g - 1 (first-order extrapolation of the residual).
    quant_err_sum[b, t, p] / quant_count[b, t]: block b's output error at step t when it computes at
        precision meta.precisions[p] on the same input.
    probe_final_sum[b, t] / probe_local_sum[b, t]: propagation gain at probed steps: the final
        sample's relative error per unit of local relative error when only (b, t) reuses from t-1.
    block_flops[b]: FLOPs of one call of block b for one sample; meta.nonblock_flops for the rest.
    meta: model name, fingerprint, block names, steps, timesteps, sampler, calibration seeds, ... (ProfileMeta)
    """

    reuse_err_sum: np.ndarray  # [B, T, T] float64
    reuse_count: np.ndarray  # [B, T, T] int64
    output_err_sum: np.ndarray  # [B, T, T] float64
    forecast_err_sum: np.ndarray  # [B, G, T, T] float64
    forecast_count: np.ndarray  # [B, G, T, T] int64
    quant_err_sum: np.ndarray  # [B, T, P] float64
    quant_count: np.ndarray  # [B, T] int64
    probe_final_sum: np.ndarray  # [B, T] float64
    probe_local_sum: np.ndarray  # [B, T] float64
    probe_count: np.ndarray  # [B, T] int64
    block_flops: np.ndarray  # [B] float64
    meta: ProfileMeta

    def __post_init__(self) -> None:
        b, t, t2 = self.reuse_err_sum.shape
        if t != t2 or self.reuse_count.shape != (b, t, t):
            raise ProfileError("profile arrays have inconsistent shapes")
        if self.output_err_sum.shape != (b, t, t) or self.forecast_err_sum.shape[0::2] != (b, t):
            raise ProfileError("profile reuse-mode arrays have inconsistent shapes")
        if self.forecast_count.shape != self.forecast_err_sum.shape:
            raise ProfileError("profile forecast arrays have inconsistent shapes")
        if not isinstance(self.meta, ProfileMeta):
            raise ProfileError(f"profile meta must be a ProfileMeta, got {type(self.meta).__name__}")
        if self.quant_err_sum.shape != (b, t, len(self.meta.precisions)) or self.quant_count.shape != (b, t):
            raise ProfileError("profile quantization arrays do not match meta.precisions")
        for name in ("probe_final_sum", "probe_local_sum", "probe_count"):
            if getattr(self, name).shape != (b, t):
                raise ProfileError(f"profile array {name} must be [B, T] = {(b, t)}")
        if self.block_flops.shape != (b,):
            raise ProfileError("profile block_flops must be [B]")
        if len(self.meta.blocks) != b or self.meta.steps != t:
            raise ProfileError("profile metadata does not match its arrays")

    # -- derived quantities -------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return int(self.reuse_err_sum.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.reuse_err_sum.shape[1])

    def reuse_error(self, mode: str = "residual") -> np.ndarray:
        """Mean relative error; +inf where never measured (s >= t or beyond the max age).

        residual/output: [B, T, T] indexed [b, s, t]; forecast: [B, G, T, T] indexed [b, s - s' - 1, s, t].
        """
        sums, counts = {
            "residual": (self.reuse_err_sum, self.reuse_count),
            "output": (self.output_err_sum, self.reuse_count),
            "forecast": (self.forecast_err_sum, self.forecast_count),
        }[mode]
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
        h = hashlib.sha256()
        for name in _ARRAYS:
            h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        h.update(json.dumps(self.meta.to_dict(), sort_keys=True).encode())
        return "sha256:" + h.hexdigest()[:32]

    # -- merging shards --------------------------------------------------------------------------
    def merge(self, other: "Profile") -> "Profile":
        """Exact: sums and counts add. Shards must be of the same model and settings, disjoint seeds."""
        for key in ("fingerprint", "steps", "timesteps", "sampler", "max_age", "precisions", "forecast_gap"):
            if getattr(self.meta, key) != getattr(other.meta, key):
                raise ProfileError(f"cannot merge profiles with different {key}")
        overlap = set(self.meta.calibration_seeds) & set(other.meta.calibration_seeds)
        if overlap:
            raise ProfileError(f"cannot merge profiles sharing calibration seeds ({len(overlap)} in common)")
        meta = self.meta.replace(calibration_seeds=sorted(self.meta.calibration_seeds + other.meta.calibration_seeds))
        return replace(
            self,
            **{name: getattr(self, name) + getattr(other, name) for name in _ARRAYS if name != "block_flops"},
            meta=meta,
        )

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        arrays["meta_json"] = np.array(json.dumps(self.meta.to_file_dict()))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        path = Path(path)
        if not path.exists():
            raise ProfileError(f"profile not found: {path} (run `schedc profile` first)")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta: dict[str, Any] = json.loads(str(data["meta_json"]))
                arrays = {name: np.array(data[name]) for name in _ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
            raise ProfileError(f"profile {path} is corrupt or not a schedc profile ({type(exc).__name__})") from None
        return cls(meta=ProfileMeta.from_file_dict(meta, where=f"profile {path}"), **arrays)

