"""How a block's outputs relate to its inputs: what a reuse needs to rebuild an output. Torch only.

Blocks come in three shapes, named by a block's *outputs* entry in the schedule:
  None                       one tensor out, the residual of the first tensor in (the bundled DiT,
                             diffusers' BasicTransformerBlock, Wan): out = x + delta
  ("encoder_hidden_states", "hidden_states")
                             a tuple out; output i is the residual of the input argument named
                             outputs[i] (SD3 joint and FLUX blocks return two streams); "" marks an
                             output that is not a residual of any input (it can only be replayed)
  ()                         output-only: the output's shape or structure differs from the input
                             (UNet down/up blocks return skip tuples or change resolution), so the
                             only reuse is replaying the cached output itself (DeepCache)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch

from .format import ScheduleFormatError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class BlockIOError(ScheduleFormatError):
    """A block's call does not match its recorded outputs spec."""


def _first_tensor(args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "x"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    raise BlockIOError("cannot find the block's hidden-states input (first tensor argument)")


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) tuple/list output, in order: the replayable content of an output."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in tensors_in(item)]
    return []


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """`value` with every tensor in its (nested) tuples/lists replaced by fn(tensor), in tensors_in order."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(map_tensors(v, fn) for v in value)
    if isinstance(value, list):
        return [map_tensors(v, fn) for v in value]
    return value


class BlockIO:
    """One block's call convention: which input each output stream adds to."""

    def __init__(self, forward: Callable[..., Any], outputs: "tuple[str, ...] | None") -> None:
        self.outputs = outputs
        try:
            params = [p for p in inspect.signature(forward).parameters.values() if p.kind in _POSITIONAL]
        except (TypeError, ValueError):
            params = []
        self._position = {p.name: i for i, p in enumerate(params)}

    @property
    def residual_ok(self) -> bool:
        """Whether residual/forecast reuse can rebuild this block's output from its input."""
        return self.outputs is None or any(self.outputs)

    def _argument(self, name: str, args: tuple, kwargs: Mapping[str, Any]) -> Any:
        if name in kwargs:
            return kwargs[name]
        index = self._position.get(name)
        if index is not None and index < len(args):
            return args[index]
        return None

    def stream_inputs(self, args: tuple, kwargs: Mapping[str, Any]) -> list[torch.Tensor | None]:
        """Per output stream, the input tensor it is a residual of (None: not a residual)."""
        if self.outputs is None:
            return [_first_tensor(args, kwargs)]
        found = [self._argument(name, args, kwargs) if name else None for name in self.outputs]
        return [x if isinstance(x, torch.Tensor) else None for x in found]

    def stream_outputs(self, out: Any) -> list[torch.Tensor | None]:
        """Per output stream, the output tensor (None where the block returned None)."""
        if self.outputs is None or (len(self.outputs) == 1 and isinstance(out, torch.Tensor)):
            if not isinstance(out, torch.Tensor):
                raise BlockIOError(f"block returned {type(out).__name__}, expected one tensor")
            return [out]
        if not isinstance(out, (tuple, list)) or len(out) != len(self.outputs):
            raise BlockIOError(f"block returned {type(out).__name__}, expected a tuple of {len(self.outputs)}")
        return [t if isinstance(t, torch.Tensor) else None for t in out]

    def rebuild(self, streams: Sequence[torch.Tensor | None], like_tuple: bool) -> Any:
        """Streams -> the block's return value (a tensor, or a tuple when the block returns one)."""
        return tuple(streams) if like_tuple else streams[0]

    def caches(self, args: tuple, kwargs: Mapping[str, Any], out: Any) -> list[tuple[bool, torch.Tensor | None]]:
        """Per stream, what a reuse needs: (True, output - input) where the stream is a residual of its
        input, else (False, the output itself) (None where the block returned None)."""
        ins, outs = self.stream_inputs(args, kwargs), self.stream_outputs(out)
        return [(True, o - x) if o is not None and x is not None and o.shape == x.shape else (False, o)
                for x, o in zip(ins, outs)]

    def identity(self, args: tuple, kwargs: Mapping[str, Any], like_tuple: bool) -> Any:
        """The output of a block that adds nothing: its inputs, passed through (no-block timing)."""
        return self.rebuild(self.stream_inputs(args, kwargs), like_tuple)


def flat_rows(tensors: Sequence[torch.Tensor | None], rows: int) -> torch.Tensor:
    """Concatenate every stream per batch row: [rows, F] float32 (streams share the batch dim)."""
    parts = [t.float().reshape(rows, -1) for t in tensors if t is not None]
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


__all__ = ["BlockIO", "BlockIOError", "flat_rows", "map_tensors", "tensors_in"]
