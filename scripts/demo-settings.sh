#!/usr/bin/env bash
# The demo's adaptation with changed settings: `ttrav adapt` with the flags `ttrav demo` uses
# (seed 0, T 1.5, 16 questions x 16 votes per step, 16 trained answers, mini-batches of 64, lr
# 1.5e-3, LoRA rank 8, 80 steps, the whole graph kept) plus the extra flags given, then
# `ttrav eval` of the adapter on test and heldout as the demo evaluates (16 samples at the same
# temperature, greedy, seed 7). BENCHMARKS.md's table of settings tried was made with it, e.g.
#
#   scripts/demo-settings.sh runs/settings/lr1e-3 --lr 0.001
#   scripts/demo-settings.sh runs/settings/t1.8 --temperature 1.8
#
# Usage: scripts/demo-settings.sh OUT [adapt flags...]   (about 3 minutes per run on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
shift
temperature=1.5
for ((i = 1; i <= $#; i++)); do
    if [ "${!i}" = --temperature ]; then
        j=$((i + 1))
        temperature=${!j}
    fi
done
cargo build --release --quiet
ttrav=target/release/ttrav
mkdir -p "$(dirname "$out")"
"$ttrav" adapt --model models/ttrav-demo --data data/demo/test.jsonl --out "$out" --reward vote --n-votes 16 \
    --n-samples 16 --mini-batch-size 64 --questions-per-step 16 --steps 80 --lr 0.0015 --lora-rank 8 --lora-alpha 16 \
    --temperature 1.5 --top-p 1.0 --max-response-tokens 24 --max-prompt-tokens 4096 --seed 0 --save-every 1000 \
    --gradient-checkpointing false --quiet "$@"
for split in test heldout; do
    echo "== $split"
    "$ttrav" eval --model models/ttrav-demo --adapter "$out/checkpoint" --data "data/demo/$split.jsonl" --n 16 --greedy \
        --temperature "$temperature" --top-p 1.0 --max-response-tokens 24 --seed 7 --batch-questions 12 | sed -n 1,2p
done
