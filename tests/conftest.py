"""Shared fixtures: a tiny random-weight DiT for runtime/profiler tests, the real reference model for
end-to-end ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from schedc import timing
from schedc.models.reference import ReferenceAdapter
from schedc.models.reference_dit import ReferenceDiT, ReferenceDiTConfig
from schedc.profiler import ProfileConfig, profile_model
from schedc.sampling import SamplerConfig
from schedc.schedule import build_schedule

# Tests check correctness, not speed: one intra-op thread keeps them fast on a shared 2-core machine
# (two threads stall each op when other jobs compete for the cores).
torch.set_num_threads(1)
# Timing repeats short generations for a second per measurement (schedc.timing): right for a benchmark, minutes
# for a test suite whose tiny models generate in milliseconds. Tests check what timing returns, not its precision.
timing.MIN_MEASURE_SECONDS = 0.0

TINY_SAMPLER = SamplerConfig(steps=8, guidance_scale=2.0, cfg="batched")
TINY_NONBLOCK_SHARE = 0.15  # what the tiny model measures on a 2-core CPU, give or take 0.05
TINY_GENERATION_SECONDS = 0.004  # per sample, full compute, 8 steps: the same (the search's clock charges this)
# Seconds per block call, as the tiny model measured them on a 2-core CPU: CI's machine measured other ratios
# (one reused cache costing as much as a compute, say), and the latency-cost schedules changed with them.
TINY_LATENCY = {
    "native": (3.7e-4, 2.2e-4, 2.2e-4, 2.2e-4), "reuse": (4.8e-6, 2.6e-6, 2.6e-6, 2.6e-6),
    "int8": (7.6e-4, 4.2e-4, 4.2e-4, 4.2e-4), "fp8": (5.6e-4,) * 4, "int4w": (4.4e-4,) * 4,
}


def make_tiny_adapter(seed: int = 0, depth: int = 4) -> ReferenceAdapter:
    """A 4-block DiT with random weights; adaLN-Zero layers perturbed so every block does work."""
    torch.manual_seed(seed)
    model = ReferenceDiT(ReferenceDiTConfig(hidden_size=32, depth=depth, num_heads=2)).eval()
    for block in model.blocks:
        torch.nn.init.normal_(block.adaLN_modulation[-1].weight, std=0.1)
        torch.nn.init.normal_(block.adaLN_modulation[-1].bias, std=0.1)
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
    model.requires_grad_(False)
    adapter = ReferenceAdapter(model)
    adapter.default_sampler = TINY_SAMPLER
    return adapter


@pytest.fixture
def tiny_adapter() -> ReferenceAdapter:
    return make_tiny_adapter()


@pytest.fixture(scope="session")
def tiny_profile():
    """Profiled for real, then the timed figures (block latencies, non-block share) pinned: they price the
    schedules and size the fewer-step settings the search tries, so measured values would make the tests'
    schedules depend on the machine."""
    profile = profile_model(
        make_tiny_adapter(), TINY_SAMPLER,
        ProfileConfig(calib_samples=6, batch_size=4, max_age=4, probe_steps=3, probe_samples=2), progress=False,
    )
    assert 0.0 < profile.meta.nonblock_share < 1.0 and set(profile.meta.latency) == set(TINY_LATENCY)
    assert profile.meta.generation_seconds > 0
    meta = profile.meta.replace(nonblock_share=TINY_NONBLOCK_SHARE, latency=TINY_LATENCY,
                                generation_seconds=TINY_GENERATION_SECONDS)
    return dataclasses.replace(profile, meta=meta)


def schedule_for(profile, compute: np.ndarray, sampler: SamplerConfig = TINY_SAMPLER):
    return build_schedule(profile, compute, {"solver": "test"}, sampler)


@pytest.fixture(scope="session")
def reference_adapter() -> ReferenceAdapter:
    return ReferenceAdapter()


@pytest.fixture(scope="session")
def dit_folder(tmp_path_factory):
    """A tiny random diffusers DiT saved as a local folder (transformer/ + scheduler/): what the CLI loads."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("dit-folder")
    model = diffusers.DiTTransformer2DModel(
        sample_size=8, patch_size=2, in_channels=1, out_channels=1, num_layers=3, num_attention_heads=2,
        attention_head_dim=8, norm_type="ada_norm_zero", num_embeds_ada_norm=4,
    )
    for p in model.parameters():  # adaLN-Zero starts as the identity: perturb so every block works
        p.data.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(root / "transformer")
    diffusers.DDIMScheduler(timestep_spacing="trailing").save_pretrained(root / "scheduler")
    return root
