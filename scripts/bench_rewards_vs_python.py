#!/usr/bin/env python3
"""Reward kernels, ttrav against the Python reference libraries, on the same inputs.

Runs `cargo bench --bench rewards` and times, on the same data as benches/rewards.rs:
the cluster vote as OP-TTRAV computes it (scikit-learn KMeans(n_init=4, random_state=0) for K in
2..4 plus silhouette_score(metric="cosine")) on 16, 64 and 256 unit vectors of 384 dimensions, and
sacrebleu's sentence BLEU and rouge-score's ROUGE-L (Porter stemmer) on 1000 pairs. Prints the
time per call and the ratio (Python time / ttrav time).

    ~/.venvs/ttrav-ref/bin/python scripts/bench_rewards_vs_python.py [--skip-cargo] [--threads 1]
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MASK64 = (1 << 64) - 1


def points(n):
    import numpy as np
    state = 12345

    def nxt():
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
        return np.float32((state >> 33) / float(1 << 31) - 0.5)

    centres = [[nxt() for _ in range(384)] for _ in range(3)]
    out = []
    for i in range(n):
        c = centres[i % 3]
        v = np.array([x + np.float32(0.3) * nxt() for x in c], dtype=np.float32)
        out.append(v / np.sqrt((v * v).sum()))
    return np.stack(out)


def pairs():
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "were", "running", "in", "parks", "and",
             "birds", "sang", "songs", "loudly", "near", "rivers", "today"]
    state = 99

    def nxt(m):
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
        return (state >> 33) % m

    def sentence():
        n = 8 + nxt(23)
        return " ".join(words[nxt(len(words))] for _ in range(n))

    out = []
    for _ in range(1000):
        h = sentence()
        r = sentence()
        out.append((h, r))
    return out


def criterion_seconds(group, name):
    est = ROOT / "target" / "criterion" / group / name / "new" / "estimates.json"
    return json.loads(est.read_text())["median"]["point_estimate"] / 1e9


def timed(fn, repeat=5):
    import numpy as np
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cargo", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    import sacrebleu
    from rouge_score import rouge_scorer

    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "rewards"], cwd=ROOT, check=True)

    def cluster_vote(E):
        best = -2.0
        for k in range(2, min(4, len(E) - 1) + 1):
            labels = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(E)
            if len(set(labels)) < 2:
                continue
            s = silhouette_score(E, labels, metric="cosine")
            best = max(best, s)
        return best

    print(f"{'work':>22} {'ttrav':>10} {'python':>10} {'ratio':>7}")
    for n in (16, 64, 256):
        E = points(n)
        py = timed(lambda: cluster_vote(E))
        ours = criterion_seconds("cluster_vote", str(n))
        print(f"{'cluster vote ' + str(n):>22} {ours * 1e3:>8.2f}ms {py * 1e3:>8.2f}ms {py / ours:>6.1f}x")
    P = pairs()
    bleu = sacrebleu.metrics.BLEU(effective_order=True)
    py = timed(lambda: [bleu.sentence_score(h, [r]).score for h, r in P], 3)
    ours = criterion_seconds("metrics_1k_pairs", "bleu")
    print(f"{'BLEU 1k pairs':>22} {ours * 1e3:>8.2f}ms {py * 1e3:>8.2f}ms {py / ours:>6.1f}x")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    py = timed(lambda: [scorer.score(r, h)["rougeL"].fmeasure for h, r in P], 3)
    ours = criterion_seconds("metrics_1k_pairs", "rouge_l")
    print(f"{'ROUGE-L 1k pairs':>22} {ours * 1e3:>8.2f}ms {py * 1e3:>8.2f}ms {py / ours:>6.1f}x")
    print("(ratio = Python time / ttrav time; > 1 means ttrav is faster)")


if __name__ == "__main__":
    main()
