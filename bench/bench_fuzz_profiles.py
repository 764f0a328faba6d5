"""Fuzz the profile loader: N mutated profiles (tests/profile_mutations.py) through `Profile.load`.

Every file must load into a profile whose numbers are all valid (re-checked independently, then solved
with the dp solver under the FLOP and latency cost models: the predicted error must be >= 0, never NaN)
or raise ProfileError with one line, within 2 s. Bases: a small synthetic profile in format 2 and
format 1, and the bundled profiles/*.profile.npz.

Run: OMP_NUM_THREADS=1 python bench/bench_fuzz_profiles.py [--n 500] [--seed 0] [--out bench/results/fuzz-profiles.md]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from profile_mutations import base_profile, invalid_reason, profile_arrays, write_mutant  # noqa: E402
from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.errors import ProfileError  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.profile_checks import (MAX_BLOCKS, MAX_COUNT, MAX_ELEMENTS, MAX_MEMBERS, MAX_META_CHARS,  # noqa: E402
                                   MAX_META_DEPTH, MAX_PATTERNS, MAX_STEPS)

HANG_S = 30  # a load still running after this is reported as a hang (the bound is 2 s)


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def bases() -> dict[str, dict[str, np.ndarray]]:
    out = {"synthetic-v2": profile_arrays(base_profile()), "synthetic-v1": profile_arrays(base_profile(), version=1)}
    for path in sorted((ROOT / "profiles").glob("*.profile.npz")):
        with np.load(path, allow_pickle=False) as data:
            out[path.name] = {k: np.array(data[k]) for k in data.files}
    return out


def run(n: int, seed: int) -> dict:
    signal.signal(signal.SIGALRM, _alarm)
    warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the solvers on 1e308-sized (valid) errors
    base = bases()
    names = list(base)
    counts: collections.Counter = collections.Counter()
    failures: list[str] = []
    slowest, slowest_what, solved = 0.0, "", 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.npz"
        for i in range(n):
            rng = random.Random(seed * 1_000_003 + i)
            which = names[i % len(names)] if rng.random() < 0.1 else names[i % 2]  # synthetic bases mostly: fast
            what = f"#{i} {which}: " + write_mutant(path, rng, base[which])
            t0 = time.perf_counter()
            signal.alarm(HANG_S)
            try:
                profile = Profile.load(path)
                outcome = "loaded"
            except ProfileError as exc:
                outcome = "rejected" if "\n" not in str(exc) else "other"
                if outcome == "other":
                    failures.append(f"{what}: multi-line ProfileError")
            except Hang:
                outcome = "other"
                failures.append(f"{what}: still running after {HANG_S} s")
            except Exception as exc:  # noqa: BLE001  (what the bench counts)
                outcome = "other"
                failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                signal.alarm(0)
            dt = time.perf_counter() - t0
            if dt > slowest:
                slowest, slowest_what = dt, what
            counts[outcome] += 1
            if outcome == "loaded":
                reason = invalid_reason(profile)  # re-check, then problem_from_profile + dp
                solved += 1
                if reason is not None:
                    counts["invalid"] += 1
                    failures.append(f"{what}: accepted but invalid: {reason}")
    return {"n": n, "seed": seed, "loaded_valid": counts["loaded"] - counts["invalid"], "rejected": counts["rejected"],
            "other_exceptions": counts["other"], "accepted_but_invalid": counts["invalid"], "slowest_s": slowest,
            "slowest": slowest_what, "seconds": time.perf_counter() - start, "bases": names, "failures": failures}


def report(r: dict, command: str) -> str:
    ok = r["other_exceptions"] == 0 and r["accepted_but_invalid"] == 0 and r["slowest_s"] < 2
    lines = [
        "# Profile loader fuzz (issue #10)", "",
        f"Command: `{command}`", "",
        f"{r['n']} mutated profiles (seed {r['seed']}; bases: {', '.join(r['bases'])}); "
        f"total {r['seconds']:.1f} s, CPU, one thread.", "",
        "| outcome | count | must be |", "|---|---:|---|",
        f"| loaded, every number valid (re-checked; dp solved under flops and latency) | {r['loaded_valid']} | |",
        f"| rejected with one ProfileError line | {r['rejected']} | |",
        f"| other exceptions / hangs | {r['other_exceptions']} | 0 |",
        f"| accepted but invalid | {r['accepted_but_invalid']} | 0 |",
        f"| slowest load | {r['slowest_s']:.3f} s | < 2 s |", "",
        f"Slowest: {r['slowest']}", "",
        f"Result: {'PASS' if ok else 'FAIL'}", "",
        "Mutations: drop / rename arrays; slice, transpose, flatten or add axes; change dtypes (float16/32, ints, bool, "
        "complex, strings, bytes, object, structured); inject NaN, ±inf, negatives, 1e308, fractional or huge counts; "
        "zero counts; metadata fields set to junk of every JSON type, huge numbers, missing, unknown; metadata that is "
        "not an object, nested 40 to 100,000 deep, over 4 MiB, truncated, or not a string; members whose header claims "
        "a huge shape; truncated files, flipped bytes, non-zip files.", "",
        f"Limits (schedc/profile_checks.py): {MAX_BLOCKS} blocks, {MAX_STEPS} steps, {MAX_PATTERNS} patterns per mode, "
        f"{MAX_ELEMENTS} array elements per file, {MAX_MEMBERS} arrays, metadata {MAX_META_CHARS} characters and "
        f"{MAX_META_DEPTH} levels, counts <= {MAX_COUNT}.",
    ]
    if r["failures"]:
        lines += ["", "## Failures", "", *[f"- {f}" for f in r["failures"][:50]]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="mutated profiles to try (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args()
    r = run(args.n, args.seed)
    command = "OMP_NUM_THREADS=1 python bench/bench_fuzz_profiles.py " + " ".join(sys.argv[1:])
    text = report(r, command.strip())
    print(text)
    print(json.dumps({k: v for k, v in r.items() if k not in ("failures", "bases")}))
    if args.out:
        atomic_write_text(args.out, text)
    return 0 if r["other_exceptions"] == 0 and r["accepted_but_invalid"] == 0 and r["slowest_s"] < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
