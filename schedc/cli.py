"""schedc command line: thin. Parses arguments (schedc.cli_parser), calls the library, maps SchedcError to
exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from schedc.atomic import check_output
from schedc.cli_parser import PROFILES, SCHEDULES, build_parser
from schedc.errors import SchedcError


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
                           vary_steps=args.steps == "auto" and not settings, confirm=not args.no_confirm)  # for the model-in-the-loop solvers
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
    se = solution.stats.get("predicted_psnr_se")
    predicted = (f"predicted PSNR {measured:.2f}{f' ± {se:.2f}' if se is not None else ''} dB / rel L2 "
                 f"{solution.predicted_error:.4f} (measured on {solution.stats.get('predict_seeds')} calibration seeds "
                 f"it did not search on{'; ± one standard error' if se is not None else ''})" if measured is not None
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
    elif "selected" in solution.stats:
        predicted += _confirmation(solution.stats)
    moved = (f"; runs {schedule.num_steps} sampler steps (profiled {profile.num_steps}: fewer steps won at this "
             f"speed; call the pipeline with num_inference_steps={schedule.num_steps})"
             if schedule.num_steps != profile.num_steps else "")
    memory = schedule.provenance.get("predicted", {}).get("peak_cache_mib")
    cache = f", peak cache {memory:.2f} MiB at batch {schedule.provenance['predicted']['cache_batch']}" if memory is not None else ""
    rollouts = solution.stats.get("rollouts")
    ended = {"evaluations": "its evaluation count", "time limit": "the time limit",
             "wall-clock guard": "the wall-clock guard", "no feasible move": "having no feasible move left"}
    stop = solution.stats.get("stopped_by")
    ran = f" ({rollouts} rollouts, ended by {ended.get(stop, stop)})" if rollouts is not None else ""
    print(f"wrote {out}: solver {solution.solver}, cost {solution.cost:.3f} of full (budget {args.budget:.2f}), "
          f"{predicted}, solved in {secs:.2f} s{ran}{spans}{cache}{moved}")
    for note in _clock_notes(solution.stats):
        print(f"note: {note}")
    if fallback:
        print(f"note: {fallback}; solved with the dp on the additive error model (the closed-loop search runs the model)")
    both = f"`schedc profile --steps {schedule.num_steps},{retargeted['steps']}`" if retargeted else ""
    if retargeted and retargeted.get("tables") != "transferred":
        print(f"note: the tables were {retargeted['tables']} (the profile's probe samples), a lighter calibration "
              f"than the profile's; {both} calibrates both step counts on all its samples in one file")
    elif retargeted and schedule.num_steps < retargeted["steps"]:
        print(f"note: compiled from tables measured at {retargeted['steps']} steps and mapped onto {schedule.num_steps}; "
              f"on a coarser grid that can cost several dB against tables measured there (README section 10): "
              f"{both} records both in one file")
    return 0


def _clock_notes(stats: dict) -> list[str]:
    """Where the search's result depends on this machine's speed or load (schedc.search_time), in words."""
    from schedc.search_time import WALL_GUARD

    notes = []
    if stats.get("clock") == "wall":
        notes.append("the profile records no generation time (an older schedc wrote it), so the search's time limit "
                     "read the wall clock and this schedule depends on the machine's load; re-profile to make the "
                     "solve reproducible")
    if stats.get("stopped_by") == "wall-clock guard":
        notes.append(f"the search ran {WALL_GUARD:g}x past its time limit on the wall clock (this machine is much "
                     "slower than the one that profiled) and stopped there, so this schedule depends on this "
                     "machine's speed; re-profile here, or raise --time-limit")
    return notes


def _confirmation(stats: dict) -> str:
    """What the fresh-seed confirmation of the search's winner kept (schedc.selection), in words."""
    kept, confidence = stats["selected"], stats.get("lead_confidence")
    skipped = len(stats.get("not_reranked", ()))
    also = f" ({skipped} start{'s' * (skipped > 1)} clearly behind the best not re-ranked)" if skipped else ""
    if stats.get("selected_origin") == "search":
        return (f"; the local search's result led its best start with {confidence:.0%} bootstrap confidence on fresh "
                f"seeds{also}")
    if confidence is None:
        return f"; kept the start {kept}: it scored best on fresh seeds{also}"
    return (f"; kept the start {kept}: the local search's result led it with only {confidence:.0%} bootstrap "
            f"confidence on fresh seeds{also}")


def _profile_at_steps(profile, steps: "str | int", context) -> tuple:
    """(the profile to compile from, {"steps", "profile", "tables", "gains"} of the profile it came from, or None).

    `--steps N` other than the profiled count: when the profiled model loads, every table and the propagation
    gains are measured at N steps on the profile's probe samples (schedc.gain_probe: about what the gains alone
    cost); otherwise the profile's tables are mapped onto N steps by noise level (schedc.retarget) and a note
    says the prediction is transferred. The timesteps a diffusers scheduler gives at N steps come from the model."""
    from schedc.gain_probe import measure_at_steps
    from schedc.retarget import retarget_profile
    from schedc.sampling import SamplerConfig

    if steps == "auto" or steps == profile.num_steps:
        return profile, None
    sampler = SamplerConfig(**profile.meta.sampler).with_changes(steps=steps)
    adapter, why = (context.adapter, "") if context.adapter is not None else _profiled_model(profile.meta)
    if adapter is None:
        if sampler.scheduler != "ddim":
            raise SchedcError(f"--steps {steps}: the {sampler.scheduler} timesteps come from the profiled model; "
                              f"{why}") from None
        print(f"note: {why}: the tables and propagation gains are mapped from {profile.num_steps} steps by noise "
              f"level, not measured at {steps}, and can miss step-to-step detail the DP relies on")
    timesteps = sampler.timesteps() if sampler.scheduler == "ddim" else adapter.model_timesteps(sampler)
    moved = retarget_profile(profile, steps, timesteps)
    if adapter is not None:
        print(f"measuring the tables and propagation gains at {steps} steps ({profile.meta.probe_samples} probe samples)")
        moved = measure_at_steps(moved, adapter, sampler, progress=context.progress)
    how = "transferred" if adapter is None else f"measured at {steps} steps on {profile.meta.probe_samples} samples"
    return moved, {"steps": profile.num_steps, "profile": profile.digest(), "tables": how, "gains": how}


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
    adapter, why = _profiled_model(profile.meta)
    if adapter is None:
        return "dp", context, why
    return "search", replace(context, adapter=adapter), ""


def _profiled_model(meta) -> tuple:
    """(the profiled model's adapter, "") when it loads here and is the profiled one, else (None, why not)."""
    from schedc.errors import ModelError
    from schedc.models import load_recorded

    try:
        adapter = load_recorded(meta)
    except ModelError as exc:
        return None, f"the profiled model does not load here ({exc})"
    if adapter.fingerprint() != meta.fingerprint:
        return None, (f"the model that loads as {meta.model!r} is not the profiled one (its blocks or "
                      "weights' shapes differ)")
    return adapter, ""


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


def _eval_config(args: argparse.Namespace):
    from schedc.evaluate import EvalConfig

    return EvalConfig(samples=args.samples, seed_start=args.seed_start, timing_batch=args.timing_batch, repeats=args.repeats,
                      guidance_scale=getattr(args, "guidance_scale", None), steps=getattr(args, "steps", None))


COMMANDS = {"profile": cmd_profile, "merge": cmd_merge, "solve": cmd_solve, "eval": cmd_eval, "compare": cmd_compare,
            "show": cmd_show}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: argparse has already printed its line
        return int(exc.code or 0)
    try:
        return int(COMMANDS[args.command_name](args) or 0)
    except SchedcError as exc:
        print(f"schedc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("schedc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
