"""Every solver and baseline on one profile, over a range of budgets, through the same harness.

Each solver's schedule is evaluated on held-out seeds; the first solver's evaluation also runs the
baselines (fewer steps, uniform refresh, Δ-DiT) at that schedule's cost. Rows go to a markdown table,
a CSV and a Pareto plot of quality vs measured speedup.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable, Sequence

from schedc.atomic import atomic_write_text
from schedc.evaluate import EvalConfig, evaluate
from schedc.models.adapter import ModelAdapter
from schedc.plots import pareto_plot
from schedc.problem import problem_from_profile, resolve_cost
from schedc.profile import Profile
from schedc.schedule import schedule_from_solution
from schedc.solvers import Constraints, SolveContext, get_solver
from schedc_runtime.modes import REUSE_MODES

COLUMNS = ("solver", "budget", "cost", "predicted_rel_l2", "rel_l2", "psnr", "ssim", "class_acc", "speedup",
           "ideal_speedup", "steps")


def ilp_options(profile: Profile) -> set[str]:
    """What compare/matched let the ILP choose: the single-compute reuse modes and every precision.

    Multi-compute modes (forecasts) are history states of the ILP's path model: exact, but the CP-SAT
    model grows ~9x (17x with forecast2), so these comparisons keep the ILP on the rest.
    """
    return {m for m in profile.modes if REUSE_MODES[m].history == 1} | set(profile.precisions)


def compare(
    adapter: ModelAdapter, profile: Profile, budgets: Sequence[float], solvers: Sequence[str], config: EvalConfig,
    cost: str = "auto", log: Callable[[str], None] = lambda _: None,
) -> list[dict]:
    cost_model = resolve_cost(profile, cost)
    rows: list[dict] = []
    for budget in budgets:
        for index, name in enumerate(solvers):
            allow = None if name != "ilp" else ilp_options(profile)
            problem = problem_from_profile(profile, allow, cost_model)
            solution = get_solver(name)(problem, budget, Constraints(), SolveContext(profile, adapter=adapter))
            schedule = schedule_from_solution(profile, solution, budget, {"cost_model": cost_model})
            log(f"budget {budget:.2f}: {name} solved in {solution.stats.get('solve_seconds', 0):.1f}s, evaluating")
            report = evaluate(adapter, schedule, config, baselines=index == 0, progress=False, problem=problem)
            rows.append({"solver": name, "budget": budget, **report.schedule.to_dict()})
            for baseline, metrics in report.baselines.items():
                rows.append({"solver": baseline, "budget": budget, **metrics.to_dict()})
    return rows


def write_results(rows: list[dict], out: Path, title: str) -> list[Path]:
    """out.md (table), out.csv and out.png (Pareto plot)."""
    def fmt(v: object) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out.with_suffix(".csv"), buf.getvalue())
    pareto_plot([{"variant": r["solver"], "speedup": r["speedup"], "psnr": r["psnr"]} for r in rows],
                out.with_suffix(".png"), title)
    return [out.with_suffix(s) for s in (".md", ".csv", ".png")]


__all__ = ["COLUMNS", "compare", "write_results"]
