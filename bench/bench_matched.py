"""Speed-matched comparison on the reference model: schedc vs each baseline at equal measured speed.

    python bench/bench_matched.py [--profile profiles/reference-dit.profile.npz] [--budgets 0.2 0.3 0.4 0.5 0.6]

Issue #4's acceptance compares at equal or higher *measured* speedup, not at equal budget (at equal
budget the dp schedule runs a few percent slower than fewer steps / uniform: runtime reuse overhead).
For every baseline (fewer steps, uniform, Δ-DiT) at every budget: solve the schedc solver (dp, cost
model auto = this CPU's latency) on budgets 0.100..0.850 in steps of 0.025, pick the highest budget
predicted to run at least as fast, verify it head to head against the baseline (full, baseline and
candidate interleaved in each round, medians of within-round ratios), move the budget down while it
is slower (and up while it is faster and a higher one is predicted to be), and compare PSNR vs full
compute on held-out seeds 1000000.. . Every row is reported, losses and failures included. See
schedc/matched.py.
Writes bench/results/matched.{md,json} and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import BASELINES, EvalConfig  # noqa: E402
from schedc.matched import BaselineSpec, MatchConfig, MatchResult, match_baselines  # noqa: E402
from schedc.models import load_model  # noqa: E402
from schedc.profile import Profile  # noqa: E402

HEADER = ("baseline", "baseline budget", "baseline steps", "baseline FLOP cost", "baseline speedup",
          "baseline PSNR dB", "schedc budget", "schedc FLOP cost", "schedc speedup", "schedc PSNR dB", "ΔPSNR dB",
          "head-to-head (baseline time / schedc time)", "verified", "attempts")


def row(r: MatchResult) -> list[str]:
    return [r.baseline, f"{r.baseline_budget:.2f}", str(r.baseline_steps), f"{r.baseline_cost:.3f}",
            f"{r.baseline_speedup:.2f}×", f"{r.baseline_quality.psnr:.2f}", f"{r.schedc_budget:.3f}",
            f"{r.schedc_cost:.3f}", f"{r.schedc_speedup:.2f}×", f"{r.schedc_quality.psnr:.2f}", f"{r.delta_psnr:+.2f}",
            f"{r.accepted.ratio:.3f}", "yes" if r.matched else "**no**", str(len(r.attempts))]


def verdict(results: list[MatchResult], budgets: tuple[float, ...] = (0.3, 0.4), margin: float = 2.0) -> str:
    """Issue #4's acceptance, checked on the rows at `budgets`."""
    rows = [r for r in results if round(r.baseline_budget, 4) in budgets]
    if not rows:
        return f"Acceptance (≥ {margin:g} dB at equal or higher measured speedup at budgets {budgets}): not measured."
    bad = [r for r in rows if not (r.matched and r.delta_psnr >= margin)]
    worst = min(rows, key=lambda r: r.delta_psnr if r.matched else float("-inf"))
    status = "**met**" if not bad else "**not met** (" + ", ".join(
        f"{r.baseline} @ {r.baseline_budget:.2f}" for r in bad) + ")"
    return (f"Acceptance (schedc ≥ {margin:g} dB above every baseline at equal or higher measured speedup, budgets "
            f"{' and '.join(f'{b:g}' for b in budgets)}): {status}; smallest margin {worst.delta_psnr:+.2f} dB "
            f"({worst.baseline} @ {worst.baseline_budget:.2f}).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="profiles/reference-dit.profile.npz", help="relative to the repository")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6],
                        help="baseline budgets (block FLOP cost)")
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--solver", default="dp")
    parser.add_argument("--cost", default="auto", choices=("auto", "flops", "latency"))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--timing-batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=11, help="head-to-head rounds per verification (median)")
    parser.add_argument("--calibration-repeats", type=int, default=5)
    parser.add_argument("--max-attempts", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "matched"))
    args = parser.parse_args()
    command = "python bench/bench_matched.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    os.chdir(ROOT)

    config = MatchConfig(solver=args.solver, cost=args.cost, calibration_repeats=args.calibration_repeats,
                         max_attempts=args.max_attempts,
                         held_out=EvalConfig(samples=args.samples, timing_batch=args.timing_batch, repeats=args.rounds))
    specs = [BaselineSpec(name, budget) for budget in args.budgets for name in args.baselines.split(",") if name]
    profile = Profile.load(args.profile)
    adapter = load_model(profile.meta.model)
    started = time.perf_counter()
    results, settings = match_baselines(adapter, profile, specs, config,
                                        log=lambda m: print(f"[{time.perf_counter() - started:6.0f}s] {m}", flush=True))
    settings.update(command=command.strip(), profile_file=args.profile, seconds=round(time.perf_counter() - started))

    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    lines += [
        "",
        verdict(results),
        "",
        f"Command: `{settings['command']}` ({settings['seconds']} s). Profile `{args.profile}` (calibration seeds "
        f"{settings['calibration_seeds']}); held-out seeds {settings['eval_seeds']} ({settings['samples']} samples) "
        f"for PSNR vs full compute; timing batch {settings['timing_batch']} samples; torch {settings['torch']}, "
        f"{settings['threads']} threads. schedc = {settings['solver']} solver, {settings['cost_model']} cost model, "
        f"all profiled decision options, budgets {settings['budget_grid'][0]:.3f}..{settings['budget_grid'][-1]:.3f} "
        "step 0.025 (its budget is a share of this CPU's measured block latency; FLOP cost = block FLOPs / full). "
        "Baselines at their budget as `schedc eval --baselines` builds them at that cost: fewer steps = the "
        "fewest DDIM steps whose ideal time is not below the budget's, uniform = round(budget × 50) evenly spaced "
        "refresh steps, Δ-DiT = its pattern at the cost nearest the budget from above.",
        "Speeds: calibration = full compute, dp at "
        + ", ".join(f"{c['budget']:.2f} (measured/ideal {c['measured_over_ideal']:.3f})"
                    for c in settings["calibration"])
        + f" and the no-block run, {settings['calibration_repeats']} interleaved rounds (non-block share "
        f"{settings['nonblock_share']:.3f}); each baseline's target: {settings['calibration_repeats']} rounds vs full; "
        f"each verification: full, baseline and candidate interleaved, {settings['head_to_head_rounds']} rounds, "
        "order rotating. Both speedups in the table are the accepted verification's medians of full time / variant "
        "time per round; head-to-head is the median of baseline time / schedc time per round. A candidate is verified "
        "when both say it is at least as fast; at most "
        f"{settings['max_attempts']} verifications per baseline (a slower candidate moves the search down, a faster "
        "one up). `verified = no` rows report the fastest candidate tried.",
    ]
    table = "\n".join(lines)
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".md"), table + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"rows": [r.to_dict() for r in results], "settings": settings}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
