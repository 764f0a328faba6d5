"""The bundled reference model as an adapter: ReferenceDiT + DDIM sampler + digit labels."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from schedc.errors import ModelError
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.models.reference_dit import ReferenceDiT, ReferenceDiTConfig
from schedc.sampling import DDIMSampler, SamplerConfig, StepCallback

REFERENCE_NAME = "reference-dit"
WEIGHTS = Path(__file__).parent / "weights" / "reference-dit.safetensors"
# The reference model's default sampling settings (recorded in profiles and schedules).
REFERENCE_SAMPLER = SamplerConfig(steps=50, guidance_scale=3.0, cfg="batched")


@lru_cache(maxsize=2)
def _load_state(path: str) -> tuple[ReferenceDiTConfig, dict]:
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
        config = ReferenceDiTConfig(**json.loads(meta["config"]))
        state = load_file(path)
    except FileNotFoundError:
        raise ModelError(f"reference weights not found at {path}; train them: python -m schedc.models.train_reference") from None
    except Exception as exc:  # corrupt file, bad metadata
        raise ModelError(f"cannot load reference weights {path}: {exc}") from None
    return config, state


def load_reference_model(path: str | Path = WEIGHTS, dtype: torch.dtype = torch.float32) -> ReferenceDiT:
    config, state = _load_state(str(path))
    model = ReferenceDiT(config)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    return model.to(dtype).eval().requires_grad_(False)


class ReferenceAdapter(ModelAdapter):
    name = REFERENCE_NAME
    timestep_arg = "timestep"
    sample_range = (-1.0, 1.0)  # DDIM clips x0: finished samples are images in [-1, 1]

    def __init__(self, model: ReferenceDiT | None = None) -> None:
        self.model = model if model is not None else load_reference_model()
        self.block_names = tuple(f"blocks.{i}" for i in range(len(self.model.blocks)))
        self.config = self.model.config
        self.default_sampler = REFERENCE_SAMPLER

    def make_inputs(self, seeds: Sequence[int]) -> GenerationInputs:
        cfg = self.config
        noise = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed))
            noise.append(torch.randn(1, cfg.in_channels, cfg.image_size, cfg.image_size, generator=gen))
        labels = torch.tensor([int(s) % cfg.num_classes for s in seeds], dtype=torch.long)
        dtype = next(self.model.parameters()).dtype
        return GenerationInputs(torch.cat(noise).to(dtype), labels, tuple(int(s) for s in seeds))

    def generate(
        self, inputs: GenerationInputs, sampler: SamplerConfig, on_step: StepCallback | None = None, start: int = 0,
        x_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = inputs.noise if x_start is None else x_start
        with torch.inference_mode():
            return DDIMSampler(sampler).denoise(
                self.model, x, inputs.labels, self.config.num_classes, on_step=on_step, start=start
            )

    def class_accuracy(self, samples: torch.Tensor, labels: torch.Tensor) -> float | None:
        from schedc.datasets import class_accuracy

        return class_accuracy(samples, labels)

    def example_call(self) -> tuple[tuple, dict]:
        cfg = self.config
        x = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size)
        return (x, torch.tensor([500]), torch.tensor([0])), {}
