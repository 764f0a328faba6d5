"""Output reuse (DeepCache): the block's cached output itself, whatever its input is now.

The only reuse for blocks whose output is not a residual of their input (UNet down/up blocks).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from .base import ReuseMode, RingView


class OutputReuse(ReuseMode):
    def coefficients(self, gaps: Sequence[int], age: int) -> tuple[float, ...]:
        return (1.0,)

    def rebuild_residual(self, x: Any, deltas: Sequence[Any], steps: Sequence[int], t: int) -> Any:
        raise TypeError("output reuse replays the cached output; it rebuilds no residual")

    def measure(self, ring: RingView, t: int, max_gap: int) -> Iterator[tuple[int, list[int], Any]]:
        """||o_s - o_t|| / ||o_t|| for every cached s."""
        import torch

        slots = [i for i, s in enumerate(ring.steps) if s >= 0]
        if slots:
            index = torch.tensor(slots, dtype=torch.long)
            err = (ring.outputs[index] - ring.out.unsqueeze(0)).norm(dim=2).double() / ring.out_norm  # [n, rows]
            yield 0, [ring.steps[i] for i in slots], err


OUTPUT = OutputReuse(name="output", history=1, reads="output", summary="the cached output itself")
