"""A token-sharded toy denoiser for the context-parallel test (imported by spawned processes).

Each block is attention over all tokens: under context parallelism a rank holds a slice of the tokens
and all-gathers keys and values inside the block (a collective inside the block's compute, as xDiT and
diffusers' context parallelism do). A rank that skipped a block its peers computed would hang them; a
static schedule makes every rank take the same decision without any collective to agree on it.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from schedc_runtime import ModelInfo, Schedule, apply_schedule

TOKENS, WIDTH, BLOCKS, STEPS = 8, 16, 4, 6
TIMESTEPS = tuple(float(999 - 160 * i) for i in range(STEPS))
DECISIONS = tuple(
    tuple("native" if t == 0 or (t + b) % 3 == 0 else ("residual" if b % 2 else "forecast") for b in range(BLOCKS))
    for t in range(STEPS))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.out = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, tokens on this rank, WIDTH]
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if dist.is_initialized() and dist.get_world_size() > 1:  # context parallel: keys/values of every rank
            ks, vs = [torch.empty_like(k) for _ in range(dist.get_world_size())], [torch.empty_like(v) for _ in range(dist.get_world_size())]
            dist.all_gather(ks, k.contiguous())
            dist.all_gather(vs, v.contiguous())
            k, v = torch.cat(ks, dim=1), torch.cat(vs, dim=1)
        attn = torch.softmax(q @ k.transpose(1, 2) / WIDTH ** 0.5, dim=-1)  # [N, local tokens, all tokens]
        return x + self.out(attn @ v)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.embed = nn.Linear(1, WIDTH)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        h = x + self.embed(timestep.reshape(-1, 1, 1) / 1000.0)
        for block in self.blocks:
            h = block(h)
        return h


def schedule() -> Schedule:
    info = ModelInfo(name="cp-toy", fingerprint="sha256:toy", blocks=tuple(f"blocks.{i}" for i in range(BLOCKS)),
                     steps=STEPS, timesteps=TIMESTEPS, cfg="none")
    return Schedule(model=info, decisions=DECISIONS)


def sample(model: Toy, x: torch.Tensor) -> torch.Tensor:
    """A few Euler-like steps on the (sharded) tokens, under the schedule."""
    with torch.no_grad(), apply_schedule(model, schedule(), check_fingerprint=False) as handle:
        for t in TIMESTEPS:
            x = x - 0.1 * model(x, torch.full((x.shape[0],), t))
        calls = list(handle.block_calls)
    return x, calls


def noise() -> torch.Tensor:
    return torch.randn(2, TOKENS, WIDTH, generator=torch.Generator().manual_seed(1))


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        local = noise().chunk(world, dim=1)[rank]  # this rank's slice of the tokens
        x, calls = sample(Toy(), local)
        torch.save({"x": x, "calls": calls}, f"{out}.rank{rank}")
    finally:
        dist.destroy_process_group()
