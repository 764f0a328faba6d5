"""How much calibration is enough (issue #12, deliverable 4).

    python bench/bench_calibration.py                              # zoo + bundled models, n = 4 .. 64
    python bench/bench_calibration.py --models digits-dit --sizes 4,16 --budgets 0.4
    python bench/bench_calibration.py --summary-only

For each model and calibration size n: profile on seeds 0..n-1 (FLOP cost model, the model's sampler),
then compile at each budget with
- the DP (reads only the profile's tables: the profile's own sampling error), and
- the closed-loop search, schedc's default, rolling out on the same n calibration seeds (at most 64),
and measure each on held-out seeds 1000000.. (--samples) against full compute. Reported: held-out PSNR,
the search's predicted PSNR minus the measured one (its prediction is measured on 64 fresh calibration-side
seeds after the n), and the DP's predicted / measured relative L2. The step count is fixed (--steps N is
the profiled count) so only the calibration size varies. Stages are cached under --work; writes
<out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import model_bench_parser, model_specs, numbers  # noqa: E402
from bench_io import read_json, write_json, write_summary  # noqa: E402
from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.compile import compile_solution  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, generate_with  # noqa: E402
from schedc.metrics import psnr, rel_l2  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.solvers import Constraints, SolveContext  # noqa: E402

SOLVERS = ("dp", "search")


class Curve:
    def __init__(self, spec, args, log) -> None:
        self.spec, self.args, self._log = spec, args, log
        self.work = Path(args.work) / spec.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.adapter = spec.load()
        self.sampler = spec.sampler(self.adapter)
        self.inputs = self.adapter.make_inputs(list(range(EVAL_SEED_START, EVAL_SEED_START + args.samples)))
        self.full = self.generate(None)

    def log(self, message: str) -> None:
        self._log(f"[{time.perf_counter() - self.started:7.1f}s] {self.spec.name}: {message}")

    def generate(self, schedule, batch: int = 32) -> torch.Tensor:
        """The held-out samples, at the schedule's own step count (a search that chose fewer steps runs them)."""
        samples, _ = generate_with(self.adapter, schedule, self.inputs, batch, self.sampler)
        return samples.float().clamp(-1, 1)

    def profile(self, n: int) -> Profile:
        path = self.work / f"calib{n}.npz"
        if path.exists():
            profile = Profile.load(path)
            if profile.meta.sampler == self.sampler.to_dict() and len(profile.meta.calibration_seeds) == n:
                return profile
        self.log(f"profiling on {n} calibration samples")
        config = ProfileConfig(calib_samples=n, batch_size=min(n, 16), measure_latency=False)
        profile = profile_model(self.adapter, self.sampler, config, progress=False)
        profile.save(path)
        return profile

    def point(self, n: int, solver: str, budget: float) -> dict:
        profile = self.profile(n)
        context = SolveContext(adapter=self.adapter, progress=False, samples=min(n, 64))
        compiled = compile_solution(profile, budget, solver, Constraints(time_limit=self.args.time_limit), context=context)
        out = self.generate(compiled.schedule)
        stats = compiled.solution.stats
        row = {"n": n, "solver": solver, "budget": budget, "psnr": float(psnr(out, self.full).mean()),
               "rel_l2": float(rel_l2(out, self.full).mean()), "predicted_rel_l2": compiled.solution.predicted_error,
               "predicted_psnr": stats.get("predicted_psnr"), "solve_seconds": stats.get("solve_seconds"),
               "stopped_by": stats.get("stopped_by")}
        self.log(f"n={n} {solver} b={budget:.2f}: {row['psnr']:.2f} dB held-out"
                 + (f", predicted {row['predicted_psnr']:.2f}" if row["predicted_psnr"] is not None else ""))
        return row

    def run(self) -> dict:
        path = self.work / "rows.json"
        cached = read_json(path) or {}
        key = {"samples": self.args.samples, "time_limit": self.args.time_limit}
        rows = cached.get("rows", []) if cached.get("key") == key else []
        done = {(r["n"], r["solver"], r["budget"]) for r in rows}
        for n in self.args.sizes:
            for budget in self.args.budgets:
                for solver in self.args.solvers:
                    if (n, solver, budget) not in done:
                        rows.append(self.point(n, solver, budget))
                        write_json(path, {"key": key, "rows": rows})
        settings = {"model": self.spec.name, "sampler": self.sampler.to_dict(), **key,
                    "eval_seeds": f"{EVAL_SEED_START}-{EVAL_SEED_START + self.args.samples - 1}",
                    "calibration_seeds": "0..n-1", "threads": torch.get_num_threads(), "torch": torch.__version__}
        wanted = [r for r in rows if r["n"] in self.args.sizes and r["budget"] in self.args.budgets
                  and r["solver"] in self.args.solvers]
        return {"settings": settings, "rows": sorted(wanted, key=lambda r: (r["solver"], r["budget"], r["n"]))}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# How much calibration is enough", "",
             "Held-out PSNR (dB, vs full compute) of the schedule compiled from n calibration samples; search: "
             "predicted - measured PSNR in brackets; dp: predicted / measured relative L2 in brackets.", ""]
    for res in results:
        s = res["settings"]
        sizes = sorted({r["n"] for r in res["rows"]})
        lines += [f"## {s['model']} ({s['sampler']['steps']} steps, {s['sampler']['scheduler']}, "
                  f"g={s['sampler']['guidance_scale']:g}; held-out seeds {s['eval_seeds']})", "",
                  "| solver | budget | " + " | ".join(f"n={n}" for n in sizes) + " |",
                  "|---|---|" + "---|" * len(sizes)]
        for solver, budget in sorted({(r["solver"], r["budget"]) for r in res["rows"]}):
            cells = {r["n"]: r for r in res["rows"] if r["solver"] == solver and r["budget"] == budget}
            lines.append(f"| {solver} | {budget:.2f} | " + " | ".join(_cell(cells.get(n)) for n in sizes) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if r["predicted_psnr"] is not None:
        return f"{r['psnr']:.2f} ({r['predicted_psnr'] - r['psnr']:+.2f})"
    return f"{r['psnr']:.2f} ({r['predicted_rel_l2'] / max(r['rel_l2'], 1e-12):.2f}x)"


def main() -> int:
    parser = model_bench_parser(__doc__, "/tmp/schedc-calibration", "calibration")
    parser.add_argument("--sizes", type=numbers(int), default=[4, 8, 16, 32, 64])
    parser.add_argument("--budgets", type=numbers(float), default=[0.4])
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        print(write_summary(out, summary_markdown))
        return 0
    args.solvers = [s for s in args.solvers.split(",") if s]
    if set(args.solvers) - set(SOLVERS) or any(n < 1 for n in args.sizes):
        parser.error(f"solvers are {', '.join(SOLVERS)} and sizes are positive")
    torch.set_num_threads(args.threads)
    log = lambda m: print(m, flush=True)  # noqa: E731
    for spec in model_specs(args):
        result = Curve(spec, args, log).run()
        atomic_write_text(out / f"{spec.name}.json", json.dumps(result, indent=1))
    print(write_summary(out, summary_markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
