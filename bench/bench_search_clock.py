"""Does `schedc solve` give the same schedule on a busy machine? (schedc.search_time.WorkClock)

    python bench/bench_search_clock.py --models reference-dit,zoo/unet-sd --budgets 0.2,0.5
    python bench/bench_search_clock.py --summary-only

The search's time limit counts model work charged at the generation time the profile recorded, not wall
time. Per model (profile cached under --work: 16 calibration samples, latency and generation time measured,
as bench_zoo profiles), each budget is solved as `schedc solve` does by default (search, fewer step counts tried, 60 s, fresh-seed
confirmation) twice: on a quiet machine, then with --burners processes spinning on the CPU. Reported per
budget: whether the two schedules are identical, rollouts, what ended the search, and the charged and wall
seconds of each (wall / charged on the quiet run: how well the charged clock stands for this machine's time).
Before the clock charged work, a busy machine ran fewer rollouts and could compile another schedule.
Writes <out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import model_bench_parser, model_specs, numbers  # noqa: E402
from bench_io import read_json, write_json  # noqa: E402
from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.compile import compile_solution  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.solvers import Constraints, SolveContext  # noqa: E402

CALIB = 16  # calibration samples, as bench_zoo profiles


def _spin(stop_at: float) -> None:
    """A burner: one core busy until `stop_at` (wall clock), or until terminated."""
    while time.time() < stop_at:
        pass


class Burners:
    """`count` processes spinning on the CPU for the duration of a `with` block: a busy machine."""

    def __init__(self, count: int) -> None:
        self.count, self.procs = count, []

    def __enter__(self) -> "Burners":
        ctx = multiprocessing.get_context("spawn")
        self.procs = [ctx.Process(target=_spin, args=(time.time() + 3600,), daemon=True) for _ in range(self.count)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
            p.join()


def _profile(spec, adapter, work: Path, log) -> Path:
    path = work / "profile.npz"
    sampler = spec.sampler(adapter)
    if path.exists():
        meta = Profile.load(path).meta
        if meta.fingerprint == adapter.fingerprint() and meta.sampler == sampler.to_dict() and meta.generation_seconds:
            return path
    log(f"{spec.name}: profiling ({CALIB} samples)")
    work.mkdir(parents=True, exist_ok=True)
    profile_model(adapter, sampler, ProfileConfig(calib_samples=CALIB), progress=False).save(path)
    return path


def _solve(path: Path, adapter, budget: float, time_limit: float) -> dict:
    compiled = compile_solution(path, budget, solver="search", constraints=Constraints(time_limit=time_limit),
                                context=SolveContext(adapter=adapter, progress=False, vary_steps=True))
    stats = compiled.solution.stats
    return {"actions": [list(row) for row in compiled.solution.actions()], "steps": compiled.schedule.num_steps,
            "rollouts": stats["rollouts"], "stopped_by": stats["stopped_by"], "clock": stats["clock"],
            "charged_seconds": stats.get("charged_seconds"), "wall_seconds": round(stats["solve_seconds"], 2),
            "predicted_psnr": stats.get("predicted_psnr")}


def measure(spec, args, log) -> dict:
    adapter = spec.load()
    path = _profile(spec, adapter, Path(args.work) / spec.name, log)
    meta = Profile.load(path).meta
    rows = []
    for budget in args.budgets:
        quiet = _solve(path, adapter, budget, args.time_limit)
        with Burners(args.burners):
            busy = _solve(path, adapter, budget, args.time_limit)
        same = quiet["actions"] == busy["actions"]
        log(f"{spec.name} b={budget:.2f}: same schedule {same}; rollouts {quiet['rollouts']} / {busy['rollouts']}; "
            f"wall {quiet['wall_seconds']:.1f} / {busy['wall_seconds']:.1f} s, charged {quiet['charged_seconds']}")
        rows.append({"budget": budget, "same_schedule": same,
                     **{f"{k}_{name}": run[k] for name, run in (("quiet", quiet), ("busy", busy))
                        for k in ("rollouts", "stopped_by", "charged_seconds", "wall_seconds", "steps", "predicted_psnr")}})
    return {"model": spec.name, "generation_seconds": meta.generation_seconds, "burners": args.burners,
            "time_limit": args.time_limit, "calib": CALIB, "threads": torch.get_num_threads(), "rows": rows}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# The search on a quiet and a busy machine (bench/bench_search_clock.py)", "",
             "Each budget solved twice as `schedc solve` does by default (search, time limit counted in model work "
             "charged at the profile's recorded generation time), the second time with burner processes spinning on "
             "the CPU. wall/charged: the quiet solve's wall seconds over its charged seconds.", "",
             "| model | budget | same schedule | rollouts quiet / busy | ended by | charged s | wall s quiet / busy | wall/charged |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            charged = r["charged_seconds_quiet"]
            ratio = f"{r['wall_seconds_quiet'] / charged:.2f}" if charged else "-"
            lines.append(f"| {res['model']} | {r['budget']:.2f} | {'yes' if r['same_schedule'] else '**no**'} | "
                         f"{r['rollouts_quiet']} / {r['rollouts_busy']} | {r['stopped_by_quiet']} / {r['stopped_by_busy']} "
                         f"| {charged} | {r['wall_seconds_quiet']:.1f} / {r['wall_seconds_busy']:.1f} | {ratio} |")
    burners = sorted({res["burners"] for res in results})
    lines += ["", f"Settings: {CALIB} calibration samples, time limit {results[0]['time_limit']:g} s, "
              f"{', '.join(map(str, burners))} burner process(es), torch threads {results[0]['threads']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = model_bench_parser(__doc__, "/tmp/schedc-clock", "search-clock")
    parser.add_argument("--budgets", type=numbers(float), default=[0.2, 0.5])
    parser.add_argument("--burners", type=int, default=2, help="processes spinning on the CPU in the busy run")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.summary_only:
        torch.set_num_threads(args.threads)
        out.mkdir(parents=True, exist_ok=True)
        for spec in model_specs(args):
            write_json(out / f"{spec.name}.json", measure(spec, args, lambda m: print(m, flush=True)))
    results = [r for r in (read_json(p) for p in sorted(out.glob("*.json"))) if r]
    if not results:
        print(f"no results in {out}", file=sys.stderr)
        return 2
    atomic_write_text(out / "summary.md", summary_markdown(results))
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
