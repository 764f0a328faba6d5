"""CP-SAT schedule with the constraints deployments need.

Model (per block a path through its compute steps): an arc (b, s, e, p, h) means block b computes at
step s at precision p, in history state h (the spacing of its computes before s, history.py), and
next at e (e = T: never again); the steps between reuse its cache, each in its cheapest mode
applicable in that state plus the error the cached computes carry. Flow conservation per (step,
state) makes every block a path from step 0 to T, so "compute at t" is the flow through t; forecast
modes only add states (a path through (s, h) knows the spacing its forecast reads). Deployment constraints are added with an
enforcement literal each, so an infeasible set is explained by the literals CP-SAT blames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from schedc.costmodel import NATIVE_UNITS, option_units
from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.history import HistoryStates, segment_costs, step_errors

SCALE = 10**7  # objective coefficients: weighted error x SCALE, rounded


def _arc_tables(problem: Problem, b: int, hist: HistoryStates, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Arc costs [H, P1, T, T+1] of block b: a compute at s at option p in history state h, reusing
    until the next compute at e (e = T: never again), inf where not allowed; and the best mode per
    reused step [H, P1, T, T] (history.step_errors, shared with the DP)."""
    steps = problem.num_steps
    w, mode = step_errors(problem, b, hist)  # [H, P1, T, T]
    r = segment_costs(w)  # [H, P1, T, T+1]
    if problem.precisions:
        comp = problem.gain[b][:, None] * problem.quant_error[b]  # [T, P]
        r[:, 1:] += np.transpose(comp)[None, :, :, None]
    length = np.arange(steps + 1)[None, :] - np.arange(steps)[:, None]  # [s, e]
    return np.where(length[None, None] <= max_len, r, np.inf), mode


def _block_weights(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer block weights and the exact values they stand for: equal for equal or small-integer
    cost ratios, else the ratios x 1000 rounded up (the capacity then uses the exact values)."""
    ratio = costs / costs.min()
    for mult in range(1, 101):
        scaled = ratio * mult
        if np.allclose(scaled, np.rint(scaled), rtol=0, atol=1e-9):
            return np.rint(scaled).astype(np.int64), np.rint(scaled)
    return np.ceil(ratio * 1000).astype(np.int64), ratio * 1000


@dataclass
class _Built:
    model: object
    lit: dict
    arcs: dict  # (block, s, e, option, history state) -> bool var
    modes: dict  # block -> best reuse mode index [H, P1, T, T]


def _build(problem: Problem, budget: float, constraints: Constraints, explain: bool) -> _Built:
    """The CP-SAT model; `explain` leaves out the objective and assumes the constraint literals."""
    from ortools.sat.python import cp_model

    steps, blocks = problem.num_steps, problem.num_blocks
    opts = ("native",) + problem.precisions
    max_len = steps if constraints.max_reuse is None else constraints.max_reuse
    first = min(constraints.first_full, steps)
    model = cp_model.CpModel()
    lit = {name: model.NewBoolVar(name) for name in GROUPS}
    arcs: dict[tuple[int, int, int, int, int], object] = {}  # (b, s, e, p, h) -> bool
    objective, cost_terms = [], []
    weight, exact = _block_weights(problem.block_cost)  # integer cost of a native compute of each block
    units = option_units(problem.precision_cost if problem.precisions else np.zeros((blocks, 0)))  # [B, P1]
    hist = HistoryStates.of(problem)
    modes = {}
    for b in range(blocks):
        table, modes[b] = _arc_tables(problem, b, hist, max_len + 1)
        reach = {(0, 0)}  # (step, history state) a path can be at: block b computes at step 0 with no history
        for s in range(steps):
            here = {hh for (ss, hh) in reach if ss == s}
            for h in sorted(here | {0} if here else here):  # () too: a compute at another precision starts afresh
                for p in range(len(opts)):
                    for e in np.flatnonzero(np.isfinite(table[h, p, s])):
                        var = model.NewBoolVar(f"arc_b{b}_s{s}_h{h}_e{e}_{opts[p]}")
                        arcs[(b, s, int(e), p, h)] = var
                        objective.append(int(round(table[h, p, s, e] * SCALE)) * var)
                        cost_terms.append(int(weight[b]) * int(units[b, p]) * var)
                        if e < steps:
                            reach.add((int(e), hist.next_state[h][int(e) - s]))
    # flow per (block, step): what arrives at a compute leaves it. A reuse reads the history only across
    # computes of one precision (as the DP's state does): an arc that keeps history state h != () at
    # precision p needs an arrival in state h from a compute at p; any other arrival starts afresh (state ())
    into = {}  # (b, t) -> arcs arriving at a compute at t
    into_state = {}  # (b, t, h, p) -> arcs arriving in state h from a compute at precision p
    out_of = {}  # (b, t) -> arcs leaving a compute at t
    keeps = {}  # (b, t, h, p) -> arcs leaving at precision p in history state h != ()
    for (b, s, e, p, h), var in arcs.items():
        out_of.setdefault((b, s), []).append(var)
        if h != 0:
            keeps.setdefault((b, s, h, p), []).append(var)
        if e < steps:
            into.setdefault((b, e), []).append(var)
            into_state.setdefault((b, e, hist.next_state[h][e - s], p), []).append(var)
    for b in range(blocks):
        model.Add(sum(v for (bb, s, e, p, h), v in arcs.items() if bb == b and s == 0) == 1)  # step 0 computes
        model.Add(sum(v for (bb, s, e, p, h), v in arcs.items() if bb == b and e == steps) == 1)  # the path ends
    for key in set(into) | set(out_of):
        if key[1] > 0:
            model.Add(sum(into.get(key, [])) == sum(out_of.get(key, [])))  # a compute continues the path
    for key, leaving in keeps.items():
        if key[1] > 0:
            model.Add(sum(leaving) <= sum(into_state.get(key, [])))
    computes_at = {}  # (b, t) -> arcs leaving a compute at t (any state)
    for (b, s, e, p, h), var in arcs.items():
        computes_at.setdefault((b, s), []).append(var)
    # budget: block work as a fraction of every block at every step, in native units
    # every arc's cost is rounded up and the capacity uses the exact costs: the budget always holds
    capacity = int(np.floor(budget * (1 + 1e-9) * steps * NATIVE_UNITS * exact.sum()))
    model.Add(sum(cost_terms) <= capacity).OnlyEnforceIf(lit["budget"])
    # first / last k steps: every block computes, at native precision
    for b in range(blocks):
        for t in list(range(first)) + list(range(max(0, steps - constraints.last_full), steps)):
            native_out = [v for (bb, s, e, p, h), v in arcs.items() if bb == b and s == t and p == 0]
            model.Add(sum(native_out) == 1).OnlyEnforceIf(lit["first_full" if t < first else "last_full"])
    # cache memory: as the runtime counts it, at the end of each step: a compute at s that is reused before
    # the next compute at e holds its cache from the end of step s through step e - 1
    if constraints.max_cache_bytes is not None:
        for t in range(steps):
            live = [int(round(constraints.cache_bytes[bb])) * v for (bb, s, e, p, h), v in arcs.items()
                    if s <= t < e and e > s + 1]
            model.Add(sum(live) <= int(constraints.max_cache_bytes)).OnlyEnforceIf(lit["max_cache_bytes"])
    # bubbling union: an upstream refresh refreshes the listed downstream blocks (and theirs, transitively)
    for up, down in dependency_closure(constraints.dependencies, blocks):
        for t in range(steps):
            model.Add(sum(computes_at.get((up, t), [])) <= sum(computes_at.get((down, t), []))).OnlyEnforceIf(lit["dependencies"])
    # at most one reduced precision per block (one quantized copy in memory)
    if constraints.static_precision and problem.precisions:
        for b in range(blocks):
            chosen = [model.NewBoolVar(f"static_b{b}_{opts[p]}") for p in range(1, len(opts))]
            model.Add(sum(chosen) <= 1).OnlyEnforceIf(lit["static_precision"])
            for (bb, s, e, p, h), v in arcs.items():
                if bb == b and p > 0:
                    model.AddImplication(v, chosen[p - 1])
    if explain:
        model.AddAssumptions(list(lit.values()))
    else:
        model.Minimize(sum(objective))
        for v in lit.values():
            model.Add(v == 1)
    return _Built(model, lit, arcs, modes)


GROUPS = ("budget", "first_full", "last_full", "max_reuse", "max_cache_bytes", "dependencies", "static_precision")


def solve_ilp(
    problem: Problem, budget: float, constraints: Constraints = Constraints()
) -> Solution:
    """Least weighted error within the budget and the deployment constraints (CP-SAT)."""
    from ortools.sat.python import cp_model

    budget = check_budget(budget)
    if constraints.max_cache_bytes is not None and len(constraints.cache_bytes) != problem.num_blocks:
        raise SolverError(f"max_cache_bytes needs cache_bytes, the bytes of one cache of each of the {problem.num_blocks} blocks")
    started = time.perf_counter()
    _check_minimum_cost(problem, budget, constraints)
    built = _build(problem, budget, constraints, explain=False)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = constraints.time_limit
    solver.parameters.num_workers = 2
    status = solver.Solve(built.model)
    if status == cp_model.INFEASIBLE or (status == cp_model.MODEL_INVALID and not built.arcs):
        raise SolverError(f"infeasible: {_explain(problem, budget, constraints)} cannot all hold")
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise SolverError(f"no schedule found within the {constraints.time_limit:g}s time limit ({solver.StatusName(status)})")
    opts = ("native",) + problem.precisions
    rows = [["native"] * problem.num_blocks for _ in range(problem.num_steps)]
    for (b, s, e, p, h), v in built.arcs.items():
        if solver.Value(v):
            rows[s][b] = opts[p]
            for t in range(s + 1, min(e, problem.num_steps)):
                rows[t][b] = problem.reuse_modes[built.modes[b][h, p, s, t]]
    decisions = tuple(tuple(r) for r in rows)
    error, cost = problem.evaluate_decisions(decisions)
    objective, bound = solver.ObjectiveValue() / SCALE, solver.BestObjectiveBound() / SCALE
    stats = {"solve_seconds": time.perf_counter() - started, "status": solver.StatusName(status),
             "objective": objective, "bound": bound, "gap": (objective - bound) / objective if objective > 0 else 0.0}
    compute = np.array([[a in opts for a in r] for r in decisions], dtype=bool)
    return Solution(compute=compute, cost=cost, predicted_error=error, solver="ilp", stats=stats, decisions=decisions)


def _explain(problem: Problem, budget: float, constraints: Constraints) -> str:
    """Names of the constraint groups CP-SAT needs to prove infeasibility (a feasibility re-solve)."""
    from ortools.sat.python import cp_model

    built = _build(problem, budget, constraints, explain=True)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # cores of assumptions need a single worker
    solver.parameters.max_time_in_seconds = 10.0
    if solver.Solve(built.model) != cp_model.INFEASIBLE:  # no core in time: name every active group
        active = ["budget", "first_full"] + [g for g, on in (("last_full", constraints.last_full),
                  ("max_reuse", constraints.max_reuse is not None), ("max_cache_bytes", constraints.max_cache_bytes is not None),
                  ("dependencies", constraints.dependencies), ("static_precision", constraints.static_precision)) if on]
        return " + ".join(_describe(g, budget, constraints) for g in active)
    index = {v.Index(): name for name, v in built.lit.items()}
    core = [_describe(index[i], budget, constraints) for i in solver.SufficientAssumptionsForInfeasibility() if i in index]
    if constraints.max_reuse is not None:
        core.append(_describe("max_reuse", budget, constraints))  # built into the arcs, always part
    return " + ".join(core) if core else "the step-0 compute and the profile's max cache age"


def dependency_closure(pairs: tuple[tuple[int, int], ...], blocks: int) -> list[tuple[int, int]]:
    """All (up, down) refresh implications the pairs entail: the transitive closure of their graph."""
    import networkx as nx

    bad = [pair for pair in pairs if not all(0 <= b < blocks for b in pair)]
    if bad:
        raise SolverError(f"block dependencies {bad} name blocks outside 0..{blocks - 1}")
    graph = nx.transitive_closure(nx.DiGraph(pairs), reflexive=False)
    return sorted((u, v) for u, v in graph.edges if u != v)


def _check_minimum_cost(problem: Problem, budget: float, c: Constraints) -> None:
    """Fail fast, by name, when first/last-full, max reuse and the cache age alone exceed the budget."""
    steps = problem.num_steps
    longest = steps if c.max_reuse is None else c.max_reuse + 1  # longest arc s -> e
    forced = set(range(min(c.first_full, steps))) | set(range(max(0, steps - c.last_full), steps))
    need = 0.0
    hist = HistoryStates.of(problem)
    for b in range(problem.num_blocks):
        table = np.min(_arc_tables(problem, b, hist, longest)[0][:, 0], axis=0)  # [T, T+1] native, any state
        fewest = np.full(steps + 1, np.inf)  # fewest computes on a path from step 0 to node t
        fewest[0] = 0
        for t in range(steps):
            if not np.isfinite(fewest[t]):
                continue
            for e in range(t + 1, steps + 1):
                if np.isfinite(table[t, e]) and not any(u in forced for u in range(t + 1, e)):
                    fewest[e] = min(fewest[e], fewest[t] + 1)
        need += fewest[steps] * problem.block_cost[b]
    need /= steps * problem.block_cost.sum()
    if need > budget * (1 + 1e-9):
        active = [f"first {c.first_full} step(s) full"] + ([f"last {c.last_full} step(s) full"] if c.last_full else []) \
            + ([f"at most {c.max_reuse} consecutive reuses"] if c.max_reuse is not None else []) + ["the profile's max cache age"]
        raise SolverError(f"infeasible: budget {budget:g} is below the minimum {need:.3f} that {', '.join(active)} allow")


def _describe(group: str, budget: float, c: Constraints) -> str:
    describe = {
        "budget": lambda: f"budget {budget:g}",
        "first_full": lambda: f"first {c.first_full} step(s) full",
        "last_full": lambda: f"last {c.last_full} step(s) full",
        "max_reuse": lambda: f"at most {c.max_reuse} consecutive reuses",
        "max_cache_bytes": lambda: f"cache memory <= {c.max_cache_bytes:g} bytes",
        "dependencies": lambda: f"block dependencies {list(c.dependencies)}",
        "static_precision": lambda: "one precision per block",
    }
    return describe[group]()
