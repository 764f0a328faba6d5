"""Provisional cost model (replaced by the full module on merge): FLOP ratios, latency, integer units."""

from __future__ import annotations

import numpy as np

from schedc.errors import ProfileError, SolverError

NATIVE_UNITS = 4
FLOP_COST = {"native": 1.0, "int8": 0.5, "fp8": 0.5, "int4w": 1.0}


def option_units(precision_cost: np.ndarray) -> np.ndarray:
    units = np.maximum(np.rint(NATIVE_UNITS * precision_cost), 1).astype(np.int64)
    return np.concatenate([np.full((precision_cost.shape[0], 1), NATIVE_UNITS), units], axis=1)


def resolve_cost(profile, cost: str) -> str:
    if cost != "auto":
        return cost
    return "latency" if profile.meta.get("latency") else "flops"


def block_costs(meta, block_flops, precisions, cost):
    b = len(block_flops)
    if cost == "flops":
        return np.asarray(block_flops, dtype=float).copy(), np.array([[FLOP_COST[p] for p in precisions]] * b).reshape(b, len(precisions))
    if cost == "latency":
        table = meta.get("latency")
        if not table:
            raise ProfileError("the profile has no latency table: re-profile with latency measurement")
        native = np.asarray(table["native"], dtype=float)
        ratio = np.stack([np.asarray(table[p], dtype=float) / native for p in precisions], axis=1) if precisions else np.zeros((b, 0))
        return native, ratio
    raise SolverError(f"unknown cost model {cost!r}: choose flops or latency")
