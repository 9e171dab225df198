#!/usr/bin/env python3
"""The decoder's two halves, ttrav against transformers, on the same models, prompts and threads.

Runs `cargo bench --bench decoder -- "demo_model|3b_two_layers"` (criterion), then times
transformers' Qwen2.5-Omni thinker on the same work and prints the ratios:

- prefill: one text prompt through the thinker's text model, the key/value cache kept, and the
  output layer on the last position only (the thinker's own forward has no `logits_to_keep` and
  would make the logits of every position: at 151 936 rows that alone would dwarf the layers);
- decode: 8 samples of N new tokens (temperature 1, no stop token) continuing the prefilled prompt
  (outside the timing): transformers' cache repeated 8 times (`batch_repeat_interleave`, as
  `generate(num_return_sequences=8)` does), then one forward of the 8 last tokens per new token,
  sampled with `torch.multinomial` on the softmax; ttrav decodes the 8 samples from one shared copy
  of the prompt's cache.

on two models: the bundled demo model (`models/ttrav-demo`, its real weights; a 256-token prompt,
64 new tokens) and the 3B thinker's text decoder cut to 2 layers with the real vocabulary (151 936;
random weights on each side, the work does not depend on their values; a 512-token prompt, 32 new
tokens). f32 on the CPU; both sides on the same number of threads (`--threads`, default all cores:
torch.set_num_threads, and candle uses every core).

    PY scripts/bench_decoder_vs_transformers.py [--threads 2] [--runs 5] [--skip-cargo]

where PY is a Python with torch and transformers (scripts/requirements-fixtures.txt).
"""
import argparse
import copy
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Qwen2.5-Omni's special token ids (the benchmark prompts hold none of them).
SPECIAL_IDS = dict(
    audio_token_index=151646, image_token_index=151655, video_token_index=151656,
    audio_start_token_id=151647, audio_end_token_id=151648,
    vision_start_token_id=151652, vision_end_token_id=151653,
)
# name, criterion group, prompt length, ids below this bound, new tokens
CASES = [("demo model", "demo_model", 256, 400, 64), ("3B cut to 2 layers", "3b_two_layers_v151936", 512, 151_000, 32)]


def criterion_seconds(group, name):
    est = ROOT / "target" / "criterion" / group / name / "new" / "estimates.json"
    return json.loads(est.read_text())["median"]["point_estimate"] / 1e9


def median_time(fn, runs, setup=lambda: None):
    fn(setup())
    ts = []
    for _ in range(runs):
        arg = setup()
        t0 = time.perf_counter()
        fn(arg)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def load(group):
    import torch
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    if group == "demo_model":
        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            ROOT / "models" / "ttrav-demo", dtype=torch.float32).eval()
    sizes = json.loads((ROOT / "models" / "qwen2.5-omni-3b-thinker.json").read_text())
    text = dict(sizes["text_config"], num_hidden_layers=2)
    config = Qwen2_5OmniThinkerConfig(text_config=text, audio_config=sizes["audio_config"],
                                      vision_config=sizes["vision_config"],
                                      tie_word_embeddings=sizes["tie_word_embeddings"], **SPECIAL_IDS)
    torch.manual_seed(0)
    return Qwen2_5OmniThinkerForConditionalGeneration(config).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-cargo", action="store_true")
    args = ap.parse_args()
    if not args.skip_cargo:
        subprocess.run(["cargo", "bench", "--bench", "decoder", "--", "demo_model|3b_two_layers"], cwd=ROOT, check=True)
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    print(f"threads: torch {args.threads}; ttrav uses all cores ({os.cpu_count()}); "
          f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"{'model':<20} {'work':<28} {'ttrav':>9} {'transformers':>13} {'ratio':>6}")
    for label, group, prompt_len, bound, new_tokens in CASES:
        model = load(group)
        ids = torch.tensor([[(i * 7919 + 13) % bound for i in range(prompt_len)]])
        mask = torch.ones_like(ids)

        text_model = model.model.language_model

        def forward(tokens, attn, cache):
            out = text_model(input_ids=tokens, attention_mask=attn, cache=cache, use_cache=True)
            return model.lm_head(out.last_hidden_state[:, -1:])[:, 0], out.cache

        def prefill(_):
            with torch.inference_mode():
                return forward(ids, mask, None)

        with torch.inference_mode():
            last_logits, prompt_cache = prefill(None)
            prompt_cache.batch_repeat_interleave(8)
        last_logits = last_logits.expand(8, -1)

        def fresh_cache():
            return copy.deepcopy(prompt_cache)

        def decode(cache):
            with torch.inference_mode():
                logits = last_logits
                attn = torch.ones(8, prompt_len, dtype=mask.dtype)
                for step in range(new_tokens):
                    tok = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1)
                    if step == new_tokens - 1:
                        break
                    attn = torch.cat([attn, torch.ones(8, 1, dtype=attn.dtype)], dim=1)
                    logits, cache = forward(tok, attn, cache)

        rows = [(f"prefill {prompt_len} tokens", median_time(prefill, args.runs), f"prefill_{prompt_len}"),
                (f"decode 8 x {new_tokens} tokens", median_time(decode, args.runs, fresh_cache), f"decode_8x{new_tokens}")]
        for work, py, name in rows:
            ours = criterion_seconds(group, name)
            print(f"{label:<20} {work:<28} {ours * 1e3:>7.1f}ms {py * 1e3:>11.1f}ms {py / ours:>5.2f}x")


if __name__ == "__main__":
    main()
