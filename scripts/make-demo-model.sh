#!/usr/bin/env bash
# The recipe of models/ttrav-demo: everything from nothing, with ttrav's own commands.
#
#   1. ttrav demo-data (seed 0): the train, test and heldout splits and their media; the test and
#      heldout files must be the bytes committed under data/demo/ (checked).
#   2. ttrav demo-init (seed 0): the untrained model (tokenizer learned from the train split).
#   3. ttrav sft: full fine-tuning of every tensor on the train split, both forms (multiple choice
#      with a short description before the letter, and open-ended).
#   4. The result replaces models/ttrav-demo/{config.json,model.safetensors,...} (its README.md,
#      the model card, is kept), and ttrav eval prints the accuracies the card states.
#
# Usage: scripts/make-demo-model.sh [WORK_DIR]   (default target/demo-recipe; about 35 minutes on
# 2 cores). Set CHECK_ONLY=1 to build into WORK_DIR and compare with the committed model instead
# of replacing it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/demo-recipe}
steps=${SFT_STEPS:-3000}
cargo build --release --quiet
ttrav=target/release/ttrav
rm -rf "$work"
mkdir -p "$work"

"$ttrav" demo-data --seed 0 --out "$work/data"
for f in test.jsonl test_open.jsonl heldout.jsonl heldout_open.jsonl; do
    cmp "$work/data/$f" "data/demo/$f"
done
diff -r "$work/data/media/test" data/demo/media/test >/dev/null
diff -r "$work/data/media/heldout" data/demo/media/heldout >/dev/null
echo "data/demo is what demo-data writes for seed 0"

cat "$work/data/train.jsonl" "$work/data/train_open.jsonl" > "$work/data/train_all.jsonl"
"$ttrav" demo-init --data "$work/data" --out "$work/init" --seed 0 --temperature 1.0
"$ttrav" sft --model "$work/init" --data "$work/data/train_all.jsonl" --steps "$steps" --batch-size 16 \
    --lr 1e-3 --warmup-steps 50 --seed 0 --save-every 250 --out "$work/sft"

if [ "${CHECK_ONLY:-0}" = 1 ]; then
    for f in config.json tokenizer.json model.safetensors; do
        cmp "$work/sft/model/$f" "models/ttrav-demo/$f" && echo "$f: identical"
    done
    exit 0
fi
mkdir -p models/ttrav-demo
for f in "$work"/sft/model/*; do
    cp "$f" models/ttrav-demo/
done
chmod 644 models/ttrav-demo/*
# The accuracies the model card states: at the model's own temperature (1.0) and at the demo's (1.5).
for t in 1.0 1.5; do
    for split in test heldout test_open heldout_open; do
        "$ttrav" eval --model models/ttrav-demo --data "data/demo/$split.jsonl" --n 16 --greedy \
            --temperature "$t" --top-p 1.0 --max-response-tokens 24 --seed 7 --batch-questions 12
    done
done
