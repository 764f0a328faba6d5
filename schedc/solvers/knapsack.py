"""Splitting a budget over blocks exactly: integer cost units and a multiple-choice knapsack.

Shared by the residual DP and the joint DP (each gives per block the least error for every count of
cost units; this picks one point per block within the budget).
"""

from __future__ import annotations

import math

import numpy as np

CAPACITY_UNITS = 20_000  # knapsack resolution when block costs are not small integer multiples
BUDGET_RTOL = 1e-9  # a schedule costing budget * (1 + 1e-9) still counts as within budget
_MAX_MULTIPLIER = 1000  # largest integer multiple tried to make block costs exact integers


def _exact_units(costs: np.ndarray) -> np.ndarray | None:
    """Smallest integer units proportional to costs (to 1e-9 relative), or None if none is small."""
    ratio = costs / costs.min()  # [B]
    mult = np.arange(1, _MAX_MULTIPLIER + 1, dtype=float)[:, None]  # [M, 1]
    scaled = ratio[None, :] * mult  # [M, B]
    ok = np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * scaled, axis=1)  # [M]
    if not ok.any():
        return None
    return np.round(scaled[int(np.argmax(ok))]).astype(np.int64)


def cost_units(
    costs: np.ndarray, budget: float, steps: int, fixed: np.ndarray, extra_max: np.ndarray
) -> tuple[np.ndarray, int, bool]:
    """Integer knapsack weights for one extra compute per block, and the spare capacity.

    fixed [B]: computes every feasible schedule needs; extra_max [B]: most extra computes.
    Exact integer units are used when they exist and keep the knapsack small; otherwise costs are
    scaled so all possible extras span CAPACITY_UNITS and rounded up, so the true cost never
    exceeds the budget (the split is then only near-optimal). The units never depend on the
    budget, so a larger budget only ever enlarges the feasible set (monotone objective).
    Capacity < 0 means infeasible.
    """
    units = _exact_units(costs)
    if units is not None:
        usable = int((units * extra_max).sum())
        if usable <= CAPACITY_UNITS or np.all(units == units[0]):
            cap = math.floor(budget * (1 + BUDGET_RTOL) * steps * int(units.sum()))
            spare = cap - int((units * fixed).sum())
            return units, min(spare, usable), True
    spare_true = budget * (1 + BUDGET_RTOL) * steps * costs.sum() - float((costs * fixed).sum())
    extra_true = float((costs * extra_max).sum())
    scale = CAPACITY_UNITS / extra_true if extra_true > 0 else 1.0
    units = np.maximum(np.ceil(costs * scale), 1).astype(np.int64)
    usable = int((units * extra_max).sum())
    if spare_true < 0:
        return units, -1, False
    if spare_true >= extra_true:  # every extra compute fits: the split is trivially exact
        return units, usable, True
    exact = bool(np.all(units == costs * scale))
    return units, min(math.floor(spare_true * scale), usable), exact


def _relax(
    best: np.ndarray, count: np.ndarray, value: float, k: int, tgt: np.ndarray,
    tgt_count: np.ndarray, pick: np.ndarray, cand: np.ndarray, cand_count: np.ndarray,
    mask: np.ndarray, tie: np.ndarray,
) -> None:
    """In place: tgt = lexicographic min of (tgt, tgt_count) and (best + value, count + k)."""
    np.add(best, value, out=cand)
    np.add(count, k, out=cand_count)
    np.less(cand, tgt, out=mask)
    np.equal(cand, tgt, out=tie)
    tie &= cand_count < tgt_count
    mask |= tie
    np.copyto(tgt, cand, where=mask)
    np.copyto(tgt_count, cand_count, where=mask)
    np.copyto(pick, k, where=mask)


def knapsack(curves: np.ndarray, kmin: np.ndarray, units: np.ndarray, capacity: int) -> np.ndarray:
    """Multiple-choice knapsack: pick k_b >= kmin_b per block, sum units_b (k_b - kmin_b) <= capacity.

    Minimises sum_b curves[b, k_b]; among equal objectives, fewer total computes. Returns k [B].
    """
    b_count, k_count = curves.shape
    size = capacity + 1
    best = np.zeros(size)  # [C]: least objective of blocks so far with <= c spare units used
    count = np.zeros(size, dtype=np.int64)  # [C]: total computes behind best
    choice = np.zeros((b_count, size), dtype=np.int32)  # [B, C]
    mask = np.empty(size, dtype=bool)  # scratch buffers, reused for every (block, k)
    tie = np.empty(size, dtype=bool)
    cand = np.empty(size)
    cand_count = np.empty(size, dtype=np.int64)
    for b in range(b_count):
        new = np.full(size, np.inf)
        new_count = np.zeros(size, dtype=np.int64)
        for k in range(int(kmin[b]), k_count):
            shift = (k - int(kmin[b])) * int(units[b])
            if shift >= size:
                break
            if np.isfinite(curves[b, k]):
                n = size - shift
                _relax(best[:n], count[:n], curves[b, k], k, new[shift:], new_count[shift:],
                       choice[b, shift:], cand[:n], cand_count[:n], mask[:n], tie[:n])
        best, count = new, new_count
    ks = np.empty(b_count, dtype=np.int64)
    c = capacity
    for b in range(b_count - 1, -1, -1):
        ks[b] = choice[b, c]
        c -= (ks[b] - int(kmin[b])) * int(units[b])
    return ks
