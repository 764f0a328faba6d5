"""Train the bundled reference DiT on scikit-learn's digits (ships inside scikit-learn: no download).

    python -m schedc.models.train_reference --steps 5000 --out schedc/models/weights/reference-dit.safetensors

Resumable: a checkpoint is written every `--ckpt-every` steps and picked up on restart. The EMA
weights are what ships, stored as float16 safetensors to keep the repository small.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from schedc.atomic import atomic_path
from schedc.datasets import digits_tensors
from schedc.models.training import add_training_args, ema_update, load_checkpoint, save_checkpoint
from schedc.models.reference_dit import ReferenceDiT, ReferenceDiTConfig
from schedc.sampling import NUM_TRAIN_TIMESTEPS, train_alphas_cumprod


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels = digits_tensors()  # [1797, 1, 8, 8] in [-1, 1], [1797]
    config = ReferenceDiTConfig()
    model = ReferenceDiT(config)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    alphas = train_alphas_cumprod().float()
    ckpt = Path(args.ckpt)
    start = load_checkpoint(ckpt, model, ema, opt)
    gen = torch.Generator().manual_seed(args.seed + start)
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train", mininterval=5)
    running = None
    for step in bar:
        lr = args.lr * min(1.0, (step + 1) / 200)  # short warmup
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, images.shape[0], (args.batch,), generator=gen)
        x0, y = images[idx], labels[idx].clone()
        y[torch.rand(args.batch, generator=gen) < args.cfg_dropout] = config.num_classes  # null class
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (args.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = (model(xt, t, y) - noise).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, args.ema, step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % args.ckpt_every == 0 or step + 1 == args.steps:
            save_checkpoint(ckpt, model, ema, opt, step + 1)
    weights = {k: v.to(torch.float16).contiguous() for k, v in ema.state_dict().items()}
    meta = {"config": json.dumps(config.to_dict()), "steps": str(args.steps), "seed": str(args.seed),
            "dataset": "sklearn.datasets.load_digits", "trained": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(weights, str(tmp), metadata=meta)
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser, lr=5e-4, ckpt="train_reference.ckpt")
    parser.add_argument("--out", default=str(Path(__file__).parent / "weights" / "reference-dit.safetensors"))
    train(parser.parse_args())


if __name__ == "__main__":
    main()
