"""JSON stage caches shared by the benches: read what a previous run left (None if absent or torn), write
atomically (numpy scalars and tuples made plain), so an interrupted bench resumes from its last stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from schedc.atomic import atomic_write_text


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=_jsonable))


def write_summary(out: Path, render: Callable[[list[dict]], str], key: str = "rows") -> str:
    """Render every result JSON in `out` that has `key` (one per model, in name order) with `render`, write it
    to <out>/summary.md atomically and return the text: a summary rebuilt from the results alone."""
    results = [d for d in (read_json(p) for p in sorted(out.glob("*.json"))) if d and key in d]
    text = render(results)
    atomic_write_text(out / "summary.md", text)
    return text


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


__all__ = ["read_json", "write_json", "write_summary"]
