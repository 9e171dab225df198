#!/usr/bin/env python3
"""Sentence encoders, ttrav against sentence-transformers, on the same sentences and threads.

Runs `cargo bench --bench embed` (criterion; real all-MiniLM-L6-v2 and all-mpnet-base-v2 from the
hub cache that scripts/fetch-test-encoders.sh fills) and times sentence-transformers' `encode` on
the same 64 sentences at batch sizes 1, 16 and 64 with the same number of threads, then prints
sentences per second and the ratio.

    HF_HUB_OFFLINE=1 ~/.venvs/ttrav-ref/bin/python scripts/bench_encoders_vs_sentence_transformers.py \
        [--threads 2] [--skip-cargo]
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["the", "model", "listens", "to", "a", "short", "clip", "of", "rain", "and", "answers", "with", "one",
         "word", "while", "music", "plays", "in", "background", "speaker", "says", "that", "dog", "barks", "loudly",
         "near", "river", "bank", "under", "bright", "morning", "sky"]


def sentences():
    # Same LCG as benches/embed.rs.
    state = 7
    out = []
    for _ in range(64):
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        n = 6 + (state >> 16) % 35
        words = []
        for _ in range(n):
            state = (state * 1103515245 + 12345) & 0xFFFFFFFF
            words.append(WORDS[(state >> 16) % len(WORDS)])
        out.append(" ".join(words))
    return out


def criterion_seconds(group, name):
    est = ROOT / "target" / "criterion" / group / name / "new" / "estimates.json"
    return json.loads(est.read_text())["median"]["point_estimate"] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-cargo", action="store_true")
    args = ap.parse_args()
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "embed"], cwd=ROOT, check=True)
    texts = sentences()
    print(f"threads: torch {args.threads}; ttrav uses all cores ({os.cpu_count()})")
    print(f"{'model':>7} {'batch':>5} {'ttrav sent/s':>13} {'s-t sent/s':>11} {'ratio':>6}")
    for short, mid in (("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
                       ("mpnet", "sentence-transformers/all-mpnet-base-v2")):
        model = SentenceTransformer(mid, device="cpu")
        for batch in (1, 16, 64):
            model.encode(texts, batch_size=batch, normalize_embeddings=True)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                model.encode(texts, batch_size=batch, normalize_embeddings=True)
                times.append(time.perf_counter() - t0)
            st = float(np.median(times))
            ours = criterion_seconds(f"embed_{short}", f"batch_{batch}")
            print(f"{short:>7} {batch:>5} {len(texts) / ours:>13.1f} {len(texts) / st:>11.1f} {st / ours:>5.2f}x")
    print("(ratio = sentence-transformers time / ttrav time; > 1 means ttrav is faster)")


if __name__ == "__main__":
    main()
