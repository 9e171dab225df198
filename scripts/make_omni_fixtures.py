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
  (image_*, video_*, mm_*) preprocessor_config.json, video_preprocessor_config.json (videos), pixel values,
                    grids, raw media, tower outputs and patch embeddings: see the "IMAGE / VIDEO fixtures"
                    section below. Needs torchvision (the Qwen2-VL video processor); images go through the
                    PIL back-end image processor (Qwen2VLImageProcessorPil).

Adding a fixture: write a `fixture_<name>(out_dir)` function and register it in
`FIXTURES` at the bottom. Shared helpers: `thinker_config`, `build_model`,
`save_model`, `check_reload`, `text_expected`, `write_safetensors`; for audio
`run_audio_fixture` (real Qwen2_5OmniProcessor + WhisperFeatureExtractor) and `synth_waveform`; for
images/videos `run_vision_fixture`, `synth_image`, `synth_video`.
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
    rope_kwargs: dict | None = None,
) -> tuple[dict, dict]:
    """Forward + get_rope_index + greedy generation; returns (tensors, report).

    `mm_inputs` (e.g. input_features + feature_attention_mask) are passed to every forward and to generate.
    `rope_kwargs`: when given, get_rope_index is called as get_rope_index(input_ids, attention_mask=...,
    **rope_kwargs) (image/video grids, use_audio_in_video, audio_seqlens, second_per_grids).
    """
    B, L = input_ids.shape
    mm_inputs = dict(mm_inputs or {})
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **mm_inputs}
    report: dict = {}
    with torch.no_grad():
        model.model.rope_deltas = None
        out = model(**inputs, output_hidden_states=True, use_cache=False)
        if rope_kwargs is not None:
            position_ids, rope_deltas = model.model.get_rope_index(
                input_ids, attention_mask=attention_mask, **rope_kwargs
            )
        elif "feature_attention_mask" in mm_inputs:
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

    The audio fixtures were made before torchvision joined the reference environment, so this processor keeps no
    video processor; only its class check is skipped (audio processing never touches it).
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


# ---------------------------------------------------------------------------------------
# IMAGE / VIDEO fixtures
# ---------------------------------------------------------------------------------------
#
# Extra layout of an image/video fixture directory (on top of the text layout above):
#
#   preprocessor_config.json   the image processor settings (min_pixels / max_pixels and the same values as
#                              size.shortest_edge / size.longest_edge, patch/merge sizes, CLIP mean/std) plus the
#                              Whisper fields, like the released Qwen2.5-Omni preprocessor_config.json.
#   video_preprocessor_config.json  (video fixtures) the video processor settings actually used for the call
#                              (size.shortest_edge / longest_edge = video min / max pixels, fps).
#   inputs.safetensors    pixel_values [N, 1176] f32 + image_grid_thw [n_images, 3] int64 (Pillow resize);
#                         pixel_values_videos [Nv, 1176] f32 + video_grid_thw [n_videos, 3] int64 +
#                         video_second_per_grid [n_videos] f32; use_audio_in_video [1] int64 (video fixtures: 0 or 1);
#                         raw_image [H, W, 3] uint8 (one image) or raw_image.0, raw_image.1, ... (several, in prompt
#                         order, batch-major); raw_video [T, H, W, 3] uint8 (the frames as given to the video
#                         processor: already sampled, before the odd-count repeat); audio-in-video: raw_waveform [S]
#                         f32 16 kHz + input_features / feature_attention_mask (as in the audio fixtures).
#   expected.safetensors  pixel_values / pixel_values_videos (= the inputs: the processor's output from the raw
#                         media), vision_tower_output [n_image_tokens_total, out_hidden] / video_tower_output
#                         [n_video_tokens_total, out_hidden] (merged tokens in the original t, h/2, w/2 order, images
#                         concatenated in scatter order), vision_patch_embed [N, hidden] / video_patch_embed
#                         [Nv, hidden] (patch embedding output, original patch order, before the window permutation);
#                         audio-in-video: mel_features, audio_tower_output.

IMAGE_PLACEHOLDER = "<|vision_bos|><|IMAGE|><|vision_eos|>"
VIDEO_PLACEHOLDER = "<|vision_bos|><|VIDEO|><|vision_eos|>"
PATCH, MERGE, TEMPORAL = 14, 2, 2
FACTOR = PATCH * MERGE


def smart_resize_ref(h: int, w: int, min_pixels: int, max_pixels: int, factor: int = FACTOR) -> tuple[int, int, str]:
    """smart_resize written from the notes (section 6); returns (h', w', branch)."""
    import math

    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        return max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor), "max_pixels"
    if hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        return math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor, "min_pixels"
    return hb, wb, "round"


def synth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Seeded RGB uint8 [H, W, 3]: smooth colour waves, hard-edged rectangles, a disk, mild noise."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.arange(h, dtype=torch.float64).view(-1, 1).expand(h, w)
    xx = torch.arange(w, dtype=torch.float64).view(1, -1).expand(h, w)
    img = torch.zeros(h, w, 3, dtype=torch.float64)
    for c in range(3):
        a, b, p = (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1).tolist()
        img[..., c] = 128 + 90 * torch.sin(3 * a * xx / w * torch.pi + 3 * b * yy / h * torch.pi + 3 * p)
    for _ in range(3):
        rh, rw = int(torch.randint(h // 6, h // 2, (), generator=g)), int(torch.randint(w // 6, w // 2, (), generator=g))
        y0, x0 = int(torch.randint(0, h - rh, (), generator=g)), int(torch.randint(0, w - rw, (), generator=g))
        img[y0 : y0 + rh, x0 : x0 + rw] = torch.randint(0, 256, (3,), generator=g).to(torch.float64)
    cy, cx = float(torch.rand((), generator=g)) * h, float(torch.rand((), generator=g)) * w
    r = min(h, w) * (0.15 + 0.15 * float(torch.rand((), generator=g)))
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[disk] = torch.randint(0, 256, (3,), generator=g).to(torch.float64)
    img += 6.0 * torch.randn(h, w, 3, generator=g, dtype=torch.float64)
    return img.round().clamp(0, 255).to(torch.uint8).numpy()


def synth_video(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """Seeded RGB uint8 [T, H, W, 3]: a drifting colour wave, a rectangle and a disk moving across the frames."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.arange(h, dtype=torch.float64).view(-1, 1).expand(h, w)
    xx = torch.arange(w, dtype=torch.float64).view(1, -1).expand(h, w)
    waves = (torch.rand(3, 3, generator=g, dtype=torch.float64) * 2 - 1).tolist()
    rect_col = torch.randint(0, 256, (3,), generator=g).to(torch.float64)
    disk_col = torch.randint(0, 256, (3,), generator=g).to(torch.float64)
    frames = []
    for k in range(t):
        f = torch.zeros(h, w, 3, dtype=torch.float64)
        for c in range(3):
            a, b, p = waves[c]
            f[..., c] = 128 + 80 * torch.sin(3 * a * xx / w * torch.pi + 3 * b * yy / h * torch.pi + 3 * p + 0.7 * k)
        rh, rw = h // 3, w // 4
        y0, x0 = (h - rh) // 2, int(k * (w - rw) / max(1, t - 1))
        f[y0 : y0 + rh, x0 : x0 + rw] = rect_col
        cy, cx, r = h * (0.25 + 0.5 * k / max(1, t - 1)), w * 0.7, min(h, w) * 0.2
        f[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = disk_col
        f += 5.0 * torch.randn(h, w, 3, generator=g, dtype=torch.float64)
        frames.append(f.round().clamp(0, 255).to(torch.uint8))
    return torch.stack(frames).numpy()


def make_image_processor(min_pixels: int, max_pixels: int):
    """The PIL back-end Qwen2-VL image processor (the reference for ttrav: Pillow's resize)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)


def make_video_processor(min_pixels: int, max_pixels: int):
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    return Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels)


def omni_hf_tokenizer(tok: Tokenizer):
    with tempfile.TemporaryDirectory() as td:
        write_tokenizer_files(Path(td), tok)
        cfg_path = Path(td, "tokenizer_config.json")
        tok_cfg = json.loads(cfg_path.read_text())
        tok_cfg["extra_special_tokens"] = OMNI_TOKENIZER_EXTRA_SPECIAL
        cfg_path.write_text(json.dumps(tok_cfg))
        hf_tok = AutoTokenizer.from_pretrained(td)
    assert hf_tok.image_token_id == tok.token_to_id("<|IMAGE|>") and hf_tok.video_token_id == tok.token_to_id("<|VIDEO|>")
    return hf_tok


def build_omni_processor(tok: Tokenizer, image_pixels: tuple[int, int], video_pixels: tuple[int, int]):
    """The real Qwen2_5OmniProcessor: PIL image processor, torchvision video processor, Whisper extractor."""
    from transformers import Qwen2_5OmniProcessor

    return Qwen2_5OmniProcessor(
        image_processor=make_image_processor(*image_pixels),
        video_processor=make_video_processor(*video_pixels),
        feature_extractor=make_feature_extractor(),
        tokenizer=omni_hf_tokenizer(tok),
        chat_template=CHAT_TEMPLATE,
    )


def write_preprocessor_configs(out_dir: Path, image_pixels: tuple[int, int], video_pixels: tuple[int, int] | None,
                               fps: float | None) -> None:
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    mn, mx = image_pixels
    cfg = {
        "processor_class": "Qwen2_5OmniProcessor",
        "image_processor_type": "Qwen2VLImageProcessor",
        "min_pixels": mn,
        "max_pixels": mx,
        "size": {"shortest_edge": mn, "longest_edge": mx},
        "patch_size": PATCH,
        "temporal_patch_size": TEMPORAL,
        "merge_size": MERGE,
        "do_resize": True,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(OPENAI_CLIP_MEAN),
        "image_std": list(OPENAI_CLIP_STD),
        "do_convert_rgb": True,
        "feature_extractor_type": "WhisperFeatureExtractor",
        **{k: v for k, v in WHISPER_FE_KWARGS.items()},
        "n_samples": WHISPER_FE_KWARGS["chunk_length"] * AUDIO_SAMPLING_RATE,
        "nb_max_frames": WHISPER_FE_KWARGS["chunk_length"] * AUDIO_SAMPLING_RATE // WHISPER_FE_KWARGS["hop_length"],
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if video_pixels is not None:
        vmn, vmx = video_pixels
        vcfg = {
            "video_processor_type": "Qwen2VLVideoProcessor",
            "min_pixels": vmn,
            "max_pixels": vmx,
            "size": {"shortest_edge": vmn, "longest_edge": vmx},
            "fps": fps,
            "patch_size": PATCH,
            "temporal_patch_size": TEMPORAL,
            "merge_size": MERGE,
            "resample": 3,
            "rescale_factor": 1 / 255,
            "image_mean": list(OPENAI_CLIP_MEAN),
            "image_std": list(OPENAI_CLIP_STD),
            "do_sample_frames": False,
            "cap_pixels_per_frame": False,
        }
        (out_dir / "video_preprocessor_config.json").write_text(json.dumps(vcfg, indent=2, sort_keys=True) + "\n")


def _eq(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _bicubic_aa(x: float) -> float:
    """Keys cubic with a = -0.5 (Pillow's BICUBIC and torch's antialiased bicubic)."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _resample_coeffs(in_size: int, out_size: int) -> list[tuple[int, list[float]]]:
    """Per output index: (first input index, normalised f64 weights). Pillow's precompute_coeffs and torch's
    _compute_index_ranges_weights (antialias) compute the same values: scale = in/out, filter scale
    fs = max(scale, 1), support = 2*fs, center = (i + 0.5) * scale, xmin = max(int(center - support + 0.5), 0),
    xmax = min(int(center + support + 0.5), in) (int() truncates), w_j = cubic((xmin + j - center + 0.5) / fs),
    then divided by their sum."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    support = 2.0 * fs
    out = []
    for i in range(out_size):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - xmin
        ws = [_bicubic_aa((j + xmin - center + 0.5) / fs) for j in range(n)]
        tot = sum(ws)
        out.append((xmin, [w / tot for w in ws] if tot != 0 else ws))
    return out


def _resample_pass(img: np.ndarray, out_size: int, axis: int, flavour: str) -> np.ndarray:
    """One separable uint8 pass along `axis` (0 = height, 1 = width) in fixed point.

    pillow:      int32 weights with PRECISION_BITS = 22.
    torchvision: int16 weights; precision p = the largest p < 22 such that int(0.5 + w_max * 2^(p+1)) < 2^15
                 is still false one step later, i.e. the loop `for p in 0..22: if int(0.5 + w_max*2^(p+1)) >= 2^15:
                 break`, w_max = the largest weight of the whole axis.
    Both: w_int = int(w * 2^p + 0.5) (w >= 0) or int(w * 2^p - 0.5) (w < 0) (truncation toward zero);
    out = clamp((2^(p-1) + sum(in * w_int)) >> p, 0, 255) (arithmetic shift)."""
    cs = _resample_coeffs(img.shape[axis], out_size)
    if flavour == "pillow":
        prec = 22
    else:
        w_max = max(max(ws) for _, ws in cs)
        prec = 0
        while prec < 22 and int(0.5 + w_max * (1 << (prec + 1))) < (1 << 15):
            prec += 1
    a = np.moveaxis(img.astype(np.int64), axis, 0)
    res = np.empty((out_size,) + a.shape[1:], dtype=np.int64)
    for i, (xmin, ws) in enumerate(cs):
        acc = np.full(a.shape[1:], 1 << (prec - 1), dtype=np.int64)
        for j, w in enumerate(ws):
            acc += a[xmin + j] * (int(-0.5 + w * (1 << prec)) if w < 0 else int(0.5 + w * (1 << prec)))
        res[i] = np.clip(acc >> prec, 0, 255)
    return np.moveaxis(res, 0, axis).astype(np.uint8)


def emulate_resize(img: np.ndarray, out_hw: tuple[int, int], flavour: str) -> np.ndarray:
    """uint8 [H, W, C] (or [T, H, W, C] for torchvision) antialiased bicubic resize, written from the libraries'
    C code: two passes with uint8 (clamped, rounded) values in between. Pillow 13: height pass first iff
    out_h < in_h and (in_h - out_h) > 2 * (in_w - out_w), else width first; torchvision (uint8 CPU path):
    always width first. A pass is skipped when that size does not change."""
    hax = img.ndim - 3
    h, w = img.shape[hax], img.shape[hax + 1]
    oh, ow = out_hw
    v_first = flavour == "pillow" and oh < h and (h - oh) > 2 * (w - ow)
    x = img
    for ax, n in (((hax, oh), (hax + 1, ow)) if v_first else ((hax + 1, ow), (hax, oh))):
        if x.shape[ax] != n:
            x = _resample_pass(x, n, ax, flavour)
    return x


def pil_resize_report(img: np.ndarray, out_hw: tuple[int, int]) -> dict:
    """How Pillow's BICUBIC resize of this image decomposes: width-pass-first or height-pass-first (uint8 between)."""
    from PIL import Image

    h, w = img.shape[:2]
    oh, ow = out_hw
    im = Image.fromarray(img)
    direct = np.asarray(im.resize((ow, oh), Image.BICUBIC))
    w_first = np.asarray(im.resize((ow, h), Image.BICUBIC).resize((ow, oh), Image.BICUBIC))
    h_first = np.asarray(im.resize((w, oh), Image.BICUBIC).resize((ow, oh), Image.BICUBIC))
    # Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first iff the height shrinks by more than twice
    # as many pixels as the width: out_h < in_h and (in_h - out_h) > 2 * (in_w - out_w); else horizontal first
    # (established on ~900 random size pairs, no exception).
    rule_vertical_first = oh < h and (h - oh) > 2 * (w - ow)
    rep = {
        "fixed_point_emulation_bit_exact": _eq(emulate_resize(img, out_hw, "pillow"), direct),
        "direct_equals_width_pass_then_height_pass": _eq(direct, w_first),
        "direct_equals_height_pass_then_width_pass": _eq(direct, h_first),
        "width_first_vs_height_first_max_uint8_diff": int(np.abs(w_first.astype(int) - h_first.astype(int)).max()),
        "rule_vertical_first": rule_vertical_first,
    }
    assert rep["direct_equals_height_pass_then_width_pass" if rule_vertical_first else "direct_equals_width_pass_then_height_pass"], rep
    assert rep["fixed_point_emulation_bit_exact"], rep
    return rep


def torchvision_video_resize_report(frames: np.ndarray, out_hw: tuple[int, int]) -> dict:
    """How torchvision's uint8 antialiased BICUBIC resize (what Qwen2VLVideoProcessor runs) decomposes."""
    import torchvision.transforms.v2.functional as tvF

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # [T, C, H, W] uint8
    h, w = x.shape[-2:]
    oh, ow = out_hw
    bic = tvF.InterpolationMode.BICUBIC

    def rs(t, size):
        return tvF.resize(t, list(size), interpolation=bic, antialias=True)

    direct = rs(x, (oh, ow))
    w_first = rs(rs(x, (h, ow)), (oh, ow))
    h_first = rs(rs(x, (oh, w)), (oh, ow))
    flt = rs(x.float(), (oh, ow)).round().clamp(0, 255).to(torch.uint8)
    d = lambda a, b: int((a.int() - b.int()).abs().max())  # noqa: E731
    emu = torch.from_numpy(emulate_resize(frames, out_hw, "torchvision")).permute(0, 3, 1, 2)
    rep = {
        "fixed_point_emulation_bit_exact": bool(torch.equal(emu, direct)),
        "input_dtype": str(x.dtype).replace("torch.", ""),
        "direct_equals_width_pass_then_height_pass": bool(torch.equal(direct, w_first)),
        "direct_equals_height_pass_then_width_pass": bool(torch.equal(direct, h_first)),
        "width_first_vs_height_first_max_uint8_diff": d(w_first, h_first),
        "uint8_resize_vs_float_resize_rounded_max_uint8_diff": d(direct, flt),
        "pillow_resize_vs_torchvision_resize_max_uint8_diff": d(
            torch.stack([torch.from_numpy(emulate_resize(f, out_hw, "pillow")) for f in frames]).permute(0, 3, 1, 2),
            direct),
    }
    assert rep["fixed_point_emulation_bit_exact"] and rep["direct_equals_width_pass_then_height_pass"], rep
    return rep


def pil_pixel_values_ref(img: np.ndarray, out_hw: tuple[int, int]) -> torch.Tensor:
    """Independent recomputation from the notes: Pillow bicubic, /255, CLIP normalize, patchify, temporal repeat."""
    from PIL import Image
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    oh, ow = out_hw
    r = np.asarray(Image.fromarray(img).resize((ow, oh), Image.BICUBIC)).astype(np.float64) / 255.0
    r = (r - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    x = torch.from_numpy(r).permute(2, 0, 1)  # C, H, W
    gh, gw = oh // PATCH, ow // PATCH
    x = x.reshape(3, gh // 2, 2, PATCH, gw // 2, 2, PATCH).permute(1, 4, 2, 5, 0, 3, 6)  # gh/2 gw/2 2 2 C 14 14
    x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, TEMPORAL, -1, -1)
    return x.reshape(gh * gw, 3 * TEMPORAL * PATCH * PATCH).float()


def video_pixel_values_ref(frames: np.ndarray, out_hw: tuple[int, int]) -> torch.Tensor:
    """Independent recomputation: torchvision-flavour fixed-point resize (emulated), /255, CLIP normalize, odd
    frame count -> last frame repeated, patchify (grid_t, gh/2, gw/2, 2, 2, C, 2, 14, 14)."""
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    r = emulate_resize(frames, out_hw, "torchvision").astype(np.float64) / 255.0
    r = (r - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    x = torch.from_numpy(r).permute(0, 3, 1, 2)  # T, C, H, W
    if x.shape[0] % TEMPORAL:
        x = torch.cat([x, x[-1:].expand(TEMPORAL - x.shape[0] % TEMPORAL, -1, -1, -1)])
    gt, (oh, ow) = x.shape[0] // TEMPORAL, out_hw
    gh, gw = oh // PATCH, ow // PATCH
    x = x.reshape(gt, TEMPORAL, 3, gh // 2, 2, PATCH, gw // 2, 2, PATCH).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, 3 * TEMPORAL * PATCH * PATCH).float()


def torchvision_image_pixel_values(img: np.ndarray, image_pixels: tuple[int, int]) -> torch.Tensor:
    """The torchvision back-end image processor's output (for the report only; not used by the model)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    ip = Qwen2VLImageProcessor(min_pixels=image_pixels[0], max_pixels=image_pixels[1])
    return ip(images=[img], return_tensors="pt")["pixel_values"]


def manual_video_audio_placeholder(grid: list[int], spg: float, n_audio: int) -> tuple[str, list[str]]:
    """Interleave of notes section 7, written independently: video token k has time index
    floor(t_k * spg * 25), audio token j has index j; both cut into 50-unit (2 s) chunks; per chunk video first."""
    t, h, w = grid
    per_t = (h // MERGE) * (w // MERGE)
    v_idx = [int(tt * spg * 25) for tt in range(t) for _ in range(per_t)]
    chunk = 25 * 2
    n_chunks = max(max(v_idx) // chunk, (n_audio - 1) // chunk) + 1
    s, order = "<|audio_bos|>", []
    for c in range(n_chunks):
        nv = sum(1 for i in v_idx if i // chunk == c)
        na = sum(1 for j in range(n_audio) if j // chunk == c)
        s += "<|VIDEO|>" * nv + "<|AUDIO|>" * na
        order.append(f"V{nv}A{na}")
    return s + "<|audio_eos|>", order


def manual_positions(ids_row: list[int], ids: dict[str, int], image_grids: list, video_grids: list, spgs: list,
                     audio_tokens: list[int], counters: dict) -> tuple[list[list[int]], int]:
    """3-D positions of one unpadded row written independently from notes section 8. `counters` carries the
    image / video / audio index across the rows of a batch (batch-major). Returns ([3][n] positions, rope_delta)."""
    IMG, VID, AUD = ids["<|IMAGE|>"], ids["<|VIDEO|>"], ids["<|AUDIO|>"]
    VBOS, ABOS, AEOS = ids["<|vision_bos|>"], ids["<|audio_bos|>"], ids["<|audio_eos|>"]
    pos: list[list[int]] = [[], [], []]
    nxt = 0

    def put(t, h, w):
        pos[0].append(t)
        pos[1].append(h)
        pos[2].append(w)

    def grid_pos(st, grid, t_scale):
        t, h, w = grid
        return [(st + int(tt * t_scale), st + i, st + j) for tt in range(t) for i in range(h // MERGE) for j in range(w // MERGE)]

    n, i = len(ids_row), 0
    while i < n:
        tk = ids_row[i]
        if tk == VBOS and i + 1 < n and ids_row[i + 1] == ABOS:  # audio-in-video block
            put(nxt, nxt, nxt)
            put(nxt, nxt, nxt)
            st = nxt + 1
            vp = grid_pos(st, video_grids[counters["video"]], spgs[counters["video"]] * 25)
            ap = [(st + j, st + j, st + j) for j in range(audio_tokens[counters["audio"]])]
            counters["video"] += 1
            counters["audio"] += 1
            i += 2
            vi = ai = 0
            while ids_row[i] != AEOS:
                if ids_row[i] == VID:
                    put(*vp[vi])
                    vi += 1
                else:
                    assert ids_row[i] == AUD
                    put(*ap[ai])
                    ai += 1
                i += 1
            assert vi == len(vp) and ai == len(ap)
            m = max(max(p) for p in vp + ap) + 1
            put(m, m, m)
            put(m, m, m)  # audio_eos and vision_eos
            nxt = m + 1
            i += 2
            continue
        if tk in (IMG, VID, AUD):
            j = i
            while j < n and ids_row[j] == tk:
                j += 1
            if tk == IMG:
                ps = grid_pos(nxt, image_grids[counters["image"]], 25)
                counters["image"] += 1
            elif tk == VID:
                ps = grid_pos(nxt, video_grids[counters["video"]], spgs[counters["video"]] * 25)
                counters["video"] += 1
            else:
                ps = [(nxt + k, nxt + k, nxt + k) for k in range(audio_tokens[counters["audio"]])]
                counters["audio"] += 1
            assert len(ps) == j - i, (len(ps), j - i)
            for p in ps:
                put(*p)
            nxt = max(max(p) for p in ps) + 1
            i = j
            continue
        put(nxt, nxt, nxt)
        nxt += 1
        i += 1
    return pos, nxt - n


def run_vision_fixture(
    out_dir: Path,
    *,
    seed: int,
    rows: list[tuple[str, list]],
    image_pixels: tuple[int, int] = (56 * 56, 28 * 28 * 64),
    video_pixels: tuple[int, int] | None = None,
    fps: float | None = None,
    extra_meta: dict | None = None,
) -> dict:
    """`rows`: one (system, content) per prompt (B = len(rows), left padded). Content items: str (text),
    ("image", uint8 [H,W,3]), ("video", uint8 [T,H,W,3]) or ("video_audio", uint8 [T,H,W,3], f32 waveform)."""
    tok = get_tokenizer()
    ids = special_ids(tok)
    B = len(rows)
    proc = build_omni_processor(tok, image_pixels, video_pixels or (56 * 56, 28 * 28 * 64))
    vcfg = tiny_vision_config()

    images, videos, waves = [], [], []
    texts, manual_texts = [], []
    media_meta = {"images": [], "videos": []}
    use_aiv = False
    n_audio_tokens = []
    for system, content in rows:
        items, manual_user = [], ""
        for c in content:
            if isinstance(c, str):
                items.append({"type": "text", "text": c})
                manual_user += c
            elif c[0] == "image":
                items.append({"type": "image", "image": f"image_{len(images)}.png"})
                manual_user += IMAGE_PLACEHOLDER
                images.append(c[1])
            else:
                items.append({"type": "video", "video": f"video_{len(videos)}.mp4"})
                manual_user += VIDEO_PLACEHOLDER
                videos.append(c[1])
                if c[0] == "video_audio":
                    use_aiv = True
                    waves.append(c[2])
        messages = [{"role": "system", "content": system}, {"role": "user", "content": items}]
        text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == chatml(system, manual_user), (text, manual_user)
        texts.append(text)
    assert not use_aiv or (len(videos) == 1 and len(waves) == 1), "audio-in-video fixtures: one video with audio"

    # 1. The processor.
    call = {"text": texts if B > 1 else texts[0], "return_tensors": "pt"}
    if B > 1:
        call["padding"] = True
    if images:
        call["images"] = images
    if videos:
        assert video_pixels is not None and fps is not None
        # size must be given per call: Qwen2_5OmniProcessor's class default videos_kwargs (shortest_edge 100352,
        # longest_edge 602112) override the video processor's own min/max pixels.
        call["videos"] = videos
        call["videos_kwargs"] = {
            "fps": fps,
            "size": {"shortest_edge": video_pixels[0], "longest_edge": video_pixels[1]},
            "cap_pixels_per_frame": False,
        }
    if use_aiv:
        call["audio"] = [w.numpy() for w in waves]
        call["audio_from_video_indices"] = [0]
        call["load_audio_from_video"] = True
    enc = proc(**call)
    input_ids = enc["input_ids"].to(torch.int64)
    attention_mask = enc["attention_mask"].to(torch.int64)
    assert input_ids.shape[0] == B
    if B > 1:  # left padding with <|endoftext|>
        for b in range(B):
            nv = int(attention_mask[b].sum())
            assert bool((attention_mask[b, -nv:] == 1).all()) and bool((input_ids[b, : input_ids.shape[1] - nv] == ids["<|endoftext|>"]).all())
    proc_shapes = {k: list(v.shape) for k, v in enc.items() if isinstance(v, torch.Tensor)}
    proc_dtypes = {k: str(v.dtype).replace("torch.", "") for k, v in enc.items() if isinstance(v, torch.Tensor)}

    checks: dict = {}
    mm: dict = {}
    inputs_extra: dict = {}
    exp_extra: dict = {}
    image_grids, video_grids, spgs = [], [], []

    # 2. Images: grids vs smart_resize, pixel values vs an independent Pillow pipeline, back-end comparisons.
    if images:
        pv = enc["pixel_values"]
        grid = enc["image_grid_thw"].to(torch.int64)
        assert pv.dtype == torch.float32 and pv.shape[1] == 3 * TEMPORAL * PATCH * PATCH
        assert grid.shape == (len(images), 3)
        off = 0
        ref_diffs, tv_diffs = [], []
        for k, img in enumerate(images):
            h, w = img.shape[:2]
            rh, rw, branch = smart_resize_ref(h, w, *image_pixels)
            assert grid[k].tolist() == [1, rh // PATCH, rw // PATCH], (grid[k], rh, rw)
            n_p = (rh // PATCH) * (rw // PATCH)
            ref = pil_pixel_values_ref(img, (rh, rw))
            ref_diffs.append((ref - pv[off : off + n_p]).abs().max().item())
            tvp = torchvision_image_pixel_values(img, image_pixels)
            tv_diffs.append((tvp - pv[off : off + n_p]).abs().max().item())
            off += n_p
            assert (h, w) != (rh, rw), "fixture images must need a resize"
            media_meta["images"].append({
                "raw_hw": [h, w],
                "resized_hw": [rh, rw],
                "smart_resize_branch": branch,
                "grid_thw": grid[k].tolist(),
                "num_patches": n_p,
                "num_tokens": n_p // (MERGE * MERGE),
                "merged_grid_hw": [rh // FACTOR, rw // FACTOR],
                "windows_hw": [-(-(rh // FACTOR) // (vcfg["window_size"] // FACTOR)), -(-(rw // FACTOR) // (vcfg["window_size"] // FACTOR))],
                "pixel_values_rows": [off - n_p, off],
                "pillow_pass_order": pil_resize_report(img, (rh, rw)),
                "pil_vs_torchvision_backend_pixel_values_maxdiff": tv_diffs[-1],
            })
        assert off == pv.shape[0]
        checks["pixel_values_vs_independent_pillow_pipeline_maxdiff"] = ref_diffs
        assert max(ref_diffs) < 1e-5, ref_diffs
        checks["pixel_values_torchvision_backend_vs_pil_backend_maxdiff"] = tv_diffs
        mm["pixel_values"] = pv
        mm["image_grid_thw"] = grid
        image_grids = grid.tolist()
        if len(images) == 1:
            inputs_extra["raw_image"] = torch.from_numpy(images[0].copy())
        else:
            for k, img in enumerate(images):
                inputs_extra[f"raw_image.{k}"] = torch.from_numpy(img.copy())

    # 3. Videos.
    if videos:
        pvv = enc["pixel_values_videos"]
        vgrid = enc["video_grid_thw"].to(torch.int64)
        spg = enc["video_second_per_grid"].to(torch.float32).reshape(-1)
        assert torch.equal(spg, torch.full((len(videos),), TEMPORAL / fps, dtype=torch.float32)), spg
        off = 0
        for k, vid in enumerate(videos):
            T, h, w = vid.shape[:3]
            rh, rw, branch = smart_resize_ref(h, w, *video_pixels)
            gt = -(-T // TEMPORAL)
            assert vgrid[k].tolist() == [gt, rh // PATCH, rw // PATCH], (vgrid[k], T, rh, rw)
            n_p = gt * (rh // PATCH) * (rw // PATCH)
            vref = video_pixel_values_ref(vid, (rh, rw))
            checks.setdefault("pixel_values_videos_vs_independent_pipeline_maxdiff", []).append(
                (vref - pvv[off : off + n_p]).abs().max().item())
            assert checks["pixel_values_videos_vs_independent_pipeline_maxdiff"][-1] < 1e-5
            off += n_p
            media_meta["videos"].append({
                "num_frames_given": T,
                "last_frame_repeated": T % TEMPORAL != 0,
                "raw_hw": [h, w],
                "resized_hw": [rh, rw],
                "needs_resize": (h, w) != (rh, rw),
                "smart_resize_branch": branch,
                "grid_thw": vgrid[k].tolist(),
                "num_patches": n_p,
                "num_tokens": n_p // (MERGE * MERGE),
                "fps": fps,
                "second_per_grid": float(spg[k]),
                "temporal_position_index": [int(t * float(spg[k]) * 25) for t in range(gt)],
                "merged_grid_hw": [rh // FACTOR, rw // FACTOR],
                "windows_hw_per_frame": [-(-(rh // FACTOR) // (vcfg["window_size"] // FACTOR)), -(-(rw // FACTOR) // (vcfg["window_size"] // FACTOR))],
                "pixel_values_videos_rows": [off - n_p, off],
                "torchvision_resize": torchvision_video_resize_report(vid, (rh, rw)),
            })
        assert off == pvv.shape[0]
        mm["pixel_values_videos"] = pvv
        mm["video_grid_thw"] = vgrid
        mm["video_second_per_grid"] = spg
        video_grids, spgs = vgrid.tolist(), spg.tolist()
        assert len(videos) == 1
        inputs_extra["raw_video"] = torch.from_numpy(videos[0].copy())
        inputs_extra["use_audio_in_video"] = torch.tensor([1 if use_aiv else 0], dtype=torch.int64)

    # 4. Audio of the video.
    audio_lens = []
    if use_aiv:
        feats_full, fam_full = enc["input_features"], enc["feature_attention_mask"]
        per_audio = [audio_lengths(int(w.numel()), tiny_audio_config()["n_window"]) for w in waves]
        valid = [a["valid_frames"] for a in per_audio]
        assert fam_full.sum(-1).tolist() == valid
        F = max(valid)
        feats = feats_full[:, :, :F].contiguous()
        fam = fam_full[:, :F].to(torch.int64).contiguous()
        mm["input_features"] = feats
        mm["feature_attention_mask"] = fam
        mm["use_audio_in_video"] = True
        inputs_extra["raw_waveform"] = waves[0]
        exp_extra["mel_features"] = feats_full[0, :, : valid[0]].contiguous()
        n_audio_tokens = [a["num_audio_tokens"] for a in per_audio]
        audio_lens = per_audio

    # 5. Placeholder expansion vs a manual one.
    expanded_texts = []
    ic = vc = 0
    interleave_orders = []
    for text in texts:
        out, rest = "", text
        while True:
            pi = rest.find(IMAGE_PLACEHOLDER)
            pv_ = rest.find(VIDEO_PLACEHOLDER)
            cands = [p for p in (pi, pv_) if p >= 0]
            if not cands:
                break
            p = min(cands)
            out += rest[:p]
            if p == pi:
                t, h, w = image_grids[ic]
                out += "<|vision_bos|>" + "<|IMAGE|>" * (t * h * w // 4) + "<|vision_eos|>"
                ic += 1
                rest = rest[p + len(IMAGE_PLACEHOLDER) :]
            else:
                t, h, w = video_grids[vc]
                if use_aiv:
                    block, order = manual_video_audio_placeholder(video_grids[vc], spgs[vc], n_audio_tokens[vc])
                    interleave_orders.append(order)
                    out += "<|vision_bos|>" + block + "<|vision_eos|>"
                else:
                    out += "<|vision_bos|>" + "<|VIDEO|>" * (t * h * w // 4) + "<|vision_eos|>"
                vc += 1
                rest = rest[p + len(VIDEO_PLACEHOLDER) :]
        expanded_texts.append(out + rest)
    for b, et in enumerate(expanded_texts):
        man = tok.encode(et, add_special_tokens=False).ids
        nv = int(attention_mask[b].sum())
        assert input_ids[b, input_ids.shape[1] - nv :].tolist() == man, b
    checks["input_ids_match_manual_expansion"] = True

    # 6. Model, reload, expected tensors.
    cfg = thinker_config(ids, tiny_text_config(), tie_word_embeddings=False, user_token_id=tok.token_to_id("user"))
    model = build_model(cfg, seed)
    save_model(out_dir, model, saved_config_json(cfg, THINKER_ARCH), tied=False)
    write_preprocessor_configs(out_dir, image_pixels, video_pixels, fps)
    stored_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    for k, v in mm.items():
        if isinstance(v, torch.Tensor):
            stored_inputs[k] = v
    stored_inputs.update(inputs_extra)
    write_safetensors(out_dir / "inputs.safetensors", stored_inputs)
    fwd_inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **mm}
    checks.update(check_reload(out_dir, model, fwd_inputs, tied=False))
    rope_kwargs = {
        "image_grid_thw": mm.get("image_grid_thw"),
        "video_grid_thw": mm.get("video_grid_thw"),
        "use_audio_in_video": use_aiv,
        "audio_seqlens": mm["feature_attention_mask"].sum(-1) if use_aiv else None,
        "second_per_grids": mm.get("video_second_per_grid"),
    }
    exp, report = text_expected(model, input_ids, attention_mask, ids["<|endoftext|>"], mm_inputs=mm, rope_kwargs=rope_kwargs)
    assert report["step0_vs_forward_last_maxdiff"] <= 1e-5, report
    assert report["steps_vs_full_forward_maxdiff"] <= 1e-4, report
    checks.update(report)

    hs0 = exp["hidden_states.0"] if B > 1 else exp["hidden_states.0"].unsqueeze(0)
    with torch.no_grad():
        if images:
            tower = torch.cat(model.model.get_image_features(mm["pixel_values"], mm["image_grid_thw"]).pooler_output).float()
            n_img = int((input_ids == ids["<|IMAGE|>"]).sum())
            assert tower.shape == (n_img, vcfg["out_hidden_size"]), tower.shape
            checks["vision_tower_output_equals_hidden_states0_at_image_positions"] = bool(
                torch.equal(hs0[input_ids == ids["<|IMAGE|>"]], tower)
            )
            assert checks["vision_tower_output_equals_hidden_states0_at_image_positions"]
            exp_extra["pixel_values"] = mm["pixel_values"]
            exp_extra["vision_tower_output"] = tower
            exp_extra["vision_patch_embed"] = model.model.visual.patch_embed(mm["pixel_values"]).float()
            if len(images) > 1:
                parts, off = [], 0
                for g in mm["image_grid_thw"]:
                    n_p = int(g.prod())
                    parts.append(torch.cat(model.model.get_image_features(
                        mm["pixel_values"][off : off + n_p], g.view(1, 3)).pooler_output))
                    off += n_p
                checks["per_image_tower_vs_joint_maxdiff"] = (torch.cat(parts) - tower).abs().max().item()
        if videos:
            vtower = torch.cat(model.model.get_video_features(mm["pixel_values_videos"], mm["video_grid_thw"]).pooler_output).float()
            n_vid = int((input_ids == ids["<|VIDEO|>"]).sum())
            assert vtower.shape == (n_vid, vcfg["out_hidden_size"]), vtower.shape
            checks["video_tower_output_equals_hidden_states0_at_video_positions"] = bool(
                torch.equal(hs0[input_ids == ids["<|VIDEO|>"]], vtower)
            )
            assert checks["video_tower_output_equals_hidden_states0_at_video_positions"]
            exp_extra["pixel_values_videos"] = mm["pixel_values_videos"]
            exp_extra["video_tower_output"] = vtower
            exp_extra["video_patch_embed"] = model.model.visual.patch_embed(mm["pixel_values_videos"]).float()
        if use_aiv:
            atower = model.model.get_audio_features(mm["input_features"], mm["feature_attention_mask"]).last_hidden_state.float()
            assert atower.shape == (sum(n_audio_tokens), cfg.audio_config.output_dim)
            checks["audio_tower_output_equals_hidden_states0_at_audio_positions"] = bool(
                torch.equal(hs0[input_ids == ids["<|AUDIO|>"]], atower)
            )
            assert checks["audio_tower_output_equals_hidden_states0_at_audio_positions"]
            exp_extra["audio_tower_output"] = atower
            # trimmed vs the processor's full 30000-frame features
            model.model.rope_deltas = None
            full_out = model(**{**fwd_inputs, "input_features": enc["input_features"],
                                "feature_attention_mask": enc["feature_attention_mask"]}, use_cache=False)
            checks["trimmed_vs_full_features_logits_identical"] = bool(
                torch.equal(full_out.logits if B > 1 else full_out.logits[0], exp["logits"]))

    # Positions: an independent walk (notes section 8) must give the same position_ids and rope_deltas.
    counters = {"image": 0, "video": 0, "audio": 0}
    man_pos = torch.ones(3, B, input_ids.shape[1], dtype=torch.int64)
    man_delta = []
    for b in range(B):
        nv = int(attention_mask[b].sum())
        row = input_ids[b, input_ids.shape[1] - nv :].tolist()
        p, d = manual_positions(row, ids, image_grids, video_grids, spgs, n_audio_tokens, counters)
        man_pos[:, b, input_ids.shape[1] - nv :] = torch.tensor(p, dtype=torch.int64)
        man_delta.append(d)
    checks["position_ids_match_independent_walk"] = bool(torch.equal(man_pos, exp["position_ids"]))
    checks["rope_deltas_match_independent_walk"] = exp["rope_deltas"].tolist() == man_delta
    assert checks["position_ids_match_independent_walk"] and checks["rope_deltas_match_independent_walk"], (
        exp["rope_deltas"], man_delta)
    checks["rope_deltas"] = exp["rope_deltas"].tolist()

    # The pixels matter: zeroed pixel values change the logits.
    with torch.no_grad():
        for key in ("pixel_values", "pixel_values_videos"):
            if key in mm:
                model.model.rope_deltas = None
                z = model(**{**fwd_inputs, key: torch.zeros_like(mm[key])}, use_cache=False).logits
                valid = attention_mask.bool()
                dz = (z[valid] - (exp["logits"] if B > 1 else exp["logits"].unsqueeze(0))[valid]).abs().max().item()
                checks[f"logits_with_zeroed_{key}_maxdiff"] = round(dz, 4)
                assert dz > 0.1, (key, dz)

    # Batches: each row equals the same prompt run alone (with only its own media).
    if B > 1:
        diffs = []
        ic = 0
        for b in range(B):
            nv = int(attention_mask[b].sum())
            row = input_ids[b : b + 1, -nv:]
            n_img = sum(1 for _ in _token_spans(row[0], ids["<|IMAGE|>"]))
            kw = {}
            if n_img:
                g = mm["image_grid_thw"][ic : ic + n_img]
                start = int(mm["image_grid_thw"][:ic].prod(-1).sum()) if ic else 0
                kw = {"pixel_values": mm["pixel_values"][start : start + int(g.prod(-1).sum())], "image_grid_thw": g}
                ic += n_img
            with torch.no_grad():
                model.model.rope_deltas = None
                lo = model(input_ids=row, attention_mask=torch.ones_like(row), use_cache=False, **kw).logits[0]
            diffs.append((lo - exp["logits"][b, -nv:]).abs().max().item())
        checks["row_vs_single_maxdiff"] = diffs
        assert max(diffs) < 1e-4, diffs

    exp.update(exp_extra)
    write_safetensors(out_dir / "expected.safetensors", exp)

    meta = common_meta(tok, cfg, seed, input_ids, exp, checks)
    import PIL
    import torchvision

    meta["versions"].update({"pillow": PIL.__version__, "torchvision": torchvision.__version__})
    vc_ = cfg.vision_config
    spans = []
    for b in range(B):
        spans.append({name: _token_spans(input_ids[b], ids[tkn]) for name, tkn in
                      (("image", "<|IMAGE|>"), ("video", "<|VIDEO|>"), ("audio", "<|AUDIO|>"))})
    meta.update({
        "prompts": [{"system": s, "content": [c if isinstance(c, str) else f"<{c[0]}>" for c in content]} for s, content in rows],
        "texts": texts,
        "expanded_texts": expanded_texts,
        "hidden_states_convention": meta["hidden_states_convention"].replace(
            "input embeddings", "input embeddings after the vision/video/audio tower outputs are scattered in"),
        "vision_config": {k: getattr(vc_, k) for k in ("depth", "hidden_size", "num_heads", "intermediate_size",
                                                        "out_hidden_size", "fullatt_block_indexes", "patch_size",
                                                        "temporal_patch_size", "spatial_merge_size", "window_size")},
        "processor": {
            "class": type(proc).__name__,
            "image_processor_class": type(proc.image_processor).__name__,
            "image_resize_backend": "PIL (Pillow BICUBIC, uint8 in / uint8 out)",
            "image_min_pixels": image_pixels[0],
            "image_max_pixels": image_pixels[1],
            "video_processor_class": type(proc.video_processor).__name__ if videos else None,
            "video_resize_backend": "torchvision.transforms.v2.functional.resize(BICUBIC, antialias=True) on uint8 [T,C,H,W]" if videos else None,
            "video_min_pixels": video_pixels[0] if videos else None,
            "video_max_pixels": video_pixels[1] if videos else None,
            "video_call_kwargs": call.get("videos_kwargs"),
            "audio_in_video_call": {"audio_from_video_indices": [0], "load_audio_from_video": True} if use_aiv else None,
            "padding_side": "left" if B > 1 else None,
        },
        "images": media_meta["images"],
        "videos": media_meta["videos"],
        "audio": audio_lens,
        "audio_video_interleave_chunks": interleave_orders,
        "token_spans": spans,
        "num_image_tokens_total": int((input_ids == ids["<|IMAGE|>"]).sum()),
        "num_video_tokens_total": int((input_ids == ids["<|VIDEO|>"]).sum()),
        "num_audio_tokens_total": int((input_ids == ids["<|AUDIO|>"]).sum()),
        "input_shapes": {k: list(v.shape) for k, v in sorted(stored_inputs.items())},
        "input_dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in sorted(stored_inputs.items())},
        "processor_output_shapes": proc_shapes,
        "processor_output_dtypes": proc_dtypes,
    })
    if B > 1:
        meta["pad_token_id"] = ids["<|endoftext|>"]
        meta["compare_note"] = ("logits and hidden_states at pad positions (attention_mask == 0) are undefined; compare "
                                "only positions with attention_mask == 1. position_ids hold 1 at pad slots.")
    if extra_meta:
        meta.update(extra_meta)
    write_meta(out_dir, meta)
    return meta


def fixture_image_basic(out_dir: Path) -> dict:
    """One 137x203 image -> smart_resize (round branch) 140x196 -> grid 1x10x14, 5x7 merged = 35 tokens,
    2x2 windows of 4x4 merged tokens (the right and bottom ones partial)."""
    img = synth_image(137, 203, seed=8108)
    return run_vision_fixture(
        out_dir,
        seed=8008,
        rows=[("You are a helpful assistant.", [("image", img), "What is in the picture?"])],
        image_pixels=(56 * 56, 28 * 28 * 64),
    )


def fixture_image_two(out_dir: Path) -> dict:
    """Two images, text between: 150x220 -> 112x168 (max_pixels branch), 50x70 -> 56x84 (min_pixels branch; the
    plain rounding would give 56x56 since round(70/28) = round(2.5) = 2)."""
    a = synth_image(150, 220, seed=9109)
    b = synth_image(50, 70, seed=9110)
    return run_vision_fixture(
        out_dir,
        seed=9009,
        rows=[("You are a helpful assistant.", ["Look at this.", ("image", a), "And this one.", ("image", b),
                                                "What is in the picture?"])],
        image_pixels=(4096, 28 * 28 * 32),
    )


def fixture_video_basic(out_dir: Path) -> dict:
    """5 frames of 58x130 (resized to 56x140: height down, width up) at fps 1.0: the last frame is repeated,
    grid 3x4x10 (2x5 merged per frame: a full-height partial window of 2x4 and one of 2x1), second_per_grid 2.0
    -> temporal positions t*50."""
    vid = synth_video(5, 58, 130, seed=10110)
    return run_vision_fixture(
        out_dir,
        seed=10010,
        rows=[("You are a helpful assistant.", [("video", vid), "What happens in this video?"])],
        video_pixels=(56 * 56, 28 * 28 * 40),
        fps=1.0,
    )


def fixture_video_audio(out_dir: Path) -> dict:
    """Audio in video: 6 frames of 40x75 at fps 2 (second_per_grid 1.0; min_pixels branch -> 56x84, grid 3x4x6,
    6 tokens per frame pair) and a 3.3 s clip (52800 samples -> 330 frames -> 82 audio tokens). The 2 s chunks
    interleave as V12 A50 V6 A32."""
    vid = synth_video(6, 40, 75, seed=11111)
    wave = synth_waveform(52800, seed=11112, tones=[(240.0, 0.25), (720.0, 0.1)], chirp=(300.0, 2500.0, 0.15),
                          silence=(0.45, 0.55))
    return run_vision_fixture(
        out_dir,
        seed=11011,
        rows=[("You are a helpful assistant.", ["What happens in this video?", ("video_audio", vid, wave)])],
        video_pixels=(56 * 56, 28 * 28 * 40),
        fps=2.0,
    )


def fixture_mm_batch_leftpad(out_dir: Path) -> dict:
    """B=2, left padded: row 0 = image (60x100 -> 56x112, 8 tokens) + text; row 1 (shorter, padded) = text +
    a different image (90x64 -> 84x56, 6 tokens) + text. pixel_values hold row 0's image then row 1's."""
    a = synth_image(60, 100, seed=12112)
    b = synth_image(90, 64, seed=12113)
    return run_vision_fixture(
        out_dir,
        seed=12012,
        rows=[
            ("You are a helpful assistant.", [("image", a), "Please describe what you see in this image."]),
            ("Be brief.", ["Look:", ("image", b), "What is it?"]),
        ],
        image_pixels=(56 * 56, 28 * 28 * 64),
    )


FIXTURES = {
    "text_basic": fixture_text_basic,
    "text_batch_leftpad": fixture_text_batch_leftpad,
    "text_full_config_tied": fixture_text_full_config_tied,
    "text_head_dim": fixture_text_head_dim,
    "audio_basic": fixture_audio_basic,
    "audio_two_clips": fixture_audio_two_clips,
    "audio_long_chunks": fixture_audio_long_chunks,
    "image_basic": fixture_image_basic,
    "image_two": fixture_image_two,
    "video_basic": fixture_video_basic,
    "video_audio": fixture_video_audio,
    "mm_batch_leftpad": fixture_mm_batch_leftpad,
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
