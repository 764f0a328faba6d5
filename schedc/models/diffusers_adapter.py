"""Hugging Face diffusers transformers and UNets as schedc adapters.

Blocks are found the way diffusers' own cache hooks find them: the model's top-level ModuleLists named
in diffusers' transformer-block identifiers (`transformer_blocks`, `single_transformer_blocks`,
`blocks`, ...), with each block class's output convention from diffusers' `TransformerBlockRegistry`
(which output index is the hidden states, which the encoder hidden states). UNets are cached
DeepCache-style: each down/mid/up block can only replay its output.

A family (DiT, PixArt, SD3, FLUX, Wan, UNet) says how one denoiser call is made: which keyword
arguments, which conditioning, what timestep value the model receives. The model denoises in its own
input space (latents or pixels) with the folder's own scheduler; decoding is not part of a schedule.
Conventions followed from the diffusers pipelines: PixArt's added_cond_kwargs (size conditioning when
the model uses it) and learned sigma (the variance half of the output is dropped); SD3/FLUX pooled
projections; FLUX packed latents [N, HW/4, C] with img_ids/txt_ids, timestep / 1000 and embedded
guidance (no CFG by default: it is guidance-distilled); Wan 5-D latents [N, C, 1, H, W]; UNet2DModel
class labels (no null class, so no CFG) and UNet2DConditionModel text (SDXL's text_time added
conditions too). Unsupported configurations raise a ModelError naming what to change.
"""

from __future__ import annotations

import contextlib
import inspect
import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from schedc.costmodel import count_flops
from schedc.errors import ModelError
from schedc.models.adapter import GenerationInputs, ModelAdapter
from schedc.models.conditioning import Conditioning
from schedc.sampling import SamplerConfig, StepCallback

# diffusers' names for the ModuleLists of transformer blocks (hooks/_common.py), read at run time when
# available so new model classes are picked up; this copy is the fallback
_BLOCK_LIST_NAMES = ("blocks", "transformer_blocks", "single_transformer_blocks", "layers",
                     "visual_transformer_blocks", "temporal_transformer_blocks")
TWO_STREAMS = ("encoder_hidden_states", "hidden_states")  # SD3 joint / FLUX blocks return (encoder, hidden)
VAE_SCALE = 8  # latent -> pixel size of the diffusers latent models (size conditioning of PixArt and SDXL)
FLUX_GUIDANCE = 3.5  # the embedded guidance FLUX-dev-style models receive (the pipeline's default)


# -- families: how one denoiser call is made -----------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    conditioning: str  # "labels" (class ids), "text" (a Conditioning file) or "none"
    layout: str = "image"  # noise layout: image [N,C,H,W], video [N,C,1,H,W], packed [N,HW/4,C]
    timestep_scale: float = 1.0  # the model receives scheduler timestep * scale (FLUX: 1/1000)
    unet: bool = False  # DeepCache-style output-only blocks
    pooled: bool = False  # text models that also take pooled_projections (SD3, FLUX)
    guided: bool = True  # sampled with classifier-free guidance by default (FLUX is guidance-distilled)


FAMILIES: dict[str, Family] = {
    "DiTTransformer2DModel": Family("dit", "labels"),
    "PixArtTransformer2DModel": Family("pixart", "text"),
    "SD3Transformer2DModel": Family("sd3", "text", pooled=True),
    "FluxTransformer2DModel": Family("flux", "text", layout="packed", timestep_scale=1e-3, pooled=True, guided=False),
    "WanTransformer3DModel": Family("wan", "text", layout="video"),
    "UNet2DModel": Family("unet", "labels", unet=True),
    "UNet2DConditionModel": Family("unet", "text", unet=True),
}


def _registry_outputs(block: nn.Module) -> "tuple[str, ...] | None":
    """The block's outputs spec from diffusers' TransformerBlockRegistry (None: one tensor)."""
    try:
        from diffusers.hooks._helpers import TransformerBlockRegistry

        meta = TransformerBlockRegistry.get(type(block))
    except Exception:
        return None
    if meta.return_encoder_hidden_states_index is None:
        return None
    names = [""] * (max(meta.return_hidden_states_index, meta.return_encoder_hidden_states_index) + 1)
    names[meta.return_hidden_states_index] = meta.hidden_states_argument_name
    names[meta.return_encoder_hidden_states_index] = meta.encoder_hidden_states_argument_name
    return tuple(names)


def find_blocks(model: nn.Module, family: Family | None) -> tuple[tuple[str, ...], tuple]:
    """(block names, outputs spec per block) in execution order."""
    if family is not None and family.unet:
        names = [f"down_blocks.{i}" for i in range(len(model.down_blocks))]
        names += ["mid_block"] if getattr(model, "mid_block", None) is not None else []
        names += [f"up_blocks.{i}" for i in range(len(model.up_blocks))]
        return tuple(names), tuple(() for _ in names)
    try:
        from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS as identifiers
    except Exception:
        identifiers = _BLOCK_LIST_NAMES
    names, outputs = [], []
    for list_name, child in model.named_children():
        if list_name in identifiers and isinstance(child, nn.ModuleList):
            for i, block in enumerate(child):
                names.append(f"{list_name}.{i}")
                outputs.append(_registry_outputs(block))
    return tuple(names), tuple(outputs)


def _family_of(model: nn.Module) -> Family:
    name = type(model).__name__
    family = FAMILIES.get(name)
    if family is None:
        found, _ = find_blocks(model, None)
        hint = f" (found blocks {found[0]}..{found[-1]})" if found else ""
        raise ModelError(
            f"model class {name} is not supported{hint}: schedc knows {', '.join(sorted(FAMILIES))}; "
            "to add it, register a Family in schedc.models.diffusers_adapter.FAMILIES naming how it is called "
            "and, if its blocks are not in top-level ModuleLists named like diffusers' (transformer_blocks, "
            "single_transformer_blocks, blocks), pass block_names=('path.to.block0', ...)"
        )
    return family


def _calculate_shift(seq_len: int, config: Mapping[str, Any]) -> float:
    """FLUX's resolution-dependent timestep shift mu (linear in the token count)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return seq_len * slope + base_shift - slope * base_len


class DiffusersAdapter(ModelAdapter):
    """A diffusers denoiser + its scheduler, denoising in the model's own input space."""

    def __init__(
        self,
        model: nn.Module,
        scheduler: Any,
        name: str,
        *,
        sampler: SamplerConfig | None = None,
        classes: Sequence[int] | None = None,
        conditioning: Conditioning | None = None,
        image_size: int | None = None,
        block_names: Sequence[str] | None = None,
        judge: str | None = None,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.scheduler = scheduler
        self.name = name
        self.family = _family_of(model)
        found, outputs = find_blocks(model, self.family)
        if block_names is not None:
            for block in block_names:
                try:
                    model.get_submodule(block)
                except AttributeError:
                    raise ModelError(f"{type(model).__name__} has no block {block!r} (block_names are dotted submodule paths)") from None
            index = dict(zip(found, outputs))
            found, outputs = tuple(block_names), tuple(index.get(n) for n in block_names)
        if not found:
            raise ModelError(f"no blocks found in {type(model).__name__}: pass block_names=(...)")
        self.block_names, self.block_outputs = found, outputs
        self.config = model.config
        self.judge = judge  # "digits": samples are 8x8 digits the project's classifier can judge
        self.source = {"path": name}
        self.conditioning = conditioning
        self._check_call_convention(model, conditioning)
        # class-conditioned: DiT's label table has a null class after the last one (its CFG branch);
        # UNet2DModel's class embedding has none, so it samples without guidance
        self.num_classes = int(self.config.get("num_embeds_ada_norm") or self.config.get("num_class_embeds") or 0)
        self.null_class = self.num_classes if self.family.name == "dit" else 0
        self.classes = tuple(classes) if classes is not None else tuple(range(self.num_classes))
        self.image_size = int(image_size or self.config.get("sample_size") or 16)
        guided = self.family.guided and (self.family.conditioning == "text" or self.null_class > 0)
        self.default_sampler = sampler or SamplerConfig(
            steps=50, guidance_scale=3.0 if guided else 1.0, cfg="batched" if guided else "none",
            scheduler=type(scheduler).__name__,
        )

    def _check_call_convention(self, model: nn.Module, conditioning: Conditioning | None) -> None:
        """Refuse, with the fix, the configurations this adapter cannot call."""
        cls, fam, config = type(model).__name__, self.family, model.config
        if fam.conditioning == "text":
            if conditioning is None:
                raise ModelError(f"{cls} is text-conditioned: give its prompt embeddings as cond, a safetensors file")
            if fam.pooled and "pooled_projections" not in conditioning.tensors:
                raise ModelError(f"{cls} also takes pooled text embeddings: the conditioning file needs 'pooled_projections' [prompts, dim]")
        if fam.unet:
            extra = config.get("addition_embed_type")
            if extra not in (None, "text_time"):
                raise ModelError(f"{cls} with addition_embed_type={extra!r} is not supported (only None and SDXL's 'text_time')")
            if extra == "text_time" and (conditioning is None or "pooled_projections" not in conditioning.tensors):
                raise ModelError(f"{cls} (SDXL-style) also takes pooled text embeddings: the conditioning file needs 'pooled_projections'")
            if fam.conditioning == "text" and (config.get("class_embed_type") or config.get("num_class_embeds")):
                raise ModelError(f"{cls} with a class embedding is not supported (it needs class_labels as well as text)")
        if fam.name == "wan" and config.get("image_dim"):
            raise ModelError(f"{cls} is an image-to-video model (image_dim set): only text-to-video Wan is supported")

    def class_accuracy(self, samples: torch.Tensor, labels: torch.Tensor) -> float | None:
        if self.judge != "digits":
            return None
        from schedc.datasets import class_accuracy

        return class_accuracy(self.images(samples), labels)

    def images(self, samples: torch.Tensor) -> torch.Tensor:
        """Packed FLUX tokens [N, (S/2)^2, 4C] -> [N, C, S, S] (diffusers' _unpack_latents); video
        [N, C, F, H, W] -> frames folded into channels [N, C*F, H, W]; images as they are."""
        if self.family.layout == "packed":
            n, seq, d = samples.shape
            side, c = int(math.isqrt(seq)), d // 4
            x = samples.reshape(n, side, side, c, 2, 2).permute(0, 3, 1, 4, 2, 5)  # [N, C, S/2, 2, S/2, 2]
            return x.reshape(n, c, side * 2, side * 2)
        if samples.dim() == 5:
            return samples.flatten(1, 2)
        return samples

    # -- inputs ---------------------------------------------------------------------------------------
    def _noise_shape(self) -> tuple[int, ...]:
        c, s = int(self.config.get("in_channels")), self.image_size
        if self.family.layout == "video":
            return (c, 1, s, s)
        if self.family.layout == "packed":
            return ((s // 2) * (s // 2), c)
        return (c, s, s)

    def make_inputs(self, seeds: Sequence[int]) -> GenerationInputs:
        dtype = next(self.model.parameters()).dtype
        noise = torch.stack([torch.randn(self._noise_shape(), generator=torch.Generator().manual_seed(int(s)))
                             for s in seeds]).to(dtype)
        if self.family.conditioning == "labels" and self.classes:
            labels = [self.classes[int(s) % len(self.classes)] for s in seeds]
        elif self.conditioning is not None:
            labels = [int(s) % self.conditioning.prompts for s in seeds]
        else:
            labels = [0] * len(seeds)
        return GenerationInputs(noise, torch.tensor(labels, dtype=torch.long), tuple(int(s) for s in seeds))

    def _condition(self, labels: torch.Tensor, negative: bool) -> dict[str, Any]:
        """Keyword arguments that condition one branch for samples with `labels` [N]."""
        fam = self.family
        if fam.conditioning == "labels":
            if negative:
                if self.null_class == 0:
                    raise ModelError(f"{type(self.model).__name__} has no unconditional class to guide with: sample it with cfg 'none'")
                return {"class_labels": torch.full_like(labels, self.null_class)}
            return {"class_labels": labels} if self.num_classes else {}
        if fam.conditioning == "none" or self.conditioning is None:
            return {}
        dtype = next(self.model.parameters()).dtype
        rows = self.conditioning.rows(labels, negative)
        takes_pooled = fam.pooled or self.config.get("addition_embed_type") == "text_time"
        return {k: v.to(dtype) for k, v in rows.items() if k != "pooled_projections" or takes_pooled}

    # -- one denoiser call ----------------------------------------------------------------------------------
    def _call(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """x: the model's input [N, ...]; t: scheduler timestep, a scalar or one per sample [N] (training).
        Returns the prediction."""
        fam, model = self.family, self.model
        timestep = t * fam.timestep_scale if t.dim() else (t * fam.timestep_scale).expand(x.shape[0])
        kwargs: dict[str, Any] = dict(cond)
        n = x.shape[0]
        height, width = x.shape[-2] * VAE_SCALE, x.shape[-1] * VAE_SCALE  # the image size the latents decode to
        if fam.name == "pixart":
            if getattr(model, "use_additional_conditions", False):  # PixArt-alpha 1024: size conditioning
                kwargs["added_cond_kwargs"] = {
                    "resolution": torch.tensor([height, width], dtype=x.dtype).expand(n, 2),
                    "aspect_ratio": torch.tensor([height / width], dtype=x.dtype).expand(n, 1),
                }
            else:
                kwargs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
        if fam.unet and self.config.get("addition_embed_type") == "text_time":  # SDXL: pooled text + size ids
            text_embeds = kwargs.pop("pooled_projections")
            ids = (self.config["projection_class_embeddings_input_dim"] - text_embeds.shape[-1]) // self.config["addition_time_embed_dim"]
            values = [height, width, 0, 0, height, width] if ids == 6 else [height, width, 0, 0, 6.0][:ids]
            kwargs["added_cond_kwargs"] = {"text_embeds": text_embeds,
                                           "time_ids": torch.tensor(values, dtype=x.dtype).expand(n, len(values))}
        if fam.name == "flux":
            seq, h = x.shape[1], int(math.isqrt(x.shape[1]))
            img_ids = torch.zeros(seq, 3)
            img_ids[:, 1] = torch.arange(h).repeat_interleave(h)
            img_ids[:, 2] = torch.arange(h).repeat(h)
            kwargs["img_ids"] = img_ids.to(x.dtype)
            kwargs["txt_ids"] = torch.zeros(cond["encoder_hidden_states"].shape[1], 3, dtype=x.dtype)
            if self.config.get("guidance_embeds"):
                kwargs["guidance"] = torch.full((n,), FLUX_GUIDANCE, dtype=x.dtype)
        if fam.unet:
            out = model(x, timestep, **kwargs, return_dict=False)[0]
        else:
            out = model(hidden_states=x, timestep=timestep, **kwargs, return_dict=False)[0]
        if out.shape[1] != x.shape[1] and fam.layout != "packed":  # learned sigma: keep the prediction half
            out = out[:, : x.shape[1]]
        return out

    def _context(self, name: str):
        ctx = getattr(self.model, "cache_context", None)
        return ctx(name) if ctx is not None else contextlib.nullcontext()

    def _predict(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, sampler: SamplerConfig) -> torch.Tensor:
        cond = self._condition(labels, negative=False)
        if sampler.cfg == "none" or sampler.guidance_scale == 1.0 and sampler.cfg != "two-call":
            with self._context("cond"):
                return self._call(x, t, cond)
        uncond = self._condition(labels, negative=True)
        if sampler.cfg == "two-call":
            with self._context("cond"):
                c = self._call(x, t, cond)
            with self._context("uncond"):
                u = self._call(x, t, uncond)
        else:
            first, second = (cond, uncond) if sampler.cfg_order == "cond-first" else (uncond, cond)
            merged = {k: _concat(first[k], second[k]) for k in first}
            with self._context("cond_uncond"):
                out = self._call(torch.cat([x, x]), t, merged)
            a, b = out.chunk(2)
            c, u = (a, b) if sampler.cfg_order == "cond-first" else (b, a)
        return u + sampler.guidance_scale * (c - u)

    # -- sampling -----------------------------------------------------------------------------------------
    def _scheduler(self, steps: int, name: str | None = None) -> Any:
        """The model's scheduler set to `steps`; `name` (a sampler's scheduler) another class built from its
        config when diffusers lists it as compatible ("ddim" or the model's own: the model's own)."""
        sched = copy.deepcopy(self.scheduler if name in (None, "ddim", type(self.scheduler).__name__)
                              else _swapped(self.scheduler, name))
        kwargs = {}
        if sched.config.get("use_dynamic_shifting"):
            kwargs["mu"] = _calculate_shift(int(math.prod(self._noise_shape()[:-1]) if self.family.layout == "packed"
                                                else (self.image_size // 2) ** 2), sched.config)
        sched.set_timesteps(steps, **kwargs)
        return sched

    def model_timesteps(self, sampler: SamplerConfig) -> list[float]:
        """The timestep values the denoiser receives at each step (what a schedule is keyed on)."""
        return [float(t) * self.family.timestep_scale for t in self._scheduler(sampler.steps, sampler.scheduler).timesteps]

    def generate(
        self, inputs: GenerationInputs, sampler: SamplerConfig, on_step: StepCallback | None = None, start: int = 0,
        x_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sched = self._scheduler(sampler.steps, sampler.scheduler)
        # a multistep solver (DPM-Solver++, UniPC, PNDM) updates x from the model outputs of earlier steps too,
        # which x alone does not carry: a rollout from step `start` replays steps 0..start-1 from the noise to
        # rebuild that history (without on_step, and x at `start` is still x_start), so it continues the
        # full-compute trajectory exactly instead of restarting the solver at first order
        replay = bool(start) and _keeps_history(sched)
        if start and not replay and hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        # DDIM with clipping: re-derive eps from the clipped x0 (as schedc's own DDIM does); without it
        # diffusers' DDIM step mixes clipped x0 with unclipped eps and samples come out grainy
        step_kwargs = ({"use_clipped_model_output": sampler.clip_sample}
                       if "use_clipped_model_output" in inspect.signature(sched.step).parameters else {})
        x = inputs.noise if x_start is None or replay else x_start
        with torch.inference_mode():
            for index in range(0 if replay else start, sampler.steps):
                t = sched.timesteps[index]
                if index == start and replay:
                    x = inputs.noise if x_start is None else x_start
                if on_step is not None and index >= start:
                    on_step(index, x)
                model_in = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
                pred = self._predict(model_in, t, inputs.labels, sampler)
                x = sched.step(pred, t, x, return_dict=False, **step_kwargs)[0]
        return x

    def example_call(self) -> tuple[tuple, dict]:
        """(input [1, ...], scheduler timestep, conditioning kwargs) of one single-sample call."""
        x = torch.zeros(1, *self._noise_shape(), dtype=next(self.model.parameters()).dtype)
        labels = torch.tensor([self.classes[0] if self.classes else 0])
        return (x, self._scheduler(2).timesteps[0], self._condition(labels, negative=False)), {}

    def flops(self) -> tuple[list[float], float]:
        """The shared counter (schedc.costmodel), run through this adapter's call plumbing."""
        args, kwargs = self.example_call()
        return count_flops(self.model, args, kwargs, self.block_names, call=self._call)


def _swapped(scheduler: Any, name: str) -> Any:
    """`scheduler`'s config under the compatible diffusers class `name` (DDIM <-> DPM-Solver++ <-> Euler)."""
    compatible = {cls.__name__: cls for cls in getattr(scheduler, "compatibles", ())}
    if name not in compatible:
        raise ModelError(f"the model's {type(scheduler).__name__} cannot be swapped for {name!r}; compatible: "
                         f"{', '.join(sorted(compatible)) or 'none'}")
    return compatible[name].from_config(scheduler.config)


def _keeps_history(scheduler: Any) -> bool:
    """Whether the scheduler's step depends on earlier steps' model outputs (diffusers' multistep solvers)."""
    return any(getattr(scheduler, name, None) is not None for name in ("model_outputs", "ets"))


def _concat(a: Any, b: Any) -> Any:
    return torch.cat([a, b]) if isinstance(a, torch.Tensor) else a


__all__ = ["Conditioning", "DiffusersAdapter", "FAMILIES", "Family", "find_blocks", "TWO_STREAMS"]
