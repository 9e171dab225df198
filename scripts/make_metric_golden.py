#!/usr/bin/env python3
"""Golden data for ttrav's auxiliary (monitoring-only) text metrics.

The reference OP-TTRAV computes, per rollout against the gold answer
(verl/verl/trainer/ppo/ttrl_aux_metrics.py, compute_deterministic_metrics):
  - sentence BLEU: sacrebleu.metrics.BLEU(effective_order=True)
                   .sentence_score(response, [gold]).score / 100
  - ROUGE-L F1:    rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
                   .score(gold, response)["rougeL"].fmeasure
  - exact match / contains match on a normalised text (strip, lower, runs of
    whitespace -> one space), and the response length in whitespace tokens.

This script imports that module from the checkout given with --optrav (it does
not contain the reference's code) and also records the libraries' internals
(13a tokens, n-gram counts, brevity penalty, ROUGE tokens, LCS length, Porter
stems) so that a Rust reimplementation can be checked step by step.

Usage:
  python scripts/make_metric_golden.py --optrav /path/to/OP-TTRAV \
      [--out tests/fixtures/rewards/metric_golden.json]

Requirements: scripts/requirements-rewards.txt. Re-running gives a
byte-identical file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys

PAIRS = [
    # (name, hypothesis/response, reference/gold)
    ("identical", "The cat sat on the mat.", "The cat sat on the mat."),
    ("empty_hypothesis", "", "The cat sat on the mat."),
    ("empty_reference", "The cat sat on the mat.", ""),
    ("both_empty", "", ""),
    ("whitespace_only_hypothesis", "   \n\t ", "The cat sat on the mat."),
    ("no_overlap", "Dogs bark loudly.", "The cat sat on the mat."),
    ("partial_overlap", "The cat is on the mat.", "The cat sat on the mat."),
    ("punctuation", "Hello, world!", "Hello world"),
    ("apostrophes", "It's a dog's life.", "It is a dog's life."),
    ("contraction", "don't stop", "do not stop"),
    ("case_difference", "THE CAT SAT ON THE MAT", "the cat sat on the mat"),
    ("numbers_money", "He paid $3.50 for 2 apples.", "He paid 3.50 dollars for two apples."),
    ("numbers_thousands", "The population is 1,234,567.", "Population: 1,234,567 people."),
    ("number_then_period", "It costs 5.", "It costs 5"),
    ("decimals", "3.14159", "3.14"),
    ("number_only", "42", "42"),
    ("digit_dash", "pages 10-20", "pages 10 to 20"),
    ("hyphenated_words", "state-of-the-art model", "state of the art model"),
    ("long_sentence", "The quick brown fox jumps over the lazy dog near the river bank today.",
     "A quick brown fox jumps over the lazy dog near the bank of the river."),
    ("long_one_word_changed",
     "In the video a young woman in a red coat walks her small white dog along a busy city street at night.",
     "In the video a young woman in a blue coat walks her small white dog along a busy city street at night."),
    ("hypothesis_longer", "The cat sat on the mat and then slept for a long time.", "The cat sat on the mat."),
    ("single_word_same", "yes", "yes"),
    ("single_word_different", "yes", "no"),
    ("single_word_vs_sentence", "cat", "The cat sat on the mat."),
    ("two_tokens", "the cat", "the cat sat"),
    ("three_tokens_effective_order", "cat sat mat", "the cat sat on the mat"),
    ("accents_vs_plain", "Café crème brûlée", "cafe creme brulee"),
    ("accents_identical", "Le café est très bon.", "Le café est très bon."),
    ("german", "Straße über alles", "strasse uber alles"),
    ("turkish_dotted_i", "İstanbul is big", "istanbul is big"),
    ("cjk", "猫坐在垫子上", "猫坐在垫子上"),
    ("emoji", "great job 👍", "great job"),
    ("stemming_run", "The runner was running", "The runners ran and runs"),
    ("stemming_study", "studies studying studied", "study studies"),
    ("stemming_generous", "They generously donated connections", "a generous donation connected them"),
    ("repeated_words", "the the the the", "the cat"),
    ("repeated_words_2", "cat cat cat dog", "cat dog cat"),
    ("whitespace_and_newlines", "  The cat\n sat  on\tthe mat.  ", "The cat sat on the mat."),
    ("html_entities", "A &amp; B &lt; C", "A & B < C"),
    ("ellipsis", "Wait... what?", "Wait what"),
    ("quotes", "He said \"hello\" twice", "He said hello twice"),
    ("contains_match", "I think the answer is a red car, definitely.", "a red car"),
    ("exact_match_after_normalisation", "  A Red   Car ", "a red car"),
    ("contains_fails_on_punctuation", "The answer is: red-car", "red car"),
    ("boxed_answer", "The answer is \\boxed{B}.", "B"),
]

TOKENIZER_CASES = [
    "Hello, world!", "It's 3.50 dollars, isn't it?", "a.b.c", "1,000.5", "x-y 3-4 -5", "e.g. U.S.A.",
    "(parenthesis) [brackets] {braces}", "tabs\tand\nnewlines", "A &amp; B &lt; C &gt; D &quot;E&quot;",
    "end-\nof-line hyphen", "<skipped> token", "price: $5/kg @ 10%", "C++ and C#", "emoji 👍 ok",
    "café, naïve.", "trailing dot.", "...", "3.", ".5", "5,", "a,b", "~tilde~ `tick` ^caret^ |pipe|",
]

STEM_WORDS = [
    "running", "runs", "ran", "runner", "runners", "studies", "studying", "studied", "cats", "caresses",
    "ponies", "ties", "caress", "feed", "agreed", "plastered", "bled", "motoring", "sing", "conflated",
    "troubled", "sized", "hopping", "tanned", "falling", "hissing", "fizzed", "failing", "filing", "happy",
    "sky", "skies", "dying", "lying", "tying", "news", "innings", "outings", "proceed", "exceed", "succeed",
    "generalization", "relational", "conditional", "rational", "digitizer", "operator", "feudalism",
    "decisiveness", "hopefulness", "callousness", "triplicate", "formative", "formalize", "electrical",
    "hopeful", "goodness", "revival", "allowance", "inference", "airliner", "gyroscopic", "adjustable",
    "defensible", "irritant", "replacement", "adjustment", "dependent", "adoption", "communism", "activate",
    "homologous", "effective", "bowdlerize", "probate", "rate", "cease", "controlling", "roll", "generously",
    "generous", "donated", "donation", "abilities", "agreement", "university", "universal", "organization",
    "dies", "flies", "dried", "cry", "crying", "meeting", "meetings", "better", "quickly", "connection",
    "connected", "connecting", "was", "has", "this", "the", "is", "it", "oed", "yes", "dog", "dogs",
]


def load_aux(optrav):
    path = os.path.join(optrav, "verl", "verl", "trainer", "ppo", "ttrl_aux_metrics.py")
    if not os.path.isfile(path):
        sys.exit(f"--optrav {optrav!r}: {path} not found")
    spec = importlib.util.spec_from_file_location("optrav_ttrl_aux_metrics", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optrav", required=True, help="path of an OP-TTRAV checkout (repository root)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                  "fixtures", "rewards", "metric_golden.json"))
    args = ap.parse_args()

    import hashlib
    from importlib.metadata import version

    import sacrebleu
    from sacrebleu.metrics import BLEU
    from rouge_score import rouge_scorer, tokenize as rouge_tokenize
    from nltk.stem import porter

    aux, aux_path = load_aux(args.optrav)
    with open(aux_path, "rb") as fh:
        aux_sha = hashlib.sha256(fh.read()).hexdigest()

    bleu = BLEU(effective_order=True)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    stemmer = porter.PorterStemmer()

    cases = []
    for name, hyp, ref in PAIRS:
        ref_metrics = aux.compute_deterministic_metrics(hyp, ref)
        try:
            b = bleu.sentence_score(hyp, [ref])
            bleu_detail = {"score_0_100": b.score, "counts": list(b.counts), "totals": list(b.totals),
                           "precisions": list(b.precisions), "bp": b.bp, "sys_len": b.sys_len,
                           "ref_len": b.ref_len, "raised": None}
        except Exception as e:  # the reference maps any exception to 0.0
            bleu_detail = {"raised": f"{type(e).__name__}: {e}"}
        r = scorer.score(ref, hyp)["rougeL"]
        ref_toks = scorer._tokenizer.tokenize(ref)
        hyp_toks = scorer._tokenizer.tokenize(hyp)
        cases.append({
            "name": name,
            "hypothesis": hyp,
            "reference": ref,
            "reference_metrics": ref_metrics,
            "normalised_hypothesis": aux._normalize(hyp),
            "normalised_reference": aux._normalize(ref),
            "bleu": bleu_detail,
            "tokens_13a": {"hypothesis": bleu.tokenizer(hyp.rstrip()).split(),
                           "reference": bleu.tokenizer(ref.rstrip()).split()},
            "rouge_l": {"precision": r.precision, "recall": r.recall, "fmeasure": r.fmeasure,
                        "lcs": rouge_scorer._lcs_table(ref_toks, hyp_toks)[-1][-1] if ref_toks and hyp_toks else 0,
                        "tokens_hypothesis": hyp_toks, "tokens_reference": ref_toks},
        })

    tok_cases = [{"input": s, "tokens_13a": bleu.tokenizer(s.rstrip()).split()} for s in TOKENIZER_CASES]
    stem_cases = [{"word": w, "porter_nltk_extensions": stemmer.stem(w),
                   "rouge_tokens": rouge_tokenize.tokenize(w, stemmer)} for w in STEM_WORDS]

    doc = {
        "generator": "scripts/make_metric_golden.py",
        "reference": {"repo": "mvideet/OP-TTRAV", "file": "verl/verl/trainer/ppo/ttrl_aux_metrics.py",
                      "file_sha256": aux_sha},
        "versions": {"python": platform.python_version(), "sacrebleu": sacrebleu.__version__,
                     "rouge-score": version("rouge-score"), "nltk": version("nltk")},
        "calls": {
            "bleu_sentence": "sacrebleu.metrics.BLEU(effective_order=True).sentence_score(hypothesis, "
                             "[reference]).score / 100  (any exception -> 0.0)",
            "bleu_signature": bleu.get_signature().format(),
            "rouge_l_f": "rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True).score(reference, "
                         "hypothesis)['rougeL'].fmeasure  (any exception -> 0.0)",
            "normalise": "re.sub(r'\\s+', ' ', text.strip().lower())",
            "exact_match": "1.0 if norm(hyp) == norm(ref) and norm(ref) != '' else 0.0",
            "contains_em": "1.0 if norm(ref) != '' and norm(ref) in norm(hyp) else 0.0",
            "resp_len_tokens": "len(hypothesis.split())",
        },
        "pairs": cases,
        "tokenizer_13a_cases": tok_cases,
        "stem_cases": stem_cases,
    }
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {out} ({len(text.encode('utf-8'))} bytes)")


if __name__ == "__main__":
    main()
