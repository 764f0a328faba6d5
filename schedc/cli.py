"""schedc command line: thin. Parses arguments, calls the library, maps SchedcError to exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from schedc.atomic import check_output
from schedc.errors import SchedcError

PROFILES = Path("profiles")
SCHEDULES = Path("schedules")
DESCRIPTION = """\
schedc compiles a static cache schedule for a diffusion model: measure once (profile), solve for a
compute budget (solve), check quality and speed (eval), look at it (show).

  schedc profile                      # profile the bundled reference DiT -> profiles/reference-dit.profile.npz
  schedc solve --budget 0.4           # DP schedule at 40% of block compute -> schedules/reference-dit-b0.40.yaml
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


# -- commands ----------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> int:
    from schedc.distributed import launched
    from schedc.models import load_model
    from schedc.profile_resume import partial_dir
    from schedc.profile_set import ProfileSet
    from schedc.profiler import ProfileConfig, profile_model

    adapter = load_model(args.model, classes=args.classes, cond=args.cond)
    samplers = [adapter.default_sampler.with_changes(steps=n, guidance_scale=g, cfg=args.cfg, cfg_order=args.cfg_order)
                for n in (args.steps or [None]) for g in (args.guidance_scale or [None])]
    config = ProfileConfig(
        calib_samples=args.calib, batch_size=args.batch_size, max_age=args.max_age,
        probe_steps=args.probe_steps, probe_samples=args.probe_samples, shard=args.shard,
        forecast_gap=args.forecast_gap, precisions=args.precisions, measure_latency=args.measure_latency,
    )
    out = Path(args.output) if args.output else PROFILES / (
        f"{adapter.name}.profile.npz" if config.shard == (0, 1) else f"{adapter.name}.shard{config.shard[0]}of{config.shard[1]}.profile.npz"
    )
    check_output(out, [p for p in (args.cond,) if p])  # before the work, not after it
    if launched():  # torchrun: every rank profiles its share of the batches, rank 0 writes
        return _profile_distributed(adapter, samplers, config, out, args.quiet)
    profiles = []
    for i, sampler in enumerate(samplers):
        if len(samplers) > 1 and not args.quiet:
            print(f"setting {i + 1}/{len(samplers)}: g={sampler.guidance_scale:g}, {sampler.steps} steps", flush=True)
        profiles.append(profile_model(adapter, sampler, config, progress=not args.quiet, resume=partial_dir(out)))
    _report_profiles(ProfileSet(tuple(profiles)), out)
    return 0


def _profile_distributed(adapter, samplers, config, out: Path, quiet: bool) -> int:
    """One torchrun rank of `schedc profile` (schedc.distributed): profile, agree, reduce; rank 0 writes."""
    from dataclasses import replace

    from schedc.distributed import RankFailed, agree, process_group, sum_across_ranks
    from schedc.profile_resume import partial_dir
    from schedc.profile_set import ProfileSet
    from schedc.profiler import profile_model

    def reduce(arrays):
        agree(None)  # a rank that failed says so here instead: then every rank stops
        return sum_across_ranks(arrays)

    with process_group() as (rank, world):
        batches = -(-len(config.seeds()) // config.batch_size)
        try:
            if world > batches:
                raise SchedcError(f"{world} ranks but only {batches} calibration batches: use --calib/--batch-size "
                                  f"for at least {world} batches")
            ranked = replace(config, rank=(rank, world))
            profiles = [profile_model(adapter, s, ranked, progress=not quiet, reduce=reduce, resume=partial_dir(out))
                        for s in samplers]
        except RankFailed:  # agreed already: every rank knows
            raise
        except Exception as exc:
            agree(exc)
            raise
        if rank == 0:
            _report_profiles(ProfileSet(tuple(profiles)), out, f" ({world} ranks)")
    return 0


def _report_profiles(profiles, out: Path, how: str = "") -> None:
    from schedc.profile_resume import clear
    from schedc.profile_set import describe, setting_of

    profiles.save(out)
    clear(out)  # the kept batches are in the profile now
    first = profiles.profiles[0]
    what = (f"{first.num_steps} steps" if len(profiles.profiles) == 1
            else f"{len(profiles.profiles)} settings ({'; '.join(describe(setting_of(p)) for p in profiles.profiles)})")
    print(f"wrote {out}: {first.num_blocks} blocks x {what}, {len(first.meta.calibration_seeds)} calibration "
          f"samples, {sum(p.meta.profile_seconds for p in profiles.profiles):.0f}s{how}")


def cmd_merge(args: argparse.Namespace) -> int:
    from schedc.profile_set import merge_files

    check_output(args.output, args.profiles)
    merged = merge_files(args.profiles)
    merged.save(args.output)
    settings = f", {len(merged.profiles)} settings" if len(merged.profiles) > 1 else ""
    print(f"wrote {args.output}: {len(merged.profiles[0].meta.calibration_seeds)} calibration samples{settings}")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from schedc.compile import compile_solution
    from schedc.schedule import save_schedule
    from schedc.solvers import Constraints, SolveContext

    constraints = Constraints(
        first_full=args.first_full, static_precision=args.static_precision, last_full=args.last_full,
        max_reuse=args.max_reuse, dependencies=args.depends, time_limit=args.time_limit,
        max_cache_bytes=None if args.max_cache_mb is None else args.max_cache_mb * 2**20,
    )
    if args.output:
        check_output(args.output, [args.profile])
    from schedc.profile_set import ProfileSet, choose

    profiles = ProfileSet.load(args.profile)  # read once: warm starts, the auto solver and --steps all need it
    source, settings = choose(profiles, args.guidance_scale, args.steps)
    starts = tuple(_warm_start(path, profiles, args.profile) for path in args.warm_start)
    context = SolveContext(iterations=args.iterations, seed=args.seed, evaluations=args.evaluations,
                           progress=not args.quiet, warm_starts=starts, settings=settings, objective=args.objective,
                           vary_steps=args.steps == "auto" and not settings)  # for the model-in-the-loop solvers
    solver, context, fallback = _resolve_solver(args, context, source)
    profile, retargeted = _profile_at_steps(source, args.steps, context)
    if retargeted:
        context = replace(context, vary_steps=False, profile=None)
    compiled = compile_solution(profile, args.budget, solver, constraints, args.allow, args.cost,
                                args.refine, context, spans=not args.no_spans)
    # compiled from the loaded Profile: record its file, as compile_solution does for a path
    compiled = replace(compiled, schedule=replace(compiled.schedule, provenance={
        **compiled.schedule.provenance, "profile_file": args.profile,
        **({"retargeted_from": retargeted} if retargeted else {})}))
    for i, r in enumerate(compiled.refine_history):
        print(f"refine round {i}: reuse x{r.reuse_scale:.3f}, quant x{r.quant_scale:.3f}: "
              f"predicted {r.predicted:.4f}, measured {r.measured:.4f} (calibration seeds)")
    solution, schedule = compiled.solution, compiled.schedule
    suffix = "" if args.solver == "auto" else f"-{args.solver}"
    out = Path(args.output) if args.output else SCHEDULES / f"{schedule.model.name}{suffix}-b{args.budget:.2f}.yaml"
    check_output(out, [args.profile])
    save_schedule(schedule, out)
    secs = solution.stats.get("solve_seconds", 0.0)
    measured = solution.stats.get("predicted_psnr")
    predicted = (f"predicted PSNR {measured:.2f} dB / rel L2 {solution.predicted_error:.4f} (measured on "
                 f"{solution.stats.get('predict_seeds')} calibration seeds it did not search on)" if measured is not None
                 else f"predicted rel L2 {solution.predicted_error:.4f} (additive model)")
    fused = schedule.provenance.get("spans")
    spans = f", {fused['spans']} spans fusing {fused['fused_reuses']} reuses" if isinstance(fused, dict) and fused["spans"] else ""
    if retargeted and measured is None:
        predicted += f", transferred from the {retargeted['steps']}-step profile"
    if settings:
        from schedc.profile_set import setting_of
        from schedc.selection import SELECT_CONFIDENCE

        by = solution.stats.get("by_setting") or {}
        scales = sorted(setting_of(p)[0] for p in (source, *settings))
        predicted += f"; compiled for the {args.objective} over g = " + ", ".join(
            f"{g:g}" + (f" ({by[f'{g:g}']['predicted_psnr']:.2f} dB)" if f"{g:g}" in by else "") for g in scales)
        confidence = solution.stats.get("lead_confidence")
        if confidence is not None:
            kept = solution.stats.get("selected", "")
            predicted += (f"; picked {kept}, a single-setting schedule: the best schedule for all settings led it "
                          f"with only {confidence:.0%} bootstrap confidence on fresh seeds" if confidence < SELECT_CONFIDENCE else
                          f"; it leads the best single-setting schedule with {confidence:.0%} bootstrap confidence")
    moved = (f"; runs {schedule.num_steps} sampler steps (profiled {profile.num_steps}: fewer steps won at this "
             f"speed; call the pipeline with num_inference_steps={schedule.num_steps})"
             if schedule.num_steps != profile.num_steps else "")
    memory = schedule.provenance.get("predicted", {}).get("peak_cache_mib")
    cache = f", peak cache {memory:.2f} MiB at batch {schedule.provenance['predicted']['cache_batch']}" if memory is not None else ""
    print(f"wrote {out}: solver {solution.solver}, cost {solution.cost:.3f} of full (budget {args.budget:.2f}), "
          f"{predicted}, solved in {secs:.2f} s{spans}{cache}{moved}")
    if fallback:
        print(f"note: {fallback}; solved with the dp on the additive error model (the closed-loop search runs the model)")
    return 0


def _profile_at_steps(profile, steps: "str | int", context) -> tuple:
    """(the profile to compile from, {"steps", "profile"} of the profile it was retargeted from or None).

    `--steps N` other than the profiled count maps the profile's tables onto N steps (schedc.retarget);
    the timesteps a diffusers scheduler gives at N steps come from the model, loaded here."""
    from schedc.retarget import retarget_profile
    from schedc.sampling import SamplerConfig

    if steps == "auto" or steps == profile.num_steps:
        return profile, None
    sampler = SamplerConfig(**profile.meta.sampler).with_changes(steps=steps)
    if sampler.scheduler == "ddim":
        timesteps = sampler.timesteps()
    else:
        from schedc.errors import ModelError

        try:
            timesteps = context.for_profile(profile).model().model_timesteps(sampler)
        except ModelError as exc:
            raise SchedcError(f"--steps {steps}: the {sampler.scheduler} timesteps come from the profiled model, "
                              f"which does not load here ({exc})") from None
    return retarget_profile(profile, steps, timesteps), {"steps": profile.num_steps, "profile": profile.digest()}


def _warm_start(path: str, profiles, profile_path: str) -> tuple:
    """The decisions of a schedule compiled from the same profile (any setting of it), as a search warm start."""
    from schedc.schedule import read_schedule

    schedule = read_schedule(path)
    if schedule.provenance.get("profile") not in {p.digest() for p in profiles.profiles}:
        raise SchedcError(f"warm start {path} was not compiled from {profile_path}")
    return tuple(tuple(row) for row in schedule.decisions)


def _resolve_solver(args: argparse.Namespace, context, profile):
    """`auto`: the closed-loop search when the profiled model loads here, else the DP (saying so).

    Returns (solver name, context holding the loaded model so it is not loaded twice, why the DP was
    chosen or ""). The reason is printed after the result: an error before it stays one line."""
    from dataclasses import replace

    if args.solver != "auto":
        return args.solver, context, ""
    if args.refine:
        return "dp", context, ""
    from schedc.errors import ModelError
    from schedc.models import load_recorded

    meta = profile.meta
    try:
        adapter = load_recorded(meta)
    except ModelError as exc:
        return "dp", context, f"the profiled model does not load here ({exc})"
    if adapter.fingerprint() != meta.fingerprint:
        return "dp", context, (f"the model that loads as {meta.model!r} is not the profiled one (its blocks or "
                               "weights' shapes differ)")
    return "search", replace(context, adapter=adapter), ""


def cmd_eval(args: argparse.Namespace) -> int:
    from schedc.compile import problem_of_schedule
    from schedc.evaluate import evaluate
    from schedc.models import load_model, load_recorded
    from schedc.schedule import read_schedule

    schedule = read_schedule(args.schedule)
    if args.model:
        adapter = load_model(args.model, classes=args.classes, cond=args.cond)
    else:
        adapter = load_recorded({"model": schedule.model.name, "model_source": schedule.provenance.get("model_source")})
    config = _eval_config(args)
    report = evaluate(adapter, schedule, config, baselines=args.baselines, progress=not (args.json or args.quiet),
                      problem=problem_of_schedule(schedule))
    if args.json:
        print(json.dumps(report.to_json_dict()))
    else:
        print(report.table())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from schedc.compare import compare, write_results
    from schedc.models import load_recorded
    from schedc.profile import Profile
    from schedc.solvers import get_solver

    solvers = [s for s in args.solvers.split(",") if s]
    for name in solvers:
        get_solver(name)  # unknown solver: fail before any work
    for suffix in (".md", ".csv", ".png"):
        check_output(Path(args.output).with_suffix(suffix), [args.profile])
    profile = Profile.load(args.profile)
    adapter = load_recorded(profile.meta)
    config = _eval_config(args)
    log = (lambda _: None) if args.json else (lambda m: print(m, flush=True))
    rows = compare(adapter, profile, args.budgets, solvers, config, args.cost, log)
    paths = write_results(rows, Path(args.output), f"{profile.meta.model}: PSNR vs measured speedup (held-out seeds)")
    if args.json:
        print(json.dumps(rows))
    else:
        print(paths[0].read_text())
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from schedc.plots import schedule_heatmap
    from schedc.schedule import read_schedule

    out = Path(args.output) if args.output else Path(args.schedule).with_suffix(".png")
    check_output(out, [args.schedule])
    schedule = read_schedule(args.schedule)
    schedule_heatmap(schedule, out)
    print(f"wrote {out}")
    return 0


# -- parser ------------------------------------------------------------------------------------


def _add_eval_options(p: argparse.ArgumentParser, repeats: int) -> None:
    """Held-out evaluation settings shared by eval and compare."""
    p.add_argument("--samples", type=int, default=64, help="held-out samples for quality (default 64)")
    p.add_argument("--seed-start", type=int, default=1_000_000, help="first evaluation seed (default 1000000)")
    p.add_argument("--timing-batch", type=int, default=16, help="samples per timed generation (default 16)")
    p.add_argument("--repeats", type=int, default=repeats, help=f"interleaved timing rounds, median (default {repeats})")


def _classes(text: str) -> tuple[int, ...]:
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
    p.add_argument("--classes", type=_classes, default=None, metavar="IDS",
                   help="class ids the samples cycle through, e.g. 0-9 or 0-3,7, or @FILE with such entries "
                        "(class-conditioned models; default: all)")
    p.add_argument("--cond", default=None, metavar="FILE",
                   help="prompt embeddings for text-conditioned models: a safetensors file with encoder_hidden_states "
                        "[prompts, tokens, dim] (+ pooled_projections, negative_* for the unconditional branch)")


def _eval_config(args: argparse.Namespace):
    from schedc.evaluate import EvalConfig

    return EvalConfig(samples=args.samples, seed_start=args.seed_start, timing_batch=args.timing_batch, repeats=args.repeats,
                      guidance_scale=getattr(args, "guidance_scale", None), steps=getattr(args, "steps", None))


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
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("merge", help="combine profiles of disjoint calibration shards exactly")
    p.add_argument("profiles", nargs="+", help="shard profiles")
    p.add_argument("-o", "--output", required=True, help="merged profile file")
    p.set_defaults(func=cmd_merge)

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
    p.add_argument("--time-limit", type=float, default=60.0, help="solver time limit in seconds (search, ilp; default 60)")
    p.add_argument("--first-full", type=int, default=1, help="the first K steps compute every block (default 1)")
    p.add_argument("--steps", type=_steps, default="auto", metavar="auto|N",
                   help="sampler steps the schedule runs at: auto (default) lets the search also try fewer steps than "
                        "profiled at the same speed (the schedule then says how many); N compiles for N steps, mapping "
                        "the profile's tables onto them by noise level when N is not the profiled count")
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
    p.set_defaults(func=cmd_solve)

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
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="every solver and baseline over budgets: table, CSV and Pareto plot")
    p.add_argument("profile", nargs="?", default=str(PROFILES / "reference-dit.profile.npz"), help="profile file")
    p.add_argument("--budgets", type=_budget, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--solvers", default="dp,ilp", help="comma-separated solvers (default dp,ilp; search runs ~1 min per budget); baselines always run")
    p.add_argument("--cost", choices=("auto", "flops", "latency"), default="auto", help="cost model (default auto)")
    _add_eval_options(p, repeats=5)
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    p.add_argument("-o", "--output", default="bench/results/compare", help="output stem for .md/.csv/.png")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("show", help="draw a schedule as a step x block heatmap (PNG)")
    p.add_argument("schedule", help="schedule YAML")
    p.add_argument("-o", "--output", help="PNG file (default: next to the schedule)")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: argparse has already printed its line
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except SchedcError as exc:
        print(f"schedc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("schedc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
