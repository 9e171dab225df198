#!/usr/bin/env bash
# Adaptive votes on the demo model: 10 steps of the demo's adaptation (test split, T 1.5, 8
# questions x 16 votes, 4 trained answers), drawn three ways: every vote; every vote with
# --adaptive-votes-audit (how many votes the stopping rule would have drawn, and whether its label
# equals the full vote's); and --adaptive-votes. Prints the per-step means from metrics.jsonl.
#
# Usage: scripts/measure-adaptive-votes.sh [WORK_DIR]   (default target/adaptive-votes; needs python3)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/adaptive-votes}
cargo build --release --quiet
rm -rf "$work"
mkdir -p "$work"
flags=(--model models/ttrav-demo --data data/demo/test.jsonl --reward vote --n-votes 16 --n-samples 4
    --questions-per-step 8 --steps 10 --lr 1e-3 --lora-rank 8 --lora-alpha 16 --temperature 1.5 --top-p 1.0
    --max-response-tokens 24 --max-prompt-tokens 4096 --mini-batch-size 32 --seed 0 --save-every 10 --quiet)
for run in full audit adaptive; do
    extra=()
    [ "$run" = audit ] && extra=(--adaptive-votes-audit)
    [ "$run" = adaptive ] && extra=(--adaptive-votes)
    target/release/ttrav adapt "${flags[@]}" "${extra[@]}" --out "$work/$run" > "$work/$run.log"
done
python3 - "$work" <<'PY'
import json, sys
keys = ["votes_drawn", "votes_needed", "early_label_agreement", "rollout_tokens", "label_accuracy", "rollout_s"]
print("run       " + "".join(f"{k:>22}" for k in keys))
for run in ["full", "audit", "adaptive"]:
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{run}/metrics.jsonl")]
    def mean(k):
        v = [r[k] for r in rows if r.get(k) is not None]
        return f"{sum(v) / len(v):>22.3f}" if v else f"{'-':>22}"
    print(f"{run:<10}" + "".join(mean(k) for k in keys))
PY
