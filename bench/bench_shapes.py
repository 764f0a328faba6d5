"""Cache schedules on diffusers models at published widths: measured vs ideal speed, overhead, memory.

    python bench/bench_shapes.py                      # every shape -> bench/results/shapes.md / shapes.json
    python bench/bench_shapes.py --shapes dit-xl,flux-dev --budgets 0.3,0.4,0.5 --repeats 5 --threads 2

Each shape is a diffusers model class built in-process with the width, heads and embedding sizes of a
published config (DiT-XL/2, PixArt-alpha XL-2-512, SD3-medium, FLUX.1-dev, Wan2.1 T2V 1.3B) and fewer
layers, tokens and sampler steps, so one shape measures in minutes on 2 CPU cores; every cut is printed
and written to the report. Weights are random (seeded; nothing is downloaded): speed and memory depend on
the shapes, not the weights, and the quality of the samples is NOT measured here.

Per shape: one profile (one calibration batch), DP schedules (FLOP cost) at each budget, and, timed in
the same interleaved rounds (order rotating, median of per-round ratios to the bare model): the bare
model, an all-compute schedule (the runtime's own overhead), every block skipped (the non-block share o;
ideal speedup at block cost c = 1 / (o + (1 - o) c)), each schedule, and diffusers' TaylorSeer cache.
Memory, from the first (warm-up) round: each schedule's predicted peak cache (the profile's tensor sizes
at the profiling batch, which is the timed batch) vs the runtime's measured peak; TaylorSeer's cache =
the bytes of the Taylor factors its hooks hold at the end of a generation; and the process's peak RSS
increase during one generation of each variant (Linux: VmHWM reset through /proc/self/clear_refs after
malloc_trim; the report says when that is unavailable). Ratios on CPU, float32.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.compile import compile_solution  # noqa: E402
from schedc.ecosystem import NotApplicable, apply_ecosystem_cache  # noqa: E402
from schedc.errors import SchedcError  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, block_cost, blocks_skipped, replaying  # noqa: E402
from schedc.metrics import ideal_speedup  # noqa: E402
from schedc.models.diffusers_adapter import Conditioning, DiffusersAdapter  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.schedule import build_schedule  # noqa: E402

MIB = 2 ** 20
ACCEPT_BUDGETS = (0.3, 0.5)  # the speed bar holds at budgets in this range
# full compute every cache_interval steps after the warm-up steps; first-order Taylor forecast between
TAYLORSEER = ({"cache_interval": 2, "disable_cache_before_step": 2, "max_order": 1},
              {"cache_interval": 3, "disable_cache_before_step": 2, "max_order": 1})


def _ddim() -> Any:
    import diffusers
    return diffusers.DDIMScheduler(timestep_spacing="trailing")


def _flow(**config: Any) -> Any:
    import diffusers
    return diffusers.FlowMatchEulerDiscreteScheduler(**config)


@dataclass(frozen=True)
class Shape:
    """A published config at cut depth and token count: the class, its arguments and what was cut."""

    key: str
    cls: str
    published: str  # the config whose values are written below
    config: dict  # constructor arguments: published width/heads/embedding sizes, cut layers/sample size
    scheduler: Callable[[], Any]
    image_size: int  # latent side the adapter makes noise for
    cuts: dict  # what -> (published, used)
    text: tuple[int, int, int] = (0, 0, 0)  # random prompt embeddings: (tokens, dim, pooled dim)
    acceptance: bool = False  # the acceptance bars are stated for this shape


SHAPES: dict[str, Shape] = {s.key: s for s in (
    Shape("dit-xl", "DiTTransformer2DModel", "DiT-XL/2 (facebook/DiT-XL-2-256 transformer/config.json)",
          dict(num_layers=4, num_attention_heads=16, attention_head_dim=72, patch_size=2, sample_size=16, in_channels=4,
               out_channels=8, norm_type="ada_norm_zero", num_embeds_ada_norm=1000, activation_fn="gelu-approximate",
               attention_bias=True, norm_elementwise_affine=False),
          _ddim, 16, {"layers": (28, 4), "image tokens": (256, 64), "steps": (50, None)}, acceptance=True),
    Shape("pixart-alpha", "PixArtTransformer2DModel", "PixArt-alpha XL-2-512 (PixArt-alpha/PixArt-XL-2-512x512 transformer)",
          dict(num_layers=4, num_attention_heads=16, attention_head_dim=72, patch_size=2, sample_size=16, in_channels=4,
               out_channels=8, cross_attention_dim=1152, caption_channels=4096, attention_bias=True,
               activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
               norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False),
          _ddim, 16, {"layers": (28, 4), "image tokens": (1024, 64), "text tokens": (120, 16), "steps": (20, None)},
          text=(16, 4096, 0)),
    Shape("sd3-medium", "SD3Transformer2DModel", "SD3-medium (stabilityai/stable-diffusion-3-medium-diffusers transformer)",
          dict(num_layers=4, num_attention_heads=24, attention_head_dim=64, patch_size=2, sample_size=16, in_channels=16,
               out_channels=16, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
               pos_embed_max_size=192),
          lambda: _flow(shift=3.0), 16,
          {"layers": (24, 4), "image tokens": (4096, 64), "text tokens": (333, 16), "steps": (28, None)},
          text=(16, 4096, 2048)),
    Shape("flux-dev", "FluxTransformer2DModel", "FLUX.1-dev (black-forest-labs/FLUX.1-dev transformer)",
          dict(num_layers=1, num_single_layers=2, num_attention_heads=24, attention_head_dim=128, patch_size=1,
               in_channels=64, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
               axes_dims_rope=(16, 56, 56)),
          lambda: _flow(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                        base_image_seq_len=256, max_image_seq_len=4096), 8,
          {"double layers": (19, 1), "single layers": (38, 2), "image tokens": (4096, 16), "text tokens": (512, 16),
           "steps": (28, None)}, text=(16, 4096, 768), acceptance=True),
    Shape("wan-1.3b", "WanTransformer3DModel", "Wan2.1 T2V 1.3B (Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer)",
          dict(num_layers=3, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, patch_size=(1, 2, 2),
               in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
          lambda: _flow(shift=3.0), 16,
          {"layers": (30, 3), "video tokens (1 frame)": (32760, 64), "text tokens": (512, 16), "steps": (50, None)},
          text=(16, 4096, 0)),
)}


# -- building -----------------------------------------------------------------------------------------


def _redraw_zero_linears(model: nn.Module) -> int:
    """Re-draw any all-zero linear layer (adaLN-Zero style init) so every block does work; diffusers'
    classes currently use PyTorch's default init, so this usually touches nothing (the count is reported)."""
    touched = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.any():
            nn.init.normal_(module.weight, std=0.02)
            touched += 1
    return touched


def build(shape: Shape, steps: int, seed: int = 0) -> tuple[DiffusersAdapter, dict]:
    """The shape's model (seeded random weights) wrapped in schedc's adapter, and what was built."""
    import diffusers

    torch.manual_seed(seed)
    model = getattr(diffusers, shape.cls)(**shape.config).eval()
    redrawn = _redraw_zero_linears(model)
    conditioning = None
    tokens, dim, pooled = shape.text
    if tokens:
        g = torch.Generator().manual_seed(seed)
        tensors = {"encoder_hidden_states": torch.randn(1, tokens, dim, generator=g)}
        if pooled:
            tensors["pooled_projections"] = torch.randn(1, pooled, generator=g)
        conditioning = Conditioning(tensors)
    adapter = DiffusersAdapter(model, shape.scheduler(), shape.key, conditioning=conditioning, image_size=shape.image_size)
    adapter.default_sampler = adapter.default_sampler.with_changes(steps=steps)
    info = {"params_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / MIB,
            "blocks": len(adapter.block_names), "zero_linears_redrawn": redrawn,
            "width": int(shape.config["num_attention_heads"] * shape.config["attention_head_dim"]),
            "heads": f"{shape.config['num_attention_heads']} x {shape.config['attention_head_dim']}"}
    return adapter, info


def cut_text(shape: Shape, steps: int) -> str:
    """'layers 28 -> 4, ..., steps 50 -> 10' (the steps cut is the run's --steps)."""
    return ", ".join(f"{k} {a} -> {steps if b is None else b}" for k, (a, b) in shape.cuts.items())


# -- variants: one way to run a generation, with its cache accounting ---------------------------------


@dataclass(frozen=True)
class Attached:
    generation: Callable[[], ContextManager[None]]  # wraps one whole generation
    cache_bytes: Callable[[], int]  # cache bytes held, read inside the generation after the last step


@dataclass(frozen=True)
class Variant:
    name: str
    attach: Callable[[], ContextManager[Attached]]  # attached per run, as a deployment would per call
    schedule: Any = None
    settings: dict = field(default_factory=dict)


def bare(name: str = "full") -> Variant:
    @contextlib.contextmanager
    def attach() -> Iterator[Attached]:
        yield Attached(contextlib.nullcontext, lambda: 0)
    return Variant(name, attach)


def skipped(adapter: DiffusersAdapter) -> Variant:
    """Every block returns its input: what a generation costs without block work (the non-block share)."""
    @contextlib.contextmanager
    def attach() -> Iterator[Attached]:
        with blocks_skipped(adapter, {}):
            yield Attached(contextlib.nullcontext, lambda: 0)
    return Variant("skip", attach)


def scheduled(adapter: DiffusersAdapter, name: str, schedule: Any) -> Variant:
    """A schedule replayed by schedc's runtime; its cache is the handle's measured peak."""
    @contextlib.contextmanager
    def attach() -> Iterator[Attached]:
        with replaying(adapter, schedule) as handle:
            yield Attached(contextlib.nullcontext, lambda: int(handle.peak_cache_bytes))
    return Variant(name, attach, schedule)


def taylor_factor_bytes(model: nn.Module) -> int:
    """Bytes of every Taylor factor (orders 0..max_order of each hooked module's outputs, per cache context)
    held by diffusers' TaylorSeer hooks: its whole cache, which only grows to this size during a generation."""
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    total = 0
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.hooks.get(_TAYLORSEER_CACHE_HOOK) if registry is not None else None
        for state in (hook.state_manager._state_cache.values() if hook is not None else ()):
            total += sum(t.numel() * t.element_size() for orders in state.taylor_factors.values() for t in orders.values())
    return total


def taylorseer(adapter: DiffusersAdapter, settings: dict, steps: int) -> Variant:
    """diffusers' TaylorSeer (through schedc.ecosystem: its own hooks on each block's attention and MLP)."""
    @contextlib.contextmanager
    def attach() -> Iterator[Attached]:
        handle = apply_ecosystem_cache(adapter.model, "taylorseer", settings, num_steps=steps)
        try:
            yield Attached(handle.generation, lambda: taylor_factor_bytes(adapter.model))
        finally:
            handle.remove()
    name = f"taylorseer i={settings['cache_interval']} w={settings['disable_cache_before_step']} o={settings['max_order']}"
    return Variant(name, attach, settings=settings)


# -- memory and timing ---------------------------------------------------------------------------------


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> int | None:
    """Return freed heap to the OS, reset the kernel's peak-RSS mark to now and return the RSS (bytes);
    None where Linux's clear_refs peak reset is unavailable (then peak memory is not reported)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


def measure(adapter: DiffusersAdapter, variants: list[Variant], inputs: Any, repeats: int, log: Callable[[str], None]) -> dict:
    """Per variant: wall seconds of each timed round, and cache bytes and peak RSS increase from the first
    (warm-up, untimed) round. Every round runs each variant once, order rotating, so drifts of a busy
    machine cancel in per-round ratios."""
    sampler = adapter.default_sampler
    out = {v.name: {"times": [], "cache_bytes": 0, "peak_rss_bytes": None} for v in variants}

    def run(v: Variant, probe: bool) -> float:
        with v.attach() as attached:
            base = reset_peak_rss() if probe else None
            with attached.generation():
                started = time.perf_counter()
                adapter.generate(inputs, sampler)
                elapsed = time.perf_counter() - started
                if probe:
                    out[v.name]["cache_bytes"] = attached.cache_bytes()
            peak = _status_kib("VmHWM") if base is not None else None
            if peak is not None:
                out[v.name]["peak_rss_bytes"] = peak * 1024 - base
        return elapsed

    for v in variants:
        run(v, probe=True)
    for r in range(repeats):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            out[v.name]["times"].append(run(v, probe=False))
        log(f"  round {r + 1}/{repeats}: full {out['full']['times'][-1]:.2f}s")
    return out


# -- one shape -----------------------------------------------------------------------------------------


def run_shape(shape: Shape, args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    """Profile, compile, time and account one shape; a class schedc or the ecosystem cannot wrap is skipped."""
    started = time.time()
    result: dict = {"shape": shape.key, "class": shape.cls, "published": shape.published,
                    "cuts": {k: [a, args.steps if b is None else b] for k, (a, b) in shape.cuts.items()},
                    "acceptance_shape": shape.acceptance}
    try:
        adapter, info = build(shape, args.steps)
    except (SchedcError, TypeError, ValueError, AttributeError) as exc:
        log(f"{shape.key}: skipped, cannot be built and wrapped: {exc}")
        return {**result, "skipped": str(exc)}
    sampler = adapter.default_sampler
    rows = args.batch * (2 if sampler.cfg == "batched" else 1)
    result.update(info, batch=args.batch, rows_per_call=rows, sampler=sampler.to_dict(), blocks=list(adapter.block_names))
    log(f"{shape.key}: {shape.cls}, {info['blocks']} blocks, width {info['width']} ({info['heads']} heads), "
        f"{info['params_mib']:.0f} MiB of weights; cut: {cut_text(shape, args.steps)}; batch {args.batch} ({rows} rows/call)")
    config = ProfileConfig(calib_samples=args.batch, batch_size=args.batch, max_age=args.steps - 1, probe_steps=args.probe_steps,
                           probe_samples=1, forecast_gap=min(8, args.steps - 1), precisions=(), measure_latency=False)
    profile = profile_model(adapter, sampler, config, progress=False)
    log(f"  profiled in {time.time() - started:.0f}s")
    variants = [bare(), scheduled(adapter, "all-compute", build_schedule(
        profile, np.ones((args.steps, len(adapter.block_names)), bool), {"solver": "all"})), skipped(adapter)]
    for budget in args.budgets:
        schedule = compile_solution(profile, budget, "dp", cost="flops").schedule
        variants.append(scheduled(adapter, f"schedc b={budget:.2f}", schedule))
    for settings in TAYLORSEER:
        try:
            apply_ecosystem_cache(adapter.model, "taylorseer", settings, num_steps=args.steps).remove()
        except NotApplicable as exc:
            result["taylorseer_skipped"] = str(exc)
            log(f"  taylorseer not applicable: {exc}")
            break
        variants.append(taylorseer(adapter, settings, args.steps))
    inputs = adapter.make_inputs(range(EVAL_SEED_START, EVAL_SEED_START + args.batch))
    measured = measure(adapter, variants, inputs, args.repeats, log)
    result.update(summarize(variants, measured, profile, args.steps))
    result["seconds"] = time.time() - started
    return result


def summarize(variants: list[Variant], measured: dict, profile: Any, steps: int) -> dict:
    """Speedups (median per-round ratio to the bare model), ideal speedups, cache and RSS figures."""
    full = measured["full"]["times"]

    def speedup(name: str) -> float:
        return statistics.median(f / v for f, v in zip(full, measured[name]["times"]))

    o = statistics.median(s / f for s, f in zip(measured["skip"]["times"], full))
    rows = []
    for v in variants:
        m = measured[v.name]
        row = {"variant": v.name, "speedup": speedup(v.name), "cache_mib": m["cache_bytes"] / MIB,
               "peak_rss_mib": None if m["peak_rss_bytes"] is None else m["peak_rss_bytes"] / MIB}
        if v.schedule is not None:
            cost = block_cost(v.schedule, list(profile.block_flops), steps)
            predicted = (v.schedule.provenance.get("predicted") or {}).get("peak_cache_mib")
            row.update(block_cost=cost, ideal=ideal_speedup(cost, o), predicted_cache_mib=predicted)
            row["vs_ideal"] = row["speedup"] / row["ideal"]
            if predicted is not None:
                row["cache_pred_over_meas"] = (predicted / row["cache_mib"]) if row["cache_mib"] else (1.0 if not predicted else None)
        if v.settings:
            row["settings"] = v.settings
        rows.append(row)
    ours = [r for r in rows if r["variant"].startswith("schedc")]
    equal = []
    for eco in (r for r in rows if r["variant"].startswith("taylorseer")):
        if ours:
            match = min(ours, key=lambda r: abs(r["speedup"] - eco["speedup"]))
            equal.append({"taylorseer": eco["variant"], "schedc": match["variant"], "speed": [match["speedup"], eco["speedup"]],
                          "cache_mib": [match["cache_mib"], eco["cache_mib"]], "peak_rss_mib": [match["peak_rss_mib"], eco["peak_rss_mib"]],
                          "cache_ratio": match["cache_mib"] / eco["cache_mib"] if eco["cache_mib"] else None})
    return {"full_seconds": statistics.median(full), "nonblock_share": o, "overhead": 1.0 / speedup("all-compute") - 1.0,
            "variants": rows, "equal_speed": equal}


# -- report --------------------------------------------------------------------------------------------


def _f(x: Any, fmt: str = "{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def shape_markdown(r: dict, steps: int) -> str:
    if "skipped" in r:
        return f"### {r['shape']} — {r['class']}\n\nskipped: {r['skipped']}\n"
    cuts = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in r["cuts"].items())
    lines = [f"### {r['shape']} — {r['class']}, {r['published']}", "",
             f"Kept: width {r['width']} ({r['heads']} heads) and the published embedding sizes. Cut: {cuts}. "
             f"Batch {r['batch']} ({r['rows_per_call']} rows per call, cfg {r['sampler']['cfg']}), {r['params_mib']:.0f} MiB "
             f"of weights, {r['zero_linears_redrawn']} zero linear layers re-drawn. Full generation {r['full_seconds']:.2f} s; "
             f"non-block share o = {r['nonblock_share']:.3f}; all-compute overhead {100 * r['overhead']:+.2f}%.", "",
             "| variant | block cost | speedup | ideal | measured/ideal | cache predicted MiB | cache measured MiB | "
             "pred/meas | peak RSS +MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        lines.append(f"| {v['variant']} | {_f(v.get('block_cost'))} | {v['speedup']:.3f} | {_f(v.get('ideal'))} | "
                     f"{_f(v.get('vs_ideal'))} | {_f(v.get('predicted_cache_mib'), '{:.2f}')} | {v['cache_mib']:.2f} | "
                     f"{_f(v.get('cache_pred_over_meas'))} | {_f(v['peak_rss_mib'], '{:.1f}')} |")
    lines.append("")
    for e in r["equal_speed"]:
        lines.append(f"- equal speed: {e['schedc']} ({e['speed'][0]:.2f}x) vs {e['taylorseer']} ({e['speed'][1]:.2f}x): "
                     f"cache {e['cache_mib'][0]:.2f} vs {e['cache_mib'][1]:.2f} MiB "
                     f"(schedc/TaylorSeer {_f(e['cache_ratio'], '{:.2f}x')}), peak RSS +{_f(e['peak_rss_mib'][0], '{:.1f}')} vs "
                     f"+{_f(e['peak_rss_mib'][1], '{:.1f}')} MiB")
    if "taylorseer_skipped" in r:
        lines.append(f"- TaylorSeer not applicable: {r['taylorseer_skipped']}")
    return "\n".join(lines) + "\n"


def acceptance(results: list[dict]) -> list[str]:
    """One line per acceptance bar, over the shapes the bars are stated for (DiT-XL/2, FLUX)."""
    shapes = [r for r in results if r.get("acceptance_shape") and "skipped" not in r]
    if not shapes:
        return ["- acceptance: no acceptance shape (dit-xl, flux-dev) was measured"]
    lines = []
    for r in shapes:
        ours = [v for v in r["variants"] if v["variant"].startswith("schedc")]
        in_range = [v for v in ours if ACCEPT_BUDGETS[0] - 1e-9 <= float(v["variant"].split("=")[1]) <= ACCEPT_BUDGETS[1] + 1e-9]
        if in_range:
            worst = min(in_range, key=lambda v: v["vs_ideal"])
            lines.append(f"- {r['shape']}: measured >= 0.95 x ideal at budgets 0.3-0.5: "
                         f"{'PASS' if worst['vs_ideal'] >= 0.95 else 'FAIL'} (worst {worst['vs_ideal']:.3f} at {worst['variant']})")
        lines.append(f"- {r['shape']}: all-compute overhead <= 1%: {'PASS' if r['overhead'] <= 0.01 else 'FAIL'} "
                     f"({100 * r['overhead']:+.2f}%)")
        off = [abs(v["cache_pred_over_meas"] - 1) for v in ours if v.get("cache_pred_over_meas") is not None]
        if off:
            lines.append(f"- {r['shape']}: predicted cache memory within 5% of measured: "
                         f"{'PASS' if max(off) <= 0.05 else 'FAIL'} (worst {100 * max(off):.1f}% off)")
    for r in (r for r in results if "skipped" not in r):
        for e in r["equal_speed"]:
            lines.append(f"- {r['shape']}: at equal speed schedc's cache is {_f(e['cache_ratio'], '{:.2f}x')} TaylorSeer's "
                         f"({e['schedc']} vs {e['taylorseer']}, {e['cache_mib'][0]:.2f} vs {e['cache_mib'][1]:.2f} MiB)")
    return lines


def environment(args: argparse.Namespace) -> dict:
    import diffusers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "dtype": "float32", "load_average_at_start": os.getloadavg()[0],
            "steps": args.steps, "batch": args.batch, "repeats": args.repeats, "budgets": args.budgets,
            "peak_rss": "VmHWM reset via /proc/self/clear_refs" if reset_peak_rss() is not None else "unavailable"}


def markdown(env: dict, results: list[dict]) -> str:
    head = ["# Published shapes: measured vs ideal speed, overhead and cache memory", "",
            f"CPU {env['cpu']} ({env['cores']} cores, {env['threads']} threads, load average {env['load_average_at_start']:.1f} "
            f"at start), torch {env['torch']}, diffusers {env['diffusers']}, {env['dtype']}. {env['steps']} sampler steps, "
            f"batch {env['batch']}, {env['repeats']} interleaved rounds (median of per-round ratios). Random weights: "
            "quality is not measured. Widths and heads are the published ones; layers, tokens and steps are cut as "
            f"each shape says. Peak RSS: {env['peak_rss']}.", "", "## Acceptance", "", *acceptance(results), ""]
    return "\n".join(head) + "\n" + "\n".join(shape_markdown(r, env["steps"]) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--budgets", default="0.2,0.3,0.4,0.5,0.6")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1, help="samples per generation (profiled and timed alike)")
    parser.add_argument("--probe-steps", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "shapes"), help="writes OUT.md and OUT.json")
    args = parser.parse_args()
    args.budgets = [float(b) for b in args.budgets.split(",")]
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, flush=True)

    env = environment(args)
    results = []
    for name in names:
        results.append(run_shape(SHAPES[name], args, log))
        print(shape_markdown(results[-1], args.steps), flush=True)
    md, js = Path(args.out + ".md"), Path(args.out + ".json")
    atomic_write_text(md, markdown(env, results))
    atomic_write_text(js, json.dumps({"environment": env, "shapes": results}, indent=1, default=str))
    print("\n".join(acceptance(results)))
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
