"""The second reference model (a diffusers DiTTransformer2DModel saved with save_pretrained) is really
trained: loaded from its folder, it draws digits a classifier recognises as the requested class."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DiTTransformer2DModel  # noqa: E402
from safetensors import safe_open  # noqa: E402

from schedc.datasets import class_accuracy  # noqa: E402
from schedc.models.train_diffusers_dit import NULL_CLASS, sample  # noqa: E402

FOLDER = Path(__file__).resolve().parents[1] / "schedc" / "models" / "weights" / "digits-dit"
SEEDS = list(range(1_000_000, 1_000_016))  # held-out seeds; label = seed % 10


@pytest.fixture(scope="module")
def loaded():
    model = DiTTransformer2DModel.from_pretrained(
        FOLDER / "transformer", local_files_only=True, torch_dtype=torch.float32
    ).eval()
    scheduler = DDIMScheduler.from_pretrained(FOLDER / "scheduler", local_files_only=True)
    return model, scheduler


def test_folder_is_a_bare_diffusers_transformer_and_scheduler():
    assert not (FOLDER / "model_index.json").exists()
    assert sorted(p.name for p in FOLDER.iterdir()) == ["scheduler", "transformer"]
    weights = FOLDER / "transformer" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 5e6
    with safe_open(str(weights), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}


def test_config(loaded):
    model, scheduler = loaded
    assert model.config.in_channels == model.config.out_channels == 1
    assert model.config.sample_size == 8 and model.config.num_embeds_ada_norm == NULL_CLASS == 10
    assert scheduler.config.timestep_spacing == "trailing" and scheduler.config.prediction_type == "epsilon"


def test_cfg_samples_have_the_requested_class(loaded):
    model, scheduler = loaded
    labels = torch.tensor([s % 10 for s in SEEDS])
    samples = sample(model, scheduler, labels, steps=50, guidance_scale=3.0, seed=SEEDS)
    assert samples.shape == (16, 1, 8, 8)
    assert torch.isfinite(samples).all()
    assert class_accuracy(samples, labels) >= 0.85
