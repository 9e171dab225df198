#!/usr/bin/env python3
"""Rollouts, ttrav against transformers: 16 samples of 64 new tokens (temperature 1, no stop
token) from one 512-token prompt, on a small random-weight Qwen2.5-Omni thinker
(models/qwen2.5-omni-small-4x512.json: 4 layers, hidden 512, the real vocabulary), f32 on the CPU,
the same threads.

Runs `cargo bench --bench decoder -- small_thinker` (criterion; ttrav::generate, prefill
included), then times `Qwen2_5OmniThinkerForConditionalGeneration.generate(do_sample=True,
num_return_sequences=16, min_new_tokens=64, max_new_tokens=64)` on a model of the same sizes
(its own random weights: the work does not depend on their values), and prints the ratio.

    PY scripts/bench_rollout_vs_transformers.py [--threads 2] [--runs 5] [--skip-cargo]

where PY is a Python with torch and transformers (e.g. ~/.venvs/ttrav-ref/bin/python).
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-cargo", action="store_true")
    args = ap.parse_args()
    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "decoder", "--", "small_thinker"], cwd=ROOT, check=True)
    import torch
    import transformers
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = json.loads((ROOT / "models" / "qwen2.5-omni-small-4x512.json").read_text())
    config = Qwen2_5OmniThinkerConfig(
        text_config=sizes["text_config"],
        audio_config=sizes["audio_config"],
        vision_config=sizes["vision_config"],
        tie_word_embeddings=sizes["tie_word_embeddings"],
        # Qwen2.5-Omni's special token ids (the prompt holds none of them).
        audio_token_index=151646, image_token_index=151655, video_token_index=151656,
        audio_start_token_id=151647, audio_end_token_id=151648,
        vision_start_token_id=151652, vision_end_token_id=151653,
    )
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    # The prompt the Rust bench uses: id i is (i * 7919 + 13) % 151000.
    ids = torch.tensor([[(i * 7919 + 13) % 151000 for i in range(512)]])
    mask = torch.ones_like(ids)

    def run():
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                num_return_sequences=16, min_new_tokens=64, max_new_tokens=64,
            )
        assert out.shape == (16, 512 + 64), out.shape

    run()
    ts = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    py = ts[len(ts) // 2]
    est = ROOT / "target" / "criterion" / "small_thinker_4x512" / "16_samples_of_64_from_512" / "new" / "estimates.json"
    ours = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
    tokens = 16 * 64
    print(f"threads: torch {args.threads}; ttrav uses all cores ({os.cpu_count()})")
    print(f"ttrav {ours:.2f} s ({tokens / ours:.0f} tokens/s), transformers {transformers.__version__} "
          f"(torch {torch.__version__}) {py:.2f} s ({tokens / py:.0f} tokens/s), ratio {py / ours:.2f}x")


if __name__ == "__main__":
    main()
