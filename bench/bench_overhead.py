"""Runtime hook overhead: the reference model with an all-compute schedule vs the bare model.

    python bench/bench_overhead.py [--rounds 30]

Times single denoiser calls (one sampling step: batch 16 with batched CFG = 32 rows) interleaved
bare/hooked, median over rounds, and whole 50-step generations the same way. The target is <= 2%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.models.reference import ReferenceAdapter  # noqa: E402
from schedc.schedule import decisions_from_compute  # noqa: E402
from schedc_runtime import ModelInfo, Schedule, apply_schedule  # noqa: E402


def all_compute_schedule(adapter: ReferenceAdapter) -> Schedule:
    sampler = adapter.default_sampler
    compute = np.ones((sampler.steps, len(adapter.block_names)), dtype=bool)
    info = ModelInfo(name=adapter.name, fingerprint=adapter.fingerprint(), blocks=adapter.block_names,
                     steps=sampler.steps, timesteps=tuple(sampler.timesteps()), cfg=sampler.cfg)
    return Schedule(model=info, decisions=decisions_from_compute(compute), sampling=sampler.to_dict())


def interleaved(fn_bare, fn_hooked, rounds: int) -> tuple[float, float]:
    bare, hooked = [], []
    for r in range(rounds):
        for name, fn, sink in (("bare", fn_bare, bare), ("hooked", fn_hooked, hooked))[:: 1 if r % 2 else -1]:
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return statistics.median(bare), statistics.median(hooked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    adapter = ReferenceAdapter()
    schedule = all_compute_schedule(adapter)
    inputs = adapter.make_inputs(range(1_000_000, 1_000_016))
    x = torch.cat([inputs.noise, inputs.noise])  # [32, 1, 8, 8]
    y = torch.cat([inputs.labels, torch.full_like(inputs.labels, 10)])
    t = torch.full((32,), 999, dtype=torch.long)

    def call() -> None:
        with torch.inference_mode():
            adapter.model(x, t, y)

    for _ in range(5):  # warm-up
        call()
    # per step: time a call without hooks, attach the schedule, time the same call, detach
    bare_times, hooked_times = [], []
    for r in range(args.rounds):
        start = time.perf_counter(); call(); bare_times.append(time.perf_counter() - start)
        h = apply_schedule(adapter.model, schedule)
        start = time.perf_counter(); call(); hooked_times.append(time.perf_counter() - start)
        h.remove()
    bare_step, hooked_step = statistics.median(bare_times), statistics.median(hooked_times)
    print(f"one denoiser call (32 rows): bare {bare_step * 1e3:.2f} ms, hooked {hooked_step * 1e3:.2f} ms, "
          f"overhead {100 * (hooked_step / bare_step - 1):+.2f}%")

    gen_rounds = max(3, args.rounds // 5)

    def gen_bare() -> None:
        adapter.generate(inputs, adapter.default_sampler)

    def gen_hooked() -> None:
        with apply_schedule(adapter.model, schedule):
            adapter.generate(inputs, adapter.default_sampler)

    bare_gen, hooked_gen = interleaved(gen_bare, gen_hooked, gen_rounds)
    print(f"50-step generation (16 samples): bare {bare_gen:.3f} s, hooked {hooked_gen:.3f} s, "
          f"overhead {100 * (hooked_gen / bare_gen - 1):+.2f}%")


if __name__ == "__main__":
    main()
