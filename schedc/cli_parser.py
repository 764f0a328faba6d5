"""schedc's argument parser: every subcommand's options and the value parsers behind them.

Kept apart from the commands (schedc.cli) so each stays readable; a usage error is one line, exit code 2.
Each subcommand records its name (`command_name`); schedc.cli.COMMANDS maps it to the function that runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from schedc.errors import SchedcError

PROFILES = Path("profiles")
SCHEDULES = Path("schedules")
DESCRIPTION = """\
schedc compiles a static cache schedule for a diffusion model: measure once (profile), solve for a
compute budget (solve), check quality and speed (eval), look at it (show).

  schedc profile                      # profile the bundled reference DiT -> profiles/reference-dit.profile.npz
  schedc solve --budget 0.4           # searched schedule at 40% of block compute -> schedules/reference-dit-b0.40.yaml
  schedc eval schedules/reference-dit-b0.40.yaml --baselines
  schedc show schedules/reference-dit-b0.40.yaml
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (exit code 2 as usual)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"schedc: error: {message} (see `{self.prog} --help`)\n")


def _budget(text: str) -> float:
    from schedc.problem import check_budget

    try:
        return check_budget(text)
    except SchedcError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _options(text: str) -> set[str]:
    return {x.strip() for x in text.split(",") if x.strip()}


def _precisions(text: str) -> tuple[str, ...]:
    return () if text.strip() in ("", "none") else tuple(x.strip() for x in text.split(",") if x.strip())


def _depends(text: str) -> tuple[tuple[int, int], ...]:
    """'0>1>2,4>5' -> ((0, 1), (1, 2), (4, 5)): chains of blocks, each refresh pulling the next."""
    try:
        chains = [[int(b) for b in chain.split(">")] for chain in text.split(",") if chain]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depends takes chains like 0>1>2,4>5, got {text!r}") from None
    if any(len(chain) < 2 for chain in chains):
        raise argparse.ArgumentTypeError(f"--depends takes chains like 0>1>2,4>5, got {text!r}")
    return tuple((a, b) for chain in chains for a, b in zip(chain, chain[1:]))


def _steps(text: str) -> "str | int":
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps must be auto or a whole number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"steps must be in 1..1000, got {value}")
    return value


def _numbers(kind, what: str, low: float, high: float):
    """'1.5,3,5' -> (1.5, 3.0, 5.0): one or more values in [low, high], distinct."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} takes a number or a comma-separated list, got {text!r}") from None
        if not all(low <= v <= high for v in values) or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{what} values must be distinct and in [{low:g}, {high:g}], got {text!r}")
        return values
    return parse


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    return i, n




def _add_eval_options(p: argparse.ArgumentParser, repeats: int) -> None:
    """Held-out evaluation settings shared by eval and compare."""
    p.add_argument("--samples", type=int, default=64, help="held-out samples for quality (default 64)")
    p.add_argument("--seed-start", type=int, default=1_000_000, help="first evaluation seed (default 1000000)")
    p.add_argument("--timing-batch", type=int, default=16, help="samples per timed generation (default 16)")
    p.add_argument("--repeats", type=int, default=repeats, help=f"interleaved timing rounds, median (default {repeats})")


def parse_classes(text: str) -> tuple[int, ...]:
    """'0,1,2', '0-9' or '0-3,7' -> class ids (ranges inclusive); '@FILE': the same, from a text file
    (commas or whitespace between entries)."""
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                body = fh.read(1 << 20)  # a calibration set's ids, bounded
        except (OSError, UnicodeError) as exc:
            raise argparse.ArgumentTypeError(f"--classes {text}: cannot read the file ({type(exc).__name__})") from None
        text = ",".join(body.split()).replace(",,", ",")
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isascii() or not lo.isdigit() or (sep and not (hi.isascii() and hi.isdigit())) or (sep and int(hi) < int(lo)):
            raise argparse.ArgumentTypeError(f"--classes takes class ids like 0,1,2 or ranges like 0-9, got {text!r}")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    if not out:
        raise argparse.ArgumentTypeError(f"--classes takes class ids like 0,1,2 or ranges like 0-9, got {text!r}")
    return tuple(out)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """How to condition a diffusers model (recorded in the profile, so later commands reuse them)."""
    p.add_argument("--classes", type=parse_classes, default=None, metavar="IDS",
                   help="class ids the samples cycle through, e.g. 0-9 or 0-3,7, or @FILE with such entries "
                        "(class-conditioned models; default: all)")
    p.add_argument("--cond", default=None, metavar="FILE",
                   help="prompt embeddings for text-conditioned models: a safetensors file with encoder_hidden_states "
                        "[prompts, tokens, dim] (+ pooled_projections, negative_* for the unconditional branch)")


def build_parser() -> argparse.ArgumentParser:
    from schedc.objectives import OBJECTIVES

    parser = _Parser(prog="schedc", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("profile", help="measure per-block, per-step reuse error, propagation gain and FLOPs")
    p.add_argument("model", nargs="?", default=None,
                   help="model to profile: reference-dit (default), digits-dit (a bundled diffusers DiT), or a local "
                        "diffusers folder (model_index.json, or transformer/ or unet/ plus scheduler/); never downloads")
    _add_model_options(p)
    p.add_argument("--cfg", choices=("batched", "two-call", "none"), default=None,
                   help="classifier-free guidance: [cond, uncond] in one call, two calls per step "
                        "(diffusers' cache_context), or none (default: the model's)")
    p.add_argument("--cfg-order", choices=("cond-first", "uncond-first"), default=None,
                   help="row order of a batched CFG call (default cond-first)")
    p.add_argument("--steps", type=_numbers(int, "steps", 1, 1000), default=None, metavar="N[,N...]",
                   help="sampling steps (default: the model's, 50); several (25,50) record one set of tables per setting")
    p.add_argument("--guidance-scale", type=_numbers(float, "guidance scale", 0.0, 100.0), default=None, metavar="G[,G...]",
                   help="classifier-free guidance scale (default: the model's); several (1.5,3,5) record one set of "
                        "tables per setting in the same file, for `schedc solve --for mean|worst`")
    p.add_argument("--calib", type=int, default=32, help="calibration samples, seeds 0..N-1 (default 32)")
    p.add_argument("--batch-size", type=int, default=16, help="calibration samples per rollout (default 16)")
    p.add_argument("--max-age", type=int, default=24, help="longest cache reuse measured, in steps (default 24)")
    p.add_argument("--probe-steps", type=int, default=10, help="steps probed for the propagation gain (default 10)")
    p.add_argument("--probe-samples", type=int, default=4, help="samples used by the gain probes (default 4)")
    p.add_argument("--precisions", type=_precisions, default=("int8", "fp8", "int4w"),
                   help="reduced precisions whose error is measured, comma-separated, or 'none' (default int8,fp8,int4w)")
    p.add_argument("--forecast-gap", type=int, default=8, help="forecast reuse measured from computes at most this far apart (default 8)")
    p.add_argument("--measure-latency", dest="measure_latency", action="store_true", default=True,
                   help="time every block at every option on this device for --cost latency (the default)")
    p.add_argument("--no-latency", dest="measure_latency", action="store_false",
                   help="do not time blocks at each option on this device (then solve's cost model is FLOPs)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N", help="profile calibration seeds I, I+N, ... (merge with `schedc merge`)")
    p.add_argument("-o", "--output", help="profile file (default profiles/<model>.profile.npz)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(command_name="profile")

    p = sub.add_parser("merge", help="combine profiles of disjoint calibration shards exactly")
    p.add_argument("profiles", nargs="+", help="shard profiles")
    p.add_argument("-o", "--output", required=True, help="merged profile file")
    p.set_defaults(command_name="merge")

    p = sub.add_parser("solve", help="compile a schedule for a compute budget")
    p.add_argument("profile", nargs="?", default=str(PROFILES / "reference-dit.profile.npz"),
                   help="profile file (default profiles/reference-dit.profile.npz)")
    p.add_argument("--budget", type=_budget, required=True, help="block compute as a fraction of full, in (0, 1] (in block FLOPs, or measured block time under "
                        "the latency cost model; a schedule the search puts at fewer steps meets it in ideal time)")
    p.add_argument("--solver", default="auto", help="auto (default: search when the profiled model loads here, else dp), "
                   "search (closed loop: DP and structured families as warm starts, local search on the final-sample "
                   "error measured on calibration seeds), dp (exact for the additive error model, joint decisions "
                   "included), ilp (CP-SAT with deployment constraints), learned (router trained "
                   "through rollouts; residual only), uniform or delta-dit")
    p.add_argument("--warm-start", action="append", default=[], metavar="SCHEDULE",
                   help="a schedule from the same profile the search also starts from (repeatable), e.g. the one "
                        "at a lower budget: the search then never does worse on its calibration samples")
    p.add_argument("--evaluations", type=int, default=None, metavar="N",
                   help="rollouts of the search's local search (default 80; it stops earlier at --time-limit)")
    p.add_argument("--no-confirm", action="store_true",
                   help="keep the search's local-search winner as is (default: it and the best starts are re-ranked on "
                        "64 fresh calibration seeds and the winner is kept only with a 95%% bootstrap lead, because a "
                        "winner picked from many comparisons on 16 samples is biased upwards; ~4 more rollouts)")
    p.add_argument("--allow", type=_options, default=None, metavar="OPTIONS",
                   help="decision set, comma-separated from residual,output,forecast,int8,fp8,int4w (default: all the profile measured)")
    p.add_argument("--cost", choices=("auto", "flops", "latency"), default="auto",
                   help="cost model: FLOPs (int8/fp8 at half a native compute), the latency the profile measured on its "
                        "device, or auto (default: latency when the profile has it, else FLOPs)")
    p.add_argument("--static-precision", action="store_true",
                   help="each block uses at most one reduced precision for all steps (one quantized copy in memory)")
    p.add_argument("--iterations", type=int, default=60, help="training rollouts of the learned router (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the learned router (default 0)")
    p.add_argument("--refine", type=int, default=0, metavar="N",
                   help="closed loop: N rounds of run-measure-rescale-resolve on calibration seeds (default 0)")
    p.add_argument("--last-full", type=int, default=0, help="the last K steps compute every block (ilp)")
    p.add_argument("--max-reuse", type=int, default=None, help="at most N consecutive reuses per block (ilp)")
    p.add_argument("--max-cache-mb", type=float, default=None, help="cache memory limit in MiB at the profiling batch size (search, ilp; every schedule reports its peak)")
    p.add_argument("--depends", type=_depends, default=(), metavar="UP>DOWN,...",
                   help="block dependencies: when block UP refreshes, DOWN refreshes too, e.g. 0>1>2,4>5 (ilp)")
    p.add_argument("--time-limit", type=float, default=60.0, help="solver time limit in seconds (default 60). search: seconds of model work charged at "
                   "the generation time the profile recorded, so the same solve gives the same schedule on a busy "
                   "or slower machine, only later (a wall-clock guard stops it at 3x); ilp: wall-clock seconds")
    p.add_argument("--first-full", type=int, default=1, help="the first K steps compute every block (default 1)")
    p.add_argument("--steps", type=_steps, default="auto", metavar="auto|N",
                   help="sampler steps the schedule runs at: auto (default) lets the search also try fewer steps than "
                        "profiled at the same speed (the schedule then says how many); N compiles for N steps, mapping "
                        "the profile's tables onto them by noise level when N is not the profiled count (the propagation "
                        "gains, which do not transfer, are then measured at N steps when the model loads)")
    p.add_argument("--for", dest="objective", choices=tuple(OBJECTIVES), default="mean",
                   help="with a profile of several guidance scales: compile one schedule scored at all of them by "
                        + " or ".join(f"{k} ({v.help})" for k, v in OBJECTIVES.items()) + "; default mean")
    p.add_argument("--guidance-scale", type=float, default=None, metavar="G",
                   help="with a profile of several guidance scales: compile for this one only")
    p.add_argument("--no-spans", action="store_true",
                   help="keep every reuse per block (default: runs of residual reuses of one compute step replay as "
                        "one span, one add per run, as FirstBlockCache/DBCache do)")
    p.add_argument("-o", "--output", help="schedule file (default schedules/<model>-b<budget>.yaml)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(command_name="solve")

    p = sub.add_parser("eval", help="quality and measured speed of a schedule vs full compute (held-out seeds)")
    p.add_argument("schedule", help="schedule YAML")
    p.add_argument("--model", default=None, help="model to run (default: the one recorded in the schedule)")
    _add_model_options(p)
    p.add_argument("--baselines", action="store_true", help="also fewer DDIM steps, uniform refresh and Δ-DiT at matching cost")
    p.add_argument("--guidance-scale", type=float, default=None, metavar="G",
                   help="run at this guidance scale (default: the schedule's); one it was not compiled for is said so")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="sampler steps; must be the schedule's (compile another with `schedc solve PROFILE --steps N`)")
    _add_eval_options(p, repeats=7)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(command_name="eval")

    p = sub.add_parser("compare", help="every solver and baseline over budgets: table, CSV and Pareto plot")
    p.add_argument("profile", nargs="?", default=str(PROFILES / "reference-dit.profile.npz"), help="profile file")
    p.add_argument("--budgets", type=_budget, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--solvers", default="dp,ilp", help="comma-separated solvers (default dp,ilp; search runs ~1 min per budget); baselines always run")
    p.add_argument("--cost", choices=("auto", "flops", "latency"), default="auto", help="cost model (default auto)")
    _add_eval_options(p, repeats=5)
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    p.add_argument("-o", "--output", default="bench/results/compare", help="output stem for .md/.csv/.png")
    p.set_defaults(command_name="compare")

    p = sub.add_parser("show", help="draw a schedule as a step x block heatmap (PNG)")
    p.add_argument("schedule", help="schedule YAML")
    p.add_argument("-o", "--output", help="PNG file (default: next to the schedule)")
    p.set_defaults(command_name="show")
    return parser


__all__ = ["PROFILES", "SCHEDULES", "build_parser", "parse_classes"]
