"""The schedule file format: versioned YAML, validated on load. Needs only pyyaml.

The compiler writes schedules with `dump_schedule` and the runtime reads them with `load_schedule`:
one definition of the format, owned by the runtime so deployments need nothing else.

    schedc_schedule: 1
    model: {name: reference-dit, fingerprint: "sha256:...", blocks: [blocks.0, ...], steps: 50,
            timesteps: [999, ...], cfg: batched, timestep_arg: timestep}
    sampling: {steps: 50, guidance_scale: 3.0, scheduler: ddim, cfg: batched}
    provenance: {solver: dp, budget: 0.4, profile: "sha256:...", predicted: {cost: 0.4, rel_l2: 0.02}}
    defaults: {compute: native, reuse: residual}
    steps:                      # one entry per step; blocks not listed compute at `defaults.compute`
      - {step: 0}
      - {step: 1, reuse: 3-11}  # `reuse` means `defaults.reuse`; a mode name may be used instead
      - {step: 2, span: 1-11}   # blocks 1..11 reuse residuals as one span (one combined residual, spans.py)

Every input loads into a valid `Schedule` or raises `ScheduleFormatError` (a ValueError) with a one-line
message, in bounded time. Limits have margin over the largest real schedule (1000 steps x 200 blocks,
~0.7 MB of YAML): files <= 4 MiB (checked before reading), <= 100,000 YAML nodes, nesting <= 32;
`model.steps` <= MAX_STEPS (4000), `model.blocks` <= MAX_BLOCKS (1000), steps x blocks <= MAX_DECISIONS
(1,000,000). YAML anchors, aliases, merge keys, duplicate keys at any level, non-plain tags and ints not
in plain decimal (`010`, `+1`, `1_0`) are refused (safeyaml.py). Types are exact (mappings with string
keys, lists, strings, ints that are not bools); unknown keys in the top level, `model`, `defaults` are
refused; block names are distinct; timesteps finite and strictly decreasing (diffusers' schedulers run
downwards); block ranges ASCII `a` or `a-b`, each block once per step; `sampling` and `provenance` hold
plain data (<= 16 deep, 100,000 items). The same checks run when a `Schedule` is built in Python, so
whatever `dump_schedule` writes loads back equal.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import yaml

from .modes import REUSE_MODES as _MODE_REGISTRY
from .spans import Span, check_spans, format_spans, parse_spans, plan_spans
from .safeyaml import (ScheduleFormatError, YamlRefused, dump_yaml, fail, format_ranges, integer,
                       load_yaml, mapping, number, parse_ranges, plain_mapping, read_capped, seq, short, string)

SCHEDULE_VERSION = 1
COMPUTE_PRECISIONS = ("native", "int8", "fp8", "int4w")
REUSE_MODES = tuple(_MODE_REGISTRY)  # every registered reuse mode (runtime/modes/)
ACTIONS = COMPUTE_PRECISIONS + REUSE_MODES
# batched: [cond, uncond] rows in one call (either order); two-call: one call per branch per step
# (diffusers' cache_context("cond"/"uncond")); none: no guidance. Caches never mix branches.
CFG_MODES = ("batched", "two-call", "none")
MAX_STEPS = 4000  # DDPM's 1000 steps, 4x
MAX_BLOCKS = 1000  # 5x the finest real split (~200 hooked blocks)
MAX_DECISIONS = 1_000_000  # steps x blocks: 5x the largest real schedule (1000 x 200)
_TOP_KEYS = ("schedc_schedule", "model", "sampling", "provenance", "defaults", "steps")
_MODEL_KEYS = ("name", "fingerprint", "blocks", "steps", "timesteps", "cfg", "timestep_arg", "block_outputs")
_CANONICAL = {a: a for a in ACTIONS}


TIMESTEP_TOLERANCE = 1e-4  # a received timestep matches a recorded one this close (and nearer than any other)


def timestep_key(t: float) -> float:
    """A timestep as messages print it (4 decimals)."""
    return round(float(t), 4)


class TimestepIndex:
    """Which step of a schedule a received timestep is: the nearest recorded one, if within a tolerance.

    Why not an exact key: schedules store timesteps to 6 decimals and the model receives float32 values, so
    a rounded key splits on a rounding boundary (FLUX at 100 steps received 0.10965 for a recorded 0.109650,
    one side of a 4-decimal boundary each). The tolerance is TIMESTEP_TOLERANCE, or a quarter of the smallest
    gap between recorded timesteps where that is smaller, so no value can match two steps.
    """

    def __init__(self, timesteps: "tuple[float, ...] | list[float]") -> None:
        self._ascending = sorted(float(t) for t in timesteps)
        self._steps = {t: i for i, t in enumerate(float(t) for t in timesteps)}
        gaps = [b - a for a, b in zip(self._ascending, self._ascending[1:])]
        self.tolerance = min([TIMESTEP_TOLERANCE] + [g / 4 for g in gaps])

    def index(self, value: float) -> "int | None":
        """The step whose recorded timestep is `value` (within the tolerance), else None."""
        i = bisect.bisect_left(self._ascending, value)
        near = [self._ascending[j] for j in (i - 1, i) if 0 <= j < len(self._ascending)]
        best = min(near, key=lambda t: abs(t - value), default=None)
        return None if best is None or abs(best - value) > self.tolerance else self._steps[best]

    def matches(self, timesteps: "tuple[float, ...] | list[float]") -> bool:
        """Whether `timesteps` are the recorded ones, step for step."""
        return len(timesteps) == len(self._steps) and all(self.index(float(t)) == i for i, t in enumerate(timesteps))


def is_reuse(action: str) -> bool:
    return action in REUSE_MODES


@dataclass(frozen=True)
class ModelInfo:
    name: str
    fingerprint: str
    blocks: tuple[str, ...]
    steps: int
    timesteps: tuple[float, ...]
    cfg: str = "batched"
    timestep_arg: str = "timestep"
    # per block: how its outputs relate to its inputs (see blockio.py); () = every block is one tensor,
    # the residual of its first input
    block_outputs: tuple["tuple[str, ...] | None", ...] = ()

    def __post_init__(self) -> None:
        """Validates every field and normalises sequences to tuples, timesteps to floats."""
        put = object.__setattr__
        for name in ("name", "fingerprint", "cfg", "timestep_arg"):
            put(self, name, string(getattr(self, name), f"model.{name}"))
        blocks = tuple(string(b, f"model.blocks[{i}]") for i, b in enumerate(seq(self.blocks, "model.blocks", MAX_BLOCKS)))
        if not blocks:
            raise ScheduleFormatError("model.blocks is empty")
        if len(set(blocks)) != len(blocks) or "" in blocks:
            raise ScheduleFormatError("model.blocks must be distinct, non-empty module names")
        put(self, "blocks", blocks)
        steps = integer(self.steps, "model.steps")
        if not 1 <= steps <= MAX_STEPS:
            raise ScheduleFormatError(f"model.steps must be in 1..{MAX_STEPS}, got {steps}")
        if steps * len(blocks) > MAX_DECISIONS:
            raise ScheduleFormatError(f"{steps} steps x {len(blocks)} blocks is over the limit of {MAX_DECISIONS} decisions")
        put(self, "steps", steps)
        timesteps = seq(self.timesteps, "model.timesteps", MAX_STEPS)
        if len(timesteps) != steps:
            raise ScheduleFormatError(f"model.timesteps has {len(timesteps)} entries but model.steps is {steps}")
        timesteps = tuple(number(x, f"model.timesteps[{i}]") for i, x in enumerate(timesteps))
        for i in range(1, steps):
            if not timesteps[i] < timesteps[i - 1]:
                raise ScheduleFormatError(
                    f"model.timesteps must be strictly decreasing (diffusers' schedulers run downwards): "
                    f"entry {i} is {timesteps[i]:g} after {timesteps[i - 1]:g}"
                )
        put(self, "timesteps", timesteps)
        if self.cfg not in CFG_MODES:
            raise ScheduleFormatError(f"model.cfg must be one of {CFG_MODES}, got {self.cfg!r}")
        outputs = tuple(
            None if spec is None else tuple(string(n, "model.block_outputs") for n in seq(spec, "model.block_outputs"))
            for spec in seq(self.block_outputs, "model.block_outputs", MAX_BLOCKS)
        )
        if outputs and len(outputs) != len(blocks):
            raise ScheduleFormatError(f"model.block_outputs describes {len(outputs)} blocks, model.blocks has {len(blocks)}")
        put(self, "block_outputs", outputs if any(o is not None for o in outputs) else ())


@dataclass(frozen=True)
class Schedule:
    """decisions[t][b] is an action name: a compute precision or a reuse mode.

    spans: () or, per step, the (first, last) block runs whose residual reuses replay as one combined
    residual (spans.py); they change how a reuse runs, not what it computes.
    """

    model: ModelInfo
    decisions: tuple[tuple[str, ...], ...]  # [T][B]
    sampling: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    spans: tuple[tuple[Span, ...], ...] = ()  # [T] sorted, non-overlapping; () = no spans

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelInfo):
            raise fail("model", "a ModelInfo", self.model)
        steps, blocks = self.model.steps, len(self.model.blocks)
        rows = seq(self.decisions, "decisions", MAX_STEPS)
        if len(rows) != steps:
            raise ScheduleFormatError(f"schedule has {len(rows)} steps, model.steps is {steps}")
        decisions = []
        for t, row in enumerate(rows):
            row = seq(row, f"step {t}", MAX_BLOCKS)
            if len(row) != blocks:
                raise ScheduleFormatError(f"step {t} has {len(row)} decisions for {blocks} blocks")
            canonical = tuple(_CANONICAL.get(a) if isinstance(a, str) else None for a in row)
            if None in canonical:
                b = canonical.index(None)
                raise ScheduleFormatError(
                    f"step {t}, block {b}: unsupported decision {short(row[b])} (known: {', '.join(ACTIONS)})"
                )
            decisions.append(canonical)
        object.__setattr__(self, "decisions", tuple(decisions))
        object.__setattr__(self, "sampling", plain_mapping(self.sampling, "sampling"))
        object.__setattr__(self, "provenance", plain_mapping(self.provenance, "provenance"))
        for b in range(blocks):
            if is_reuse(self.decisions[0][b]):
                raise ScheduleFormatError(f"block {b} reuses at step 0, before any compute")
            if not self.residual_ok(b) and any(_MODE_REGISTRY[m].reads != "output" for m in self.reuse_modes_of(b)):
                raise ScheduleFormatError(
                    f"block {self.model.blocks[b]} can only replay its output (its output is not a residual of its input)"
                )
        object.__setattr__(self, "spans", check_spans(self.spans, self.decisions, self.model.block_outputs, REUSE_MODES))

    def in_span(self, step: int, block: int) -> bool:
        """Whether (step, block) reuses through a span (its per-block cache is not read)."""
        return bool(self.spans) and any(a <= block <= e for a, e in self.spans[step])

    def outputs_of(self, block: int) -> "tuple[str, ...] | None":
        return self.model.block_outputs[block] if self.model.block_outputs else None

    def residual_ok(self, block: int) -> bool:
        outputs = self.outputs_of(block)
        return outputs is None or any(outputs)

    @property
    def num_steps(self) -> int:
        return self.model.steps

    @property
    def num_blocks(self) -> int:
        return len(self.model.blocks)

    def compute_fraction(self) -> float:
        """Block computations / (steps x blocks): the cost if every block costs the same."""
        computed = sum(not is_reuse(a) for row in self.decisions for a in row)
        return computed / (self.num_steps * self.num_blocks)

    def reuse_modes_of(self, block: int) -> frozenset[str]:
        return frozenset(row[block] for row in self.decisions if is_reuse(row[block]))

    def cache_needed(self) -> tuple[tuple[bool, ...], ...]:
        """[T][B]: whether the compute at (t, b) must leave a cache behind.

        True for the last `history` computes of block b before each of its reuses (one for a residual or
        output reuse, two for a forecast): a compute no reuse reads stores nothing, so a block that
        forecasts once keeps no residuals for the rest of the generation. A reuse in a span reads the
        span's combined residual, not the block's own cache.
        """
        steps, blocks = self.num_steps, self.num_blocks
        needed = [[False] * blocks for _ in range(steps)]
        for b in range(blocks):
            computes: list[int] = []
            for t in range(steps):
                action = self.decisions[t][b]
                if not is_reuse(action):
                    computes.append(t)
                elif not self.in_span(t, b):
                    for s in computes[-_MODE_REGISTRY[action].history:]:
                        needed[s][b] = True
        return tuple(tuple(row) for row in needed)

    def residuals_held(self) -> tuple[tuple[int, ...], ...]:
        """[T][B]: residuals block b's cache holds after its compute at step t, in a generation started at
        step 0 (0 at reuses). A compute that stores adds its residual to the ones the previous compute
        left (up to `history_of(b)`); one that stores nothing frees them. What a forecast can read, and
        what its memory is."""
        needed = self.cache_needed()
        held = [[0] * self.num_blocks for _ in range(self.num_steps)]
        for b in range(self.num_blocks):
            keep, count = self.history_of(b), 0
            for t, row in enumerate(self.decisions):
                if not is_reuse(row[b]):
                    count = min(keep, count + 1) if needed[t][b] else 0
                    held[t][b] = count
        return tuple(tuple(row) for row in held)

    def history_of(self, block: int) -> int:
        """Most computes any reuse mode of `block` reads (0: the block never reuses a residual)."""
        return max((_MODE_REGISTRY[m].cache_tensors()[0] for m in self.reuse_modes_of(block)), default=0)

    def outputs_of_cache(self, block: int) -> int:
        """Whole outputs any reuse mode of `block` keeps (1 for output reuse, else 0)."""
        return max((_MODE_REGISTRY[m].cache_tensors()[1] for m in self.reuse_modes_of(block)), default=0)

    def cache_tensors(self, block: int) -> int:
        """Tensors (each the shape of the block's output) one cache of `block` holds at most."""
        return self.history_of(block) + self.outputs_of_cache(block)

    def peak_cache_tensors(self) -> int:
        """Most cached tensors alive at once in one generation (per CFG branch): memory known in advance.

        Counted after each block's compute, in call order (a block's new cache can be alive next to a later
        block's old one); a span's combined residual is one tensor from the compute step it sums to its
        last read."""
        return int(self.peak_cache_bytes([1] * self.num_blocks))

    def peak_cache_bytes(self, tensor_bytes: "Iterable[float]") -> float:
        """Most cache bytes alive at once (as peak_cache_tensors), one block-output tensor of block b being
        tensor_bytes[b] bytes (a span's combined residual: its first block's)."""
        weights = [float(x) for x in tensor_bytes]
        if len(weights) != self.num_blocks:
            raise ScheduleFormatError(f"cache bytes are needed for each of the {self.num_blocks} blocks, got {len(weights)}")
        needed, held = self.cache_needed(), self.residuals_held()
        plan = plan_spans(self.spans, self.decisions, REUSE_MODES)
        outputs = [self.outputs_of_cache(b) for b in range(self.num_blocks)]
        peak = 0.0
        live = [0.0] * self.num_blocks  # bytes block b's cache holds since its last compute
        for t in range(self.num_steps):
            spans = sum(weights[first] for (first, _, s), last in plan.last_read.items() if s <= t < last)
            for b in range(self.num_blocks):  # in call order: a block's new cache can meet a later block's old one
                if not is_reuse(self.decisions[t][b]):
                    live[b] = (held[t][b] + outputs[b] * needed[t][b]) * weights[b]
                    peak = max(peak, sum(live) + spans)
            peak = max(peak, sum(live) + spans)
        return peak

    def precisions_used(self) -> frozenset[tuple[int, str]]:
        """(block, precision) pairs the schedule ever computes below native precision."""
        return frozenset((b, a) for row in self.decisions for b, a in enumerate(row) if a not in ("native",) and not is_reuse(a))


# ---------------------------------------------------------------------------------------------
# YAML


def schedule_to_dict(schedule: Schedule) -> dict:
    m = schedule.model
    steps = []
    for t, row in enumerate(schedule.decisions):
        entry: dict[str, Any] = {"step": t}
        for action in ACTIONS:
            if action == "native":
                continue
            blocks = [b for b, a in enumerate(row) if a == action and not schedule.in_span(t, b)]
            if blocks:
                entry["reuse" if action == "residual" else action] = format_ranges(blocks)
        if schedule.spans and schedule.spans[t]:
            entry["span"] = format_spans(schedule.spans[t])
        steps.append(entry)
    return {
        "schedc_schedule": SCHEDULE_VERSION,
        "model": {
            "name": m.name,
            "fingerprint": m.fingerprint,
            "blocks": list(m.blocks),
            "steps": m.steps,
            "timesteps": [int(x) if x.is_integer() and abs(x) < 1e15 else x for x in m.timesteps],
            "cfg": m.cfg,
            "timestep_arg": m.timestep_arg,
            **({"block_outputs": _group_outputs(m.block_outputs)} if any(o is not None for o in m.block_outputs) else {}),
        },
        "sampling": dict(schedule.sampling),
        "provenance": dict(schedule.provenance),
        "defaults": {"compute": "native", "reuse": "residual"},
        "steps": steps,
    }


def _group_outputs(outputs: tuple) -> list[dict]:
    """Per-block outputs specs as [{blocks: "0-18", outputs: [...]}, ...] (blocks sharing a spec grouped)."""
    groups: dict[tuple, list[int]] = {}
    for b, spec in enumerate(outputs):
        if spec is not None:
            groups.setdefault(tuple(spec), []).append(b)
    return [{"blocks": format_ranges(blocks), "outputs": list(spec)} for spec, blocks in groups.items()]


def _parse_outputs(groups: Any, blocks: int) -> tuple:
    if groups is None:
        return ()
    specs: list = [None] * blocks
    for i, entry in enumerate(seq(groups, "model.block_outputs", MAX_BLOCKS)):
        entry = mapping(entry, f"model.block_outputs[{i}]", ("blocks", "outputs"))
        names = seq(_require(entry, "outputs", "model.block_outputs entry"), "model.block_outputs outputs", 64)
        for b in parse_ranges(_require(entry, "blocks", "model.block_outputs entry"), blocks, "model.block_outputs"):
            if specs[b] is not None:
                raise ScheduleFormatError(f"model.block_outputs: block {b} described twice")
            specs[b] = tuple(string(n, "model.block_outputs outputs") for n in names)
    return tuple(specs)


def dump_schedule(schedule: Schedule) -> str:
    return dump_yaml(schedule_to_dict(schedule))


def _require(section: Mapping, key: str, where: str) -> Any:
    if key not in section:
        raise ScheduleFormatError(f"{where}: missing '{key}'")
    return section[key]


def schedule_from_dict(data: Any) -> Schedule:
    if not isinstance(data, Mapping):
        raise ScheduleFormatError("not a schedc schedule (expected a YAML mapping)")
    if "schedc_schedule" not in data:
        raise ScheduleFormatError("not a schedc schedule (no 'schedc_schedule' version key)")
    version = data["schedc_schedule"]
    if isinstance(version, bool) or not isinstance(version, int) or version != SCHEDULE_VERSION:
        raise ScheduleFormatError(
            f"schedule format version {short(version)} is not supported (this runtime reads version {SCHEDULE_VERSION})"
        )
    data = mapping(data, "schedule", _TOP_KEYS)
    m = mapping(_require(data, "model", "schedule"), "model", _MODEL_KEYS)
    blocks = seq(_require(m, "blocks", "model"), "model.blocks", MAX_BLOCKS)
    model = ModelInfo(
        name=_require(m, "name", "model"),
        fingerprint=_require(m, "fingerprint", "model"),
        blocks=blocks,
        steps=_require(m, "steps", "model"),
        timesteps=_require(m, "timesteps", "model"),
        cfg=m.get("cfg", "batched"),
        timestep_arg=m.get("timestep_arg", "timestep"),
        block_outputs=_parse_outputs(m.get("block_outputs"), len(blocks)),
    )
    defaults = mapping(data.get("defaults") or {}, "defaults", ("compute", "reuse"))
    default_compute = defaults.get("compute", "native")
    default_reuse = defaults.get("reuse", "residual")
    for name, value, allowed in (("compute", default_compute, COMPUTE_PRECISIONS), ("reuse", default_reuse, REUSE_MODES)):
        if not isinstance(value, str) or value not in allowed:
            raise ScheduleFormatError(f"defaults.{name}: unsupported {short(value)} (known: {', '.join(allowed)})")
    entries = seq(_require(data, "steps", "schedule"), "'steps' (one entry per step)", MAX_STEPS)
    nblocks = len(model.blocks)
    rows: dict[int, list[str]] = {}
    spans: dict[int, tuple] = {}
    for i, entry in enumerate(entries):
        entry = mapping(entry, f"steps[{i}]")
        t = _require(entry, "step", "steps entry")
        t = integer(t, f"steps[{i}].step")
        if not 0 <= t < model.steps:
            raise ScheduleFormatError(f"step index {t} outside 0..{model.steps - 1}")
        if t in rows:
            raise ScheduleFormatError(f"step {t} appears twice")
        row = [default_compute] * nblocks
        seen: set[int] = set()
        for key, value in entry.items():
            if key == "step":
                continue
            if key == "span":  # its blocks reuse residuals, through one combined residual per span
                spans[t] = parse_spans(value, nblocks, f"step {t}, span")
                for a, e in spans[t]:
                    for b in range(a, e + 1):
                        if b in seen:
                            raise ScheduleFormatError(f"step {t}: block {b} has two decisions")
                        seen.add(b)
                        row[b] = "residual"
                continue
            action = default_reuse if key == "reuse" else key
            if action not in ACTIONS:
                raise ScheduleFormatError(f"step {t}: unsupported decision {short(key)} (known: reuse, span, {', '.join(ACTIONS)})")
            for b in parse_ranges(value, nblocks, f"step {t}, {key}"):
                if b in seen:
                    raise ScheduleFormatError(f"step {t}: block {b} has two decisions")
                seen.add(b)
                row[b] = action
        rows[t] = row
    missing = [t for t in range(model.steps) if t not in rows]
    if missing:
        raise ScheduleFormatError(f"schedule has no entry for step(s) {format_ranges(missing)}")
    return Schedule(
        model=model,
        decisions=tuple(tuple(rows[t]) for t in range(model.steps)),
        sampling=data.get("sampling"),
        provenance=data.get("provenance"),
        spans=tuple(spans.get(t, ()) for t in range(model.steps)) if spans else (),
    )


def load_schedule(source: "str | os.PathLike | Mapping | Schedule") -> Schedule:
    """Load and validate a schedule from a path, a parsed mapping, or pass a Schedule through.

    Raises ScheduleFormatError (one line) for anything that is not a valid schedule."""
    if isinstance(source, Schedule):
        return source
    if isinstance(source, Mapping):
        return schedule_from_dict(source)
    try:
        path = os.fspath(source)
    except TypeError:
        raise fail("a schedule source", "a path, a mapping or a Schedule", source) from None
    try:
        data = load_yaml(read_capped(path))
    except FileNotFoundError:
        raise ScheduleFormatError(f"schedule file not found: {path}") from None
    except YamlRefused as exc:
        raise ScheduleFormatError(f"schedule {path}: {exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ScheduleFormatError(f"schedule {path} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ScheduleFormatError(f"cannot read schedule {path}: {short(str(exc), 200)}") from None
    try:
        return schedule_from_dict(data)
    except ScheduleFormatError as exc:
        raise ScheduleFormatError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# model fingerprint: which model a schedule was compiled for


def model_fingerprint(model: Any, block_names: Iterable[str]) -> str:
    """sha256 over the model class, the block names, and every parameter's name and shape
    (not dtype: one schedule serves fp32, bf16 and fp16 runs of the same model)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name in block_names:
        h.update(f"|{name}".encode())
    for pname, param in model.named_parameters():
        h.update(f";{pname}:{tuple(param.shape)}".encode())
    return "sha256:" + h.hexdigest()[:32]
