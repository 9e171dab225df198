#!/usr/bin/env python3
"""Generate the text-only causal LM parity fixtures (Qwen2, Qwen3) for ttrav.

Every fixture is a tiny random-weight `Qwen2ForCausalLM` or `Qwen3ForCausalLM` (f32, eager
attention) run through transformers; the Rust tests load the same weights and compare against the
stored outputs. The format is the one of scripts/make_omni_fixtures.py's text fixtures
(tests/fixtures/omni/text_basic, text_batch_leftpad); this script imports that module for the tiny
tokenizer and the shared helpers.

Environment: the one of make_omni_fixtures.py (scripts/requirements-fixtures.txt; torchvision and
pillow are not needed here):

    python3 -m venv ~/.venvs/ttrav-ref
    ~/.venvs/ttrav-ref/bin/pip install -r scripts/requirements-fixtures.txt

Run (from the repository root):

    ~/.venvs/ttrav-ref/bin/python scripts/make_text_fixtures.py [--out tests/fixtures/text] [--only NAME]

Everything is seeded, so a rerun with the pinned versions rewrites byte-identical files.

Fixtures (`<out>/<name>/`), all hidden 32, 4 heads, 2 KV heads, 2 layers, intermediate 64,
vocab 420 (the tiny tokenizer's 410 tokens plus unused rows), 6 greedy steps:

  qwen2_basic          Qwen2ForCausalLM, untied lm_head, rope_theta 1e4, B=1 chat prompt; also
                       tokenizer.json, tokenizer_config.json (with a ChatML chat_template),
                       generation_config.json and prompt.json, so it is a complete checkpoint.
  qwen2_tied_leftpad   Qwen2, tie_word_embeddings (no lm_head.weight), left-padded B=2.
  qwen3_basic          Qwen3ForCausalLM, head_dim 16 != hidden/heads (8), random q_norm/k_norm,
                       no q/k/v bias, untied, rope_theta 1e6, B=1.
  qwen3_tied_leftpad   Qwen3, head_dim 16, tied, rope_theta 1e6, left-padded B=2.

Layout of one fixture directory:

  config.json            what save_pretrained writes for the Qwen2Config / Qwen3Config
                         (model_type qwen2 / qwen3, architectures [Qwen2ForCausalLM] / [Qwen3ForCausalLM],
                         rope_parameters, layer_types, sliding_window null, use_sliding_window false,
                         bos_token_id <|endoftext|> and eos_token_id <|im_end|> as the released ones).
  model.safetensors      the HF checkpoint's tensor names: model.embed_tokens.weight,
                         model.layers.N.{input_layernorm,post_attention_layernorm}.weight,
                         model.layers.N.self_attn.{q,k,v,o}_proj.weight (+ q/k/v bias for Qwen2,
                         + q_norm/k_norm weight for Qwen3), model.layers.N.mlp.{gate,up,down}_proj.weight,
                         model.norm.weight, lm_head.weight (absent when tied). f32.
  inputs.safetensors     input_ids, attention_mask: [B, L] int64 (left padded with <|endoftext|>).
  expected.safetensors   logits ([L,V] for B=1, else [B,L,V]), hidden_states.0..N (same B convention;
                         0 = input embeddings, N = num_hidden_layers = after the final RMSNorm),
                         position_ids [3,B,L] int64 (the 1-D positions in all three rows; the first real
                         token of a row is 0, pad slots hold 1), greedy_token_ids [K] / [B,K] int64,
                         greedy_step_logits [K,V] / [B,K,V] f32 (unprocessed logits of each greedy step,
                         no stop token, K = 6). No rope_deltas.
  meta.json              human-readable summary (config, shapes, token ids, checks performed).

The forward that makes `logits` and `hidden_states` gets position_ids = cumsum(attention_mask) - 1
(1 at pad slots); the script asserts that generate()'s step-0 logits equal that forward's last
position and that the later steps equal one no-cache forward over prompt + generated tokens.
Counting pad slots would shift all real positions of a row by one constant, which 1-D rotary
attention cannot see (the script checks the logits agree), so only position_ids pin that convention.
Other checks (meta.json "checks"): reload through AutoModelForCausalLM gives identical logits; each
batch row equals its prompt run alone; zeroing Qwen2's q/k/v biases or setting Qwen3's q_norm/k_norm
to ones changes the logits by more than 0.1; every greedy row holds at least 4 distinct tokens (the
seeds are chosen for it: tied tiny models tend to repeat one token).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_omni_fixtures as omni  # noqa: E402  (also quiets transformers and sets the tokenizer env)

import numpy  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GenerationConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "text"
MAX_MODEL_BYTES = 1024 * 1024
GREEDY_STEPS = omni.GREEDY_STEPS

MODELS = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, "Qwen2ForCausalLM"),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, "Qwen3ForCausalLM"),
}

# ChatML as the Qwen2.5 text checkpoints render it (string or list-of-text content; the default
# system turn when the conversation has none), shipped in tokenizer_config.json like theirs.
TEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}{% if 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

HIDDEN_STATES_CONVENTION = (
    "hidden_states.0 = input embeddings; hidden_states.k (1<=k<N) = output of decoder layer k; "
    "hidden_states.N (N = num_hidden_layers) = last layer output AFTER the final RMSNorm (transformers' "
    "last hidden state: checked, lm_head of it reproduces the logits exactly)"
)
POSITION_IDS_CONVENTION = (
    "position_ids[r, b, t] = cumsum(attention_mask[b])[t] - 1 for every r in 0..3 (1-D rotary as the "
    "multimodal rotary's special case); pad slots (attention_mask == 0) hold 1. The logits/hidden_states "
    "forward used exactly these positions (row b, slot t)."
)


# ---------------------------------------------------------------------------------------
# Config, model, checkpoint
# ---------------------------------------------------------------------------------------


def text_config(model_type: str, ids: dict[str, int], *, tied: bool, rope_theta: float, head_dim: int | None = None):
    config_cls = MODELS[model_type][0]
    kw = dict(
        vocab_size=omni.MODEL_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        use_sliding_window=False,
        tie_word_embeddings=tied,
        # as the released Qwen2.5 / Qwen3 config.json files set them
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    if model_type == "qwen3":
        kw["attention_bias"] = False
    if head_dim is not None:
        kw["head_dim"] = head_dim
    return config_cls(**kw)


def build_model(cfg, seed: int):
    model_cls = MODELS[cfg.model_type][1]
    torch.manual_seed(seed)
    cfg = copy.deepcopy(cfg)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).to(torch.float32).eval()
    omni.init_weights_(model, seed)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    else:
        assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    return model


def expected_tensor_names(cfg) -> set[str]:
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not cfg.tie_word_embeddings:
        names.add("lm_head.weight")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        names |= {p + n + ".weight" for n in ("input_layernorm", "post_attention_layernorm")}
        names |= {f"{p}self_attn.{n}_proj.weight" for n in "qkvo"}
        names |= {f"{p}mlp.{n}_proj.weight" for n in ("gate", "up", "down")}
        if cfg.model_type == "qwen2":
            names |= {f"{p}self_attn.{n}_proj.bias" for n in "qkv"}
        else:
            names |= {f"{p}self_attn.{n}_norm.weight" for n in "qk"}
    return names


def checkpoint_state_dict(model, tied: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        if tied and k == "lm_head.weight":
            continue
        assert v.dtype == torch.float32, (k, v.dtype)
        out[k] = v.detach().clone().contiguous()
    assert set(out) == expected_tensor_names(model.config), sorted(set(out) ^ expected_tensor_names(model.config))
    return out


def save_model(out_dir: Path, model, cfg) -> dict:
    config_json = omni.saved_config_json(cfg, [MODELS[cfg.model_type][2]])
    (out_dir / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    omni.write_safetensors(out_dir / "model.safetensors", checkpoint_state_dict(model, bool(cfg.tie_word_embeddings)))
    return config_json


def positions_1d(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] positions that skip pad slots: first real token 0; pad slots 1."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)


def check_reload(out_dir: Path, model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """Reload config.json + model.safetensors with AutoModelForCausalLM; require identical weights and logits."""
    tied = bool(model.config.tie_word_embeddings)
    reloaded, info = AutoModelForCausalLM.from_pretrained(
        str(out_dir), dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    reloaded.eval()
    assert type(reloaded) is type(model), type(reloaded)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    assert not bad, f"reload of {out_dir.name}: {bad}"
    assert reloaded.config.tie_word_embeddings == tied
    if tied:
        assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    for (k, a), (k2, b) in zip(sorted(model.state_dict().items()), sorted(reloaded.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k
    pos = positions_1d(attention_mask)
    with torch.no_grad():
        a = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=False).logits
        b = reloaded(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=False).logits
    assert torch.equal(a, b), f"reloaded logits differ: {(a - b).abs().max()}"
    return {"missing_keys": 0, "unexpected_keys": 0, "reload_logits_identical": True}


# ---------------------------------------------------------------------------------------
# Expected outputs
# ---------------------------------------------------------------------------------------


def forward_logits(model, input_ids, attention_mask, **kw):
    with torch.no_grad():
        return model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions_1d(attention_mask),
            use_cache=False, **kw,
        )


def text_expected(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_token_id: int) -> tuple[dict, dict]:
    """Forward (explicit positions) + greedy generation with no stop token; returns (tensors, report)."""
    B, L = input_ids.shape
    report: dict = {}
    position_ids = positions_1d(attention_mask)
    out = forward_logits(model, input_ids, attention_mask, output_hidden_states=True)
    exp = {
        "logits": omni._drop_b(out.logits, B).float(),
        "position_ids": position_ids.unsqueeze(0).expand(3, B, L).contiguous().to(torch.int64),
    }
    hs = out.hidden_states
    assert len(hs) == model.config.num_hidden_layers + 1, len(hs)
    for i, h in enumerate(hs):
        exp[f"hidden_states.{i}"] = omni._drop_b(h, B).float()
    report["num_hidden_states"] = len(hs)
    with torch.no_grad():
        # hidden_states.0 is the embedding lookup; the last entry is the final-RMSNorm output.
        assert torch.equal(hs[0], model.model.embed_tokens(input_ids))
        assert torch.equal(model.lm_head(hs[-1]), out.logits)
    report["last_hidden_state_is_after_final_norm"] = True

    # Greedy generation with no stop token. The model's own generation_config (eos from config.json) is
    # replaced by an empty one, so that generate() fills no eos into the request below.
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
    saved_gen_cfg, model.generation_config = model.generation_config, GenerationConfig()
    try:
        with torch.no_grad():
            g = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_cfg)
    finally:
        model.generation_config = saved_gen_cfg
    seq = g.sequences[:, L:]
    assert seq.shape == (B, GREEDY_STEPS)
    step_logits = torch.stack(g.logits, dim=1).float()  # [B, K, V]
    scores = torch.stack(g.scores, dim=1).float()
    report["scores_equal_logits"] = bool(torch.equal(scores, step_logits))
    assert report["scores_equal_logits"], "a logits processor changed the greedy scores"
    assert torch.equal(step_logits.argmax(-1), seq), "greedy tokens are not argmax of step logits"
    # Step 0 == the explicit-position forward at the last position, for every row: generate() counts
    # positions from the first real token too.
    d0 = (step_logits[:, 0] - out.logits[:, -1]).abs().max().item()
    report["step0_vs_forward_last_maxdiff"] = d0
    assert d0 <= 1e-5, d0
    # Steps 1.. vs a single no-cache forward over prompt + generated tokens (same position rule).
    full_mask = torch.cat([attention_mask, torch.ones(B, GREEDY_STEPS, dtype=attention_mask.dtype)], dim=1)
    full = forward_logits(model, g.sequences, full_mask).logits
    ref = full[:, L - 1 : L - 1 + GREEDY_STEPS]
    report["steps_vs_full_forward_maxdiff"] = (ref - step_logits).abs().max().item()
    assert report["steps_vs_full_forward_maxdiff"] <= 1e-4, report
    report["greedy_tokens"] = seq.tolist()
    # Tied tiny models easily fall into repeating one token; the seeds are chosen so that every row's
    # greedy continuation holds at least 4 distinct tokens (a greedy check worth its name).
    assert all(len(set(r)) >= 4 for r in seq.tolist()), seq.tolist()
    exp["greedy_token_ids"] = omni._drop_b(seq.to(torch.int64), B)
    exp["greedy_step_logits"] = omni._drop_b(step_logits, B)
    lg = out.logits.float()[attention_mask.bool()]
    report["logit_std"] = round(lg.std(-1).mean().item(), 4)
    report["max_softmax_prob_mean"] = round(lg.softmax(-1).max(-1).values.mean().item(), 4)
    assert report["logit_std"] > 1.0, report["logit_std"]
    return exp, report


def batch_checks(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits: torch.Tensor) -> dict:
    """Each row equals its prompt run alone (positions 0..n-1). Counting pad slots shifts every real position
    of a row by the same amount, which 1-D rotary attention cannot see (scores depend on position differences
    only): the logits agree to rounding, so only the stored position_ids pin the convention."""
    report = {}
    diffs = []
    for b in range(input_ids.shape[0]):
        n = int(attention_mask[b].sum())
        single = input_ids[b : b + 1, -n:]
        lo = forward_logits(model, single, torch.ones_like(single)).logits[0]
        diffs.append((lo - logits[b, -n:]).abs().max().item())
    report["row_vs_single_maxdiff"] = diffs
    assert max(diffs) < 1e-4, diffs
    # The padded row with positions 0..L-1 over all slots (pad slots counted): same logits up to rounding.
    b = int(attention_mask.sum(-1).argmin())
    assert attention_mask[b, 0] == 0
    arange = torch.arange(input_ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        lc = model(input_ids=input_ids[b : b + 1], attention_mask=attention_mask[b : b + 1], position_ids=arange,
                   use_cache=False).logits[0]
    valid = attention_mask[b].bool()
    d = (lc[valid] - logits[b][valid]).abs().max().item()
    report["padded_row_with_pad_counting_positions_maxdiff"] = d
    assert d < 1e-4, d
    return report


def ablation_checks(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits: torch.Tensor) -> dict:
    """The weights a careless loader might skip matter: Qwen3's q_norm/k_norm set to ones, Qwen2's q/k/v
    biases set to zero, each change the logits."""
    valid = attention_mask.bool()
    ref = logits if logits.dim() == 3 else logits.unsqueeze(0)
    report = {}
    if model.config.model_type == "qwen3":
        targets = {"q_norm_k_norm_set_to_ones": [(m, "weight", 1.0) for layer in model.model.layers
                                                 for m in (layer.self_attn.q_norm, layer.self_attn.k_norm)]}
        for layer in model.model.layers:
            for m in (layer.self_attn.q_norm, layer.self_attn.k_norm):
                assert (m.weight - 1).abs().max() > 0.1, "q_norm/k_norm weights are (nearly) all ones"
    else:
        targets = {"qkv_bias_set_to_zero": [(m, "bias", 0.0) for layer in model.model.layers
                                            for m in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)]}
    for name, items in targets.items():
        saved = [getattr(m, attr).detach().clone() for m, attr, _ in items]
        with torch.no_grad():
            for m, attr, value in items:
                getattr(m, attr).fill_(value)
            z = forward_logits(model, input_ids, attention_mask).logits
            for (m, attr, _), s in zip(items, saved):
                getattr(m, attr).copy_(s)
        d = (z[valid] - ref[valid]).abs().max().item()
        report[f"logits_with_{name}_maxdiff"] = round(d, 4)
        assert d > 0.1, (name, d)
    return report


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


def write_tokenizer_files(out_dir: Path, tok) -> None:
    """tokenizer.json + tokenizer_config.json as make_omni_fixtures writes them, with the text chat template
    inside tokenizer_config.json (as the Qwen2.5 / Qwen3 text checkpoints ship it) instead of chat_template.json."""
    omni.write_tokenizer_files(out_dir, tok)
    (out_dir / "chat_template.json").unlink()
    path = out_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["chat_template"] = TEXT_CHAT_TEMPLATE
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def check_tokenizer_files(out_dir: Path, system: str, prompt: str, text: str, input_ids: torch.Tensor) -> None:
    hf_tok = omni.load_hf_tokenizer(out_dir)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == input_ids[0].tolist()
    assert hf_tok.eos_token == "<|im_end|>" and hf_tok.pad_token == "<|endoftext|>"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == text
    templ_ids = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if hasattr(templ_ids, "keys"):
        templ_ids = templ_ids["input_ids"]
    assert list(templ_ids) == input_ids[0].tolist(), (templ_ids, input_ids)
    as_list = [{"role": "system", "content": system}, {"role": "user", "content": [{"type": "text", "text": prompt}]}]
    assert hf_tok.apply_chat_template(as_list, tokenize=False, add_generation_prompt=True) == text
    no_system = hf_tok.apply_chat_template([messages[1]], tokenize=False, add_generation_prompt=True)
    assert no_system == omni.chatml("You are a helpful assistant.", prompt), no_system


def common_meta(cfg, config_json: dict, seed: int, input_ids: torch.Tensor, exp: dict, checks: dict) -> dict:
    tok = omni.get_tokenizer()
    return {
        "generator": "scripts/make_text_fixtures.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": numpy.__version__,
        },
        "seed": seed,
        "model_type": cfg.model_type,
        "architectures": config_json["architectures"],
        "batch": int(input_ids.shape[0]),
        "seq_len": int(input_ids.shape[1]),
        "tied_lm_head": bool(cfg.tie_word_embeddings),
        "text": {
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            "explicit_head_dim_in_config": "head_dim" in config_json,
            "qkv_bias": cfg.model_type == "qwen2",
            "qk_norm": cfg.model_type == "qwen3",
            "rms_norm_eps": cfg.rms_norm_eps,
            "rope_parameters": cfg.rope_parameters,
        },
        "special_token_ids": omni.special_ids(tok),
        "greedy_steps": GREEDY_STEPS,
        "hidden_states_convention": HIDDEN_STATES_CONVENTION,
        "position_ids_convention": POSITION_IDS_CONVENTION,
        "checks": checks,
        "expected_shapes": {k: list(v.shape) for k, v in sorted(exp.items())},
    }


def run_text_fixture(out_dir: Path, *, cfg, seed: int, texts: list[str], extra_meta: dict | None = None) -> dict:
    tok = omni.get_tokenizer()
    pad = tok.token_to_id("<|endoftext|>")
    input_ids, attention_mask = omni.encode_batch_left(tok, texts)
    B = input_ids.shape[0]
    if B > 1:
        assert len(set(attention_mask.sum(-1).tolist())) == B, "batch prompts must differ in length"
    model = build_model(cfg, seed)
    config_json = save_model(out_dir, model, cfg)
    omni.write_inputs(out_dir, input_ids, attention_mask)
    checks = check_reload(out_dir, model, input_ids, attention_mask)
    exp, report = text_expected(model, input_ids, attention_mask, pad)
    checks.update(report)
    full_logits = exp["logits"] if B > 1 else exp["logits"].unsqueeze(0)
    checks.update(ablation_checks(model, input_ids, attention_mask, exp["logits"]))
    if B > 1:
        checks.update(batch_checks(model, input_ids, attention_mask, full_logits))
    omni.write_safetensors(out_dir / "expected.safetensors", exp)

    sd = load_file(str(out_dir / "model.safetensors"))
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    assert tuple(sd["model.layers.0.self_attn.q_proj.weight"].shape) == (cfg.num_attention_heads * hd, cfg.hidden_size)
    assert tuple(sd["model.layers.0.self_attn.k_proj.weight"].shape) == (cfg.num_key_value_heads * hd, cfg.hidden_size)
    assert ("lm_head.weight" in sd) == (not cfg.tie_word_embeddings)

    meta = common_meta(cfg, config_json, seed, input_ids, exp, checks)
    meta["texts"] = texts
    if B > 1:
        meta["padding_side"] = "left"
        meta["pad_token_id"] = pad
        meta["compare_note"] = (
            "logits and hidden_states at pad positions (attention_mask == 0) are whatever transformers' eager "
            "attention produced for fully masked rows; compare only positions with attention_mask == 1. "
            "position_ids hold 1 at pad slots (transformers' generate() puts 0 there; no real token attends "
            "to a pad slot, so real positions' outputs agree: step0_vs_forward_last_maxdiff)."
        )
    if extra_meta:
        meta.update(extra_meta)
    omni.write_meta(out_dir, meta)
    return meta


BATCH_TEXTS = [
    omni.chatml("You are a helpful assistant.", "Tell me a short story about a cat and a dog."),
    omni.chatml("Be brief.", "Hello!"),
]


def fixture_qwen2_basic(out_dir: Path) -> dict:
    """Qwen2, untied, B=1 chat prompt, with the tokenizer files of a complete checkpoint."""
    tok = omni.get_tokenizer()
    ids = omni.special_ids(tok)
    system, prompt = "Be brief.", "Tell me a story."
    text = omni.chatml(system, prompt)
    input_ids, _ = omni.encode_batch_left(tok, [text])
    write_tokenizer_files(out_dir, tok)
    check_tokenizer_files(out_dir, system, prompt, text, input_ids)
    (out_dir / "prompt.json").write_text(
        json.dumps({"system": system, "prompt": prompt, "text": text, "input_ids": input_ids[0].tolist()}, indent=2) + "\n"
    )
    # as the released Qwen2.5 instruct checkpoints' generation_config.json (less the sampling settings)
    gen = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
        "do_sample": False,
    }
    (out_dir / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    cfg = text_config("qwen2", ids, tied=False, rope_theta=10000.0)
    return run_text_fixture(out_dir, cfg=cfg, seed=21001, texts=[text],
                            extra_meta={"prompt": {"system": system, "prompt": prompt, "text": text}})


def fixture_qwen2_tied_leftpad(out_dir: Path) -> dict:
    """Qwen2, tied embeddings, left-padded B=2."""
    ids = omni.special_ids(omni.get_tokenizer())
    cfg = text_config("qwen2", ids, tied=True, rope_theta=10000.0)
    return run_text_fixture(out_dir, cfg=cfg, seed=22009, texts=BATCH_TEXTS)


def fixture_qwen3_basic(out_dir: Path) -> dict:
    """Qwen3, head_dim 16 (hidden/heads = 8), random q_norm/k_norm, untied, B=1."""
    ids = omni.special_ids(omni.get_tokenizer())
    cfg = text_config("qwen3", ids, tied=False, rope_theta=1000000.0, head_dim=16)
    assert cfg.head_dim == 16 != cfg.hidden_size // cfg.num_attention_heads
    text = omni.chatml("Be brief.", "Why did the computer go to the doctor?")
    return run_text_fixture(out_dir, cfg=cfg, seed=23003, texts=[text])


def fixture_qwen3_tied_leftpad(out_dir: Path) -> dict:
    """Qwen3, head_dim 16, tied embeddings, left-padded B=2."""
    ids = omni.special_ids(omni.get_tokenizer())
    cfg = text_config("qwen3", ids, tied=True, rope_theta=1000000.0, head_dim=16)
    texts = [
        omni.chatml("Be brief.", "What is the weather like today?"),
        omni.chatml("You are a helpful assistant.", "Can you help me write a letter to my friend?"),
    ]
    return run_text_fixture(out_dir, cfg=cfg, seed=24027, texts=texts)


FIXTURES = {
    "qwen2_basic": fixture_qwen2_basic,
    "qwen2_tied_leftpad": fixture_qwen2_tied_leftpad,
    "qwen3_basic": fixture_qwen3_basic,
    "qwen3_tied_leftpad": fixture_qwen3_tied_leftpad,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output root (default tests/fixtures/text)")
    ap.add_argument("--only", action="append", choices=sorted(FIXTURES), help="generate only this fixture (repeatable)")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(FIXTURES):
        d = omni.fresh_dir(out_root / name)
        meta = FIXTURES[name](d)
        c = meta["checks"]
        print(f"{name}/  logit_std {c['logit_std']}  step0 {c['step0_vs_forward_last_maxdiff']:.3g}  "
              f"steps {c['steps_vs_full_forward_maxdiff']:.3g}")
        for f in sorted(d.iterdir()):
            sz = f.stat().st_size
            sha = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
            print(f"  {f.name:<28} {sz:>9} B  sha256:{sha}")
        assert (d / "model.safetensors").stat().st_size < MAX_MODEL_BYTES, f"{name}: model.safetensors over 1 MiB"
    return 0


if __name__ == "__main__":
    sys.exit(main())
