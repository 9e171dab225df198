#!/usr/bin/env python3
"""Golden embeddings of two REAL sentence-transformers encoders, for ttrav's Rust encoders.

Models (real weights, put into the Hugging Face hub cache by scripts/fetch-test-encoders.sh):

    minilm  sentence-transformers/all-MiniLM-L6-v2   (BERT, mean pooling, max_seq_length 256)
    mpnet   sentence-transformers/all-mpnet-base-v2  (MPNet, mean pooling, max_seq_length 384)

Environment (once; versions in scripts/requirements-encoders.txt):

    python3 -m venv ~/.venvs/ttrav-ref
    ~/.venvs/ttrav-ref/bin/pip install -r scripts/requirements-encoders.txt
    scripts/fetch-test-encoders.sh

Run (from anywhere; HF_HUB_OFFLINE is forced to 1, so only the cache is read):

    ~/.venvs/ttrav-ref/bin/python scripts/make_encoder_golden.py [--out tests/fixtures/encoders] [--only minilm]

Writes <out>/<name>.golden.json with:

    model_id, revision (snapshot folder name), pooling_mode, normalize (Normalize module present),
    max_seq_length (sentence-transformers' value from sentence_bert_config.json),
    embedding_dim, tokenizer_json_truncation / tokenizer_json_padding (the raw settings in the
    model's tokenizer.json, which sentence-transformers overrides: it truncates at max_seq_length and
    pads to the longest text of a batch), tokenizer_json_normalizer, tokenizer_json_post_processor_type,
    special_tokens, sentences: [{text, input_ids, tokens, num_tokens_untruncated, truncated,
    embedding}], cosine (a few named pairs), max_abs_diff_batched_vs_single, versions.

input_ids are exactly what sentence-transformers feeds the model for that text alone (its
`model.preprocess([text])`, formerly `model.tokenize`: special tokens included, truncated to
max_seq_length, no padding; token_type_ids are all 0 and attention_mask all 1). `embedding` is
`model.encode(all_sentences, normalize_embeddings=True)` (one padded batch, CPU, f32), rounded to 7
significant digits. One torch thread, so a rerun writes byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

MODELS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
}

# Long enough for both models (> 384 word pieces), so both truncate it.
LONG_TEXT = (
    "Test-time reinforcement learning lets a model improve on unlabeled questions by rewarding answers "
    "that agree with the consensus of its own samples. For open-ended answers the consensus is found with "
    "sentence embeddings: every sampled answer is encoded, the cosine similarities between all pairs are "
    "computed, and the answer closest to all others (the medoid) becomes the pseudo-label. "
    + " ".join(
        f"Paragraph {i}: the quick brown fox number {i} jumps over {i + 1} lazy dogs while the orchestra "
        "tunes its instruments, the audience whispers about the weather, and a distant train announces "
        "its arrival with a long, melancholic whistle that echoes across the valley."
        for i in range(1, 15)
    )
)

SENTENCES = [
    # short ones
    "A man is eating food.",
    "The cat sits on the mat.",
    "HELLO World",
    # paraphrase pair
    "The quick brown fox jumps over the lazy dog.",
    "A fast brown fox leaps over a lazy dog.",
    # unrelated pair
    "How do I bake sourdough bread at home?",
    "The central bank raised interest rates by half a percentage point.",
    # answer-like text as ttrav embeds it
    "The answer is \\boxed{B} because the audio contains a dog barking.",
    "In 2024, 3.14159 x 2 = 6.28318 (approximately).",
    # truncated at max_seq_length
    LONG_TEXT,
    # non-ASCII
    "Café crème brûlée à la française, naïve façade, Straße, Ångström.",
    "東京は日本の首都です。",
    "القطط تحب النوم في الشمس.",
    "Привет, как дела?",
    # degenerate inputs
    "",
    "   ",
    # emoji
    "I love pizza 🍕🔥😀!",
    # control whitespace
    "First line.\nSecond line after a newline.\tThen a tab.",
]

COSINE_PAIRS = {
    "paraphrase": (3, 4),
    "unrelated": (5, 6),
    "empty_vs_whitespace": (14, 15),
}


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def find_snapshot(model_id: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    p = try_to_load_from_cache(model_id, "modules.json")
    if not isinstance(p, str):
        sys.exit(
            f"{model_id} is not in the Hugging Face cache; run scripts/fetch-test-encoders.sh first "
            "(with the same HF_HOME / HF_HUB_CACHE)"
        )
    return Path(p).parent


def module_summary(model):
    from sentence_transformers.base.modules import Normalize

    pooling = None
    normalize = False
    for m in model:
        name = type(m).__name__
        if name == "Pooling":
            pooling = m
        if isinstance(m, Normalize):
            normalize = True
    return pooling, normalize


def golden(name: str, model_id: str, out_dir: Path) -> Path:
    from sentence_transformers import SentenceTransformer

    snap = find_snapshot(model_id)
    model = SentenceTransformer(model_id, device="cpu")
    model.eval()
    pooling, normalize = module_summary(model)
    if not normalize:
        sys.exit(f"{model_id}: loaded without its Normalize module (cache layout problem?)")

    tok_json = json.loads((snap / "tokenizer.json").read_text(encoding="utf-8"))
    normalizer = tok_json.get("normalizer") or {}
    hf_tok = model.tokenizer
    max_len = model.max_seq_length
    # tokenizer.json as a Rust implementation reads it, with its stale truncation/padding replaced
    # by truncation at max_seq_length and no padding, must give sentence-transformers' ids
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(snap / "tokenizer.json"))
    raw.no_padding()
    raw.enable_truncation(max_length=max_len)

    records = []
    for text in SENTENCES:
        feats = model.preprocess([text])
        ids = feats["input_ids"][0].tolist()
        if "attention_mask" in feats:
            assert all(v == 1 for v in feats["attention_mask"][0].tolist())
        if "token_type_ids" in feats:
            assert all(v == 0 for v in feats["token_type_ids"][0].tolist())
        assert raw.encode(text).ids == ids, f"{model_id}: tokenizer.json disagrees on {text!r}"
        full = hf_tok(text, add_special_tokens=True, truncation=False)["input_ids"]
        assert len(ids) <= max_len
        records.append(
            {
                "text": text,
                "input_ids": ids,
                "tokens": hf_tok.convert_ids_to_tokens(ids),
                "num_tokens_untruncated": len(full),
                "truncated": len(full) > len(ids),
            }
        )
    assert any(r["truncated"] for r in records), "the long text must be truncated"
    long_rec = next(r for r in records if r["truncated"])
    assert len(long_rec["input_ids"]) == max_len, (len(long_rec["input_ids"]), max_len)

    with torch.inference_mode():
        emb = model.encode(
            SENTENCES,
            batch_size=len(SENTENCES),
            normalize_embeddings=True,
            convert_to_numpy=True,
        ).astype(np.float32)
        single = np.stack(
            [model.encode([t], normalize_embeddings=True, convert_to_numpy=True)[0] for t in SENTENCES]
        ).astype(np.float32)
    norms = np.linalg.norm(emb, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5), norms
    diff = float(np.abs(emb - single).max())

    for r, e in zip(records, emb):
        r["embedding"] = [sig7(v) for v in e.tolist()]

    cos = {}
    for label, (i, j) in COSINE_PAIRS.items():
        cos[label] = {"a": i, "b": j, "cosine": sig7(float(np.dot(emb[i], emb[j])))}

    import sentence_transformers
    import tokenizers
    import transformers

    doc = {
        "model_id": model_id,
        "revision": snap.name,
        "architecture": type(model[0].auto_model).__name__,
        "pooling_mode": pooling.pooling_mode if pooling is not None else None,
        "normalize": normalize,
        "max_seq_length": max_len,
        "embedding_dim": int(emb.shape[1]),
        "tokenizer_json_truncation": tok_json.get("truncation"),
        "tokenizer_json_padding": tok_json.get("padding"),
        "tokenizer_json_normalizer": normalizer,
        "tokenizer_json_post_processor_type": (tok_json.get("post_processor") or {}).get("type"),
        "special_tokens": {
            "cls": [hf_tok.cls_token, hf_tok.cls_token_id],
            "sep": [hf_tok.sep_token, hf_tok.sep_token_id],
            "pad": [hf_tok.pad_token, hf_tok.pad_token_id],
            "unk": [hf_tok.unk_token, hf_tok.unk_token_id],
        },
        "note": (
            "input_ids: sentence-transformers' model.preprocess([text]) for each text alone (special tokens "
            "included, truncated to max_seq_length, no padding). embedding: model.encode(sentences, "
            "normalize_embeddings=True) as one padded batch on CPU in f32, rounded to 7 significant digits. "
            "tokenizer_json_truncation/padding are what the model's tokenizer.json carries; "
            "sentence-transformers ignores them (truncates at max_seq_length, pads to the batch's longest). "
            "Checked: tokenizer.json with truncation set to max_seq_length (LongestFirst) and no padding "
            "gives exactly these input_ids."
        ),
        "max_abs_diff_batched_vs_single": float(f"{diff:.3g}"),
        "cosine": cos,
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__.split("+")[0],
        },
        "sentences": records,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.golden.json"
    # each embedding / id list on one line (smaller, still diffable)
    path.write_text(_compact_lists(doc), encoding="utf-8")
    size = path.stat().st_size
    print(
        f"{name}: {path} ({size / 1e6:.2f} MB), pooling={doc['pooling_mode']}, max_seq_length={max_len}, "
        f"cosines={ {k: v['cosine'] for k, v in cos.items()} }, batched-vs-single max diff {diff:.2e}"
    )
    return path


def _compact_lists(doc) -> str:
    """JSON with 1-space indentation, but lists of scalars written on one line."""

    def enc(o, indent=0):
        pad = " " * indent
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [
                f'{pad} {json.dumps(k, ensure_ascii=False)}: {enc(v, indent + 1)}' for k, v in o.items()
            ]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                return json.dumps(o, ensure_ascii=False, separators=(",", ":"))
            items = [f"{pad} {enc(v, indent + 1)}" for v in o]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)

    return enc(doc) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "encoders")
    ap.add_argument("--only", choices=sorted(MODELS), action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in args.only or list(MODELS):
        golden(name, MODELS[name], args.out)


if __name__ == "__main__":
    main()
