"""Schedule documents for fuzzing the loader: valid ones from hypothesis strategies, then mutated.

Shared by tests/test_schedule_fuzz.py (a few seconds in the suite) and bench/bench_fuzz_schedules.py
(>= 2,000 documents). `documents()` draws a valid Schedule, its dict and YAML text, then applies up to
three structural mutations to the dict (drop, duplicate, retype, insert: random scalars, huge numbers,
unicode digits, nested structures, Python-only types) and up to three textual ones to the YAML
(duplicated lines, alias chains, anchors, tags, odd number spellings, deep brackets, truncation,
stray characters). `check()` loads one source and classifies the outcome; `invalid_reason()` re-checks
an accepted schedule without using the loader's own validation.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

from schedc_runtime.format import (
    ACTIONS,
    CFG_MODES,
    COMPUTE_PRECISIONS,
    REUSE_MODES,
    ModelInfo,
    Schedule,
    ScheduleFormatError,
    dump_schedule,
    load_schedule,
    schedule_to_dict,
)
from schedc_runtime.modes import REUSE_MODES as MODES

TIME_LIMIT_S = 2.0  # CPU seconds of this process (time.process_time): the work a file can cause, not what a loaded machine adds
OUTPUT_ONLY = tuple(m for m in REUSE_MODES if MODES[m].reads == "output")

# printable text (YAML cannot hold control characters, surrogates, U+FFFE/U+FFFF)
text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), max_size=10)
names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=10)
scalars = (
    st.none() | st.booleans() | st.integers(-(10**17), 10**17)
    | st.floats(allow_nan=False, allow_infinity=False) | text
)
plain = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8)


@st.composite
def schedules(draw) -> Schedule:
    steps, blocks = draw(st.integers(1, 10)), draw(st.integers(1, 5))
    numbers = st.integers(-1000, 5000) | st.floats(-1e6, 1e6, allow_nan=False)
    timesteps = sorted(draw(st.lists(numbers, min_size=steps, max_size=steps, unique_by=float)), key=float, reverse=True)
    spec = st.none() | st.just(()) | st.lists(st.sampled_from(["", "hidden_states", "encoder_hidden_states"]), min_size=1, max_size=2).map(tuple)
    outputs = draw(st.just(()) | st.lists(spec, min_size=blocks, max_size=blocks).map(tuple))
    residual_ok = [not outputs or o is None or any(o) for o in outputs] if outputs else [True] * blocks
    rows = [tuple(draw(st.sampled_from(COMPUTE_PRECISIONS)) for _ in range(blocks))]
    for _ in range(steps - 1):
        rows.append(tuple(
            draw(st.sampled_from(COMPUTE_PRECISIONS + (REUSE_MODES if residual_ok[b] else OUTPUT_ONLY)))
            for b in range(blocks)
        ))
    model = ModelInfo(
        name=draw(text), fingerprint=draw(text), blocks=tuple(draw(st.lists(names, min_size=blocks, max_size=blocks, unique=True))),
        steps=steps, timesteps=tuple(timesteps), cfg=draw(st.sampled_from(CFG_MODES)), timestep_arg=draw(text),
        block_outputs=outputs,
    )
    return Schedule(model=model, decisions=tuple(rows), sampling=draw(st.dictionaries(text, plain, max_size=3)),
                    provenance=draw(st.dictionaries(text, plain, max_size=4)))


def _nested(depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


NASTY = [
    None, True, False, 0, 1, -1, 7, 2**31, 2**63, 10**30, -(10**30), 1.5, -0.0, math.inf, -math.inf, math.nan, 1e308,
    "", " ", "abc", "0", "1", "١", "٣-٥", "1_0", "+1", "-1", "0x1f", "1e3", "0-99999999999", "3-1", "0,0", "0-1,1",
    "a-b", "\x00", "\ud800", "x" * 5000, "reuse", "native", "residual", "batched", [], {}, [1, 2], ["ab"], ["0-1"],
    {"a": "b"}, {1: "a"}, {None: 1}, {"step": 0}, (1, 2), _nested(40, 1), _nested(20, {"a": 1}),
    list(range(2000)), {str(i): i for i in range(200)},
]
PYTHON_ONLY = [{1, 2}, b"bytes", object(), 1 + 2j, frozenset(), range(3), type]
values = st.sampled_from(NASTY) | st.sampled_from(PYTHON_ONLY) | plain | st.integers() | st.text(max_size=20)


def _slots(node: Any, out: list) -> list:
    """Every (container, key) in the document: where a mutation can act."""
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _slots(node[key], out)
    elif isinstance(node, list):
        for i in range(len(node)):
            out.append((node, i))
            _slots(node[i], out)
    return out


@st.composite
def mutate_dict(draw, doc: dict) -> "tuple[dict, int]":
    """(mutated copy, number of mutations): a count, since `True == 1` hides some from `==`."""
    doc = copy.deepcopy(doc)
    count = draw(st.integers(0, 3))
    for _ in range(count):
        slots = _slots(doc, [])
        container, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["drop", "replace", "replace", "insert", "duplicate"]))
        if op == "drop":
            del container[key]
        elif op == "replace":
            container[key] = copy.deepcopy(draw(values))  # NASTY's lists are shared: never mutate them
        elif op == "insert" and isinstance(container, dict):
            container[draw(st.sampled_from(["step", "reuse", "extra", "native", "output", 1, None, True]) | text)] = copy.deepcopy(draw(values))
        elif op == "insert":
            container.insert(key, copy.deepcopy(draw(values)))
        elif isinstance(container, list):
            container.insert(key, copy.deepcopy(container[key]))
    return doc, count


TOKENS = [
    "010", "+1", "1_0", "0x1f", "1:30", ".inf", "-.inf", ".nan", "١", "true", "yes", "null", "~", "!!binary aGk=",
    "!!python/object/apply:os.system ['true']", "!!set {a}", "!!int '0x1f'", "&a x", "*a", "<<", "=", "[", "{", "'",
    '"', "|", ">", "? ", "- ", "99999999999999999999999", "1e3", "2026-01-01", "1.0e+999", "-0", "00", "'1_0'", "'+1'",
    "'١'", "{a: 1, a: 2}", "[1, 2]", "{}", "[]", "!foo bar", "%YAML 1.1", "---", "...", "\t",
]
CHARS = ["\x00", "\x07", "\t", "\x85", "\u2028", "\ufeff", "\ud7ff", "\ue000", "\U0001f600", ":", "#", "&", "*", "!", "%", "@", "`"]


def _laughs(levels: int) -> str:
    lines = ["lol0: &lol0 'lol'"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@st.composite
def mutate_text(draw, text_: str) -> str:
    for _ in range(draw(st.integers(0, 3))):
        lines = text_.split("\n")
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        op = draw(st.sampled_from(["dup_line", "alias", "token", "nest", "truncate", "char", "repeat_steps"]))
        if op == "dup_line":
            lines.insert(i, lines[i])
        elif op == "alias":
            levels = draw(st.integers(0, 9))
            head, sep, _ = lines[i].partition(": ")
            if sep:
                lines[i] = f"{head}: *lol{levels}"
            lines.insert(0, _laughs(levels).rstrip("\n"))
        elif op == "token":
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            cut = draw(st.integers(0, 6))
            lines[i] = line[:at] + draw(st.sampled_from(TOKENS)) + line[at + cut:]
        elif op == "nest":
            depth = draw(st.sampled_from([10, 31, 32, 33, 100, 1000]))
            head, sep, _ = lines[i].partition(": ")
            lines[i] = f"{head}{sep or ': '}{'[' * depth}{']' * depth}"
        elif op == "truncate":
            text_ = text_[: draw(st.integers(0, len(text_)))]
            continue
        elif op == "char":
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.sampled_from(CHARS) | st.characters()) + line[at:]
        else:
            lines += [ln for ln in lines if ln.startswith("- {step")] * draw(st.integers(1, 3))
        text_ = "\n".join(lines)
    return text_


@dataclass
class Document:
    schedule: Schedule  # the valid one before mutation
    mapping: dict  # mutated dict
    text: str  # mutated YAML text
    pristine: bool  # no mutation: both must load into `schedule`


@st.composite
def documents(draw) -> Document:
    schedule = draw(schedules())
    doc = schedule_to_dict(schedule)
    mapping, mutations = draw(mutate_dict(doc))
    try:
        base_text = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=draw(st.booleans())) if mutations else dump_schedule(schedule)
    except (yaml.YAMLError, TypeError, ValueError):  # Python-only values have no YAML form
        base_text = dump_schedule(schedule)
    text_ = draw(mutate_text(base_text))
    return Document(schedule, mapping, text_, pristine=not mutations and text_ == base_text)


# ---------------------------------------------------------------------------------------------
# independent re-validation of what the loader accepted


def _plain_problem(value: Any, where: str, depth: int = 0) -> "str | None":
    if depth > 64:
        return f"{where}: nested too deep"
    if value is None or type(value) in (bool, str):
        return None
    if type(value) is int:
        return None if abs(value) < 10**18 else f"{where}: huge int"
    if type(value) is float:
        return None if math.isfinite(value) else f"{where}: non-finite"
    if type(value) is list:
        return next((p for i, v in enumerate(value) if (p := _plain_problem(v, f"{where}[{i}]", depth + 1))), None)
    if type(value) is dict:
        if not all(type(k) is str for k in value):
            return f"{where}: non-string key"
        return next((p for k, v in value.items() if (p := _plain_problem(v, f"{where}.{k}", depth + 1))), None)
    return f"{where}: {type(value).__name__} is not plain data"


def invalid_reason(s: Schedule) -> "str | None":
    """Why `s` should not have been accepted (None: it is valid). Uses no validation code of format.py."""
    m = s.model
    if type(m.steps) is not int or not 1 <= m.steps:
        return f"steps {m.steps!r}"
    if type(m.blocks) is not tuple or not m.blocks or any(type(b) is not str or not b for b in m.blocks):
        return "blocks"
    if len(set(m.blocks)) != len(m.blocks):
        return "duplicate block names"
    if any(type(x) is not str for x in (m.name, m.fingerprint, m.cfg, m.timestep_arg)) or m.cfg not in CFG_MODES:
        return "model strings"
    ts = m.timesteps
    if len(ts) != m.steps or any(type(t) is not float or not math.isfinite(t) for t in ts):
        return "timesteps not finite floats, one per step"
    if any(not ts[i] < ts[i - 1] for i in range(1, len(ts))):
        return "timesteps not strictly decreasing"
    if m.block_outputs and (len(m.block_outputs) != len(m.blocks) or all(o is None for o in m.block_outputs)):
        return "block_outputs"
    if len(s.decisions) != m.steps or any(len(row) != len(m.blocks) for row in s.decisions):
        return "decision matrix shape"
    if any(a not in ACTIONS or type(a) is not str for row in s.decisions for a in row):
        return "unknown decision"
    for b in range(len(m.blocks)):
        if s.decisions[0][b] in REUSE_MODES:
            return f"block {b} reuses before any compute"
        spec = m.block_outputs[b] if m.block_outputs else None
        if spec is not None and not any(spec) and any(row[b] in REUSE_MODES and row[b] not in OUTPUT_ONLY for row in s.decisions):
            return f"output-only block {b} reuses a residual"
    return _plain_problem(s.sampling, "sampling") or _plain_problem(s.provenance, "provenance")


# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # loaded | rejected | other (another exception or a bad message) | invalid (accepted but invalid)
    seconds: float
    detail: str = ""


def check(source: Any, tmpdir: str, expect: "Schedule | None" = None) -> Outcome:
    """Load `source` (a mapping, or YAML text written to a file in tmpdir) and classify what happened."""
    if isinstance(source, str):
        path = os.path.join(tmpdir, "fuzz.yaml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(source)
        source = path
    start = time.process_time()
    try:
        loaded = load_schedule(source)
    except ScheduleFormatError as exc:
        seconds, message = time.process_time() - start, str(exc)
        if not message or "\n" in message:
            return Outcome("other", seconds, f"message not one line: {message[:200]!r}")
        return Outcome("rejected", seconds, message)
    except Exception as exc:  # noqa: BLE001 - the point: no other exception may escape
        return Outcome("other", time.process_time() - start, f"{type(exc).__name__}: {str(exc)[:200]}")
    seconds = time.process_time() - start
    if expect is not None and loaded != expect:
        return Outcome("invalid", seconds, "an unmutated document loaded into another schedule")
    reason = invalid_reason(loaded)
    if reason:
        return Outcome("invalid", seconds, reason)
    try:  # round trip: dump -> file -> load, and dump -> plain yaml.safe_load -> load
        dumped = dump_schedule(loaded)
        path = os.path.join(tmpdir, "roundtrip.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(dumped)
        again = load_schedule(path)
        if again != loaded or dump_schedule(again) != dumped or load_schedule(yaml.safe_load(dumped)) != loaded:
            return Outcome("invalid", seconds, "does not round-trip through dump_schedule")
    except Exception as exc:  # noqa: BLE001
        return Outcome("invalid", seconds, f"dump does not load back: {type(exc).__name__}: {str(exc)[:200]}")
    return Outcome("loaded", seconds)
