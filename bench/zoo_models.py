"""The models a bench takes: a built-in name or a zoo folder (zoo/NAME with its zoo.json).

Its own module because every per-model bench resolves --models the same way (bench_cli, bench_zoo,
bench_prediction): the zoo.json names the sampler (steps, guidance scale, CFG) and the classes or the
conditioning file the model was trained with, and everything the bench measures runs at those settings.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.errors import SchedcError  # noqa: E402
from schedc.models import BUILTIN_MODELS, ModelAdapter, load_model  # noqa: E402
from schedc.sampler_config import SamplerConfig  # noqa: E402


@dataclass(frozen=True)
class ModelSpec:
    """A model as the bench takes it: a built-in name or a zoo folder (with its zoo.json)."""

    spec: str  # as given on the command line
    name: str
    source: str  # what load_model takes
    classes: tuple[int, ...] | None = None
    cond: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    cfg: str | None = None
    zoo: dict | None = None

    def load(self) -> ModelAdapter:
        return load_model(self.source, classes=self.classes, cond=self.cond)

    def sampler(self, adapter: ModelAdapter) -> SamplerConfig:
        return adapter.default_sampler.with_changes(steps=self.steps, guidance_scale=self.guidance_scale, cfg=self.cfg)


def _classes(value) -> tuple[int, ...] | None:
    """zoo.json's classes: null, a list of ids, or ranges like "0-9" / "0-4,7" (as `schedc profile --classes`)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    from schedc.cli_parser import parse_classes as parse  # the CLI's own parser, so the bench reads ranges as it does

    return tuple(parse(str(value)))


def model_spec(spec: str, zoo_root: Path) -> ModelSpec:
    if spec in BUILTIN_MODELS:
        return ModelSpec(spec, spec, spec)
    candidates = [Path(spec), ROOT / spec, zoo_root / spec]
    if spec.startswith("zoo/"):
        candidates.append(zoo_root / spec[len("zoo/"):])
    folder = next((c for c in candidates if (c / "zoo.json").is_file()), None)
    if folder is None:
        raise SchedcError(f"model {spec!r}: not a built-in ({', '.join(BUILTIN_MODELS)}) and no zoo.json in any of "
                          + ", ".join(str(c) for c in candidates))
    folder = folder.resolve()
    try:
        zoo = json.loads((folder / "zoo.json").read_text())
    except ValueError as exc:
        raise SchedcError(f"{folder / 'zoo.json'} is not valid JSON ({exc})") from None
    cond = zoo.get("cond")
    return ModelSpec(spec, folder.name, str(folder), classes=_classes(zoo.get("classes")),
                     cond=str(folder / cond) if cond else None, steps=zoo.get("steps"),
                     guidance_scale=zoo.get("guidance_scale"), cfg=zoo.get("cfg"), zoo=zoo)


def default_models(zoo_root: Path) -> list[str]:
    zoo = sorted(f"zoo/{p.parent.name}" for p in zoo_root.glob("*/zoo.json")) if zoo_root.is_dir() else []
    return zoo + ["digits-dit"]


__all__ = ["ModelSpec", "default_models", "model_spec"]
