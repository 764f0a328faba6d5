"""Settling matched-speed rows whose speeds are too close for the paired timing to order: head to head.

The zoo bench times every variant right next to its own full-compute run and matches each baseline row with
the best-PSNR schedc schedule measured at least as fast. Two variants of nearly the same cost come out several
percent apart either way that way (bench_ecosystem.race), so where the match hangs on such a difference the
two are raced directly. Symmetric on purpose: a schedc schedule that measured a little faster than the baseline
is raced too, and loses its match when the race says it is slower, just as one that measured a little slower
wins it when the race says it is at least as fast.

Per baseline row r (speedup s): the schedc rows clearly as fast (speedup >= s * (1 + margin)) stand as measured;
the close ones (|speedup / s - 1| < margin) whose PSNR beats every clearly-as-fast row's are raced against r,
best PSNR first; the first that is at least as fast head to head (ratio >= 1) is r's match, else the best
clearly-as-fast row, else none. A close row that computes exactly r's samples is r's own schedule: no race.
"""

from __future__ import annotations

from typing import Callable

SETTLE_MARGIN = 0.10  # paired speedups within 10% of each other are raced (the spread seen: 8%)

Race = Callable[[str, str], float]  # (schedc samples key, baseline samples key) -> baseline time / schedc time


def contenders(row: dict, ours: list[dict], margin: float = SETTLE_MARGIN) -> tuple[list[dict], list[dict]]:
    """(close schedc rows to race against `row`, best PSNR first; the rows that stand without a race: the best
    clearly-as-fast one and `row`'s own schedule, the same run, when schedc compiled it). Only a close row with
    a higher PSNR than every standing one can change the match."""
    speed = row["speedup"]
    clear = [o for o in ours if o["speedup"] >= speed * (1 + margin)]
    own = next((o for o in ours if o["samples_key"] == row["samples_key"]), None)
    standing = [o for o in (max(clear, key=lambda o: o["psnr"]) if clear else None, own) if o is not None]
    floor = max((o["psnr"] for o in standing), default=-float("inf"))
    close = [o for o in ours if abs(o["speedup"] / speed - 1) < margin and o["psnr"] > floor
             and o["samples_key"] != row["samples_key"]]
    return sorted(close, key=lambda o: -o["psnr"]), standing


def settle_rows(rows: list[dict], race: Race, margin: float = SETTLE_MARGIN, ours_family: str = "schedc",
                skip: tuple[str, ...] = ("full",)) -> int:
    """Re-match every baseline row whose match hangs on close speeds; returns how many races were asked for
    (cached ones included). Sets row["schedc"], row["delta_psnr"] and row["settled"]: {"raced": [{"setting",
    "ratio"}, ...] in the order raced, "won_by": the setting of the race winner, None when none was as fast}."""
    ours = [r for r in rows if r["family"] == ours_family]
    asked = 0
    for r in rows:
        if r["family"] == ours_family or r["family"] in skip:
            continue
        close, standing = contenders(r, ours, margin)
        if not close:
            continue
        winner, raced = None, []
        for o in close:
            asked += 1
            ratio = race(o["samples_key"], r["samples_key"])
            raced.append({"setting": o["setting"], "ratio": ratio})
            if ratio >= 1.0:
                winner = o
                break
        match = winner or (max(standing, key=lambda o: o["psnr"]) if standing else None)
        r["schedc"] = None if match is None else {k: match[k] for k in ("setting", "psnr", "speedup")}
        r["delta_psnr"] = None if match is None else match["psnr"] - r["psnr"]
        r["settled"] = {"raced": raced, "won_by": None if winner is None else winner["setting"]}
    return asked


__all__ = ["SETTLE_MARGIN", "contenders", "settle_rows"]
