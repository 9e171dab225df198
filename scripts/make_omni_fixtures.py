#!/usr/bin/env python3
"""Generate the Qwen2.5-Omni *thinker* parity fixtures for ttrav.

Every fixture is a tiny random-weight thinker (f32, eager attention) run through
transformers' `Qwen2_5OmniThinkerForConditionalGeneration`; the Rust tests load the
same weights and compare against the stored outputs.

Environment (once):

    python3 -m venv ~/.venvs/ttrav-ref
    ~/.venvs/ttrav-ref/bin/pip install -r scripts/requirements-fixtures.txt

Run (from the repository root):

    ~/.venvs/ttrav-ref/bin/python scripts/make_omni_fixtures.py [--out tests/fixtures/omni] [--only NAME]

Everything is seeded, so a rerun with the pinned versions rewrites byte-identical files.

Layout of one fixture directory `<out>/<name>/`:

  config.json            thinker config (model_type qwen2_5_omni_thinker) or a full
                         qwen2_5_omni config with thinker_config nested.
  model.safetensors      checkpoint tensor names: thinker.model.*, thinker.audio_tower.*,
                         thinker.visual.*, thinker.lm_head.weight (absent when tied). f32.
  inputs.safetensors     input_ids, attention_mask: [B, L] int64.
  expected.safetensors   logits ([L,V] or [B,L,V]), hidden_states.N (same B convention),
                         position_ids [3,B,L] int64, rope_deltas [B] int64,
                         greedy_token_ids [K] / [B,K] int64,
                         greedy_step_logits [K,V] / [B,K,V] f32 (unprocessed logits of
                         each greedy step, no stop token, K = 6).
  meta.json              human-readable summary (shapes, token ids, checks performed).
  (text_basic only) tokenizer.json, tokenizer_config.json, chat_template.json,
                    generation_config.json, prompt.json
  (audio_* only)    extra input/expected tensors (input_features, feature_attention_mask,
                    raw_waveform[.i], mel_features[.i], audio_tower_output): see the
                    "TEXT + AUDIO fixtures" section below.

Adding a fixture: write a `fixture_<name>(out_dir)` function and register it in
`FIXTURES` at the bottom. Shared helpers: `thinker_config`, `build_model`,
`save_model`, `check_reload`, `text_expected`, `write_safetensors`; for audio
`run_audio_fixture` (real Qwen2_5OmniProcessor + WhisperFeatureExtractor) and `synth_waveform`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# Quiet transformers before it is imported (talker default token ids trigger config warnings).
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    GenerationConfig,
    Qwen2_5OmniConfig,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "omni"
MAX_FIXTURE_BYTES = 2 * 1024 * 1024
GREEDY_STEPS = 6

# ---------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------

# Qwen2 pre-tokenizer split regex (same as the real Qwen2.5-Omni tokenizer.json).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Appended after the trained vocabulary, in this order, as added special tokens.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
]

# Number of tokens the BPE trainer may produce (256 byte tokens + merges).
BPE_VOCAB_SIZE = 400
# Embedding rows of the tiny models (> tokenizer size, like the real checkpoints).
MODEL_VOCAB_SIZE = 420

# Fixed training corpus. Words used by the fixture prompts appear often enough to be merged.
CORPUS = [
    "You are a helpful assistant.",
    "You are a helpful assistant who answers questions.",
    "The user asks a question and the assistant gives a short answer.",
    "The system message tells the assistant how to behave.",
    "Be brief and be kind to the user.",
    "Tell me a story about the sea.",
    "Tell me a short story about a cat and a dog.",
    "Once upon a time there was a little boat on the sea.",
    "The boat sailed across the water to a small island.",
    "On the island lived an old man with a grey cat.",
    "Every morning the cat watched the birds in the trees.",
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "What is the weather like today?",
    "It is sunny and warm, with a light wind from the west.",
    "Please describe what you hear in this audio clip.",
    "Please describe what you see in this image.",
    "What happens in this video?",
    "The video shows a dog running in a green park.",
    "The audio has the sound of rain and distant thunder.",
    "The image shows a red house next to a tall tree.",
    "Thank you for your help, the answer was very clear.",
    "How many days are there in a week? There are seven days.",
    "Numbers like 1, 2, 3 and 42 are split into single digits.",
    "She said it's late, and we'll leave soon; they're ready.",
    "Reading books is a good way to learn new words.",
    "The teacher asked the students to write a short poem.",
    "Music can make people feel happy or sad.",
    "The train leaves the station at seven in the morning.",
    "Can you help me write a letter to my friend?",
    "Of course, I can help you write a friendly letter.",
    "The system is ready. The user is here. The assistant is listening.",
    "system user assistant system user assistant",
    "system\nBe brief.\nuser\nTell me a story.\nassistant\nOnce upon a time there was a story.",
    "system\nYou are a helpful assistant.\nuser\nHello!\nassistant\nHello! How can I help you?",
    "system\nBe brief and kind.\nuser\nWhat is a story?\nassistant\nA story tells what happened.",
    "Hello! How are you today? I am fine, thank you.",
    "Tell me a joke about a computer.",
    "Why did the computer go to the doctor? It had a virus!",
    "Water boils at one hundred degrees.",
    "The moon moves around the earth, and the earth moves around the sun.",
]


def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(
        models.BPE(
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def tokenizer_json_str(tok: Tokenizer) -> str:
    # Canonical, stable formatting.
    return json.dumps(json.loads(tok.to_str()), indent=2, ensure_ascii=False) + "\n"


def special_ids(tok: Tokenizer) -> dict[str, int]:
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}


# The Qwen2.5-Omni chat template (the processor-level chat_template.json of the released
# checkpoints, as embedded in transformers' tests/models/qwen2_5_omni/test_processing_qwen2_5_omni.py).
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chatml(system: str, user: str) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def write_tokenizer_files(out_dir: Path, tok: Tokenizer) -> None:
    ids = special_ids(tok)
    (out_dir / "tokenizer.json").write_text(tokenizer_json_str(tok))
    tok_cfg = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 32768,
        "added_tokens_decoder": {
            str(i): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t, i in ids.items()
        },
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (out_dir / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2) + "\n")


def load_hf_tokenizer(out_dir: Path):
    return AutoTokenizer.from_pretrained(str(out_dir))


def check_tokenizer_determinism(tok: Tokenizer) -> None:
    """Train again in a fresh interpreter (new hash seed) and compare the serialized file."""
    import subprocess

    code = (
        "import sys; sys.path.insert(0, %r); import make_omni_fixtures as m; "
        "sys.stdout.write(m.tokenizer_json_str(m.build_tokenizer()))" % str(Path(__file__).resolve().parent)
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert other == tokenizer_json_str(tok), "BPE training is not deterministic across processes"


# ---------------------------------------------------------------------------------------
# Model helpers
# ---------------------------------------------------------------------------------------


THINKER_ARCH = ["Qwen2_5OmniThinkerForConditionalGeneration"]


def tiny_audio_config() -> dict:
    return dict(
        num_mel_bins=128,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        output_dim=32,
        n_window=8,
        max_source_positions=1500,
    )


def tiny_vision_config() -> dict:
    return dict(
        depth=2,
        hidden_size=16,
        num_heads=2,
        intermediate_size=32,
        out_hidden_size=32,
        fullatt_block_indexes=[1],
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
    )


def tiny_text_config(head_dim: int | None = None, mrope_section=(1, 1, 2), rope_theta: float = 10000.0) -> dict:
    d = dict(
        vocab_size=MODEL_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta, "mrope_section": list(mrope_section)},
        use_sliding_window=False,
    )
    if head_dim is not None:
        d["head_dim"] = head_dim
    return d


def thinker_config(tok_ids: dict[str, int], text: dict, tie_word_embeddings: bool = False, user_token_id: int | None = None):
    kw = dict(
        text_config=text,
        audio_config=tiny_audio_config(),
        vision_config=tiny_vision_config(),
        audio_token_index=tok_ids["<|AUDIO|>"],
        image_token_index=tok_ids["<|IMAGE|>"],
        video_token_index=tok_ids["<|VIDEO|>"],
        audio_start_token_id=tok_ids["<|audio_bos|>"],
        audio_end_token_id=tok_ids["<|audio_eos|>"],
        vision_start_token_id=tok_ids["<|vision_bos|>"],
        vision_end_token_id=tok_ids["<|vision_eos|>"],
        position_id_per_seconds=25,
        seconds_per_chunk=2,
        tie_word_embeddings=tie_word_embeddings,
    )
    if user_token_id is not None:
        kw["user_token_id"] = user_token_id
    return Qwen2_5OmniThinkerConfig(**kw)


def init_weights_(model: torch.nn.Module, seed: int) -> None:
    """Deterministic, deliberately large random init (so logits are far from uniform).

    Parameters are visited in sorted-name order with a private generator:
      * 1-D norm weights (RMSNorm/LayerNorm gains): 1 + 0.2 * N(0,1)
      * biases and other 1-D tensors:               0.1 * N(0,1)
      * embeddings:                                 0.5 * N(0,1)
      * everything else (linear/conv weights):      0.2 * N(0,1)  (0.3 for lm_head)
    """
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())  # tied params appear once
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            is_norm = p.ndim == 1 and name.endswith(".weight") and any(
                k in name for k in ("norm", "ln_", "layer_norm", "layernorm", "ln_q", "ln_post")
            )
            if is_norm:
                v = 1.0 + 0.2 * noise
            elif p.ndim == 1:
                v = 0.1 * noise
            elif "embed_tokens" in name:
                v = 0.5 * noise
            elif name.startswith("lm_head"):
                v = 0.3 * noise
            else:
                v = 0.2 * noise
            p.copy_(v)


def build_model(cfg: Qwen2_5OmniThinkerConfig, seed: int) -> Qwen2_5OmniThinkerForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = copy.deepcopy(cfg)
    cfg._attn_implementation = "eager"
    model = Qwen2_5OmniThinkerForConditionalGeneration(cfg).to(torch.float32).eval()
    init_weights_(model, seed)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    return model


# transformers-5 module prefix -> checkpoint prefix
_PREFIX_MAP = [
    ("model.language_model.", "thinker.model."),
    ("model.audio_tower.", "thinker.audio_tower."),
    ("model.visual.", "thinker.visual."),
    ("lm_head.", "thinker.lm_head."),
]


def checkpoint_state_dict(model, tied: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        if tied and k == "lm_head.weight":
            continue
        for src, dst in _PREFIX_MAP:
            if k.startswith(src):
                nk = dst + k[len(src) :]
                break
        else:
            raise KeyError(f"unmapped parameter {k}")
        assert v.dtype == torch.float32, (k, v.dtype)
        out[nk] = v.detach().clone().contiguous()
    return out


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def saved_config_json(cfg, architectures: list[str]) -> dict:
    """The config.json transformers' save_pretrained writes for `cfg` (as a dict)."""
    cfg = copy.deepcopy(cfg)
    cfg.architectures = architectures
    with tempfile.TemporaryDirectory() as td:
        cfg.save_pretrained(td)
        return json.loads(Path(td, "config.json").read_text())


def save_model(out_dir: Path, model, config_json: dict, tied: bool) -> None:
    (out_dir / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    write_safetensors(out_dir / "model.safetensors", checkpoint_state_dict(model, tied))


def check_reload(out_dir: Path, model, inputs: dict[str, torch.Tensor], tied: bool) -> dict:
    """Reload config.json + model.safetensors through from_pretrained; require exact logits."""
    reloaded, info = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        str(out_dir), dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    reloaded.eval()
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    assert not bad, f"reload of {out_dir.name}: {bad}"
    assert reloaded.config.tie_word_embeddings == tied
    if tied:
        assert reloaded.lm_head.weight.data_ptr() == reloaded.model.language_model.embed_tokens.weight.data_ptr()
    for (k, a), (k2, b) in zip(sorted(model.state_dict().items()), sorted(reloaded.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k
    with torch.no_grad():
        a = model(**inputs).logits
        b = reloaded(**inputs).logits
    assert torch.equal(a, b), f"reloaded logits differ: {(a - b).abs().max()}"
    return {"missing_keys": 0, "unexpected_keys": 0, "reload_logits_identical": True}


def _drop_b(t: torch.Tensor, batch: int) -> torch.Tensor:
    return t[0] if batch == 1 else t


def text_expected(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pad_token_id: int,
    mm_inputs: dict[str, torch.Tensor] | None = None,
) -> tuple[dict, dict]:
    """Forward + get_rope_index + greedy generation; returns (tensors, report).

    `mm_inputs` (e.g. input_features + feature_attention_mask) are passed to every forward and to generate.
    """
    B, L = input_ids.shape
    mm_inputs = dict(mm_inputs or {})
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **mm_inputs}
    report: dict = {}
    with torch.no_grad():
        model.model.rope_deltas = None
        out = model(**inputs, output_hidden_states=True, use_cache=False)
        if "feature_attention_mask" in mm_inputs:
            position_ids, rope_deltas = model.model.get_rope_index(
                input_ids, None, None, attention_mask, False, mm_inputs["feature_attention_mask"].sum(-1)
            )
        else:
            position_ids, rope_deltas = model.model.get_rope_index(input_ids, None, None, attention_mask)
    assert position_ids.shape == (3, B, L), position_ids.shape
    rope_deltas = rope_deltas.reshape(B).to(torch.int64)
    exp = {
        "logits": _drop_b(out.logits, B).float(),
        "position_ids": position_ids.to(torch.int64),
        "rope_deltas": rope_deltas,
    }
    hs = out.hidden_states
    for i, h in enumerate(hs):
        exp[f"hidden_states.{i}"] = _drop_b(h, B).float()
    report["num_hidden_states"] = len(hs)
    # The last entry is the final-RMSNorm output: lm_head of it reproduces the logits exactly.
    with torch.no_grad():
        assert torch.equal(model.lm_head(hs[-1]), out.logits)

    # Greedy generation with no stop token.
    gen_cfg = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=GREEDY_STEPS,
        min_new_tokens=GREEDY_STEPS,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=pad_token_id,  # never used: no sequence finishes
        output_logits=True,
        output_scores=True,
        return_dict_in_generate=True,
        use_cache=True,
    )
    with torch.no_grad():
        model.model.rope_deltas = None
        g = model.generate(**inputs, generation_config=gen_cfg)
    seq = g.sequences[:, L:]
    assert seq.shape == (B, GREEDY_STEPS)
    step_logits = torch.stack(g.logits, dim=1).float()  # [B, K, V]
    scores = torch.stack(g.scores, dim=1).float()
    report["scores_equal_logits"] = bool(torch.equal(scores, step_logits))
    assert torch.equal(step_logits.argmax(-1), seq), "greedy tokens are not argmax of step logits"
    # Step 0 == forward logits at the last position.
    d0 = (step_logits[:, 0] - out.logits[:, -1]).abs().max().item()
    report["step0_vs_forward_last_maxdiff"] = d0
    # Steps 1.. vs a single no-cache forward over prompt + generated tokens.
    full_ids = g.sequences
    full_mask = torch.cat([attention_mask, torch.ones(B, GREEDY_STEPS, dtype=attention_mask.dtype)], dim=1)
    with torch.no_grad():
        model.model.rope_deltas = None
        full = model(input_ids=full_ids, attention_mask=full_mask, use_cache=False, **mm_inputs).logits
    ref = full[:, L - 1 : L - 1 + GREEDY_STEPS]
    report["steps_vs_full_forward_maxdiff"] = (ref - step_logits).abs().max().item()
    report["greedy_tokens"] = seq.tolist()
    exp["greedy_token_ids"] = _drop_b(seq.to(torch.int64), B)
    exp["greedy_step_logits"] = _drop_b(step_logits, B)
    # logit spread (sanity that the model is not near-uniform)
    lg = out.logits.float()
    report["logit_std"] = round(lg.std(-1).mean().item(), 4)
    report["max_softmax_prob_mean"] = round(lg.softmax(-1).max(-1).values.mean().item(), 4)
    return exp, report


def write_inputs(out_dir: Path, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    write_safetensors(
        out_dir / "inputs.safetensors",
        {"input_ids": input_ids.to(torch.int64), "attention_mask": attention_mask.to(torch.int64)},
    )


def write_meta(out_dir: Path, meta: dict) -> None:
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def fresh_dir(out_dir: Path) -> Path:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    return out_dir


def encode_batch_left(tok: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    pad = tok.token_to_id("<|endoftext|>")
    encs = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    L = max(len(e) for e in encs)
    ids = torch.full((len(encs), L), pad, dtype=torch.int64)
    mask = torch.zeros((len(encs), L), dtype=torch.int64)
    for i, e in enumerate(encs):
        ids[i, L - len(e) :] = torch.tensor(e, dtype=torch.int64)
        mask[i, L - len(e) :] = 1
    return ids, mask


def run_text_fixture(
    out_dir: Path,
    *,
    tok: Tokenizer,
    cfg: Qwen2_5OmniThinkerConfig,
    config_json: dict,
    seed: int,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    extra_meta: dict,
) -> dict:
    tied = bool(cfg.tie_word_embeddings)
    model = build_model(cfg, seed)
    save_model(out_dir, model, config_json, tied)
    write_inputs(out_dir, input_ids, attention_mask)
    reload = check_reload(out_dir, model, {"input_ids": input_ids, "attention_mask": attention_mask}, tied)
    exp, report = text_expected(model, input_ids, attention_mask, tok.token_to_id("<|endoftext|>"))
    write_safetensors(out_dir / "expected.safetensors", exp)
    meta = common_meta(tok, cfg, seed, input_ids, exp, {**reload, **report})
    meta.update(extra_meta)
    write_meta(out_dir, meta)
    return meta


def common_meta(tok: Tokenizer, cfg: Qwen2_5OmniThinkerConfig, seed: int, input_ids: torch.Tensor, exp: dict, checks: dict) -> dict:
    tc = cfg.text_config
    return {
        "generator": "scripts/make_omni_fixtures.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "seed": seed,
        "batch": int(input_ids.shape[0]),
        "seq_len": int(input_ids.shape[1]),
        "tied_lm_head": bool(cfg.tie_word_embeddings),
        "text": {
            "vocab_size": tc.vocab_size,
            "hidden_size": tc.hidden_size,
            "num_hidden_layers": tc.num_hidden_layers,
            "num_attention_heads": tc.num_attention_heads,
            "num_key_value_heads": tc.num_key_value_heads,
            "head_dim": getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads,
            "rope_parameters": tc.rope_parameters,
        },
        "special_token_ids": special_ids(tok),
        "greedy_steps": GREEDY_STEPS,
        "hidden_states_convention": "hidden_states.0 = input embeddings; hidden_states.k (1<=k<N) = output of decoder "
        "layer k; hidden_states.N (N = num_hidden_layers) = last layer output AFTER the final RMSNorm",
        "checks": checks,
        "expected_shapes": {k: list(v.shape) for k, v in sorted(exp.items())},
    }


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

TOKENIZER: Tokenizer | None = None


def get_tokenizer() -> Tokenizer:
    global TOKENIZER
    if TOKENIZER is None:
        TOKENIZER = build_tokenizer()
        check_tokenizer_determinism(TOKENIZER)
    return TOKENIZER


def _encode_single(tok: Tokenizer, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = tok.encode(text, add_special_tokens=False).ids
    t = torch.tensor([ids], dtype=torch.int64)
    return t, torch.ones_like(t)


def fixture_text_basic(out_dir: Path) -> dict:
    """Thinker-only config (new rope_parameters form), untied lm_head, B=1 chat prompt."""
    tok = get_tokenizer()
    ids = special_ids(tok)
    system, prompt = "Be brief.", "Tell me a story."
    text = chatml(system, prompt)
    input_ids, attention_mask = _encode_single(tok, text)

    write_tokenizer_files(out_dir, tok)
    hf_tok = load_hf_tokenizer(out_dir)
    # The transformers tokenizer loaded from the fixture must agree with the raw tokenizers one.
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == input_ids[0].tolist()
    assert hf_tok.eos_token == "<|im_end|>" and hf_tok.pad_token == "<|endoftext|>"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    rendered = hf_tok.apply_chat_template(messages, chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True)
    assert rendered == text, (rendered, text)
    templ_ids = hf_tok.apply_chat_template(messages, chat_template=CHAT_TEMPLATE, tokenize=True, add_generation_prompt=True)
    if isinstance(templ_ids, dict) or hasattr(templ_ids, "keys"):
        templ_ids = templ_ids["input_ids"]
    assert list(templ_ids) == input_ids[0].tolist(), (templ_ids, input_ids)
    # list-form content renders the same text, and multimodal items render their placeholders
    messages_list = [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "text", "text": prompt}]},
    ]
    assert hf_tok.apply_chat_template(messages_list, chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True) == text
    mm = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio": "a.wav"},
                {"type": "image", "image": "b.png"},
                {"type": "video", "video": "c.mp4"},
                {"type": "text", "text": prompt},
            ],
        },
    ]
    mm_text = hf_tok.apply_chat_template(mm, chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True)
    assert mm_text == chatml(
        system,
        "<|audio_bos|><|AUDIO|><|audio_eos|><|vision_bos|><|IMAGE|><|vision_eos|><|vision_bos|><|VIDEO|><|vision_eos|>"
        + prompt,
    ), mm_text

    (out_dir / "prompt.json").write_text(
        json.dumps({"system": system, "prompt": prompt, "text": text, "input_ids": input_ids[0].tolist()}, indent=2) + "\n"
    )
    gen = {
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "do_sample": False,
    }
    (out_dir / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")

    user_id = tok.token_to_id("user")
    cfg = thinker_config(ids, tiny_text_config(), tie_word_embeddings=False, user_token_id=user_id)
    cfg_json = saved_config_json(cfg, THINKER_ARCH)
    return run_text_fixture(
        out_dir,
        tok=tok,
        cfg=cfg,
        config_json=cfg_json,
        seed=1001,
        input_ids=input_ids,
        attention_mask=attention_mask,
        extra_meta={"prompt": {"system": system, "prompt": prompt, "text": text}},
    )


def fixture_text_batch_leftpad(out_dir: Path) -> dict:
    """B=2, prompts of different lengths, left-padded with <|endoftext|>."""
    tok = get_tokenizer()
    ids = special_ids(tok)
    texts = [
        chatml("You are a helpful assistant.", "Tell me a short story about a cat and a dog."),
        chatml("Be brief.", "Hello!"),
    ]
    input_ids, attention_mask = encode_batch_left(tok, texts)
    assert attention_mask[1].sum() < attention_mask[0].sum()
    cfg = thinker_config(ids, tiny_text_config(), tie_word_embeddings=False, user_token_id=tok.token_to_id("user"))
    meta = run_text_fixture(
        out_dir,
        tok=tok,
        cfg=cfg,
        config_json=saved_config_json(cfg, THINKER_ARCH),
        seed=2002,
        input_ids=input_ids,
        attention_mask=attention_mask,
        extra_meta={
            "texts": texts,
            "padding_side": "left",
            "pad_token_id": ids["<|endoftext|>"],
            "compare_note": "logits and hidden_states at pad positions (attention_mask == 0) are whatever "
            "transformers' eager attention produced for fully masked rows; compare only positions with "
            "attention_mask == 1. position_ids hold 1 at pad slots.",
        },
    )
    # Extra check (reported only): each row equals the same prompt run alone.
    model = build_model(cfg, 2002)
    diffs = []
    for b in range(2):
        n = int(attention_mask[b].sum())
        single = input_ids[b : b + 1, -n:]
        with torch.no_grad():
            model.model.rope_deltas = None
            lo = model(input_ids=single, attention_mask=torch.ones_like(single)).logits[0]
            model.model.rope_deltas = None
            lb = model(input_ids=input_ids, attention_mask=attention_mask).logits[b, -n:]
        diffs.append((lo - lb).abs().max().item())
    meta["checks"]["row_vs_single_maxdiff"] = diffs
    write_meta(out_dir, meta)
    return meta


def fixture_text_full_config_tied(out_dir: Path) -> dict:
    """Full qwen2_5_omni config, OLD rope form (rope_theta + rope_scaling), tied lm_head via thinker flag."""
    tok = get_tokenizer()
    ids = special_ids(tok)
    text = chatml("You are a helpful assistant.", "What is the weather like today?")
    input_ids, attention_mask = _encode_single(tok, text)
    mrope = [1, 1, 2]
    theta = 1000000.0
    cfg = thinker_config(
        ids, tiny_text_config(mrope_section=mrope, rope_theta=theta), tie_word_embeddings=True,
        user_token_id=tok.token_to_id("user"),
    )
    full_cfg = Qwen2_5OmniConfig(thinker_config=cfg.to_dict(), enable_audio_output=False)
    full = saved_config_json(full_cfg, ["Qwen2_5OmniForConditionalGeneration"])
    full["thinker_config"]["architectures"] = THINKER_ARCH
    tc = full["thinker_config"]["text_config"]
    del tc["rope_parameters"]
    tc["rope_theta"] = theta
    tc["rope_scaling"] = {"type": "default", "mrope_section": mrope, "rope_type": "default"}
    tc["tie_word_embeddings"] = False  # must be ignored: only thinker_config.tie_word_embeddings counts
    assert full["thinker_config"]["tie_word_embeddings"] is True
    full["enable_audio_output"] = False

    # The old form must load into the same rope parameters.
    with tempfile.TemporaryDirectory() as td:
        Path(td, "config.json").write_text(json.dumps(full))
        loaded = Qwen2_5OmniThinkerConfig.from_pretrained(td)
        rp = loaded.text_config.rope_parameters
        assert rp["rope_theta"] == theta and list(rp["mrope_section"]) == mrope and rp["rope_type"] == "default", rp
        assert loaded.tie_word_embeddings is True

    return run_text_fixture(
        out_dir,
        tok=tok,
        cfg=cfg,
        config_json=full,
        seed=3003,
        input_ids=input_ids,
        attention_mask=attention_mask,
        extra_meta={"text": text, "config_form": "full qwen2_5_omni, old rope_theta/rope_scaling"},
    )


def fixture_text_head_dim(out_dir: Path) -> dict:
    """Explicit text_config.head_dim (16) != hidden/heads (8); mrope_section sums to 8."""
    tok = get_tokenizer()
    ids = special_ids(tok)
    text = chatml("Be brief.", "Why did the computer go to the doctor?")
    input_ids, attention_mask = _encode_single(tok, text)
    cfg = thinker_config(
        ids, tiny_text_config(head_dim=16, mrope_section=(2, 3, 3)), tie_word_embeddings=False,
        user_token_id=tok.token_to_id("user"),
    )
    assert cfg.text_config.head_dim == 16
    meta = run_text_fixture(
        out_dir,
        tok=tok,
        cfg=cfg,
        config_json=saved_config_json(cfg, THINKER_ARCH),
        seed=4004,
        input_ids=input_ids,
        attention_mask=attention_mask,
        extra_meta={"text": text},
    )
    sd = load_file(str(out_dir / "model.safetensors"))
    assert tuple(sd["thinker.model.layers.0.self_attn.q_proj.weight"].shape) == (64, 32)
    assert tuple(sd["thinker.model.layers.0.self_attn.k_proj.weight"].shape) == (32, 32)
    return meta


# ---------------------------------------------------------------------------------------
# TEXT + AUDIO fixtures
# ---------------------------------------------------------------------------------------
#
# Extra layout of an audio fixture directory (on top of the text layout above):
#
#   inputs.safetensors    input_features [N_audio, 128, F] f32 and feature_attention_mask [N_audio, F] int64
#                         (one row per audio, in prompt order: the processor stacks every audio of the batch,
#                         it does not group them per prompt); F is the processor's 30000 frames cut down to a
#                         few frames >= the longest audio (checked: same logits as the untrimmed features).
#                         raw_waveform [S] f32 at 16 kHz (one audio) or raw_waveform.0, raw_waveform.1, ...
#                         (several audios, prompt order). input_ids already hold the expanded placeholders.
#   expected.safetensors  mel_features [128, F_valid] (one audio) or mel_features.0, ... : the processor's
#                         log-mel restricted to the valid frames (F_valid = ceil(S / 160));
#                         audio_tower_output [n_audio_tokens_total, output_dim]: the tower output of all the
#                         prompt's audios, concatenated as scattered into the <|AUDIO|> positions.

AUDIO_SAMPLING_RATE = 16000
# The feature-extractor part of Qwen2.5-Omni's preprocessor_config.json.
WHISPER_FE_KWARGS = dict(
    feature_size=128,
    sampling_rate=AUDIO_SAMPLING_RATE,
    hop_length=160,
    n_fft=400,
    chunk_length=300,
    padding_value=0.0,
    dither=0.0,
    return_attention_mask=True,
)
# tokenizer attributes the Qwen2.5-Omni processor reads (the released tokenizer_config sets them the same way)
OMNI_TOKENIZER_EXTRA_SPECIAL = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}
AUDIO_PLACEHOLDER = "<|audio_bos|><|AUDIO|><|audio_eos|>"


def make_feature_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(**WHISPER_FE_KWARGS)


def build_audio_processor(tok: Tokenizer):
    """The real `Qwen2_5OmniProcessor` (tokenizer of the fixtures + Whisper extractor), without a video processor.

    The video processor needs torchvision, which the reference environment does not have; only its class check
    is skipped (audio processing never touches it).
    """
    from transformers import Qwen2_5OmniProcessor, Qwen2VLImageProcessor

    class AudioOnlyOmniProcessor(Qwen2_5OmniProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    with tempfile.TemporaryDirectory() as td:
        write_tokenizer_files(Path(td), tok)
        cfg_path = Path(td, "tokenizer_config.json")
        tok_cfg = json.loads(cfg_path.read_text())
        tok_cfg["extra_special_tokens"] = OMNI_TOKENIZER_EXTRA_SPECIAL
        cfg_path.write_text(json.dumps(tok_cfg))
        hf_tok = AutoTokenizer.from_pretrained(td)
    assert hf_tok.audio_token_id == tok.token_to_id("<|AUDIO|>")
    return AudioOnlyOmniProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=None,
        feature_extractor=make_feature_extractor(),
        tokenizer=hf_tok,
        chat_template=CHAT_TEMPLATE,
    )


def synth_waveform(
    num_samples: int,
    seed: int,
    tones: list[tuple[float, float]],
    noise: float = 0.02,
    silence: tuple[float, float] | None = None,
    chirp: tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """Seeded synthetic mono audio at 16 kHz, f32: sines (freq Hz, amplitude) with random phases under a slow
    amplitude envelope, optional linear chirp (f0, f1, amplitude), Gaussian noise, and an optional exactly silent
    stretch given as (start, end) fractions of the length."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / AUDIO_SAMPLING_RATE
    x = torch.zeros(num_samples, dtype=torch.float64)
    for freq, amp in tones:
        phase = float(torch.rand((), generator=g, dtype=torch.float64)) * 2 * torch.pi
        x += amp * torch.sin(2 * torch.pi * freq * t + phase)
    if chirp is not None:
        f0, f1, amp = chirp
        dur = num_samples / AUDIO_SAMPLING_RATE
        x += amp * torch.sin(2 * torch.pi * (f0 * t + 0.5 * (f1 - f0) / dur * t * t))
    x *= 0.65 + 0.35 * torch.sin(2 * torch.pi * 1.7 * t)
    x += noise * torch.randn(num_samples, generator=g, dtype=torch.float64)
    if silence is not None:
        a, b = int(silence[0] * num_samples), int(silence[1] * num_samples)
        x[a:b] = 0.0
    assert x.abs().max() < 1.0
    return x.to(torch.float32)


def audio_lengths(num_samples: int, n_window: int) -> dict:
    """Frame / chunk / token counts of one audio (notes sections 3 and 4)."""
    hop = WHISPER_FE_KWARGS["hop_length"]
    frames = -(-num_samples // hop)
    chunk = 2 * n_window
    n_chunks = -(-frames // chunk)
    chunk_lengths = [chunk] * (n_chunks - 1) + [frames - chunk * (n_chunks - 1)]
    l1 = (frames - 1) // 2 + 1
    return {
        "num_samples": num_samples,
        "duration_s": num_samples / AUDIO_SAMPLING_RATE,
        "valid_frames": frames,
        "chunk_size_frames": chunk,
        "chunk_count": n_chunks,
        "chunk_lengths": chunk_lengths,
        "chunk_conv_out_lengths": [(c - 1) // 2 + 1 for c in chunk_lengths],
        "L1": l1,
        "L1_is_odd": l1 % 2 == 1,
        "last_chunk_partial": frames % chunk != 0,
        "num_audio_tokens": (l1 - 2) // 2 + 1,
    }


def run_audio_fixture(
    out_dir: Path,
    *,
    seed: int,
    system: str,
    content: list,
    stored_frames: int | None = None,
    extra_meta: dict | None = None,
) -> dict:
    """`content`: the user turn, items either a str (text) or a 1-D f32 waveform tensor (audio).

    `stored_frames`: F of the stored input_features (default: the longest audio's valid frames)."""
    tok = get_tokenizer()
    ids = special_ids(tok)
    proc = build_audio_processor(tok)
    waves = [c for c in content if isinstance(c, torch.Tensor)]
    n_audio = len(waves)
    assert n_audio >= 1

    # 1. Prompt through the chat template (processor and plain tokenizer agree with the manual ChatML form).
    items = []
    for c in content:
        if isinstance(c, torch.Tensor):
            items.append({"type": "audio", "audio": f"audio_{len(items)}.wav"})
        else:
            items.append({"type": "text", "text": c})
    messages = [{"role": "system", "content": system}, {"role": "user", "content": items}]
    text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    manual = chatml(system, "".join(AUDIO_PLACEHOLDER if isinstance(c, torch.Tensor) else c for c in content))
    assert text == manual, (text, manual)

    # 2. The processor: expanded input_ids and the Whisper features.
    wave_np = [w.numpy() for w in waves]
    enc = proc(text=text, audio=wave_np, return_tensors="pt")
    input_ids = enc["input_ids"].to(torch.int64)
    attention_mask = enc["attention_mask"].to(torch.int64)
    feats_full = enc["input_features"]
    fam_full = enc["feature_attention_mask"]
    proc_dtypes = {k: str(v.dtype).replace("torch.", "") for k, v in enc.items() if isinstance(v, torch.Tensor)}
    nb_max = make_feature_extractor().nb_max_frames
    assert feats_full.shape == (n_audio, 128, nb_max) and feats_full.dtype == torch.float32, feats_full.shape
    assert fam_full.shape == (n_audio, nb_max), fam_full.shape
    assert input_ids.shape[0] == 1

    n_window = tiny_audio_config()["n_window"]
    per_audio = [audio_lengths(int(w.numel()), n_window) for w in waves]
    valid = [a["valid_frames"] for a in per_audio]
    assert fam_full.sum(-1).tolist() == valid, (fam_full.sum(-1), valid)
    for i, v in enumerate(valid):  # the mask is a prefix of ones
        assert bool((fam_full[i, :v] == 1).all()) and bool((fam_full[i, v:] == 0).all())
    assert max(a["chunk_conv_out_lengths"][0] for a in per_audio) <= tiny_audio_config()["max_source_positions"]

    # Placeholder expansion = n_tokens copies of <|AUDIO|> per audio, in prompt order.
    pieces = text.split(AUDIO_PLACEHOLDER)
    assert len(pieces) == n_audio + 1
    expanded = pieces[0]
    for a, rest in zip(per_audio, pieces[1:]):
        expanded += "<|audio_bos|>" + "<|AUDIO|>" * a["num_audio_tokens"] + "<|audio_eos|>" + rest
    manual_ids = tok.encode(expanded, add_special_tokens=False).ids
    assert input_ids[0].tolist() == manual_ids
    n_tok_total = sum(a["num_audio_tokens"] for a in per_audio)
    assert int((input_ids == ids["<|AUDIO|>"]).sum()) == n_tok_total

    # The extractor run on one audio at a time gives the same rows (batching does not mix audios).
    fe = make_feature_extractor()
    for i, w in enumerate(wave_np):
        one = fe(w, sampling_rate=AUDIO_SAMPLING_RATE, padding="max_length", return_attention_mask=True, return_tensors="pt")
        assert torch.equal(one["input_features"][0], feats_full[i]), i
        assert torch.equal(one["attention_mask"][0], fam_full[i]), i

    # 3. Stored (trimmed) features.
    F = stored_frames if stored_frames is not None else max(valid)
    assert max(valid) <= F <= nb_max
    feats = feats_full[:, :, :F].contiguous()
    fam = fam_full[:, :F].to(torch.int64).contiguous()
    mm = {"input_features": feats, "feature_attention_mask": fam}

    # 4. Model, reload, expected tensors.
    cfg = thinker_config(ids, tiny_text_config(), tie_word_embeddings=False, user_token_id=tok.token_to_id("user"))
    model = build_model(cfg, seed)
    save_model(out_dir, model, saved_config_json(cfg, THINKER_ARCH), tied=False)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **mm}
    if n_audio == 1:
        inputs["raw_waveform"] = waves[0]
    else:
        for i, w in enumerate(waves):
            inputs[f"raw_waveform.{i}"] = w
    write_safetensors(out_dir / "inputs.safetensors", inputs)
    reload = check_reload(out_dir, model, {"input_ids": input_ids, "attention_mask": attention_mask, **mm}, tied=False)
    exp, report = text_expected(model, input_ids, attention_mask, ids["<|endoftext|>"], mm_inputs=mm)
    assert report["step0_vs_forward_last_maxdiff"] <= 1e-5, report
    assert report["steps_vs_full_forward_maxdiff"] <= 1e-4, report

    with torch.no_grad():
        tower = model.model.get_audio_features(feats, fam).last_hidden_state.float()
    assert tower.shape == (n_tok_total, cfg.audio_config.output_dim), tower.shape
    audio_pos = input_ids[0] == ids["<|AUDIO|>"]
    checks = {**reload, **report}
    checks["audio_tower_output_equals_hidden_states0_at_audio_positions"] = bool(
        torch.equal(exp["hidden_states.0"][audio_pos], tower)
    )
    assert checks["audio_tower_output_equals_hidden_states0_at_audio_positions"]
    exp["audio_tower_output"] = tower
    for i, v in enumerate(valid):
        key = "mel_features" if n_audio == 1 else f"mel_features.{i}"
        exp[key] = feats_full[i, :, :v].contiguous()

    # Positions of an audio-only prompt: plain 0..L-1 on all three rows (no image/video grid given).
    L = input_ids.shape[1]
    checks["position_ids_sequential"] = bool(
        torch.equal(exp["position_ids"], torch.arange(L).view(1, 1, L).expand(3, 1, L))
    )
    checks["rope_deltas"] = exp["rope_deltas"].tolist()

    # Trimmed features vs the processor's full 30000-frame features (int32 mask, as the processor returns it).
    with torch.no_grad():
        model.model.rope_deltas = None
        full_out = model(input_ids=input_ids, attention_mask=attention_mask, input_features=feats_full,
                         feature_attention_mask=fam_full, use_cache=False)
        tower_full = model.model.get_audio_features(feats_full, fam_full).last_hidden_state.float()
    d_full = (full_out.logits[0] - exp["logits"]).abs().max().item()
    checks["trimmed_vs_full_features_logits_maxdiff"] = d_full
    checks["trimmed_vs_full_features_logits_identical"] = bool(torch.equal(full_out.logits[0], exp["logits"]))
    checks["trimmed_vs_full_features_tower_identical"] = bool(torch.equal(tower_full, tower))
    assert d_full <= 1e-6, d_full

    # The audio matters: zeroed features change the logits.
    with torch.no_grad():
        model.model.rope_deltas = None
        zero_out = model(input_ids=input_ids, attention_mask=attention_mask, input_features=torch.zeros_like(feats),
                         feature_attention_mask=fam, use_cache=False)
    checks["logits_with_zeroed_features_maxdiff"] = round((zero_out.logits[0] - exp["logits"]).abs().max().item(), 4)
    assert checks["logits_with_zeroed_features_maxdiff"] > 0.1

    # Reference point for a reimplementation of the front end: transformers' numpy (f64) extractor path vs the
    # torch (f32) path the processor uses, on the valid frames (zero padding beyond them does not change them).
    np_diffs = []
    for i, w in enumerate(wave_np):
        padded = np.pad(w, (0, valid[i] * 160 + 400 - w.shape[0]))
        mel_np = fe._np_extract_fbank_features(padded[None], "cpu")[0][:, : valid[i]]
        np_diffs.append(float(np.abs(mel_np - feats_full[i, :, : valid[i]].numpy()).max()))
    checks["mel_numpy_path_vs_torch_path_maxdiff"] = np_diffs

    if n_audio > 1:
        # One tower call per audio, concatenated, vs the joint call.
        parts = []
        with torch.no_grad():
            for i in range(n_audio):
                parts.append(model.model.get_audio_features(feats[i : i + 1], fam[i : i + 1]).last_hidden_state)
        checks["per_audio_tower_vs_joint_maxdiff"] = (torch.cat(parts) - tower).abs().max().item()

    write_safetensors(out_dir / "expected.safetensors", exp)
    meta = common_meta(tok, cfg, seed, input_ids, exp, checks)
    ac = cfg.audio_config
    meta.update(
        {
            "prompt": {"system": system, "content": [c if isinstance(c, str) else "<audio>" for c in content],
                       "text": text, "expanded_text": expanded},
            "hidden_states_convention": meta["hidden_states_convention"].replace(
                "input embeddings", "input embeddings after the audio tower output is scattered into the <|AUDIO|> positions"
            ),
            "audio_config": {
                "d_model": ac.d_model, "encoder_layers": ac.encoder_layers,
                "encoder_attention_heads": ac.encoder_attention_heads, "encoder_ffn_dim": ac.encoder_ffn_dim,
                "output_dim": ac.output_dim, "n_window": ac.n_window, "num_mel_bins": ac.num_mel_bins,
                "max_source_positions": ac.max_source_positions,
            },
            "feature_extractor": {**WHISPER_FE_KWARGS, "class": "WhisperFeatureExtractor", "padding": "max_length",
                                  "nb_max_frames": nb_max},
            "num_audios": n_audio,
            "audios": per_audio,
            "num_audio_tokens_total": n_tok_total,
            "audio_token_spans": _token_spans(input_ids[0], ids["<|AUDIO|>"]),
            "stored_feature_frames": F,
            "input_shapes": {k: list(v.shape) for k, v in sorted(inputs.items())},
            "input_dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in sorted(inputs.items())},
            "processor_output_dtypes": proc_dtypes,
            "processor_output_shapes": {k: list(v.shape) for k, v in enc.items() if isinstance(v, torch.Tensor)},
            "waveform_keys": "raw_waveform" if n_audio == 1 else [f"raw_waveform.{i}" for i in range(n_audio)],
            "mel_keys": "mel_features" if n_audio == 1 else [f"mel_features.{i}" for i in range(n_audio)],
            "notes": [
                "input_features / feature_attention_mask: one row per audio in prompt order (the processor stacks "
                "every audio of the batch along dim 0), cut from the processor's 30000 frames to the stored F; "
                "the processor returns feature_attention_mask as int32, stored here as int64.",
                "The model sees only the valid frames: input_features[i, :, :valid_frames[i]].",
                "position_ids of a text+audio prompt (no image/video) are 0..L-1 on all three rows, rope_deltas 0.",
            ],
        }
    )
    if extra_meta:
        meta.update(extra_meta)
    write_meta(out_dir, meta)
    return meta


def _token_spans(ids_row: torch.Tensor, token_id: int) -> list[list[int]]:
    """[start, end) index ranges of runs of `token_id`."""
    spans, start = [], None
    row = ids_row.tolist()
    for i, t in enumerate(row + [None]):
        if t == token_id and start is None:
            start = i
        elif t != token_id and start is not None:
            spans.append([start, i])
            start = None
    return spans


def fixture_audio_basic(out_dir: Path) -> dict:
    """One audio: 9000 samples -> 57 frames = 4 chunks of 16 (last partial: 9), L1 = 29 (odd: pooling drops a row)."""
    wave = synth_waveform(9000, seed=5105, tones=[(220.0, 0.3), (660.0, 0.15), (1500.0, 0.08)], silence=(0.55, 0.7))
    a = audio_lengths(wave.numel(), tiny_audio_config()["n_window"])
    assert a["last_chunk_partial"] and a["L1_is_odd"] and a["chunk_count"] == 4, a
    return run_audio_fixture(
        out_dir,
        seed=5005,
        system="You are a helpful assistant.",
        content=[wave, "What is this sound?"],
        stored_frames=64,  # 7 padded frames after the 57 valid ones (mask 0)
    )


def fixture_audio_two_clips(out_dir: Path) -> dict:
    """Two audios of different lengths in one prompt, text between them."""
    w0 = synth_waveform(6000, seed=6106, tones=[(330.0, 0.25), (990.0, 0.12)], silence=(0.1, 0.25))
    w1 = synth_waveform(4321, seed=6107, tones=[(125.0, 0.2)], chirp=(400.0, 3000.0, 0.25), noise=0.05)
    a0 = audio_lengths(w0.numel(), tiny_audio_config()["n_window"])
    a1 = audio_lengths(w1.numel(), tiny_audio_config()["n_window"])
    # first audio: odd L1 (its last conv row is dropped by pooling, and pooling must restart at audio 1)
    assert a0["L1_is_odd"] and a0["valid_frames"] != a1["valid_frames"], (a0, a1)
    return run_audio_fixture(
        out_dir,
        seed=6006,
        system="You are a helpful assistant.",
        content=["Listen to this.", w0, "And this one.", w1, "What is the sound?"],
    )


def fixture_audio_long_chunks(out_dir: Path) -> dict:
    """One longer audio: 48640 samples (3.04 s) -> 304 frames = 19 full chunks of 16, L1 = 152, 76 tokens."""
    wave = synth_waveform(
        48640, seed=7107, tones=[(180.0, 0.2), (440.0, 0.15), (2500.0, 0.05)], chirp=(200.0, 4000.0, 0.15),
        silence=(0.4, 0.5),
    )
    a = audio_lengths(wave.numel(), tiny_audio_config()["n_window"])
    assert not a["last_chunk_partial"] and a["valid_frames"] == 304 and a["chunk_count"] == 19, a
    return run_audio_fixture(
        out_dir,
        seed=7007,
        system="You are a helpful assistant.",
        content=[wave, "Please describe what you hear in this audio clip."],
    )


FIXTURES = {
    "text_basic": fixture_text_basic,
    "text_batch_leftpad": fixture_text_batch_leftpad,
    "text_full_config_tied": fixture_text_full_config_tied,
    "text_head_dim": fixture_text_head_dim,
    "audio_basic": fixture_audio_basic,
    "audio_two_clips": fixture_audio_two_clips,
    "audio_long_chunks": fixture_audio_long_chunks,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output root (default tests/fixtures/omni)")
    ap.add_argument("--only", action="append", choices=sorted(FIXTURES), help="generate only this fixture (repeatable)")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    names = args.only or list(FIXTURES)
    for name in names:
        d = fresh_dir(out_root / name)
        FIXTURES[name](d)
        total = 0
        print(f"{name}/")
        for f in sorted(d.iterdir()):
            sz = f.stat().st_size
            total += sz
            sha = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
            print(f"  {f.name:<28} {sz:>9} B  sha256:{sha}")
        print(f"  {'total':<28} {total:>9} B")
        assert total < MAX_FIXTURE_BYTES, f"{name} is {total} bytes (> 2 MB)"
    return 0


if __name__ == "__main__":
    sys.exit(main())
