"""DDIM sampling with classifier-free guidance for epsilon-predicting models.

One module owns the sampler so that training, profiling, evaluation and the baselines all denoise the
same way. The noise schedule is DiT's (linear betas over 1000 training steps); DDIM uses "trailing"
timestep spacing (the last step lands on t=0's neighbour and the first on t=999), eta = 0.
"""

from __future__ import annotations

from typing import Callable

import torch

# re-exported: the settings live in a torch-free module so the compiler path imports without torch
from schedc.sampler_config import CFG_ORDERS, NUM_TRAIN_TIMESTEPS, CfgMode, SamplerConfig, ddim_timesteps

__all__ = [
    "CFG_ORDERS", "NUM_TRAIN_TIMESTEPS", "CfgMode", "DDIMSampler", "SamplerConfig", "StepCallback",
    "ddim_timesteps", "train_alphas_cumprod",
]

# Called before each step with the step index and the latent [N, C, H, W] entering it: lets the
# profiler know where it is and keep the latents it resumes probe rollouts from.
StepCallback = Callable[[int, torch.Tensor], None]


def train_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, NUM_TRAIN_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)  # [1000]


class DDIMSampler:
    """Deterministic DDIM (eta=0) with optional batched classifier-free guidance."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self.timesteps = config.timesteps()
        self.alphas_cumprod = train_alphas_cumprod()

    def _alpha(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def step(self, x: torch.Tensor, eps: torch.Tensor, index: int) -> torch.Tensor:
        t = self.timesteps[index]
        t_prev = self.timesteps[index + 1] if index + 1 < len(self.timesteps) else -1
        a_t, a_prev = self._alpha(t), self._alpha(t_prev)
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        if self.config.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - a_t**0.5 * x0) / (1 - a_t) ** 0.5
        return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps

    def denoise(
        self,
        model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        labels: torch.Tensor,
        null_label: int,
        on_step: StepCallback | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x: [N, C, H, W] latent before step `start` (noise when 0); labels: [N] class ids.

        Returns the final sample [N, C, H, W].
        """
        g = self.config.guidance_scale
        cfg, uncond_first = self.config.cfg, self.config.cfg_order == "uncond-first"
        null = torch.full_like(labels, null_label)
        for index in range(start, len(self.timesteps)):
            t = self.timesteps[index]
            if on_step is not None:
                on_step(index, x)
            if cfg == "batched":
                x_in = torch.cat([x, x], dim=0)  # [2N, ...]: cond rows then uncond rows (or the reverse)
                y_in = torch.cat([null, labels] if uncond_first else [labels, null], dim=0)
                t_in = torch.full((x_in.shape[0],), t, dtype=torch.long, device=x.device)
                first, second = model(x_in, t_in, y_in).chunk(2, dim=0)
                eps_cond, eps_uncond = (second, first) if uncond_first else (first, second)
                eps = eps_uncond + g * (eps_cond - eps_uncond)
            elif cfg == "two-call":  # one call per branch, cond first (the runtime keys caches per call)
                t_in = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
                eps_cond, eps_uncond = model(x, t_in, labels), model(x, t_in, null)
                eps = eps_uncond + g * (eps_cond - eps_uncond)
            else:
                t_in = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
                eps = model(x, t_in, labels)
            x = self.step(x, eps, index)
        return x
