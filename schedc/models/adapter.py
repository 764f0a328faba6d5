"""What the compiler needs to know about a model: its blocks, its inputs, and how it samples."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from schedc.costmodel import count_flops
from schedc.sampling import SamplerConfig, StepCallback
from schedc_runtime import model_fingerprint


@dataclass(frozen=True)
class GenerationInputs:
    """The initial noise and conditions of a batch of samples (one seed per sample)."""

    noise: torch.Tensor  # [N, ...]: the model's input layout (images [N, C, H, W], video, packed tokens)
    labels: torch.Tensor  # [N]: class ids, or prompt ids into a conditioning file
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.noise.shape[0] != self.labels.shape[0] or self.noise.shape[0] != len(self.seeds):
            raise ValueError("noise, labels and seeds must have one entry per sample")

    def __len__(self) -> int:
        return len(self.seeds)

    def subset(self, index: slice) -> "GenerationInputs":
        return GenerationInputs(self.noise[index], self.labels[index], self.seeds[index])


class ModelAdapter(ABC):
    """Maps a model to its ordered blocks and knows how to run one generation."""

    name: str
    model: nn.Module
    block_names: tuple[str, ...]
    default_sampler: SamplerConfig  # the sampling settings profiles and evaluations use by default
    timestep_arg: str = "timestep"
    # per block, how its outputs relate to its inputs (schedc_runtime.blockio); () = one tensor each,
    # the residual of the block's first input
    block_outputs: tuple = ()
    source: "dict | None" = None  # how to load this model again (recorded in profiles): path and load options

    # the range a finished sample lives in, if known (the reference model's images: [-1, 1]); None:
    # judged against the starting noise (see schedc.evaluate.check_reference)
    sample_range: "tuple[float, float] | None" = None

    def class_accuracy(self, samples: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Share of samples a classifier recognises as their class, if this model has a judge."""
        return None

    def images(self, samples: torch.Tensor) -> torch.Tensor:
        """`generate`'s samples as images [N, C, H, W], the layout image metrics (SSIM) and judges read.
        Why: some models sample in another layout (FLUX's packed tokens, Wan's video frames)."""
        return samples

    @abstractmethod
    def make_inputs(self, seeds: Sequence[int]) -> GenerationInputs:
        """Noise from each sample's own seed (independent of batching) and its condition."""

    @abstractmethod
    def generate(
        self, inputs: GenerationInputs, sampler: SamplerConfig, on_step: StepCallback | None = None, start: int = 0,
        x_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the sampler; with `start`/`x_start`, resume from step `start` at latent `x_start`."""

    @abstractmethod
    def example_call(self) -> tuple[tuple, dict]:
        """Arguments of one denoiser call for a single sample (for FLOP counting)."""

    def model_timesteps(self, sampler: SamplerConfig) -> list[float]:
        """The timestep value the denoiser receives at each step: what the runtime maps to a step."""
        return [float(t) for t in sampler.timesteps()]

    def outputs_of(self, block: int) -> "tuple[str, ...] | None":
        return self.block_outputs[block] if self.block_outputs else None

    def blocks(self) -> list[nn.Module]:
        return [self.model.get_submodule(n) for n in self.block_names]

    def fingerprint(self) -> str:
        return model_fingerprint(self.model, self.block_names)

    def flops(self) -> tuple[list[float], float]:
        """FLOPs of one denoiser call per sample: per block, and the rest of the model (non-block)."""
        args, kwargs = self.example_call()
        return count_flops(self.model, args, kwargs, self.block_names)
