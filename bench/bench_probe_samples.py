"""Do the step DPs' schedules move between calibrations because the propagation gains are probed on 4 samples?

    python bench/bench_probe_samples.py --models digits-dit,reference-dit --work /tmp/schedc-transfer
    python bench/bench_probe_samples.py --summary-only

The forecast and residual step DPs (schedc.solvers.families) build different schedules from the transfer bench's
three calibrations of the same model (first half of the classes, second half, second half with other seeds), and
those schedules lie up to ~2 dB apart held out. Their error tables are stable (a 32-sample profile gives the same
schedules as a 16-sample one, bench/results/transfer-search32), but the gains are probed on the first batch's first
4 samples (`ProfileConfig.probe_samples`). Here each calibration is profiled again with --probe samples, both step
DPs' schedules are built at each budget from every profile, and each is measured on held-out seeds of the second
half: the spread over the three calibrations, with 4 and with --probe probe samples. The 4-sample profiles are the
transfer bench's (under --work); the others are cached there too. Native computes only, as the transfer bench.
"""

from __future__ import annotations

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import run_per_model, transfer_profiles_parser  # noqa: E402
from bench_transfer import CALIB_BATCH, EVAL_SEED_START, Transfer, calibrations  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.rollout import RolloutScorer  # noqa: E402
from schedc.solvers.families import family_candidates  # noqa: E402

NATIVE_ONLY = {"residual", "output", "forecast"}
STEP_DPS = ("step-dp/forecast", "step-dp-forecast/forecast")
ROLES = ("a", "b", "reseed")  # bench_transfer.calibrations' roles, the summary's columns


def run_model(spec, args) -> dict | None:
    bench = Transfer(spec, args, lambda m: print(m, flush=True))
    found = calibrations(bench.adapter)
    if found is None:
        return None
    halves, by_role = found
    second = by_role["b"][1]
    held = None
    psnr: dict = {}  # "name b=0.2" -> "probe4-a" -> dB
    for probe in (4, args.probe):
        for key, (label, adapter) in by_role.items():
            if probe == 4:
                profile = bench.profile(label, adapter, bench.sampler)
            else:
                path = bench.work / f"{label}-{bench.sampler.steps}steps-probe{probe}.npz"
                if path.exists():
                    profile = Profile.load(path)
                else:
                    bench.log(f"profiling {label} with {probe} probe samples")
                    profile = profile_model(adapter, bench.sampler, ProfileConfig(
                        calib_samples=args.calib, batch_size=CALIB_BATCH, measure_latency=False, probe_samples=probe),
                        progress=False)
                    profile.save(path)
            held = held or RolloutScorer(second, profile, list(range(EVAL_SEED_START, EVAL_SEED_START + args.samples)))
            problem = problem_from_profile(profile, NATIVE_ONLY)
            for budget in args.budgets:
                for cand in family_candidates(problem, budget, 1):
                    if cand.name in STEP_DPS:
                        psnr.setdefault(f"{cand.name} b={budget:g}", {})[f"probe{probe}-{key}"] = round(held(cand.decisions).psnr, 3)
    rows = []
    for name, by in psnr.items():
        spread = {p: round(max(v for k, v in by.items() if k.startswith(f"probe{p}-"))
                           - min(v for k, v in by.items() if k.startswith(f"probe{p}-")), 3) for p in (4, args.probe)}
        rows.append({"schedule": name, "psnr": by, "spread": spread})
        print(f"{spec.name} {name}: spread over calibrations {spread[4]:.2f} dB (4 probe samples), "
              f"{spread[args.probe]:.2f} dB ({args.probe})", flush=True)
    return {"settings": bench.halves_settings(halves, probe=[4, args.probe]), "rows": rows}


def summary_markdown(results: list[dict]) -> str:
    # rendered from the result JSONs (bench_io.write_summary), so the spread's keys are strings
    lines = ["# Probe samples and the step DPs' spread over calibrations", "",
             "Held-out PSNR (dB; second half of the classes) of each step DP's schedule built from three calibrations "
             "(a: first half of the classes, b: second half, reseed: second half, other seeds), gains probed on 4 samples "
             "(the default) and on more.", "",
             "| model | schedule | probe samples | a | b | reseed | spread |", "|---|---|---|---|---|---|---|"]
    for res in results:
        for row in res["rows"]:
            for p in res["settings"]["probe"]:
                cells = " | ".join(f"{row['psnr'].get(f'probe{p}-{k}', float('nan')):.2f}" for k in ROLES)
                lines.append(f"| {res['settings']['model']} | {row['schedule']} | {p} | {cells} | {row['spread'][str(p)]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = transfer_profiles_parser(__doc__, "probe-samples")
    parser.add_argument("--probe", type=int, default=16, help="probe samples to compare with the default 4 (default 16)")
    args = parser.parse_args()
    return run_per_model(args, lambda spec: run_model(spec, args), summary_markdown)


if __name__ == "__main__":
    sys.exit(main())
