"""Hostile and faulty schedule files (issue #10): every input loads into a valid Schedule or raises
ScheduleFormatError with a one-line message, within 2 CPU seconds; whatever loads round-trips through dump."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from schedc_runtime import Schedule, ScheduleFormatError, dump_schedule, load_schedule
from schedc_runtime.format import MAX_BLOCKS, MAX_DECISIONS, MAX_STEPS, ModelInfo, parse_ranges, schedule_to_dict
from schedc_runtime.safeyaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, PureStrictLoader, StrictLoader, load_yaml
from tests.fuzz_schedules import TIME_LIMIT_S, _laughs, check, documents, invalid_reason

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "schedules" / "reference-dit-b0.40.yaml"


def _base_text() -> str:
    """A fixed schedule text for the textual mutations: the bundled model's header with decisions and
    provenance of our own, so re-solving the bundled schedule never changes what the tests edit."""
    bundled = load_schedule(BUNDLED)
    steps, blocks = bundled.num_steps, bundled.num_blocks
    rows = [("native",) * blocks, ("residual",) * blocks] + [("native",) * blocks] * (steps - 2)
    rows[7] = tuple("residual" if b in (3, 7) else "native" for b in range(blocks))  # "- {step: 7, reuse: '3,7'}"
    return dump_schedule(Schedule(model=bundled.model, decisions=tuple(rows), sampling=bundled.sampling,
                                  provenance={"solver": "dp", "budget": 0.4, "created": "2026-11-25T17:13:53",
                                              "predicted": {"cost": 0.3794, "rel_l2": 0.02682}}))


BASE = _base_text()
SAMPLING_LINE = next(line for line in BASE.splitlines() if line.startswith("sampling:"))


def _load_text(tmp_path: Path, text: str) -> Schedule:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return load_schedule(path)


def _refused(tmp_path: Path, text: str, match: str) -> str:
    start = time.process_time()
    with pytest.raises(ScheduleFormatError, match=match) as info:
        _load_text(tmp_path, text)
    assert time.process_time() - start < TIME_LIMIT_S
    message = str(info.value)
    assert "\n" not in message
    return message


def _with_laughs(text: str, old: str, new: str) -> str:
    """The bundled schedule with a 9-level alias chain defined at the top and used in place of `old`."""
    assert old in text
    return _laughs(9) + text.replace(old, new, 1)


# ---------------------------------------------------------------------------------------------
# 1. denial of service


@pytest.mark.parametrize("where", ["model.name", "model.blocks", "step range", "version", "provenance"])
def test_billion_laughs_is_refused_fast(tmp_path, where):
    old, new = {
        "model.name": ("  name: reference-dit", "  name: *lol9"),
        "model.blocks": ("  blocks: [", "  blocks: *lol9\n  xblocks: ["),
        "step range": ("- {step: 1, reuse: 0-11}", "- {step: 1, reuse: *lol9}"),
        "version": ("schedc_schedule: 1", "schedc_schedule: *lol9"),
        "provenance": ("  solver: dp", "  solver: *lol9"),
    }[where]
    _refused(tmp_path, _with_laughs(BASE, old, new), "anchors .* not allowed")


def test_alias_without_anchor_definition_is_refused(tmp_path):
    _refused(tmp_path, BASE.replace("  name: reference-dit", "  name: *nowhere"), "aliases .* not allowed|not valid YAML")
    with pytest.raises(ScheduleFormatError, match="aliases"):
        load_yaml("a: [1]\nb: *a")  # libyaml reports an undefined alias late; the event pass sees it first


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    """650k step entries (10 MB): refused from the file size alone, without opening the file."""
    path = tmp_path / "huge.yaml"
    path.write_text(BASE + "".join(f"- {{step: {i}}}\n" for i in range(50, 650_000)))
    assert path.stat().st_size > MAX_FILE_BYTES
    import builtins

    def no_open(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(builtins, "open", no_open)
    start = time.process_time()
    with pytest.raises(ScheduleFormatError, match="over the .*-byte limit"):
        load_schedule(path)
    assert time.process_time() - start < 0.5


def test_many_step_entries_under_the_size_cap_are_refused_fast(tmp_path):
    for entries, match in (
        (200_000, f"more than {MAX_NODES} YAML nodes"),
        (20_000, f"has 20000 entries, more than the limit of {MAX_STEPS}"),
        (3_000, "step index 50 outside 0..49"),
    ):
        text = BASE + "".join(f"- {{step: {i}}}\n" for i in range(50, entries))
        assert len(text) < MAX_FILE_BYTES
        _refused(tmp_path, text, match)


def test_special_files_are_refused(tmp_path):
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(ScheduleFormatError, match="not a regular file"):
        load_schedule(fifo)
    with pytest.raises(ScheduleFormatError, match="directory"):
        load_schedule(tmp_path)


def test_largest_real_schedule_loads_within_the_limits(tmp_path):
    """1000 steps x 200 blocks, every block's decision varying: under the size cap, loads in < 2 s."""
    import random

    rng = random.Random(0)
    steps, blocks = 1000, 200
    actions = ["native", "int8", "residual", "forecast", "forecast2", "output"]
    rows = [("native",) * blocks] + [tuple(rng.choice(actions) for _ in range(blocks)) for _ in range(steps - 1)]
    model = ModelInfo(name="big", fingerprint="sha256:0", blocks=tuple(f"transformer_blocks.{i}.attn1" for i in range(blocks)),
                      steps=steps, timesteps=tuple(999.123456789 - i * 0.9991 for i in range(steps)))
    schedule = Schedule(model=model, decisions=tuple(rows))
    text = dump_schedule(schedule)
    assert len(text.encode()) * 4 < MAX_FILE_BYTES
    start = time.process_time()
    assert _load_text(tmp_path, text) == schedule
    assert time.process_time() - start < TIME_LIMIT_S


def test_size_limits(tmp_path):
    doc = schedule_to_dict(load_schedule(BUNDLED))
    for mutate, match in (
        (lambda d: d["model"].update(steps=MAX_STEPS + 1), f"model.steps must be in 1..{MAX_STEPS}"),
        (lambda d: d["model"].update(blocks=[f"b{i}" for i in range(MAX_BLOCKS + 1)]), "model.blocks has .* more than the limit"),
        (lambda d: d["model"].update(steps=MAX_DECISIONS // 12 + 1), "over the limit of|model.steps must be in"),
        (lambda d: d["model"].update(steps=10**40), "integer under 18 digits"),
    ):
        data = copy.deepcopy(doc)
        mutate(data)
        with pytest.raises(ScheduleFormatError, match=match):
            load_schedule(data)
    with pytest.raises(ScheduleFormatError, match="integer .* is too large"):
        _load_text(tmp_path, BASE.replace("  steps: 50", "  steps: 1" + "0" * 40))


@pytest.mark.parametrize("loader", [StrictLoader, PureStrictLoader], ids=["libyaml", "pure"])
def test_deep_nesting_is_one_line(tmp_path, loader):
    for depth in (MAX_DEPTH + 1, 1000, 100_000):
        with pytest.raises(ScheduleFormatError, match=f"deeper than {MAX_DEPTH}|not valid YAML|nesting"):
            try:
                load_yaml("a: " + "[" * depth + "]" * depth, loader)
            except yaml.YAMLError as exc:  # libyaml's own nesting limit: load_schedule turns it into one line
                raise ScheduleFormatError(f"not valid YAML: {type(exc).__name__}") from None
    message = _refused(tmp_path, BASE + "extra: " + "[" * 1000 + "]" * 1000 + "\n", "deeper than|not valid YAML")
    assert len(message) < 300
    nested: list = []
    for _ in range(1000):
        nested = [nested]
    doc = schedule_to_dict(load_schedule(BUNDLED))
    doc["provenance"]["deep"] = nested
    with pytest.raises(ScheduleFormatError, match="provenance.*levels"):
        load_schedule(doc)


def test_cyclic_and_shared_python_structures_are_bounded():
    doc = schedule_to_dict(load_schedule(BUNDLED))
    cyclic: dict = {}
    cyclic["self"] = cyclic
    doc["provenance"]["cycle"] = cyclic
    with pytest.raises(ScheduleFormatError, match="provenance"):
        load_schedule(doc)
    shared: list = ["lol"]
    for _ in range(30):  # 2**30 leaves if walked as a tree
        shared = [shared, shared]
    doc["provenance"] = {"laughs": shared}
    start = time.process_time()
    with pytest.raises(ScheduleFormatError, match="provenance"):
        load_schedule(doc)
    assert time.process_time() - start < TIME_LIMIT_S


# ---------------------------------------------------------------------------------------------
# 2. one line instead of a traceback


@pytest.mark.parametrize("old,new,match", [
    ("  steps: 50", "  steps: .inf", "model.steps must be an integer, got inf"),
    ("  steps: 50", "  steps: .nan", "model.steps must be an integer"),
    ("  steps: 50", "  steps: 50.0", "model.steps must be an integer"),
    ("  steps: 50", "  steps: '50'", "model.steps must be an integer"),
    ("  steps: 50", "  steps: true", "model.steps must be an integer"),
    ("defaults: {compute: native, reuse: residual}", "defaults: abc", "defaults must be a mapping"),
    ("defaults: {compute: native, reuse: residual}", "defaults: [1, 2]", "defaults must be a mapping"),
    ("defaults: {compute: native, reuse: residual}", "defaults: {compute: 5}", "defaults.compute: unsupported 5"),
    ("  name: reference-dit", "  name: [a]", "model.name must be a string"),
    ("  name: reference-dit", "  name: 12", "model.name must be a string"),
    ("  cfg: batched", "  cfg: {a: 1}", "model.cfg must be a string"),
    ("- {step: 1, reuse: 0-11}", "- [1, 2]", r"steps\[1\] must be a mapping"),
    ("- {step: 1, reuse: 0-11}", "- {step: 1, reuse: {a: 1}}", "expected block ranges"),
    ("- {step: 1, reuse: 0-11}", "- {step: 1, reuse: 1.5}", "expected block ranges"),
    ("- {step: 1, reuse: 0-11}", "- {step: 1, reuse: [true]}", "must be an integer"),
])
def test_wrong_types_are_one_line(tmp_path, old, new, match):
    assert old in BASE
    _refused(tmp_path, BASE.replace(old, new, 1), match)


@pytest.mark.parametrize("where,value,match", [
    ("model.blocks", "abc", "model.blocks must be a list"),
    ("model.blocks", {"a": 1}, "model.blocks must be a list"),
    ("model.blocks", [1, 2], r"model.blocks\[0\] must be a string"),
    ("model.timesteps", 5, "model.timesteps must be a list"),
    ("model.timesteps", "999", "model.timesteps must be a list"),
    ("model", 3, "model must be a mapping"),
    ("model", ["name"], "model must be a mapping"),
    ("steps", {"a": 1}, "'steps' .* must be a list"),
    ("steps", "0-49", "'steps' .* must be a list"),
    ("model.block_outputs", "abc", "model.block_outputs must be a list"),
    ("model.block_outputs", [{"blocks": "0", "outputs": "x"}], "outputs must be a list"),
    ("model.block_outputs", [{"blocks": "0", "outputs": [], "extra": 1}], "unknown key 'extra'"),
])
def test_wrong_section_types_are_one_line(where, value, match):
    doc = schedule_to_dict(load_schedule(BUNDLED))
    *path, key = where.split(".")
    node = doc
    for part in path:
        node = node[part]
    node[key] = value
    with pytest.raises(ScheduleFormatError, match=match) as info:
        load_schedule(doc)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("section", ["sampling", "provenance"])
@pytest.mark.parametrize("value", ["abc", "5", "[1,2]", "true", "['ab']", "[[a, b]]", "{1: a}", "{null: a}", "{a: .nan}"])
def test_sampling_and_provenance_must_be_plain_mappings(tmp_path, section, value):
    # the section, block or flow style, replaced up to the next top-level key
    text = re.sub(rf"^{section}:.*?\n(?=[a-z])", f"{section}: {value}\n", BASE, count=1, flags=re.S | re.M)
    assert f"{section}: {value}\n" in text
    _refused(tmp_path, text, rf"{section}.* must be (a mapping|a string|finite)")


def test_python_only_values_in_a_mapping_are_one_line():
    doc = schedule_to_dict(load_schedule(BUNDLED))
    for bad in ({1, 2}, b"x", object(), 1 + 2j, float("nan"), 10**30, "\ud800", "\x00"):
        data = copy.deepcopy(doc)
        data["provenance"]["x"] = bad
        with pytest.raises(ScheduleFormatError, match="provenance.x must be"):
            load_schedule(data)
    with pytest.raises(ScheduleFormatError, match="a path, a mapping or a Schedule"):
        load_schedule(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# 3. invalid input that used to be accepted


@pytest.mark.parametrize("old,new", [
    ("- {step: 1, reuse: 0-11}", "- {step: 1, reuse: 0-11, reuse: 0}"),
    ("- {step: 1, reuse: 0-11}", "- {step: 1, reuse: 0-11, step: 2}"),
    ("  steps: 50\n", "  steps: 50\n  steps: 50\n"),
    ("  cfg: batched\n", "  cfg: batched\n  cfg: none\n"),
    ("defaults: {compute: native, reuse: residual}", "defaults: {compute: native, reuse: residual}\ndefaults: {reuse: output}"),
    ("  solver: dp\n", "  solver: dp\n  solver: ilp\n"),
    ("  predicted: {cost: 0.3794, rel_l2: 0.02682}", "  predicted: {cost: 0.3794, rel_l2: 0.02682, cost: 0.1}"),
])
def test_duplicate_keys_are_refused_at_any_level(tmp_path, old, new):
    assert old in BASE
    _refused(tmp_path, BASE.replace(old, new, 1), "duplicate key")


def test_merge_keys_are_refused(tmp_path):
    _refused(tmp_path, BASE.replace("- {step: 1, reuse: 0-11}", "- {step: 1, <<: {reuse: 0-11}}"), "merge keys")


@pytest.mark.parametrize("timesteps,match", [
    ("[.nan, 979", r"timesteps\[0\] must be finite"),
    ("[.inf, 979", r"timesteps\[0\] must be finite"),
    ("[999, -.inf", r"timesteps\[1\] must be finite"),
    ("[979, 979", "strictly decreasing .*diffusers"),
    ("[959, 979", "strictly decreasing .*downwards"),
    ("[999, true", r"timesteps\[1\] must be a number"),
    ("[999, '979'", r"timesteps\[1\] must be a number"),
    ("[999, 1e3", r"timesteps\[1\] must be a number"),  # YAML 1.1: 1e3 is a string
])
def test_timesteps_must_be_finite_and_strictly_decreasing(tmp_path, timesteps, match):
    _refused(tmp_path, BASE.replace("[999, 979", timesteps, 1), match)


def test_ascending_timesteps_are_refused_in_python_too():
    with pytest.raises(ScheduleFormatError, match="strictly decreasing"):
        ModelInfo(name="m", fingerprint="f", blocks=("a",), steps=3, timesteps=(1, 2, 3))


@pytest.mark.parametrize("value", ["true", "false", "yes", "1.0", "'1'", "null", "010", "+1", "1_0", "0x1"])
def test_step_index_must_be_a_plain_int(tmp_path, value):
    _refused(tmp_path, BASE.replace("- {step: 1, reuse: 0-11}", f"- {{step: {value}, reuse: 0-11}}"),
             "must be an integer|plain decimal")


@pytest.mark.parametrize("value", ["'1_0'", "'+1'", "'١'", "'٣-٥'", "'0x1'", "'1-'", "'-1'", "'1--2'", "'¹'", "'１'", "'1.0'"])
def test_block_ranges_accept_ascii_digits_only(tmp_path, value):
    _refused(tmp_path, BASE.replace("- {step: 7, reuse: '3,7'}", f"- {{step: 7, reuse: {value}}}"), "bad block range")


@pytest.mark.parametrize("value", ["+1", "1_0", "010", "0x1"])
def test_unquoted_odd_ints_in_ranges_are_refused(tmp_path, value):
    _refused(tmp_path, BASE.replace("- {step: 7, reuse: '3,7'}", f"- {{step: 7, reuse: {value}}}"), "plain decimal")


def test_ranges_refuse_repeats_and_huge_expansions():
    with pytest.raises(ScheduleFormatError, match="listed twice"):
        parse_ranges("0-3,2", 12, "x")
    with pytest.raises(ScheduleFormatError, match="more than"):
        parse_ranges("0-999999999999", 1 << 62, "provenance.calibration_seeds")
    assert parse_ranges("0-2, 5,7-8", 12, "x") == [0, 1, 2, 5, 7, 8]
    assert parse_ranges(3, 12, "x") == [3]


def test_sampling_list_of_pairs_is_not_a_mapping(tmp_path):
    _refused(tmp_path, BASE.replace(SAMPLING_LINE, "sampling: ['ab']"), "sampling must be a mapping, got \\['ab'\\]")


@pytest.mark.parametrize("old,new,match", [
    ("schedc_schedule: 1", "schedc_schedule: true", "version True is not supported"),
    ("schedc_schedule: 1", "schedc_schedule: 1.0", "version 1.0 is not supported"),
    ("  cfg: batched\n", "  cfg: batched\n  cgf: none\n", "model: unknown key 'cgf'"),
    ("defaults: {compute: native, reuse: residual}", "defaults: {compute: native, reuse: residual, extra: 1}", "defaults: unknown key"),
    ("sampling:", "samplnig: {}\nsampling:", "schedule: unknown key 'samplnig'"),
    ("  blocks: [blocks.0, blocks.1,", "  blocks: [blocks.0, blocks.0,", "distinct"),
    ("  blocks: [blocks.0, blocks.1,", "  blocks: ['', blocks.1,", "non-empty"),
    ("  name: reference-dit", "  name: !!binary aGk=", "tag .* not allowed"),
    ("  name: reference-dit", "  name: !!python/object/apply:os.system ['true']", "tag .* not allowed"),
])
def test_other_silent_acceptances(tmp_path, old, new, match):
    assert old in BASE
    _refused(tmp_path, BASE.replace(old, new, 1), match)


def test_timestamps_stay_strings_and_round_trip(tmp_path):
    loaded = _load_text(tmp_path, BASE.replace("  created: '2026-11-25T17:13:53'", "  created: 2026-11-25T17:13:53"))
    assert loaded.provenance["created"] == "2026-11-25T17:13:53"
    assert load_schedule(yaml.safe_load(dump_schedule(loaded))) == loaded


def test_every_bundled_schedule_loads_and_round_trips(tmp_path):
    paths = sorted((REPO / "schedules").rglob("*.yaml"))
    assert paths
    for path in paths:
        schedule = load_schedule(path)
        assert invalid_reason(schedule) is None, path
        assert _load_text(tmp_path, dump_schedule(schedule)) == schedule


# ---------------------------------------------------------------------------------------------
# the property: a valid document, mutated, through both entry points


@settings(max_examples=120, deadline=3000, database=None, suppress_health_check=list(HealthCheck))
@given(documents())
def test_fuzzed_documents_load_or_raise_one_line(tmp_path_factory, doc):
    tmpdir = str(tmp_path_factory.mktemp("fuzz"))
    for source in (doc.mapping, doc.text):
        outcome = check(source, tmpdir, expect=doc.schedule if doc.pristine else None)
        assert outcome.kind in ("loaded", "rejected"), outcome
        assert outcome.seconds < TIME_LIMIT_S, outcome
        if doc.pristine:
            assert outcome.kind == "loaded", outcome
