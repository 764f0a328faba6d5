"""bench_zoo's reports: the acceptance checks of issue #11 and the per-model / summary markdown.

Kept apart from the stages (bench_zoo.py) so `--summary-only` can re-judge stored results by today's
rules without running anything, and so each file stays readable.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench_io import read_json, write_json
from schedc.atomic import atomic_write_text
from schedc.errors import SchedcError
from schedc.metrics import NOISE_SE, PSNR_CAP, within_noise
from schedc.plots import pareto_plot

ROOT = Path(__file__).resolve().parents[1]
PREDICTION_DB = 1.0  # acceptance (a): |predicted - measured| PSNR within this
PREDICTION_SHARE = 0.8  # ... for at least this share of the schedc rows
MONOTONE_RANGE = (0.1, 0.9)  # acceptance (b): budgets checked
MONOTONE_STRETCH = 0.1  # ... no flat stretch longer than this


def budget_label(budget: float) -> str:
    """0.3 -> "0.30", 0.125 -> "0.125", 0.3162 -> "0.3162": at least two decimals, at most four, none lost
    (off-ladder matched budgets and the dense low ladder stay distinct in names and tables)."""
    text = f"{budget:.4f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.split(".")[1]))


def monotone_check(ours: list[dict], flat_db: float) -> dict:
    """Acceptance (b): held-out PSNR rises with budget over 0.1-0.9.

    Violations: a drop between any two budgets, or a stretch longer than 0.1 whose PSNR rises by less
    than `flat_db` (a flat stretch)."""
    pts = sorted((r["budget"], r["psnr"]) for r in ours
                 if MONOTONE_RANGE[0] - 1e-9 <= r["budget"] <= MONOTONE_RANGE[1] + 1e-9)
    problems, long_problems = [], []  # any drop or flat stretch; only those over stretches longer than 0.1
    for i, (b0, p0) in enumerate(pts):
        for b1, p1 in pts[i + 1:]:
            longer = b1 - b0 > MONOTONE_STRETCH + 1e-9
            if p1 < p0:
                problems.append(f"drop {budget_label(b0)}->{budget_label(b1)}: {p0:.2f} -> {p1:.2f} dB")
            elif longer and p1 - p0 < flat_db:
                problems.append(f"flat {budget_label(b0)}->{budget_label(b1)}: +{p1 - p0:.2f} dB")
            if longer and p1 - p0 < flat_db:
                long_problems.append(f"{budget_label(b0)}->{budget_label(b1)}: {p1 - p0:+.2f} dB")
    covered = bool(pts) and pts[0][0] <= MONOTONE_RANGE[0] + 1e-9 and pts[-1][0] >= MONOTONE_RANGE[1] - 1e-9
    # True / False; None: not established (the budgets measured do not span the range, and nothing failed)
    established = covered and len(pts) >= 2
    verdict = False if problems else (True if established else None)
    rises = False if long_problems else (True if established else None)
    return {"monotone": verdict, "rises_over_stretches": rises, "covers_range": covered, "points": len(pts),
            "problems": problems, "long_stretch_problems": long_problems}


def checks(rows: list[dict], flat_db: float) -> dict:
    ours = [r for r in rows if r["family"] == "schedc"]
    others = [r for r in rows if r["family"] not in ("full", "schedc")]
    deltas = [r["delta_psnr"] for r in others if r["delta_psnr"] is not None]
    predicted = [r for r in ours if r.get("prediction_error_db") is not None]
    within = [r for r in predicted if abs(r["prediction_error_db"]) <= PREDICTION_DB]
    with_se = [r for r in predicted if r.get("prediction_se_db") is not None]
    return {
        "rows": len(others), "won": sum(not r["lost"] for r in others), "lost": sum(r["lost"] for r in others),
        "ties": sum(bool(r.get("tie")) and r["lost"] for r in others),
        "noops": sum(skipped_nothing(r) and r["lost"] for r in others),
        "none_as_fast": sum(r["delta_psnr"] is None for r in others),
        "median_delta": statistics.median(deltas) if deltas else None, "worst_delta": min(deltas) if deltas else None,
        "predicted_rows": len(predicted), "predicted_within": len(within),
        "prediction_share": len(within) / len(predicted) if predicted else None,
        "predicted_rows_se": len(with_se),
        "predicted_within_2se": sum(within_noise(r["prediction_error_db"], r["prediction_se_db"]) for r in with_se),
        **monotone_check(ours, flat_db),
    }


PSNR_RESOLUTION_DB = 0.005  # a ΔPSNR the tables show as +0.00 is a tie, not a win


def skipped_nothing(row: dict) -> bool:
    """A baseline setting that skipped nothing: every sample is full compute's (PSNR at its cap)."""
    return row["psnr"] >= PSNR_CAP - 1e-6


def _tie(kind) -> str:
    """A tie's reason (True: from before the kinds were told apart, always the same schedule)."""
    return "the same schedule" if kind is True else str(kind)


def _lost_kinds(ties: int, noops: int) -> str:
    """' (2 ties, 1 no-op)': the lost rows that are not quality losses of a cache schedule."""
    kinds = [f"{ties} {'tie' if ties == 1 else 'ties'}"] * bool(ties) + [f"{noops} no-op"] * bool(noops)
    return f" ({', '.join(kinds)})" if kinds else ""


def fmt(value, fmt: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _raced(row: dict) -> str:
    """What the head-to-head races (bench_settle) said about this row's match, if any were run."""
    settled = row.get("settled")
    if not settled:
        return ""
    races = settled["raced"]
    if settled["won_by"] is not None:
        return f" (head to head: {races[-1]['ratio']:.3f}x the baseline's speed)"
    slower = ", ".join(f"{budget_label_of(x['setting'])} {x['ratio']:.3f}x" for x in races)
    return f" (raced, slower head to head: {slower})"


def budget_label_of(setting: str) -> str:
    """'search b=0.2028' -> 'b=0.2028'."""
    return setting.split(" ")[-1]


def verdict(monotone: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a (budgets do not span 0.1-0.9)"}[monotone]


def model_markdown(result: dict, command: str) -> str:
    s, rows, c = result["settings"], result["rows"], result["checks"]
    sampler = s["sampler"]
    ours = [r for r in rows if r["family"] == "schedc"]
    lines = [
        f"# {s['model']}: schedc ({s['solver']}) vs baselines and the ecosystem's caches at matched measured speed", "",
        f"`{command}`", "",
        f"Model `{s['source']}`" + (f", classes {s['classes']}" if s["classes"] else "")
        + (f", conditioning `{s['cond']}`" if s["cond"] else "") + f". Sampler (recorded in the profile): "
        f"{sampler['steps']} steps, {sampler['scheduler']}, CFG {sampler['cfg']} g={sampler['guidance_scale']}. "
        f"Calibration seeds {s['calibration_seeds']}; quality: PSNR vs full compute on held-out seeds "
        f"{s['eval_seeds']} ({s['samples']} samples); speed: "
        + (f"every variant in the same {s['rounds']} interleaved " if s.get("timing_passes", 1) <= 1 else
           f"each variant in {s['rounds']} interleaved (variants added to a finished run in rounds of their own: "
           f"{s['timing_passes']} timing passes) ")
        + f"rounds of {s['timing_batch']} samples (order rotating), median over rounds of full time / variant time"
        + ("; each variant timed right next to its own full-compute run, each measurement repeating the generation "
           f"for at least {s['min_seconds']:g} s; " if s.get("paired") else "; ")
        + f"{s['threads']} threads, torch {s['torch']}. schedc: {s['solver']} solver"
        + (f", {s['evaluations']} evaluations, time limit {s['time_limit']:g} s" if s["solver"] == "search" else "")
        + f"; non-block share {s['nonblock_share']:.3f}; full-compute class accuracy {fmt(s['full_class_acc'])}. "
        "Matched schedc row: the best PSNR among schedc schedules measured at least as fast"
        + (f" (where that hangs on speeds within {s['settle_margin']:.0%} of the baseline's, the closer schedules are "
           f"raced against it head to head, {s['settle_rounds']} rounds, order alternating, median ratio; "
           f"{s.get('races', 0)} races; bench_settle)" if s.get("settle_rounds") else "") + "; "
        f"a row is lost when ΔPSNR < {PSNR_RESOLUTION_DB:g} dB (what the table shows as +0.00 is a tie) or none is as fast.", "",
        f"**{c['won']} won, {c['lost']} lost** of {c['rows']} rows"
        + (f" ({c['ties']} of the lost are ties: schedc compiled the baseline's own schedule, same samples and same "
           "timing run, or another schedule with the same PSNR)" if c.get("ties") else "")
        + (f" ({c['noops']} of the lost {'is a setting' if c['noops'] == 1 else 'are settings'} that skipped nothing: "
           "its samples are full compute's, which no cache schedule can beat on PSNR)" if c.get("noops") else "")
        + (f" ({c['none_as_fast']} with no schedc schedule as fast)" if c["none_as_fast"] else "")
        + f"; median ΔPSNR {fmt(c['median_delta'], '+.2f')} dB, worst {fmt(c['worst_delta'], '+.2f')} dB.", "",
        "| baseline | setting | speedup | PSNR dB | matched schedc budget | its speedup | its PSNR dB | ΔPSNR dB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["family"] in ("full", "schedc"):
            continue
        m = r["schedc"]
        head = f"| {r['family']} | {r['setting']} | {r['speedup']:.2f}x | {r['psnr']:.2f} | "
        if m is None:
            lines.append(head + f"none as fast{_raced(r)} | - | - | **lost** |")
        else:
            d = f"{r['delta_psnr']:+.2f}"
            steps = f" ({m['steps']} steps)" if m.get("steps") not in (None, sampler["steps"]) else ""
            lines.append(head + f"{budget_label(m['budget'])}{steps} | {m['speedup']:.2f}x{_raced(r)} | {m['psnr']:.2f} | "
                         + ((f"**{d}** (tie: {_tie(r['tie'])}) |" if r.get("tie") else
                             f"**{d}** (lost: the setting skipped nothing) |" if skipped_nothing(r) else f"**{d}** (lost) |")
                            if r["lost"] else f"{d} |"))
    lines += ["", f"schedc schedules ({s['solver']}); predicted PSNR = the search's measurement on calibration seeds "
              "it did not search on:", "",
              "| budget | steps | FLOP cost | speedup | predicted PSNR dB | measured PSNR dB | predicted - measured | within ±1 dB "
              "| within 2 SE |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(ours, key=lambda r: r["budget"]):
        e, se = r.get("prediction_error_db"), r.get("prediction_se_db")
        two_se = "-" if e is None or se is None else f"{'yes' if within_noise(e, se) else '**no**'} ({NOISE_SE * se:.2f})"
        lines.append(f"| {budget_label(r['budget'])}{' (matched)' if r.get('matched_to') else ''} | {r.get('steps') or sampler['steps']} | {r['cost']:.3f} | {r['speedup']:.2f}x | {fmt(r.get('predicted_psnr'))} | "
                     f"{r['psnr']:.2f} | {fmt(e, '+.2f')} | {'-' if e is None else ('yes' if abs(e) <= PREDICTION_DB else '**no**')} "
                     f"| {two_se} |")
    share = c["prediction_share"]
    lines += ["",
              f"Prediction within ±{PREDICTION_DB:g} dB: " + ("n/a (the solver records no predicted PSNR)" if share is None
              else f"{c['predicted_within']}/{c['predicted_rows']} = {share:.0%} "
              f"({'meets' if share >= PREDICTION_SHARE else '**misses**'} the {PREDICTION_SHARE:.0%} bar)")
              + (f"; within two standard errors of the difference (the two seed sets' own noise, in brackets): "
                 f"{c['predicted_within_2se']}/{c['predicted_rows_se']}." if c.get("predicted_rows_se") else "."),
              f"Monotone in budget over {MONOTONE_RANGE[0]:g}-{MONOTONE_RANGE[1]:g} (no drop; every stretch longer than "
              f"{MONOTONE_STRETCH:g} rises by >= {s['flat_db']:g} dB): " + verdict(c["monotone"])
              + ("" if c["covers_range"] else " (only budgets " + ", ".join(f"{r['budget']:.2f}" for r in ours) + " measured)")
              + ("" if not c["problems"] else "; " + "; ".join(c["problems"][:12])
                 + (f"; ... ({len(c['problems'])} in all)" if len(c["problems"]) > 12 else "")) + ".",
              f"Issue #11's wording (no flat stretch longer than {MONOTONE_STRETCH:g}: every pair of budgets more than "
              f"{MONOTONE_STRETCH:g} apart rises by >= {s['flat_db']:g} dB): " + verdict(c.get("rises_over_stretches"))
              + ("" if not c.get("long_stretch_problems") else "; " + "; ".join(c["long_stretch_problems"][:12])) + "."]
    if s["skipped"]:
        lines += ["", "Not applicable here: " + "; ".join(s["skipped"])]
    if s["failed"]:
        lines += ["", "Failed (not in the table): " + "; ".join(s["failed"])]
    return "\n".join(lines) + "\n"


def summary_markdown(results: list[dict]) -> str:
    lines = ["# schedc on the zoo: summary", "",
             f"Per model: baseline and ecosystem rows won / lost at matched measured speed (lost: ΔPSNR < {PSNR_RESOLUTION_DB:g} dB or no "
             "schedc schedule as fast), median and worst ΔPSNR over the matched rows, share of schedc schedules "
             f"whose predicted PSNR is within ±{PREDICTION_DB:g} dB of the held-out PSNR, and whether held-out PSNR "
             f"rises with budget over {MONOTONE_RANGE[0]:g}-{MONOTONE_RANGE[1]:g}. Details and settings: "
             "`<model>.md` next to this file.", "",
             "| model | solver | sampler | rows | won | lost | median ΔPSNR dB | worst ΔPSNR dB | prediction ±1 dB | "
             "rises over every stretch > 0.1 | no drop at all |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    deltas, won, lost, rows, within, predicted, monotone, rises, ties, noops = [], 0, 0, 0, 0, 0, 0, 0, 0, 0
    for res in results:
        s, c = res["settings"], res["checks"]
        sm = s["sampler"]
        share = "n/a" if c["prediction_share"] is None else f"{c['predicted_within']}/{c['predicted_rows']} ({c['prediction_share']:.0%})"
        lines.append(f"| {s['model']} | {s['solver']} | {sm['steps']} steps {sm['scheduler']}, CFG {sm['cfg']} "
                     f"g={sm['guidance_scale']:g} | {c['rows']} | {c['won']} | {c['lost']}"
                     + _lost_kinds(c.get("ties", 0), c.get("noops", 0)) + f" | {fmt(c['median_delta'], '+.2f')} | "
                     f"{fmt(c['worst_delta'], '+.2f')} | {share} | {verdict(c.get('rises_over_stretches'))} | "
                     f"{verdict(c['monotone'])} |")
        deltas += [r["delta_psnr"] for r in res["rows"] if r["family"] not in ("full", "schedc") and r["delta_psnr"] is not None]
        won, lost, rows, ties = won + c["won"], lost + c["lost"], rows + c["rows"], ties + c.get("ties", 0)
        noops += c.get("noops", 0)
        within, predicted = within + c["predicted_within"], predicted + c["predicted_rows"]
        monotone += c["monotone"] is True
        rises += c.get("rises_over_stretches") is True
    if results:
        lines.append(f"| **all {len(results)} models** | | | {rows} | {won} | {lost}" + _lost_kinds(ties, noops) + " | "
                     f"{fmt(statistics.median(deltas) if deltas else None, '+.2f')} | {fmt(min(deltas) if deltas else None, '+.2f')} | "
                     + (f"{within}/{predicted} ({within / predicted:.0%})" if predicted else "n/a")
                     + f" | {rises}/{len(results)} | {monotone}/{len(results)} |")
    settings = {(r["settings"]["samples"], r["settings"]["rounds"], r["settings"]["timing_batch"], r["settings"]["threads"],
                 r["settings"]["evaluations"], r["settings"]["torch"]) for r in results}
    lines += ["", "Settings: " + "; ".join(f"held-out seeds 1000000.. ({n} samples), {k} interleaved rounds of {b} samples, "
                                          f"{t} threads, {e} search evaluations, torch {tv}" for n, k, b, t, e, tv in sorted(settings))
              + ". Acceptance (issue #11): no lost row; prediction within ±1 dB for >= 80% of rows; monotone on every model."]
    settled = sorted((r["settings"]["model"], r["settings"]["settle_margin"]) for r in results
                     if r["settings"].get("settle_rounds"))
    margins = ", ".join(f"{m:.0%}" for m in sorted({m for _, m in settled}))
    lines += ["", (f"Matches settled head to head where speeds were within {margins} (bench_settle): "
                   + ", ".join(name for name, _ in settled) if settled else "Matches settled head to head: none")
              + "; the other models' rows stand on the paired timing alone."]
    return "\n".join(lines) + "\n"


def write_model(result: dict, out: Path, command: str) -> None:
    name = result["settings"]["model"]
    result["settings"]["command"] = command
    write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", model_markdown(result, command))
    rows = [r for r in result["rows"] if r["family"] != "full"]
    pareto_plot([{"variant": r["family"] if r["family"] != "schedc" else f"schedc ({result['settings']['solver']})",
                  "speedup": r["speedup"], "psnr": r["psnr"]} for r in rows],
                out / f"{name}.png", f"{name}: PSNR vs measured speedup (held-out seeds)")


def write_summary(out: Path, readme: bool) -> str:
    results = []
    for path in sorted(out.glob("*.json")):
        data = read_json(path)
        if data and "rows" in data and "settings" in data:
            data["checks"] = checks(data["rows"], data["settings"].get("flat_db", 0.1))  # today's rules
            command = data["settings"].get("command", "")
            atomic_write_text(path.with_suffix(".md"), model_markdown(data, command))  # the model's md, same rules
            results.append(data)
    text = summary_markdown(results)
    atomic_write_text(out / "summary.md", text)
    if readme:
        update_readme(text)
    return text


README_MARKERS = ("<!-- bench_zoo summary: start -->", "<!-- bench_zoo summary: end -->")


def update_readme(summary: str) -> None:
    """Replace the text between the README's bench_zoo markers with the summary table (--readme)."""
    path = ROOT / "README.md"
    text = path.read_text()
    start, end = (text.find(m) for m in README_MARKERS)
    if start < 0 or end < start:
        raise SchedcError(f"README.md has no {README_MARKERS[0]} ... {README_MARKERS[1]} block")
    table = "\n".join(line for line in summary.splitlines() if line.startswith("|"))
    table += "".join("\n\n" + line for line in summary.splitlines() if line.startswith(("Settings:", "Matches settled")))
    atomic_write_text(path, text[: start + len(README_MARKERS[0])] + "\n" + table + "\n" + text[end:])


__all__ = ["PREDICTION_DB", "budget_label", "checks", "fmt", "model_markdown", "monotone_check", "summary_markdown",
           "update_readme", "verdict", "write_model", "write_summary"]
