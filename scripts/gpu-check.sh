#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and no Rust toolchain: run from the repository
# root with a CUDA build of ttrav at BIN (default ./ttrav-cuda), built elsewhere with
#   cargo build --release --features cuda   (see README, "Building for CUDA").
# It runs the transformers parity fixtures on the GPU in f32 (strict tolerances) and in bf16
# (loose tolerances, a report of the differences), and times a generation.
set -uo pipefail
BIN=${BIN:-./ttrav-cuda}
cd "$(dirname "$0")/.."
# The CUDA 13 runtime libraries: wherever this machine keeps them.
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
lib=$(find / -name 'libcublas.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)
[ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== parity, CUDA f32"
"$BIN" parity tests/fixtures/omni --device cuda --dtype f32
echo "== parity, CUDA bf16 (loose tolerance; reports what differs)"
"$BIN" parity tests/fixtures/omni --device cuda --dtype bf16 --tolerance 0.3 --pixel-tolerance 0.02 || true
echo "== generation, CUDA"
time "$BIN" generate --model tests/fixtures/omni/text_basic --device cuda --prompt "Tell me a story." --n 8 --max-new-tokens 64
