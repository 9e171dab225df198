#!/usr/bin/env python3
"""Generate the length-controlled win-rate goldens for ttrav with AlpacaEval's own code.

Every expected number is computed by calling AlpacaEval's `get_length_controlled_winrate`
(`alpaca_eval/metrics/glm_winrate.py`, identical in the PyPI release 0.6.6 and at
tatsu-lab/alpaca_eval commit cd543a149df89434d8a54582c0151c0b945c3d20), which also calls its
`get_winrate`, on synthetic data the script makes: annotations in AlpacaEval's layout, and the
file that this function downloads from the Hugging Face dataset `tatsu-lab/alpaca_eval`
(`df_gamed.csv`: the gamed baselines' annotations and every instruction's difficulty), replaced
here by a synthetic one in the same layout (`hf_hub_download` is pointed at it; nothing is
downloaded). No AlpacaEval data is used.

Environment (once):

    python3 -m venv ~/.venvs/alpaca-ref
    ~/.venvs/alpaca-ref/bin/pip install -r scripts/requirements-lc.txt

Run (from the repository root):

    ~/.venvs/alpaca-ref/bin/python scripts/make_lc_golden.py [--out tests/fixtures/winrate]

Everything is seeded: a rerun with the pinned versions rewrites the same files.

Layout of `<out>/<case>/`: `annotations.json` (instruction, output_1 = the reference,
generator_1, output_2 = the model, generator_2, annotator, preference: 1..2, 0 or 1.5 a draw,
null for none), `df_gamed.csv` (`index,preference,std_delta_len,instruction_difficulty,
not_gamed_baseline,model`, preference in [0, 1]), and `expected.json`: for each GLM name, AlpacaEval's metrics (win_rate, standard_error,
n_wins, n_wins_base, n_draws, n_total, discrete_win_rate, length_controlled_winrate,
lc_standard_error) and the fitted weights by term.
"""

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

from alpaca_eval.metrics import glm_winrate  # noqa: E402

GLMS = ["length_controlled_v1", "length_controlled_noreg", "length_controlled_minimal"]
WORDS = "the a of to and in is it that for on with as was at by an be this from or have not are".split()


def text(rng, n_words):
    return " ".join(rng.choice(WORDS, size=max(1, n_words)))


def make_case(rng, n, length_bias, quality, extras):
    """n annotations whose judge prefers longer model outputs by `length_bias` and better ones by
    `quality` (in logits), with instruction difficulties and two gamed baselines."""
    difficulty = rng.normal(0.0, 0.8, n)
    rows = []
    for i in range(n):
        ref_words = int(rng.integers(5, 60))
        out_words = int(max(1, ref_words * math.exp(rng.normal(0.3, 0.6))))
        ref, out = text(rng, ref_words), text(rng, out_words)
        delta = (len(ref) - len(out)) / 120.0
        logit = quality - difficulty[i] - length_bias * math.tanh(delta)
        p_model = 1 / (1 + math.exp(-logit))
        rows.append(dict(instruction=f"Instruction {i}: {text(rng, 6)}", output_1=ref, generator_1="reference",
                         dataset="synthetic", output_2=out, generator_2="model", annotator="synthetic_judge",
                         preference=round(1 + p_model, 10)))
    for kind, i in extras:
        if kind == "none":
            rows[i]["preference"] = None
        elif kind == "draw0":
            rows[i]["preference"] = 0.0
        elif kind == "draw":
            rows[i]["preference"] = 1.5
        elif kind == "hard":
            rows[i]["preference"] = 2.0 if i % 2 else 1.0
    gamed = []
    for model, shift in [("gamed_verbose", -0.8), ("gamed_concise", 0.9)]:
        d = rng.normal(shift, 0.7, n)
        std = d / d.std(ddof=1)
        for i in range(n):
            logit = 0.2 - 0.9 * difficulty[i] - 1.1 * math.tanh(std[i])
            gamed.append(dict(index=i, preference=round(1 / (1 + math.exp(-logit)), 10), std_delta_len=float(std[i]),
                              instruction_difficulty=float(difficulty[i]), not_gamed_baseline=False, model=model))
    return rows, difficulty, gamed


def run(case_dir, rows, difficulty, gamed):
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / "annotations.json").write_text(json.dumps(rows, indent=1) + "\n")
    pd.DataFrame(gamed).to_csv(case_dir / "df_gamed.csv", index=False, float_format="%.12f")
    # AlpacaEval reads df_gamed.csv through hf_hub_download: point it at ours.
    glm_winrate.hf_hub_download = lambda repo_id, filename, **kw: str(case_dir / filename)
    expected = {}
    for name in GLMS:
        df = pd.DataFrame(rows)
        df["preference"] = pd.to_numeric(df["preference"])
        metrics = glm_winrate.get_length_controlled_winrate(df, glm_name=name, save_weights_dir=None,
                                                            is_warn_extreme_changes=False)
        # The weights: refit exactly as the function does, to record them.
        info = glm_winrate.GLM_INFO[name]
        df_train, _, sample_weight = glm_winrate._get_featurized_data(df.copy(), formula=info["formula"],
                                                                      regularize_to_baseline_lambda=info["regularize_to_baseline_lambda"])
        keep = df_train["preference"].notna()
        model = glm_winrate.fit_LogisticRegressionCV(df_train[keep], "preference", is_ytrue_proba=True,
                                                     sample_weight=None if sample_weight is None else sample_weight[keep],
                                                     **info["kwargs"])
        out = {k: (None if isinstance(v, float) and math.isnan(v) else float(v)) for k, v in metrics.items()}
        out["weights"] = {c: float(w) for c, w in zip(df_train.drop(columns=["preference"]).columns, model.coef_[0])}
        out["C"] = float(model.C_[0])
        expected[name] = out
    (case_dir / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(case_dir, {k: round(v["length_controlled_winrate"], 4) for k, v in expected.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/winrate")
    args = ap.parse_args()
    out = Path(args.out)
    rng = np.random.default_rng(20240501)
    # A judge that likes long outputs, a model that writes long ones.
    run(out / "length_bias", *make_case(rng, 150, length_bias=1.5, quality=-0.5, extras=[]))
    # Draws (0 and 1.5), missing preferences and hard 1 / 2 preferences among soft ones.
    extras = [("none", 3), ("none", 40), ("draw0", 7), ("draw", 11), ("draw", 12)] + [("hard", i) for i in range(60, 90)]
    run(out / "mixed", *make_case(rng, 120, length_bias=0.4, quality=0.8, extras=extras))


if __name__ == "__main__":
    main()
