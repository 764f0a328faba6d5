"""How well a compiled schedule holds outside its calibration (issue #12, deliverable 1).

    python bench/bench_transfer.py                                # every part, every model (zoo + bundled)
    python bench/bench_transfer.py --models zoo/unet-dpm --parts steps
    python bench/bench_transfer.py --summary-only                 # rebuild the markdown from the JSONs

For each model and budget, the PSNR a schedule loses when it runs under conditions it was not compiled
for, against a schedule compiled for those conditions (same solver, same budget), both measured on
held-out seeds against full compute under the run's conditions; mean PSNR and the worst 5% of samples
(5th percentile of per-sample PSNR):

- steps: compiled from a 50-step profile as `schedc solve --steps N` does (--measure: by default, with the
  model at hand, every table re-measured at N steps on the profile's 4 probe samples; 'nothing' = the tables
  retargeted by noise level, the profile-only path) vs compiled from a profile measured natively at N steps
  on all --calib samples, N in --steps (default 20, 25, 30, 100);
- classes: calibrated on the first half of the classes (or prompts), run on the other half, vs
  calibrated on that other half;
- reseed (the classes part's control): calibrated on the other half with other calibration seeds (inputs
  of seeds shifted by RESEED_OFFSET), vs the classes part's schedule for that half: what a schedule moves
  when only its calibration samples change, the part of a classes loss that is not the classes';
- guidance: compiled at the model's guidance scale g, run at g' in --guidances, vs compiled at g';
- scheduler: compiled for the model's own scheduler, run with another compatible one of DDIM,
  DPM-Solver++ (multistep) and Euler (the profile's tables mapped onto its timesteps by noise level, a no-op
  where they are the same), vs compiled from a profile measured with that scheduler;
- batch: the model's own schedule run at batch sizes 1, 4, 16, 64 vs at the calibration batch (16):
  a static schedule has no batch-dependent decision, so this is the runtime's own consistency.
- minimax (issue #12 item 3): with the closed-loop search (schedc's default solver), one schedule per
  guidance scale in --guidances and one compiled `--for worst` over all of them (and `--for mean`),
  warm-started from the single-scale schedules (`--warm-start`), each run at every scale; the worst case of a schedule = its lowest mean PSNR over the scales. Bar: the
  `--for worst` schedule's worst case is at least every single-scale schedule's.

The solver is --solver (default dp: the transfer is a property of the profile's tables, and the DP reads
them directly; the closed-loop search re-measures its picks by rollouts at the run's own conditions).
Every profile uses --calib calibration seeds (0..); held-out seeds start at 1000000. Stages are cached
under --work/<model>/ so a rerun resumes. Writes <out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import model_bench_parser, model_specs, numbers  # noqa: E402
from bench_io import read_json, write_json, write_summary  # noqa: E402
from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.compile import compile_schedule  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, replaying  # noqa: E402
from schedc.metrics import psnr  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.profiler import ProfileConfig, profile_model  # noqa: E402
from schedc.gain_probe import measure_at_steps, measure_gains  # noqa: E402
from schedc.interleaved import measure_generation  # noqa: E402
from schedc.retarget import retarget_profile  # noqa: E402
from schedc.sampler_config import SamplerConfig  # noqa: E402
from schedc.solvers import Constraints, SolveContext  # noqa: E402
from schedc.step_settings import retargeted_profile  # noqa: E402

PARTS = ("steps", "classes", "reseed", "guidance", "scheduler", "batch", "minimax")
# reseed part: the other calibration's inputs come from seeds shifted by this much (a multiple of every class
# count here, so each seed keeps its class; far below the held-out seeds, EVAL_SEED_START)
RESEED_OFFSET = 500_000
SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler")  # where compatible
SOURCE_STEPS = 50  # the steps part compiles from a profile at this step count (issue #12: "compile at 50")
CALIB_BATCH = 16
# steps part: what is measured at the new step count after retargeting (`schedc solve --steps` with the model: tables)
MEASURE_AT_STEPS = {"tables": measure_at_steps, "gains": measure_gains, "nothing": lambda profile, *_: profile}
# the searches' wall-clock guard, in time limits: the FLOP-cost profiles here let schedules compute blocks in int8,
# which the search's clock charges as native and this CPU runs far slower (pixart-cross: 236 s of wall time for
# 50 s charged, 145 s of it in torch._int_mm), so the default guard (3) fired and made rows depend on the load;
# here the searches stop on charged model work only, as their results must not depend on the machine
WALL_GUARD = 20.0
CI_RESAMPLES = 2000  # paired bootstrap over held-out samples: how much of a loss is sampling noise


def minimax_margin(arrays, scales: int) -> float:
    """Worst case (lowest mean over the scales) of the first schedule minus the best worst case of the others;
    `arrays`: each schedule's per-sample PSNR at every scale, schedule after schedule."""
    worst = [min(float(np.mean(a)) for a in arrays[i:i + scales]) for i in range(0, len(arrays), scales)]
    return worst[0] - max(worst[1:])


def paired_ci(statistic, *arrays: np.ndarray) -> list[float]:
    """95% percentile-bootstrap interval of `statistic(*arrays)`, resampling the held-out samples (the same
    indices in every array: each array is one schedule or setting on the same seeds)."""
    res = bootstrap(arrays, statistic, paired=True, vectorized=False, n_resamples=CI_RESAMPLES, method="percentile",
                    random_state=0)
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


class LabelSubset:
    """A model adapter whose samples cycle through `labels` (class ids or prompt indices) instead of all."""

    def __init__(self, adapter, labels: tuple[int, ...]) -> None:
        self._adapter, self.labels = adapter, labels

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def make_inputs(self, seeds):
        inputs = self._adapter.make_inputs(seeds)
        labels = torch.tensor([self.labels[int(s) % len(self.labels)] for s in seeds], dtype=torch.long)
        return replace(inputs, labels=labels)


class SeedShift:
    """A model adapter whose inputs for seed s are those of seed s + `offset`: the same classes or prompts,
    other noise (the reseed part's second calibration)."""

    def __init__(self, adapter, offset: int) -> None:
        self._adapter, self.offset = adapter, offset

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def make_inputs(self, seeds):
        return self._adapter.make_inputs([int(s) + self.offset for s in seeds])


def label_halves(adapter) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The two halves of what conditions the model's samples (class ids or prompts); None: unconditioned."""
    classes = getattr(adapter, "classes", None)
    cond = getattr(adapter, "conditioning", None)
    if cond is not None:
        pool = tuple(range(cond.prompts))
    elif classes:
        pool = tuple(classes)
    elif hasattr(adapter, "config") and getattr(adapter.config, "num_classes", 0):
        pool = tuple(range(adapter.config.num_classes))
    else:
        return None
    half = len(pool) // 2
    return (pool[:half], pool[half:]) if half else None


def calibrations(adapter) -> "tuple[tuple[tuple[int, ...], tuple[int, ...]], dict[str, tuple[str, object]]] | None":
    """The three calibrations the classes and reseed parts compare, by role -> (profile label, adapter): "a" the
    first half of the classes, "b" the second half, "reseed" the second half with seeds + RESEED_OFFSET; with the
    halves. None: the model's samples are not conditioned."""
    halves = label_halves(adapter)
    if halves is None:
        return None
    first, second = (LabelSubset(adapter, h) for h in halves)
    return halves, {"a": ("classes-a", first), "b": ("classes-b", second),
                    "reseed": ("classes-b-reseeded", SeedShift(second, RESEED_OFFSET))}


class Transfer:
    def __init__(self, spec, args, log) -> None:
        self.spec, self.args, self._log = spec, args, log
        self.work = Path(args.work) / spec.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.adapter = spec.load()
        self.sampler = spec.sampler(self.adapter)
        self.seeds = list(range(EVAL_SEED_START, EVAL_SEED_START + args.samples))
        self._full: dict = {}
        self._profiles: dict[str, Profile] = {}
        self._schedules: dict = {}  # (profile, budget) -> schedule: parts sharing a profile share its schedule

    def log(self, message: str) -> None:
        self._log(f"[{time.perf_counter() - self.started:7.1f}s] {self.spec.name}: {message}")

    def halves_settings(self, halves, **extra) -> dict:
        """The settings a bench on the class halves records (model, sampler, budgets, calibration size, `extra`,
        the held-out half and seeds, threads, torch): bench_probe_samples' and bench_tail_score's results."""
        args = self.args
        return {"model": self.spec.name, "sampler": self.sampler.to_dict(), "budgets": args.budgets,
                "calib": args.calib, **extra, "held_out_on": list(halves[1]),
                "eval_seeds": f"{EVAL_SEED_START}-{EVAL_SEED_START + args.samples - 1}",
                "threads": torch.get_num_threads(), "torch": torch.__version__}

    def generation_timing(self) -> dict:
        """The model's full-compute generation, timed once at its own sampler (interleaved with a block-free
        run, as the profiler times it) and cached in the work folder: seconds per sample and non-block share."""
        path = self.work / "generation.json"
        timing = read_json(path)
        if not timing or timing.get("sampler") != self.sampler.to_dict():
            share, seconds = measure_generation(self.adapter, self.sampler, list(range(CALIB_BATCH)))
            timing = {"sampler": self.sampler.to_dict(), "nonblock_share": share, "generation_seconds": seconds,
                      "seeds": f"0-{CALIB_BATCH - 1}", "threads": torch.get_num_threads()}
            write_json(path, timing)
            self.log(f"timed a full generation: {seconds:.4g} s per sample, non-block share {share:.3f}")
        return timing

    def timed(self, profile: Profile) -> Profile:
        """`profile` with the model's generation timing that the transfer profiles skip (no latency tables), so
        every search here runs on the work-charged clock as `schedc solve` does on a profile of `schedc profile`:
        its schedule then does not depend on how busy the machine was. Scaled to the profile's step count."""
        if profile.meta.generation_seconds is not None:
            return profile
        timing = self.generation_timing()
        seconds = timing["generation_seconds"] * profile.num_steps / self.sampler.steps
        return replace(profile, meta=replace(profile.meta, generation_seconds=float(f"{seconds:.4g}"),
                                             nonblock_share=profile.meta.nonblock_share or round(timing["nonblock_share"], 4)))

    def profile(self, label: str, adapter, sampler: SamplerConfig) -> Profile:
        """The profile of `adapter` (label: which inputs) at `sampler`; shared by every part that needs it."""
        name = f"{label}-{sampler.steps}steps-g{sampler.guidance_scale:g}" + (
            f"-{sampler.scheduler}" if sampler.scheduler != self.sampler.scheduler else "")
        if name in self._profiles:
            return self._profiles[name]
        path = self.work / f"{name}.npz"
        if path.exists():
            profile = Profile.load(path)
            if profile.meta.sampler == sampler.to_dict() and len(profile.meta.calibration_seeds) == self.args.calib:
                return self._profiles.setdefault(name, self.timed(profile))
        self.log(f"profiling {name} ({sampler.steps} steps, g={sampler.guidance_scale:g})")
        # FLOP cost model (no latency timing): transfer is a property of the error tables, not of this CPU
        config = ProfileConfig(calib_samples=self.args.calib, batch_size=CALIB_BATCH, measure_latency=False)
        profile = profile_model(adapter, sampler, config, progress=False)
        profile.save(path)
        return self._profiles.setdefault(name, self.timed(profile))

    def schedule(self, profile: Profile, budget: float, calibrating=None):
        """--solver's schedule; the closed-loop search rolls out on `calibrating` (the adapter whose inputs the
        profile was measured on; default the model's own), at the profile's sampler, as `schedc solve` does.
        Memoised per profile and budget: a time-limited search need not compile the same schedule twice."""
        key = (id(profile), budget)  # the memo holds the profile too, so its id is not reused while it is there
        if key not in self._schedules:
            self._schedules[key] = (profile, self.searched(profile, budget, calibrating=calibrating)
                                    if self.args.solver == "search" else
                                    compile_schedule(profile, budget, self.args.solver,
                                                     Constraints(time_limit=self.args.time_limit), allow=self.args.allow))
        return self._schedules[key][1]

    def per_sample(self, adapter, schedule, sampler: SamplerConfig, batch: int = 32) -> np.ndarray:
        """[N] PSNR of `schedule` run at `sampler` vs full compute at `sampler`, held-out seeds."""
        inputs = adapter.make_inputs(self.seeds)
        chunks = lambda: (inputs.subset(slice(i, i + batch)) for i in range(0, len(inputs), batch))  # noqa: E731
        key = (id(adapter), batch, tuple(sorted(sampler.to_dict().items())))
        if key not in self._full:  # full compute once per inputs, batch and sampler
            self._full[key] = torch.cat([adapter.generate(x, sampler) for x in chunks()]).float().clamp(-1, 1)
        full = self._full[key]
        own = sampler if schedule.num_steps == sampler.steps else sampler.with_changes(steps=schedule.num_steps)
        with replaying(adapter, schedule):  # a schedule the search compiled for fewer steps runs at its own count
            out = torch.cat([adapter.generate(x, own) for x in chunks()]).float().clamp(-1, 1)
        return psnr(out, full).numpy()

    def row(self, part: str, setting: str, budget: float, native: np.ndarray, moved: np.ndarray, **extra) -> dict:
        p5 = lambda a: float(np.percentile(a, 5))  # noqa: E731
        return {"part": part, "setting": setting, "budget": budget, "native_mean": float(native.mean()),
                "native_p5": p5(native), "transfer_mean": float(moved.mean()), "transfer_p5": p5(moved),
                "loss_mean": float(native.mean() - moved.mean()), "loss_p5": p5(native) - p5(moved),
                "loss_mean_ci": paired_ci(lambda a, b: np.mean(a) - np.mean(b), native, moved),
                "native_psnr": [round(float(v), 3) for v in native], "transfer_psnr": [round(float(v), 3) for v in moved],
                **extra}

    def compare(self, part: str, setting: str, native: Profile, elsewhere: Profile, adapter,
                sampler: SamplerConfig, elsewhere_adapter=None) -> list[dict]:
        """At every budget: a schedule compiled from `native` vs one from `elsewhere`, both run on `adapter`
        at `sampler` (the run's conditions); `elsewhere_adapter` holds the inputs `elsewhere` was calibrated on."""
        rows = []
        for budget in self.args.budgets:
            a, b = self.schedule(native, budget, adapter), self.schedule(elsewhere, budget, elsewhere_adapter or adapter)
            rows.append(self.row(part, setting, budget, self.per_sample(adapter, a, sampler),
                                 self.per_sample(adapter, b, sampler), solves=[_solve_stats(a), _solve_stats(b)]))
            self.log(_line(rows[-1]))
        return rows

    # -- parts ----------------------------------------------------------------------------------------
    def part_steps(self) -> list[dict]:
        source_sampler = self.sampler.with_changes(steps=SOURCE_STEPS)
        source = self.profile("all", self.adapter, source_sampler)
        rows = []
        for steps in self.args.steps:
            sampler = self.sampler.with_changes(steps=steps)
            native = self.profile("all", self.adapter, sampler)
            moved = MEASURE_AT_STEPS[self.args.measure](
                retargeted_profile(self.adapter, source, steps), self.adapter, sampler)
            rows += self.compare("steps", f"{SOURCE_STEPS} -> {steps} steps", native, moved, self.adapter, sampler)
        return rows

    def part_classes(self) -> list[dict]:
        found = calibrations(self.adapter)
        if found is None:
            return []
        halves, by_role = found
        (_, first), (_, second) = by_role["a"], by_role["b"]
        calibrated = self.profile(*by_role["a"], self.sampler)
        native = self.profile(*by_role["b"], self.sampler)
        return self.compare("classes", f"calibrated on {_ids(halves[0])}, run on {_ids(halves[1])}", native,
                            calibrated, second, self.sampler, elsewhere_adapter=first)

    def part_reseed(self) -> list[dict]:
        found = calibrations(self.adapter)
        if found is None:
            return []
        halves, by_role = found
        (_, second), (_, other) = by_role["b"], by_role["reseed"]
        native = self.profile(*by_role["b"], self.sampler)
        reseeded = self.profile(*by_role["reseed"], self.sampler)
        return self.compare("reseed", f"calibrated on {_ids(halves[1])} with seeds +{RESEED_OFFSET}, run on "
                            f"{_ids(halves[1])}", native, reseeded, second, self.sampler, elsewhere_adapter=other)

    def part_guidance(self) -> list[dict]:
        if self.sampler.cfg == "none":
            return []
        g0 = self.sampler.guidance_scale
        source = self.profile("all", self.adapter, self.sampler)
        rows = []
        for g in self.args.guidances:
            if abs(g - g0) < 1e-9:
                continue
            sampler = self.sampler.with_changes(guidance_scale=g)
            native = self.profile("all", self.adapter, sampler)
            rows += self.compare("guidance", f"compiled at g={g0:g}, run at g={g:g}", native, source, self.adapter, sampler)
        return rows

    def part_scheduler(self) -> list[dict]:
        from schedc.errors import ModelError

        own = self.sampler.scheduler
        source = self.profile("all", self.adapter, self.sampler)
        rows = []
        for name in (n for n in SCHEDULERS if n != own):
            sampler = self.sampler.with_changes(scheduler=name)
            try:
                timesteps = self.adapter.model_timesteps(sampler)
            except (ModelError, ValueError) as exc:  # incompatible, or schedc's own DDIM (reference-dit)
                self.log(f"no {name}: {exc}")
                continue
            native = self.profile("all", self.adapter, sampler)
            moved = measure_gains(retarget_profile(source, sampler.steps, timesteps, sampler.to_dict()), self.adapter,
                                  sampler)
            rows += self.compare("scheduler", f"compiled for {own}, run with {name}", native, moved, self.adapter, sampler)
        return rows

    def part_batch(self) -> list[dict]:
        profile = self.profile("all", self.adapter, self.sampler)
        rows = []
        for budget in self.args.budgets:
            schedule = self.schedule(profile, budget)
            at_calib = self.per_sample(self.adapter, schedule, self.sampler, CALIB_BATCH)
            for batch in self.args.batches:
                rows.append(self.row("batch", f"batch {batch} (calibration batch {CALIB_BATCH})", budget, at_calib,
                                     self.per_sample(self.adapter, schedule, self.sampler, batch)))
            self.log(_line(rows[-1]))
        return rows

    def part_minimax(self) -> list[dict]:
        if self.sampler.cfg == "none":
            return []
        scales = sorted(self.args.guidances)
        profiles = [self.profile("all", self.adapter, self.sampler.with_changes(guidance_scale=g)) for g in scales]
        primary, others = profiles[len(profiles) // 2], tuple(p for p in profiles if p is not profiles[len(profiles) // 2])
        rows = []
        for budget in self.args.budgets:
            schedules = {f"g={g:g} only": self.searched(p, budget) for g, p in zip(scales, profiles)}
            singles = tuple(tuple(tuple(row) for row in s.decisions) for s in schedules.values())
            for objective in ("worst", "mean"):  # warm-started from the single-scale schedules, as the README says
                schedules[f"--for {objective}"] = self.searched(primary, budget, others, objective, singles)
            by_g = {name: {f"{g:g}": self.per_sample(self.adapter, sch, self.sampler.with_changes(guidance_scale=g))
                           for g in scales} for name, sch in schedules.items()}
            summary = {name: {g: [float(a.mean()), float(np.percentile(a, 5))] for g, a in runs.items()}
                       for name, runs in by_g.items()}
            worst = {name: min(v[0] for v in runs.values()) for name, runs in summary.items()}
            singles = max(v for k, v in worst.items() if k.endswith("only"))
            names = [n for n in by_g if n.endswith("only")]
            arrays = [by_g["--for worst"][g] for g in by_g["--for worst"]] + [by_g[n][g] for n in names for g in by_g[n]]
            margin = lambda *a: minimax_margin(a, len(scales))  # noqa: E731
            rows.append({"part": "minimax", "setting": f"g in {','.join(f'{g:g}' for g in scales)}", "budget": budget,
                         "by_g": summary, "worst_case": worst, "meets": worst["--for worst"] >= singles - 1e-9,
                         "margin": worst["--for worst"] - singles, "margin_ci": paired_ci(margin, *arrays),
                         "selection": {name: {k: sch.provenance["stats"].get(k) for k in ("selected", "selected_on_fresh_seeds")}
                                       for name, sch in schedules.items() if name.startswith("--for")}})
            self.log(f"minimax b={budget:.2f}: worst case " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()))
        return rows

    def searched(self, profile: Profile, budget: float, others: tuple = (), objective: str = "mean", starts: tuple = (),
                 calibrating=None):
        """The default solver's schedule (closed-loop search at the profile's step count), rolling out on
        `calibrating` (the adapter whose inputs the profile was measured on; default the model's own)."""
        context = SolveContext(adapter=calibrating or self.adapter, progress=False, settings=others, objective=objective,
                               warm_starts=starts, vary_steps=self.args.vary_steps and not others,
                               wall_guard=WALL_GUARD, samples=self.args.search_samples)
        return compile_schedule(profile, budget, "search", Constraints(time_limit=self.args.time_limit), allow=self.args.allow,
                                context=context)

    def run(self) -> dict:
        tag = ("" if self.args.solver == "dp" else f"-{self.args.solver}" + ("-vary-steps" if self.args.vary_steps else "")) + (
            "-allow-" + "-".join(self.args.allow) if self.args.allow else "")
        path = self.work / f"rows{tag}.json"
        cached = read_json(path) or {}
        key = {"budgets": self.args.budgets, "samples": self.args.samples, "calib": self.args.calib,
               "solver": self.args.solver, "steps": self.args.steps, "guidances": self.args.guidances,
               "batches": self.args.batches, "time_limit": self.args.time_limit,
               "measured_at_steps": self.args.measure, **({"vary_steps": True} if self.args.vary_steps else {}),
               **({"allow": list(self.args.allow)} if self.args.allow else {}),
               **({"search_samples": self.args.search_samples} if self.args.search_samples else {})}
        parts = cached.get("parts", {}) if cached.get("key") == key else {}
        for part in self.args.parts:
            if part not in parts:
                parts[part] = getattr(self, f"part_{part}")()
                write_json(path, {"key": key, "parts": parts})
        settings = {"model": self.spec.name, "sampler": self.sampler.to_dict(), **key,
                    "eval_seeds": f"{self.seeds[0]}-{self.seeds[-1]}", "calibration_seeds": f"0-{self.args.calib - 1}",
                    "threads": torch.get_num_threads(), "torch": torch.__version__}
        return {"settings": settings, "rows": [r for p in PARTS for r in parts.get(p, [])]}


def _keep_other_parts(result: dict, previous: dict | None, parts: list[str]) -> dict:
    """A run of some parts keeps the rows of the parts it did not run (and the settings they ran with)."""
    key_names = ("budgets", "samples", "calib", "solver", "steps", "guidances", "batches", "time_limit", "measured_at_steps")
    this = {k: result["settings"][k] for k in key_names}
    if not previous or "rows" not in previous:
        return {**result, "part_settings": {p: this for p in parts}}
    before = previous.get("part_settings") or {
        p: {k: previous["settings"].get(k) for k in key_names} for p in {r["part"] for r in previous["rows"]}}
    kept = [r for r in previous["rows"] if r["part"] not in parts]
    rows = sorted(kept + result["rows"], key=lambda r: PARTS.index(r["part"]))
    return {**result, "rows": rows, "part_settings": {**{p: v for p, v in before.items() if p not in parts},
                                                      **{p: this for p in parts}}}


SOLVE_STATS = ("selected", "lead_confidence", "rollouts", "stopped_by", "clock", "charged_seconds", "steps",
               "search_psnr", "predicted_psnr")


def _solve_stats(schedule) -> dict:
    """What a row's schedule came from (search: which finalist it kept, how many rollouts, what ended it)."""
    stats = schedule.provenance.get("stats") or {}
    return {"solver": schedule.provenance.get("solver"), **{k: stats[k] for k in SOLVE_STATS if k in stats}}


def _ids(ids: tuple[int, ...]) -> str:
    return f"{ids[0]}-{ids[-1]}" if list(ids) == list(range(ids[0], ids[-1] + 1)) else ",".join(map(str, ids))


def _line(r: dict) -> str:
    return (f"{r['setting']} b={r['budget']:.2f}: native {r['native_mean']:.2f} (p5 {r['native_p5']:.2f}), "
            f"transferred {r['transfer_mean']:.2f} (p5 {r['transfer_p5']:.2f}), loss {r['loss_mean']:+.2f} / {r['loss_p5']:+.2f} dB"
            + "".join(f"; {who}: {s.get('selected', '-')} at {s.get('steps', '-')} steps, {s.get('rollouts')} rollouts, "
                      f"{s.get('stopped_by')}" for who, s in zip(("native", "moved"), r.get("solves", ()))
                      if s.get("solver") == "search"))


ACCEPT = {"classes": (0.5, 1.0), "steps": (1.0, None)}  # issue #12: mean / worst-5% loss bars per part


def summary_markdown(results: list[dict]) -> str:
    lines = ["# Transfer: PSNR lost by a schedule run outside its calibration", "",
             "loss = (schedule compiled for the run's conditions) - (schedule compiled elsewhere), same solver and "
             "budget, held-out seeds, both vs full compute under the run's conditions; p5 = 5th percentile of "
             "per-sample PSNR (the worst 5%). Positive loss: the transferred schedule is worse. 95% CI: paired bootstrap "
             f"of the mean loss over the held-out samples ({CI_RESAMPLES} resamples): an interval that holds 0 is a loss "
             "within sampling noise. Bars (issue #12): "
             "classes <= 0.5 dB mean and <= 1 dB worst 5%; steps (retargeted vs native) within 1 dB at budgets 0.2-0.5.", ""]
    for res in results:
        s = res["settings"]
        lines += [f"## {s['model']} ({s['sampler']['steps']} steps {s['sampler']['scheduler']}, CFG {s['sampler']['cfg']} "
                  f"g={s['sampler']['guidance_scale']:g}; solver {s['solver']}"
                  + (" trying fewer step counts (--vary-steps, as schedc solve does)" if s.get("vary_steps") else "")
                  + (f", options {','.join(s['allow'])} only" if s.get("allow") else "")
                  + f", {s['calib']} calibration samples"
                  + (f" (the search scores on {s['search_samples']})" if s.get("search_samples") else "") + ", "
                  f"{s['samples']} held-out; steps part, measured at the new count: {_steps_measured(res)})", "",
                  "| part | setting | budget | compiled here: mean / p5 dB | transferred: mean / p5 dB | loss mean dB | "
                  "its 95% CI | loss p5 dB | meets bar |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in res["rows"] if r["part"] != "minimax"):
            bar = ACCEPT.get(r["part"])
            meets = "-" if bar is None else ("yes" if r["loss_mean"] <= bar[0] and (bar[1] is None or r["loss_p5"] <= bar[1])
                                            else "**no**")
            lines.append(f"| {r['part']} | {r['setting']} | {r['budget']:.2f} | {r['native_mean']:.2f} / {r['native_p5']:.2f} | "
                         f"{r['transfer_mean']:.2f} / {r['transfer_p5']:.2f} | {r['loss_mean']:+.2f} | {_ci(r.get('loss_mean_ci'))} | "
                         f"{r['loss_p5']:+.2f} | {meets} |")
        lines.append("")
        lines += _minimax_table([r for r in res["rows"] if r["part"] == "minimax"])
    total = [(r, ACCEPT[r["part"]]) for res in results for r in res["rows"] if r["part"] in ACCEPT]
    ok = sum(r["loss_mean"] <= b[0] and (b[1] is None or r["loss_p5"] <= b[1]) for r, b in total)
    lines.append(f"Rows with a bar that meet it: {ok}/{len(total)}.")
    minimax = [r for res in results for r in res["rows"] if r["part"] == "minimax"]
    if minimax:
        lines.append(f"`--for worst` at least as good in the worst case as every single-scale schedule: "
                     f"{sum(r['meets'] for r in minimax)}/{len(minimax)} rows.")
    return "\n".join(lines) + "\n"


def _steps_measured(result: dict) -> str:
    """What the steps part measured at the new step count (runs before --measure: not recorded)."""
    steps = (result.get("part_settings") or {}).get("steps", {})
    return steps.get("measured_at_steps") or {"measured": "gains", "transferred": "nothing"}.get(steps.get("gains"),
                                                                                                 "not recorded")


def _ci(interval) -> str:
    """A bootstrap interval as text ("-" for rows measured before the bench kept one)."""
    return "-" if not interval else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _minimax_table(rows: list[dict]) -> list[str]:
    """One line per budget and schedule: mean / p5 PSNR at each guidance scale, and the worst case."""
    if not rows:
        return []
    scales = list(rows[0]["by_g"][next(iter(rows[0]["by_g"]))])
    lines = ["One schedule for several guidance scales (closed-loop search; mean / p5 dB at each scale, worst case = "
             "lowest mean):", "",
             "| budget | schedule | " + " | ".join(f"g={g}" for g in scales) + " | worst case dB | meets bar |",
             "|---|---|" + "---|" * len(scales) + "---|---|"]
    for r in rows:
        for name, runs in r["by_g"].items():
            meets = (("yes" if r["meets"] else "**no**") + f" ({r['margin']:+.2f}, 95% CI {_ci(r.get('margin_ci'))})"
                     if name == "--for worst" else "")
            lines.append(f"| {r['budget']:.2f} | {name} | " + " | ".join(f"{runs[g][0]:.2f} / {runs[g][1]:.2f}" for g in scales)
                         + f" | {r['worst_case'][name]:.2f} | {meets} |")
    return lines + [""]


def main() -> int:
    parser = model_bench_parser(__doc__, "/tmp/schedc-transfer", "transfer")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts ({','.join(PARTS)})")
    parser.add_argument("--budgets", type=numbers(float), default=[0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--steps", type=numbers(int), default=[20, 25, 30, 100])
    parser.add_argument("--guidances", type=numbers(float), default=[1.5, 3.0, 5.0])
    parser.add_argument("--batches", type=numbers(int), default=[1, 4, 16, 64])
    parser.add_argument("--solver", default="dp")
    parser.add_argument("--measure", choices=tuple(MEASURE_AT_STEPS), default="tables",
                        help="steps part, what is measured at the new step count: 'tables' (every table and the "
                             "gains, on the profile's probe samples: what `schedc solve --steps` does when the model "
                             "loads; default), 'gains' (only the propagation gains, the tables retargeted) or "
                             "'nothing' (everything retargeted by noise level: the profile-only path)")
    parser.add_argument("--calib", type=int, default=16, help="calibration samples of every profile (default 16)")
    parser.add_argument("--search-samples", type=int, default=None,
                        help="calibration samples each of the search's rollouts is scored on (default: the search's "
                             "own, 16; at most --calib)")
    parser.add_argument("--allow", type=lambda v: tuple(o for o in v.split(",") if o), default=None, metavar="OPTIONS",
                        help="the solver's decision set, as `schedc solve --allow` (default: all the profile measured). "
                             "residual,output,forecast: native computes only, what the latency cost model of `schedc "
                             "profile` picks on a CPU (its int8 kernels are slower than float ones here), and the "
                             "search's clock prices right")
    parser.add_argument("--vary-steps", action="store_true",
                        help="--solver search: also try fewer sampler steps, as `schedc solve` does by default (--steps "
                             "auto); without it the search keeps the profile's step count, as the DP rows do")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        print(write_summary(out, summary_markdown))
        return 0
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose from {', '.join(PARTS)}")
    torch.set_num_threads(args.threads)
    specs = model_specs(args)
    log = lambda m: print(m, flush=True)  # noqa: E731
    for spec in specs:
        result = _keep_other_parts(Transfer(spec, args, log).run(), read_json(out / f"{spec.name}.json"), args.parts)
        atomic_write_text(out / f"{spec.name}.json", json.dumps(result, indent=1))
    print(write_summary(out, summary_markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
