"""The replay runtime under faults: an interrupted generation (at any step, from a step callback or from
inside a block, in every CFG mode) never leaks into the next one, and a handle used from two threads
at once says so (`ConcurrentUseError`) instead of mixing caches."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from schedc.models.adapter import ModelAdapter
from schedc.sampling import SamplerConfig
from schedc_runtime import ConcurrentUseError, ModelInfo, Schedule, ScheduleFormatError, apply_schedule
from tests.conftest import make_tiny_adapter

STEPS = 4
MODES = ("residual", "forecast", "output")


class Boom(Exception):
    """The injected fault."""


def hand_schedule(adapter: ModelAdapter, sampler: SamplerConfig) -> Schedule:
    """Every step after the first reuses some blocks, in every mode the block allows: caches matter everywhere."""
    outputs = adapter.block_outputs or (None,) * len(adapter.block_names)
    rows = [["native"] * len(adapter.block_names) for _ in range(sampler.steps)]
    for t in range(1, sampler.steps):
        for b, spec in enumerate(outputs):
            if (t + b) % 2:
                rows[t][b] = MODES[(t + b) % 3] if spec is None or any(spec) else "output"
    info = ModelInfo(name=adapter.name, fingerprint=adapter.fingerprint(), blocks=tuple(adapter.block_names),
                     steps=sampler.steps, timesteps=tuple(float(t) for t in adapter.model_timesteps(sampler)),
                     cfg=sampler.cfg, block_outputs=tuple(adapter.block_outputs))
    return Schedule(model=info, decisions=tuple(tuple(r) for r in rows), sampling=sampler.to_dict())


class Faults:
    """Torch hooks that raise `Boom` inside block `block` (in the first leaf module it runs) during the
    denoiser call number `call` of the next generation (0-based), when armed with `arm(call, block)`."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self.calls, self.target = 0, None
        self.handles = [adapter.model.register_forward_pre_hook(self._count)]
        for b, block in enumerate(adapter.blocks()):
            for leaf in block.modules():
                if not list(leaf.children()):
                    self.handles.append(leaf.register_forward_pre_hook(self._raiser(b)))

    def arm(self, call: int, block: int) -> None:
        self.calls, self.target = -1, (call, block)

    def _count(self, module, args) -> None:
        self.calls += 1

    def _raiser(self, block: int) -> Callable:
        def hook(module, args) -> None:
            if self.target == (self.calls, block):
                self.target = None
                raise Boom(f"injected in block {block} at call {self.calls}")
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def raise_at(step: int) -> Callable:
    def on_step(index: int, x: torch.Tensor) -> None:
        if index == step:
            raise KeyboardInterrupt
    return on_step


# -- the reproduction, on the reference model ------------------------------------------------
def test_interrupted_generation_does_not_leak_into_the_next(reference_adapter):
    adapter = reference_adapter
    sampler = adapter.default_sampler
    a, b = adapter.make_inputs([0, 1]), adapter.make_inputs([2])
    with apply_schedule(adapter.model, "schedules/reference-dit-b0.40.yaml") as handle:
        first = adapter.generate(a, sampler)
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the step callback at step 1
            adapter.generate(b, sampler, on_step=raise_at(1))
        assert torch.equal(adapter.generate(a, sampler), first)
        faults = Faults(adapter)
        try:
            faults.arm(0, 5)  # an exception inside a block at step 0 (was: "no cache to reuse" next time)
            with pytest.raises(Boom):
                adapter.generate(b, sampler)
        finally:
            faults.remove()
        assert torch.equal(adapter.generate(a, sampler), first)
        assert handle.generations == 5


# -- fault injection at every step, in every CFG mode ------------------------------------------------
@dataclass
class Setup:
    adapter: ModelAdapter
    sampler: SamplerConfig
    calls_per_step: int
    branches: set  # the cache keys' branch parts after a generation


def _reference(cfg: str) -> Setup:
    sampler = SamplerConfig(steps=STEPS, guidance_scale=2.0, cfg=cfg)
    return Setup(make_tiny_adapter(), sampler, 2 if cfg == "two-call" else 1, {0, 1} if cfg == "two-call" else {0})


def _flux_two_call() -> Setup:
    """A tiny diffusers FLUX transformer: diffusers' `cache_context("cond"/"uncond")` names the branches."""
    diffusers = pytest.importorskip("diffusers")
    from schedc.models.diffusers_adapter import Conditioning, DiffusersAdapter

    torch.manual_seed(0)
    model = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=8, pooled_projection_dim=8, guidance_embeds=True, axes_dims_rope=[2, 2, 4])
    g = torch.Generator().manual_seed(0)
    conditioning = Conditioning({"encoder_hidden_states": torch.randn(2, 6, 8, generator=g),
                                 "pooled_projections": torch.randn(2, 8, generator=g)})
    adapter = DiffusersAdapter(model, diffusers.FlowMatchEulerDiscreteScheduler(), "tiny-flux",
                               conditioning=conditioning, image_size=8)
    sampler = SamplerConfig(steps=STEPS, guidance_scale=3.0, cfg="two-call",
                            scheduler="FlowMatchEulerDiscreteScheduler")
    return Setup(adapter, sampler, 2, {"cond", "uncond"})


SETUPS = {
    "batched": lambda: _reference("batched"),
    "two-call-positional": lambda: _reference("two-call"),
    "two-call-cache-context": _flux_two_call,
}


@pytest.mark.parametrize("name", SETUPS)
def test_faults_at_every_step_leave_the_next_generation_clean(name):
    setup = SETUPS[name]()
    adapter, sampler = setup.adapter, setup.sampler
    schedule = hand_schedule(adapter, sampler)
    a = adapter.make_inputs([0, 1])
    others = adapter.make_inputs([5, 6]), adapter.make_inputs([7])  # aborted: the same batch shape, another one
    with apply_schedule(adapter.model, schedule) as handle:
        fresh = adapter.generate(a, sampler)
        assert {k[0] for k in handle._cache} == setup.branches
    assert not torch.equal(fresh, adapter.generate(a, sampler))  # the schedule does reuse
    handle = apply_schedule(adapter.model, schedule)
    faults = Faults(adapter)
    injected = 0
    try:
        for step in range(STEPS):  # from the step callback, before the step's denoiser calls
            for inputs in others:
                with pytest.raises(KeyboardInterrupt):
                    adapter.generate(inputs, sampler, on_step=raise_at(step))
                assert torch.equal(adapter.generate(a, sampler), fresh), (name, "callback", step)
                injected += 1
        for call in range(STEPS * setup.calls_per_step):  # inside a block that computes, at every call
            step = call // setup.calls_per_step
            block = next(i for i in reversed(range(len(adapter.block_names)))
                         if schedule.decisions[step][i] == "native")
            for inputs in others:
                faults.arm(call, block)
                with pytest.raises(Boom):
                    adapter.generate(inputs, sampler)
                assert torch.equal(adapter.generate(a, sampler), fresh), (name, "block", call)
                injected += 1
    finally:
        faults.remove()
        handle.remove()
    assert injected == 2 * STEPS * (1 + setup.calls_per_step)


def test_positional_two_call_stopped_between_branches_is_resolved_by_reset():
    """The one ambiguous case (generation.py): a pipeline stops after a step's first branch call without
    an exception passing through the denoiser; `handle.reset()` makes the next generation clean."""
    setup = _reference("two-call")
    adapter, sampler = setup.adapter, setup.sampler
    schedule = hand_schedule(adapter, sampler)
    inputs = adapter.make_inputs([0, 1])
    with apply_schedule(adapter.model, schedule):
        fresh = adapter.generate(inputs, sampler)
    dit = adapter.model

    def stop_after_first_call(module, args, output):
        raise KeyboardInterrupt  # a torch forward hook runs after the call has left the runtime's hook

    with apply_schedule(dit, schedule) as handle:
        hook = dit.register_forward_hook(stop_after_first_call)
        with pytest.raises(KeyboardInterrupt):
            adapter.generate(inputs, sampler)
        hook.remove()
        handle.reset()
        assert torch.equal(adapter.generate(inputs, sampler), fresh)


# -- threads -----------------------------------------------------------------------------------------
def _run(fn: Callable, results: dict, key: str) -> threading.Thread:
    def target() -> None:
        try:
            results[key] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[key] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_two_threads_in_flight_on_one_handle_are_refused():
    adapter = make_tiny_adapter()
    sampler = SamplerConfig(steps=STEPS, guidance_scale=2.0, cfg="batched")
    schedule = hand_schedule(adapter, sampler)
    a, b = adapter.make_inputs([0, 1]), adapter.make_inputs([3])
    with apply_schedule(adapter.model, schedule):
        fresh_a, fresh_b = adapter.generate(a, sampler), adapter.generate(b, sampler)
    inside, release = threading.Event(), threading.Event()

    def hold_once(module, args) -> None:  # thread 1 waits inside block 2 at its step 1 (a call in flight)
        if not inside.is_set() and handle.step == 1:
            inside.set()
            release.wait(10)

    handle = apply_schedule(adapter.model, schedule)
    hook = adapter.blocks()[2].register_forward_pre_hook(hold_once)
    results: dict = {}
    try:
        first = _run(lambda: adapter.generate(a, sampler), results, "first")
        assert inside.wait(10)
        second = _run(lambda: adapter.generate(b, sampler), results, "second")
        second.join(10)
        release.set()
        first.join(10)
        assert isinstance(results["second"], ConcurrentUseError), results["second"]
        assert "\n" not in str(results["second"]) and "thread" in str(results["second"])
        assert torch.equal(results["first"], fresh_a)  # the generation in flight went on untouched
        with pytest.raises(ConcurrentUseError):  # so does a reset() during a call
            inside.clear()
            release.clear()
            third = _run(lambda: adapter.generate(a, sampler), results, "third")
            assert inside.wait(10)
            try:
                handle.reset()
            finally:
                release.set()
                third.join(10)
        assert torch.equal(results["third"], fresh_a)
    finally:
        hook.remove()
        release.set()
    assert torch.equal(adapter.generate(b, sampler), fresh_b)  # left clean
    assert torch.equal(adapter.generate(a, sampler), fresh_a)
    handle.remove()


def test_a_thread_continuing_another_threads_generation_is_refused():
    """Calls need not overlap: thread A pauses between steps, thread B starts a generation, A resumes
    at its next step. A is refused (its step would read B's caches); B's generation is unharmed."""
    adapter = make_tiny_adapter()
    sampler = SamplerConfig(steps=STEPS, guidance_scale=2.0, cfg="batched")
    schedule = hand_schedule(adapter, sampler)
    a, b = adapter.make_inputs([0, 1]), adapter.make_inputs([3, 4])  # one shape: B looks like A's next call
    with apply_schedule(adapter.model, schedule):
        fresh_a, fresh_b = adapter.generate(a, sampler), adapter.generate(b, sampler)
    events = {k: threading.Event() for k in ("a_paused", "b_paused", "a_go", "b_go")}

    def pause(at: int, paused: str, go: str) -> Callable:
        def on_step(index: int, x: torch.Tensor) -> None:
            if index == at:
                events[paused].set()
                events[go].wait(10)
        return on_step

    results: dict = {}
    with apply_schedule(adapter.model, schedule):
        thread_a = _run(lambda: adapter.generate(a, sampler, on_step=pause(2, "a_paused", "a_go")), results, "a")
        assert events["a_paused"].wait(10)
        thread_b = _run(lambda: adapter.generate(b, sampler, on_step=pause(1, "b_paused", "b_go")), results, "b")
        assert events["b_paused"].wait(10)
        events["a_go"].set()
        thread_a.join(10)
        events["b_go"].set()
        thread_b.join(10)
        assert isinstance(results["a"], ConcurrentUseError), results["a"]
        assert torch.equal(results["b"], fresh_b)
        assert torch.equal(adapter.generate(a, sampler), fresh_a)


def test_a_generation_started_mid_way_refuses_a_shallower_forecast():
    """A generation that starts after step 0 (resumed, or a thread's call taken as a new generation)
    holds fewer computes than the schedule's forecasts read: refused, not silently extrapolated less."""
    adapter = make_tiny_adapter()
    sampler = SamplerConfig(steps=STEPS, guidance_scale=2.0, cfg="batched")
    base = hand_schedule(adapter, sampler)
    rows = [["native"] * len(adapter.block_names) for _ in range(STEPS)]
    rows[3][0] = "forecast"  # reads the computes of steps 2 and 1
    schedule = Schedule(model=base.model, decisions=tuple(tuple(r) for r in rows), sampling=base.sampling)
    inputs = adapter.make_inputs([0])
    latents = {}
    with apply_schedule(adapter.model, schedule) as handle:
        adapter.generate(inputs, sampler, on_step=lambda i, x: latents.setdefault(i, x))
        with pytest.raises(ScheduleFormatError, match="holds 1 of the 2 computes"):
            adapter.generate(inputs, sampler, start=2, x_start=latents[2])
        assert adapter.generate(inputs, sampler, start=1, x_start=latents[1]) is not None  # 2 computes held
        assert handle.generations == 3
