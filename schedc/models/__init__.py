"""Model adapters: the bundled reference DiT (more arrive with the diffusers adapters)."""

from __future__ import annotations

from schedc.errors import ModelError
from schedc.models.adapter import GenerationInputs, ModelAdapter

BUILTIN_MODELS = ("reference-dit",)


def load_model(spec: str | None = None) -> ModelAdapter:
    """MODEL as the CLI takes it: nothing or a built-in name."""
    if spec in (None, "", "reference", "reference-dit"):
        from schedc.models.reference import ReferenceAdapter

        return ReferenceAdapter()
    raise ModelError(
        f"unknown model {spec!r}: built-in models are {', '.join(BUILTIN_MODELS)} "
        "(diffusers folders are not supported yet)"
    )


__all__ = ["BUILTIN_MODELS", "GenerationInputs", "ModelAdapter", "load_model"]
