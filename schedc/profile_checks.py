"""What a profile file may hold: size limits, a bounded .npz reader, and the numeric rules.

Every file given to `Profile.load` becomes a valid Profile or one ProfileError line, in bounded time and
memory. The reader checks each .npz member's header (dtype, shape) against the limits below before it
reads a byte of data, never unpickles (object arrays are refused), and counts what it has loaded. The
numeric rules (`check_arrays`) run on every Profile built, loaded or merged, so the solvers never see a
NaN, an infinity or a negative error, cost or count.

Limits (far above any real profile: the bundled ones are 8-12 blocks x 50 steps x 8 patterns, 1 MB):
  MAX_BLOCKS blocks, MAX_STEPS steps, MAX_PATTERNS spacings per forecast mode (meta.forecast_gap),
  MAX_ELEMENTS array elements in one file altogether (2 GiB as float64), MAX_META_CHARS characters of
  metadata JSON nested at most MAX_META_DEPTH deep, MAX_MEMBERS arrays in the file, counts <= MAX_COUNT.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from schedc.errors import ProfileError

MAX_BLOCKS = 1024
MAX_STEPS = 1000
MAX_PATTERNS = 64
MAX_ELEMENTS = 2**28
MAX_META_CHARS = 4 * 2**20
MAX_META_DEPTH = 32
MAX_SETTINGS = 16  # settings (guidance scale x step count) one multi-setting file holds
MAX_MEMBERS = 20 * MAX_SETTINGS + 1  # a profile is ~13 arrays; a multi-setting file one profile per setting
SET_KEY = "settings_json"  # the member that marks a multi-setting file (schedc.profile_set)
MAX_COUNT = 2**40  # samples behind one (block, step) mean: shards can still be merged without overflow

# what can go wrong reading a zip of .npy files; anything else is a bug, not a bad file
READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
               RuntimeError, OverflowError, MemoryError, UnicodeError, TypeError, json.JSONDecodeError)


class NpzReader:
    """A read-only, bounded view of an .npz file: `files` and `reader[name]` like numpy's NpzFile.

    Each member's header is checked (a plain numeric or string dtype, at most 4 dimensions, within the
    element budget still left) before its data is read; pickled (object) arrays are refused.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise ProfileError(f"profile {path} is not a regular file")
        if not zipfile.is_zipfile(path):
            raise ProfileError(f"profile {path} is not a schedc profile (not an .npz archive)")
        self._zip = zipfile.ZipFile(path)
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            self._zip.close()
            raise ProfileError(f"profile {path} holds {len(infos)} arrays; a schedc profile has at most {MAX_MEMBERS}")
        self._members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
        self.files = list(self._members)
        self.loaded = 0  # elements read so far

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of a member, from its header alone."""
        with self._zip.open(self._members[name]) as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh, max_header_size=10000)
        return tuple(int(n) for n in shape), dtype

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._members:
            raise KeyError(name)
        shape, dtype = self.header(name)
        where = f"profile {self.path}: array {name!r}"
        if name.rsplit("/", 1)[-1] in ("meta_json", SET_KEY):
            if dtype.kind != "U" or shape != () or dtype.itemsize // 4 > MAX_META_CHARS:
                raise ProfileError(f"{where} must be one string of at most {MAX_META_CHARS} characters")
        elif dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
            raise ProfileError(f"{where} has dtype {dtype}; profile arrays hold plain numbers")
        if len(shape) > 4:
            raise ProfileError(f"{where} has {len(shape)} dimensions; profile arrays have at most 4")
        size = math.prod(shape)
        if self.loaded + size > MAX_ELEMENTS:
            raise ProfileError(f"profile {self.path} holds more than {MAX_ELEMENTS} array elements "
                               f"({name!r} is {'x'.join(map(str, shape))}); no real profile is that large")
        self.loaded += size
        with self._zip.open(self._members[name]) as fh:
            array = np.lib.format.read_array(fh, allow_pickle=False)
        if array.shape != shape or array.dtype != dtype:
            raise ProfileError(f"{where} does not match its own header")  # pragma: no cover (numpy checks it)
        return array


class Prefixed:
    """The members of an NpzReader under `prefix` ("s0/"), named without it: one profile of a set."""

    def __init__(self, reader: NpzReader, prefix: str) -> None:
        self.reader, self.prefix = reader, prefix
        self.files = [n[len(prefix):] for n in reader.files if n.startswith(prefix)]

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        return self.reader.header(self.prefix + name)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.reader[self.prefix + name]


def open_profile_file(path: Path) -> NpzReader:
    """An NpzReader, with any failure to open it as one ProfileError line."""
    try:
        return NpzReader(path)
    except ProfileError:
        raise
    except READ_ERRORS as exc:
        raise ProfileError(f"profile {path} is corrupt or not a schedc profile ({type(exc).__name__})") from None


def parse_meta(text: str, where: str) -> dict[str, Any]:
    """The metadata JSON -> a dict, refusing oversized or too deeply nested documents."""
    if len(text) > MAX_META_CHARS:
        raise ProfileError(f"{where} metadata is {len(text)} characters; at most {MAX_META_CHARS} are read")
    meta = _loads(text, where)
    _check_depth(meta, where)
    if not isinstance(meta, dict):
        raise ProfileError(f"{where} metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProfileError(f"{where} metadata is not valid JSON ({type(exc).__name__})") from None


def _check_depth(value: Any, where: str) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_META_DEPTH:
            raise ProfileError(f"{where} metadata is nested more than {MAX_META_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


# -- numeric rules -------------------------------------------------------------------------------------------

def as_sums(name: str, value: Any) -> np.ndarray:
    """A sum array: real numbers (float or integer dtype) -> float64."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        raise ProfileError(f"profile array {name} must hold real numbers, got {_dtype(value)}")
    with np.errstate(over="ignore"):
        return value.astype(np.float64, copy=False)


def as_counts(name: str, value: Any) -> np.ndarray:
    """A count array: an integer dtype, 0 <= n <= MAX_COUNT -> int64."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu":
        raise ProfileError(f"profile array {name} must hold integer counts, got {_dtype(value)}")
    if value.size and (value.min() < 0 or value.max() > MAX_COUNT):
        raise ProfileError(f"profile array {name} must hold counts in [0, {MAX_COUNT}], "
                           f"got {value.min()}..{value.max()}")
    return value.astype(np.int64, copy=False)


def _dtype(value: Any) -> str:
    return f"dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__


def check_sums(name: str, sums: np.ndarray) -> None:
    """Every error sum finite and >= 0 (where its count is 0 the mean is +inf whatever the sum)."""
    if not np.all(np.isfinite(sums)):
        raise ProfileError(f"profile array {name} holds NaN or infinite values: the profile is corrupt; re-profile")
    if np.any(sums < 0):
        raise ProfileError(f"profile array {name} holds negative values ({sums.min():.3g}): "
                           "errors are norms; the profile is corrupt; re-profile")


def check_shape(name: str, array: np.ndarray, dims: str, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ProfileError(f"profile array {name} must be [{dims}] = {shape}, got {array.shape}")


def check_dims(b: int, t: int, k: Mapping[str, int]) -> None:
    if not (1 <= b <= MAX_BLOCKS and 1 <= t <= MAX_STEPS):
        raise ProfileError(f"a profile has 1..{MAX_BLOCKS} blocks and 1..{MAX_STEPS} steps, got {b} x {t}")
    for mode, n in k.items():
        if n > MAX_PATTERNS:
            raise ProfileError(f"profile {mode} table has {n} patterns; at most {MAX_PATTERNS}")


def check_gain(final: np.ndarray, local: np.ndarray, count: np.ndarray) -> None:
    """The propagation gain final / local must be a finite number at every probed (block, step)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        gain = final / np.maximum(local, 1e-30)
    if not np.all(np.isfinite(gain[:, count.sum(axis=0) > 0])):  # the steps Profile.gain() reads
        raise ProfileError("profile probe sums give an infinite propagation gain: the profile is corrupt; re-profile")


__all__ = ["MAX_BLOCKS", "MAX_COUNT", "MAX_ELEMENTS", "MAX_MEMBERS", "MAX_META_CHARS", "MAX_META_DEPTH",
           "MAX_PATTERNS", "MAX_STEPS", "NpzReader", "READ_ERRORS", "as_counts", "as_sums", "check_dims",
           "check_gain", "check_shape", "check_sums", "parse_meta"]
