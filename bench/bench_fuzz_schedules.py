"""Fuzz the schedule loader: N generated schedule documents (valid, then mutated), each loaded from
its mapping and from its YAML text in a file. Every load must give a schedule that re-validates
independently and round-trips through dump_schedule, or a one-line ScheduleFormatError, in < 2 s.

Run: OMP_NUM_THREADS=1 python bench/bench_fuzz_schedules.py [--n 2000] [--seed 0] [--out bench/results/fuzz-schedules.md]
The generator is tests/fuzz_schedules.py, the one the suite's property test draws from.
"""

from __future__ import annotations

import argparse
import collections
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.fuzz_schedules import TIME_LIMIT_S, check, documents  # noqa: E402


def reason_of(message: str) -> str:
    """The kind of a rejection: the message without its path, line number and quoted values."""
    message = re.sub(r"^(schedule )?\S*fuzz\.yaml:? ", "", message)
    message = re.sub(r"line \d+: ", "", message)
    return re.split(r"['\"\[{(]|\d", message, maxsplit=1)[0].strip(" ,:") or message[:40]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="documents to generate (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz-schedules.md")
    args = parser.parse_args()

    counts: collections.Counter = collections.Counter()
    by_source: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    documents_seen = 0
    tmpdir = tempfile.mkdtemp(prefix="fuzz-schedules-")

    @seed(args.seed)
    @settings(max_examples=args.n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(documents())
    def run(doc) -> None:
        nonlocal slowest, documents_seen
        documents_seen += 1
        for name, source in (("mapping", doc.mapping), ("file", doc.text)):
            outcome = check(source, tmpdir, expect=doc.schedule if doc.pristine else None)
            kind = outcome.kind
            if kind == "rejected" and doc.pristine:
                kind = "invalid"  # a valid document refused
            counts[kind] += 1
            by_source[name, kind] += 1
            if kind == "rejected":
                reasons[reason_of(outcome.detail)] += 1
            if outcome.seconds > slowest[0]:
                slowest = (outcome.seconds, f"{name}: {outcome.kind} {outcome.detail[:120]}")
            if kind in ("other", "invalid") or outcome.seconds >= TIME_LIMIT_S:
                failures.append(f"{name}: {kind} in {outcome.seconds:.3f}s: {outcome.detail}")

    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    loads = sum(counts.values())
    ok = counts["other"] == 0 and counts["invalid"] == 0 and slowest[0] < TIME_LIMIT_S
    rows = [
        ("documents generated", documents_seen),
        ("loads (mapping + file)", loads),
        ("loaded valid (re-validated, round-tripped)", counts["loaded"]),
        ("rejected with ScheduleFormatError (one line)", counts["rejected"]),
        ("other exceptions", counts["other"]),
        ("accepted but invalid", counts["invalid"]),
        ("slowest load (s)", f"{slowest[0]:.3f}"),
    ]
    for (name, value) in rows:
        print(f"{name:46s} {value}")
    print(f"{'slowest case':46s} {slowest[1]}")
    print(f"wall {wall:.1f} s -> {'PASS' if ok else 'FAIL'}")
    print("most frequent rejections:")
    for reason, n in reasons.most_common(25):
        print(f"  {n:6d}  {reason}")
    for line in failures[:20]:
        print("  ", line)

    command = f"OMP_NUM_THREADS=1 python bench/bench_fuzz_schedules.py --n {args.n} --seed {args.seed}"
    lines = [
        "# Schedule loader fuzz",
        "",
        f"`{command}` ({platform.python_version()}, pyyaml {yaml.__version__}, "
        f"libyaml {'yes' if getattr(yaml, '__with_libyaml__', False) else 'no'}; wall {wall:.0f} s)",
        "",
        "Valid schedules drawn by hypothesis (1-10 steps, 1-5 blocks, random names, timesteps, block outputs,",
        "decisions, sampling and provenance), then up to 3 structural mutations of the mapping (drop, duplicate,",
        "retype, insert: random scalars, huge numbers, NaN/inf, unicode digits, nested and Python-only values)",
        "and up to 3 textual ones of the YAML (duplicated lines, 0-9 level alias chains, tags, odd number",
        "spellings, deep brackets, truncation, stray characters). Each document is loaded from its mapping and",
        "from a file; an accepted schedule is re-validated independently and must round-trip through",
        "`dump_schedule`.",
        "",
        "| outcome | count |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "By source: " + ", ".join(f"{src} {kind} {n}" for (src, kind), n in sorted(by_source.items())) + ".",
        "",
        f"Slowest: {slowest[1]}" if slowest[1] else "",
        "",
        f"{len(reasons)} kinds of rejection; the most frequent:",
        "",
        "| count | rejection (path, line numbers and values cut) |",
        "|---|---|",
        *(f"| {n} | {reason.replace('|', '/')} |" for reason, n in reasons.most_common(25)),
        "",
        f"Result: {'PASS' if ok else 'FAIL'} (required: 0 other exceptions, 0 accepted-but-invalid, slowest < {TIME_LIMIT_S:g} s).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
