#!/usr/bin/env bash
# Every benchmark behind the README's figures, one after another (never two timing jobs at once).
# Resumable: a finished step leaves a marker in $DONE and is skipped when the script runs again.
#   bash bench/run_all.sh [step ...]        (default: all steps, in order)
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-/tmp/schedc-bench-logs}
DONE=${DONE:-$LOGS/done}
mkdir -p "$LOGS" "$DONE"
declare -A CMD=(
  [forecast2]="python bench/bench_forecast2.py"
  [budgets]="python bench/bench_budgets.py"
  [joint]="python bench/bench_joint.py"
  [digits]="schedc eval schedules/digits-dit-b0.40.yaml --baselines"
  [refine]="python bench/bench_refine.py"
  [compare]="schedc compare --repeats 7"
  [dp]="python bench/bench_dp.py"
  [ilp]="python bench/bench_ilp.py"
  [overhead]="python bench/bench_overhead.py --rounds 30"
  [learned]="python bench/bench_learned.py --budgets 0.3 0.4"
  [matched]="python bench/bench_matched.py"
  [eco-digits]="python bench/bench_ecosystem.py --model digits-dit"
  [eco-reference]="python bench/bench_ecosystem.py --model reference-dit --threads 1"
  [zoo]="python bench/bench_zoo.py --readme"
)
ORDER=(forecast2 budgets joint digits dp ilp overhead refine eco-digits matched compare learned eco-reference zoo)
steps=("${@:-${ORDER[@]}}")
for step in "${steps[@]}"; do
  [ -n "${CMD[$step]:-}" ] || { echo "unknown step $step (known: ${ORDER[*]})"; exit 2; }
  [ -e "$DONE/$step" ] && { echo "skip $step (done)"; continue; }
  echo "== $step: ${CMD[$step]}  ($(date +%H:%M:%S))"
  start=$(date +%s)
  if ${CMD[$step]} > "$LOGS/$step.log" 2>&1; then
    echo "$(( $(date +%s) - start ))s" > "$DONE/$step"; echo "   ok in $(cat "$DONE/$step")"
  else
    echo "   FAILED (see $LOGS/$step.log)"; tail -3 "$LOGS/$step.log"
  fi
done
