"""apply_schedule on the transformer inside a real diffusers pipeline (DiTPipeline), unchanged call."""

from __future__ import annotations

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")
import torch  # noqa: E402

from schedc.models.diffusers_adapter import DiffusersAdapter  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.sampling import SamplerConfig  # noqa: E402
from schedc.schedule import build_schedule, schedule_from_solution  # noqa: E402
from schedc.solvers import Constraints, get_solver  # noqa: E402
from schedc_runtime import apply_schedule  # noqa: E402

STEPS = 6


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    transformer = diffusers.DiTTransformer2DModel(  # 1000 classes: DiTPipeline's null class id is 1000
        sample_size=8, patch_size=2, in_channels=4, out_channels=8, num_layers=3, num_attention_heads=2,
        attention_head_dim=8, norm_type="ada_norm_zero", num_embeds_ada_norm=1000,
    )
    for p in transformer.parameters():  # adaLN-Zero starts as the identity: perturb so every block works
        p.data.add_(0.05 * torch.randn_like(p))
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                                  down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                                  norm_num_groups=8, layers_per_block=1)
    scheduler = diffusers.DDIMScheduler(timestep_spacing="trailing")
    pipeline = diffusers.DiTPipeline(transformer=transformer.eval(), vae=vae.eval(), scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _run(pipeline) -> np.ndarray:
    return pipeline(class_labels=[1, 2], num_inference_steps=STEPS, guidance_scale=4.0,
                    generator=torch.Generator().manual_seed(7), output_type="np").images


def test_schedule_replays_inside_the_pipeline(pipe):
    sampler = SamplerConfig(steps=STEPS, guidance_scale=4.0, cfg="batched", scheduler="DDIMScheduler")
    adapter = DiffusersAdapter(pipe.transformer, pipe.scheduler, "tiny-pipe-dit", sampler=sampler, classes=(1, 2))
    profile = profile_model(adapter, sampler, ProfileConfig(calib_samples=2, batch_size=2, max_age=5, probe_steps=2,
                                                            probe_samples=1, forecast_gap=2, precisions=(),
                                                            measure_latency=False), progress=False)
    bare = _run(pipe)
    everything = np.ones((STEPS, len(adapter.block_names)), dtype=bool)
    with apply_schedule(pipe.transformer, build_schedule(profile, everything, {"solver": "test"})):
        assert np.array_equal(_run(pipe), bare)  # all-compute: the pipeline's output, bit for bit
    solution = get_solver("dp")(problem_from_profile(profile, None, "flops"), 0.5, Constraints())
    with apply_schedule(pipe.transformer, schedule_from_solution(profile, solution, 0.5)) as handle:
        cached = _run(pipe)
        computes = sum(handle.block_calls)
    assert computes == int(solution.compute.sum())  # the pipeline's call ran exactly the scheduled blocks
    assert np.isfinite(cached).all() and not np.array_equal(cached, bare)
    assert np.array_equal(_run(pipe), bare)  # removed: the pipeline is untouched
