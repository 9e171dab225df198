#!/usr/bin/env python3
"""Log-mel extraction, ttrav against transformers' WhisperFeatureExtractor, on the same clips.

Runs `cargo bench --bench audio -- log_mel` (criterion) and times the extractor with the
Qwen2.5-Omni settings (128 mel bins, padding to 300 s as the Qwen2.5-Omni processor calls it,
and, for reference, padding only to the clip's own length), on the clip the bench uses (two
tones and LCG noise; identical samples). Prints seconds of audio per second of CPU and the ratio.

    ~/.venvs/ttrav-ref/bin/python scripts/bench_mel_vs_transformers.py [--threads N] [--skip-cargo]

Set the same thread count for both (torch.set_num_threads); ttrav's extractor is single-threaded.
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def clip(seconds):
    # Same deterministic clip as benches/audio.rs (u32 LCG, f32 arithmetic).
    n = seconds * 16000
    state = np.uint64(12345)
    noise = np.empty(n, dtype=np.float32)
    s = 12345
    for i in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        noise[i] = np.float32((s >> 8) / float(1 << 24)) - np.float32(0.5)
    t = (np.arange(n, dtype=np.float32) / np.float32(16000.0)).astype(np.float32)
    two_pi = np.float32(2.0 * np.pi)
    return (np.float32(0.3) * np.sin(two_pi * np.float32(440.0) * t)
            + np.float32(0.2) * np.sin(two_pi * np.float32(1250.0) * t)
            + np.float32(0.05) * noise).astype(np.float32)


def time_it(fn, repeat):
    fn()
    best = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def criterion_seconds(group, name):
    est = ROOT / "target" / "criterion" / group / name / "new" / "estimates.json"
    return json.loads(est.read_text())["median"]["point_estimate"] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-cargo", action="store_true", help="use the last criterion results")
    args = ap.parse_args()

    import torch
    from transformers import WhisperFeatureExtractor

    torch.set_num_threads(args.threads)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                                 chunk_length=300, padding_value=0.0, return_attention_mask=True)
    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "audio", "--", "log_mel"], cwd=ROOT, check=True)

    print(f"{'clip':>6} {'ttrav s/s':>12} {'tf (pad 300 s)':>16} {'ratio':>7} {'tf (no pad)':>13} {'ratio':>7}")
    for secs in (10, 30):
        x = clip(secs)
        tf_full = time_it(lambda: fe(x, sampling_rate=16000, padding="max_length", return_tensors="np"), 5)
        tf_own = time_it(lambda: fe(x, sampling_rate=16000, padding="longest", return_tensors="np"), 5)
        ours = criterion_seconds("log_mel", f"{secs}s")
        print(f"{secs:>5}s {secs / ours:>12.0f} {secs / tf_full:>16.0f} {tf_full / ours:>6.1f}x "
              f"{secs / tf_own:>13.0f} {tf_own / ours:>6.1f}x")
    print("(seconds of audio per second; ratio = transformers time / ttrav time)")


if __name__ == "__main__":
    main()
