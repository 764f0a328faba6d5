"""Picking a schedule for several settings on fresh seeds, with a guard against noise.

Why: the search's winner for several guidance scales is chosen by a worst case (or mean) over 16
calibration samples per setting, which overfits; re-ranked on 64 fresh seeds it still leads a
single-setting schedule by a few hundredths of a dB where held-out seeds then show it 0.6 dB behind
(README section 10, sd3-flow). So a schedule made for several settings replaces the best single-setting
one only when its lead on the fresh seeds is confident under a paired bootstrap over those seeds;
otherwise the single-setting schedule, which is what issue #12's bar compares against, is kept.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from schedc.models.adapter import ModelAdapter
from schedc.objectives import Objective, get_objective
from schedc.profile import Profile
from schedc.rollout import RolloutScorer, Score, SettingsScorer
from schedc.solvers.families import Candidate

SELECT_STARTS = 3  # best starts re-ranked with the local search's winner
SINGLE_SETTING_STARTS = ("setting-dp", "given")  # origins of starts always re-ranked too
SELECT_CONFIDENCE = 0.95  # bootstrap probability a multi-setting pick must lead the best single-setting one with
RESAMPLES = 2000  # paired bootstrap resamples of the fresh seeds (seeded: the pick is deterministic)
# a start trailing the best start by more than this many standard errors of their paired per-sample difference
# on the search's samples is not re-ranked: fresh seeds do not reverse such a gap, and on a slow model the
# re-ranking is much of a solve (the bundled reference-dit schedule's three re-ranked starts scored 55.5, 52.6 and
# 50.1 dB on the fresh seeds)
CLEARLY_BEHIND_SE = 4.0


def lead_confidence(goal: Objective, ours: Sequence[Score], theirs: Sequence[Score], resamples: int = RESAMPLES,
                    seed: int = 0) -> float:
    """The share of paired bootstrap resamples of the seeds (the same resample at every setting) on which
    `ours` scores higher than `theirs` under `goal`; per-setting Scores must carry per-sample PSNRs."""
    a = np.array([s.samples for s in ours], dtype=np.float64)  # [S, N]
    b = np.array([s.samples for s in theirs], dtype=np.float64)  # [S, N]
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] == 0:
        raise ValueError("lead_confidence needs per-sample PSNRs of the same seeds at the same settings")
    idx = np.random.default_rng(seed).integers(0, a.shape[1], size=(resamples, a.shape[1]))  # [R, N]
    ma, mb = a[:, idx].mean(axis=-1), b[:, idx].mean(axis=-1)  # [S, R]
    wins = sum(goal.psnr(ma[:, r].tolist()) > goal.psnr(mb[:, r].tolist()) for r in range(resamples))
    return wins / resamples


def clearly_behind(score: Score, leader: Score) -> bool:
    """Whether `score` trails `leader` by more than CLEARLY_BEHIND_SE standard errors of their paired
    per-sample PSNR difference (the same seeds); False where either lacks finite per-sample PSNRs."""
    a, b = np.asarray(leader.samples, dtype=np.float64), np.asarray(score.samples, dtype=np.float64)  # [N], [N]
    if a.shape != b.shape or a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    diff = a - b  # [N]
    return float(diff.mean()) > CLEARLY_BEHIND_SE * float(diff.std(ddof=1)) / np.sqrt(diff.size)


def finalist_starts(scored: list, prune: bool = False, besides: tuple | None = None) -> list:
    """The best SELECT_STARTS distinct starts of `scored` ((Score, Candidate, setting) triples) by their score on
    the search's samples, best first, other than the grid `besides` (the winner, re-ranked anyway); `prune`:
    less those clearly behind the best start (not replaced by lower-ranked ones)."""
    ranked = sorted(scored, key=lambda sc: -sc[0].psnr)
    top: dict = {}
    for score, cand, at in ranked:
        if len(top) == SELECT_STARTS:
            break
        if cand.decisions != besides:
            top.setdefault(cand.decisions, (score, cand, at))
    return [sc for sc in top.values() if not (prune and clearly_behind(sc[0], ranked[0][0]))]


def _finalists(scored: list, best: Candidate, best_setting=None, prune: bool = False) -> dict:
    """decisions -> (candidate, its step setting): the local search's winner and the best SELECT_STARTS other
    starts by their calibration score (`prune`: less those clearly behind the best start)."""
    finalists = {best.decisions: (best, best_setting)}
    for _, cand, at in finalist_starts(scored, prune, besides=best.decisions):
        finalists.setdefault(cand.decisions, (cand, at))
    return finalists


def _guarded_pick(finalists: dict, each: dict[str, list[Score]], goal: Objective, safe) -> tuple[tuple, dict, float | None]:
    """The finalist best under `goal` on the fresh seeds (`each`: name -> per-setting Scores there), unless it
    is not `safe` and does not lead the best safe finalist with SELECT_CONFIDENCE: then that one. Returns the
    (candidate, setting) picked, every finalist's score and the leader's confidence (None: no contest)."""
    scores = {name: goal.psnr([sc.psnr for sc in scs]) for name, scs in each.items()}
    chosen = max(finalists.values(), key=lambda ca: scores[ca[0].name])
    safes = [ca for ca in finalists.values() if safe(ca[0])]
    confidence = None
    if not safe(chosen[0]) and safes:
        fallback = max(safes, key=lambda ca: scores[ca[0].name])
        confidence = lead_confidence(goal, each[chosen[0].name], each[fallback[0].name])
        if confidence < SELECT_CONFIDENCE:
            chosen = fallback
    return chosen, {name: round(v, 3) for name, v in scores.items()}, confidence


def select_on_fresh_seeds(adapter: ModelAdapter, profiles: Sequence[Profile], goal: Objective, fresh: list[int],
                          scored: list, best: Candidate) -> tuple[Candidate, dict, float | None]:
    """The local search's winner, one of the best starts or one of the single-setting schedules (each
    setting's DP and every given warm start), whichever scores best on the `fresh` seeds (right after the
    calibration seeds; the prediction then uses the ones after those) — except that a schedule that is
    not single-setting must lead the best single-setting one with SELECT_CONFIDENCE, else that one is
    kept. Returns the pick, every finalist's score and the leader's confidence (None: no contest)."""
    scorer = SettingsScorer([RolloutScorer(adapter, p, fresh) for p in profiles], goal)
    finalists = _finalists(scored, best)
    for _, cand, at in scored:
        if cand.origin in SINGLE_SETTING_STARTS:
            finalists.setdefault(cand.decisions, (cand, at))
    each = {c.name: scorer.each(c.decisions) for c, _ in finalists.values()}
    (chosen, _), scores, confidence = _guarded_pick(finalists, each, goal, lambda c: c.origin in SINGLE_SETTING_STARTS)
    return chosen, scores, confidence


def confirm_on_fresh_seeds(adapter: ModelAdapter, profile: Profile, native, fresh: list[int], scored: list,
                           best: Candidate, best_setting) -> tuple[Candidate, object, dict, float | None]:
    """One setting (opt-in, `search_schedule(confirm=True)`): the local search's winner is the maximum of many
    comparisons on 16 samples, so it is biased upwards (the winner's curse). Re-rank it and the best
    SELECT_STARTS starts on the `fresh` seeds, each at its own step count, and keep a local-search result only
    if it leads the best start there with SELECT_CONFIDENCE. Returns the pick, its step setting, every
    finalist's fresh score and the confidence (None: a start won outright)."""
    scorer = RolloutScorer(adapter, profile, fresh)
    finalists = _finalists(scored, best, best_setting, prune=True)
    each = {c.name: [scorer(c.decisions, None if at is native else at.profile)] for c, at in finalists.values()}
    (chosen, at), scores, confidence = _guarded_pick(finalists, each, get_objective("mean"),
                                                     lambda c: c.origin != "search")
    return chosen, at, scores, confidence


__all__ = ["CLEARLY_BEHIND_SE", "SELECT_CONFIDENCE", "SELECT_STARTS", "SINGLE_SETTING_STARTS", "clearly_behind",
           "confirm_on_fresh_seeds", "finalist_starts", "lead_confidence", "select_on_fresh_seeds"]
