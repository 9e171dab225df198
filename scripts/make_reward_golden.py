#!/usr/bin/env python3
"""Golden data for ttrav's label-free reward modes, computed by the reference.

The reference is OP-TTRAV (github.com/mvideet/OP-TTRAV). This script does not
contain its code: it imports the reference's own modules from a checkout whose
path is given with --optrav, calls its reward functions on hand-made cases and
writes what they return to tests/fixtures/rewards/reward_golden.json.

No model is needed. The reference's sentence encoder
(verl/utils/reward_score/ttrl_open_ended/embedding.py, function `encode`) is
replaced by a stub that looks each text up in the case's table of explicit
vectors (float32, L2-normalised, dimension 8) and records which texts were
asked for, so derived texts (" " for empty answers, boxed-stripped answers)
show up in `texts_encoded`.

Only the reference's package __init__ files are skipped (they pull in ray,
vllm, ...): the packages are registered as bare namespace modules pointing at
the checkout's folders, and `verl.protocol.DataProto` is a small stand-in used
only by the judge pipeline case.

Usage:
  python scripts/make_reward_golden.py --optrav /path/to/OP-TTRAV \
      [--commit <sha>] [--out tests/fixtures/rewards/reward_golden.json]

Requirements: scripts/requirements-rewards.txt (numpy, scikit-learn, torch,
sacrebleu, rouge-score). Re-running gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import types
import warnings

import numpy as np

DIM = 8
SEED = 20240601

# --------------------------------------------------------------------------
# Loading the reference
# --------------------------------------------------------------------------

REF_FILES = [
    "verl/verl/trainer/ppo/ttrl_utils.py",
    "verl/verl/trainer/ppo/ttrl_open_ended_vote.py",
    "verl/verl/trainer/ppo/ttrl_judge_vote.py",
    "verl/verl/trainer/ppo/ttrl_evolrl_cluster_vote.py",
    "verl/verl/trainer/ppo/ttrl_aux_metrics.py",
    "verl/verl/utils/reward_score/ttrl_video_qa/__init__.py",
    "verl/verl/utils/reward_score/ttrl_open_ended/__init__.py",
    "verl/verl/utils/reward_score/ttrl_open_ended/embedding.py",
    "verl/verl/utils/reward_score/ttrl_judge/__init__.py",
]


class _StubDataProto:
    """Stand-in for verl.protocol.DataProto (only from_dict is used by the judge vote)."""

    def __init__(self, tensors, non_tensors, meta_info):
        self.tensors = tensors
        self.non_tensors = non_tensors
        self.meta_info = meta_info

    @classmethod
    def from_dict(cls, tensors=None, non_tensors=None, meta_info=None):
        return cls(tensors or {}, non_tensors or {}, meta_info or {})


def load_reference(optrav: str):
    root = os.path.join(optrav, "verl", "verl")
    if not os.path.isfile(os.path.join(root, "trainer", "ppo", "ttrl_utils.py")):
        sys.exit(f"--optrav {optrav!r} does not look like an OP-TTRAV checkout")
    # Clear every TTRL_* knob so the reference's module-level defaults apply.
    for k in list(os.environ):
        if k.startswith("TTRL_") or k in ("BGE_MODEL_PATH", "MPNET_EMBED_PATH", "QWEN3_EMBED_PATH"):
            del os.environ[k]
    for name, sub in [
        ("verl", ""),
        ("verl.utils", "utils"),
        ("verl.utils.reward_score", "utils/reward_score"),
        ("verl.trainer", "trainer"),
        ("verl.trainer.ppo", "trainer/ppo"),
    ]:
        m = types.ModuleType(name)
        m.__path__ = [os.path.join(root, sub)]
        sys.modules[name] = m
    proto = types.ModuleType("verl.protocol")
    proto.DataProto = _StubDataProto
    sys.modules["verl.protocol"] = proto

    mods = types.SimpleNamespace()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        os.environ["TTRL_TASK_TYPE"] = "video_qa"
        mods.tu = importlib.import_module("verl.trainer.ppo.ttrl_utils")
        # A second copy of ttrl_utils imported as TTRL_TASK_TYPE=open_ended_video,
        # so that its metrics use the open-ended grade().
        os.environ["TTRL_TASK_TYPE"] = "open_ended_video"
        spec = importlib.util.spec_from_file_location(
            "verl.trainer.ppo._ttrl_utils_open_ended", os.path.join(root, "trainer", "ppo", "ttrl_utils.py"))
        mods.tu_oe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods.tu_oe)
        del os.environ["TTRL_TASK_TYPE"]
        mods.vqa = importlib.import_module("verl.utils.reward_score.ttrl_video_qa")
        mods.emb = importlib.import_module("verl.utils.reward_score.ttrl_open_ended.embedding")
        mods.oe = importlib.import_module("verl.utils.reward_score.ttrl_open_ended")
        mods.jrf = importlib.import_module("verl.utils.reward_score.ttrl_judge")
        mods.oev = importlib.import_module("verl.trainer.ppo.ttrl_open_ended_vote")
        mods.jv = importlib.import_module("verl.trainer.ppo.ttrl_judge_vote")
        mods.cv = importlib.import_module("verl.trainer.ppo.ttrl_evolrl_cluster_vote")
        mods.aux = importlib.import_module("verl.trainer.ppo.ttrl_aux_metrics")
    # Debug prints carry the medoid index, K and the modal cluster id.
    mods.oev._DEBUG = True
    mods.cv._DEBUG = True
    return mods


# --------------------------------------------------------------------------
# Fake encoder
# --------------------------------------------------------------------------


class FakeEncoder:
    def __init__(self):
        self.table: dict[str, np.ndarray] = {}
        self.requested: list[str] = []

    def reset(self, table):
        self.table = {t: np.asarray(v, dtype=np.float32) for t, v in table.items()}
        self.requested = []

    def encode(self, texts, batch_size=64):
        texts = list(texts)
        self.requested.extend(texts)
        missing = [t for t in texts if t not in self.table]
        if missing:
            raise KeyError(f"fake encoder has no vector for {missing!r}")
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


FAKE = FakeEncoder()
RS = np.random.RandomState(SEED)


def unit(weights, noise=0.0):
    """float32 unit vector: sum of weight*axis plus N(0, noise) noise, normalised in float64."""
    v = np.zeros(DIM)
    for axis, w in weights:
        v[axis] += w
    if noise:
        v = v + RS.normal(0.0, noise, DIM)
    v = v / np.linalg.norm(v)
    return v.astype(np.float32)


def f32list(v):
    return [float(x) for x in np.asarray(v, dtype=np.float32)]


def emb_table_json(table):
    return [{"text": t, "vector": f32list(v)} for t, v in table.items()]


def setup_case(mods, table):
    mods.emb.clear_cache()
    FAKE.reset(table)
    mods.emb.encode = FAKE.encode


def floats(xs):
    return [float(x) for x in xs]


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and obj != obj:
        return "NaN"
    return obj


def quiet(fn, *a, **kw):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fn(*a, **kw)
    return res, err.getvalue() + out.getvalue()


# --------------------------------------------------------------------------
# Majority vote (math / video_qa): multiple choice
# --------------------------------------------------------------------------


def vote_cases(mods):
    specs = [
        ("clear_majority", ["Reasoning... so \\boxed{B}", "\\boxed{B}", "answer \\boxed{A}",
                            "\\boxed{B} final", "no box, B", "\\boxed{C}"], None),
        ("tie_first_seen_wins", ["\\boxed{C}", "\\boxed{A}", "\\boxed{A}", "\\boxed{C}", "garbage"], None),
        ("all_unparseable_random_label", ["B", "The answer is (C)", "", "\\boxed{ A }"], None),
        ("group_of_1", ["\\boxed{d}"], None),
        ("group_of_2_tie", ["\\boxed{A}", "\\boxed{B}"], None),
        ("lowercase_boxed", ["\\boxed{b}", "\\boxed{B}", "\\boxed{a}"], None),
        ("malformed_boxes", ["\\boxed{ A }", "\\boxed{AB}", "\\boxed{E}", "\\boxed{A}", "\\boxed {A}",
                             "\\boxed{A} then \\boxed{B}", "\\boxed{B} then \\boxed{A}", "\\fbox{A}",
                             "\\boxed{{A}}", "  \\boxed{c}  "], None),
        ("with_gold_label_wrong", ["\\boxed{A}", "\\boxed{A}", "\\boxed{A}", "\\boxed{B}", "no answer"], "B"),
        ("with_gold_label_right_lowercase_gold", ["\\boxed{C}", "\\boxed{c}", "\\boxed{D}", "\\boxed{C}"], " c "),
    ]
    cases = []
    for name, outs, gold in specs:
        random.seed(SEED)
        np.random.seed(SEED)
        extracted = [mods.vqa.extract_answer(o) for o in outs]
        (label, ratio, stats), _ = quiet(mods.tu._majority_vote, outs)
        rewards = [float(mods.vqa.reward_func("golden", o, label)["score"]) for o in outs]
        case = {
            "name": name,
            "mode": "video_qa",
            "question": "Which option is correct?\nA. one\nB. two\nC. three\nD. four",
            "candidates": outs,
            "extracted": extracted,
            "label": label,
            "label_is_random": all(e is None for e in extracted),
            "random_reward_indices": [i for i, e in enumerate(extracted) if e is None],
            "rng": f"random.seed({SEED}) and np.random.seed({SEED}) before the vote; the label draw (if any) "
                   "comes first, then one draw per unparseable rollout in order",
            "majority_ratio": float(ratio),
            "vote_stats": jsonable(stats),
            "rewards": rewards,
        }
        # ttrav's deterministic rule: unparseable answers get 0; no label when nothing parses.
        if case["label_is_random"]:
            case["ttrav_label"] = None
            case["ttrav_rewards"] = [0.0] * len(outs)
        else:
            case["ttrav_label"] = label
            case["ttrav_rewards"] = [1.0 if e is not None and e == label else 0.0 for e in extracted]
        if gold is not None:
            gold_rewards = [float(mods.vqa.reward_func("golden", o, gold)["score"]) for o in outs]
            metrics, _ = quiet(mods.tu._prompt_compute_ttrl_metrics, rewards, gold_rewards, label, gold)
            case["gold"] = gold
            case["gold_rewards"] = gold_rewards
            case["metrics"] = jsonable(metrics)
            ttrav_gold = [1.0 if e is not None and e == gold.strip().upper() else 0.0 for e in extracted]
            tm, _ = quiet(mods.tu._prompt_compute_ttrl_metrics, case["ttrav_rewards"], ttrav_gold,
                          case["ttrav_label"] or "", gold)
            case["ttrav_gold_rewards"] = ttrav_gold
            case["ttrav_metrics"] = jsonable(tm)
        cases.append(case)
    return cases


# --------------------------------------------------------------------------
# Embedding medoid (open_ended_video)
# --------------------------------------------------------------------------

_MEDOID_RE = re.compile(r"medoid_idx=(\d+)")


def centroid_variant(mods, outs, table):
    """ttrav-defined centroid anchor (the reference has none)."""
    cleaned = [(o or "").strip() for o in outs]
    valid = [c for c in cleaned if c]
    if not valid:
        return {"anchor": None, "rewards": [0.0] * len(outs)}
    E = np.stack([table[c] for c in valid]).astype(np.float64)
    mean = E.mean(axis=0)
    anchor = mean / np.linalg.norm(mean)
    rewards = []
    for o in outs:
        t = mods.oe.extract_answer(o)
        if not t:
            rewards.append(0.0)
            continue
        e = np.asarray(table[t], dtype=np.float64)
        rewards.append(float(min(1.0, max(0.0, float(e @ anchor) / float(np.linalg.norm(e))))))
    return {"anchor": [float(x) for x in anchor], "rewards": rewards}


def medoid_scores(outs, table):
    """The medoid score of each answer, recomputed from the case's vectors (not by the reference):
    f32: as the reference's arithmetic goes (float32 E E^T, row sum minus the diagonal, / (n-1));
    f64: the exact mean of the off-diagonal cosines. Empty answers: -1."""
    cleaned = [(o or "").strip() for o in outs]
    n = len(outs)
    if not any(cleaned):
        return None
    E = np.stack([table[c if c else " "] for c in cleaned]).astype(np.float32)
    S = E @ E.T
    f32 = S.sum(axis=1) - np.diag(S)
    E64 = E.astype(np.float64)
    E64 = E64 / np.linalg.norm(E64, axis=1, keepdims=True)
    S64 = E64 @ E64.T
    f64 = S64.sum(axis=1) - np.diag(S64)
    if n > 1:
        f32 = f32 / (n - 1)
        f64 = f64 / (n - 1)
    f32 = [float(x) for x in f32]
    f64 = [float(x) for x in f64]
    for i, c in enumerate(cleaned):
        if not c:
            f32[i] = -1.0
            f64[i] = -1.0
    top = sorted(f64, reverse=True)
    near_tie = len(top) > 1 and top[0] - top[1] < 1e-6
    return {"f32": f32, "f64": f64, "near_tie": bool(near_tie)}


def medoid_case(mods, name, outs, table, gold=None, knobs=None, note=None):
    knobs = knobs or {}
    setup_case(mods, table)
    saved = mods.oe._MIN_LEN_TOKENS
    if "TTRL_OE_MIN_LEN_TOKENS" in knobs:
        mods.oe._MIN_LEN_TOKENS = int(knobs["TTRL_OE_MIN_LEN_TOKENS"])
    try:
        (medoid, medoid_mean_sim, stats), log = quiet(mods.oev._semantic_majority_vote, outs)
        m = _MEDOID_RE.search(log)
        medoid_idx = int(m.group(1)) if m else None
        vote_texts = list(FAKE.requested)
        FAKE.requested = []
        rewards_oe = [float(quiet(mods.oe.reward_func, "golden", o, medoid)[0]["score"]) for o in outs]
        oe_texts = list(FAKE.requested)
        FAKE.requested = []
        rewards_judge_path = [float(quiet(mods.jrf.reward_func, "golden", o, medoid)[0]["score"]) for o in outs]
        judge_texts = list(FAKE.requested)
        FAKE.requested = []
    finally:
        mods.oe._MIN_LEN_TOKENS = saved
    case = {
        "name": name,
        "mode": "open_ended_video",
        "knobs": knobs,
        "question": "What happens in the video?",
        "candidates": outs,
        "embeddings": emb_table_json(table),
        "medoid_index": medoid_idx,
        "medoid_text": medoid,
        "medoid_mean_sim": float(medoid_mean_sim),
        "vote_stats": jsonable(stats),
        "majority_ratio": float(medoid_mean_sim),
        "rewards": rewards_oe,
        "rewards_judge_reward_path": rewards_judge_path,
        "texts_encoded": {"vote": vote_texts, "reward_open_ended_path": oe_texts,
                          "reward_judge_path": judge_texts},
        "ttrav_centroid": centroid_variant(mods, outs, table),
        "medoid_scores_recomputed": medoid_scores(outs, table),
    }
    if note:
        case["note"] = note
    if gold is not None:
        FAKE.requested = []
        gold_rewards = [float(quiet(mods.oe.reward_func, "golden", o, gold)[0]["score"]) for o in outs]
        metrics, _ = quiet(mods.tu_oe._prompt_compute_ttrl_metrics, rewards_oe, gold_rewards, medoid, gold)
        case["gold"] = gold
        case["gold_rewards"] = gold_rewards
        case["metrics"] = jsonable(metrics)
        case["texts_encoded"]["gold"] = list(FAKE.requested)
        FAKE.requested = []
    return case


def medoid_cases(mods):
    cases = []
    # 1. normal group: 4 answers near axis 0, 2 near axis 1
    outs = ["A man is cooking pasta.", "Someone cooks pasta in a kitchen.", "A person is making noodles.",
            "A man cooks spaghetti.", "A dog runs in a park.", "A dog is running outside."]
    table = {outs[0]: unit([(0, 1.0)], 0.08), outs[1]: unit([(0, 1.0)], 0.08),
             outs[2]: unit([(0, 1.0), (2, 0.3)], 0.08), outs[3]: unit([(0, 1.0)], 0.08),
             outs[4]: unit([(1, 1.0)], 0.08), outs[5]: unit([(1, 1.0), (0, 0.2)], 0.08)}
    cases.append(medoid_case(mods, "normal", outs, table))

    # 2. empty answers: embedded as " ", score -1, still counted in the others' means
    outs = ["The car is red.", "", "A red car.", "   \n", "The vehicle is red.", "It is blue."]
    table = {outs[0]: unit([(0, 1.0)], 0.08), outs[2]: unit([(0, 1.0)], 0.08),
             outs[4]: unit([(0, 1.0), (3, 0.2)], 0.08), outs[5]: unit([(1, 1.0)], 0.08),
             " ": unit([(1, 1.0), (4, 0.5)], 0.05)}
    cases.append(medoid_case(mods, "with_empty_answers", outs, table))

    # 3. all identical
    t = "They are playing chess."
    outs = [t, t, t, t]
    table = {t: unit([(2, 1.0)], 0.1)}
    cases.append(medoid_case(mods, "all_identical", outs, table))

    # 4. group of 1
    outs = ["Only one answer here."]
    table = {outs[0]: unit([(3, 1.0)], 0.1)}
    cases.append(medoid_case(mods, "group_of_1", outs, table))

    # 5. group of 2 (symmetric means: first wins)
    outs = ["A cat sleeps.", "A kitten naps."]
    table = {outs[0]: unit([(0, 1.0)], 0.1), outs[1]: unit([(0, 1.0), (1, 0.3)], 0.1)}
    cases.append(medoid_case(
        mods, "group_of_2", outs, table,
        note="n=2 is always a tie in exact arithmetic (S is symmetric); the reference's argmax is decided by "
             "float32 rounding of (S_ii + S_ij) - S_ii, see medoid_scores_recomputed"))
    outs = ["Axis zero.", "Axis one."]
    table = {outs[0]: unit([(0, 1.0)]), outs[1]: unit([(1, 1.0)])}
    cases.append(medoid_case(mods, "group_of_2_exact_tie", outs, table,
                             note="orthogonal, exactly representable vectors: the scores are equal, argmax "
                                  "keeps the first"))

    # 6. boxed answers: the vote embeds the stripped full text, the reward the box-lifted text
    outs = ["The man is \\boxed{running}.", "He is running.", "The man runs \\boxed{fast}",
            "\\boxed{a} and \\boxed{b}", "Jogging man.", "  A woman swims.  "]
    table = {"The man is \\boxed{running}.": unit([(0, 1.0)], 0.06),
             "The man is running.": unit([(0, 1.0), (5, 0.1)], 0.06),
             "He is running.": unit([(0, 1.0)], 0.06),
             "The man runs \\boxed{fast}": unit([(0, 1.0), (2, 0.2)], 0.06),
             "The man runs fast": unit([(0, 1.0), (2, 0.25)], 0.06),
             "\\boxed{a} and \\boxed{b}": unit([(0, 0.6), (3, 0.8)], 0.06),
             "a and \\boxed{b}": unit([(0, 0.7), (3, 0.7)], 0.06),
             "a and b": unit([(0, 0.9), (3, 0.4)], 0.06),
             "Jogging man.": unit([(0, 1.0), (6, 0.3)], 0.06),
             "A woman swims.": unit([(1, 1.0)], 0.06)}
    cases.append(medoid_case(
        mods, "boxed_answers", outs, table,
        note="rewards (ttrl_open_ended.reward_func, Omni scripts) lift boxes twice (compute_score and grade "
             "each call extract_answer); rewards_judge_reward_path (ttrl_judge.reward_func, used by the "
             "text-only medoid scripts) lifts once"))

    # 7. medoid itself boxed: the reference text is box-lifted too
    outs = ["It is \\boxed{raining}.", "It is raining.", "Rain is falling.", "Sunny day."]
    table = {outs[0]: unit([(4, 1.0)], 0.05), "It is raining.": unit([(4, 1.0), (0, 0.1)], 0.05),
             outs[2]: unit([(4, 1.0), (1, 0.3)], 0.05), outs[3]: unit([(5, 1.0)], 0.05)}
    # make the boxed answer the medoid: put it in the middle of the others
    table[outs[0]] = unit([(4, 1.0), (0, 0.05), (1, 0.15)], 0.0)
    cases.append(medoid_case(mods, "medoid_is_boxed", outs, table))

    # 8. all empty
    outs = ["", "  ", "\n"]
    cases.append(medoid_case(mods, "all_empty", outs, {" ": unit([(0, 1.0)])}))

    # 9. length penalty knob (off by default)
    outs = ["Yes.", "Yes it is.", "Yes, the man is clearly holding a red umbrella.", "No."]
    table = {outs[0]: unit([(0, 1.0)], 0.05), outs[1]: unit([(0, 1.0)], 0.05),
             outs[2]: unit([(0, 1.0), (1, 0.4)], 0.05), outs[3]: unit([(1, 1.0)], 0.05)}
    cases.append(medoid_case(mods, "length_penalty_min4", outs, table, knobs={"TTRL_OE_MIN_LEN_TOKENS": 4},
                             note="TTRL_OE_MIN_LEN_TOKENS=4, TTRL_OE_MIN_LEN_PENALTY=0.7 (default); counted in "
                                  "whitespace words of the extracted answer; applies only on the "
                                  "ttrl_open_ended.reward_func path"))

    # 10. with gold (label_accuracy = cosine grade of medoid vs gold; reward_accuracy with 1e-4 tolerance)
    outs = ["A girl plays the violin.", "A child plays violin.", "A girl plays guitar.", "A girl plays the violin."]
    gold = "A young girl is playing a violin."
    table = {outs[0]: unit([(0, 1.0)], 0.05), outs[1]: unit([(0, 1.0), (2, 0.2)], 0.05),
             outs[2]: unit([(0, 0.6), (1, 0.8)], 0.05), gold: unit([(0, 1.0), (3, 0.3)], 0.05)}
    cases.append(medoid_case(mods, "with_gold", outs, table, gold=gold))
    return cases


# --------------------------------------------------------------------------
# Cluster vote (simple_cluster + variants) and evolrl_cluster
# --------------------------------------------------------------------------

_CLUSTER_RE = re.compile(r"K=(\d+) modal=(\d+)")


def silhouettes(E):
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    m = E.shape[0]
    out = {}
    if m <= 2:
        return out
    for k in range(2, min(4, m - 1) + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(E)
        if len(set(labels.tolist())) < 2:
            out[str(k)] = None
            continue
        out[str(k)] = float(silhouette_score(E, labels, metric="cosine"))
    return out


def set_env(knobs):
    for k in ("TTRL_CLUSTER_KDE", "TTRL_CLUSTER_CONTINUOUS", "TTRL_NOVELTY_BETA", "TTRL_CLUSTER_KDE_TAU"):
        os.environ.pop(k, None)
    for k, v in knobs.items():
        os.environ[k] = str(v)


def cluster_case(mods, name, outs, table, variant, knobs=None, history=None, evolrl=False, note=None):
    knobs = dict(knobs or {})
    setup_case(mods, table)
    set_env(knobs)
    buf = mods.cv._NOVELTY_BUFFER
    buf.clear()
    for v in history or []:
        buf.append(np.asarray(v, dtype=np.float32))
    fn = mods.cv._evolrl_cluster_vote if evolrl else mods.cv._simple_cluster_vote
    try:
        (anchor, score_map, stats, per_rollout), log = quiet(fn, outs)
    finally:
        set_env({})
    texts = list(FAKE.requested)
    cleaned = [(o or "").strip() for o in outs]
    valid_idx = [i for i, c in enumerate(cleaned) if c]
    case = {
        "name": name,
        "mode": "evolrl_cluster" if evolrl else "simple_cluster",
        "variant": variant,
        "knobs": knobs,
        "question": "Describe the sound.",
        "candidates": outs,
        "embeddings": emb_table_json(table),
        "valid_indices": valid_idx,
        "texts_encoded": texts,
    }
    if valid_idx:
        E = np.stack([FAKE.table[cleaned[i]] for i in valid_idx]).astype(np.float32)
        (labels, _cent, K), _ = quiet(mods.cv._kmeans_auto_k, E)
        m = _CLUSTER_RE.search(log)
        case["n_clusters"] = int(K)
        case["labels"] = [int(x) for x in labels]
        case["modal_cluster"] = int(m.group(2)) if m else None
        case["silhouette_by_k"] = silhouettes(E)
        local = [cleaned[i] for i in valid_idx].index(anchor)
        case["anchor_index"] = valid_idx[local]
    else:
        case["n_clusters"] = 0
        case["labels"] = []
        case["modal_cluster"] = None
        case["silhouette_by_k"] = {}
        case["anchor_index"] = None
    case["anchor_text"] = anchor
    case["rewards"] = floats(per_rollout)
    case["score_map"] = jsonable(score_map)
    gt_json = json.dumps(score_map, ensure_ascii=False)
    case["trainer_rewards"] = [float(quiet(mods.jrf.reward_func, "golden", o, gt_json)[0]["score"]) for o in outs]
    case["vote_stats"] = jsonable(stats)
    case["majority_ratio"] = float(stats["modal_cluster_size_frac"])
    if not evolrl:
        case["novelty_history_in"] = [f32list(v) for v in history or []]
        case["novelty_buffer_len_after"] = len(buf)
        case["novelty_buffer_appended"] = f32list(buf[-1]) if len(buf) > len(history or []) else None
    if note:
        case["note"] = note
    buf.clear()
    return case


_CLUSTER_INPUTS = None


def cluster_inputs():
    """Named groups of candidates with their vectors (built once, reused by every variant)."""
    global _CLUSTER_INPUTS
    if _CLUSTER_INPUTS is None:
        _CLUSTER_INPUTS = _build_cluster_inputs()
    return _CLUSTER_INPUTS


def _build_cluster_inputs():
    g = {}
    outs = [f"Birds chirping {i}" for i in range(5)] + [f"Car engine noise {i}" for i in range(3)]
    outs = [outs[0], outs[5], outs[1], outs[2], outs[6], outs[3], outs[7], outs[4]]
    table = {}
    for o in outs:
        table[o] = unit([(0, 1.0)], 0.07) if o.startswith("Birds") else unit([(1, 1.0)], 0.07)
    g["two_clusters"] = (outs, table)

    outs = ([f"Piano melody {i}" for i in range(4)] + [f"Dog barking {i}" for i in range(3)]
            + [f"Rain on roof {i}" for i in range(2)])
    order = [0, 4, 7, 1, 5, 2, 8, 6, 3]
    outs = [outs[i] for i in order]
    table = {}
    for o in outs:
        axis = 2 if o.startswith("Piano") else 3 if o.startswith("Dog") else 4
        table[o] = unit([(axis, 1.0)], 0.06)
    g["three_clusters"] = (outs, table)

    outs = ["", "Thunder rumbling", "   ", "Wind howling"]
    g["m2_distinct"] = (outs, {"Thunder rumbling": unit([(0, 1.0)]), "Wind howling": unit([(1, 1.0)])})

    outs = ["", "Only one real answer", " \n "]
    g["m1"] = (outs, {"Only one real answer": unit([(5, 1.0)], 0.1)})

    outs = ["Same text", "Same text", "", ""]
    g["m2_identical"] = (outs, {"Same text": unit([(2, 1.0)], 0.1)})

    # 2:2 tie between a loose cluster (first) and a tight cluster (second)
    outs = ["Loose a", "Loose b", "Tight a", "Tight b"]
    g["tie_2_2"] = (outs, {"Loose a": unit([(0, 1.0), (6, 0.25)]), "Loose b": unit([(0, 1.0), (7, 0.25)]),
                           "Tight a": unit([(1, 1.0), (6, 0.05)]), "Tight b": unit([(1, 1.0), (7, 0.05)])})

    t = "Identical answer"
    g["all_identical"] = ([t] * 5, {t: unit([(3, 1.0)], 0.1)})

    outs = ["Guitar strum 0", "", "Guitar strum 1", "Siren wail 0", "   ", "Guitar strum 2", "Siren wail 1"]
    table = {}
    for o in outs:
        if o.startswith("Guitar"):
            table[o] = unit([(5, 1.0)], 0.07)
        elif o.startswith("Siren"):
            table[o] = unit([(6, 1.0)], 0.07)
    g["with_empties"] = (outs, table)

    g["all_empty"] = (["", "  "], {})
    return g


def cluster_cases(mods):
    g = cluster_inputs()
    history = [unit([(0, 1.0), (7, 0.2)]), unit([(5, 1.0)]), unit([(6, 1.0), (2, 0.3)])]
    cases = []
    variants = [("simple", {}), ("continuous", {"TTRL_CLUSTER_CONTINUOUS": "1"}),
                ("kde", {"TTRL_CLUSTER_KDE": "1"})]
    for gname in ["two_clusters", "three_clusters", "m2_distinct", "m1", "m2_identical", "tie_2_2",
                  "all_identical", "with_empties", "all_empty"]:
        outs, table = g[gname]
        for vname, knobs in variants:
            note = None
            if gname == "m2_identical":
                note = ("m=2 identical answers are two singleton clusters; the per-rollout rewards differ but the "
                        "trainer looks rewards up by text in the score map, where the later one overwrites the "
                        "earlier")
            cases.append(cluster_case(mods, f"{gname}/{vname}", outs, table, vname, knobs, note=note))
    for gname in ["two_clusters", "with_empties"]:
        outs, table = g[gname]
        for vname, knobs in variants:
            k = dict(knobs)
            k["TTRL_NOVELTY_BETA"] = "0.3"
            cases.append(cluster_case(mods, f"{gname}/{vname}+novelty0.3", outs, table, vname + "+novelty", k,
                                      history=history))
    # KDE with a different bandwidth, and KDE+continuous both set (KDE wins)
    outs, table = g["three_clusters"]
    cases.append(cluster_case(mods, "three_clusters/kde_tau0.5", outs, table, "kde",
                              {"TTRL_CLUSTER_KDE": "1", "TTRL_CLUSTER_KDE_TAU": "0.5"}))
    outs, table = g["two_clusters"]
    cases.append(cluster_case(mods, "two_clusters/kde_and_continuous", outs, table, "kde",
                              {"TTRL_CLUSTER_KDE": "1", "TTRL_CLUSTER_CONTINUOUS": "1"},
                              note="both set: KDE is checked first"))
    # novelty with beta 0.3 but an empty buffer (no bonus)
    cases.append(cluster_case(mods, "two_clusters/simple+novelty0.3_empty_history", outs, table,
                              "simple+novelty", {"TTRL_NOVELTY_BETA": "0.3"}, history=[]))
    return cases


def evolrl_cases(mods):
    g = cluster_inputs()
    cases = []
    for gname in ["two_clusters", "three_clusters", "with_empties", "m1", "m2_distinct", "m2_identical",
                  "tie_2_2", "all_identical", "all_empty"]:
        outs, table = g[gname]
        cases.append(cluster_case(mods, f"{gname}/evolrl", outs, table, "evolrl", evolrl=True))
    return cases


# --------------------------------------------------------------------------
# Judge (judge_open_ended)
# --------------------------------------------------------------------------


class _Item:
    def __init__(self, batch=None, non_tensor_batch=None):
        self.batch = batch or {}
        self.non_tensor_batch = non_tensor_batch if non_tensor_batch is not None else {}


class _Batch:
    def __init__(self, items):
        self.items = items
        self.non_tensor_batch = {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class _FakeTokenizer:
    """One token per string; decode maps ids back to the strings."""

    eos_token_id = 0
    pad_token_id = 0

    def __init__(self):
        self.padding_side = "right"
        self.id2text = {0: ""}
        self.text2id = {"": 0}
        self.calls = []

    def tok(self, text):
        if text not in self.text2id:
            i = len(self.id2text)
            self.id2text[i] = text
            self.text2id[text] = i
        return self.text2id[text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.id2text[int(i)] for i in ids.tolist())

    def __call__(self, texts, return_tensors=None, padding=None, truncation=None, max_length=None):
        import torch
        self.calls.append({"n": len(texts), "padding_side": self.padding_side, "truncation": truncation,
                           "max_length": max_length})
        ids = torch.tensor([[self.tok(t)] for t in texts], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class _FakeJudgeWG:
    def __init__(self, tok, replies_by_candidate):
        self.tok = tok
        self.replies = replies_by_candidate
        self.meta = None
        self.prompts = []

    def generate_sequences(self, dp):
        import torch
        self.meta = dict(dp.meta_info)
        items = []
        for k, row in enumerate(dp.tensors["input_ids"]):
            prompt = self.tok.id2text[int(row[-1])]
            self.prompts.append(prompt)
            reply = self.replies[k]
            items.append(_Item(batch={"prompts": torch.tensor([int(row[-1])]),
                                      "responses": torch.tensor([self.tok.tok(reply)]),
                                      "attention_mask": torch.tensor([1, 1])}))
        return _Batch(items)


def judge_section(mods):
    jv = mods.jv
    long_q = ("Q" * 3995) + "éèêë" + ("X" * 10)
    long_r = "r" * 4001
    long_c = "c" * 3999 + "🙂" + "tail"
    prompt_specs = [
        ("normal", "What is the man doing?", "He is cooking pasta.", "The man cooks pasta."),
        ("long_fields_truncated_to_4000_chars", long_q, long_r, long_c),
        ("empty_reference_and_candidate", "Q?", "", ""),
        ("none_fields", None, None, None),
        ("whitespace_candidate_kept", "Q?", "ref", "   "),
        ("braces_in_fields", "What is {x}?", "{reference}", "{candidate} \\boxed{A}"),
    ]
    prompt_cases = []
    for name, q, r, c in prompt_specs:
        p = jv._build_judge_prompts([q], [r], [c])[0]
        prompt_cases.append({"name": name, "question": q, "reference": r, "candidate": c, "prompt": p,
                             "prompt_chars": len(p)})

    replies = ["7", "Score: 7", "10/10", "11", "no number", " 3 out of 10", "-2", "100", "", "7.5", "0",
               "x7", "_7", "007", "5 or 6", " 9\n", "Score:8/10", "١", "\uff11\uff10", "10", "99", "a1 2"]
    parse_cases = []
    for r in replies:
        s, ok = jv._parse_judge_score(r)
        parse_cases.append({"reply": r, "score": float(s), "parsed": bool(ok)})

    # Full pipeline: apply_ttrl_judge_gt with a stand-in tokenizer, batch and worker group.
    import torch
    outs = ["The chef is slicing onions.", "A cook cuts onions.", "", "  A cook cuts onions.  ",
            "A cook cuts onions.", "The weather is sunny."]
    table = {"The chef is slicing onions.": unit([(0, 1.0)], 0.05),
             "A cook cuts onions.": unit([(0, 1.0), (1, 0.2)], 0.05),
             "The weather is sunny.": unit([(2, 1.0)], 0.05),
             " ": unit([(3, 1.0)], 0.05)}
    judge_replies = ["9", "8", "0", "Score: 6", "no idea", " 11"]
    gold = "A chef slices onions."
    setup_case(mods, table)
    tok = _FakeTokenizer()
    gen_items = []
    for o in outs:
        gen_items.append(_Item(batch={"prompts": torch.zeros(2, dtype=torch.long),
                                      "responses": torch.tensor([tok.tok(o)]),
                                      "attention_mask": torch.tensor([1, 1, 1])}))
    question = "What is the cook doing?"
    batch = _Batch([_Item(non_tensor_batch={"question": question, "reward_model": {"ground_truth": gold}})])
    wg = _FakeJudgeWG(tok, judge_replies)
    _, _log = quiet(jv.apply_ttrl_judge_gt, batch, _Batch(gen_items), len(outs), tok, wg)
    rm = batch[0].non_tensor_batch["reward_model"]
    gt_json = rm["ground_truth"]
    trainer_rewards = [float(quiet(mods.jrf.reward_func, "golden", o, gt_json)[0]["score"]) for o in outs]
    parsed = [jv._parse_judge_score(r) for r in judge_replies]
    pipeline = {
        "name": "judge_pipeline",
        "question": question,
        "gold": gold,
        "candidates": outs,
        "embeddings": emb_table_json(table),
        "medoid_text": rm["majority_gt"],
        "judge_prompts": wg.prompts,
        "judge_generation_meta": jsonable({k: v for k, v in wg.meta.items()}),
        "judge_tokenizer_calls": tok.calls,
        "judge_replies": judge_replies,
        "judge_scores": [float(s) for s, _ in parsed],
        "judge_parsed": [bool(ok) for _, ok in parsed],
        "score_map_json": gt_json,
        "trainer_rewards": trainer_rewards,
        "majority_ratio": float(batch.non_tensor_batch["majority_ratio_list"][0]),
        "vote_stats": jsonable(batch.non_tensor_batch["vote_stats_list"][0]),
        "note": "score map is keyed by stripped candidate text; duplicates after strip: the later rollout's "
                "score overwrites the earlier; the reward lookup tries the exact text, then the stripped "
                "text, then any key whose strip() matches, else 0.0. vote_stats carries the aux_* metrics "
                "against the gold (TTRL_AUX_DETERMINISTIC=1 default).",
    }
    return {"template_fields": ["question", "reference", "candidate"], "max_chars": 4000,
            "neutral_fallback": float(jv._JUDGE_NEUTRAL_FALLBACK),
            "max_new_tokens": int(jv._JUDGE_MAX_NEW_TOKENS), "max_prompt_len": int(jv._JUDGE_MAX_PROMPT_LEN),
            "prompt_cases": prompt_cases, "parse_cases": parse_cases, "pipeline_cases": [pipeline]}


def simple_cluster_pipeline(mods):
    """apply_ttrl_simple_cluster_gt end to end: two prompts in one batch share the novelty buffer."""
    import torch
    g = cluster_inputs()
    outs1, t1 = g["two_clusters"]
    outs2, t2 = g["with_empties"]
    table = dict(t1)
    table.update(t2)
    setup_case(mods, table)
    mods.cv._NOVELTY_BUFFER.clear()
    set_env({"TTRL_NOVELTY_BETA": "0.3"})
    tok = _FakeTokenizer()
    n = 8
    outs2 = outs2 + ["Siren wail 0"]  # pad the second group to 8
    gen_items = []
    for o in outs1 + outs2:
        gen_items.append(_Item(batch={"prompts": torch.zeros(2, dtype=torch.long),
                                      "responses": torch.tensor([tok.tok(o)]),
                                      "attention_mask": torch.tensor([1, 1, 1])}))
    golds = ["Birds chirping 0", "A guitar is strummed."]
    batch = _Batch([_Item(non_tensor_batch={"question": "Q1?", "reward_model": {"ground_truth": golds[0]}}),
                    _Item(non_tensor_batch={"question": "Q2?", "reward_model": {"ground_truth": golds[1]}})])
    try:
        _, _log = quiet(mods.cv.apply_ttrl_simple_cluster_gt, batch, _Batch(gen_items), n, tok)
    finally:
        set_env({})
    prompts = []
    for i, outs in enumerate([outs1, outs2]):
        rm = batch[i].non_tensor_batch["reward_model"]
        prompts.append({
            "candidates": outs,
            "gold": golds[i],
            "anchor_text": rm["majority_gt"],
            "score_map_json": rm["ground_truth"],
            "trainer_rewards": [float(quiet(mods.jrf.reward_func, "golden", o, rm["ground_truth"])[0]["score"])
                                for o in outs],
            "majority_ratio": float(batch.non_tensor_batch["majority_ratio_list"][i]),
            "vote_stats": jsonable(batch.non_tensor_batch["vote_stats_list"][i]),
        })
    buf_len = len(mods.cv._NOVELTY_BUFFER)
    mods.cv._NOVELTY_BUFFER.clear()
    return {"name": "simple_cluster_pipeline_two_prompts_novelty0.3", "knobs": {"TTRL_NOVELTY_BETA": "0.3"},
            "embeddings": emb_table_json(table), "n": n, "prompts": prompts,
            "novelty_buffer_len_after": buf_len,
            "note": "buffer empty at start: prompt 0 gets no bonus; prompt 1 is scored against prompt 0's anchor "
                    "(the buffer is appended per prompt, inside the batch)"}


# --------------------------------------------------------------------------
# K-means / silhouette, straight from scikit-learn
# --------------------------------------------------------------------------


def kmeans_cases():
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score, silhouette_samples
    sets = []
    pts = [unit([(0, 1.0)], 0.08) for _ in range(4)] + [unit([(1, 1.0)], 0.08) for _ in range(2)]
    sets.append(("two_clusters_4_2", pts))
    pts = ([unit([(2, 1.0)], 0.08) for _ in range(3)] + [unit([(3, 1.0)], 0.08) for _ in range(3)]
           + [unit([(4, 1.0)], 0.08) for _ in range(3)])
    sets.append(("three_clusters_3_3_3", pts))
    pts = [unit([(a, 1.0)], 0.05) for a in (0, 1, 2, 3) for _ in range(3)]
    sets.append(("four_clusters_3x4", pts))
    pts = [unit([(0, 1.0)], 0.06) for _ in range(5)] + [unit([(1, 1.0)], 0.06)]
    sets.append(("five_and_a_singleton", pts))
    pts = [unit([(0, 1.0), (1, 0.2 * i)], 0.0) for i in range(6)]
    sets.append(("arc_no_clear_clusters", pts))
    out = []
    for name, pts in sets:
        E = np.stack(pts).astype(np.float32)
        m = E.shape[0]
        per_k = []
        best_k, best = 1, -2.0
        for k in range(2, min(4, m - 1) + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                km = KMeans(n_clusters=k, n_init=4, random_state=0)
                labels = km.fit_predict(E)
            distinct = len(set(labels.tolist()))
            entry = {"k": k, "labels": [int(x) for x in labels], "distinct_labels": distinct,
                     "inertia": float(km.inertia_), "centers": [f32list(c) for c in km.cluster_centers_]}
            if distinct >= 2:
                s32 = float(silhouette_score(E, labels, metric="cosine"))
                s64 = float(silhouette_score(E.astype(np.float64), labels, metric="cosine"))
                entry["silhouette"] = s32
                entry["silhouette_f64"] = s64
                entry["silhouette_samples_f64"] = floats(silhouette_samples(E.astype(np.float64), labels,
                                                                            metric="cosine"))
                if s32 > best:
                    best_k, best = k, s32
            else:
                entry["silhouette"] = None
            per_k.append(entry)
        chosen = next((e for e in per_k if e["k"] == best_k), None)
        out.append({"name": name, "points": [f32list(p) for p in E], "dtype": "float32",
                    "call": "KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(E); "
                            "silhouette_score(E, labels, metric='cosine')",
                    "per_k": per_k, "chosen_k": best_k, "chosen_silhouette": best if best_k > 1 else None,
                    "chosen_labels": chosen["labels"] if chosen else [0] * m})
    return out


# --------------------------------------------------------------------------


def file_digests(optrav):
    d = {}
    for f in REF_FILES:
        with open(os.path.join(optrav, f), "rb") as fh:
            d[f] = hashlib.sha256(fh.read()).hexdigest()
    return d


def git_commit(optrav):
    try:
        return subprocess.run(["git", "-C", optrav, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optrav", required=True, help="path of an OP-TTRAV checkout (repository root)")
    ap.add_argument("--commit", default=None, help="commit id of that checkout (default: git rev-parse HEAD)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                  "fixtures", "rewards", "reward_golden.json"))
    args = ap.parse_args()

    mods = load_reference(args.optrav)
    import sklearn
    import torch

    doc = {
        "generator": "scripts/make_reward_golden.py",
        "reference": {"repo": "mvideet/OP-TTRAV", "commit": args.commit or git_commit(args.optrav) or "unknown",
                      "file_sha256": file_digests(args.optrav)},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "torch": torch.__version__.split("+")[0]},
        "conventions": {
            "embedding_dim": DIM,
            "embeddings": "float32 values, L2-normalised in float64 before the cast; the fake encoder returns "
                          "exactly these float32 vectors for the listed texts",
            "texts_encoded": "texts the reference asked the encoder for, in order (cache misses only; the cache "
                             "is cleared before each case)",
            "labels": "K-means cluster ids as scikit-learn numbered them; compare partitions up to renaming",
            "ttrav_*": "values defined by ttrav, not produced by the reference",
            "env_defaults": "TTRL_CLUSTER_K_MIN=2, TTRL_CLUSTER_K_MAX=4, TTRL_CLUSTER_SEED=0, "
                            "TTRL_CLUSTER_KDE_TAU=0.2, TTRL_NOVELTY_BUFFER_SIZE=100, TTRL_OE_MIN_LEN_TOKENS=0, "
                            "TTRL_OE_MIN_LEN_PENALTY=0.7, TTRL_JUDGE_NEUTRAL_FALLBACK=0.5",
        },
        "vote_cases": vote_cases(mods),
        "medoid_cases": medoid_cases(mods),
        "cluster_cases": cluster_cases(mods),
        "evolrl_cases": evolrl_cases(mods),
        "judge": judge_section(mods),
        "pipeline_cases": [simple_cluster_pipeline(mods)],
        "kmeans_cases": kmeans_cases(),
    }
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    text = json.dumps(jsonable(doc), indent=1, ensure_ascii=False) + "\n"
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {out} ({len(text.encode('utf-8'))} bytes)")


if __name__ == "__main__":
    main()
