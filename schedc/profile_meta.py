"""ProfileMeta: what a profile records besides its arrays, typed and checked once when it is built.

Readers used to index a plain dict (~50 places), so a missing or malformed key surfaced far from the
file that caused it. Here every field is validated on construction, so a profile that loads is one the
compiler can use, and a bad or outdated file fails at load with one line saying to re-profile.

The dict form (`to_dict`) is exactly the JSON the npz stores: keys an older profile did not record are
`None` here and stay absent there, so a profile's digest (recorded in schedules) does not change when it
is read and written back. Nested values are frozen (tuples, read-only mappings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

from schedc.errors import ProfileError
from schedc.profile_checks import MAX_BLOCKS, MAX_PATTERNS, MAX_STEPS

PROFILE_VERSION = 2  # the "schedc_profile" key of a profile file's metadata (2: reuse tables keyed by mode)
READABLE_VERSIONS = (1, 2)  # version 1 kept one array field per reuse mode; the metadata is the same
_VERSION_KEY = "schedc_profile"
# fields older profiles of this format version may lack (None = not recorded)
OPTIONAL_FIELDS = ("model_source", "block_outputs", "cache_bytes", "latency", "device", "nonblock_share",
                   "generation_seconds")


def _freeze(value: Any) -> Any:
    """JSON value -> immutable: lists become tuples, dicts read-only mappings (recursively)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """The inverse of _freeze: plain dicts and lists, ready for json.dumps or yaml.safe_dump."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _bad(name: str, want: str, got: Any) -> ProfileError:
    text = repr(got)
    return ProfileError(f"profile metadata '{name}' must be {want}, got {text[:60] + '...' if len(text) > 60 else text}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _seq(name: str, value: Any, ok, want: str, length: int | None = None) -> None:
    if not isinstance(value, tuple) or not all(ok(x) for x in value):
        raise _bad(name, f"a list of {want}", value)
    if length is not None and len(value) != length:
        raise ProfileError(f"profile metadata '{name}' has {len(value)} entries, expected {length}")


@dataclass(frozen=True)
class ProfileMeta:
    """Model identity, sampling settings and profiling settings of one profile (B blocks, T steps)."""

    model: str  # model name (built-in name or folder name)
    fingerprint: str  # schedc_runtime.model_fingerprint of the profiled weights and blocks
    blocks: tuple[str, ...]  # [B] block module names, in call order
    timestep_arg: str  # the denoiser argument holding the timestep (the runtime maps it to a step)
    steps: int  # T
    timesteps: tuple[float, ...]  # [T] what the denoiser received at each step
    sampler: Mapping[str, Any]  # SamplerConfig.to_dict() of the profiled sampler
    calibration_seeds: tuple[int, ...]  # seeds of the calibration samples (never used for evaluation)
    max_age: int  # oldest cache measured, in steps
    forecast_gap: int  # forecast reuse measured from compute pairs at most this far apart
    precisions: tuple[str, ...]  # [P] reduced precisions measured (quant_err_sum's last axis)
    kernels: Mapping[str, tuple[str, ...]]  # per precision, the kernels its block copies ran
    probe_steps: tuple[int, ...]  # steps where the propagation gain was probed
    probe_samples: int  # samples per probe
    nonblock_flops: float  # FLOPs of one denoiser call per sample outside the blocks
    profile_seconds: float  # wall time of the profiling run
    versions: Mapping[str, str]  # schedc, torch, python versions that profiled
    config: Mapping[str, Any]  # the ProfileConfig used
    model_source: Mapping[str, Any] | None = None  # how to load the model again (path, classes, cond)
    block_outputs: tuple[tuple[str, ...] | None, ...] | None = None  # [B] or (): output streams per block
    cache_bytes: tuple[int, ...] | None = None  # [B] one cache per block at the profiling batch size
    latency: Mapping[str, tuple[float, ...]] | None = None  # "native"/"reuse"/precision -> [B] seconds
    device: str | None = None  # the processor the latency table was measured on
    # o: time of a generation with every block skipped / with every block computed, on `device`; recorded so
    # the search's equal-time step counts come from the file (the same solve twice gives the same schedule)
    nonblock_share: float | None = None
    # seconds of one full-compute generation per sample (at the profiling batch, on `device`): the closed-loop
    # search charges its work at this rate instead of reading a wall clock, so its result does not depend on
    # how busy the machine is (schedc.search_time.WorkClock)
    generation_seconds: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # freeze whatever the caller passed (lists, dicts)
            object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))
        for name in ("model", "fingerprint", "timestep_arg"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise _bad(name, "a non-empty string", getattr(self, name))
        _seq("blocks", self.blocks, lambda x: isinstance(x, str) and x, "block names")
        b = len(self.blocks)
        if b == 0 or b > MAX_BLOCKS or len(set(self.blocks)) != b:
            raise _bad("blocks", f"distinct block names (1 to {MAX_BLOCKS})", self.blocks)
        if not _is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS:
            raise _bad("steps", f"a positive integer (at most {MAX_STEPS})", self.steps)
        _seq("timesteps", self.timesteps, _is_number, "numbers", self.steps)
        if not isinstance(self.sampler, Mapping) or self.sampler.get("steps", self.steps) != self.steps:
            raise _bad("sampler", f"sampler settings with steps = {self.steps}", self.sampler)
        _seq("calibration_seeds", self.calibration_seeds, _is_int, "integer seeds")
        if not self.calibration_seeds:
            raise _bad("calibration_seeds", "at least one seed", self.calibration_seeds)
        if not _is_int(self.max_age) or not 0 <= self.max_age < self.steps:
            raise _bad("max_age", f"an integer in [0, {self.steps - 1}]", self.max_age)
        if not _is_int(self.forecast_gap) or not 0 <= self.forecast_gap <= MAX_PATTERNS:
            raise _bad("forecast_gap", f"an integer in [0, {MAX_PATTERNS}]", self.forecast_gap)
        _seq("precisions", self.precisions, lambda x: isinstance(x, str) and x, "precision names")
        if len(set(self.precisions)) != len(self.precisions) or "native" in self.precisions:
            raise _bad("precisions", "distinct reduced precisions", self.precisions)
        if not isinstance(self.kernels, Mapping) or not all(
                isinstance(v, tuple) and all(isinstance(k, str) for k in v) for v in self.kernels.values()):
            raise _bad("kernels", "a mapping of precision -> kernel names", self.kernels)
        _seq("probe_steps", self.probe_steps, lambda x: _is_int(x) and 0 <= x < self.steps, "steps in [0, T)")
        for name in ("probe_samples",):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise _bad(name, "a non-negative integer", getattr(self, name))
        for name in ("nonblock_flops", "profile_seconds"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise _bad(name, "a non-negative number", getattr(self, name))
        for name in ("sampler", "versions", "config"):
            if not isinstance(getattr(self, name), Mapping):
                raise _bad(name, "a mapping", getattr(self, name))
        self._check_optional(b)

    def _check_optional(self, b: int) -> None:
        if self.model_source is not None and not isinstance(self.model_source, Mapping):
            raise _bad("model_source", "a mapping (path, classes, cond)", self.model_source)
        if self.block_outputs:  # () = every block returns one tensor (the adapters' convention)
            _seq("block_outputs", self.block_outputs,
                 lambda o: o is None or (isinstance(o, tuple) and all(isinstance(s, str) for s in o)),
                 "null or stream-name lists", b)
        elif self.block_outputs is not None and self.block_outputs != ():
            raise _bad("block_outputs", "a list", self.block_outputs)
        if self.cache_bytes is not None:
            _seq("cache_bytes", self.cache_bytes, lambda x: _is_number(x) and x >= 0, "byte counts", b)
        if self.latency is not None:
            if not isinstance(self.latency, Mapping) or "native" not in self.latency:
                raise _bad("latency", "a table with a 'native' row", self.latency)
            for key, row in self.latency.items():
                _seq(f"latency.{key}", row, lambda x: _is_number(x) and x > 0, "positive seconds", b)
        if self.device is not None and not isinstance(self.device, str):
            raise _bad("device", "a string", self.device)
        if self.nonblock_share is not None and not (_is_number(self.nonblock_share) and 0 <= self.nonblock_share <= 1):
            raise _bad("nonblock_share", "a number in [0, 1]", self.nonblock_share)
        if self.generation_seconds is not None and not (_is_number(self.generation_seconds) and self.generation_seconds > 0):
            raise _bad("generation_seconds", "a positive number of seconds", self.generation_seconds)

    # -- dict form (the npz's JSON) ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; fields an older profile did not record (None) are left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in OPTIONAL_FIELDS:
                continue
            out[f.name] = plain(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfileMeta":
        """Strict: a missing required key or an unknown key is a ProfileError (one line)."""
        if not isinstance(data, Mapping):
            raise ProfileError(f"profile metadata must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ProfileError(f"profile metadata has unknown field(s) {', '.join(map(repr, unknown))}")
        missing = [n for n in (f.name for f in fields(cls)) if n not in data and n not in OPTIONAL_FIELDS]
        if missing:
            raise ProfileError(f"profile metadata is missing {', '.join(map(repr, missing))}")
        return cls(**dict(data))

    def to_file_dict(self) -> dict[str, Any]:
        """The versioned form a profile file stores."""
        return {_VERSION_KEY: PROFILE_VERSION, **self.to_dict()}

    @classmethod
    def from_file_dict(cls, data: Mapping[str, Any], where: str = "profile") -> "ProfileMeta":
        """Check the format version, then the fields; every failure says to re-profile."""
        data = dict(data)
        version = data.pop(_VERSION_KEY, None)
        if type(version) is not int or version not in READABLE_VERSIONS:  # not true, 1.0 or "1"
            raise ProfileError(f"{where} has format version {version!r}; this schedc reads {PROFILE_VERSION}: "
                               "re-profile the model with `schedc profile`")
        try:
            return cls.from_dict(data)
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc} (written by another schedc version?): "
                               "re-profile the model with `schedc profile`") from None

    def replace(self, **changes: Any) -> "ProfileMeta":
        """A validated copy with some fields changed (e.g. merged calibration seeds)."""
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


__all__ = ["OPTIONAL_FIELDS", "PROFILE_VERSION", "READABLE_VERSIONS", "ProfileMeta", "plain"]
