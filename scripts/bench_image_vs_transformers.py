#!/usr/bin/env python3
"""Image preprocessing, ttrav against transformers' Qwen2-VL image processor (Pillow back-end), on
the same 1280x720 JPEG (decode + resize + rescale/normalise + patchify).

Runs `cargo bench --bench vision -- image_preprocess` (it writes target/bench-1280x720.jpg), then
times `Qwen2VLImageProcessorPil` (the processor Qwen2.5-Omni's slow path uses) from opening the file
to `pixel_values`, and prints the ratio.

    ~/.venvs/ttrav-ref/bin/python scripts/bench_image_vs_transformers.py [--skip-cargo]
"""
import argparse
import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cargo", action="store_true")
    args = ap.parse_args()
    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "vision", "--", "image_preprocess"], cwd=ROOT, check=True)
    from PIL import Image
    import transformers.models.qwen2_vl.image_processing_pil_qwen2_vl as m
    cls = m.Qwen2VLImageProcessorPil
    proc = cls()
    path = ROOT / "target" / "bench-1280x720.jpg"

    def run():
        img = Image.open(path).convert("RGB")
        return proc(images=[img], return_tensors="np")["pixel_values"]

    run()
    ts = []
    for _ in range(10):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    py = ts[len(ts) // 2]
    est = ROOT / "target" / "criterion" / "image_preprocess" / "jpeg_1280x720" / "new" / "estimates.json"
    ours = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
    print(f"ttrav {ours * 1e3:.1f} ms, transformers (Pillow) {py * 1e3:.1f} ms, ratio {py / ours:.1f}x")


if __name__ == "__main__":
    main()
