"""Under context parallelism a static schedule needs no collective to decide: two gloo processes, each
holding half the tokens of a toy attention model (keys/values all-gathered inside each block), take the
same decisions and produce the same result as one process holding every token (issue #14)."""

from __future__ import annotations

import socket

import torch
import torch.multiprocessing as mp

import cp_toy


def test_a_schedule_on_token_shards_matches_one_process(tmp_path):
    full, calls = cp_toy.sample(cp_toy.Toy(), cp_toy.noise())
    assert 0 < sum(calls) < cp_toy.BLOCKS * cp_toy.STEPS  # the schedule skips work
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "cp")
    mp.spawn(cp_toy.worker, args=(2, port, out), nprocs=2, join=True)
    parts = [torch.load(f"{out}.rank{r}") for r in range(2)]
    assert all(p["calls"] == calls for p in parts)  # the same decisions on every rank, as in one process
    torch.testing.assert_close(torch.cat([p["x"] for p in parts], dim=1), full, rtol=1e-5, atol=1e-6)
