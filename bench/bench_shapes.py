"""Cache schedules on diffusers models at published widths: measured vs ideal speed, overhead, memory.

    python bench/bench_shapes.py                      # every shape -> bench/results/shapes.md / shapes.json
    python bench/bench_shapes.py --shapes dit-xl,flux-dev --budgets 0.3,0.4,0.5 --repeats 5 --threads 2

Each shape is a diffusers model class built in-process with the width, heads and embedding sizes of a
published config (DiT-XL/2, PixArt-alpha XL-2-512, SD3-medium, FLUX.1-dev, Wan2.1 T2V 1.3B) and fewer
layers, tokens and steps so one shape measures in minutes on 2 CPU cores (every cut is printed and
reported). Weights are random (seeded, nothing is downloaded): speed and memory depend on the shapes, not
the weights, and sample quality is NOT measured here.

Per shape: one profile, DP schedules (FLOP cost) per budget, then in the same interleaved rounds (order
rotating, median of per-round ratios to the bare model): the bare model, an all-compute schedule (the
runtime's overhead), every block skipped (non-block share o; ideal speedup 1 / (o + (1 - o) c) at block
cost c), each schedule and diffusers' TaylorSeer. Memory, from a first untimed round at the profiling
batch: predicted vs measured schedule cache, TaylorSeer's Taylor-factor bytes, and the peak RSS increase
of one generation (Linux VmHWM reset via /proc/self/clear_refs). Ratios on CPU, float32.
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
ACCEPT_BUDGETS = (0.3, 0.5)  # the speed bar is stated for budgets in this range
# full compute every cache_interval steps after the warm-up steps, first-order Taylor forecast between
# (at 10 steps each hooked module computes 6 resp. 4 times: the range of schedc's budgets 0.4-0.6)
TAYLORSEER = ({"cache_interval": 2, "disable_cache_before_step": 2, "max_order": 1},
              {"cache_interval": 4, "disable_cache_before_step": 2, "max_order": 1})
DDIM = ("DDIMScheduler", {"timestep_spacing": "trailing"})
FLOW = ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0})


@dataclass(frozen=True)
class Shape:
    """A published config at cut depth and token count: the class, its arguments and what was cut."""

    key: str
    cls: str
    published: str  # the config the values below are taken from
    config: dict  # constructor arguments: published width, heads, embedding sizes; cut layers and sample size
    scheduler: tuple[str, dict]  # diffusers class and config (a DDIM or flow-matching sampler, timing only)
    image_size: int  # latent side the adapter makes noise for
    cuts: dict  # what -> (published, used); used None = the run's --steps
    text: tuple[int, int, int] = (0, 0, 0)  # random prompt embeddings (tokens, dim, pooled dim)
    acceptance: bool = False  # the acceptance bars are stated for this shape


SHAPES: dict[str, Shape] = {s.key: s for s in (
    Shape("dit-xl", "DiTTransformer2DModel", "DiT-XL/2 (facebook/DiT-XL-2-256 transformer/config.json)",
          dict(num_layers=4, num_attention_heads=16, attention_head_dim=72, patch_size=2, sample_size=16, in_channels=4,
               out_channels=8, norm_type="ada_norm_zero", num_embeds_ada_norm=1000, activation_fn="gelu-approximate",
               attention_bias=True, norm_elementwise_affine=False),
          DDIM, 16, {"layers": (28, 4), "image tokens": (256, 64), "steps": (50, None)}, acceptance=True),
    Shape("pixart-alpha", "PixArtTransformer2DModel", "PixArt-alpha XL-2-512 (PixArt-alpha/PixArt-XL-2-512x512 transformer)",
          dict(num_layers=4, num_attention_heads=16, attention_head_dim=72, patch_size=2, sample_size=16, in_channels=4,
               out_channels=8, cross_attention_dim=1152, caption_channels=4096, attention_bias=True,
               activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
               norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False),
          DDIM, 16, {"layers": (28, 4), "image tokens": (1024, 64), "text tokens": (120, 16), "steps": (20, None)},
          text=(16, 4096, 0)),
    Shape("sd3-medium", "SD3Transformer2DModel", "SD3-medium (stabilityai/stable-diffusion-3-medium-diffusers transformer)",
          dict(num_layers=4, num_attention_heads=24, attention_head_dim=64, patch_size=2, sample_size=16, in_channels=16,
               out_channels=16, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
               pos_embed_max_size=192),
          FLOW, 16, {"layers": (24, 4), "image tokens": (4096, 64), "text tokens": (333, 16), "steps": (28, None)},
          text=(16, 4096, 2048)),
    Shape("flux-dev", "FluxTransformer2DModel", "FLUX.1-dev (black-forest-labs/FLUX.1-dev transformer)",
          dict(num_layers=1, num_single_layers=2, num_attention_heads=24, attention_head_dim=128, patch_size=1,
               in_channels=64, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
               axes_dims_rope=(16, 56, 56)),
          ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                   base_image_seq_len=256, max_image_seq_len=4096)), 8,
          {"double layers": (19, 1), "single layers": (38, 2), "image tokens": (4096, 16), "text tokens": (512, 16),
           "steps": (28, None)}, text=(16, 4096, 768), acceptance=True),
    Shape("wan-1.3b", "WanTransformer3DModel", "Wan2.1 T2V 1.3B (Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer)",
          dict(num_layers=3, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, patch_size=(1, 2, 2),
               in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
          FLOW, 16, {"layers": (30, 3), "video tokens (1 frame)": (32760, 64), "text tokens": (512, 16), "steps": (50, None)},
          text=(16, 4096, 0)),
)}


# -- building -----------------------------------------------------------------------------------------


def build(shape: Shape, steps: int, seed: int = 0) -> tuple[DiffusersAdapter, dict]:
    """The shape's model (seeded random weights) wrapped in schedc's adapter, and what was built."""
    import diffusers

    torch.manual_seed(seed)
    model = getattr(diffusers, shape.cls)(**shape.config).eval()
    # an all-zero linear (adaLN-Zero style init) is re-drawn so every block does work; diffusers' classes use
    # PyTorch's default init today, so this usually touches nothing (the count is reported)
    zero = [m for m in model.modules() if isinstance(m, nn.Linear) and not m.weight.any()]
    for module in zero:
        nn.init.normal_(module.weight, std=0.02)
    conditioning = None
    tokens, dim, pooled = shape.text
    if tokens:  # in memory, one prompt; the unconditional branch gets zeros (the adapter's default)
        g = torch.Generator().manual_seed(seed)
        tensors = {"encoder_hidden_states": torch.randn(1, tokens, dim, generator=g)}
        if pooled:
            tensors["pooled_projections"] = torch.randn(1, pooled, generator=g)
        conditioning = Conditioning(tensors)
    scheduler = getattr(diffusers, shape.scheduler[0])(**shape.scheduler[1])
    adapter = DiffusersAdapter(model, scheduler, shape.key, conditioning=conditioning, image_size=shape.image_size)
    adapter.default_sampler = adapter.default_sampler.with_changes(steps=steps)
    heads, head_dim = shape.config["num_attention_heads"], shape.config["attention_head_dim"]
    return adapter, {"params_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / MIB,
                     "blocks": len(adapter.block_names), "zero_linears_redrawn": len(zero),
                     "width": heads * head_dim, "heads": f"{heads} x {head_dim}"}


def cut_text(cuts: dict) -> str:
    return ", ".join(f"{k} {a} -> {b}" for k, (a, b) in cuts.items())


# -- variants: one way to run a generation, and the cache it holds ---------------------------------------


@dataclass(frozen=True)
class Variant:
    """attach() enters per run (as a deployment attaches per call) and yields (generation context factory,
    cache bytes reader); the reader is called inside the generation context after the last step."""

    name: str
    attach: Callable[[], ContextManager[tuple[Callable[[], ContextManager[None]], Callable[[], int]]]]
    schedule: Any = None
    settings: dict = field(default_factory=dict)


def plain(name: str, context: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> Variant:
    """A variant without caches: the bare model, or (context = blocks skipped) no block work at all."""
    @contextlib.contextmanager
    def attach() -> Iterator:
        with context():
            yield contextlib.nullcontext, lambda: 0
    return Variant(name, attach)


def scheduled(adapter: DiffusersAdapter, name: str, schedule: Any, budget: float | None = None) -> Variant:
    """A schedule replayed by schedc's runtime; its cache is the runtime handle's measured peak."""
    @contextlib.contextmanager
    def attach() -> Iterator:
        with replaying(adapter, schedule) as handle:
            yield contextlib.nullcontext, lambda: int(handle.peak_cache_bytes)
    return Variant(name, attach, schedule, {} if budget is None else {"budget": budget})


def taylor_factor_bytes(model: nn.Module) -> int:
    """Bytes of every Taylor factor (orders 0..max_order of each hooked module's outputs, per cache context)
    that diffusers' TaylorSeer hooks hold: its whole cache, which only grows to this size in a generation."""
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    total = 0
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.hooks.get(_TAYLORSEER_CACHE_HOOK) if registry is not None else None
        for state in (hook.state_manager._state_cache.values() if hook is not None else ()):
            total += sum(t.numel() * t.element_size() for orders in state.taylor_factors.values() for t in orders.values())
    return total


def taylorseer(adapter: DiffusersAdapter, settings: dict, steps: int) -> Variant:
    """diffusers' TaylorSeer through schedc.ecosystem (its own hooks on each block's self-attention and MLP)."""
    @contextlib.contextmanager
    def attach() -> Iterator:
        handle = apply_ecosystem_cache(adapter.model, "taylorseer", settings, num_steps=steps)
        try:
            yield handle.generation, lambda: taylor_factor_bytes(adapter.model)
        finally:
            handle.remove()
    name = f"taylorseer i={settings['cache_interval']} w={settings['disable_cache_before_step']} o={settings['max_order']}"
    return Variant(name, attach, settings=settings)


# -- memory and timing ---------------------------------------------------------------------------------


def _status_bytes(key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def reset_peak_rss() -> int | None:
    """Give freed heap back to the OS, reset the kernel's peak-RSS mark to now and return the RSS in bytes;
    None where Linux's clear_refs peak reset is unavailable (peak memory is then not reported)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_bytes("VmRSS")


def measure(adapter: DiffusersAdapter, variants: list[Variant], inputs: Any, repeats: int, log: Callable[[str], None]) -> dict:
    """Per variant: wall seconds in each timed round, and cache bytes and peak RSS increase from a first
    (warm-up, untimed) round. Each round runs every variant once, order rotating, so the drifts of a busy
    machine cancel in per-round ratios."""
    out = {v.name: {"times": [], "cache_bytes": 0, "peak_rss_bytes": None} for v in variants}

    def run(v: Variant, probe: bool) -> float:
        with v.attach() as (generation, cache_bytes):
            base = reset_peak_rss() if probe else None
            with generation():
                started = time.perf_counter()
                adapter.generate(inputs, adapter.default_sampler)
                elapsed = time.perf_counter() - started
                if probe:
                    out[v.name]["cache_bytes"] = cache_bytes()
            peak = _status_bytes("VmHWM") if base is not None else None
            if peak is not None:
                out[v.name]["peak_rss_bytes"] = peak - base
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
    """Profile, compile, time and account one shape; a class that cannot be built or wrapped is skipped."""
    started = time.time()
    cuts = {k: [a, args.steps if b is None else b] for k, (a, b) in shape.cuts.items()}
    result: dict = {"shape": shape.key, "class": shape.cls, "published": shape.published, "cuts": cuts,
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
        f"{info['params_mib']:.0f} MiB of weights; cut: {cut_text(cuts)}; batch {args.batch} ({rows} rows/call)")
    config = ProfileConfig(calib_samples=args.batch, batch_size=args.batch, max_age=args.steps - 1, probe_steps=args.probe_steps,
                           probe_samples=1, forecast_gap=min(8, args.steps - 1), precisions=(), measure_latency=False)
    profile = profile_model(adapter, sampler, config, progress=False)
    log(f"  profiled in {time.time() - started:.0f}s")
    every = np.ones((args.steps, len(adapter.block_names)), bool)
    variants = [plain("full"), scheduled(adapter, "all-compute", build_schedule(profile, every, {"solver": "all"})),
                plain("skip", lambda: blocks_skipped(adapter, {}))]
    for budget in args.budgets:
        schedule = compile_solution(profile, budget, "dp", cost="flops").schedule
        variants.append(scheduled(adapter, f"schedc b={budget:.2f}", schedule, budget))
    for settings in TAYLORSEER:
        try:
            apply_ecosystem_cache(adapter.model, "taylorseer", settings, num_steps=args.steps).remove()
        except NotApplicable as exc:
            log(f"  taylorseer not applicable: {exc}")
            result["taylorseer_skipped"] = str(exc)
            break
        variants.append(taylorseer(adapter, settings, args.steps))
    inputs = adapter.make_inputs(range(EVAL_SEED_START, EVAL_SEED_START + args.batch))
    result.update(summarize(variants, measure(adapter, variants, inputs, args.repeats, log), profile, args.steps))
    result["seconds"] = time.time() - started
    return result


def summarize(variants: list[Variant], measured: dict, profile: Any, steps: int) -> dict:
    """Speedups (median of per-round ratios to the bare model), ideal speedups, cache and RSS figures, and
    for each TaylorSeer setting the schedule whose measured speed is closest."""
    full = measured["full"]["times"]

    def speedup(name: str) -> float:
        return statistics.median(f / v for f, v in zip(full, measured[name]["times"]))

    o = statistics.median(s / f for s, f in zip(measured["skip"]["times"], full))
    rows = []
    for v in variants:
        m = measured[v.name]
        row = {"variant": v.name, "speedup": speedup(v.name), "cache_mib": m["cache_bytes"] / MIB, "settings": v.settings,
               "peak_rss_mib": None if m["peak_rss_bytes"] is None else m["peak_rss_bytes"] / MIB}
        if v.schedule is not None:
            cost = block_cost(v.schedule, list(profile.block_flops), steps)
            predicted = (v.schedule.provenance.get("predicted") or {}).get("peak_cache_mib")
            row.update(block_cost=cost, ideal=ideal_speedup(cost, o), predicted_cache_mib=predicted)
            row["vs_ideal"] = row["speedup"] / row["ideal"]
            if predicted is not None and (row["cache_mib"] or not predicted):
                row["cache_pred_over_meas"] = predicted / row["cache_mib"] if row["cache_mib"] else 1.0
        rows.append(row)
    ours = [r for r in rows if "budget" in r["settings"]]
    closest = []
    for eco in (r for r in rows if r["variant"].startswith("taylorseer") and ours):
        match = min(ours, key=lambda r: abs(r["speedup"] - eco["speedup"]))
        closest.append({"taylorseer": eco["variant"], "schedc": match["variant"], "speed": [match["speedup"], eco["speedup"]],
                        "cache_mib": [match["cache_mib"], eco["cache_mib"]], "peak_rss_mib": [match["peak_rss_mib"], eco["peak_rss_mib"]],
                        "cache_ratio": match["cache_mib"] / eco["cache_mib"] if eco["cache_mib"] else None})
    return {"full_seconds": statistics.median(full), "nonblock_share": o, "overhead": 1.0 / speedup("all-compute") - 1.0,
            "variants": rows, "closest_speed": closest}


# -- report --------------------------------------------------------------------------------------------


def _f(x: Any, fmt: str = "{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def shape_markdown(r: dict) -> str:
    if "skipped" in r:
        return f"### {r['shape']} — {r['class']}\n\nSkipped: {r['skipped']}\n"
    lines = [f"### {r['shape']} — {r['class']}, {r['published']}", "",
             f"Kept: width {r['width']} ({r['heads']} heads) and the published embedding sizes. Cut: {cut_text(r['cuts'])}. "
             f"Batch {r['batch']} ({r['rows_per_call']} rows per call, cfg {r['sampler']['cfg']}), {r['params_mib']:.0f} MiB "
             f"of weights, {r['zero_linears_redrawn']} zero linear layers re-drawn. Full generation {r['full_seconds']:.2f} s; "
             f"non-block share o = {r['nonblock_share']:.3f}; all-compute overhead {100 * r['overhead']:+.2f}%.", "",
             "| variant | block cost | speedup | ideal | measured/ideal | cache predicted MiB | cache measured MiB | "
             "pred/meas | peak RSS +MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        lines.append(f"| {v['variant']} | {_f(v.get('block_cost'))} | {v['speedup']:.3f} | {_f(v.get('ideal'))} | "
                     f"{_f(v.get('vs_ideal'))} | {_f(v.get('predicted_cache_mib'), '{:.2f}')} | {v['cache_mib']:.2f} | "
                     f"{_f(v.get('cache_pred_over_meas'))} | {_f(v['peak_rss_mib'], '{:.1f}')} |")
    if "taylorseer_skipped" in r:
        lines += ["", f"TaylorSeer not applicable: {r['taylorseer_skipped']}"]
    return "\n".join(lines) + "\n"


def acceptance(results: list[dict]) -> list[str]:
    """One line per acceptance bar on the shapes the bars are stated for (DiT-XL/2, FLUX), then the cache
    memory of schedc vs TaylorSeer at the closest measured speed on every shape."""
    lines = []
    for r in (r for r in results if r.get("acceptance_shape") and "skipped" not in r):
        ours = [v for v in r["variants"] if "budget" in v["settings"]]
        in_range = [v for v in ours if ACCEPT_BUDGETS[0] - 1e-9 <= v["settings"]["budget"] <= ACCEPT_BUDGETS[1] + 1e-9]
        if in_range:
            worst = min(in_range, key=lambda v: v["vs_ideal"])
            lines.append(f"- {r['shape']}: measured >= 0.95 x ideal at budgets 0.3-0.5: "
                         f"{'PASS' if worst['vs_ideal'] >= 0.95 else 'FAIL'} (worst {worst['vs_ideal']:.3f}, {worst['variant']})")
        lines.append(f"- {r['shape']}: all-compute overhead <= 1%: {'PASS' if r['overhead'] <= 0.01 else 'FAIL'} "
                     f"({100 * r['overhead']:+.2f}%)")
        off = [abs(v["cache_pred_over_meas"] - 1) for v in ours if v.get("cache_pred_over_meas") is not None]
        if off:
            lines.append(f"- {r['shape']}: predicted cache memory within 5% of measured: "
                         f"{'PASS' if max(off) <= 0.05 else 'FAIL'} (worst {100 * max(off):.1f}% off)")
    for r in (r for r in results if "skipped" not in r):
        for e in r["closest_speed"]:
            gap = e["speed"][0] / e["speed"][1] - 1  # far from 0: no schedule was measured at TaylorSeer's speed
            lines.append(f"- {r['shape']}: closest speed ({100 * gap:+.0f}%), {e['schedc']} {e['speed'][0]:.2f}x vs "
                         f"{e['taylorseer']} {e['speed'][1]:.2f}x: "
                         f"cache {e['cache_mib'][0]:.2f} vs {e['cache_mib'][1]:.2f} MiB (schedc/TaylorSeer {_f(e['cache_ratio'], '{:.2f}x')}), "
                         f"peak RSS +{_f(e['peak_rss_mib'][0], '{:.1f}')} vs +{_f(e['peak_rss_mib'][1], '{:.1f}')} MiB")
    return lines or ["- no shape was measured"]


def environment(args: argparse.Namespace) -> dict:
    import diffusers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "dtype": "float32", "load_average_at_start": os.getloadavg()[0],
            "steps": args.steps, "batch": args.batch, "repeats": args.repeats, "budgets": args.budgets,
            "peak_rss": "VmHWM reset via /proc/self/clear_refs" if reset_peak_rss() is not None else "unavailable"}


def markdown(env: dict, results: list[dict]) -> str:
    head = ["# Published shapes: measured vs ideal speed, overhead and cache memory", "",
            f"CPU {env['cpu']} ({env['cores']} cores, {env['threads']} threads, load average {env['load_average_at_start']:.1f} "
            f"at start), torch {env['torch']}, diffusers {env['diffusers']}, {env['dtype']}. {env['steps']} sampler steps, "
            f"batch {env['batch']}, {env['repeats']} interleaved rounds (median of per-round ratios to the bare model). "
            "Random weights: quality is not measured. Widths, heads and embedding sizes are published; layers, tokens "
            "and steps are cut as each shape says. Ideal = 1 / (o + (1 - o) x block FLOP cost), o = every block skipped. "
            "Cache: schedc's runtime peak (predicted from the profile); TaylorSeer's Taylor factors (it hooks each "
            "block's self-attention and MLP child: cross-attention, FLUX single blocks' fused MLP and norms still run). "
            f"Peak RSS: increase during one generation ({env['peak_rss']}).", "",
            "## Acceptance", "", *acceptance(results), ""]
    return "\n".join(head) + "\n" + "\n".join(shape_markdown(r) for r in results)


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
    if args.steps < 2:
        parser.error("--steps must be >= 2")
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, flush=True)

    env = environment(args)
    results = []
    md, js = Path(args.out + ".md"), Path(args.out + ".json")
    for name in names:
        results.append(run_shape(SHAPES[name], args, log))
        log(shape_markdown(results[-1]))
        # written after every shape, so a long run interrupted part-way keeps what it measured
        atomic_write_text(md, markdown(env, results))
        atomic_write_text(js, json.dumps({"environment": env, "shapes": results}, indent=1, default=str))
    log("\n".join(acceptance(results)) + f"\nwrote {md} and {js}")


if __name__ == "__main__":
    main()
