"""`schedc profile` under torchrun: every rank profiles its share, torch.distributed sums the tables.

    torchrun --nproc-per-node 2 -m schedc profile digits-dit --calib 64     # one machine, two processes
    torchrun --nnodes 2 --node-rank R --master-addr HOST ... -m schedc profile ...   # several machines

Why torch.distributed: it is the engine diffusion users already run under (xDiT, cache-dit, diffusers'
context parallelism); gloo on CPU, nccl on GPU. What is communicated: the profile's sum and count
tables (a few MB for 28 blocks x 50 steps), once, plus one status flag per rank; nothing per step.

Rank r runs calibration batches r, r+w, ... (schedc.profiler: ProfileConfig.rank); rank 0 also runs
what the first batch does alone (gain probes, cache sizes, latency), so w ranks measure what one
process does, to floating-point round-off in the order the sums are added. Rank 0 writes the file
(atomically). If any rank fails, every rank raises the same one-line error and nothing is written.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from schedc.errors import ProfileError

class RankFailed(ProfileError):
    """Some rank failed and every rank has been told: nothing more to agree on."""


TIMEOUT = datetime.timedelta(minutes=30)  # a rank that never reaches a collective fails the others after this


def launched() -> tuple[int, int] | None:
    """(rank, world size) when started by torchrun with more than one process, else None."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ProfileError("RANK and WORLD_SIZE must be whole numbers (torchrun sets them)") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise ProfileError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return rank, world


@contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """The default process group for this torchrun job (gloo on CPU, nccl with CUDA), torn down after."""
    started = not dist.is_initialized()
    if started:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if started:
            dist.destroy_process_group()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_across_ranks(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every array summed over the ranks (all ranks hold the same names and shapes), in float64 / int64."""
    names = sorted(arrays)
    shapes = [None] * dist.get_world_size()
    dist.all_gather_object(shapes, [(n, arrays[n].shape, arrays[n].dtype.kind) for n in names])
    if any(s != shapes[0] for s in shapes):
        raise ProfileError("the ranks measured different tables (different models or profiler options?)")
    out = {}
    for name in names:
        kind = np.int64 if arrays[name].dtype.kind in "iub" else np.float64
        tensor = torch.from_numpy(np.ascontiguousarray(arrays[name], dtype=kind)).to(_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        out[name] = tensor.cpu().numpy()
    return out


def agree(error: BaseException | None) -> None:
    """Every rank reports whether it failed; if any did, every rank raises one ProfileError naming it."""
    failed = [None] * dist.get_world_size()
    dist.all_gather_object(failed, None if error is None else f"{type(error).__name__}: {error}".splitlines()[0])
    first = next(((rank, message) for rank, message in enumerate(failed) if message is not None), None)
    if first is not None:
        raise RankFailed(f"rank {first[0]} of {len(failed)} failed ({first[1]}): no profile written")


__all__ = ["RankFailed", "TIMEOUT", "agree", "launched", "process_group", "sum_across_ranks"]
