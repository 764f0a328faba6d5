"""The hook core: stacking order, independent removal, exact restore, exceptions, model-level hooks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from schedc.evaluate import blocks_skipped
from schedc.solvers.learned import _SoftRouter
from schedc_runtime import apply_schedule
from schedc_runtime.blockio import BlockIO
from schedc_runtime.hookcore import (
    CallHook, HookRegistry, ModelHook, OutputHook, add_hook, has_foreign_forward, hooks_of, remove_all_hooks,
)
from tests.conftest import TINY_SAMPLER, schedule_for


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.lin(x)


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))

    def forward(self, x: torch.Tensor, timestep: float) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Log(ModelHook):
    """Logs pre/around/post events under its tag."""

    def __init__(self, tag: str, log: list) -> None:
        self.tag, self.log = tag, log

    def pre_forward(self, module, args, kwargs):
        self.log.append(f"{self.tag}.pre")

    def new_forward(self, module, inner, args, kwargs):
        self.log.append(f"{self.tag}.in")
        out = inner(*args, **kwargs)
        self.log.append(f"{self.tag}.out")
        return out

    def post_forward(self, module, args, kwargs, output):
        self.log.append(f"{self.tag}.post")


def snapshot(module: nn.Module) -> dict:
    return {n: dict(vars(m)) for n, m in module.named_modules()}


def test_stacking_order_last_added_is_outermost() -> None:
    block, log = Block(), []
    add_hook(block, Log("a", log), "a")
    add_hook(block, Log("b", log), "b")
    block(torch.randn(2, 4))
    assert log == ["b.pre", "b.in", "a.pre", "a.in", "a.out", "a.post", "b.out", "b.post"]
    assert hooks_of(block) == ["a", "b"]


def test_probe_over_replay_sees_replayed_output_and_can_replace_it() -> None:
    block, x = Block(), torch.randn(2, 4)
    add_hook(block, CallHook(lambda inner, args, kwargs: args[0] * 0), "replay")  # replace the call
    seen = []
    add_hook(block, OutputHook(lambda m, a, k, out: seen.append(out) or out + 1), "probe")  # replace the output
    out = block(x)
    assert torch.equal(seen[0], torch.zeros_like(x))
    assert torch.equal(out, torch.ones_like(x))


def test_remove_independently_in_any_order_and_restore_exactly() -> None:
    block, log, x = Block(), [], torch.randn(2, 4)
    bare = block(x)
    before = snapshot(block)
    a = add_hook(block, Log("a", log), "a")
    b = add_hook(block, Log("b", log), "b")
    c = add_hook(block, Log("c", log), "c")
    b.remove()  # the middle one
    log.clear()
    block(x)
    assert [e for e in log if e.endswith(".in")] == ["c.in", "a.in"]
    a.remove()
    log.clear()
    assert torch.equal(block(x), bare)
    assert log == ["c.pre", "c.in", "c.out", "c.post"]
    c.remove()
    c.remove()  # idempotent
    assert snapshot(block) == before
    assert "forward" not in vars(block)
    assert block.forward.__func__ is Block.forward
    assert hooks_of(block) == [] and HookRegistry.of(block, create=False) is None
    assert torch.equal(block(x), bare)


def test_remove_all_and_remove_all_hooks_restore_the_model() -> None:
    model = Model()
    before = snapshot(model)
    registry = HookRegistry.of(model.blocks[0])
    registry.add(ModelHook(), "x")
    registry.add(ModelHook(), "y")
    add_hook(model, ModelHook(), "m")
    add_hook(model.blocks[1], ModelHook(), "z")
    registry.remove_all()
    assert "forward" not in vars(model.blocks[0])
    remove_all_hooks(model)
    assert snapshot(model) == before


def test_duplicate_name_is_refused_and_leaves_registry_as_it_was() -> None:
    block = Block()
    add_hook(block, ModelHook(), "a")
    shadow = vars(block)["forward"]
    with pytest.raises(ValueError, match="already has a hook named 'a'"):
        add_hook(block, ModelHook(), "a")
    assert hooks_of(block) == ["a"] and vars(block)["forward"] is shadow


@pytest.mark.parametrize("where", ["pre_forward", "new_forward", "post_forward"])
def test_exception_inside_a_hook_leaves_the_registry_consistent(where: str) -> None:
    class Boom(ModelHook):
        pass

    def boom(self, *args):
        raise RuntimeError("boom")

    setattr(Boom, where, boom)
    block, x, log = Block(), torch.randn(2, 4), []
    bare = block(x)
    before = snapshot(block)
    add_hook(block, Log("inner", log), "inner")
    handle = add_hook(block, Boom(), "boom")
    with pytest.raises(RuntimeError, match="boom"):
        block(x)
    assert hooks_of(block) == ["inner", "boom"]
    handle.remove()
    log.clear()
    assert torch.equal(block(x), bare)  # the remaining hook still works
    assert log == ["inner.pre", "inner.in", "inner.out", "inner.post"]
    remove_all_hooks(block)
    assert snapshot(block) == before


def test_exception_in_on_remove_still_removes_the_hook() -> None:
    class BadRemove(ModelHook):
        def on_remove(self, module):
            raise RuntimeError("bad remove")

    block = Block()
    before = snapshot(block)
    handle = add_hook(block, BadRemove(), "bad")
    with pytest.raises(RuntimeError, match="bad remove"):
        handle.remove()
    assert snapshot(block) == before


def test_model_level_hook_sees_the_denoiser_call_before_the_blocks() -> None:
    model, log = Model(), []

    class Step(ModelHook):
        def pre_forward(self, module, args, kwargs):
            log.append(("step", kwargs.get("timestep", args[1] if len(args) > 1 else None)))

    add_hook(model, Step(), "step")
    for block in model.blocks:
        add_hook(block, OutputHook(lambda m, a, k, o: log.append("block")), "rec")
    model(torch.randn(1, 4), 7.0)
    model(torch.randn(1, 4), timestep=3.0)
    assert log == [("step", 7.0), "block", "block", ("step", 3.0), "block", "block"]
    remove_all_hooks(model)
    assert all("forward" not in vars(m) for m in model.modules())


def test_pre_forward_can_rewrite_arguments() -> None:
    class Zero(ModelHook):
        def pre_forward(self, module, args, kwargs):
            return (torch.zeros_like(args[0]),), kwargs

    block = Block()
    add_hook(block, Zero())
    assert torch.equal(block(torch.randn(2, 4)), block.lin(torch.zeros(2, 4)))


def test_foreign_instance_forward_is_wrapped_and_put_back() -> None:
    block = Block()
    foreign = lambda x, *a, **k: x * 2  # noqa: E731  (e.g. accelerate's shadow)
    block.forward = foreign
    assert has_foreign_forward(block)
    handle = add_hook(block, OutputHook(lambda m, a, k, o: o + 1))
    assert has_foreign_forward(block)
    assert torch.equal(block(torch.ones(1, 4)), torch.full((1, 4), 3.0))
    handle.remove()
    assert vars(block)["forward"] is foreign


def test_hooked_forward_keeps_its_signature() -> None:
    block = Block()
    add_hook(block, ModelHook())
    assert list(inspect.signature(block.forward).parameters) == ["x", "c"]
    assert BlockIO(block.forward, ("x",))._position == {"x": 0, "c": 1}
    assert not has_foreign_forward(block)


def test_stale_registry_object_adds_to_the_live_one() -> None:
    block = Block()
    stale = HookRegistry.of(block)
    live = add_hook(block, ModelHook(), "a").registry
    stale.add(ModelHook(), "b")
    assert live.names == ["a", "b"]
    remove_all_hooks(block)
    assert "forward" not in vars(block)


def test_gradients_flow_through_hooks() -> None:
    block = Block()
    add_hook(block, CallHook(lambda inner, args, kwargs: inner(*args, **kwargs) * 2))
    block(torch.randn(2, 4)).sum().backward()
    assert block.lin.weight.grad is not None


def test_probe_stacks_over_the_replay_runtime_and_both_remove_independently(tiny_adapter, tiny_profile) -> None:
    model, inputs = tiny_adapter.model, tiny_adapter.make_inputs(range(2))
    bare = tiny_adapter.generate(inputs, TINY_SAMPLER)
    before = snapshot(model)
    compute = np.ones((TINY_SAMPLER.steps, len(tiny_adapter.blocks())), dtype=bool)
    handle = apply_schedule(model, schedule_for(tiny_profile, compute))
    seen = []
    probe = add_hook(tiny_adapter.blocks()[1], OutputHook(lambda m, a, k, o: seen.append(o)), "probe")
    assert hooks_of(tiny_adapter.blocks()[1]) == ["schedc.replay", "probe"]
    assert torch.equal(tiny_adapter.generate(inputs, TINY_SAMPLER), bare)
    assert len(seen) == TINY_SAMPLER.steps and handle.block_calls[1] == TINY_SAMPLER.steps
    handle.remove()  # the replay leaves first: the probe stays on its block
    assert hooks_of(tiny_adapter.blocks()[1]) == ["probe"]
    assert torch.equal(tiny_adapter.generate(inputs, TINY_SAMPLER), bare)
    assert len(seen) == 2 * TINY_SAMPLER.steps
    probe.remove()
    assert snapshot(model) == before


def test_skip_and_soft_router_hooks_restore_the_model(tiny_adapter) -> None:
    model, block = tiny_adapter.model, tiny_adapter.blocks()[0]
    before = snapshot(model)
    seen = {}
    handle = block.register_forward_pre_hook(lambda m, a: seen.setdefault("args", a))
    tiny_adapter.generate(tiny_adapter.make_inputs(range(1)), TINY_SAMPLER)
    handle.remove()
    x, c = seen["args"]
    with blocks_skipped(tiny_adapter):
        assert block(x, c) is x  # the skip replaces the call: the input passes through
    assert snapshot(model) == before
    logits = torch.zeros(TINY_SAMPLER.steps, len(tiny_adapter.blocks()))
    with _SoftRouter(tiny_adapter, logits, 1.0) as router:
        router.step = 0
        assert torch.equal(block(x, c), block.__class__.forward(block, x, c))
        assert hooks_of(block) == ["schedc.router"]
    assert snapshot(model) == before
