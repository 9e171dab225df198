#!/usr/bin/env bash
# Builds `ttrav --features cuda` for compute capability 9.0 (H100/H200) on a machine without a GPU
# or a CUDA install: the CUDA 13.0 toolkit comes from NVIDIA's wheels on the Python package index
# (pinned below, about 1.2 GB, kept in a cache folder), and the driver library the link needs is a
# stub made here (the wheels ship no driver; at run time the GPU machine's real libcuda.so.1 is
# used). Prints the binary's path; `strip`ped, it is about 73 MB (22 minutes cold on 2 cores).
#
#   scripts/build-cuda.sh [OUT]      OUT defaults to target/ttrav-cuda
#   TTRAV_CUDA_CACHE=DIR             the toolkit cache (default ~/.cache/ttrav-cuda)
#   CUDA_COMPUTE_CAP=90              the GPU generation to compile the kernels for
#
# No newer nvcc than 13.0: the GPU machines' driver (580, CUDA 13.0) cannot JIT newer PTX.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/ttrav-cuda}
cache=${TTRAV_CUDA_CACHE:-$HOME/.cache/ttrav-cuda}
cuda=$cache/nvidia/cu13
wheels=(
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14
)

if [ ! -x "$cuda/bin/nvcc" ]; then
    echo "== the CUDA 13.0 toolkit wheels into $cache (once)"
    python3 -m pip install --quiet --no-deps --target "$cache" "${wheels[@]}"
fi
"$cuda/bin/nvcc" --version | tail -1

echo "== unversioned library links and the driver stub"
for lib in "$cuda"/lib/lib*.so.*; do
    base=$(basename "$lib")
    ln -sf "$base" "$cuda/lib/${base%%.so.*}.so"
done
# The driver functions cudarc declares (its bindings name every cu* symbol it may call, as
# `pub unsafe fn cuX` wrappers around `fn cuX` declarations).
cargo fetch --quiet
bindings=$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src -path '*cudarc-0.19*/src/driver/sys/*' -name '*.rs' | head -n 50)
[ -n "$bindings" ] || { echo "cudarc 0.19's driver bindings were not found under the cargo registry" >&2; exit 1; }
stub=$cache/stub
mkdir -p "$stub"
grep -ohE '\bfn cu[A-Za-z0-9_]+' $bindings | sed 's/^fn //' | sort -u | sed 's/.*/void &(void) {}/' > "$stub/cuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/cuda_stub.c"
# The loader looks for the soname: with the stub on LD_LIBRARY_PATH the binary starts here (CPU only).
ln -sf libcuda.so "$stub/libcuda.so.1"
echo "$(wc -l < "$stub/cuda_stub.c") driver symbols in the stub"

echo "== cargo build --release --features cuda (compute capability ${CUDA_COMPUTE_CAP:-90}; about 22 min cold on 2 cores)"
export PATH="$cuda/bin:$PATH" CUDA_HOME="$cuda" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH="$cuda/lib:$stub:${LIBRARY_PATH:-}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$cuda/lib -L native=$stub"
cargo build --release --features cuda --target-dir target/cuda
mkdir -p "$(dirname "$out")"
cp target/cuda/release/ttrav "$out"
strip "$out"
ls -la "$out"
echo "CUDA build: $out"
