"""The replay runtime against a naive replay that keeps every compute: random schedules, the same samples.

The runtime stores only what a later reuse reads (Schedule.cache_needed) and frees the rest; the naive
replay below keeps (step, input, output) of every compute of every block and rebuilds each reuse from the
most recent ones with the mode's own formula. Any compute the runtime wrongly skips storing shows up as a
different sample or a refused reuse.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schedc.schedule import build_schedule
from schedc.spans import with_spans
from schedc_runtime import apply_schedule
from schedc_runtime.modes import REUSE_MODES
from tests.conftest import TINY_SAMPLER

ACTIONS = ("native", "residual", "forecast", "forecast2", "output")


def random_rows(seed: int, steps: int, blocks: int) -> tuple[tuple[str, ...], ...]:
    """Step 0 computes everything; afterwards each (step, block) computes with probability 1/2, else reuses
    with a mode drawn uniformly (long reuse runs and forecasts over uneven spacings included)."""
    rng = np.random.default_rng(seed)
    rows = [("native",) * blocks]
    for _ in range(1, steps):
        rows.append(tuple("native" if rng.random() < 0.5 else str(rng.choice(ACTIONS[1:])) for _ in range(blocks)))
    return tuple(rows)


def naive_replay(adapter, rows, inputs) -> torch.Tensor:
    step = [-1]
    history: dict[int, list] = {}  # block -> [(step, input, output)], most recent first

    def count(module, args):
        step[0] += 1

    handle = adapter.model.register_forward_pre_hook(count)
    blocks = adapter.blocks()
    for b, block in enumerate(blocks):
        def forward(*args, _b=b, _inner=block.forward, **kwargs):
            t, action, x = step[0], rows[step[0]][_b], args[0]
            if action == "native":
                out = _inner(*args, **kwargs)
                history.setdefault(_b, []).insert(0, (t, x, out))
                return out
            held = history[_b]
            if action == "output":
                return held[0][2]
            mode = REUSE_MODES[action]
            return mode.rebuild_residual(x, [o - i for _, i, o in held[: mode.history]],
                                         [s for s, _, _ in held[: mode.history]], t)

        block.forward = forward
    try:
        return adapter.generate(inputs, TINY_SAMPLER)
    finally:
        handle.remove()
        for block in blocks:
            del block.forward


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("spans", [False, True], ids=["per-block", "spans"])
def test_runtime_matches_a_replay_that_keeps_everything(tiny_adapter, tiny_profile, seed, spans):
    """Same samples as the naive replay, never more cache memory than the schedule predicts, and a cache
    stored at exactly the computes a later reuse reads (Schedule.cache_needed), nowhere else."""
    rows = random_rows(seed, TINY_SAMPLER.steps, len(tiny_adapter.blocks()))
    schedule = build_schedule(tiny_profile, rows, {"solver": "test"})
    if spans:
        schedule = with_spans(schedule)
    inputs = tiny_adapter.make_inputs(range(200, 203))
    expected = naive_replay(tiny_adapter, rows, inputs)
    with apply_schedule(tiny_adapter.model, schedule) as handle:
        stores = []
        remember = handle._remember

        def recording(index, old, step, *rest):
            stores.append((step, index))
            return remember(index, old, step, *rest)

        handle._remember = recording
        replayed = tiny_adapter.generate(inputs, TINY_SAMPLER)
        assert handle.peak_cache_bytes <= schedule.peak_cache_bytes([2 * 3 * 16 * 32 * 4] * len(tiny_adapter.blocks()))
    assert torch.allclose(replayed, expected, atol=1e-5), f"schedule {seed}: max diff {(replayed - expected).abs().max()}"
    needed = schedule.cache_needed()
    assert sorted(stores) == [(t, b) for t, row in enumerate(needed) for b, need in enumerate(row) if need]
    for t, b in stores:  # each store is read: by a later reuse of its block outside a span, with fewer computes
        # of the block in between than that reuse's mode reads (residual/output: none; a forecast: one)
        reads = [u for u in range(t + 1, len(rows)) if rows[u][b] != "native" and not schedule.in_span(u, b)
                 and sum(rows[v][b] == "native" for v in range(t + 1, u)) < REUSE_MODES[rows[u][b]].history]
        assert reads, f"schedule {seed}: block {b} stored at step {t} and no reuse reads it"
