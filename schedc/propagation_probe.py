"""Perturbation probes: the propagation gain G[b, t] of each block at a few steps.

Why a module of its own: the profiler's main pass records what reusing a cache does locally; these probes
record what it does to the final sample (one batched rollout per probed step in which copy b of the probe
samples has block b reuse its step t-1 cache, the rest of the rollout running as it would). The gain, final
error per unit of local error, is what lets the solvers weigh a local error at one step against another.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from schedc.metrics import rel_l2
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.sampling import SamplerConfig
from schedc_runtime.blockio import BlockIO, flat_rows, map_tensors, tensors_in
from schedc_runtime.hookcore import OutputHook, add_hook


def cfg_rows(samples: Sequence[int], batch: int, cfg: str) -> list[int]:
    """Rows of the denoiser batch that belong to `samples` (cond rows first, then uncond rows)."""
    rows = list(samples)
    return rows + [batch + i for i in samples] if cfg == "batched" else rows


def probe_steps(steps: int, count: int) -> list[int]:
    if count == 0 or steps < 2:
        return []
    return sorted({int(round(x)) for x in np.linspace(1, steps - 1, min(count, steps - 1))})


def probe_gain(
    adapter: ModelAdapter,
    sampler: SamplerConfig,
    inputs: GenerationInputs,
    latents: dict[int, torch.Tensor],
    final: torch.Tensor,
    recorder: Any,  # schedc.profiler's recorder: its probe_cache[(t, b)] holds block b's step t-1 cache
    t: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One batched rollout from step t in which copy b of the probe samples has block b reuse.

    Returns per block the summed final relative error and summed local relative error (over samples).
    """
    blocks = adapter.blocks()
    nb, k = len(blocks), len(inputs)
    ones = (1,) * (inputs.noise.dim() - 1)
    rep = GenerationInputs(
        inputs.noise.repeat(nb, *ones), inputs.labels.repeat(nb), tuple(inputs.seeds) * nb
    )  # copy b = samples b*k .. b*k+k-1
    local = torch.zeros(nb, k)
    state = {"step": -1}

    def make_hook(b: int):
        rows = cfg_rows(range(b * k, (b + 1) * k), nb * k, sampler.cfg)
        io = BlockIO(blocks[b].forward, adapter.outputs_of(b))

        def fn(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if state["step"] != t:
                return None
            cached = recorder.probe_cache[(t, b)]
            if not io.residual_ok:  # output-only block: replay the t-1 output on these rows
                source = iter(cached)

                def put(o: torch.Tensor) -> torch.Tensor:
                    o = o.clone()
                    o[rows] = next(source).to(o.dtype)
                    return o

                reused = map_tensors(output, put)
            else:
                streams = []
                for x, o, (residual, c) in zip(io.stream_inputs(args, kwargs), io.stream_outputs(output), cached):
                    if o is None:
                        streams.append(None)
                        continue
                    o = o.clone()
                    o[rows] = (x[rows] + c if residual else c).to(o.dtype)
                    streams.append(o)
                reused = io.rebuild(streams, isinstance(output, tuple))
            true = flat_rows(tensors_in(output), output_rows(output))[rows]
            new = flat_rows(tensors_in(reused), output_rows(output))[rows]
            rel = (new - true).norm(dim=1) / true.norm(dim=1).clamp_min(1e-12)
            local[b] = rel.reshape(-1, k).mean(dim=0)  # mean over CFG branches, per sample
            return reused

        return fn

    handles = [add_hook(blk, OutputHook(make_hook(b)), "schedc.probe") for b, blk in enumerate(blocks)]
    try:
        x_start = latents[t].repeat(nb, *ones)
        out = adapter.generate(rep, sampler, on_step=lambda i, x: state.update(step=i), start=t, x_start=x_start)
    finally:
        for h in handles:
            h.remove()
    final_err = rel_l2(out.float(), final.float().repeat(nb, *ones)).reshape(nb, k)  # [B, k]
    return final_err.sum(dim=1).double().numpy(), local.sum(dim=1).double().numpy()


def output_rows(output: Any) -> int:
    return tensors_in(output)[0].shape[0]


__all__ = ["cfg_rows", "output_rows", "probe_gain", "probe_steps"]
