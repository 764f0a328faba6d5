"""Bounded, strict YAML for untrusted schedule files. Needs only pyyaml.

`yaml.safe_load` is safe from code execution but not from hostile or careless input: an alias chain
("billion laughs") expands exponentially, deep nesting overflows the recursion limit, duplicate keys
silently keep the last value, and YAML 1.1 reads `010` as 8, `1_0` as 10 and `1:30` as 90. Schedules
need none of that, so `load_yaml` refuses it instead of guessing:

- files over `MAX_FILE_BYTES` (checked before reading) and anything that is not a regular file;
- anchors (`&a`), aliases (`*a`) and merge keys (`<<`);
- nesting deeper than `MAX_DEPTH` and documents of more than `MAX_NODES` nodes;
- duplicate keys in any mapping (keys equal as Python values: `1`, `1.0` and `true` are the same key);
- explicit tags other than the plain ones (str, int, float, bool, null, seq, map);
- integers not written in plain decimal (`+1`, `010`, `0x1f`, `1_0`, `1:30`), over `MAX_INT_DIGITS`
  digits; floats with `_` or `:`.

Timestamps load as the string they are written as. Every refusal is a `YamlRefused` with a one-line
message. The work is linear in the capped input: at the caps, under 1.5 s with libyaml (used when
pyyaml has it), a few seconds with the pure-Python parser.

Also here: `ScheduleFormatError`, the exact type checks (`string`, `integer`, `number`, `seq`,
`mapping`, `plain_mapping`) the format applies to every field (what YAML holds and gives back
unchanged), and the block-range grammar (`parse_ranges`: ASCII digits only, each index once).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import stat
from typing import Any, Iterable, Mapping

import yaml

MAX_FILE_BYTES = 4 << 20  # 4 MiB; the largest real schedule (1000 steps x 200 blocks) is ~0.7 MB
MAX_DEPTH = 32  # real schedules nest 5 deep
MAX_NODES = 100_000  # the largest real schedule has ~15,000
MAX_INT_DIGITS = 18

_PLAIN_TAGS = {None, "!"} | {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)")


class ScheduleFormatError(ValueError):
    """The schedule cannot be used: the message says why in one line."""


class YamlRefused(ScheduleFormatError):
    """The YAML text uses something a schedule never needs; the message says what, in one line."""


def _line(node_or_event) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f"line {mark.line + 1}: " if mark is not None else ""


class _Strict:
    """Constructor overrides: refuse duplicate and merge keys and ambiguous numbers (see the module doc)."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise YamlRefused(f"{_line(node)}expected a mapping")
        mapping: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlRefused(f"{_line(key_node)}merge keys (<<) are not allowed")
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:
                raise YamlRefused(f"{_line(key_node)}a mapping key must be a scalar") from None
            if duplicate:
                raise YamlRefused(f"{_line(key_node)}duplicate key {short(key)}")
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        if not _DECIMAL.fullmatch(text):
            raise YamlRefused(f"{_line(node)}integer {short(text)} must be written in plain decimal digits")
        if len(text.lstrip("-")) > MAX_INT_DIGITS:
            raise YamlRefused(f"{_line(node)}integer {short(text)} is too large")
        return int(text)

    def construct_yaml_float(self, node):
        text = self.construct_scalar(node)
        if "_" in text or ":" in text:
            raise YamlRefused(f"{_line(node)}number {short(text)} must be written without '_' or ':'")
        return super().construct_yaml_float(node)


def _strict_loader(base: type, *hooks: type) -> type:
    loader = type(f"Strict{base.__name__}", (*hooks, _Strict, base), {})
    loader.add_constructor("tag:yaml.org,2002:int", _Strict.construct_yaml_int)
    loader.add_constructor("tag:yaml.org,2002:float", _Strict.construct_yaml_float)
    loader.add_constructor("tag:yaml.org,2002:timestamp", base.construct_yaml_str)
    for tag in ("binary", "set", "omap", "pairs"):  # only reachable through explicit tags, refused first
        loader.add_constructor(f"tag:yaml.org,2002:{tag}", base.construct_undefined)
    return loader




def short(value, limit: int = 40) -> str:
    """repr(value), cut to `limit` characters: user values in one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


def printable(text: str) -> bool:
    """Whether YAML can hold `text` (it has no control characters or lone surrogates)."""
    return _NON_PRINTABLE.search(text) is None


class _Guard:
    """Checks parser events one by one, before anything is composed: no recursion, no expansion."""

    def __init__(self) -> None:
        self.depth = self.nodes = 0

    def __call__(self, event) -> None:
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(f"{_line(event)}YAML aliases (*{event.anchor}) are not allowed")
        if isinstance(event, yaml.NodeEvent):
            self.nodes += 1
            if event.anchor is not None:
                raise YamlRefused(f"{_line(event)}YAML anchors (&{event.anchor}) are not allowed")
            if event.tag not in _PLAIN_TAGS:
                raise YamlRefused(f"{_line(event)}YAML tag {short(event.tag)} is not allowed")
            if self.nodes > MAX_NODES:
                raise YamlRefused(f"more than {MAX_NODES} YAML nodes (no real schedule has that many)")
        if isinstance(event, yaml.CollectionStartEvent):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise YamlRefused(f"{_line(event)}nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            self.depth -= 1


class _GuardedParser:
    """Pure-Python parser hook: every event passes the guard as the composer takes it (one parse)."""

    def get_event(self):
        event = super().get_event()
        if "_guard" not in self.__dict__:
            self._guard = _Guard()
        self._guard(event)
        return event


PureStrictLoader = _strict_loader(yaml.SafeLoader, _GuardedParser)  # pure Python: what runs where libyaml is missing
StrictLoader = _strict_loader(yaml.CSafeLoader) if getattr(yaml, "__with_libyaml__", False) else PureStrictLoader


def load_yaml(text: str, loader: "type | None" = None):
    """Parse one YAML document under the rules above (libyaml's parser when present: ~10x faster).

    Raises YamlRefused or yaml.YAMLError."""
    loader = loader or StrictLoader
    if len(text) > MAX_FILE_BYTES:
        raise YamlRefused(f"{len(text)} characters is over the {MAX_FILE_BYTES}-byte limit")
    if not issubclass(loader, _GuardedParser):  # libyaml composes in C: check every event in a first pass
        guard = _Guard()
        for event in yaml.parse(text, Loader=loader):
            guard(event)
    return yaml.load(text, Loader=loader)


def read_capped(path: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes, the size checked before reading.

    Raises YamlRefused (too big, not a regular file), OSError or UnicodeDecodeError."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise YamlRefused("is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise YamlRefused("not a regular file")  # a FIFO would block, a device never end
    if info.st_size > limit:
        raise YamlRefused(f"{info.st_size} bytes is over the {limit}-byte limit for a schedule")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)  # the file may have grown since the stat
    if len(data) > limit:
        raise YamlRefused(f"over the {limit}-byte limit for a schedule")
    return data.decode("utf-8")


class _FlowListDumper(yaml.SafeDumper):
    """Block-style mappings, flow-style short lists and step entries: small, diff-friendly files.

    A SafeDumper: it quotes every string its (YAML 1.1) resolver would read as another type, so the
    strict loader reads back exactly what it wrote."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = "step" in data or all(not isinstance(v, (dict, list)) for v in data.values()) and len(data) <= 6
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(dict, _represent_dict)
_FlowListDumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_FlowListDumper, sort_keys=False, width=100)


# ---------------------------------------------------------------------------------------------
# exact types: what YAML holds and gives back unchanged; each check names the field in its message

MAX_PLAIN_DEPTH, MAX_PLAIN_ITEMS = 16, 100_000  # per `sampling` / `provenance` mapping


def fail(where: str, expected: str, value: Any) -> ScheduleFormatError:
    return ScheduleFormatError(f"{where} must be {expected}, got {short(value)}")


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise fail(where, "a string", value)
    if not printable(value):
        raise fail(where, "a string of printable characters", value)
    return str(value)


def integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise fail(where, "an integer", value)
    if abs(int(value)) >= 10**MAX_INT_DIGITS:
        raise fail(where, f"an integer under {MAX_INT_DIGITS} digits", value)
    return int(value)


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(where, "a number", value)
    if not math.isfinite(value):
        raise fail(where, "finite", value)
    return float(value)


def seq(value: Any, where: str, limit: int | None = None) -> list:
    if not isinstance(value, (list, tuple)):
        raise fail(where, "a list", value)
    if limit is not None and len(value) > limit:
        raise ScheduleFormatError(f"{where} has {len(value)} entries, more than the limit of {limit}")
    return list(value)


def mapping(value: Any, where: str, known: "tuple[str, ...] | None" = None) -> dict:
    if not isinstance(value, Mapping):
        raise fail(where, "a mapping", value)
    out = {string(k, f"{where} key"): v for k, v in value.items()}
    unknown = [k for k in out if known is not None and k not in known]
    if unknown:
        raise ScheduleFormatError(f"{where}: unknown key {short(unknown[0])} (known: {', '.join(known)})")
    return out


def _plain(value: Any, where: str, budget: list[int], depth: int = 0) -> Any:
    """`value` as plain YAML data (dict/list/str/int/float/bool/None) that dumps and loads back equal."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_PLAIN_DEPTH:
        raise ScheduleFormatError(f"{where}: more than {MAX_PLAIN_ITEMS} items or {MAX_PLAIN_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return string(value, where)
    if isinstance(value, numbers.Integral):
        return integer(value, where)
    if isinstance(value, numbers.Real):
        return number(value, where)
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{where}.{k}", budget, depth + 1) for k, v in mapping(value, where).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", budget, depth + 1) for i, v in enumerate(value)]
    raise fail(where, "plain data (a string, number, bool, null, list or mapping)", value)


def plain_mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    return _plain(mapping(value, where), where, [MAX_PLAIN_ITEMS])


# ---------------------------------------------------------------------------------------------
# block index ranges: "0-2,5,7-9" <-> [0, 1, 2, 5, 7, 8, 9]; ASCII digits only, each index once

MAX_RANGE_INDICES = 1 << 20  # what one range list may expand to


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


_RANGE = re.compile(r"([0-9]{1,18})(?:-([0-9]{1,18}))?")


def parse_ranges(text: Any, limit: int, where: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]: ASCII digits only, each index in 0..limit-1 at most once."""
    if isinstance(text, numbers.Integral) and not isinstance(text, bool):
        text = str(int(text))
    elif isinstance(text, (list, tuple)):
        text = ",".join(str(integer(x, where) if not isinstance(x, str) else x) for x in text)
    if not isinstance(text, str):
        raise ScheduleFormatError(f"{where}: expected block ranges like '0-2,5', got {short(text)}")
    out: list[int] = []
    seen: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        match = _RANGE.fullmatch(part)
        if match is None:
            raise ScheduleFormatError(f"{where}: bad block range {short(part)} (expected ASCII digits: 'a' or 'a-b')")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if not (0 <= first <= last < limit):
            raise ScheduleFormatError(f"{where}: block range {part!r} outside 0..{limit - 1}")
        if len(out) + last - first + 1 > MAX_RANGE_INDICES:
            raise ScheduleFormatError(f"{where}: ranges cover more than {MAX_RANGE_INDICES} indices")
        for i in range(first, last + 1):
            if i in seen:
                raise ScheduleFormatError(f"{where}: index {i} listed twice")
            seen.add(i)
            out.append(i)
    return out
