"""schedc's default solver vs every baseline and ecosystem cache, on every zoo model, at matched measured speed.

    python bench/bench_zoo.py                                   # every zoo/NAME with a zoo.json, plus digits-dit
    python bench/bench_zoo.py --models zoo/pixart-cross,digits-dit --solver dp
    python bench/bench_zoo.py --summary-only                    # rebuild summary.md from the per-model JSONs

Per model (issue #11, deliverable 5), each stage cached under --work/<model>/ so a rerun resumes:

1. profile (`schedc.profiler.profile_model`, calibration seeds 0..--calib-1) at the sampler the model
   names: zoo.json's steps / guidance_scale / cfg for a zoo folder, the built-in's default otherwise;
   everything after runs at the sampler recorded in that profile;
2. schedc schedules at every --budgets with --solver (default: the closed-loop search, --evaluations
   rollouts, on the profile's calibration seeds), solved in rising order with each budget's schedule a
   warm start of the next (`schedc solve --warm-start`), saved as <solver>-b0.30.yaml; then, unless
   --no-matched-budgets, at each baseline's own budget (what a user matching its speed asks for: the one
   whose ideal time is a fewer-steps run's, a uniform or Δ-DiT schedule's cost under the profile's cost
   model), warm-started from the ladder's schedule below it;
3. baselines at --baseline-budgets as `schedc eval --baselines` builds them (fewer steps, with its own
   sampler; uniform; Δ-DiT);
4. the ecosystem's caches over their settings grids (schedc.ecosystem.ECOSYSTEM_CACHES; MagCache
   calibrated on this model on calibration seeds 0-15); a cache that cannot run here is listed, not run;
5. quality: PSNR / SSIM / rel L2 vs full compute on held-out seeds 1000000.. (--samples, default 128);
6. speed: variants in interleaved rounds (--rounds x --timing-batch samples, order rotating), each measured
   right next to its own full-compute run, speedup = median over rounds of full time / variant time; cached
   per variant, so a variant added to a finished run (a new budget) is timed in rounds of its own;
7. matching: for every baseline and ecosystem row, the schedc schedule with the best PSNR among those
   measured at least as fast; the row is lost when ΔPSNR < 0.005 dB (a tie to the tables' resolution) or none is as fast (a baseline that skipped
   nothing, its samples bit-exact, is named so in the table and still counted);
8. settling (unless --settle-rounds 0): where a row's match hangs on speeds within 10% of the baseline's, the
   closer schedc schedules are raced against the baseline head to head, best PSNR first, and the first at least
   as fast is its match (bench_settle; symmetric: a schedule that measured a little faster loses its match when
   the race says it is slower); races cached in races.json.

Acceptance checks reported per model: (a) the search's predicted PSNR (provenance stats
`predicted_psnr`, measured on calibration seeds it did not search on) within ±1 dB of the held-out
PSNR; (b) held-out PSNR rises with budget over 0.1-0.9 (no drop, and no stretch longer than 0.1
rising by less than --flat-db).

Writes <out>/<model>.{json,md,png} and <out>/summary.md (default out: bench/results/zoo).
The machinery shared with bench_ecosystem.py (variants, MagCache calibration, interleaved timing,
matching) is imported from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ecosystem import (Variant, ecosystem_variants, full_variant, generate_variant, match_rows,  # noqa: E402
                             race, schedule_variant, time_rounds)
from bench_settle import SETTLE_MARGIN, settle_rows  # noqa: E402
from bench_io import read_json, write_json  # noqa: E402
from zoo_models import ModelSpec, default_models, model_spec  # noqa: E402
from bench_zoo_report import (PSNR_RESOLUTION_DB, budget_label, checks, fmt, verdict, write_model,  # noqa: E402
                              write_summary)
from schedc.errors import SchedcError  # noqa: E402
from schedc.ecosystem import ECOSYSTEM_CACHES  # noqa: E402
from schedc.evaluate import BASELINES, EVAL_SEED_START, baseline_schedule, block_cost, nonblock_share  # noqa: E402
from schedc.metrics import check_reference, difference_se, quality  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.sampler_config import SamplerConfig  # noqa: E402
from schedc.schedule import build_schedule, read_schedule, save_schedule  # noqa: E402
from schedc.search import PREDICT_SAMPLES, SELECT_SAMPLES  # noqa: E402
from schedc.timing import MIN_MEASURE_SECONDS  # noqa: E402
from schedc_runtime import dump_schedule  # noqa: E402

# denser below 0.25 (where the fastest baselines sit) and above 0.8 (where most cache settings run, at 1.0-1.2x:
# a 0.1 step there is a 12% step in speed, so a cache between two budgets was matched to one 12% faster)
DEFAULT_BUDGETS = "0.1,0.125,0.1375,0.15,0.1625,0.175,0.1875,0.2,0.225,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.7,0.8,0.85,0.9,0.95"
DEFAULT_BASELINE_BUDGETS = "0.15,0.2,0.3,0.4,0.5,0.6"
MAGCACHE_CALIB = 16  # calibration seeds 0..15 for MagCache's own calibration mode


# -- cached stages -----------------------------------------------------------------------------------


def samples_key(schedule) -> str:
    """What makes a schedule's samples what they are (decisions, spans, sampler, timesteps), not its provenance."""
    from dataclasses import replace

    return _digest(dump_schedule(replace(schedule, provenance={})))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Bench:
    """One model through every stage; each stage reads its cache under `work` or writes it."""

    def __init__(self, spec: ModelSpec, args: argparse.Namespace, log) -> None:
        self.spec, self.args = spec, args
        self.work = Path(args.work) / spec.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self._log = log
        self.log("loading model")
        self.adapter = spec.load()

    def log(self, message: str, stage: str = "") -> None:
        self._log(f"[{time.perf_counter() - self.started:7.1f}s] {self.spec.name}: {stage + ': ' if stage else ''}{message}")

    # (i) profile
    def profile(self) -> Profile:
        from schedc.profiler import ProfileConfig, profile_model

        path = self.work / "profile.npz"
        sampler = self.spec.sampler(self.adapter)
        if path.exists():
            profile = Profile.load(path)
            meta = profile.meta
            if (meta.fingerprint == self.adapter.fingerprint() and meta.sampler == sampler.to_dict()
                    and len(meta.calibration_seeds) == self.args.calib):
                self.log(f"cached {path}", "profile")
                self.profile_path = path
                return profile
            self.log(f"{path} is for another model, sampler or calibration size: profiling again", "profile")
        self.log(f"{self.args.calib} calibration samples, sampler {sampler.to_dict()}", "profile")
        profile = profile_model(self.adapter, sampler, ProfileConfig(calib_samples=self.args.calib), progress=False)
        profile.save(path)
        self.log(f"wrote {path} ({profile.meta.profile_seconds:.0f}s)", "profile")
        self.profile_path = path
        return profile

    # (ii) schedc schedules
    def schedules(self, profile: Profile, matched: dict[float, str]) -> tuple[dict[float, object], list[str]]:
        from schedc.compile import compile_solution
        from schedc.solvers import Constraints, SolveContext

        args = self.args
        index_path = self.work / "schedules.json"
        index = read_json(index_path) or {}
        settings = {"solver": args.solver, "evaluations": args.evaluations, "time_limit": args.time_limit,
                    "profile": profile.digest(), "ladder": True, "vary_steps": not args.fixed_steps,
                    "confirm": not args.no_confirm, "predict_samples": PREDICT_SAMPLES}
        out, failed = {}, []
        ladder = sorted(args.budgets)
        # the ladder first (each budget warm-starts the next), then the matched budgets, each warm-started
        # from the ladder's schedule below it and starting nothing: the ladder is the same with or without them
        for budget in ladder + sorted(matched):
            # the warm start (`schedc solve --warm-start`): the schedule of the ladder's next lower budget solved
            below = [b for b in ladder if b < budget and b in out]
            previous = out[below[-1]] if below else None
            warm = budget_label(below[-1]) if below else None
            path = self.work / f"{args.solver}-b{budget_label(budget)}.yaml"
            entry = index.get(path.name)
            # (an entry from before the warm start was recorded is taken as it is)
            if path.exists() and entry and entry.get("settings") == settings and entry.get("warm_start", warm) == warm:
                out[budget] = read_schedule(path)
                continue
            self.log(f"budget {budget_label(budget)} ({args.solver}, {args.evaluations} evaluations"
                     + (f"; the budget of {matched[budget]}" if budget in matched else "") + ")", "solve")
            started = time.perf_counter()
            try:
                compiled = compile_solution(
                    self.profile_path, budget, solver=args.solver, constraints=Constraints(time_limit=args.time_limit),
                    context=SolveContext(adapter=self.adapter, evaluations=args.evaluations, progress=False,
                                         warm_starts=() if previous is None else (previous.decisions,),
                                         vary_steps=not args.fixed_steps, confirm=not args.no_confirm))
            except SchedcError as exc:
                self.log(f"budget {budget:.2f}: no schedule ({exc})", "solve")
                failed.append(f"{args.solver} b={budget:.2f}: {exc}")
                continue
            save_schedule(compiled.schedule, path)
            index[path.name] = {"settings": settings, "warm_start": warm, "seconds": round(time.perf_counter() - started, 2)}
            write_json(index_path, index)
            stats = compiled.schedule.provenance.get("stats") or {}
            self.log(f"budget {budget_label(budget)}: {time.perf_counter() - started:.1f}s"
                     + (f", predicted PSNR {stats['predicted_psnr']:.2f} dB (start {stats.get('start')}, "
                        f"stopped by {stats.get('stopped_by')}, {compiled.schedule.num_steps} steps)"
                        if "predicted_psnr" in stats else ""), "solve")
            out[budget] = read_schedule(path)
        return out, failed

    # non-block share: sizes the fewer-steps baseline
    def nonblock_share(self, sampler: SamplerConfig, timing_inputs) -> float:
        path = self.work / "nonblock.json"
        key = {"threads": torch.get_num_threads(), "timing_batch": self.args.timing_batch, "sampler": sampler.to_dict()}
        cached = read_json(path)
        if cached and cached.get("key") == key:
            return float(cached["nonblock_share"])
        self.log("timing the non-block share (3 rounds)", "baselines")
        share = nonblock_share(self.adapter, timing_inputs, sampler)
        write_json(path, {"key": key, "nonblock_share": share})
        return share

    # (iii) baselines
    def baselines(self, profile: Profile, sampler: SamplerConfig, nonblock: float) -> tuple[list[tuple], list[str]]:
        full = build_schedule(profile, np.ones((profile.num_steps, profile.num_blocks), dtype=bool),
                              {"solver": "full"}, sampler)
        out, failed = [], []
        for budget in self.args.baseline_budgets:
            for name in BASELINES:
                try:
                    schedule = baseline_schedule(name, full, budget, nonblock, self.adapter)
                except SchedcError as exc:
                    failed.append(f"{name} b={budget:.2f}: {exc}")
                    continue
                setting = f"b={budget:.2f}" + (f" ({schedule.num_steps} steps)" if name == "fewer-steps" else "")
                out.append((name, setting, budget, schedule))
        return out, failed

    # (iv) ecosystem caches
    def ecosystem(self, profile: Profile, sampler: SamplerConfig) -> tuple[list[Variant], list[str]]:
        path = self.work / "magcache.json"
        key = {"sampler": sampler.to_dict(), "seeds": MAGCACHE_CALIB, "fingerprint": self.adapter.fingerprint()}
        cached = read_json(path)
        ratios = cached["mag_ratios"] if cached and cached.get("key") == key else None
        caches = [c for c in self.args.caches.split(",") if c]
        variants, skipped, ratios = ecosystem_variants(self.adapter, sampler, caches,
                                                       profile.meta.calibration_seeds[:MAGCACHE_CALIB], ratios)
        if ratios is not None:
            write_json(path, {"key": key, "mag_ratios": ratios})
        self.mag_digest = _digest(json.dumps(ratios))
        self.log(f"{len(variants)} settings" + (f"; not applicable: {'; '.join(skipped)}" if skipped else ""), "ecosystem")
        return variants, skipped

    def settle(self, rows: list[dict], variants: list[tuple[Variant, dict]], inputs, sampler: SamplerConfig) -> int:
        """(viii) rows whose match hangs on speeds within SETTLE_MARGIN: raced head to head (bench_settle),
        each race cached in races.json; returns how many races the matching asked for."""
        path = self.work / "races.json"
        key = _race_key(self.args, sampler)
        cache = read_json(path) or {}
        ratios = cache.get("ratios", {}) if cache.get("key") == key else {}
        by_key, baselines = {}, {}  # the variant computing each samples key (a baseline's own, for the log)
        for v, f in variants:
            by_key.setdefault(f["key"], v)
            if v.family != "schedc":
                baselines.setdefault(f["key"], v)

        def raced(mine: str, theirs: str) -> float:
            name = f"{mine}|{theirs}"
            if name not in ratios:
                other = baselines.get(theirs, by_key[theirs])
                ratios[name] = race(self.adapter, by_key[mine], other, inputs, sampler, self.args.settle_rounds)
                write_json(path, {"key": key, "ratios": ratios})
                self.log(f"{by_key[mine].setting} vs {other.family} {other.setting}: "
                         f"{ratios[name]:.3f}x its speed head to head", "settle")
            return ratios[name]

        return settle_rows(rows, raced)

    def run(self) -> dict:
        args = self.args
        profile = self.profile()
        sampler = SamplerConfig(**profile.meta.sampler)  # every later stage runs at the profile's sampler
        block_flops, _ = self.adapter.flops()
        seeds = list(range(EVAL_SEED_START, EVAL_SEED_START + args.samples))
        timing_inputs = self.adapter.make_inputs(seeds[: args.timing_batch])
        nonblock = self.nonblock_share(sampler, timing_inputs)
        baselines, baseline_failed = self.baselines(profile, sampler, nonblock)
        matched = {} if args.no_matched_budgets else matched_budgets(profile, baselines, args.budgets)
        schedules, failed = self.schedules(profile, matched)
        failed += baseline_failed
        eco, skipped = self.ecosystem(profile, sampler)

        # every variant with the facts the tables need; key: what makes its samples what they are
        variants: list[tuple[Variant, dict]] = [(full_variant(), {"key": "full"})]
        for budget, schedule in sorted(schedules.items()):
            stats = schedule.provenance.get("stats") or {}
            variants.append((schedule_variant(self.adapter, schedule, "schedc", f"{args.solver} b={budget_label(budget)}"), {
                "budget": budget, "matched_to": matched.get(budget), "cost": block_cost(schedule, block_flops, sampler.steps),
                "model_cost": (schedule.provenance.get("predicted") or {}).get("cost"),
                "cost_model": schedule.provenance.get("cost_model"),
                "predicted_psnr": stats.get("predicted_psnr"), "predicted_psnr_se": stats.get("predicted_psnr_se"),
                "search_psnr": stats.get("search_psnr"),
                "predicted_rel_l2": (schedule.provenance.get("predicted") or {}).get("rel_l2"),
                "stopped_by": stats.get("stopped_by"), "start": stats.get("start"), "steps": schedule.num_steps,
                "key": samples_key(schedule)}))
        for name, setting, budget, schedule in baselines:
            variants.append((schedule_variant(self.adapter, schedule, name, setting), {
                "budget": budget, "cost": block_cost(schedule, block_flops, sampler.steps), "steps": schedule.num_steps,
                "key": samples_key(schedule)}))
        for v in eco:
            extra = self.mag_digest if v.family == "magcache" else ""
            variants.append((v, {"key": _digest(f"{v.family}|{v.setting}|{extra}")}))

        # (v) quality on held-out seeds
        quality_path = self.work / "quality.json"
        qkey = {"samples": args.samples, "sampler": sampler.to_dict(), "profile": profile.digest()}
        cache = read_json(quality_path) or {}
        if cache.get("key") != qkey:
            cache = {"key": qkey, "rows": {}}
        inputs = self.adapter.make_inputs(seeds)
        missing = [(v, f) for v, f in variants[1:] if f["key"] not in cache["rows"]]
        self.log(f"{len(variants)} variants; quality of {len(missing)} not cached, on {len(seeds)} held-out samples "
                 f"(seeds {seeds[0]}..{seeds[-1]})", "quality")
        if missing:
            full = generate_variant(self.adapter, variants[0][0], inputs, sampler, 32)
            check_reference(self.adapter, full, inputs)
            cache["full_class_acc"] = self.adapter.class_accuracy(full, inputs.labels)
            for i, (v, facts) in enumerate(missing):
                try:
                    samples = generate_variant(self.adapter, v, inputs, sampler, 32)
                except Exception as exc:  # noqa: BLE001 -- one failing variant must not stop the bench
                    failed.append(f"{v.family} {v.setting}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    self.log(f"{v.family} {v.setting} failed: {exc}", "quality")
                    continue
                q = quality(self.adapter.images(samples), self.adapter.images(full))
                q["class_acc"] = self.adapter.class_accuracy(samples, inputs.labels)
                cache["rows"][facts["key"]] = q
                write_json(quality_path, cache)
                if (i + 1) % 10 == 0 or i + 1 == len(missing):
                    self.log(f"{i + 1}/{len(missing)} variants", "quality")
        variants = [variants[0]] + [(v, f) for v, f in variants[1:] if f["key"] in cache["rows"]]

        # (vi) timing: each variant in interleaved rounds, right next to its own full-compute run; cached per
        # variant, so a variant added to a finished run (a new budget) is timed in rounds of its own
        timing_path = self.work / "timing.json"
        tkey = {"rounds": args.rounds, "timing_batch": args.timing_batch, "threads": torch.get_num_threads(),
                "sampler": sampler.to_dict(), "paired": True, "min_seconds": MIN_MEASURE_SECONDS}
        timed_by_key, passes = cached_speedups(read_json(timing_path), tkey)
        # a variant that computes exactly what an earlier one does (schedc compiled the baseline itself) is
        # the same run: timed once, so a tie is a tie and not a coin flip of the machine's noise
        first = {}
        for i, (_, f) in enumerate(variants):
            first.setdefault(f["key"], i)
        todo = [i for i in sorted(first.values()) if i and variants[i][1]["key"] not in timed_by_key]
        if todo:
            self.log(f"{len(todo)} of {len(first) - 1} variants x {args.rounds} interleaved rounds of "
                     f"{args.timing_batch} samples, each next to its own full-compute run", "timing")
            timed = time_rounds(self.adapter, [variants[0][0]] + [variants[i][0] for i in todo], timing_inputs, sampler,
                                args.rounds, lambda m: self.log(m, "timing"))
            fresh = {variants[i][1]["key"]: speed for i, speed in zip(todo, timed[1:])}
            passes = passes + [sorted(fresh)]
            timed_by_key.update(fresh)
            write_json(timing_path, {"key": tkey, "speedups": timed_by_key, "passes": passes})
        else:
            self.log("cached", "timing")
        speedups = [1.0 if i == 0 else timed_by_key[f["key"]] for i, (_, f) in enumerate(variants)]

        # (vii) matching
        rows = []
        for (v, facts), speed in zip(variants, speedups):
            q = cache["rows"].get(facts["key"], {"psnr": math.inf, "ssim": 1.0, "rel_l2": 0.0,
                                                 "class_acc": cache.get("full_class_acc")})
            rows.append({"family": v.family, "setting": v.setting, "speedup": speed, **q,
                         **{k: val for k, val in facts.items() if k != "key"}, "samples_key": facts["key"]})
        match_rows(rows)
        races = 0 if args.settle_rounds == 0 else self.settle(rows, variants, timing_inputs, sampler)
        for r in rows:
            if r["family"] not in ("full", "schedc"):
                # equal PSNR to the table's resolution is not higher PSNR: a tie, lost
                r["lost"] = r["delta_psnr"] is None or r["delta_psnr"] < PSNR_RESOLUTION_DB
                r["tie"] = False
                if r["schedc"] is not None:
                    mine = next(o for o in rows if o["family"] == "schedc" and o["setting"] == r["schedc"]["setting"])
                    r["schedc"]["budget"] = mine["budget"]
                    r["schedc"]["steps"] = mine.get("steps")
                    if mine["samples_key"] == r["samples_key"]:  # schedc compiled this very schedule
                        r["tie"] = "the same schedule"
                    elif abs(r["delta_psnr"]) < PSNR_RESOLUTION_DB:  # e.g. Euler reusing whole steps = fewer steps
                        r["tie"] = "the same PSNR from another schedule"
        ours = [r for r in rows if r["family"] == "schedc"]
        for r in ours:
            p, p_se, m_se = r.get("predicted_psnr"), r.get("predicted_psnr_se"), r.get("psnr_se")
            r["prediction_error_db"] = None if p is None else p - r["psnr"]
            # the gap against the two seed sets' own noise (bench_prediction: 64-seed means move by ~0.5 dB)
            r["prediction_se_db"] = None if p is None or p_se is None or m_se is None else difference_se(p_se, m_se)
        settings = {
            "model": self.spec.name, "spec": self.spec.spec, "source": self.spec.source, "zoo": self.spec.zoo,
            "classes": list(self.spec.classes) if self.spec.classes else None, "cond": self.spec.cond,
            "sampler": sampler.to_dict(), "eval_seeds": f"{seeds[0]}-{seeds[-1]}", "samples": len(seeds),
            "calibration_seeds": f"0-{args.calib - 1} (profile; the search scores on its first 16, "
                                 + (f"the {SELECT_SAMPLES} seeds after the profile's confirm its pick, the {PREDICT_SAMPLES} after those predict"
                                    if not args.no_confirm else f"the {PREDICT_SAMPLES} seeds after the profile's predict")
                                 + " (fewer where the time limit required it: each schedule's stats record its sizes)"
                                 + f"); 0-{MAGCACHE_CALIB - 1} (MagCache's calibration)",
            "solver": args.solver, "evaluations": args.evaluations, "time_limit": args.time_limit,
            "confirm": not args.no_confirm,
            "budgets": args.budgets, "matched_budgets": {f"{b:.4f}": m for b, m in matched.items()},
            "baseline_budgets": args.baseline_budgets, "timing_batch": args.timing_batch,
            "rounds": args.rounds, "paired": True, "min_seconds": MIN_MEASURE_SECONDS, "timing_passes": len(passes),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "settle_rounds": args.settle_rounds, "settle_margin": SETTLE_MARGIN, "races": races,
            "nonblock_share": nonblock, "full_class_acc": cache.get("full_class_acc"), "skipped": skipped,
            "failed": failed, "flat_db": args.flat_db, "work": str(self.work),
            "seconds": round(time.perf_counter() - self.started, 1),
        }
        result = {"settings": settings, "rows": rows, "checks": checks(rows, args.flat_db)}
        return result


def _race_key(args: argparse.Namespace, sampler: SamplerConfig) -> dict:
    return {"rounds": args.settle_rounds, "timing_batch": args.timing_batch, "threads": torch.get_num_threads(),
            "sampler": sampler.to_dict(), "min_seconds": MIN_MEASURE_SECONDS}


def cached_speedups(cached: dict | None, key: dict) -> tuple[dict[str, float], list[list[str]]]:
    """({variant key: speedup}, the variant keys of each timing pass) of a timing cache made under `key`.

    Reads the per-variant form, and the earlier one (one list of speedups for one list of variants timed in
    the same rounds, the list inside the key); anything timed under other settings is dropped."""
    if not cached:
        return {}, []
    old_key = dict(cached.get("key") or {})
    variants = old_key.pop("variants", None)
    if old_key != key:
        return {}, []
    speedups = cached.get("speedups")
    if variants is not None and isinstance(speedups, list) and len(speedups) == len(variants):
        by_key = dict(zip(variants, speedups))
        by_key.pop("full", None)
        return by_key, [sorted(by_key)]
    if isinstance(speedups, dict):
        return dict(speedups), [list(p) for p in cached.get("passes") or [sorted(speedups)]]
    return {}, []


def matched_budgets(profile: Profile, baselines: list[tuple], ladder: list[float]) -> dict[float, str]:
    """The schedc budget a user matching each baseline's speed asks for, rounded up to 1e-4 so that run fits,
    where the fixed ladder does not hold it. Fewer steps (n of N steps, every block): the budget whose ideal
    time is n/N, block_cost_at(n/N, o) with the profile's recorded non-block share o (none when o was not
    recorded). Uniform and Δ-DiT: their cost under the profile's own cost model (what `schedc solve` spends
    its budget in), which is not their FLOP budget where block latency is not proportional to FLOPs (unet-sd:
    Δ-DiT at FLOP budget 0.2 costs 0.267 of the measured block time and ran at 3.35x, between the ladder's
    0.25 at 4.16x and 0.30 at 3.22x)."""
    from schedc.problem import problem_from_profile, resolve_cost
    from schedc.step_settings import block_cost_at, usable_nonblock

    share = profile.meta.nonblock_share
    problem = problem_from_profile(profile, None, resolve_cost(profile, "auto"))
    out: dict[float, str] = {}
    for name, setting, _, schedule in baselines:
        if name == "fewer-steps":
            if share is None:
                continue
            cost = block_cost_at(schedule.num_steps / profile.num_steps, usable_nonblock(share))
        elif schedule.num_steps == profile.num_steps:
            cost = problem.evaluate_decisions(schedule.decisions)[1]
        else:
            continue
        budget = math.ceil(cost * 1e4 - 1e-6) / 1e4
        if 0.0 < budget < 1.0 and all(abs(budget - b) > 1e-9 for b in ladder):
            out.setdefault(budget, f"{name} {setting}")
    return out


# -- checks and reports ------------------------------------------------------------------------------


def command_for(spec: str) -> str:
    """The command line that reproduces one model's table: this run's options, with --models set to it."""
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--models", "--summary-only", "--readme"):
            skip = a == "--models"
            continue
        if a.startswith("--models="):
            continue
        argv.append(a)
    return " ".join(["python bench/bench_zoo.py", "--models", shlex.quote(spec), *map(shlex.quote, argv)])

# -- main --------------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help="comma-separated: zoo/NAME folders (with zoo.json) and built-ins (digits-dit, reference-dit); "
                             "default every zoo/NAME with a zoo.json, plus digits-dit")
    parser.add_argument("--zoo-root", default=str(ROOT / "zoo"), help="where zoo/NAME resolves (default <repo>/zoo)")
    parser.add_argument("--work", default="/tmp/schedc-zoo", help="stage caches, one folder per model (default /tmp/schedc-zoo)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "zoo"), help="results folder")
    parser.add_argument("--budgets", type=_floats, default=_floats(DEFAULT_BUDGETS), help=f"schedc budgets ({DEFAULT_BUDGETS})")
    parser.add_argument("--baseline-budgets", type=_floats, default=_floats(DEFAULT_BASELINE_BUDGETS),
                        help=f"fewer steps / uniform / Δ-DiT budgets ({DEFAULT_BASELINE_BUDGETS})")
    parser.add_argument("--solver", default="search", help="schedc solver (default search; dp to compare)")
    parser.add_argument("--evaluations", type=int, default=40, help="the search's local-search rollouts (default 40)")
    parser.add_argument("--time-limit", type=float, default=300.0,
                        help="solver time limit per budget in seconds of model work (default 300: the evaluations end "
                             "the search)")
    parser.add_argument("--calib", type=int, default=32, help="profile calibration samples (default 32)")
    parser.add_argument("--caches", default=",".join(ECOSYSTEM_CACHES), help="ecosystem caches (default all)")
    parser.add_argument("--samples", type=int, default=128,
                        help="held-out samples for quality (default 128: as many as the prediction is measured on, "
                             "so neither side's sample noise dominates the ±1 dB check)")
    parser.add_argument("--timing-batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--settle-rounds", type=int, default=7,
                        help="rounds of each head-to-head race settling a row whose match hangs on speeds within "
                             f"{SETTLE_MARGIN:.0%}% (bench_settle; default 7, 0: no races, the paired timing decides)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fixed-steps", action="store_true",
                        help="the search keeps the profiled step count (default: it also tries fewer steps, as `schedc solve` does)")
    parser.add_argument("--no-confirm", action="store_true",
                        help="the search keeps its local-search winner unconfirmed (`schedc solve --no-confirm`; default: "
                             "confirmed on fresh seeds, as `schedc solve` does)")
    parser.add_argument("--no-matched-budgets", action="store_true",
                        help="solve only --budgets (default: also each fewer-steps baseline's own budget, the one a user "
                             "matching its speed would ask for; the ladder is the same either way)")
    parser.add_argument("--flat-db", type=float, default=0.1,
                        help="a budget stretch longer than 0.1 rising by less than this is flat (default 0.1 dB)")
    parser.add_argument("--summary-only", action="store_true", help="rebuild summary.md from <out>/*.json and stop")
    parser.add_argument("--readme", action="store_true", help="also write the summary table into README.md's zoo block")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    if args.summary_only:
        print(write_summary(out, args.readme))
        return 0
    torch.set_num_threads(args.threads)
    zoo_root = Path(args.zoo_root)
    names = [m.strip() for m in (args.models.split(",") if args.models else default_models(zoo_root)) if m.strip()]
    specs = [model_spec(n, zoo_root) for n in names]  # every spec resolves before any work
    log(f"bench_zoo: {len(specs)} models ({', '.join(s.name for s in specs)}), solver {args.solver}, "
        f"budgets {args.budgets}, baseline budgets {args.baseline_budgets}, {args.samples} held-out samples, "
        f"{args.rounds} rounds x {args.timing_batch}, {torch.get_num_threads()} threads")
    failures = []
    for spec in specs:
        try:
            result = Bench(spec, args, log).run()
        except Exception as exc:  # noqa: BLE001 -- report and go on to the next model
            traceback.print_exc()
            failures.append(f"{spec.name}: {type(exc).__name__}: {exc}")
            continue
        write_model(result, out, command_for(spec.spec))
        c = result["checks"]
        log(f"{spec.name}: {c['won']} won, {c['lost']} lost of {c['rows']}; median ΔPSNR {fmt(c['median_delta'], '+.2f')}, "
            f"worst {fmt(c['worst_delta'], '+.2f')}; prediction ±1 dB {fmt(c['prediction_share'], '.0%', 'n/a')}; "
            f"monotone {verdict(c['monotone'])} -> {out / (spec.name + '.md')}")
    print(write_summary(out, args.readme))
    for f in failures:
        print(f"bench_zoo: model failed: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
