"""The profiler: the only code that measures features. Runs calibration inputs at full compute.

For each calibration batch it rolls out the sampler once with a hook on every block and
accumulates, as it goes, the relative error each block would make at step t by reusing (residual)
its cache from any step s within the max age. Only a ring of the last `max_age` block residuals is
held, so memory does not grow with the step count. Then it runs perturbation probes
(schedc.propagation_probe): for a few steps t, each block alone reuses its step t-1 cache and the rollout
continues to the end; the final sample's error per unit of local error is the propagation gain G[b, t].
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from schedc.version import __version__
from schedc.errors import ProfileError
from schedc.metrics import check_reference
from schedc.models.adapter import ModelAdapter
from schedc.profile import Profile
from schedc.interleaved import measure_generation
from schedc.profile_meta import ProfileMeta
from schedc.profile_resume import BatchStore
from schedc.propagation_probe import cfg_rows, probe_gain, probe_steps
from schedc.timing import device_of, timed
from schedc.sampling import SamplerConfig
from schedc_runtime.blockio import BlockIO, flat_rows, tensors_in
from schedc_runtime.hookcore import OutputHook, add_hook
from schedc_runtime.modes import REUSE_MODES, RingView
from schedc_runtime.quant import PRECISIONS, block_kernels, quantize_block


@dataclass(frozen=True)
class ProfileConfig:
    calib_samples: int = 32  # calibration seeds 0..calib_samples-1 (evaluation uses other seeds)
    batch_size: int = 16
    max_age: int = 24  # longest reuse measured: t - s <= max_age
    probe_steps: int = 10  # steps at which the propagation gain is probed (interpolated between)
    probe_samples: int = 4  # samples of the first batch used for the probes
    shard: tuple[int, int] = (0, 1)  # (i, n): this run profiles calibration seeds i, i+n, ...
    # (r, w): of this run's calibration batches, this process runs batches r, r+w, ... (torch.distributed ranks;
    # the sums are reduced across them, see schedc.distributed); rank 0 also runs what the first batch does
    # alone (gain probes, cache sizes, latency), so w ranks measure exactly what one process does
    rank: tuple[int, int] = (0, 1)
    forecast_gap: int = 8  # forecast reuse measured from compute pairs at most this far apart
    precisions: tuple[str, ...] = PRECISIONS  # reduced precisions whose error Q[b, t, p] is measured
    measure_latency: bool = True  # time each block at each option on this device (the latency cost model)
    def __post_init__(self) -> None:
        if self.calib_samples < 1 or self.batch_size < 1:
            raise ProfileError("calib_samples and batch_size must be >= 1")
        if self.max_age < 1:
            raise ProfileError("max_age must be >= 1")
        if self.probe_steps < 0 or self.probe_samples < 1:
            raise ProfileError("probe_steps must be >= 0 and probe_samples >= 1")
        unknown = set(self.precisions) - set(PRECISIONS)
        if unknown:
            raise ProfileError(f"unknown precision(s) {', '.join(sorted(unknown))}: choose from {', '.join(PRECISIONS)}")
        if self.forecast_gap < 1:
            raise ProfileError("forecast_gap must be >= 1")
        for name in ("shard", "rank"):
            i, n = getattr(self, name)
            if not (n >= 1 and 0 <= i < n):
                raise ProfileError(f"{name} must be i/n with 0 <= i < n, got {i}/{n}")

    def seeds(self) -> list[int]:
        i, n = self.shard
        seeds = list(range(self.calib_samples))[i::n]
        if not seeds:
            raise ProfileError(f"shard {i}/{n} of {self.calib_samples} calibration samples is empty")
        return seeds


class _ReuseErrorRecorder:
    """Forward hooks that accumulate reuse and quantization error sums as the rollout goes.

    Per block it keeps a ring of the last `max_age` residuals d and outputs o (float32) and the
    float64 Gram matrix of the residuals; every registered reuse mode (runtime/modes/) turns that
    ring into its error against every earlier cache (a residual mode costs one quadratic form in
    the Gram matrix per cache it reads), all relative to ||o_t|| per row. Quantization: each
    quantized copy runs on the same inputs.
    """

    def __init__(
        self, num_blocks: int, steps: int, max_age: int, forecast_gap: int, probe_at: set[int], probe_rows: list[int],
        quantized: list[dict[str, torch.nn.Module]] | None = None, io: list[BlockIO] | None = None,
    ) -> None:
        self.io = io
        self.max_age = min(max_age, steps - 1)
        self.gap = min(forecast_gap, self.max_age)
        self.modes = dict(REUSE_MODES)
        shapes = {m: (num_blocks, len(mode.patterns(max(self.gap, 1))), steps, steps) for m, mode in self.modes.items()}
        self.err_sum = {m: np.zeros(shape) for m, shape in shapes.items()}  # mode -> [B, K, T, T]
        self.err_count = {m: np.zeros(shape, dtype=np.int64) for m, shape in shapes.items()}
        self.quantized = quantized or [{} for _ in range(num_blocks)]
        precisions = list(self.quantized[0]) if self.quantized else []
        self.q_sum = np.zeros((num_blocks, steps, len(precisions)))
        self.q_count = np.zeros((num_blocks, steps), dtype=np.int64)
        self.step = -1
        size = max(self.max_age, 1)
        self.deltas: list[torch.Tensor | None] = [None] * num_blocks  # [A, rows, F] per block
        self.outputs: list[torch.Tensor | None] = [None] * num_blocks  # [A, rows, F]
        self.gram = [torch.zeros(size, size, 0, dtype=torch.float64) for _ in range(num_blocks)]  # [A, A, rows]
        self.ring_steps = [np.full(size, -1) for _ in range(num_blocks)]
        self.probe_at = probe_at  # steps t whose (t-1) residuals the probes need
        self.probe_rows = probe_rows
        # (t, b) -> what block b cached at t-1 for the probe rows (see _probe_cache)
        self.probe_cache: dict[tuple[int, int], list] = {}
        self.cache_bytes = [0] * num_blocks  # one cached output-shaped tensor per block, this batch

    def hook(self, index: int):
        io = self.io[index] if self.io else BlockIO(lambda x, *a, **k: x, None)

        def fn(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            t = self.step
            tensors = tensors_in(output)
            rows = tensors[0].shape[0]
            self.cache_bytes[index] = sum(x.numel() * x.element_size() for x in tensors)
            out = flat_rows(tensors, rows)  # [rows, F]: every output stream of each row
            if io.residual_ok:
                delta = flat_rows([t if residual else torch.zeros_like(t) for residual, t in
                                   io.caches(args, kwargs, output) if t is not None], rows)  # [rows, F]
            else:
                delta = out  # output-only block: a residual reuse is never offered (its error is set to inf)
            out_norm = out.norm(dim=1).double().clamp_min(1e-12)  # [rows]
            if self.max_age > 0:
                self._reuse_errors(index, t, delta, out, out_norm)
            for p, (precision, copy) in enumerate(self.quantized[index].items()):
                q_out = flat_rows(tensors_in(copy(*args, **kwargs)), rows)
                self.q_sum[index, t, p] += float(((q_out - out).norm(dim=1).double() / out_norm).sum())
            if self.quantized[index]:
                self.q_count[index, t] += rows
            if t + 1 in self.probe_at:
                self.probe_cache[(t + 1, index)] = self._probe_cache(io, args, kwargs, output)

        return fn

    def _probe_cache(self, io: BlockIO, args: tuple, kwargs: dict, output: Any) -> list:
        """The probe rows' cache: per stream (is_residual, delta or output), or the output's tensors
        for an output-only block."""
        rows = self.probe_rows
        if not io.residual_ok:
            return [x[rows].clone() for x in tensors_in(output)]
        return [(residual, None if t is None else t[rows].clone()) for residual, t in io.caches(args, kwargs, output)]

    def _reuse_errors(self, b: int, t: int, delta: torch.Tensor, out: torch.Tensor, out_norm: torch.Tensor) -> None:
        rows = delta.shape[0]
        if self.deltas[b] is None or self.deltas[b].shape[1:] != delta.shape:
            self.deltas[b] = torch.zeros((self.max_age, *delta.shape))
            self.outputs[b] = torch.zeros((self.max_age, *delta.shape))
            self.gram[b] = torch.zeros(self.max_age, self.max_age, rows, dtype=torch.float64)
            self.ring_steps[b][:] = -1
        ring_d, ring_o, gram, ring_steps = self.deltas[b], self.outputs[b], self.gram[b], self.ring_steps[b]
        d64 = delta.double()
        inner = torch.einsum("arf,rf->ar", ring_d.double(), d64)  # [A, rows]: <d_i, d_t>
        self_sq = (d64 * d64).sum(dim=1)  # [rows]
        view = RingView(steps=ring_steps.tolist(), gram=gram, inner=inner, self_sq=self_sq, outputs=ring_o,
                        out=out, out_norm=out_norm)
        for name, mode in self.modes.items():
            for k, s, err in mode.measure(view, t, self.gap):  # err [n, rows]
                s = np.asarray(s)
                self.err_sum[name][b, k, s, t] += err.sum(dim=1).numpy()
                self.err_count[name][b, k, s, t] += rows
        slot = t % self.max_age
        gram[slot, :, :] = inner
        gram[:, slot, :] = inner
        gram[slot, slot, :] = self_sq
        ring_d[slot] = delta
        ring_o[slot] = out
        ring_steps[slot] = t


def measure_latency(adapter: ModelAdapter, captured: list[tuple[tuple, dict]], quantized: list[dict], repeats: int = 30) -> dict:
    """Median seconds of one call of each block at each option on this device, on captured inputs
    (synchronising an accelerator around each call: schedc.timing).

    "reuse" is the residual reuse itself (an add), so a cost model can charge it honestly.
    """
    table: dict[str, list[float]] = {"native": [], "reuse": [], **{p: [] for p in (quantized[0] if quantized else {})}}
    with torch.inference_mode():
        for b, (block, (args, kwargs), copies) in enumerate(zip(adapter.blocks(), captured, quantized)):
            io = BlockIO(block.forward, adapter.outputs_of(b))
            out = block(*args, **kwargs)
            if io.residual_ok:
                pairs = [(x, d) for x, (residual, d) in zip(io.stream_inputs(args, kwargs), io.caches(args, kwargs, out))
                         if residual]
                reuse = lambda pairs=pairs: [x + d for x, d in pairs]  # noqa: E731
            else:
                reuse = lambda: out  # noqa: E731  (replaying an output costs nothing)
            runs = {"native": lambda: block(*args, **kwargs), "reuse": reuse,
                    **{p: (lambda c=c: c(*args, **kwargs)) for p, c in copies.items()}}
            device = device_of(block)
            for name, run in runs.items():
                table[name].append(float(np.median([timed(run, device) for _ in range(repeats)])))
    return table


def profile_model(
    adapter: ModelAdapter, sampler: SamplerConfig, config: ProfileConfig = ProfileConfig(), progress: bool = True,
    reduce: "Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None" = None, resume: "Path | None" = None,
) -> Profile | None:
    """Measure reuse errors, quantization errors, propagation gains and FLOPs (and latency if asked).

    Two-call CFG computes exactly the rows batched CFG computes, so it is measured batched (one call
    per step keeps the per-step bookkeeping simple); the profile still records the two-call sampler.

    Distributed (config.rank = (r, w), `reduce` summing arrays across the w processes): each process runs
    its share of the batches, the sums and counts are reduced, and rank 0 returns the Profile (the
    others None).

    resume: a folder keeping each finished batch's sums (schedc.profile_resume); batches found there are
    read back instead of profiled again.
    """
    recorded_sampler = sampler
    if sampler.cfg == "two-call":
        sampler = replace(sampler, cfg="batched")
    steps = sampler.steps
    num_blocks = len(adapter.block_names)
    seeds = config.seeds()
    batches = [seeds[i : i + config.batch_size] for i in range(0, len(seeds), config.batch_size)]
    rank, world = config.rank
    lead = rank == 0
    probe_at = probe_steps(steps, config.probe_steps)
    probe_k = min(config.probe_samples, len(batches[0]))
    probe_rows = cfg_rows(range(probe_k), len(batches[0]), sampler.cfg)
    total = len(batches[rank::world]) * steps + (sum(steps - t for t in probe_at) if lead else 0)
    bar = tqdm(total=total, desc=f"profile {adapter.name}" + (f" rank {rank}/{world}" if world > 1 else ""), unit="step",
               disable=not progress, leave=False, position=rank if world > 1 else None)
    quantized = [{p: quantize_block(block, p) for p in config.precisions} for block in adapter.blocks()]
    io = [BlockIO(block.forward, adapter.outputs_of(b)) for b, block in enumerate(adapter.blocks())]

    sums: dict[str, np.ndarray] = {}
    err_sum: dict[str, np.ndarray] = {}  # mode -> [B, K, T, T]
    err_count: dict[str, np.ndarray] = {}
    probe_final = np.zeros((num_blocks, steps))
    probe_local = np.zeros((num_blocks, steps))
    probe_count = np.zeros((num_blocks, steps), dtype=np.int64)
    captured: list[tuple[tuple, dict]] = [((), {})] * num_blocks  # one mid-trajectory call per block
    cache_bytes = [0] * num_blocks  # the first batch's (rank 0's)
    store = None if resume is None else BatchStore(resume, {
        "fingerprint": adapter.fingerprint(), "sampler": sampler.to_dict(), "seeds": seeds, "source": adapter.source,
        "config": {k: v for k, v in asdict(config).items() if k not in ("shard", "rank")}})
    started = time.perf_counter()

    def add(arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            kind, _, mode = name.partition(".")
            table = {"err_sum": err_sum, "err_count": err_count}.get(kind, sums)
            key = mode or name
            table[key] = table[key] + value if key in table else value

    for batch_index, batch_seeds in enumerate(batches):
        if batch_index % world != rank:
            continue
        kept = store.load(batch_index) if store is not None and batch_index > 0 else None
        if kept is not None:
            add(kept)
            bar.update(steps)
            continue
        inputs = adapter.make_inputs(batch_seeds)
        first = batch_index == 0
        recorder = _ReuseErrorRecorder(num_blocks, steps, config.max_age, config.forecast_gap,
                                       set(probe_at) if first else set(), probe_rows, quantized, io)
        latents: dict[int, torch.Tensor] = {}

        def on_step(index: int, x: torch.Tensor) -> None:
            recorder.step = index
            if first and index in probe_at:
                latents[index] = x[:probe_k].clone()
            bar.update(1)

        def capture(b: int):
            def fn(module, args, kwargs, output):
                if first and recorder.step == steps // 2:
                    captured[b] = (tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args), dict(kwargs))
            return fn

        handles = [add_hook(blk, OutputHook(recorder.hook(b)), "schedc.record") for b, blk in enumerate(adapter.blocks())]
        handles += [add_hook(blk, OutputHook(capture(b)), "schedc.capture") for b, blk in enumerate(adapter.blocks())]
        try:
            final = adapter.generate(inputs, sampler, on_step=on_step)
        finally:
            for h in handles:
                h.remove()
        check_reference(adapter, final, inputs)  # errors relative to a diverged trajectory mean nothing
        batch = {"quant_err_sum": recorder.q_sum, "quant_count": recorder.q_count,
                 **{f"err_sum.{m}": recorder.err_sum[m] for m in recorder.modes},
                 **{f"err_count.{m}": recorder.err_count[m] for m in recorder.modes}}
        add(batch)
        if store is not None and batch_index > 0:
            store.save(batch_index, batch)
        if first:
            cache_bytes = list(recorder.cache_bytes)
            probe_inputs = inputs.subset(slice(0, probe_k))
            for t in probe_at:
                fin, loc = probe_gain(adapter, sampler, probe_inputs, latents, final[:probe_k], recorder, t)
                probe_final[:, t] += fin
                probe_local[:, t] += loc
                probe_count[:, t] += probe_k
                bar.update(steps - t)
    bar.close()
    for b, block_io in enumerate(io):
        if not block_io.residual_ok:  # output-only blocks: no mode that rebuilds a residual exists
            for mode in err_count:
                if REUSE_MODES[mode].reads == "residual":
                    err_count[mode][b] = 0

    arrays = {"probe_final_sum": probe_final, "probe_local_sum": probe_local, "probe_count": probe_count,
              **sums, **{f"err_sum.{m}": a for m, a in err_sum.items()}, **{f"err_count.{m}": a for m, a in err_count.items()}}
    if reduce is not None:
        arrays = reduce(arrays)
        if not lead:
            return None
        probe_final, probe_local, probe_count = (arrays.pop(k) for k in ("probe_final_sum", "probe_local_sum", "probe_count"))
        err_sum = {k.split(".", 1)[1]: arrays.pop(k) for k in list(arrays) if k.startswith("err_sum.")}
        err_count = {k.split(".", 1)[1]: arrays.pop(k) for k in list(arrays) if k.startswith("err_count.")}
        sums = arrays
    block_flops, nonblock_flops = adapter.flops()
    share, generation = (measure_generation(adapter, recorded_sampler, seeds[:config.batch_size])
                         if config.measure_latency else (None, None))
    meta = ProfileMeta(
        model=adapter.name,
        model_source=adapter.source or {"path": adapter.name},
        fingerprint=adapter.fingerprint(),
        blocks=tuple(adapter.block_names),
        timestep_arg=adapter.timestep_arg,
        steps=steps,
        timesteps=tuple(round(float(t), 6) for t in adapter.model_timesteps(sampler)),
        block_outputs=tuple(None if o is None else tuple(o) for o in adapter.block_outputs),
        sampler=recorded_sampler.to_dict(),
        calibration_seeds=tuple(seeds),
        max_age=min(config.max_age, steps - 1),
        forecast_gap=recorder.gap,
        cache_bytes=tuple(cache_bytes),  # one cache per block at the first batch's size (batch_size x CFG rows)
        precisions=tuple(config.precisions),
        kernels={p: sorted(block_kernels(quantized[0][p])) for p in config.precisions},
        probe_steps=tuple(probe_at),
        probe_samples=probe_k,
        nonblock_flops=nonblock_flops,
        profile_seconds=round(time.perf_counter() - started, 2),
        versions={"schedc": __version__, "torch": torch.__version__, "python": platform.python_version()},
        config=asdict(replace(config, rank=(0, 1))),  # the whole run's options, whichever rank wrote it
        latency=measure_latency(adapter, captured, quantized) if config.measure_latency else None,
        device=(platform.processor() or platform.machine()) if config.measure_latency else None,
        nonblock_share=None if share is None else round(share, 4),
        generation_seconds=None if generation is None else float(f"{generation:.4g}"),
    )
    return Profile(
        probe_final_sum=probe_final,
        probe_local_sum=probe_local,
        probe_count=probe_count,
        block_flops=np.asarray(block_flops, dtype=np.float64),
        meta=meta,
        reuse_err_sum=err_sum,
        reuse_count=err_count,
        **sums,
    )
