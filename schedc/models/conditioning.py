"""Per-prompt conditioning for text-conditioned diffusers models, read from a safetensors file.

Its own module because it is the adapter's input data, not how a model is called: the file layout
(`encoder_hidden_states` [K, L, D], optional `pooled_projections` [K, P] and `negative_*` rows) is what
zoo/train_zoo.py writes and what users hand to `schedc profile --cond`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from schedc.errors import ModelError


class FileRows:
    """One tensor of a safetensors file, read row by row on indexing ([N] ids or an int): what
    Conditioning needs of a tensor (shape, dim(), rows), without loading the rest."""

    def __init__(self, handle: Any, key: str) -> None:
        self._slice = handle.get_slice(key)
        self.shape = torch.Size(self._slice.get_shape())
        self.reads = 0  # rows read so far (tests: the file is not loaded whole)

    def dim(self) -> int:
        return len(self.shape)

    def full(self) -> torch.Tensor:
        """The whole tensor (for the small ones: a single negative prompt)."""
        return self._slice[:]

    def __getitem__(self, index: "int | torch.Tensor") -> torch.Tensor:
        if isinstance(index, int):
            self.reads += 1
            return self._slice[index:index + 1][0]
        rows = [int(i) for i in index]
        self.reads += len(rows)
        return torch.stack([self._slice[i:i + 1][0] for i in rows]) if rows else torch.empty(0, *self.shape[1:])


@dataclass(frozen=True)
class Conditioning:
    """Per-prompt conditioning tensors for text-conditioned models (from a safetensors file).

    encoder_hidden_states: [K, L, D]; pooled_projections: [K, P] (SD3/FLUX); negative_*: the
    unconditional branch ([L, D] / [P], or per prompt); zeros when absent.
    """

    tensors: Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        ehs = self.tensors.get("encoder_hidden_states")
        if ehs is None or ehs.dim() != 3:
            raise ModelError("conditioning file needs 'encoder_hidden_states' shaped [prompts, tokens, dim]")

    @property
    def prompts(self) -> int:
        return int(self.tensors["encoder_hidden_states"].shape[0])

    def rows(self, index: torch.Tensor, negative: bool) -> dict[str, torch.Tensor]:
        """Conditioning for samples whose prompt ids are `index` [N] (the negative prompt when asked)."""
        out = {}
        for key in ("encoder_hidden_states", "pooled_projections"):
            value = self.tensors.get(key)
            if value is None:
                continue
            if negative:
                neg = self.tensors.get(f"negative_{key}")
                neg = torch.zeros_like(value[0]) if neg is None else neg
                if isinstance(neg, FileRows) and neg.dim() != value.dim():
                    neg = neg.full()  # one negative prompt for every row
                out[key] = (neg[index] if neg.dim() == value.dim() else neg.unsqueeze(0).expand(len(index), *neg.shape)).clone()
            else:
                out[key] = value[index]
        return out

    @classmethod
    def load(cls, path: str) -> "Conditioning":
        """Rows are read from the file when a batch asks for them (memory-mapped, never the whole file),
        so a calibration set of many prompts costs the memory of one batch."""
        from safetensors import safe_open

        try:
            handle = safe_open(path, framework="pt")
            return cls({key: FileRows(handle, key) for key in handle.keys()})
        except FileNotFoundError:
            raise ModelError(f"conditioning file not found: {path}") from None
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot read conditioning file {path}: {exc}") from None


__all__ = ["Conditioning", "FileRows"]
