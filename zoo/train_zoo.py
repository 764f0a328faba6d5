"""Train one model of the development zoo: seven small diffusion models on scikit-learn's digits (no download),
diverse on purpose (DiT, UNet, SD-style text UNet, PixArt, SD3, FLUX; conditioning, objective, scheduler, CFG),
each 6-18 minutes on one CPU core.

    OMP_NUM_THREADS=1 python zoo/train_zoo.py NAME [--steps N] [--threads 1] [--out zoo/NAME]

writes zoo/NAME/ in the diffusers layout schedc loads (`transformer/` or `unet/` fp16 safetensors, `scheduler/`
with the inference scheduler, `cond.safetensors` for text-conditioned models) plus `zoo.json`, the sampler
settings a bench profiles the model at and how it was trained. Training calls the denoiser through
`DiffusersAdapter._call`, the very call `schedc profile` makes at inference (timestep scaling, conditioning
keywords, PixArt's size kwargs and learned-sigma split), so train and inference cannot drift apart. The class
accuracy is measured the way a bench sees the model: the adapter's own sampler at the zoo.json settings, 64
held-out seeds (1000000..), judged by the digits classifier (16x16 samples are average-pooled to 8x8 first).

Resumable: a checkpoint under /tmp/zoo-ckpt/ is written every --ckpt-every steps and picked up on restart with
the same command; the output folder is built in a temporary sibling and renamed into place.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from schedc.datasets import class_accuracy, digits_tensors
from schedc.models.train_diffusers_dit import disable_builtin_label_dropout, init_dit_weights
from schedc.models.training import atomic_folder, ema_update, load_checkpoint, save_checkpoint

ZOO_DIR = Path(__file__).resolve().parent
NUM_CLASSES = 10
NEGATIVE = NUM_CLASSES  # row of the learned prompt table used as the negative prompt / the DiT null class
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02  # DDPM linear betas, as schedc.sampling and digits-dit
EVAL_SEED_START = 1_000_000
FAMILIES = ("dit", "unet", "unet-text", "pixart", "sd3", "flux")
SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler")


@dataclass(frozen=True)
class ZooSpec:
    """One zoo model: architecture, training objective and the sampler settings it is benched at."""

    family: str  # one of FAMILIES (unet-text: UNet2DConditionModel, cross-attention to prompts)
    image_size: int  # 8 (digits) or 16 (digits upsampled bilinearly)
    objective: str  # "epsilon" (DDPM noising) | "flow" (rectified flow, velocity target noise - x0)
    scheduler: str  # the inference scheduler class written to scheduler/
    sample_steps: int
    guidance_scale: float
    cfg: str  # "batched" | "none"
    train_steps: int  # default --steps (picked so one model trains in <= ~10 min on one core)
    width: int = 64  # transformer inner dim (heads * head dim); UNet: first level's channels
    layers: int = 6
    single_layers: int = 0  # flux: single-stream blocks after the `layers` double-stream ones
    heads: int = 4
    patch: int = 2
    tokens: int = 4  # text families: prompt tokens
    cond_dim: int = 32  # text families: encoder_hidden_states (and SD3 pooled) dim
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 100
    ema: float = 0.995
    cond_dropout: float = 0.1  # labels / prompts replaced by the null class / negative prompt (CFG training)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.image_size not in (8, 16):
            raise ValueError(f"image_size must be 8 or 16, got {self.image_size}")
        if self.objective not in ("epsilon", "flow"):
            raise ValueError(f"objective must be 'epsilon' or 'flow', got {self.objective!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if (self.objective == "flow") != (self.scheduler == "FlowMatchEulerDiscreteScheduler"):
            raise ValueError("the flow objective goes with FlowMatchEulerDiscreteScheduler, and only it")
        if self.cfg not in ("batched", "none"):
            raise ValueError(f"cfg must be 'batched' or 'none', got {self.cfg!r}")
        if (self.cfg == "none") != (self.guidance_scale == 1.0) or (self.cfg == "none") != (self.cond_dropout == 0.0):
            raise ValueError("cfg 'none' goes with guidance_scale 1.0 and no conditioning dropout, and only it")
        if self.family == "flux" and (self.objective != "flow" or self.patch != 1 or self.image_size % 2):
            raise ValueError("flux packs 2x2 latent patches itself: objective 'flow', patch 1, an even image_size")
        if self.width % self.heads or self.image_size % self.patch:
            raise ValueError("width must divide by heads and image_size by patch")
        if min(self.sample_steps, self.train_steps, self.layers, self.batch, self.warmup) < 1:
            raise ValueError("steps, layers, batch and warmup must be positive")

    @property
    def text(self) -> bool:
        """Conditioned on prompt embeddings (cond.safetensors) rather than class ids."""
        return self.family in ("pixart", "sd3", "flux", "unet-text")

    @property
    def pooled(self) -> bool:
        """Also takes pooled prompt embeddings (pooled_projections)."""
        return self.family in ("sd3", "flux")

    @property
    def denoiser_dir(self) -> str:
        return "unet" if self.family.startswith("unet") else "transformer"


ZOO: dict[str, ZooSpec] = {
    # DiT like digits-dit but patch 1 (64 tokens), shallower and narrower; DDIM + batched CFG 1.5
    "dit-p1-s": ZooSpec("dit", 8, "epsilon", "DDIMScheduler", 50, 1.5, "batched", 1500, width=64, layers=6, patch=1,
                        batch=64),
    # class-conditional UNet (no null class: no CFG) on 16x16 digits; DPM-Solver++ 2M, 25 steps
    "unet-dpm": ZooSpec("unet", 16, "epsilon", "DPMSolverMultistepScheduler", 25, 1.0, "none", 1500, width=32,
                        batch=64, cond_dropout=0.0),
    # PixArt: cross-attention to learned prompt embeddings, adaLN-single, learned sigma; DDIM 50, CFG 5.0
    "pixart-cross": ZooSpec("pixart", 8, "epsilon", "DDIMScheduler", 50, 5.0, "batched", 2500, width=64, layers=6),
    # SD3 MMDiT joint blocks + pooled projections, rectified flow; flow-match Euler 28 steps, CFG 3.0
    "sd3-flow": ZooSpec("sd3", 8, "flow", "FlowMatchEulerDiscreteScheduler", 28, 3.0, "batched", 2500, width=64,
                        layers=5),
    # added in session 16 as a second held-out check (after every rule and default was set): FLUX -- double-stream
    # then single-stream blocks (two block lists), 2x2-packed 16x16 latents (64 tokens x 4 channels), rotary
    # position ids, guidance-distilled style (no CFG), flow-match Euler 20 steps with FLUX's dynamic shift
    "flux-flow": ZooSpec("flux", 16, "flow", "FlowMatchEulerDiscreteScheduler", 20, 1.0, "none", 2500, width=64,
                         layers=2, single_layers=4, patch=1, batch=64, cond_dropout=0.0),
    # added in session 16 as a third held-out check: a Stable-Diffusion-style UNet2DConditionModel (cross-attention
    # to prompt embeddings at 8x8 and 4x4) on 16x16 digits, Euler (epsilon, sigma-scaled input) 30 steps,
    # batched CFG 4.0
    "unet-sd": ZooSpec("unet-text", 16, "epsilon", "EulerDiscreteScheduler", 30, 4.0, "batched", 1500, width=32,
                       batch=64),
    # added in session 12 as a held-out check, after every rule and default was set: PixArt (narrower, deeper)
    # under DPM-Solver++ 2M at 20 steps with batched CFG 3.0 -- a multistep solver on a transformer
    "pixart-dpm": ZooSpec("pixart", 8, "epsilon", "DPMSolverMultistepScheduler", 20, 3.0, "batched", 2500, width=48,
                          layers=8),
}


# -- model, conditioning, schedulers --------------------------------------------------------------------


def build_net(spec: ZooSpec) -> nn.Module:
    """The diffusers denoiser of `spec`, initialised so it starts near predicting zero."""
    import diffusers

    head_dim = spec.width // spec.heads
    if spec.family == "dit":
        net = diffusers.DiTTransformer2DModel(
            sample_size=spec.image_size, patch_size=spec.patch, in_channels=1, out_channels=1, num_layers=spec.layers,
            num_attention_heads=spec.heads, attention_head_dim=head_dim, norm_type="ada_norm_zero",
            num_embeds_ada_norm=NUM_CLASSES,
        )
        init_dit_weights(net)
        disable_builtin_label_dropout(net)
        return net
    if spec.family in ("unet", "unet-text"):  # 3 levels; attention (cross-attention to prompts: unet-text) at 8x8, 4x4
        w, text = spec.width, spec.family == "unet-text"
        attn = "CrossAttn" if text else "Attn"
        layout = dict(sample_size=spec.image_size, in_channels=1, out_channels=1, layers_per_block=1,
                      block_out_channels=(w, 2 * w, 2 * w), norm_num_groups=8,
                      down_block_types=("DownBlock2D", f"{attn}DownBlock2D", f"{attn}DownBlock2D"),
                      up_block_types=(f"{attn}UpBlock2D", f"{attn}UpBlock2D", "UpBlock2D"))
        net = (diffusers.UNet2DConditionModel(**layout, attention_head_dim=8, cross_attention_dim=spec.cond_dim) if text
               else diffusers.UNet2DModel(**layout, attention_head_dim=16, num_class_embeds=NUM_CLASSES))
        nn.init.zeros_(net.conv_out.weight)
        nn.init.zeros_(net.conv_out.bias)
        return net
    if spec.family == "pixart":
        net = diffusers.PixArtTransformer2DModel(
            num_attention_heads=spec.heads, attention_head_dim=head_dim, in_channels=1, out_channels=2,  # learned sigma
            num_layers=spec.layers, cross_attention_dim=spec.width, sample_size=spec.image_size, patch_size=spec.patch,
            caption_channels=spec.cond_dim, norm_type="ada_norm_single", use_additional_conditions=False,
        )
    elif spec.family == "flux":
        net = diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=4 * 1, num_layers=spec.layers, num_single_layers=spec.single_layers,
            attention_head_dim=head_dim, num_attention_heads=spec.heads, joint_attention_dim=spec.cond_dim,
            pooled_projection_dim=spec.cond_dim, guidance_embeds=False, axes_dims_rope=_rope_axes(head_dim),
        )
    else:
        net = diffusers.SD3Transformer2DModel(
            sample_size=spec.image_size, patch_size=spec.patch, in_channels=1, out_channels=1, num_layers=spec.layers,
            attention_head_dim=head_dim, num_attention_heads=spec.heads, joint_attention_dim=spec.cond_dim,
            caption_projection_dim=spec.width, pooled_projection_dim=spec.cond_dim,
            pos_embed_max_size=spec.image_size // spec.patch,  # the position table is a saved buffer: keep it small
        )
    nn.init.zeros_(net.proj_out.weight)
    nn.init.zeros_(net.proj_out.bias)
    return net


def _rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FLUX's rotary axes (id, row, column): even sizes summing to the head dim, most of it on the two image axes."""
    side = (head_dim // 8) * 3 if head_dim >= 8 else head_dim // 2
    side += side % 2
    return (head_dim - 2 * side, side, side)


def pack(images: torch.Tensor) -> torch.Tensor:
    """FLUX's latent packing: [N, C, H, W] -> [N, H/2 * W/2, 4C] (2x2 patches as tokens)."""
    n, c, h, w = images.shape
    x = images.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # [N, H/2, W/2, C, 2, 2]
    return x.reshape(n, (h // 2) * (w // 2), c * 4)


class PromptTable(nn.Module):
    """Learned prompt embeddings, frozen into cond.safetensors after training: row k is digit k's prompt,
    row NEGATIVE the negative prompt (CFG's unconditional branch)."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(spec.seed + 1)
        self.hidden = nn.Parameter(torch.randn(NUM_CLASSES + 1, spec.tokens, spec.cond_dim, generator=g))  # [11, L, D]
        self.pooled = (nn.Parameter(torch.randn(NUM_CLASSES + 1, spec.cond_dim, generator=g))  # [11, P]
                       if spec.pooled else None)

    def forward(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Conditioning kwargs for prompt ids `index` [N]."""
        out = {"encoder_hidden_states": self.hidden[index]}
        if self.pooled is not None:
            out["pooled_projections"] = self.pooled[index]
        return out

    def file_tensors(self) -> dict[str, torch.Tensor]:
        """The cond.safetensors layout schedc's Conditioning reads (negatives unbatched: [L, D] / [P])."""
        out = {"encoder_hidden_states": self.hidden[:NUM_CLASSES], "negative_encoder_hidden_states": self.hidden[NEGATIVE]}
        if self.pooled is not None:
            out |= {"pooled_projections": self.pooled[:NUM_CLASSES], "negative_pooled_projections": self.pooled[NEGATIVE]}
        return {k: v.detach().float().contiguous().clone() for k, v in out.items()}


class ZooModel(nn.Module):
    """The denoiser and (text families) its prompt table as one module, so EMA and checkpoints cover both."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        self.net = build_net(spec)
        self.prompts = PromptTable(spec) if spec.text else None


def inference_scheduler(spec: ZooSpec) -> Any:
    import diffusers

    if spec.family == "flux":  # FLUX.1's scheduler config: the shift grows with the token count (mu, set per call)
        return diffusers.FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
            max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    if spec.scheduler == "FlowMatchEulerDiscreteScheduler":
        return diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=1.0)
    betas = dict(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                 beta_schedule="linear", prediction_type="epsilon", timestep_spacing="trailing")
    if spec.scheduler == "EulerDiscreteScheduler":
        return diffusers.EulerDiscreteScheduler(**betas)
    if spec.scheduler == "DPMSolverMultistepScheduler":
        return diffusers.DPMSolverMultistepScheduler(**betas, algorithm_type="dpmsolver++", solver_order=2)
    return diffusers.DDIMScheduler(**betas, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, steps_offset=0)


def make_adapter(spec: ZooSpec, model: ZooModel, name: str):
    """A DiffusersAdapter on `model.net` (it sets eval mode and freezes; training turns both back on)."""
    from schedc.models.diffusers_adapter import Conditioning, DiffusersAdapter

    cond = Conditioning(model.prompts.file_tensors()) if model.prompts is not None else None
    return DiffusersAdapter(model.net, inference_scheduler(spec), name, conditioning=cond, judge="digits")


def sampler_config(spec: ZooSpec):
    from schedc.sampler_config import SamplerConfig

    return SamplerConfig(steps=spec.sample_steps, guidance_scale=spec.guidance_scale, cfg=spec.cfg,
                         scheduler=spec.scheduler)


# -- data, loss, evaluation ---------------------------------------------------------------------------------


def training_data(spec: ZooSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits in [-1, 1] as [1797, 1, S, S] (S = image_size) and labels [1797]."""
    images, labels = digits_tensors()  # [1797, 1, 8, 8]
    if spec.image_size != 8:
        images = F.interpolate(images, size=spec.image_size, mode="bilinear", align_corners=False)
    return images, labels


def judge_accuracy(samples: torch.Tensor, labels: torch.Tensor) -> float:
    """The digits classifier's accuracy; samples [N, 1, S, S] are average-pooled to 8x8 first."""
    if samples.shape[-1] != 8:
        samples = F.adaptive_avg_pool2d(samples.float(), 8)
    return class_accuracy(samples.float(), labels)


def loss_on_batch(spec: ZooSpec, model: ZooModel, adapter, x0: torch.Tensor, y: torch.Tensor,
                  gen: torch.Generator, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """MSE of the prediction the adapter's call returns; x0: [B, 1, S, S] (FLUX: packed here), y: [B] digit labels."""
    b = x0.shape[0]
    y = torch.where(torch.rand(b, generator=gen) < spec.cond_dropout, torch.full_like(y, NEGATIVE), y)
    if spec.text:
        cond = model.prompts(y)
    else:
        cond = {"class_labels": y}  # DiT's null class is NEGATIVE = num_embeds_ada_norm; the UNet never drops
    if spec.family == "flux":
        x0 = pack(x0)  # [B, S/2 * S/2, 4]
    noise = torch.randn(x0.shape, generator=gen)
    if spec.objective == "epsilon":  # DDPM noising at integer t, epsilon target
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,), generator=gen)
        a = alphas_cumprod[t].view(b, 1, 1, 1)
        xt, target, timestep = a.sqrt() * x0 + (1 - a).sqrt() * noise, noise, t
    else:  # rectified flow as diffusers' SD3 training: logit-normal sigma, timestep = 1000 sigma, v = noise - x0
        sigma = torch.sigmoid(torch.randn(b, generator=gen))
        s = sigma.view(b, *([1] * (x0.dim() - 1)))
        xt, target, timestep = (1 - s) * x0 + s * noise, noise - x0, sigma * NUM_TRAIN_TIMESTEPS
    pred = adapter._call(xt, timestep, cond)  # [B, 1, S, S]
    return (pred.float() - target).pow(2).mean()


def evaluate(spec: ZooSpec, ema: ZooModel, n: int = 64) -> tuple[float, torch.Tensor]:
    """(class accuracy, samples [n, 1, S, S]) of the EMA model sampled by the adapter at spec's settings."""
    frozen = copy.deepcopy(ema)
    adapter = make_adapter(spec, frozen, "eval")
    inputs = adapter.make_inputs(range(EVAL_SEED_START, EVAL_SEED_START + n))  # label = prompt = seed % 10
    samples = adapter.images(adapter.generate(inputs, sampler_config(spec)))  # [n, 1, S, S] (FLUX: unpacked)
    return judge_accuracy(samples, inputs.labels), samples


# -- writing the folder -------------------------------------------------------------------------------------


def write_folder(spec: ZooSpec, ema: ZooModel, out: Path, trained: dict[str, Any]) -> None:
    """denoiser (fp16 safetensors) + scheduler/ + cond.safetensors + zoo.json; the folder appears whole."""
    from safetensors.torch import save_file

    with atomic_folder(out) as tmp:
        half = nn.Module.to(copy.deepcopy(ema.net), dtype=torch.float16)
        half.save_pretrained(tmp / spec.denoiser_dir, safe_serialization=True)
        inference_scheduler(spec).save_pretrained(tmp / "scheduler")
        if ema.prompts is not None:
            save_file(ema.prompts.file_tensors(), str(tmp / "cond.safetensors"))
        meta = {"classes": "0-9" if not spec.text else None, "cond": "cond.safetensors" if spec.text else None,
                "guidance_scale": spec.guidance_scale, "steps": spec.sample_steps, "cfg": spec.cfg,
                "scheduler": spec.scheduler, "image_size": spec.image_size, "trained": trained, "spec": asdict(spec)}
        (tmp / "zoo.json").write_text(json.dumps(meta, indent=2) + "\n")


# -- training ---------------------------------------------------------------------------------------------


def train(name: str, steps: int, out: Path, ckpt: Path, ckpt_every: int, eval_every: int) -> dict[str, Any]:
    spec = ZOO[name]
    torch.manual_seed(spec.seed)
    images, labels = training_data(spec)
    model = ZooModel(spec)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    adapter = make_adapter(spec, model, name)
    model.train().requires_grad_(True)  # the adapter froze it for inference
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(spec.seed)
    alphas_cumprod = torch.cumprod(1 - torch.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS), 0)  # [1000]
    clock = ckpt.with_suffix(".seconds")  # training seconds survive a resume
    start = load_checkpoint(ckpt, model, ema, opt, gen)
    spent = float(clock.read_text()) if start and clock.exists() else 0.0
    n_params = sum(p.numel() for p in model.net.parameters())
    print(f"{name}: {type(model.net).__name__} {n_params / 1e6:.3f} M parameters, resume at {start}/{steps}", flush=True)
    t0, running = time.time() - spent, None
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = spec.lr * min(1.0, (step + 1) / spec.warmup)
        idx = torch.randint(0, images.shape[0], (spec.batch,), generator=gen)
        loss = loss_on_batch(spec, model, adapter, images[idx], labels[idx].clone(), gen, alphas_cumprod)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, spec.ema, step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        done = step + 1
        if done % 50 == 0:
            print(f"step {done} loss {running:.4f} {done / max(time.time() - t0, 1e-9):.2f} it/s (overall)", flush=True)
        if done % ckpt_every == 0 or done == steps:
            save_checkpoint(ckpt, model, ema, opt, done, gen)
            clock.write_text(f"{time.time() - t0:.1f}")
        if eval_every and done % eval_every == 0 and done != steps:
            print(f"step {done}: class accuracy {evaluate(spec, ema)[0]:.3f}", flush=True)
    seconds = time.time() - t0
    acc, _ = evaluate(spec, ema)
    trained = {"steps": steps, "seconds": round(seconds, 1), "seed": spec.seed, "class_accuracy": acc,
               "params": n_params, "threads": torch.get_num_threads()}
    write_folder(spec, ema, out, trained)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB): {json.dumps(trained)}", flush=True)
    return trained


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(ZOO))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the spec's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="output folder (default zoo/NAME)")
    parser.add_argument("--ckpt", default=None, help="resumable checkpoint (default /tmp/zoo-ckpt/NAME.ckpt)")
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=0, help="class accuracy every N steps (0: only at the end)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = ZOO[args.name]
    steps = args.steps or spec.train_steps
    train(args.name, steps, Path(args.out or ZOO_DIR / args.name), Path(args.ckpt or f"/tmp/zoo-ckpt/{args.name}.ckpt"),
          args.ckpt_every, args.eval_every)


if __name__ == "__main__":
    sys.exit(main())
