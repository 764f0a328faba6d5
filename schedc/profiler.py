"""The profiler: the only code that measures features. Runs calibration inputs at full compute.

For each calibration batch it rolls out the sampler once with a forward hook on every block and
accumulates, as it goes, the relative error each block would make at step t by reusing (residual)
its cache from any step s within the max age. Only a ring of the last `max_age` block residuals is
held, so memory does not grow with the step count. Then it runs perturbation probes: for a few
steps t, each block alone reuses its step t-1 cache and the rollout continues to the end; the final
sample's error per unit of local error is the propagation gain G[b, t].
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from schedc import __version__
from schedc.errors import ProfileError
from schedc.metrics import rel_l2
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.profile import Profile
from schedc.sampling import SamplerConfig


@dataclass(frozen=True)
class ProfileConfig:
    calib_samples: int = 32  # calibration seeds 0..calib_samples-1 (evaluation uses other seeds)
    batch_size: int = 16
    max_age: int = 24  # longest reuse measured: t - s <= max_age
    probe_steps: int = 10  # steps at which the propagation gain is probed (interpolated between)
    probe_samples: int = 4  # samples of the first batch used for the probes
    shard: tuple[int, int] = (0, 1)  # (i, n): this run profiles calibration seeds i, i+n, ...

    def __post_init__(self) -> None:
        if self.calib_samples < 1 or self.batch_size < 1:
            raise ProfileError("--calib and the batch size must be >= 1")
        if self.max_age < 1:
            raise ProfileError("--max-age must be >= 1")
        if self.probe_steps < 0 or self.probe_samples < 1:
            raise ProfileError("--probe-steps must be >= 0 and --probe-samples >= 1")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ProfileError(f"--shard must be i/n with 0 <= i < n, got {i}/{n}")

    def seeds(self) -> list[int]:
        i, n = self.shard
        seeds = list(range(self.calib_samples))[i::n]
        if not seeds:
            raise ProfileError(f"shard {i}/{n} of {self.calib_samples} calibration samples is empty")
        return seeds


class _ReuseErrorRecorder:
    """Forward hooks that accumulate E[b, s, t] sums from a ring of the last `max_age` residuals."""

    def __init__(self, num_blocks: int, steps: int, max_age: int, probe_at: set[int], probe_rows: list[int]) -> None:
        self.err_sum = np.zeros((num_blocks, steps, steps))
        self.count = np.zeros((num_blocks, steps, steps), dtype=np.int64)
        self.max_age = min(max_age, steps - 1)
        self.step = -1
        self.ring: list[torch.Tensor | None] = [None] * num_blocks  # [A, rows, ...] per block
        self.ring_steps = [np.full(max(self.max_age, 1), -1) for _ in range(num_blocks)]
        self.probe_at = probe_at  # steps t whose (t-1) residuals the probes need
        self.probe_rows = probe_rows
        self.probe_delta: dict[tuple[int, int], torch.Tensor] = {}  # (t, b) -> residual at t-1

    def hook(self, index: int):
        def fn(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            t = self.step
            x = args[0]
            delta = (output - x).float()  # [rows, ...]: what the block adds to its input
            out_norm = output.float().flatten(1).norm(dim=1).clamp_min(1e-12)  # [rows]
            if self.max_age > 0:
                ring = self.ring[index]
                if ring is None or ring.shape[1:] != delta.shape:
                    ring = self.ring[index] = torch.zeros((self.max_age, *delta.shape))
                    self.ring_steps[index][:] = -1
                valid = np.flatnonzero(self.ring_steps[index] >= 0)
                if valid.size:
                    diff = (ring[valid] - delta.unsqueeze(0)).flatten(2).norm(dim=2)  # [k, rows]
                    rel = (diff / out_norm.unsqueeze(0)).sum(dim=1).double().numpy()  # [k]
                    s = self.ring_steps[index][valid]
                    self.err_sum[index, s, t] += rel
                    self.count[index, s, t] += delta.shape[0]
                slot = t % self.max_age
                ring[slot] = delta
                self.ring_steps[index][slot] = t
            if t + 1 in self.probe_at:
                self.probe_delta[(t + 1, index)] = delta[self.probe_rows].clone()

        return fn


def _cfg_rows(samples: Sequence[int], batch: int, cfg: str) -> list[int]:
    """Rows of the denoiser batch that belong to `samples` (cond rows first, then uncond rows)."""
    rows = list(samples)
    return rows + [batch + i for i in samples] if cfg == "batched" else rows


def _probe_steps(steps: int, count: int) -> list[int]:
    if count == 0 or steps < 2:
        return []
    return sorted({int(round(x)) for x in np.linspace(1, steps - 1, min(count, steps - 1))})


def _probe_gain(
    adapter: ModelAdapter,
    sampler: SamplerConfig,
    inputs: GenerationInputs,
    latents: dict[int, torch.Tensor],
    final: torch.Tensor,
    recorder: _ReuseErrorRecorder,
    t: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One batched rollout from step t in which copy b of the probe samples has block b reuse.

    Returns per block the summed final relative error and summed local relative error (over samples).
    """
    blocks = adapter.blocks()
    nb, k = len(blocks), len(inputs)
    rep = GenerationInputs(
        inputs.noise.repeat(nb, 1, 1, 1), inputs.labels.repeat(nb), tuple(inputs.seeds) * nb
    )  # copy b = samples b*k .. b*k+k-1
    local = torch.zeros(nb, k)
    state = {"step": -1}

    def make_hook(b: int):
        rows = _cfg_rows(range(b * k, (b + 1) * k), nb * k, sampler.cfg)

        def fn(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if state["step"] != t:
                return None
            x = args[0]
            cached = recorder.probe_delta[(t, b)]  # [len(rows), ...]
            true_delta = (output[rows] - x[rows]).float()
            rel = (cached - true_delta).flatten(1).norm(dim=1) / output[rows].float().flatten(1).norm(dim=1).clamp_min(1e-12)
            local[b] = rel.reshape(-1, k).mean(dim=0)  # mean over CFG branches, per sample
            output = output.clone()
            output[rows] = x[rows] + cached.to(output.dtype)
            return output

        return fn

    handles = [blk.register_forward_hook(make_hook(b)) for b, blk in enumerate(blocks)]
    try:
        x_start = latents[t].repeat(nb, 1, 1, 1)
        out = adapter.generate(rep, sampler, on_step=lambda i, x: state.update(step=i), start=t, x_start=x_start)
    finally:
        for h in handles:
            h.remove()
    final_err = rel_l2(out.float(), final.float().repeat(nb, 1, 1, 1)).reshape(nb, k)  # [B, k]
    return final_err.sum(dim=1).double().numpy(), local.sum(dim=1).double().numpy()


def profile_model(
    adapter: ModelAdapter, sampler: SamplerConfig, config: ProfileConfig = ProfileConfig(), progress: bool = True
) -> Profile:
    """Measure reuse errors, propagation gains and FLOPs of `adapter`'s model under `sampler`."""
    steps = sampler.steps
    num_blocks = len(adapter.block_names)
    seeds = config.seeds()
    batches = [seeds[i : i + config.batch_size] for i in range(0, len(seeds), config.batch_size)]
    probe_at = _probe_steps(steps, config.probe_steps)
    probe_k = min(config.probe_samples, len(batches[0]))
    probe_rows = _cfg_rows(range(probe_k), len(batches[0]), sampler.cfg)
    total = len(batches) * steps + sum(steps - t for t in probe_at)
    bar = tqdm(total=total, desc=f"profile {adapter.name}", unit="step", disable=not progress, leave=False)

    err_sum = np.zeros((num_blocks, steps, steps))
    count = np.zeros((num_blocks, steps, steps), dtype=np.int64)
    probe_final = np.zeros((num_blocks, steps))
    probe_local = np.zeros((num_blocks, steps))
    probe_count = np.zeros((num_blocks, steps), dtype=np.int64)
    started = time.perf_counter()
    for batch_index, batch_seeds in enumerate(batches):
        inputs = adapter.make_inputs(batch_seeds)
        first = batch_index == 0
        recorder = _ReuseErrorRecorder(num_blocks, steps, config.max_age, set(probe_at) if first else set(), probe_rows)
        latents: dict[int, torch.Tensor] = {}

        def on_step(index: int, x: torch.Tensor) -> None:
            recorder.step = index
            if first and index in probe_at:
                latents[index] = x[:probe_k].clone()
            bar.update(1)

        handles = [blk.register_forward_hook(recorder.hook(b)) for b, blk in enumerate(adapter.blocks())]
        try:
            final = adapter.generate(inputs, sampler, on_step=on_step)
        finally:
            for h in handles:
                h.remove()
        err_sum += recorder.err_sum
        count += recorder.count
        if first:
            probe_inputs = inputs.subset(slice(0, probe_k))
            for t in probe_at:
                fin, loc = _probe_gain(adapter, sampler, probe_inputs, latents, final[:probe_k], recorder, t)
                probe_final[:, t] += fin
                probe_local[:, t] += loc
                probe_count[:, t] += probe_k
                bar.update(steps - t)
    bar.close()

    block_flops, nonblock_flops = adapter.flops()
    meta = {
        "model": adapter.name,
        "fingerprint": adapter.fingerprint(),
        "blocks": list(adapter.block_names),
        "timestep_arg": adapter.timestep_arg,
        "steps": steps,
        "timesteps": [int(t) for t in sampler.timesteps()],
        "sampler": sampler.to_dict(),
        "calibration_seeds": seeds,
        "max_age": min(config.max_age, steps - 1),
        "probe_steps": probe_at,
        "probe_samples": probe_k,
        "nonblock_flops": nonblock_flops,
        "profile_seconds": round(time.perf_counter() - started, 2),
        "versions": {"schedc": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
    }
    return Profile(
        reuse_err_sum=err_sum,
        reuse_count=count,
        probe_final_sum=probe_final,
        probe_local_sum=probe_local,
        probe_count=probe_count,
        block_flops=np.asarray(block_flops, dtype=np.float64),
        meta=meta,
    )
