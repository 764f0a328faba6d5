"""Where the latency cost model's time and the measured time part (README section 9: unet-sd's one lost row).

    python bench/bench_step_times.py --models zoo/unet-sd --budget 0.5
    python bench/bench_step_times.py --summary-only

The cost model prices a schedule as the sum of its calls' parts: each computed block at the time the profiler
measured for it (that block called again and again on one captured input), each reuse at its add, and the
non-block share of every step. For each model, at the sampler recorded in its zoo.json, this measures:

1. per block: that isolated time vs the block's median time inside a full-compute generation (timers around
   each block call), and inside the compute steps of uniform refresh at --budget (all blocks computed on
   every other step or so, all reused between);
2. per denoiser call that computes every block: the median time in a plain run, in uniform's compute steps and
   in a plain run at the fewer-steps count whose ideal time matches --budget;
3. head to head (bench_ecosystem.race, --rounds rounds, order alternating, --races times one after another):
   that fewer-steps run against uniform at --budget, next to the time ratio the cost model predicts for the two.

Profiles (16 calibration samples, latency measured) are cached under --work. Writes <out>/<model>.json and
<out>/summary.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import model_bench_parser, run_per_model  # noqa: E402
from bench_ecosystem import full_variant, race, schedule_variant, timed_generation  # noqa: E402
from schedc.compile import compile_schedule  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, baseline_schedule  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.step_settings import time_fraction  # noqa: E402

CALIB = 16  # only the latency table and the non-block share are read here


class CallClock:
    """Timers around every call of the model and of each block (CPU: calls are synchronous; an accelerator
    would need a synchronise around each, which is what the profiler's isolated timing does)."""

    def __init__(self, model: torch.nn.Module, blocks: list[torch.nn.Module]) -> None:
        self.label: str | None = None
        self.calls: dict = defaultdict(list)  # label -> [seconds per model call]
        self.blocks: dict = defaultdict(lambda: [[] for _ in blocks])  # label -> [B][seconds per block call]
        started: dict = {}

        def pre(key):
            return lambda *_: started.__setitem__(key, time.perf_counter())

        def post(key, sink):
            def record(*_):
                if self.label is not None:
                    sink(self.label).append(time.perf_counter() - started[key])
            return record

        self.handles = [model.register_forward_pre_hook(pre("model")),
                        model.register_forward_hook(post("model", lambda label: self.calls[label]))]
        for b, block in enumerate(blocks):
            self.handles += [block.register_forward_pre_hook(pre(b)),
                             block.register_forward_hook(post(b, lambda label, b=b: self.blocks[label][b]))]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def heavy_median(seconds: list[float], floor: float) -> float:
    """Median of the calls that did real work (a reused block or an all-reuse step returns in microseconds)."""
    kept = [s for s in seconds if s > floor]
    return statistics.median(kept) if kept else float("nan")


def measure(spec, args, log) -> dict:
    adapter = spec.load()
    sampler = spec.sampler(adapter)
    work = Path(args.work) / spec.name
    work.mkdir(parents=True, exist_ok=True)
    path = work / "profile.npz"
    profile = Profile.load(path) if path.exists() else None
    if profile is None or profile.meta.sampler != sampler.to_dict():
        log(f"{spec.name}: profiling ({CALIB} samples, latency measured)")
        profile = profile_model(adapter, sampler, ProfileConfig(calib_samples=CALIB), progress=False)
        profile.save(path)
    meta = profile.meta
    base = compile_schedule(profile, args.budget, "dp")
    share = float(meta.nonblock_share)
    uniform = baseline_schedule("uniform", base, args.budget, share, adapter)
    fewer = baseline_schedule("fewer-steps", base, args.budget, share, adapter)
    inputs = adapter.make_inputs(list(range(EVAL_SEED_START, EVAL_SEED_START + args.timing_batch)))
    fewer_name = f"plain {fewer.num_steps} steps"
    variants = {"plain": full_variant(), "uniform": schedule_variant(adapter, uniform, "uniform", f"b={args.budget:g}"),
                fewer_name: schedule_variant(adapter, fewer, "fewer-steps", f"b={args.budget:g}")}
    clock = CallClock(adapter.model, adapter.blocks())
    try:
        for r in range(args.rounds + 1):  # round 0 warms up
            for name, variant in (list(variants.items()) if r % 2 else list(variants.items())[::-1]):
                clock.label = name if r else None
                timed_generation(adapter, variant, inputs, sampler)
        clock.label = None
        ratios = [race(adapter, variants[fewer_name], variants["uniform"], inputs, sampler, args.rounds)
                  for _ in range(args.races)]
    finally:
        clock.remove()
    isolated = np.asarray(meta.latency["native"], dtype=np.float64)
    full_call = heavy_median(clock.calls["plain"], 0.0)
    floor = 0.25 * float(np.min(isolated))  # below this a block call replayed its cache
    blocks = [{"block": name, "isolated_ms": 1e3 * isolated[b],
               **{f"{label}_ms": 1e3 * heavy_median(clock.blocks[label][b], floor) for label in ("plain", "uniform")}}
              for b, name in enumerate(meta.blocks)]
    uniform_cost = float(uniform.compute_fraction())
    return {"model": spec.name, "sampler": sampler.to_dict(), "budget": args.budget, "nonblock_share": share,
            "rounds": args.rounds, "timing_batch": args.timing_batch, "threads": torch.get_num_threads(),
            "blocks": blocks,
            "calls_ms": {label: 1e3 * heavy_median(clock.calls[label], 0.5 * full_call) for label in variants},
            "uniform_cost": uniform_cost, "fewer_steps": fewer.num_steps,
            "predicted_fewer_over_uniform": time_fraction(meta.steps, meta.steps, uniform_cost, share)
            / time_fraction(fewer.num_steps, meta.steps, 1.0, share),
            "raced_fewer_over_uniform": ratios}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# Where the cost model's time and the measured time part", "",
             "Isolated: the profiler's time of a block (one captured input, called repeatedly). In a plain run / in "
             "uniform: the median of that block's calls that computed, timed inside a generation. Race: uniform's "
             "time / the fewer-steps run's, head to head (>= 1: fewer steps at least as fast); predicted: the same "
             "ratio from the cost model (non-block share per step + measured block time at the schedule's cost).", ""]
    for r in results:
        lines += [f"## {r['model']} ({r['sampler']['steps']} steps {r['sampler']['scheduler']}, budget {r['budget']:g}, "
                  f"{r['timing_batch']} samples, {r['rounds']} rounds, {r['threads']} threads)", "",
                  "| block | isolated ms | in a plain run ms | in uniform's compute steps ms | plain / isolated |",
                  "|---|---|---|---|---|"]
        for b in r["blocks"]:
            lines.append(f"| {b['block']} | {b['isolated_ms']:.2f} | {b['plain_ms']:.2f} | {b['uniform_ms']:.2f} | "
                         f"{b['plain_ms'] / b['isolated_ms']:.2f} |")
        calls = ", ".join(f"{k} {v:.1f} ms" for k, v in r["calls_ms"].items())
        lines += ["", f"A call that computes every block: {calls}. Non-block share {r['nonblock_share']:.3f}.", "",
                  f"{r['fewer_steps']} plain steps vs uniform (block cost {r['uniform_cost']:.3f}): predicted "
                  f"{r['predicted_fewer_over_uniform']:.3f}, raced {_races(r['raced_fewer_over_uniform'])}.", ""]
    return "\n".join(lines) + "\n"


def _races(ratios) -> str:
    ratios = ratios if isinstance(ratios, list) else [ratios]
    return " / ".join(f"{x:.3f}" for x in ratios) + (" (races one after another)" if len(ratios) > 1 else "")


def main() -> int:
    parser = model_bench_parser(__doc__, "/tmp/schedc-steptimes", "step-times")
    parser.add_argument("--budget", type=float, default=0.5, help="uniform's and the fewer-steps run's budget (default 0.5)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of each variant, and of the race (default 7)")
    parser.add_argument("--races", type=int, default=3, help="races of fewer steps vs uniform, one after another (default 3)")
    parser.add_argument("--timing-batch", type=int, default=16, help="samples per timed generation (default 16)")
    args = parser.parse_args()
    return run_per_model(args, lambda spec: measure(spec, args, lambda m: print(m, flush=True)), summary_markdown,
                         "blocks")


if __name__ == "__main__":
    sys.exit(main())
