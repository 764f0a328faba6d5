"""Train the second reference model, a Hugging Face diffusers `DiTTransformer2DModel`, on scikit-learn's
8x8 digits (ship inside scikit-learn: no download), and save it in a diffusers folder layout.

    python -m schedc.models.train_diffusers_dit --steps 5000 --out schedc/models/weights/digits-dit

writes

    <out>/transformer/config.json, diffusion_pytorch_model.safetensors   (EMA weights, float16)
    <out>/scheduler/scheduler_config.json                                (DDIMScheduler)

with `save_pretrained`, and no model_index.json, VAE or text encoder: the transformer denoises [N, 1, 8, 8]
pixels in [-1, 1] directly and is conditioned on the class label only; the null (unconditional) class id is
`num_embeds_ada_norm` = 10, the row diffusers' `LabelEmbedding` keeps for classifier-free guidance.

Training: DDPM noising (linear betas 1e-4..0.02 over 1000 steps, epsilon prediction, the same schedule as
`schedc.sampling`), CFG label dropout by replacing labels with the null id, AdamW with a linear warmup, EMA.
Resumable: a checkpoint (`--ckpt`, default under /tmp) is written every `--ckpt-every` steps and picked up on
restart with the same command. The output folder is written into a temporary sibling and renamed into place
only when complete. The shipped weights: seed 0, 5000 steps, ~20 min wall on 2 shared CPU cores with
`--threads 1` (with 2 threads and other jobs on the machine, OpenMP oversubscription made steps ~20x slower;
alone, 2 threads run ~5 steps/s). Weights are initialised as in DiT (`init_dit_weights`). Load it with

    DiTTransformer2DModel.from_pretrained(out / "transformer", torch_dtype=torch.float32)
    DDIMScheduler.from_pretrained(out / "scheduler")

and sample with `sample()` below (DDIM, batched classifier-free guidance).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from schedc.models.training import add_training_args, atomic_folder, ema_update, load_checkpoint, save_checkpoint
from schedc.datasets import class_accuracy, digits_tensors
from schedc.sampler_config import EVAL_SEED_START

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # = num_embeds_ada_norm: LabelEmbedding's CFG row
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
DEFAULT_OUT = Path(__file__).parent / "weights" / "digits-dit"


def build_model(width: int = 96, heads: int = 4, layers: int = 8):
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(
        sample_size=8, patch_size=2, in_channels=1, out_channels=1, num_layers=layers,
        num_attention_heads=heads, attention_head_dim=width // heads, norm_type="ada_norm_zero",
        num_embeds_ada_norm=NUM_CLASSES,
    )


def init_dit_weights(model: torch.nn.Module) -> None:
    """DiT's own initialisation (facebookresearch/DiT `initialize_weights`), which diffusers does not apply
    (it expects pretrained weights): xavier linears with zero biases, N(0, 0.02) label tables and timestep
    MLPs, and adaLN-Zero, i.e. every block's modulation and the output layers start at zero so each block
    starts as the identity (diffusers' defaults leave e.g. N(0, 1) label tables next to a timestep embedding
    of std ~0.05)."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    proj = model.pos_embed.proj  # Conv2d patch embedding, initialised like a linear layer
    nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    nn.init.zeros_(proj.bias)
    for block in model.transformer_blocks:
        emb = block.norm1.emb
        nn.init.normal_(emb.class_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(emb.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(emb.timestep_embedder.linear_2.weight, std=0.02)
        nn.init.zeros_(block.norm1.linear.weight)
        nn.init.zeros_(block.norm1.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def disable_builtin_label_dropout(model: torch.nn.Module) -> None:
    """diffusers' DiT drops labels inside every block's own LabelEmbedding in train mode, each block with its
    own random mask; the training loop drops labels once per sample instead, consistently for all blocks."""
    from diffusers.models.embeddings import LabelEmbedding

    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear",
        prediction_type="epsilon", clip_sample=True,
    )


def inference_scheduler():
    """DDIM on the training betas; trailing spacing and alpha_prev = 1 at the end, as schedc.sampling does."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear",
        prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True,
        steps_offset=0, timestep_spacing="trailing",
    )


def initial_noise(seed: int | Sequence[int], n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n, 1, 8, 8] noise: one generator for the batch when `seed` is an int, else one per row (seed s gives
    the same noise as schedc's reference adapter for seed s)."""
    if isinstance(seed, int):
        return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).to(dtype)
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} labels")
    rows = [torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.cat(rows).to(dtype)


@torch.no_grad()
def sample(model, scheduler, labels: torch.Tensor, steps: int = 50, guidance_scale: float = 3.0,
           seed: int | Sequence[int] = EVAL_SEED_START) -> torch.Tensor:
    """DDIM (eta 0, clipped x0) with batched classifier-free guidance: one model call per step on
    [cond rows; uncond rows]. Matches schedc.sampling.DDIMSampler step for step at 50 steps.

    labels: [N] class ids; returns samples [N, 1, 8, 8] (float32, in [-1, 1] up to the last step's rounding).
    """
    dtype = next(model.parameters()).dtype
    labels = labels.long()
    x = initial_noise(seed, labels.shape[0], dtype=torch.float32) * scheduler.init_noise_sigma
    y_in = torch.cat([labels, torch.full_like(labels, NULL_CLASS)])
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x_in = torch.cat([x, x]).to(dtype)
        t_in = t.expand(x_in.shape[0])
        eps_cond, eps_uncond = model(x_in, timestep=t_in, class_labels=y_in).sample.float().chunk(2)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        # re-derive eps from the clipped x0 (as schedc.sampling and GLIDE do); with the raw eps, the clipped
        # x0 of the near-pure-noise early steps disagrees with eps and the samples come out grainy
        x = scheduler.step(eps, t, x, use_clipped_model_output=True).prev_sample
    return x


def evaluate(model, n: int = 64, steps: int = 50, guidance_scale: float = 3.0) -> float:
    """Class accuracy on held-out seeds 1000000.. (label = seed % 10), as the SVC digit classifier sees it."""
    seeds = list(range(EVAL_SEED_START, EVAL_SEED_START + n))
    labels = torch.tensor([s % NUM_CLASSES for s in seeds])
    samples = sample(model, inference_scheduler(), labels, steps=steps, guidance_scale=guidance_scale, seed=seeds)
    return class_accuracy(samples, labels)


def save_folder(ema: torch.nn.Module, out: Path) -> None:
    """transformer/ (fp16 EMA, safetensors) and scheduler/ via save_pretrained; the folder appears whole."""
    with atomic_folder(Path(out)) as tmp:
        half = torch.nn.Module.to(copy.deepcopy(ema), dtype=torch.float16)  # plain cast; no fp32-kept modules
        half.save_pretrained(tmp / "transformer", safe_serialization=True)
        inference_scheduler().save_pretrained(tmp / "scheduler")


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels = digits_tensors()  # [1797, 1, 8, 8] in [-1, 1], [1797]
    model = build_model(args.width, args.heads, args.layers)
    init_dit_weights(model)
    disable_builtin_label_dropout(model)
    model.train()
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    noise_scheduler = train_scheduler()
    gen = torch.Generator().manual_seed(args.seed)
    ckpt = Path(args.ckpt)
    start = load_checkpoint(ckpt, model, ema, opt, gen)
    if start:
        print(f"resumed from {ckpt} at step {start}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DiTTransformer2DModel: {n_params / 1e6:.2f} M parameters ({n_params * 2 / 1e6:.1f} MB fp16)", flush=True)
    t0 = time.time()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train", mininterval=args.mininterval)
    running = None
    for step in bar:
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, images.shape[0], (args.batch,), generator=gen)
        x0, y = images[idx], labels[idx].clone()
        y[torch.rand(args.batch, generator=gen) < args.cfg_dropout] = NULL_CLASS
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (args.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        xt = noise_scheduler.add_noise(x0, noise, t)
        loss = (model(xt, timestep=t, class_labels=y).sample - noise).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, args.ema, step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        done = step + 1
        if done % args.ckpt_every == 0 or done == args.steps:
            save_checkpoint(ckpt, model, ema, opt, done, gen)
        if args.eval_every and (done % args.eval_every == 0 or done == args.steps):
            acc = evaluate(ema, n=args.eval_samples)
            print(f"\nstep {done}: loss(ema-avg) {running:.4f}  class accuracy {acc:.3f} on {args.eval_samples} "
                  f"held-out samples (EMA, 50 DDIM steps, cfg 3.0)  {time.time() - t0:.0f} s", flush=True)
    bar.close()
    if running is not None:
        print(f"trained steps {start}..{args.steps} in {time.time() - t0:.0f} s, final running loss {running:.4f}",
              flush=True)
    save_folder(ema, Path(args.out))
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser, lr=3e-4, ckpt="/tmp/schedc-train-diffusers-dit.ckpt")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--width", type=int, default=96, help="num_attention_heads * attention_head_dim")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=1000, help="0 disables the periodic class-accuracy check")
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--mininterval", type=float, default=30.0, help="tqdm refresh interval, seconds")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    train(parser.parse_args())


if __name__ == "__main__":
    main()
