"""How far the search's predicted PSNR can be trusted: the same schedule on several disjoint held-out seed sets.

    python bench/bench_prediction.py [--models digits-dit,reference-dit] [--budgets 0.2,0.4] [--sets 4] [--samples 64]

bench_zoo checks the prediction against one held-out set of 64 seeds and asks for ±1 dB. Both numbers are
means over 64 samples whose PSNRs spread by several dB, so part of any gap is which seeds were drawn. Per model
(profiled at the sampler it names, calibration seeds 0-31) and budget (`schedc solve`'s defaults: the
confirmed search with fewer-step settings, 60 s, seed 0), this runs the schedule on --sets disjoint held-out sets of --samples seeds (1000000.., then the next
--samples, ...) and reports: the prediction with its standard error (search stats `predicted_psnr_se`), each
set's PSNR with its own, how many sets land within ±1 dB of the prediction, the gap in standard errors of the
difference, and how far the held-out sets themselves spread. Stages are cached under --work/<model>/.

Writes <out>/prediction.{json,md} (default out: bench/results/prediction).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_io import read_json, write_json  # noqa: E402
from zoo_models import model_spec  # noqa: E402
from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, generate_with  # noqa: E402
from schedc.metrics import difference_se, quality, within_noise  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.search import PREDICT_SAMPLES, SELECT_SAMPLES  # noqa: E402
from schedc.schedule import read_schedule, save_schedule  # noqa: E402

CALIB = 32
BATCH = 32


def profile_for(spec, adapter, work: Path, log) -> Path:
    from schedc.profiler import ProfileConfig, profile_model

    path = work / "profile.npz"
    sampler = spec.sampler(adapter)
    if path.exists():
        meta = Profile.load(path).meta
        if meta.fingerprint == adapter.fingerprint() and meta.sampler == sampler.to_dict():
            return path
    log(f"profiling ({CALIB} calibration samples, {sampler.to_dict()})")
    profile_model(adapter, sampler, ProfileConfig(calib_samples=CALIB), progress=False).save(path)
    return path


def schedule_for(adapter, profile_path: Path, budget: float, work: Path, log):
    from schedc.compile import compile_solution
    from schedc.solvers import Constraints, SolveContext

    path = work / f"search-b{budget:.2f}.yaml"
    if path.exists():
        schedule = read_schedule(path)
        stats = schedule.provenance.get("stats", {})
        if stats.get("predicted_psnr_se") is not None and stats.get("predict_seeds") == PREDICT_SAMPLES:
            return schedule
    started = time.perf_counter()
    compiled = compile_solution(profile_path, budget, solver="search", constraints=Constraints(time_limit=60.0),
                                context=SolveContext(adapter=adapter, progress=False, vary_steps=True))  # as `schedc solve`
    save_schedule(compiled.schedule, path)
    log(f"solved b={budget:.2f} in {time.perf_counter() - started:.0f} s")
    return read_schedule(path)


def measure(spec, args, log) -> list[dict]:
    work = Path(args.work) / spec.name
    work.mkdir(parents=True, exist_ok=True)
    adapter = spec.load()
    profile_path = profile_for(spec, adapter, work, log)
    sampler = spec.sampler(adapter)  # what profile_for profiled at, or found the cached profile recorded
    schedules = {b: schedule_for(adapter, profile_path, b, work, log) for b in args.budgets}
    sets = []
    for k in range(args.sets):
        start = EVAL_SEED_START + k * args.samples
        inputs = adapter.make_inputs(range(start, start + args.samples))
        full, _ = generate_with(adapter, None, inputs, BATCH, sampler)
        sets.append((start, {b: quality(generate_with(adapter, s, inputs, BATCH, sampler)[0], full)
                             for b, s in schedules.items()}))
        log(f"held-out set {k + 1}/{args.sets} (seeds {start}..{start + args.samples - 1})")
    rows = []
    for budget, schedule in schedules.items():
        stats = schedule.provenance["stats"]
        pred, pred_se = stats["predicted_psnr"], stats["predicted_psnr_se"]
        held = [{"seeds": f"{start}-{start + args.samples - 1}", "psnr": q[budget]["psnr"], "psnr_se": q[budget]["psnr_se"],
                 "gap": pred - q[budget]["psnr"],
                 "gap_in_se": (pred - q[budget]["psnr"]) / difference_se(pred_se, q[budget]["psnr_se"])}
                for start, q in sets]
        means = [h["psnr"] for h in held]
        rows.append({"model": spec.name, "budget": budget, "steps": schedule.num_steps, "predicted_psnr": pred,
                     "predicted_psnr_se": pred_se, "prediction_seeds": stats.get("prediction_seeds"), "held_out": held,
                     "within_1db": sum(abs(h["gap"]) <= 1.0 for h in held),
                     "within_2se": sum(within_noise(h["gap_in_se"], 1.0) for h in held),
                     "held_out_spread": max(means) - min(means)})
    return rows


def write_report(rows: list[dict], args, out: Path) -> None:
    lines = ["# The search's predicted PSNR vs several disjoint held-out seed sets", "",
             f"`python bench/bench_prediction.py --models {','.join(args.models)} --budgets "
             f"{','.join(f'{b:g}' for b in args.budgets)} --sets {args.sets} --samples {args.samples}`", "",
             f"Calibration seeds 0-{CALIB - 1} (profile; the search scores on its first 16, confirms on the {SELECT_SAMPLES} after the "
             f"profile's and predicts on the {PREDICT_SAMPLES} after those); held-out sets of {args.samples} seeds from {EVAL_SEED_START}; "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads. PSNR ± one standard error (per-sample spread / "
             "sqrt(N)); gap = predicted - held-out; 'within 2 SE': |gap| <= 2 standard errors of the difference.", "",
             "| model | budget | steps | predicted dB | held-out sets dB | within ±1 dB | within 2 SE | held-out sets spread dB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sets = ", ".join(f"{h['psnr']:.2f} ± {h['psnr_se']:.2f}" for h in r["held_out"])
        lines.append(f"| {r['model']} | {r['budget']:.2f} | {r['steps']} | {r['predicted_psnr']:.2f} ± {r['predicted_psnr_se']:.2f} "
                     f"| {sets} | {r['within_1db']}/{len(r['held_out'])} | {r['within_2se']}/{len(r['held_out'])} "
                     f"| {r['held_out_spread']:.2f} |")
    total = sum(len(r["held_out"]) for r in rows)
    lines += ["", f"Within ±1 dB: {sum(r['within_1db'] for r in rows)}/{total}; within two standard errors: "
              f"{sum(r['within_2se'] for r in rows)}/{total}."]
    atomic_write_text(out / "prediction.md", "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="digits-dit,reference-dit", help="comma-separated, as bench_zoo takes them")
    parser.add_argument("--budgets", default="0.2,0.4")
    parser.add_argument("--sets", type=int, default=4, help="disjoint held-out seed sets")
    parser.add_argument("--samples", type=int, default=64, help="seeds per held-out set (bench_zoo: 64)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/schedc-prediction")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "prediction"))
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    args.budgets = [float(b) for b in args.budgets.split(",") if b]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cached = read_json(out / "prediction.json") or {}
    rows = [r for r in cached.get("rows", []) if r["model"] not in args.models]
    started = time.perf_counter()
    for name in args.models:
        spec = model_spec(name, ROOT / "zoo")

        def log(message: str, model: str = spec.name) -> None:
            print(f"[{time.perf_counter() - started:6.0f}s] {model}: {message}", flush=True)

        rows += measure(spec, args, log)
        write_json(out / "prediction.json", {"rows": rows})
        write_report(rows, args, out)
    print((out / "prediction.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
