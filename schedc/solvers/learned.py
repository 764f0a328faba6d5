"""The learned solver (Learning-to-Cache / HarmoniCa style): a router trained through whole rollouts.

One logit per (step, block) gives the probability p of computing. Training rolls the sampler out
with the soft router in the loop: every block computes, and its output is p * block(x) +
(1 - p) * (x + cache), where the cache is itself the soft mix of what compute and reuse would have
left, so later steps see the caches earlier decisions produced (step-wise denoising training). The
loss is the final sample's squared relative error against full compute (the image-error proxy: every
step is weighted by its real effect on the final sample) plus a penalty on expected cost above the
budget. The logits start from the DP's schedule. The result is projected to a budget-feasible static
schedule: the most-wanted computes that fit, the same YAML as every solver.

Registered as "learned" in `schedc.solvers` (needs_model): `solve_learned` is its registry entry.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from schedc.errors import SolverError
from schedc.models.adapter import ModelAdapter
from schedc.problem import Problem, check_budget
from schedc.profile import Profile
from schedc.sampling import DDIMSampler, SamplerConfig
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.context import SolveContext
from schedc.solvers.dp import solve_dp
from schedc_runtime.hookcore import CallHook, HookHandle, add_hook


class _SoftRouter:
    """Hooks each block's call with the soft compute/reuse mix for the current step."""

    def __init__(self, adapter: ModelAdapter, logits: torch.Tensor, temperature: float) -> None:
        self.blocks = adapter.blocks()
        self.logits = logits  # [T, B]
        self.temperature = temperature
        self.step = -1
        self.cache: dict[int, torch.Tensor] = {}
        self._handles: list[HookHandle] = []

    def __enter__(self) -> "_SoftRouter":
        self._handles = [add_hook(block, CallHook(self._make(b)), "schedc.router") for b, block in enumerate(self.blocks)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _make(self, b: int):
        def forward(original, args: tuple, kwargs: dict) -> torch.Tensor:
            x = args[0]
            y = original(*args, **kwargs)
            delta = y - x
            if self.step == 0 or b not in self.cache:
                self.cache[b] = delta
                return y
            p = torch.sigmoid(self.logits[self.step, b] / self.temperature)
            out = p * y + (1 - p) * (x + self.cache[b])
            self.cache[b] = p * delta + (1 - p) * self.cache[b]  # the cache the mix leaves behind
            return out

        return forward


def _project(probs: np.ndarray, problem: Problem, budget: float, first: int) -> np.ndarray:
    """Most-wanted computes that fit the budget and keep every reuse within the profile's max age."""
    steps, blocks = probs.shape
    compute = np.zeros((steps, blocks), dtype=bool)
    compute[:first] = True
    cost = problem.block_cost
    capacity = budget * (1 + 1e-9) * steps * cost.sum() - compute.sum(axis=0) @ cost
    order = np.argsort(-probs, axis=None)  # flat indices, most-wanted first
    for flat in order:
        t, b = divmod(int(flat), blocks)
        if not compute[t, b] and cost[b] <= capacity:
            compute[t, b] = True
            capacity -= cost[b]
    # a reuse older than the profile measured: compute there instead of at the block's least-wanted step
    for b in range(blocks):
        for _ in range(steps):
            stale = _first_stale_reuse(problem, compute[:, b], b)
            if stale is None:
                break
            victims = [u for u in range(first, steps) if compute[u, b] and u not in (stale - 1,)]
            compute[stale, b] = True
            if victims:
                compute[min(victims, key=lambda v: probs[v, b]), b] = False
        if _first_stale_reuse(problem, compute[:, b], b) is not None:
            raise SolverError("the learned schedule cannot respect the profile's max cache age at this budget")
    return compute


def _first_stale_reuse(problem: Problem, column: np.ndarray, b: int) -> int | None:
    """First step of block b that reuses a cache older than the profile measured, or None."""
    last = 0
    for t, computed in enumerate(column):
        if computed:
            last = t
        elif not np.isfinite(problem.reuse_error[b, last, t]):
            return t
    return None


def learn_schedule(
    adapter: ModelAdapter, profile: Profile, problem: Problem, budget: float, constraints: Constraints = Constraints(),
    iterations: int = 60, samples: int = 4, lr: float = 0.2, penalty: float = 50.0, seed: int = 0, progress: bool = True,
    init_scale: float = 2.0,
) -> Solution:
    """Train the router on calibration seeds and project it; residual reuse only."""
    budget = check_budget(budget)
    if getattr(adapter, "family", None) is not None:  # diffusers models sample with their own scheduler
        raise SolverError(f"the learned solver rolls out schedc's own DDIM sampler: {adapter.name} is not supported yet: use the dp or ilp solver")
    started = time.perf_counter()
    torch.manual_seed(seed)
    sampler = SamplerConfig(**profile.meta.sampler)
    steps, blocks = problem.num_steps, problem.num_blocks
    first = min(constraints.first_full, steps)
    start = solve_dp(problem, budget, constraints).compute  # [T, B] warm start
    logits = torch.tensor(np.where(start, init_scale, -init_scale), dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)
    inputs = adapter.make_inputs(profile.meta.calibration_seeds[:samples])
    ddim = DDIMSampler(sampler)
    null = getattr(adapter.config, "num_classes", 0)
    with torch.no_grad():
        full = ddim.denoise(adapter.model, inputs.noise, inputs.labels, null).float()
    free = torch.ones(steps, blocks)
    free[:first] = 0  # the first steps always compute
    cost_w = torch.tensor(problem.block_cost / problem.block_cost.sum(), dtype=torch.float32)
    history = []
    bar = tqdm(range(iterations), desc="learned router", disable=not progress, leave=False)
    for it in bar:
        temperature = max(0.3, 1.0 - it / max(1, iterations))  # anneal towards hard decisions
        router = _SoftRouter(adapter, logits, temperature)

        def on_step(index: int, x: torch.Tensor) -> None:
            router.step = index

        with router, torch.enable_grad():
            out = ddim.denoise(adapter.model, inputs.noise, inputs.labels, null, on_step=on_step).float()
        err = ((out - full).flatten(1).pow(2).sum(1) / full.flatten(1).pow(2).sum(1)).mean()
        p = torch.sigmoid(logits / temperature) * free + (1 - free)
        expected = (p * cost_w).sum() / steps  # expected cost fraction
        loss = err + penalty * torch.relu(expected - budget) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((float(err.detach().sqrt()), float(expected.detach())))
        bar.set_postfix(rel=f"{history[-1][0]:.4f}", cost=f"{history[-1][1]:.3f}")
    probs = torch.sigmoid(logits.detach()).numpy()
    compute = _project(probs, problem, budget, first)
    return Solution(compute=compute, cost=problem.cost_of(compute), predicted_error=problem.predicted_error(compute),
                    solver="learned", stats={"solve_seconds": time.perf_counter() - started, "iterations": iterations,
                                             "train_rel_l2_first": history[0][0], "train_rel_l2": history[-1][0],
                                             "samples": samples, "seed": seed})


def solve_learned(problem: Problem, budget: float, constraints: Constraints, context: SolveContext) -> Solution:
    """Registry entry: the router's settings and the model come from the typed context."""
    if problem.is_joint:
        raise SolverError("the learned solver routes compute vs residual reuse only: allow only residual reuse")
    return learn_schedule(context.model(), context.bound_profile, problem, budget, constraints, iterations=context.iterations,
                          samples=context.samples or 4, seed=context.seed, progress=context.progress)
