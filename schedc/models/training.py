"""What the training scripts share: resumable checkpoints, the EMA update and writing a model folder whole."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from schedc.atomic import atomic_path


def load_checkpoint(path: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer,
                    gen: torch.Generator | None = None) -> int:
    """Restore model, EMA, optimiser and RNG state from `path` if it exists; returns the step to resume at."""
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    torch.set_rng_state(state["rng"])
    if gen is not None and "gen" in state:
        gen.set_state(state["gen"])
    return int(state["step"])


def save_checkpoint(path: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                    gen: torch.Generator | None = None) -> None:
    """Atomically write everything `load_checkpoint` restores (a crash never leaves half a checkpoint)."""
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
             "rng": torch.get_rng_state(), **({"gen": gen.get_state()} if gen is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, max_decay: float, step: int) -> None:
    """EMA with the usual warm-up: decay min(max_decay, (1 + step) / (10 + step))."""
    decay = min(max_decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)


def add_training_args(parser: argparse.ArgumentParser, lr: float, ckpt: str) -> None:
    """The options both training scripts take (their defaults are what shipped)."""
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--cfg-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ckpt", default=ckpt, help="resumable checkpoint (picked up on restart)")
    parser.add_argument("--ckpt-every", type=int, default=250)


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to fill; on success it replaces `out` whole (with the umask's
    permissions: mkdtemp and safetensors make 0700 / 0600), on failure it is removed and `out` is untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None and old.exists():
            shutil.rmtree(old)
