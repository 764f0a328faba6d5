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
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import yaml

from .modes import REUSE_MODES as _MODE_REGISTRY

SCHEDULE_VERSION = 1
COMPUTE_PRECISIONS = ("native", "int8", "fp8", "int4w")
REUSE_MODES = tuple(_MODE_REGISTRY)  # every registered reuse mode (runtime/modes/)
ACTIONS = COMPUTE_PRECISIONS + REUSE_MODES
# batched: [cond, uncond] rows in one call (either order); two-call: one call per branch per step
# (diffusers' cache_context("cond"/"uncond")); none: no guidance. Caches never mix branches.
CFG_MODES = ("batched", "two-call", "none")


class ScheduleFormatError(ValueError):
    """The schedule cannot be used: the message says why in one line."""


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
        if self.block_outputs and len(self.block_outputs) != len(self.blocks):
            raise ScheduleFormatError(
                f"model.block_outputs describes {len(self.block_outputs)} blocks, model.blocks has {len(self.blocks)}"
            )
        if not self.blocks:
            raise ScheduleFormatError("model.blocks is empty")
        if self.steps < 1:
            raise ScheduleFormatError(f"model.steps must be >= 1, got {self.steps}")
        if len(self.timesteps) != self.steps:
            raise ScheduleFormatError(
                f"model.timesteps has {len(self.timesteps)} entries but model.steps is {self.steps}"
            )
        if self.cfg not in CFG_MODES:
            raise ScheduleFormatError(f"model.cfg must be one of {CFG_MODES}, got {self.cfg!r}")


@dataclass(frozen=True)
class Schedule:
    """decisions[t][b] is an action name: a compute precision or a reuse mode."""

    model: ModelInfo
    decisions: tuple[tuple[str, ...], ...]  # [T][B]
    sampling: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        steps, blocks = self.model.steps, len(self.model.blocks)
        if len(self.decisions) != steps:
            raise ScheduleFormatError(f"schedule has {len(self.decisions)} steps, model.steps is {steps}")
        for t, row in enumerate(self.decisions):
            if len(row) != blocks:
                raise ScheduleFormatError(f"step {t} has {len(row)} decisions for {blocks} blocks")
            for b, action in enumerate(row):
                if action not in ACTIONS:
                    raise ScheduleFormatError(
                        f"step {t}, block {b}: unsupported decision {action!r} (known: {', '.join(ACTIONS)})"
                    )
        for b in range(blocks):
            if is_reuse(self.decisions[0][b]):
                raise ScheduleFormatError(f"block {b} reuses at step 0, before any compute")
            if not self.residual_ok(b) and any(_MODE_REGISTRY[m].reads != "output" for m in self.reuse_modes_of(b)):
                raise ScheduleFormatError(
                    f"block {self.model.blocks[b]} can only replay its output (its output is not a residual of its input)"
                )

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

        True when block b reuses before it computes again, and at every compute of a block with a
        mode that reads more than the last compute (a forecast extrapolates from several).
        """
        steps, blocks = self.num_steps, self.num_blocks
        needed = [[False] * blocks for _ in range(steps)]
        for b in range(blocks):
            forecasts = self.history_of(b) > 1
            reused_later = False
            for t in range(steps - 1, -1, -1):
                if is_reuse(self.decisions[t][b]):
                    reused_later = True
                else:
                    needed[t][b] = reused_later or forecasts
                    reused_later = False
        return tuple(tuple(row) for row in needed)

    def history_of(self, block: int) -> int:
        """Most computes any reuse mode of `block` reads (0: the block never reuses a residual)."""
        return max((_MODE_REGISTRY[m].cache_tensors()[0] for m in self.reuse_modes_of(block)), default=0)

    def cache_tensors(self, block: int) -> int:
        """Tensors (each the shape of the block's output) one cache of `block` holds."""
        modes = [_MODE_REGISTRY[m] for m in self.reuse_modes_of(block)]
        return self.history_of(block) + max((m.cache_tensors()[1] for m in modes), default=0)

    def peak_cache_tensors(self) -> int:
        """Most cached tensors alive at once in one generation (per CFG branch): memory known in advance."""
        needed = self.cache_needed()
        sizes = [self.cache_tensors(b) for b in range(self.num_blocks)]
        peak = 0
        live = [False] * self.num_blocks
        for t in range(self.num_steps):
            for b in range(self.num_blocks):
                if not is_reuse(self.decisions[t][b]):
                    live[b] = needed[t][b]
            peak = max(peak, sum(size for size, alive in zip(sizes, live) if alive))
        return peak

    def precisions_used(self) -> frozenset[tuple[int, str]]:
        """(block, precision) pairs the schedule ever computes below native precision."""
        return frozenset((b, a) for row in self.decisions for b, a in enumerate(row) if a not in ("native",) and not is_reuse(a))


# ---------------------------------------------------------------------------------------------
# block index ranges: "0-2,5,7-9" <-> [0, 1, 2, 5, 7, 8, 9]


def format_ranges(indices: Iterable[int]) -> str:
    items = sorted(set(indices))
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


def parse_ranges(text: Any, limit: int, where: str) -> list[int]:
    if isinstance(text, int):
        text = str(text)
    if isinstance(text, list):
        text = ",".join(str(x) for x in text)
    if not isinstance(text, str):
        raise ScheduleFormatError(f"{where}: expected block ranges like '0-2,5', got {text!r}")
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ScheduleFormatError(f"{where}: bad block range {part!r}") from None
        if not (0 <= first <= last < limit):
            raise ScheduleFormatError(f"{where}: block range {part!r} outside 0..{limit - 1}")
        out.extend(range(first, last + 1))
    return out


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
            blocks = [b for b, a in enumerate(row) if a == action]
            if blocks:
                entry["reuse" if action == "residual" else action] = format_ranges(blocks)
        steps.append(entry)
    return {
        "schedc_schedule": SCHEDULE_VERSION,
        "model": {
            "name": m.name,
            "fingerprint": m.fingerprint,
            "blocks": list(m.blocks),
            "steps": m.steps,
            "timesteps": [float(x) if not float(x).is_integer() else int(x) for x in m.timesteps],
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
    if not groups:
        return ()
    if not isinstance(groups, list):
        raise ScheduleFormatError("model.block_outputs must be a list of {blocks, outputs} entries")
    specs: list = [None] * blocks
    for entry in groups:
        names = _require(entry, "outputs", "model.block_outputs entry")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ScheduleFormatError("model.block_outputs: outputs must be a list of input argument names")
        for b in parse_ranges(_require(entry, "blocks", "model.block_outputs entry"), blocks, "model.block_outputs"):
            specs[b] = tuple(names)
    return tuple(specs)


class _FlowListDumper(yaml.SafeDumper):
    """Block-style mappings, flow-style short lists and step entries: small, diff-friendly files."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = "step" in data or all(not isinstance(v, (dict, list)) for v in data.values()) and len(data) <= 6
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(dict, _represent_dict)
_FlowListDumper.add_representer(list, _represent_list)


def dump_schedule(schedule: Schedule) -> str:
    return yaml.dump(schedule_to_dict(schedule), Dumper=_FlowListDumper, sort_keys=False, width=100)


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ScheduleFormatError(f"{where}: missing '{key}'")
    return mapping[key]


def schedule_from_dict(data: Any) -> Schedule:
    if not isinstance(data, Mapping):
        raise ScheduleFormatError("not a schedc schedule (expected a YAML mapping)")
    version = data.get("schedc_schedule")
    if version is None:
        raise ScheduleFormatError("not a schedc schedule (no 'schedc_schedule' version key)")
    if version != SCHEDULE_VERSION:
        raise ScheduleFormatError(
            f"schedule format version {version!r} is not supported (this runtime reads version {SCHEDULE_VERSION})"
        )
    m = _require(data, "model", "schedule")
    try:
        model = ModelInfo(
            name=str(_require(m, "name", "model")),
            fingerprint=str(_require(m, "fingerprint", "model")),
            blocks=tuple(str(x) for x in _require(m, "blocks", "model")),
            steps=int(_require(m, "steps", "model")),
            timesteps=tuple(float(x) for x in _require(m, "timesteps", "model")),
            cfg=str(m.get("cfg", "batched")),
            timestep_arg=str(m.get("timestep_arg", "timestep")),
            block_outputs=_parse_outputs(m.get("block_outputs"), len(_require(m, "blocks", "model"))),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ScheduleFormatError):
            raise
        raise ScheduleFormatError(f"model section is malformed: {exc}") from None
    defaults = data.get("defaults") or {}
    default_compute = defaults.get("compute", "native")
    default_reuse = defaults.get("reuse", "residual")
    for name, value, allowed in (("compute", default_compute, COMPUTE_PRECISIONS), ("reuse", default_reuse, REUSE_MODES)):
        if value not in allowed:
            raise ScheduleFormatError(f"defaults.{name}: unsupported {value!r} (known: {', '.join(allowed)})")
    entries = _require(data, "steps", "schedule")
    if not isinstance(entries, list):
        raise ScheduleFormatError("'steps' must be a list with one entry per step")
    blocks = len(model.blocks)
    rows: dict[int, list[str]] = {}
    for entry in entries:
        t = _require(entry, "step", "steps entry")
        if not isinstance(t, int) or not 0 <= t < model.steps:
            raise ScheduleFormatError(f"step index {t!r} outside 0..{model.steps - 1}")
        if t in rows:
            raise ScheduleFormatError(f"step {t} appears twice")
        row = [default_compute] * blocks
        seen: set[int] = set()
        for key, value in entry.items():
            if key == "step":
                continue
            action = default_reuse if key == "reuse" else key
            if action not in ACTIONS:
                raise ScheduleFormatError(f"step {t}: unsupported decision {key!r} (known: reuse, {', '.join(ACTIONS)})")
            for b in parse_ranges(value, blocks, f"step {t}, {key}"):
                if b in seen:
                    raise ScheduleFormatError(f"step {t}: block {b} has two decisions")
                seen.add(b)
                row[b] = action
        rows[t] = row
    missing = [t for t in range(model.steps) if t not in rows]
    if missing:
        raise ScheduleFormatError(f"schedule has no entry for step(s) {format_ranges(missing)}")
    decisions = tuple(tuple(rows[t]) for t in range(model.steps))
    return Schedule(
        model=model,
        decisions=decisions,
        sampling=dict(data.get("sampling") or {}),
        provenance=dict(data.get("provenance") or {}),
    )


def load_schedule(source: "str | os.PathLike | Mapping | Schedule") -> Schedule:
    """Load and validate a schedule from a path, a parsed mapping, or pass a Schedule through."""
    if isinstance(source, Schedule):
        return source
    if isinstance(source, Mapping):
        return schedule_from_dict(source)
    path = os.fspath(source)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ScheduleFormatError(f"schedule file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleFormatError(f"cannot read schedule {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ScheduleFormatError(f"schedule {path} is not valid YAML{where}") from None
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
