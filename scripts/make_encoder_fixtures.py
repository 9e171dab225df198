#!/usr/bin/env python3
"""Tiny random-weight sentence-encoder fixtures for ttrav's Rust encoders.

Two sentence-transformers model directories, each in the exact file layout of the real model it
stands for, with random weights and a tiny vocabulary, plus the outputs sentence-transformers
computes for them:

  tests/fixtures/encoders/bge-tiny/               layout of BAAI/bge-small-en-v1.5
      config.json                 BertModel: hidden 32, 2 layers, 2 heads, intermediate 64,
                                  max_position_embeddings 64, vocab = the WordPiece vocab below
      model.safetensors           f32, names as BertModel.save_pretrained writes them and as
                                  bge-small has them: embeddings.word_embeddings.weight,
                                  embeddings.position_embeddings.weight,
                                  embeddings.token_type_embeddings.weight, embeddings.LayerNorm.*,
                                  encoder.layer.N.attention.self.{query,key,value}.*,
                                  encoder.layer.N.attention.output.{dense,LayerNorm}.*,
                                  encoder.layer.N.intermediate.dense.*,
                                  encoder.layer.N.output.{dense,LayerNorm}.*, pooler.dense.*
                                  (no "bert." prefix)
      tokenizer.json              WordPiece, BertNormalizer (lowercase), BertPreTokenizer,
                                  TemplateProcessing [CLS] $A [SEP]; DELIBERATELY stale
                                  truncation (max_length 8) and Fixed(16) padding, which
                                  sentence-transformers overrides (max_seq_length 32, pad to the
                                  batch's longest): the Rust side must do the same
      vocab.txt, tokenizer_config.json (model_max_length 512, also stale), special_tokens_map.json
      modules.json                Transformer, Pooling (1_Pooling), Normalize (2_Normalize; no
                                  folder, as in the real repositories)
      1_Pooling/config.json       CLS pooling
      sentence_bert_config.json   max_seq_length 32, do_lower_case true
      config_sentence_transformers.json
      expected.json               see below

  tests/fixtures/encoders/qwen3-embedding-tiny/   layout of Qwen/Qwen3-Embedding-0.6B
      config.json                 qwen3 (architectures Qwen3ForCausalLM, as the real one says;
                                  sentence-transformers loads it as Qwen3Model): hidden 32,
                                  2 layers, 4 heads, 2 kv heads, head_dim 16 (so q_proj is 32->64,
                                  like the real 1024->2048), intermediate 64, rope_theta 1e6,
                                  tie_word_embeddings true
      model.safetensors           f32, names as Qwen3Model.save_pretrained writes them and as
                                  Qwen3-Embedding has them: embed_tokens.weight,
                                  layers.N.input_layernorm.weight,
                                  layers.N.self_attn.{q,k,v,o}_proj.weight,
                                  layers.N.self_attn.{q,k}_norm.weight,
                                  layers.N.post_attention_layernorm.weight,
                                  layers.N.mlp.{gate,up,down}_proj.weight, norm.weight
                                  (no "model." prefix, no lm_head)
      tokenizer.json              byte-level BPE as Qwen2/3 (NFC, the Qwen split regex,
                                  ByteLevel), trained here on a small fixed corpus; special
                                  tokens <|endoftext|>, <|im_start|>, <|im_end|> after the
                                  regular vocabulary (as in Qwen: 151643..151645); post-processor
                                  TemplateProcessing "$A <|endoftext|>" as Qwen3-Embedding's
                                  updated tokenizer.json has it (every text ends with
                                  <|endoftext|>); no truncation/padding in tokenizer.json
      vocab.json, merges.txt, tokenizer_config.json (Qwen2Tokenizer, eos <|im_end|>,
                                  pad <|endoftext|>, padding_side left), special_tokens_map.json
      modules.json                Transformer, Pooling, Normalize
      1_Pooling/config.json       last-token pooling (include_prompt true)
      sentence_bert_config.json   max_seq_length 40, do_lower_case false
      config_sentence_transformers.json  prompts {"query": "Instruct: Given a web search query,
                                  retrieve relevant passages that answer the query\\nQuery:",
                                  "document": ""}, default_prompt_name null, similarity cosine
      expected.json               see below

expected.json: the texts, per text the token ids sentence-transformers feeds the model for that
text alone (special tokens included, truncated at max_seq_length), the padded batch it builds for
all texts together (input_ids + attention_mask; right padding for BERT, LEFT padding for Qwen3),
the L2-normalised embeddings of that one batched `model.encode(texts, normalize_embeddings=True)`
call (f32 values written with the shortest decimal that round-trips), the max difference to
encoding each text alone, and the un-pooled last_hidden_state of the first text (for debugging).
The Qwen3 texts are a few plain texts, the same texts with OP-TTRAV's instruction prefix
"Instruct: Retrieve passages with the same semantic meaning as the query\\nQuery: " prepended, and
with the model's own "query" prompt prepended, all in one batch.

Weights: every parameter is drawn from a seeded normal (matrices std 0.2, biases std 0.1, norm
weights 1 + 0.1 N(0,1), norm biases 0.1 N(0,1)), so swapped or missing tensors show in the outputs.

Run (versions in scripts/requirements-encoders.txt; one torch thread, so reruns are byte-identical):

    ~/.venvs/ttrav-ref/bin/python scripts/make_encoder_fixtures.py [--out tests/fixtures/encoders]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

TTRAV_PREFIX = "Instruct: Retrieve passages with the same semantic meaning as the query\nQuery: "
QWEN3_QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


# ---------------------------------------------------------------------------------------------
# helpers


def f32(x) -> float:
    """Shortest decimal that round-trips as f32 (as a Python float for JSON)."""
    return float(str(np.float32(x)))


def write_json(path: Path, obj, indent=2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def compact_json(obj) -> str:
    """Indented JSON whose lists of scalars stay on one line."""

    def enc(o, indent=0):
        pad = " " * indent
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f"{pad} {json.dumps(k, ensure_ascii=False)}: {enc(v, indent + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                return json.dumps(o, ensure_ascii=False, separators=(",", ":"))
            items = [f"{pad} {enc(v, indent + 1)}" for v in o]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)

    return enc(obj) + "\n"


def randomize_(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "norm" in name.lower()
            if is_norm and leaf == "weight":
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif leaf == "bias":
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                v = 0.2 * torch.randn(p.shape, generator=g)
            p.copy_(v.to(p.dtype))


def save_weights(model: torch.nn.Module, out: Path) -> list[str]:
    """save_pretrained into a temp dir, keep only its model.safetensors (names as HF writes them)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tensors = load_file(os.path.join(tmp, "model.safetensors"))
    tensors = {k: v.contiguous() for k, v in sorted(tensors.items())}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)
    return list(tensors)


def st_outputs(model_dir: Path, texts: list[str], batch_texts: list[str] | None = None) -> dict:
    """Run sentence-transformers on `texts` as one batch; collect ids, padded batch, embeddings."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    max_len = model.max_seq_length
    # tokenizer.json as the Rust side reads it: its stale truncation/padding replaced by
    # truncation at max_seq_length and no padding must give exactly sentence-transformers' ids
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    raw.no_padding()
    raw.enable_truncation(max_length=max_len)
    raw_full = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    raw_full.no_padding()
    raw_full.no_truncation()

    per_text = []
    for t in texts:
        feats = model.preprocess([t])
        ids = feats["input_ids"][0].tolist()
        assert all(v == 1 for v in feats["attention_mask"][0].tolist())
        raw_ids = raw.encode(t).ids
        assert raw_ids == ids, f"tokenizer.json and sentence-transformers disagree on {t!r}: {raw_ids} vs {ids}"
        n_full = len(raw_full.encode(t).ids)
        truncated = n_full > len(ids)
        if truncated:
            assert len(ids) == max_len, (len(ids), max_len)
        per_text.append({"text": t, "input_ids": ids, "num_tokens_untruncated": n_full, "truncated": truncated})

    batch = model.preprocess(texts)
    with torch.inference_mode():
        emb = model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
        single = np.stack([model.encode([t], normalize_embeddings=True, convert_to_numpy=True)[0] for t in texts])
        out = model.forward(model.preprocess([texts[0]]))
        hidden = out["token_embeddings"][0].float().numpy()
    assert np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for r, e in zip(per_text, emb):
        r["embedding"] = [f32(v) for v in e.tolist()]
    return {
        "model": model,
        "max_seq_length": max_len,
        "texts": per_text,
        "batch": {
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
        },
        "max_abs_diff_batched_vs_single": float(f"{float(np.abs(emb - single).max()):.3g}"),
        "first_text_last_hidden_state": [[f32(v) for v in row] for row in hidden.tolist()],
        "emb": emb,
    }


def versions() -> dict:
    import safetensors
    import sentence_transformers
    import tokenizers
    import transformers

    return {
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "torch": torch.__version__.split("+")[0],
    }


# ---------------------------------------------------------------------------------------------
# bge-tiny


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_WORDS = (
    "the a an is are was of to and in on at for with as by it that this be not no yes "
    "man woman cat dog food bread fox quick brown lazy over jump eat eating sit mat "
    "answer question because audio video sound music speech bark barking car train "
    "first second line new then tab test time model learn learning reward same meaning "
    "cafe creme brulee naive hello world paris france city capital"
).split()
BERT_SUBWORDS = "##s ##ed ##ing ##er ##ly ##es ##ion ##al ##y ##e".split()


def bert_vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punct = list(".,!?;:'\"()[]{}-_/\\@#$%&*+=<>|~`^")
    cjk = ["東", "京", "日", "本"]
    vocab = list(BERT_SPECIALS) + punct + digits + letters + cjk
    vocab += ["##" + c for c in letters + digits]
    for w in BERT_SUBWORDS + BERT_WORDS:
        if w not in vocab:
            vocab.append(w)
    assert len(vocab) == len(set(vocab))
    return vocab


def make_bge_tiny(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import AddedToken
    from transformers import BertConfig, BertModel

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    vocab = bert_vocab()
    ids = {t: i for i, t in enumerate(vocab)}
    (out / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")

    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BERT_SPECIALS])
    # Stale settings, as real tokenizer.json files carry them (all-MiniLM-L6-v2: 128 / Fixed 128).
    tok.enable_truncation(max_length=8)
    tok.enable_padding(direction="right", pad_id=ids["[PAD]"], pad_type_id=0, pad_token="[PAD]", length=16)
    tok.save(str(out / "tokenizer.json"), pretty=True)

    write_json(
        out / "tokenizer_config.json",
        {
            "clean_up_tokenization_spaces": True,
            "cls_token": "[CLS]",
            "do_basic_tokenize": True,
            "do_lower_case": True,
            "mask_token": "[MASK]",
            "model_max_length": 512,
            "never_split": None,
            "pad_token": "[PAD]",
            "sep_token": "[SEP]",
            "strip_accents": None,
            "tokenize_chinese_chars": True,
            "tokenizer_class": "BertTokenizer",
            "unk_token": "[UNK]",
        },
    )
    write_json(
        out / "special_tokens_map.json",
        {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"},
    )
    config = {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "id2label": {"0": "LABEL_0"},
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "label2id": {"LABEL_0": 0},
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 64,
        "model_type": "bert",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.30.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": len(vocab),
    }
    write_json(out / "config.json", config)
    write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    write_json(out / "sentence_bert_config.json", {"max_seq_length": 32, "do_lower_case": True})
    write_json(
        out / "config_sentence_transformers.json",
        {"__version__": {"sentence_transformers": "2.2.2", "transformers": "4.28.1", "pytorch": "1.13.0+cu117"}},
    )

    torch.manual_seed(0)
    cfg = BertConfig(**{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype", "transformers_version")})
    model = BertModel(cfg, add_pooling_layer=True).eval()
    randomize_(model, seed=1234)
    names = save_weights(model, out)

    texts = [
        "A man is eating food.",
        "The quick brown fox jumps over the lazy dog!",
        "Café crème brûlée, naïve: HELLO World",
        "東京 日本 🍕 xyzzy",
        "",
        "   ",
        "first line\nsecond line\tthen tab",
        # longer than 32 word pieces: truncated at 32 (not at the stale 8 of tokenizer.json)
        " ".join(
            "the model learns the same meaning because the audio and the video are the same".split() * 4
        ),
    ]
    res = st_outputs(out, texts)
    assert res["max_seq_length"] == 32
    assert any(t["truncated"] for t in res["texts"])
    assert max(len(t["input_ids"]) for t in res["texts"]) == 32
    assert len(res["batch"]["input_ids"][0]) == 32  # padded to the batch's longest, not Fixed(16)
    pooling = [m for m in res["model"] if type(m).__name__ == "Pooling"][0]
    assert pooling.pooling_mode == "cls", pooling.pooling_mode

    expected = {
        "model": "bge-tiny (random weights, layout of BAAI/bge-small-en-v1.5)",
        "pooling_mode": "cls",
        "normalize": True,
        "max_seq_length": res["max_seq_length"],
        "padding_side": "right",
        "pad_token_id": ids["[PAD]"],
        "tokenizer_json_truncation": {"max_length": 8, "note": "stale on purpose; must be overridden"},
        "tokenizer_json_padding": {"Fixed": 16, "note": "stale on purpose; pad to the batch's longest instead"},
        "tensor_names": names,
        "note": (
            "texts[i].input_ids: what sentence-transformers feeds the model for that text alone. "
            "batch: all texts in one batch (right padding with [PAD]=0); token_type_ids all 0. "
            "texts[i].embedding: row i of model.encode(texts, normalize_embeddings=True) on that batch."
        ),
        "max_abs_diff_batched_vs_single": res["max_abs_diff_batched_vs_single"],
        "versions": versions(),
        "texts": res["texts"],
        "batch": res["batch"],
        "first_text_last_hidden_state": res["first_text_last_hidden_state"],
    }
    (out / "expected.json").write_text(compact_json(expected), encoding="utf-8")
    print(f"bge-tiny: {out} vocab {len(vocab)}, {len(names)} tensors, batched-vs-single {res['max_abs_diff_batched_vs_single']}")


# ---------------------------------------------------------------------------------------------
# qwen3-embedding-tiny

QWEN_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

QWEN_CORPUS = [
    "A man is eating food. A man eats a meal. The stock market crashed today.",
    "Instruct: Retrieve passages with the same semantic meaning as the query\nQuery: ",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
    "The answer is \\boxed{B} because the audio contains a dog barking in the rain.",
    "Test-time reinforcement learning rewards answers that agree with the consensus of the samples.",
    "the quick brown fox jumps over the lazy dog while the orchestra tunes its instruments",
    "In 2024, 3.14159 x 2 = 6.28318; numbers, punctuation (brackets) and \"quotes\".",
]


def make_qwen3_tiny(out: Path) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import Qwen3Config, Qwen3Model

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(QWEN_CORPUS * 3, trainer=trainer)
    n_regular = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    vocab = tok.get_vocab(with_added_tokens=True)
    eot = vocab["<|endoftext|>"]
    assert eot == n_regular, (eot, n_regular)
    tok.post_processor = processors.TemplateProcessing(
        single="$A:0 <|endoftext|>:0",
        pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eot)],
    )
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(out / "tokenizer.json"), pretty=True)
    # Match the real Qwen tokenizer.json where the Python setters do not: BPE prefix/suffix "" (not
    # null) and a ByteLevel decoder without prefix space. Neither changes encoding (checked below
    # against sentence-transformers, whose Qwen2Tokenizer builds the BPE with these values).
    tj = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    tj["model"]["continuing_subword_prefix"] = ""
    tj["model"]["end_of_word_suffix"] = ""
    tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=2), encoding="utf-8")

    # vocab.json / merges.txt, as the real repository also ships them
    regular = tj["model"]["vocab"]
    write_json(out / "vocab.json", regular, indent=None)
    merges = tj["model"]["merges"]
    merge_lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merge_lines), encoding="utf-8")

    added_decoder = {
        str(vocab[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in QWEN_SPECIALS
    }
    write_json(
        out / "tokenizer_config.json",
        {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": added_decoder,
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": 131072,
            "pad_token": "<|endoftext|>",
            "padding_side": "left",
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        },
    )
    write_json(out / "special_tokens_map.json", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})

    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "max_window_layers": 2,
        "model_type": "qwen3",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.51.3",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": len(vocab),
    }
    write_json(out / "config.json", config)
    write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": True,
            "include_prompt": True,
        },
    )
    write_json(out / "sentence_bert_config.json", {"max_seq_length": 40, "do_lower_case": False})
    write_json(
        out / "config_sentence_transformers.json",
        {
            "prompts": {"query": QWEN3_QUERY_PROMPT, "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )

    torch.manual_seed(0)
    cfg = Qwen3Config(
        **{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype", "transformers_version")}
    )
    model = Qwen3Model(cfg).eval()
    randomize_(model, seed=4321)
    names = save_weights(model, out)
    assert not any(n.startswith("model.") for n in names)

    base = [
        "A man is eating food.",
        "A man eats a meal.",
        "The stock market crashed.",
        "",
        "東京 🍕 déjà vu",
        # longer than 40 tokens even without a prefix: truncated, still ending in <|endoftext|>
        "Test-time reinforcement learning rewards answers that agree with the consensus of the samples, "
        "and the quick brown fox jumps over the lazy dog while the orchestra tunes its instruments.",
    ]
    groups = {"plain": "", "ttrav_prefix": TTRAV_PREFIX, "query_prompt": QWEN3_QUERY_PROMPT}
    texts, labels = [], []
    for g, p in groups.items():
        for i, t in enumerate(base):
            texts.append(p + t)
            labels.append({"group": g, "base_index": i})
    res = st_outputs(out, texts)
    st_model = res["model"]
    assert res["max_seq_length"] == 40
    for r in res["texts"]:
        assert r["input_ids"][-1] == eot, "every text must end in <|endoftext|>"
    assert any(r["truncated"] for r in res["texts"])
    # left padding in the batch
    am = res["batch"]["attention_mask"]
    assert any(row[0] == 0 for row in am) and all(row[-1] == 1 for row in am), "expected left padding"
    pooling = [m for m in st_model if type(m).__name__ == "Pooling"][0]
    assert pooling.pooling_mode == "lasttoken", pooling.pooling_mode
    assert st_model.prompts.get("query") == QWEN3_QUERY_PROMPT, st_model.prompts

    # sentence-transformers' own prompt handling gives the same as prepending the string
    with torch.inference_mode():
        via_prompt = st_model.encode(base, prompt=TTRAV_PREFIX, normalize_embeddings=True, convert_to_numpy=True)
        via_name = st_model.encode(base, prompt_name="query", normalize_embeddings=True, convert_to_numpy=True)
    emb = res["emb"]
    n = len(base)
    d_prompt = float(np.abs(via_prompt - emb[n : 2 * n]).max())
    d_name = float(np.abs(via_name - emb[2 * n : 3 * n]).max())
    assert d_prompt < 1e-5 and d_name < 1e-5, (d_prompt, d_name)

    for r, lab in zip(res["texts"], labels):
        r.update(lab)
        # keep key order readable: group, base_index first
        for k in ("text", "input_ids", "num_tokens_untruncated", "truncated", "embedding"):
            r[k] = r.pop(k)

    expected = {
        "model": "qwen3-embedding-tiny (random weights, layout of Qwen/Qwen3-Embedding-0.6B)",
        "pooling_mode": "lasttoken",
        "normalize": True,
        "max_seq_length": res["max_seq_length"],
        "padding_side": "left",
        "pad_token_id": eot,
        "eos_appended_token_id": eot,
        "special_token_ids": {t: vocab[t] for t in QWEN_SPECIALS},
        "ttrav_prefix": TTRAV_PREFIX,
        "query_prompt": QWEN3_QUERY_PROMPT,
        "groups": {g: p for g, p in groups.items()},
        "tensor_names": names,
        "note": (
            "texts[i].text already includes its group's prefix (plain: none; ttrav_prefix: OP-TTRAV's "
            "instruction; query_prompt: the model's own 'query' prompt, which has no trailing space). "
            "texts[i].input_ids: what sentence-transformers feeds the model for that text alone (ends with "
            "<|endoftext|> from the tokenizer.json post-processor; truncation keeps it). batch: all texts in "
            "one batch, LEFT padded with <|endoftext|> (attention_mask 0 there). embedding: row i of "
            "model.encode(texts, normalize_embeddings=True) on that batch (last-token pooling, L2 norm). "
            "position ids in that batch run 0..L-1 over the padded row (transformers does not shift them for "
            "left padding); RoPE is shift-invariant, so a text alone gives the same embedding up to float error "
            "(max_abs_diff_batched_vs_single). encode(prompt=...) and encode(prompt_name='query') were checked "
            "to equal plain string concatenation."
        ),
        "max_abs_diff_batched_vs_single": res["max_abs_diff_batched_vs_single"],
        "max_abs_diff_prompt_kwarg_vs_concatenation": float(f"{max(d_prompt, d_name):.3g}"),
        "versions": versions(),
        "texts": res["texts"],
        "batch": res["batch"],
        "first_text_last_hidden_state": res["first_text_last_hidden_state"],
    }
    (out / "expected.json").write_text(compact_json(expected), encoding="utf-8")
    print(
        f"qwen3-embedding-tiny: {out} vocab {len(vocab)} (<|endoftext|>={eot}), {len(names)} tensors, "
        f"batched-vs-single {res['max_abs_diff_batched_vs_single']}, prompt-vs-concat {max(d_prompt, d_name):.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "encoders")
    ap.add_argument("--only", choices=["bge-tiny", "qwen3-embedding-tiny"], action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = args.only or ["bge-tiny", "qwen3-embedding-tiny"]
    if "bge-tiny" in only:
        make_bge_tiny(args.out / "bge-tiny")
    if "qwen3-embedding-tiny" in only:
        make_qwen3_tiny(args.out / "qwen3-embedding-tiny")


if __name__ == "__main__":
    main()
