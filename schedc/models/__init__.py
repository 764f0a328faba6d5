"""Model adapters: the bundled reference DiT, the bundled diffusers digits DiT, and diffusers folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from schedc.errors import ModelError
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.profile_meta import ProfileMeta

BUILTIN_MODELS = ("reference-dit", "digits-dit")
DIGITS_DIT = Path(__file__).parent / "weights" / "digits-dit"  # a diffusers DiT schedc trained (save_pretrained)


def load_model(
    spec: str | None = None, *, classes: Sequence[int] | None = None, cond: str | None = None,
) -> ModelAdapter:
    """MODEL as the CLI takes it: nothing or a built-in name, or a local diffusers folder.

    classes: class ids to cycle through (class-conditioned models); cond: a safetensors file of prompt
    embeddings (text-conditioned models). Nothing is ever downloaded.
    """
    if spec in (None, "", "reference", "reference-dit"):
        from schedc.models.reference import ReferenceAdapter

        return ReferenceAdapter()
    if spec == "digits-dit":
        return load_diffusers_folder(DIGITS_DIT, classes=classes, cond=cond, name="digits-dit", judge="digits")
    path = Path(spec)
    if path.is_dir():
        return load_diffusers_folder(path, classes=classes, cond=cond)
    raise ModelError(
        f"unknown model {spec!r}: give a built-in model ({', '.join(BUILTIN_MODELS)}) or a local diffusers folder "
        "(with model_index.json, or transformer/ or unet/ plus scheduler/)"
    )


def load_recorded(meta: "ProfileMeta | Mapping[str, Any]") -> ModelAdapter:
    """The model a profile (its ProfileMeta) or a schedule ({"model", "model_source"}) recorded."""
    if isinstance(meta, ProfileMeta):
        name, source = meta.model, meta.model_source or {}
    else:
        name, source = meta.get("model"), meta.get("model_source") or {}
    return load_model(source.get("path") or name, classes=source.get("classes"), cond=source.get("cond"))


def _class_name(config_file: Path) -> str:
    try:
        return str(json.loads(config_file.read_text())["_class_name"])
    except FileNotFoundError:
        raise ModelError(f"{config_file} not found") from None
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{config_file} is not a diffusers config ({exc})") from None


def _components(path: Path) -> tuple[Path, Path]:
    """(denoiser folder, scheduler folder) of a pipeline folder or a transformer/unet + scheduler folder."""
    index = path / "model_index.json"
    names = ("transformer", "unet")
    if index.exists():
        try:
            listed = json.loads(index.read_text())
        except ValueError as exc:
            raise ModelError(f"{index} is not valid JSON ({exc})") from None
        names = tuple(n for n in names if n in listed) or names
    denoiser = next((path / n for n in names if (path / n).is_dir()), None)
    if denoiser is None:
        raise ModelError(f"{path} has no transformer/ or unet/ folder: not a diffusers model folder")
    if not (path / "scheduler").is_dir():
        raise ModelError(f"{path} has no scheduler/ folder: schedc samples with the model's own scheduler")
    return denoiser, path / "scheduler"


def load_diffusers_folder(
    path: str | Path, *, classes: Sequence[int] | None = None, cond: str | None = None, name: str | None = None,
    judge: str | None = None,
) -> ModelAdapter:
    """A local diffusers folder -> DiffusersAdapter (local files only: a missing weight file is an error)."""
    try:
        import diffusers
    except ImportError:
        raise ModelError("diffusers models need the diffusers package: pip install 'schedc[diffusers]'") from None
    from schedc.models.diffusers_adapter import Conditioning, DiffusersAdapter

    path = Path(path)
    denoiser_dir, scheduler_dir = _components(path)
    model_cls = getattr(diffusers, _class_name(denoiser_dir / "config.json"), None)
    sched_cls = getattr(diffusers, _class_name(scheduler_dir / "scheduler_config.json"), None)
    if model_cls is None or sched_cls is None:
        raise ModelError(f"{path}: this diffusers version does not know the model or scheduler class")
    if not any(denoiser_dir.glob("*.safetensors")) and not any(denoiser_dir.glob("*.bin")):
        raise ModelError(f"{denoiser_dir} has no weights (schedc never downloads: put the weights there first)")
    try:
        model = model_cls.from_pretrained(denoiser_dir, local_files_only=True, low_cpu_mem_usage=False)
        scheduler = sched_cls.from_pretrained(scheduler_dir, local_files_only=True)
    except Exception as exc:  # corrupt weights or config
        raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
    adapter = DiffusersAdapter(
        model.float(), scheduler, name or path.resolve().name, classes=classes,
        conditioning=Conditioning.load(cond) if cond else None, judge=judge,
    )
    adapter.source = {"path": str(path.resolve()) if name is None else name,
                      **({"classes": list(classes)} if classes else {}), **({"cond": str(Path(cond).resolve())} if cond else {})}
    return adapter


__all__ = ["BUILTIN_MODELS", "GenerationInputs", "ModelAdapter", "load_diffusers_folder", "load_model", "load_recorded"]
