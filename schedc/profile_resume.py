"""Resumable profiling: each finished calibration batch's sums are kept on disk until the profile is written.

Why: profiling a real model on many prompts takes hours; a crash (or a killed torchrun rank) should cost
the batch in flight, not the run. `schedc profile -o P` keeps `P.partial/<key>/batch<i>.npz` for every
batch after the first (the first also measures gain probes, cache sizes and latency, and is always
run again); the same command restarted reads them back instead of profiling them again, with any number
of ranks, and deletes them once P is written. <key> hashes everything that changes the numbers (model
fingerprint, sampler, profiler options, calibration seeds), so a changed command never reads old sums.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from schedc.atomic import atomic_savez
from schedc.errors import ProfileError
from schedc.profile_checks import READ_ERRORS, open_profile_file


def partial_dir(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


class BatchStore:
    """The finished batches of one profiling run (one setting), under root/<key>/."""

    def __init__(self, root: Path, identity: dict[str, Any]) -> None:
        text = json.dumps(identity, sort_keys=True, default=str)
        self.dir = root / hashlib.sha256(text.encode()).hexdigest()[:16]

    def load(self, index: int) -> dict[str, np.ndarray] | None:
        """Batch `index`'s arrays, or None if not kept (or unreadable: then it is profiled again)."""
        path = self.dir / f"batch{index}.npz"
        if not path.is_file():
            return None
        try:
            with open_profile_file(path) as data:
                return {name: data[name] for name in data.files}
        except (ProfileError, *READ_ERRORS):
            return None

    def save(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_savez(self.dir / f"batch{index}.npz", arrays, compressed=False)


def clear(output: Path) -> None:
    """Drop the kept batches once the profile they add up to is written."""
    shutil.rmtree(partial_dir(output), ignore_errors=True)


__all__ = ["BatchStore", "clear", "partial_dir"]
