"""The development zoo (zoo/): every trained model loads through schedc's diffusers loader, says how it is
sampled (zoo.json), generates finite samples of the right shape, and replays a schedule compiled from a
tiny profile of itself. Cheap on purpose: 2 samples, 3-4 steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from schedc.models import load_diffusers_folder  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.sampling import SamplerConfig  # noqa: E402
from schedc.schedule import save_schedule, schedule_from_solution  # noqa: E402
from schedc.solvers import Constraints, get_solver  # noqa: E402
from schedc_runtime import apply_schedule  # noqa: E402
from schedc_runtime.format import is_reuse  # noqa: E402

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
sys.path.insert(0, str(ZOO_DIR))
import train_zoo  # noqa: E402

NAMES = tuple(sorted(train_zoo.ZOO))
SEEDS = (1_000_000, 1_000_001)


def _meta(name: str) -> dict:
    return json.loads((ZOO_DIR / name / "zoo.json").read_text())


def _load(name: str):
    meta = _meta(name)
    cond = str(ZOO_DIR / name / meta["cond"]) if meta["cond"] else None
    classes = list(range(10)) if meta["classes"] == "0-9" else None
    return load_diffusers_folder(ZOO_DIR / name, classes=classes, cond=cond), meta


def _sampler(meta: dict, steps: int) -> SamplerConfig:
    return SamplerConfig(steps=steps, guidance_scale=meta["guidance_scale"], cfg=meta["cfg"], scheduler=meta["scheduler"])


def test_registry_is_diverse():
    specs = train_zoo.ZOO.values()
    assert len(train_zoo.ZOO) == 7
    assert {s.family for s in specs} == set(train_zoo.FAMILIES)
    assert {s.scheduler for s in specs} == set(train_zoo.SCHEDULERS)
    assert {s.objective for s in specs} == {"epsilon", "flow"}
    assert {s.cfg for s in specs} == {"batched", "none"}
    with pytest.raises(ValueError):
        train_zoo.ZooSpec("dit", 8, "flow", "DDIMScheduler", 50, 1.5, "batched", 10)  # flow needs flow-match Euler
    with pytest.raises(ValueError):  # FLUX packs 2x2 patches itself
        train_zoo.ZooSpec("flux", 8, "flow", "FlowMatchEulerDiscreteScheduler", 20, 1.0, "none", 10, patch=2,
                          cond_dropout=0.0)


def test_flux_packing_round_trips():
    images = torch.randn(3, 1, 16, 16)
    tokens = train_zoo.pack(images)  # [3, 64, 4]
    assert tokens.shape == (3, 64, 4) and torch.equal(tokens[0, 0], images[0, 0, :2, :2].reshape(4))
    adapter, _ = _load("flux-flow")
    assert torch.equal(adapter.images(tokens), images)  # the adapter's unpacking inverts training's packing


@pytest.mark.parametrize("name", NAMES)
def test_zoo_json(name):
    meta, spec = _meta(name), train_zoo.ZOO[name]
    assert meta["classes"] in ("0-9", None) and (meta["classes"] is None) == spec.text
    assert meta["cond"] in ("cond.safetensors", None) and (meta["cond"] is None) == (not spec.text)
    if meta["cond"]:
        assert (ZOO_DIR / name / meta["cond"]).is_file()
    assert meta["cfg"] in ("batched", "none") and meta["cfg"] == spec.cfg
    assert meta["guidance_scale"] == spec.guidance_scale and meta["steps"] == spec.sample_steps
    trained = meta["trained"]
    assert {"steps", "seconds", "seed", "class_accuracy"} <= set(trained)
    assert trained["steps"] > 0 and trained["seconds"] > 0 and 0.0 <= trained["class_accuracy"] <= 1.0
    weights = list((ZOO_DIR / name / spec.denoiser_dir).glob("*.safetensors"))
    assert len(weights) == 1 and weights[0].stat().st_size < 3.5e6  # unet-sd, the largest: 3.3 MB


@pytest.mark.parametrize("name", NAMES)
def test_loads_and_generates(name):
    adapter, meta = _load(name)
    spec = train_zoo.ZOO[name]
    assert type(adapter.scheduler).__name__ == meta["scheduler"]
    assert adapter.family.name == spec.family.removesuffix("-text")
    out = adapter.generate(adapter.make_inputs(SEEDS), _sampler(meta, 3))
    side = spec.image_size
    packed = (2, (side // 2) ** 2, 4)  # FLUX: 2x2 patches as tokens
    assert out.shape == (packed if spec.family == "flux" else (2, 1, side, side)) and torch.isfinite(out).all()
    if spec.family == "flux":
        assert adapter.images(out).shape == (2, 1, side, side)


def test_multistep_rollout_from_a_step_continues_the_full_run():
    """A rollout from step t (the profiler's gain probes) matches the full run for DPM-Solver++ too."""
    adapter, meta = _load("unet-dpm")
    sampler, inputs, latents = _sampler(meta, 4), adapter.make_inputs(SEEDS), {}
    full = adapter.generate(inputs, sampler, on_step=lambda i, x: latents.__setitem__(i, x.clone()))
    seen = []
    out = adapter.generate(inputs, sampler, on_step=lambda i, x: seen.append(i), start=2, x_start=latents[2])
    assert seen == [2, 3] and torch.equal(out, full)


@pytest.mark.parametrize("name", NAMES)
def test_schedule_from_a_tiny_profile_replays(name, tmp_path):
    adapter, meta = _load(name)
    sampler = _sampler(meta, 4)
    config = ProfileConfig(calib_samples=2, batch_size=2, max_age=3, probe_steps=1, probe_samples=1, forecast_gap=2,
                           measure_latency=False, precisions=())
    profile = profile_model(adapter, sampler, config, progress=False)
    solution = get_solver("dp")(problem_from_profile(profile, None, "flops"), 0.5, Constraints())
    schedule = schedule_from_solution(profile, solution, 0.5)
    reused = sum(is_reuse(a) for row in schedule.decisions for a in row)
    assert reused > 0
    path = save_schedule(schedule, tmp_path / "s.yaml")
    full = adapter.generate(adapter.make_inputs(SEEDS), sampler)
    with apply_schedule(adapter.model, str(path)) as handle:
        out = adapter.generate(adapter.make_inputs(SEEDS), sampler)
        computed = sum(handle.block_calls)
    assert out.shape == full.shape and torch.isfinite(out).all()
    assert computed == len(schedule.decisions) * len(adapter.block_names) - reused
