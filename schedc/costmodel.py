"""The one cost model: what a compute costs, in FLOPs or in measured time, and in the solvers' units.

Cost used to be worked out in several places (FLOP counting in each model adapter, precision ratios in
problem.py, latency ratios in problem_from_profile, integer units inside each solver); a change to one
copy silently split them. Everything that turns a profile into per-block costs lives here.

Imports without torch: the compiler path (problem, solvers) uses this module, and only `count_flops`,
which profiling calls, needs torch (imported inside it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from schedc.errors import ModelError, ProfileError, SolverError

if TYPE_CHECKING:
    from schedc.profile_meta import ProfileMeta

COST_MODELS = ("flops", "latency")

# A native compute is NATIVE_UNITS integer units, so the DP's cost axis and the ILP's budget row count
# the same thing; reduced precisions resolve to quarters of a native compute.
NATIVE_UNITS: int = 4

# FLOP cost model: a compute at each precision relative to native. int8/fp8 run at twice the dense
# tensor-core throughput of bf16 on current GPUs; int4 weight-only saves memory, not FLOPs.
FLOP_COST: dict[str, float] = {"native": 1.0, "int8": 0.5, "fp8": 0.5, "int4w": 1.0}


def option_units(precision_cost: np.ndarray) -> np.ndarray:
    """[B, P] compute cost at each reduced precision / native -> [B, 1 + P] int64 units, native first.

    Native is NATIVE_UNITS; precision p is rint(NATIVE_UNITS * ratio), at least 1 (no compute is free).
    """
    ratio = np.asarray(precision_cost, dtype=np.float64)
    if ratio.ndim != 2:
        raise SolverError(f"precision_cost must be [B, P], got shape {ratio.shape}")
    if ratio.size and (not np.all(np.isfinite(ratio)) or np.any(ratio <= 0)):
        raise SolverError("precision_cost ratios must be positive and finite")
    reduced = np.maximum(np.rint(NATIVE_UNITS * ratio), 1).astype(np.int64)
    native = np.full((ratio.shape[0], 1), NATIVE_UNITS, dtype=np.int64)
    return np.concatenate([native, reduced], axis=1)


def resolve_cost(meta: "ProfileMeta", cost: str) -> str:
    """"auto" -> the measured latency when the profile has it (the device's truth), else FLOPs."""
    if cost == "auto":
        return "latency" if meta.latency else "flops"
    if cost not in COST_MODELS:
        raise SolverError(f"unknown cost model {cost!r}: choose auto, flops or latency")
    return cost


def block_costs(
    meta: "ProfileMeta", block_flops: np.ndarray, precisions: tuple[str, ...], cost: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(block_cost [B] > 0, ratio [B, P]): one native compute of each block, and each of `precisions`
    relative to it.

    "flops": block_flops, with FLOP_COST ratios (the same for every block). "latency": the profile's
    measured per-block native time, with measured per-block ratios.
    """
    flops = np.asarray(block_flops, dtype=np.float64)
    b = len(meta.blocks)
    if flops.shape != (b,):
        raise ProfileError(f"block_flops must be [B] = ({b},), got shape {flops.shape}")
    if cost == "flops":
        unknown = [p for p in precisions if p not in FLOP_COST]
        if unknown:
            raise ProfileError(f"no FLOP cost for precision(s) {', '.join(unknown)}")
        block_cost = flops.copy()
        ratio = np.tile(np.array([FLOP_COST[p] for p in precisions], dtype=np.float64), (b, 1)).reshape(b, len(precisions))
    elif cost == "latency":
        table = meta.latency
        if not table:
            raise ProfileError("the profile has no latency table: re-profile with latency measurement on")
        missing = [p for p in precisions if p not in table]
        if missing:
            raise ProfileError(f"the profile's latency table has no {', '.join(missing)} row: re-profile with it")
        block_cost = np.asarray(table["native"], dtype=np.float64)
        ratio = (np.stack([np.asarray(table[p], dtype=np.float64) / block_cost for p in precisions], axis=1)
                 if precisions else np.zeros((b, 0)))
    else:
        raise SolverError(f"unknown cost model {cost!r}: choose flops or latency")
    if not np.all(block_cost > 0):
        raise ProfileError(f"every block must cost more than nothing under the {cost} cost model")
    return block_cost, ratio


def reuse_costs(meta: "ProfileMeta", block_flops: np.ndarray, cost: str) -> np.ndarray | None:
    """[B] cost of one residual reuse (the add) of each block, in `block_costs`' unit; None if unknown.

    "flops": zeros. The FLOP model counts matmul work (torch's FlopCounterMode), and an add is ~1/(6D)
    of a block's FLOPs anyway: reuse is free there. "latency": the profiler's timed reuse row (an add
    per output stream, ~0.35% of a native block on the bundled models), so spans show their saving.
    """
    b = len(meta.blocks)
    if cost == "flops":
        return np.zeros(b)
    row = (meta.latency or {}).get("reuse")
    return None if row is None else np.asarray(row, dtype=np.float64)


def reuse_overhead(
    decisions: Sequence[Sequence[str]], spans: Sequence[Sequence[tuple[int, int]]], block_cost: np.ndarray,
    reuse_cost: np.ndarray,
) -> float:
    """Cost of the reuses themselves, as a fraction of full compute (the budget's unit).

    Every residual/forecast/output reuse pays its block's reuse cost, except the members of a span:
    a span pays one add, its head's (the members pass their input through).
    """
    from schedc_runtime.format import is_reuse

    total = 0.0
    for t, row in enumerate(decisions):
        members = {b for a, e in (spans[t] if spans else ()) for b in range(a + 1, e + 1)}
        total += sum(float(reuse_cost[b]) for b, action in enumerate(row) if is_reuse(action) and b not in members)
    return total / (len(decisions) * float(np.sum(block_cost)))


def count_flops(
    model: Any, example_args: Sequence[Any], example_kwargs: dict[str, Any], block_names: Sequence[str],
    *, call: Callable[..., Any] | None = None,
) -> tuple[list[float], float]:
    """FLOPs of one denoiser call per sample: per block (in block_names order), and the non-block rest.

    Runs `call(*example_args, **example_kwargs)` (default: the model itself; adapters whose call needs
    extra plumbing pass their own) under torch's FlopCounterMode, which names modules from the root's
    class name.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        (call or model)(*example_args, **example_kwargs)
    counts = counter.get_flop_counts()
    total = float(sum(counts.get("Global", {}).values()))
    prefix = type(model).__name__
    per_block = [float(sum((counts.get(f"{prefix}.{n}") or counts.get(n) or {}).values())) for n in block_names]
    if not all(per_block):
        raise ModelError("FLOP counter did not attribute work to every block")
    return per_block, total - sum(per_block)


__all__ = ["COST_MODELS", "FLOP_COST", "NATIVE_UNITS", "block_costs", "count_flops", "option_units", "resolve_cost",
           "reuse_costs", "reuse_overhead"]
