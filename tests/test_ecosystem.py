"""schedc.ecosystem: every ecosystem cache applies to both model kinds (a tiny random diffusers DiT and
the real reference DiT), skips work inside a batched-CFG DDIM generation, resets between generations, and
remove() gives back bit-identical outputs and the same module tree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")

from schedc.ecosystem import ECOSYSTEM_CACHES, NotApplicable, apply_ecosystem_cache  # noqa: E402

STEPS = 20
GUIDANCE = 3.0


def require_cache_dit() -> None:
    """cache-dit is an optional bench extra: skip when it is missing or does not import."""
    try:
        import cache_dit  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"cache_dit not importable: {exc}")


def ddim_generate(fn, noise: torch.Tensor, labels: torch.Tensor, null: int, steps: int = STEPS) -> torch.Tensor:
    """Batched-CFG DDIM (trailing spacing, from t=999): one model call per step, cond rows then uncond rows."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              timestep_spacing="trailing", clip_sample=True)
    scheduler.set_timesteps(steps)
    x = noise
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x_in = torch.cat([x, x])
            y_in = torch.cat([labels, torch.full_like(labels, null)])
            t_in = torch.full((x_in.shape[0],), int(t), dtype=torch.long)
            eps_cond, eps_uncond = fn(x_in, t_in, y_in).chunk(2)
            x = scheduler.step(eps_uncond + GUIDANCE * (eps_cond - eps_uncond), t, x).prev_sample
    return x


class Bench:
    """A model, its call convention, fixed inputs, and a MAC counter over the blocks' Linear layers."""

    def __init__(self, model: nn.Module, fn, blocks: nn.ModuleList) -> None:
        self.model, self.fn = model, fn
        gen = torch.Generator().manual_seed(7)
        self.noise = torch.randn(2, 1, 8, 8, generator=gen)
        self.labels = torch.tensor([3, 8])
        self.macs = 0
        for module in blocks.modules():
            if isinstance(module, nn.Linear):
                module.register_forward_hook(self._count)
        self.reference = self.generate()
        self.full_macs = self.macs

    def _count(self, module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        self.macs += module.weight.numel() * (inputs[0].numel() // module.in_features)

    def generate(self) -> torch.Tensor:
        self.macs = 0
        return ddim_generate(self.fn, self.noise, self.labels, 10)

    def tree(self) -> tuple:
        return (list(self.model.state_dict()), [n for n, _ in self.model.named_modules()],
                {n: sorted(vars(m)) for n, m in self.model.named_modules()})


@pytest.fixture(scope="module")
def dit() -> Bench:
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    model = DiTTransformer2DModel(sample_size=8, patch_size=2, in_channels=1, out_channels=1, num_layers=4,
                                  num_attention_heads=2, attention_head_dim=16, norm_type="ada_norm_zero",
                                  num_embeds_ada_norm=10).eval()
    return Bench(model, lambda x, t, y: model(x, timestep=t, class_labels=y).sample, model.transformer_blocks)


@pytest.fixture(scope="module")
def ref() -> Bench:
    from schedc.models.reference import load_reference_model

    model = load_reference_model()
    return Bench(model, model, model.blocks)


def test_grids_are_mild_to_aggressive_lists() -> None:
    assert set(ECOSYSTEM_CACHES) == {"first-block", "magcache", "taylorseer", "pab", "cache-dit-dbcache"}
    for grid in ECOSYSTEM_CACHES.values():
        assert 3 <= len(grid) <= 5 and all(isinstance(s, dict) and s for s in grid)


@pytest.mark.parametrize("kind", ["dit", "ref"])
@pytest.mark.parametrize("name", list(ECOSYSTEM_CACHES))
def test_cache_skips_work_resets_and_removes_exactly(name: str, kind: str, request) -> None:
    if name == "cache-dit-dbcache":
        require_cache_dit()
    bench: Bench = request.getfixturevalue(kind)
    tree = bench.tree()
    settings = ECOSYSTEM_CACHES[name][-1]  # the most aggressive setting must visibly skip work
    handle = apply_ecosystem_cache(bench.model, name, settings, num_steps=STEPS, calibrate=bench.generate)
    try:
        outputs = []
        for _ in range(2):
            with handle.generation():
                outputs.append(bench.generate())
        macs = bench.macs
    finally:
        handle.remove()
    assert torch.isfinite(outputs[0]).all()
    assert torch.equal(outputs[0], outputs[1]), "state leaked from one generation into the next"
    assert macs < 0.9 * bench.full_macs, f"{name} on {kind}: {macs / bench.full_macs:.2f} of the block MACs"
    assert not torch.equal(outputs[0], bench.reference)
    assert torch.equal(bench.generate(), bench.reference), "remove() did not restore the outputs"
    assert bench.tree() == tree, "remove() left attributes, submodules or state_dict keys behind"
    handle.remove()  # idempotent


def test_magcache_calibrates_on_the_model_and_reuses_ratios(ref: Bench) -> None:
    with pytest.raises(ValueError, match="calibrate"):
        apply_ecosystem_cache(ref.model, "magcache", ECOSYSTEM_CACHES["magcache"][1], num_steps=STEPS)
    calls = []

    def calibrate() -> None:
        calls.append(1)
        ref.generate()

    handle = apply_ecosystem_cache(ref.model, "magcache", ECOSYSTEM_CACHES["magcache"][1], num_steps=STEPS,
                                   calibrate=calibrate)
    ratios = handle.info["mag_ratios"]
    handle.remove()
    assert calls == [1] and len(ratios) == STEPS and ratios[0] == 1.0
    assert all(r > 0 for r in ratios) and any(abs(r - 1.0) > 1e-3 for r in ratios[1:])
    handle = apply_ecosystem_cache(ref.model, "magcache", {**ECOSYSTEM_CACHES["magcache"][1], "mag_ratios": ratios},
                                   num_steps=STEPS, calibrate=calibrate)
    handle.remove()
    assert calls == [1]
    with pytest.raises(ValueError, match="exactly one generation"):
        apply_ecosystem_cache(ref.model, "magcache", ECOSYSTEM_CACHES["magcache"][1], num_steps=STEPS + 5,
                              calibrate=ref.generate)
    assert torch.equal(ref.generate(), ref.reference)


def test_interrupted_generation_does_not_leak_state(ref: Bench) -> None:
    handle = apply_ecosystem_cache(ref.model, "first-block", ECOSYSTEM_CACHES["first-block"][-1], num_steps=STEPS)
    try:
        with handle.generation():
            clean = ref.generate()
        with pytest.raises(KeyboardInterrupt), handle.generation():
            ddim_generate(ref.fn, ref.noise, ref.labels, 10, steps=STEPS // 2)
            raise KeyboardInterrupt
        with handle.generation():
            bench_output = ref.generate()
        with pytest.raises(RuntimeError, match="already has"):
            apply_ecosystem_cache(ref.model, "pab", ECOSYSTEM_CACHES["pab"][0], num_steps=STEPS)
    finally:
        handle.remove()
    assert torch.equal(bench_output, clean)
    with pytest.raises(RuntimeError, match="removed"), handle.generation():
        pass


class _MLPBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lin(x)


class _NoAttentionModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_MLPBlock() for _ in range(3))

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class _NoBlocksModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers_of_mine = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers_of_mine(x)


@pytest.mark.parametrize(("model_cls", "name", "reason"), [
    (_NoAttentionModel, "pab", "no self-attention"),
    (_NoAttentionModel, "taylorseer", "no attention/MLP"),
    (_NoBlocksModel, "first-block", "no transformer block list"),
    (_NoBlocksModel, "magcache", "no transformer block list"),
])
def test_not_applicable_says_why_and_leaves_model_untouched(model_cls, name: str, reason: str) -> None:
    model = model_cls()
    before = {n: dict(vars(m)) for n, m in model.named_modules()}
    with pytest.raises(NotApplicable, match=reason):
        apply_ecosystem_cache(model, name, ECOSYSTEM_CACHES[name][0], num_steps=STEPS, calibrate=lambda: None)
    assert {n: dict(vars(m)) for n, m in model.named_modules()} == before
    if name == "pab":  # the model is free again: a block cache applies and removes cleanly
        apply_ecosystem_cache(model, "first-block", {"threshold": 0.1}, num_steps=STEPS).remove()


def test_unknown_cache_and_bad_settings(ref: Bench) -> None:
    with pytest.raises(ValueError, match="unknown ecosystem cache"):
        apply_ecosystem_cache(ref.model, "teacache", {}, num_steps=STEPS)
    with pytest.raises(ValueError, match="bad first-block settings"):
        apply_ecosystem_cache(ref.model, "first-block", {"treshold": 0.1}, num_steps=STEPS)
    assert torch.equal(ref.generate(), ref.reference)


def test_cache_dit_class_flag_is_undone(ref: Bench) -> None:
    require_cache_dit()
    from cache_dit.caching.block_adapters import FakeDiffusionPipeline

    had_flag = "_is_cached" in vars(FakeDiffusionPipeline)
    handle = apply_ecosystem_cache(ref.model, "cache-dit-dbcache", ECOSYSTEM_CACHES["cache-dit-dbcache"][0],
                                   num_steps=STEPS)
    handle.remove()
    assert ("_is_cached" in vars(FakeDiffusionPipeline)) == had_flag
