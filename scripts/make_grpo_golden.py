#!/usr/bin/env python3
"""Generate the GRPO goldens for ttrav with verl's own `core_algos.py`.

Every golden is computed by calling verl's functions, not a reimplementation:
`compute_grpo_outcome_advantage`, `compute_policy_loss`, `kl_penalty` and `agg_loss` from
`verl/trainer/ppo/core_algos.py` (which uses `masked_mean` from `verl/utils/torch_functional.py`).
The only lines that are not verl's are the actor's combination of the parts, copied from
`verl/workers/actor/dp_actor.py` (`update_policy`):
`loss = pg_loss - entropy_loss * entropy_coeff + kl_loss * kl_loss_coef`.

The committed goldens were made from the verl that OP-TTRAV vendors (verl 0.4.1.dev, at
mvideet/OP-TTRAV commit 06cef1c15572cb342cd3778b4bbe97275bd6a2de, directory `verl/`; the four
functions are those of upstream tag v0.4.1, 8d9e350ea58c7ad4b50dd14d9dcb50577242c55f, plus
OP-TTRAV's optional confidence weights, left off here). Upstream verl at HEAD (0.8.0.dev) changed
`agg_loss` and the policy-loss API; this script needs the 0.4.x API and says so otherwise.

Environment (once; the same one as scripts/make_omni_fixtures.py works):

    python3 -m venv ~/.venvs/ttrav-ref
    ~/.venvs/ttrav-ref/bin/pip install -r scripts/requirements-grpo.txt

Run (from the repository root; DIR is a verl source tree, the one holding `verl/trainer/ppo/`):

    mkdir -p /tmp/verl-op && git --git-dir=OP-TTRAV.git archive 06cef1c verl/verl | tar x -C /tmp/verl-op
    ~/.venvs/ttrav-ref/bin/python scripts/make_grpo_golden.py --verl /tmp/verl-op/verl \\
        --verl-rev "mvideet/OP-TTRAV@06cef1c15572cb342cd3778b4bbe97275bd6a2de verl/" [--out tests/fixtures/grpo]

Everything is seeded: a rerun with the pinned versions rewrites byte-identical files.

Importing core_algos: `verl/__init__.py` and `verl/utils/__init__.py` pull in the whole framework
(ray, transformers, omegaconf, the data protocol). The script therefore registers the packages
`verl`, `verl.utils`, `verl.trainer`, `verl.trainer.ppo` as empty packages whose search path is the
real source tree (so their `__init__.py` files do not run, and every module below them is verl's
own file), and, when they are not installed, stubs two names that `torch_functional.py` uses only
in type annotations of functions the goldens never call: `tensordict.TensorDict` and
`transformers.PreTrainedTokenizer`. `verl.utils.device` is verl's own (it needs only torch).

Format of one golden directory `<out>/<name>/` (fixed: goldens also come from elsewhere):

  meta.json              loss_agg_mode (token-mean | seq-mean-token-sum | seq-mean-token-mean |
                         seq-mean-token-sum-norm), clip_ratio_low, clip_ratio_high,
                         clip_ratio_c (dual clip; absent = off), norm_adv_by_std_in_grpo
                         (true = GRPO, false = Dr.GRPO), kl_type (kl | abs | mse | low_var_kl;
                         absent = no KL loss), kl_coef (with kl_type), entropy_coeff.
                         No other key.
  inputs.safetensors     rewards [B] f32 (one score per sequence; verl sees it on the sequence's
                         last valid token, as token_level_rewards), group_index [B] i64,
                         log_prob, old_log_prob, response_mask [B, T] f32,
                         ref_log_prob [B, T] f32 (with kl_type), entropy [B, T] f32
                         (with entropy_coeff != 0).
  expected.safetensors   advantages [B, T] f32; scalars (shape [] f32) pg_loss, pg_clipfrac,
                         pg_clipfrac_lower, ppo_kl, kl_loss (with kl_type), entropy_loss (with
                         entropy_coeff != 0), loss (= pg_loss - entropy_coeff * entropy_loss
                         + kl_coef * kl_loss).

"Dual clip off" has no switch in verl (clip_ratio_c defaults to 3.0); the goldens without
clip_ratio_c are computed with clip_ratio_c = inf, which makes verl's loss its plain PPO-clip loss
(min(-A*inf, x) = x for A < 0; the A >= 0 branch never reads it) and pg_clipfrac_lower 0.

Each batch holds a group of one, a group of equal rewards (values exact in f32, so verl's f32
mean has no rounding: see README), 0/1 vote groups and real-valued groups, group ids unsorted
and interleaved, partly masked rows, and a fully masked row (except in the seq-mean-token-mean
goldens, where a fully masked row makes verl's loss 0/0 = NaN; the `*_fully_masked` golden
records exactly that). Log-ratios reach past 3 (dual clip) and, in `clamps`, past 20 (verl's
ratio clamp), and reference gaps past low_var_kl's +-10 clamp.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

AGGS = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KL_TYPES = [None, "kl", "abs", "mse", "low_var_kl"]
T = 10


def import_core_algos(verl_dir: Path):
    """verl's core_algos, imported without running the framework's package __init__ files."""
    if not (verl_dir / "verl" / "trainer" / "ppo" / "core_algos.py").is_file():
        sys.exit(f"{verl_dir}: no verl/trainer/ppo/core_algos.py (give the directory that holds the `verl` package)")
    for pkg in ["verl", "verl.utils", "verl.trainer", "verl.trainer.ppo"]:
        module = types.ModuleType(pkg)
        module.__path__ = [str(verl_dir / Path(*pkg.split(".")))]
        sys.modules[pkg] = module
    for name, attr in [("tensordict", "TensorDict"), ("transformers", "PreTrainedTokenizer")]:
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            setattr(stub, attr, type(attr, (), {}))  # used in annotations only
            sys.modules[name] = stub
    try:
        core_algos = importlib.import_module("verl.trainer.ppo.core_algos")
    except ImportError as e:
        sys.exit(f"cannot import core_algos from {verl_dir} ({e}); this script needs verl 0.4.x (see the docstring)")
    import inspect

    params = inspect.signature(core_algos.compute_policy_loss).parameters
    if "clip_ratio_c" not in params:
        sys.exit(f"{verl_dir}: compute_policy_loss lacks clip_ratio_c (not the verl 0.4.x API this script calls)")
    return core_algos


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_groups(rng: np.random.Generator, fully_masked: bool):
    """Rewards, group ids and valid lengths of one batch (B <= 16)."""
    groups = [
        rng.random(4).astype(np.float32),  # real-valued rewards (medoid-like)
        rng.integers(0, 2, 3).astype(np.float32),  # votes
        np.array([rng.random()], dtype=np.float32),  # a group of one
        np.full(3, [0.0, 0.5, 1.0][rng.integers(0, 3)], dtype=np.float32),  # equal rewards
        np.array([1.0, 0.0], dtype=np.float32),  # votes, both outcomes
    ]
    ids = rng.choice(np.arange(100), size=len(groups), replace=False).astype(np.int64)
    rewards = np.concatenate(groups)
    index = np.concatenate([np.full(len(g), i, dtype=np.int64) for g, i in zip(groups, ids)])
    perm = rng.permutation(len(rewards))  # interleave the groups
    rewards, index = rewards[perm], index[perm]
    b = len(rewards)
    lengths = rng.integers(1, T + 1, b)
    lengths[rng.integers(0, b)] = T
    if fully_masked:
        lengths[rng.integers(0, b)] = 0
    return rewards, index, lengths


def make_inputs(rng: np.random.Generator, fully_masked: bool, big: bool):
    rewards, index, lengths = make_groups(rng, fully_masked)
    b = len(rewards)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    old = -rng.uniform(0.05, 4.0, (b, T))
    delta = rng.normal(0.0, 0.6, (b, T))
    # Some large log-ratios, so that the clip and the dual clip (ratio > 3) both bite.
    big_ratio = rng.random((b, T)) < 0.2
    delta[big_ratio] = rng.choice([-1.0, 1.0], big_ratio.sum()) * rng.uniform(1.2, 2.5, big_ratio.sum())
    if big:  # past verl's clamp of the log-ratio at +-20, on every row's first token
        delta[:, 0] = 25.0
        delta[::2, 1] = -30.0
    logp = old + delta
    ref_gap = rng.normal(0.0, 0.8, (b, T))
    far = rng.random((b, T)) < 0.1
    ref_gap[far] = rng.choice([-1.0, 1.0], far.sum()) * rng.uniform(2.8, 4.0, far.sum())  # k3 > 10
    if big:  # past low_var_kl's clamp of ref - logp at +-20
        ref_gap[::2, 2] = 24.0
        ref_gap[1::2, 2] = -24.0
    ref = logp + ref_gap
    entropy = rng.uniform(0.0, 3.0, (b, T))
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return {
        "rewards": torch.from_numpy(rewards),
        "group_index": torch.from_numpy(index),
        "log_prob": f32(logp),
        "old_log_prob": f32(old),
        "response_mask": f32(mask),
        "ref_log_prob": f32(ref),
        "entropy": f32(entropy),
    }


def token_level_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The score on the last valid token, as verl's reward managers place it
    (`reward_tensor[i, valid_response_length - 1] = score`; length 0 gives index -1)."""
    out = torch.zeros_like(mask)
    for i, length in enumerate(mask.sum(-1).long().tolist()):
        out[i, length - 1] = rewards[i]
    return out


def run_verl(core_algos, meta: dict, x: dict) -> dict:
    mask = x["response_mask"]
    advantages, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards(x["rewards"], mask),
        response_mask=mask,
        index=x["group_index"].numpy(),
        norm_adv_by_std_in_grpo=meta["norm_adv_by_std_in_grpo"],
    )
    agg = meta["loss_agg_mode"]
    pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower = core_algos.compute_policy_loss(
        old_log_prob=x["old_log_prob"],
        log_prob=x["log_prob"],
        advantages=advantages,
        response_mask=mask,
        cliprange=meta["clip_ratio_low"],
        cliprange_low=meta["clip_ratio_low"],
        cliprange_high=meta["clip_ratio_high"],
        clip_ratio_c=meta.get("clip_ratio_c", math.inf),
        loss_agg_mode=agg,
    )
    out = {
        "advantages": advantages,
        "pg_loss": pg_loss,
        "pg_clipfrac": pg_clipfrac,
        "pg_clipfrac_lower": pg_clipfrac_lower,
        "ppo_kl": ppo_kl,
    }
    # dp_actor.update_policy's combination of the parts.
    loss = pg_loss
    if meta["entropy_coeff"] != 0:
        out["entropy_loss"] = core_algos.agg_loss(loss_mat=x["entropy"], loss_mask=mask, loss_agg_mode=agg)
        loss = pg_loss - out["entropy_loss"] * meta["entropy_coeff"]
    if "kl_type" in meta:
        kld = core_algos.kl_penalty(logprob=x["log_prob"], ref_logprob=x["ref_log_prob"], kl_penalty=meta["kl_type"])
        out["kl_loss"] = core_algos.agg_loss(loss_mat=kld, loss_mask=mask, loss_agg_mode=agg)
        loss = loss + out["kl_loss"] * meta["kl_coef"]
    out["loss"] = loss
    return {k: v.detach().to(torch.float32).clone() for k, v in out.items()}


def cases():
    """(name, meta, seed, fully_masked, big) for every golden."""
    out = []
    for a, agg in enumerate(AGGS):
        for k, kl in enumerate(KL_TYPES):
            norm = k % 2 == 0
            dual = (k // 2) % 2 == 0
            meta = {
                "loss_agg_mode": agg,
                "clip_ratio_low": 0.2,
                "clip_ratio_high": 0.28 if k % 3 == 1 else 0.2,
                "norm_adv_by_std_in_grpo": norm,
                "entropy_coeff": 0.01 if (a + k) % 2 else 0.0,
            }
            if dual:
                meta["clip_ratio_c"] = 3.0 if k != 4 else 2.0
            if kl:
                meta["kl_type"] = kl
                meta["kl_coef"] = [0.02, 0.1, 0.001, 0.05][a]
            name = f"{agg}_{'grpo' if norm else 'drgrpo'}_{'dual' if dual else 'nodual'}_{kl or 'nokl'}"
            out.append((name, meta, 1000 + 10 * a + k, agg != "seq-mean-token-mean", False))
    base = {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "entropy_coeff": 0.01, "kl_type": "low_var_kl", "kl_coef": 0.02}
    out.append(("seq-mean-token-mean_fully_masked", {**base, "loss_agg_mode": "seq-mean-token-mean", "clip_ratio_c": 3.0, "norm_adv_by_std_in_grpo": True}, 2000, True, False))
    out.append(("token-mean_kl_coef_zero", {**base, "loss_agg_mode": "token-mean", "clip_ratio_c": 3.0, "norm_adv_by_std_in_grpo": True, "kl_coef": 0.0}, 2001, True, False))
    for agg, seed in [("token-mean", 2002), ("seq-mean-token-sum", 2003)]:
        out.append((f"clamps_{agg}", {**base, "loss_agg_mode": agg, "norm_adv_by_std_in_grpo": False}, seed, True, True))
        out.append((f"clamps_{agg}_dual", {**base, "loss_agg_mode": agg, "clip_ratio_c": 3.0, "norm_adv_by_std_in_grpo": True}, seed, True, True))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verl", type=Path, required=True, help="verl source tree (holds the `verl` package)")
    ap.add_argument("--verl-rev", required=True, help="where DIR came from (repository@commit path), recorded in SOURCE.txt")
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/grpo"))
    args = ap.parse_args()
    torch.manual_seed(0)
    core_algos = import_core_algos(args.verl.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, meta, seed, fully_masked, big in cases():
        x = make_inputs(np.random.default_rng(seed), fully_masked, big)
        expected = run_verl(core_algos, meta, x)
        inputs = {k: x[k] for k in ["rewards", "group_index", "log_prob", "old_log_prob", "response_mask"]}
        if "kl_type" in meta:
            inputs["ref_log_prob"] = x["ref_log_prob"]
        if meta["entropy_coeff"] != 0:
            inputs["entropy"] = x["entropy"]
        d = args.out / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        (d / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        save_file(inputs, str(d / "inputs.safetensors"))
        save_file(expected, str(d / "expected.safetensors"))
        scalars = {k: round(v.item(), 6) for k, v in expected.items() if v.dim() == 0}
        print(f"{name}: B={len(x['rewards'])} T={T} {scalars}")
    files = ["verl/trainer/ppo/core_algos.py", "verl/utils/torch_functional.py"]
    source = [f"Made by scripts/make_grpo_golden.py from {args.verl_rev}", ""]
    source += [f"sha256 {sha256(args.verl / f)}  {f}" for f in files]
    source += [f"torch {torch.__version__}, numpy {np.__version__}", ""]
    (args.out / "SOURCE.txt").write_text("\n".join(source))


if __name__ == "__main__":
    main()
