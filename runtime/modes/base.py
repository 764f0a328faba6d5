"""What every reuse mode is: the one place that says what a reuse caches, rebuilds, costs and errs.

A mode is registered once (see `__init__.py`) and every part of schedc asks it instead of holding its
own if/elif over mode names:
  runtime   `history`, `reads` and `rebuild_residual` say what a compute must leave behind and how a
            reuse rebuilds the block's output from it (`cache_tensors` is its memory);
  profiler  `measure` turns the ring of recent residuals (and their Gram matrix) into the mode's
            error table E[b, k, s, t] (k indexes `patterns`);
  solvers   `patterns` and `coefficients` give the term a reuse adds to the predicted error: the
            measured E plus the quantization error its cached computes carry, weighted by |coefficient|.

Needs neither torch nor numpy at import: the compiler imports it without torch, the runtime with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence


def lagrange_weights(computes: Sequence[int], t: int) -> tuple[float, ...]:
    """Weights w_k with f(t) ~= sum_k w_k f(computes[k]): the polynomial through the cached points.

    One point gives (1,) (hold the value), two the straight line (1 + lam, -lam), three the parabola.
    """
    weights = []
    for k, s_k in enumerate(computes):
        w = 1.0
        for j, s_j in enumerate(computes):
            if j != k:
                w *= (t - s_j) / (s_k - s_j)
        weights.append(w)
    return tuple(weights)


@dataclass(frozen=True)
class ReuseMode:
    """A reuse that rebuilds the residual (output - input) from the block's last `history` computes.

    name: the decision's name in schedules.
    history: how many computes the rebuild reads (the most recent first).
    reads: "residual" (input + a combination of cached residuals) or "output" (the cached output).
    """

    name: str
    history: int = 1
    reads: str = "residual"
    summary: str = ""
    # in the solvers' default decision set; False = measured by the profiler and used only when asked
    # for (an opt-in mode whose additive-model predictions have not held up on every model yet)
    default: bool = True

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"reuse mode name must be an identifier, got {self.name!r}")
        if self.history < 1 or self.reads not in ("residual", "output"):
            raise ValueError(f"reuse mode {self.name}: history must be >= 1 and reads residual or output")

    # -- what the schedule and solvers see --------------------------------------------------------
    def patterns(self, max_gap: int) -> tuple[tuple[int, ...], ...]:
        """Spacings between the computes the mode reads (most recent first) that are measured/usable.

        One entry of `history - 1` gaps each; the profile holds one error table slice per entry.
        """
        return ((),)

    def coefficients(self, gaps: Sequence[int], age: int) -> tuple[float, ...]:
        """Weights of the cached residuals (most recent compute first) in the residual rebuilt `age`
        steps after the last compute, for computes spaced by `gaps`."""
        points = [0]
        for g in gaps:
            points.append(points[-1] - g)
        return lagrange_weights(points, age)

    def carried_weight(self, gaps: Sequence[int], age: int) -> tuple[float, ...]:
        """How much of each cached compute's own error reaches the reuse (|coefficient|): a compute at
        reduced precision carries its quantization error into every reuse that reads it."""
        return tuple(abs(c) for c in self.coefficients(gaps, age))

    def cache_tensors(self) -> tuple[int, int]:
        """(residual tensors, output tensors) one block keeps alive to serve this mode."""
        return (0, 1) if self.reads == "output" else (self.history, 0)

    # -- runtime -----------------------------------------------------------------------------------
    def rebuild_residual(self, x: Any, deltas: Sequence[Any], steps: Sequence[int], t: int) -> Any:
        """x + sum_k w_k deltas[k] for one residual stream (tensors; torch not imported here).

        deltas/steps: the cached residuals and their compute steps, most recent first.
        """
        weights = lagrange_weights(steps[: self.history], t)
        y = x + deltas[0] if weights[0] == 1.0 else x.add(deltas[0], alpha=weights[0])
        for w, d in zip(weights[1:], deltas[1 : self.history]):
            y.add_(d, alpha=w)
        return y

    # -- profiler ----------------------------------------------------------------------------------
    def measure(self, ring: "RingView", t: int, max_gap: int) -> Iterator[tuple[int, list[int], Any]]:
        """Per usable pattern k: (k, steps s of the most recent compute read, relative errors [n, rows]).

        Residual modes use the Gram matrix only: ||sum_k w_k d_k - d_t||^2 =
        w^T G w - 2 w . <d_k, d_t> + ||d_t||^2, so no residual is ever rebuilt.
        """
        import torch

        for k, gaps in enumerate(self.patterns(max_gap)):
            found = ring.chains(gaps)  # list of slot tuples (most recent first)
            if not found:
                continue
            slots = torch.tensor(found, dtype=torch.long)  # [n, H]
            s = [ring.steps[c[0]] for c in found]
            w = torch.tensor([self.coefficients(gaps, t - s_) for s_ in s], dtype=torch.float64)  # [n, H]
            g = ring.gram[slots[:, :, None], slots[:, None, :]]  # [n, H, H, rows]
            sq = torch.einsum("nh,nj,nhjr->nr", w, w, g) - 2 * torch.einsum("nh,nhr->nr", w, ring.inner[slots])
            sq = sq + ring.self_sq  # [n, rows]
            yield k, s, sq.clamp_min(0).sqrt() / ring.out_norm


@dataclass
class RingView:
    """The profiler's view of one block's recent computes at step t (every step computes when profiling).

    steps[i]: compute step held in ring slot i (-1: empty); gram [A, A, rows] float64 <d_i, d_j>;
    inner [A, rows] <d_i, d_t>; self_sq [rows] ||d_t||^2; outputs [A, rows, F] and out [rows, F] for
    output replay; out_norm [rows] ||o_t|| (errors are relative to it).
    """

    steps: Sequence[int]
    gram: Any
    inner: Any
    self_sq: Any
    outputs: Any
    out: Any
    out_norm: Any

    def chains(self, gaps: Sequence[int]) -> list[tuple[int, ...]]:
        """Slot tuples (s, s - g1, s - g1 - g2, ...) all held in the ring, for every held s."""
        where = {s: i for i, s in enumerate(self.steps) if s >= 0}
        found = []
        for s, i in where.items():
            chain, step = [i], s
            for g in gaps:
                step -= g
                if step not in where:
                    break
                chain.append(where[step])
            else:
                found.append(tuple(chain))
        return found
