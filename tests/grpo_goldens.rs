//! GRPO goldens computed by verl's own `core_algos.py` (`scripts/make_grpo_golden.py`; format at
//! its top and in README): every golden directory under `tests/fixtures/grpo/` and under each
//! root in `TTRAV_GRPO_GOLDENS` (colon-separated) is checked against ttrav's advantages and loss.
//!
//! Comparison: `|ttrav - golden| <= 1e-5 * max(1, |golden|)` (absolute up to 1, relative above).
//! A NaN matches only a NaN, and only where the golden itself holds NaN (verl's 0/0 on a fully
//! masked row under seq-mean-token-mean). An unknown meta key or tensor name is an error naming
//! the golden and the key. The loss is computed three ways, all held to the golden: with verl's
//! masked `[B, T]` advantages, with `[B]` advantages (the trainer's path), and as two parts of
//! the batch added up under the whole batch's `AggScale` (how the trainer scores a mini-batch).

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use ttrav::rl::grpo::{advantages, loss, AdvantageKind, AggScale, KlKind, LossAgg, LossConfig, LossInputs, LossParts};

const TOLERANCE: f64 = 1e-5;

/// `meta.json` (no other key is allowed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    loss_agg_mode: String,
    clip_ratio_low: f64,
    clip_ratio_high: f64,
    /// Dual clip; absent = off.
    #[serde(default)]
    clip_ratio_c: Option<f64>,
    norm_adv_by_std_in_grpo: bool,
    /// verl's `kl_penalty` name; absent = no KL loss.
    #[serde(default)]
    kl_type: Option<String>,
    #[serde(default)]
    kl_coef: Option<f64>,
    #[serde(default)]
    entropy_coeff: f64,
}

fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let meta: Meta = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    ensure!(meta.kl_type.is_none() || meta.kl_coef.is_some(), "{}: kl_type without kl_coef", path.display());
    ensure!(
        meta.kl_type.is_some() || meta.kl_coef.unwrap_or(0.0) == 0.0,
        "{}: a nonzero kl_coef without kl_type",
        path.display()
    );
    if let Some(c) = meta.clip_ratio_c {
        ensure!(c > 1.0, "{}: clip_ratio_c {c} must exceed 1 (verl asserts it)", path.display());
    }
    Ok(meta)
}

/// The tensors of one safetensors file, taken out by name; what is left at the end is unknown.
struct TensorFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl TensorFile {
    fn open(path: PathBuf) -> Result<Self> {
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self { path, tensors })
    }

    fn take(&mut self, name: &str, dtype: DType, dims: &[usize]) -> Result<Tensor> {
        let t = self.tensors.remove(name).with_context(|| format!("{}: missing tensor `{name}`", self.path.display()))?;
        ensure!(t.dtype() == dtype, "{}: `{name}` is {:?}, not {dtype:?}", self.path.display(), t.dtype());
        ensure!(t.dims() == dims, "{}: `{name}` has shape {:?}, not {dims:?}", self.path.display(), t.dims());
        Ok(t)
    }

    fn take_if(&mut self, present: bool, name: &str, dtype: DType, dims: &[usize]) -> Result<Option<Tensor>> {
        if present {
            return self.take(name, dtype, dims).map(Some);
        }
        ensure!(!self.tensors.contains_key(name), "{}: `{name}` given, but the meta does not use it", self.path.display());
        Ok(None)
    }

    fn finish(self) -> Result<()> {
        let mut left: Vec<&String> = self.tensors.keys().collect();
        left.sort();
        ensure!(left.is_empty(), "{}: unknown tensor(s) {left:?}", self.path.display());
        Ok(())
    }
}

struct Golden {
    meta: Meta,
    rewards: Vec<f32>,
    group_index: Vec<i64>,
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    ref_logp: Option<Tensor>,
    entropy: Option<Tensor>,
    /// Expected tensors by name (scalars as one value).
    expected: Vec<(&'static str, Vec<f32>)>,
}

fn load_golden(dir: &Path) -> Result<Golden> {
    let meta = read_meta(dir)?;
    let mut inputs = TensorFile::open(dir.join("inputs.safetensors"))?;
    let mask = inputs.tensors.get("response_mask").with_context(|| format!("{}: missing tensor `response_mask`", inputs.path.display()))?;
    let (b, t) = mask.dims2().with_context(|| format!("{}: `response_mask` is not [B, T]", inputs.path.display()))?;
    let bt = [b, t];
    let rewards = inputs.take("rewards", DType::F32, &[b])?.to_vec1::<f32>()?;
    let group_index = inputs.take("group_index", DType::I64, &[b])?.to_vec1::<i64>()?;
    let logp = inputs.take("log_prob", DType::F32, &bt)?;
    let old_logp = inputs.take("old_log_prob", DType::F32, &bt)?;
    let mask = inputs.take("response_mask", DType::F32, &bt)?;
    let ref_logp = inputs.take_if(meta.kl_type.is_some(), "ref_log_prob", DType::F32, &bt)?;
    let entropy = inputs.take_if(meta.entropy_coeff != 0.0, "entropy", DType::F32, &bt)?;
    inputs.finish()?;

    let mut file = TensorFile::open(dir.join("expected.safetensors"))?;
    let mut expected = vec![("advantages", file.take("advantages", DType::F32, &bt)?.flatten_all()?.to_vec1::<f32>()?)];
    let scalars = [
        ("pg_loss", true),
        ("pg_clipfrac", true),
        ("pg_clipfrac_lower", true),
        ("ppo_kl", true),
        ("kl_loss", meta.kl_type.is_some()),
        ("entropy_loss", meta.entropy_coeff != 0.0),
        ("loss", file.tensors.contains_key("loss")),
    ];
    for (name, present) in scalars {
        if let Some(v) = file.take_if(present, name, DType::F32, &[])? {
            expected.push((name, vec![v.to_scalar::<f32>()?]));
        }
    }
    file.finish()?;
    Ok(Golden { meta, rewards, group_index, logp, old_logp, mask, ref_logp, entropy, expected })
}

/// ttrav's advantages for every sequence, group by group (rewards per sequence).
fn ttrav_advantages(rewards: &[f32], group_index: &[i64], kind: AdvantageKind) -> Vec<f32> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (row, &g) in group_index.iter().enumerate() {
        groups.entry(g).or_default().push(row);
    }
    let mut out = vec![0.0; rewards.len()];
    for rows in groups.values() {
        let group: Vec<f32> = rows.iter().map(|&r| rewards[r]).collect();
        for (&row, a) in rows.iter().zip(advantages(&group, kind)) {
            out[row] = a;
        }
    }
    out
}

fn loss_config(meta: &Meta) -> Result<LossConfig> {
    Ok(LossConfig {
        clip_low: meta.clip_ratio_low,
        clip_high: meta.clip_ratio_high,
        dual_clip: meta.clip_ratio_c.unwrap_or(f64::INFINITY),
        agg: LossAgg::from_name(&meta.loss_agg_mode)?,
        kl_coef: meta.kl_coef.unwrap_or(0.0),
        kl_kind: match &meta.kl_type {
            Some(name) => KlKind::from_name(name)?,
            None => KlKind::K3,
        },
        entropy_coef: meta.entropy_coeff,
    })
}

/// The loss of rows `rows` of the golden's batch, aggregated for the whole batch (`scale`).
fn ttrav_loss(g: &Golden, cfg: &LossConfig, adv: &Tensor, rows: std::ops::Range<usize>, scale: &AggScale) -> Result<(f64, LossParts)> {
    let part = |t: &Tensor| t.narrow(0, rows.start, rows.len());
    let (logp, old, adv, mask) = (part(&g.logp)?, part(&g.old_logp)?, part(adv)?, part(&g.mask)?);
    let ref_logp = g.ref_logp.as_ref().map(part).transpose()?;
    let entropy = g.entropy.as_ref().map(part).transpose()?;
    let inputs = LossInputs { logp: &logp, old_logp: &old, advantages: &adv, mask: &mask, ref_logp: ref_logp.as_ref(), entropy: entropy.as_ref() };
    let (total, parts) = loss(cfg, &inputs, scale)?;
    Ok((total.to_dtype(DType::F64)?.to_scalar::<f64>()?, parts))
}

fn named_values(total: f64, p: &LossParts) -> Vec<(&'static str, f64)> {
    vec![
        ("pg_loss", p.policy),
        ("pg_clipfrac", p.clip_fraction),
        ("pg_clipfrac_lower", p.clip_fraction_lower),
        ("ppo_kl", p.ppo_kl),
        ("kl_loss", p.kl),
        ("entropy_loss", p.entropy),
        ("loss", total),
    ]
}

/// How far `got` is from `want`, in tolerances (see the module doc), at the worst element:
/// (distance, index). A NaN on one side only is infinitely far; NaN on both is no distance.
fn distance(got: &[f64], want: &[f32]) -> (f64, usize) {
    let one = |g: f64, w: f64| match (g.is_nan(), w.is_nan()) {
        (true, true) => 0.0,
        (false, false) if g == w => 0.0,
        (false, false) => (g - w).abs() / (TOLERANCE * w.abs().max(1.0)),
        _ => f64::INFINITY,
    };
    let mut worst = (0.0, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = one(g, w as f64);
        if d > worst.0 {
            worst = (d, i);
        }
    }
    worst
}

/// `Some(message)` when `got` is more than one tolerance from `want`.
fn mismatch(name: &str, got: &[f64], want: &[f32]) -> Option<String> {
    let (d, i) = distance(got, want);
    (d > 1.0).then(|| {
        let at = if want.len() > 1 { format!("[{i}]") } else { String::new() };
        format!("{name}{at}: ttrav {} vs verl {}", got[i], want[i])
    })
}

/// Every check of one golden; the error names the golden and each tensor that differs.
fn check_golden(dir: &Path) -> Result<Vec<String>> {
    let run = || -> Result<Vec<String>> {
        let g = load_golden(dir)?;
        let cfg = loss_config(&g.meta)?;
        let kind = if g.meta.norm_adv_by_std_in_grpo { AdvantageKind::Grpo } else { AdvantageKind::DrGrpo };
        let (b, _) = g.mask.dims2()?;
        let adv_b = Tensor::from_vec(ttrav_advantages(&g.rewards, &g.group_index, kind), b, &Device::Cpu)?;
        let adv_bt = adv_b.unsqueeze(1)?.broadcast_mul(&g.mask)?;
        let scale = AggScale::of_mask(&g.mask)?;

        let whole = ttrav_loss(&g, &cfg, &adv_bt, 0..b, &scale)?;
        let per_sequence = ttrav_loss(&g, &cfg, &adv_b, 0..b, &scale)?;
        let half = b / 2;
        let (top, bottom) = (ttrav_loss(&g, &cfg, &adv_bt, 0..half, &scale)?, ttrav_loss(&g, &cfg, &adv_bt, half..b, &scale)?);
        let add = |a: &LossParts, c: &LossParts| LossParts {
            policy: a.policy + c.policy,
            kl: a.kl + c.kl,
            entropy: a.entropy + c.entropy,
            clip_fraction: a.clip_fraction + c.clip_fraction,
            clip_fraction_lower: a.clip_fraction_lower + c.clip_fraction_lower,
            ppo_kl: a.ppo_kl + c.ppo_kl,
        };
        let parts = (top.0 + bottom.0, add(&top.1, &bottom.1));

        let adv_got: Vec<f64> = adv_bt.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        let mut failures = Vec::new();
        let mut checked = Vec::new();
        let mut worst = 0.0f64;
        for (name, want) in &g.expected {
            checked.push(name.to_string());
            if *name == "advantages" {
                worst = worst.max(distance(&adv_got, want).0);
                failures.extend(mismatch(name, &adv_got, want));
                continue;
            }
            for (how, (total, p)) in [("", &whole), (" ([B] advantages)", &per_sequence), (" (two parts added)", &parts)] {
                let got = named_values(*total, p).into_iter().find(|(n, _)| n == name).map(|(_, v)| v);
                let got = got.with_context(|| format!("no ttrav value for `{name}`"))?;
                worst = worst.max(distance(&[got], want).0);
                failures.extend(mismatch(&format!("{name}{how}"), &[got], want));
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        checked.push(format!("worst {worst:.3} of the tolerance"));
        Ok(checked)
    };
    run().with_context(|| format!("golden {}", dir.display()))
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpo")
}

/// The golden directories under each root (every subdirectory is one).
fn golden_dirs(roots: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for root in roots {
        let entries = std::fs::read_dir(root).with_context(|| format!("reading the golden root {}", root.display()))?;
        let mut here: Vec<PathBuf> = entries.map(|e| Ok(e?.path())).collect::<Result<Vec<_>>>()?.into_iter().filter(|p| p.is_dir()).collect();
        here.sort();
        dirs.extend(here);
    }
    Ok(dirs)
}

#[test]
fn grpo_goldens_match_verl() {
    let mut roots = vec![project_root()];
    if let Ok(extra) = std::env::var("TTRAV_GRPO_GOLDENS") {
        roots.extend(extra.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    let dirs = golden_dirs(&roots).unwrap();
    assert!(!dirs.is_empty(), "no goldens under tests/fixtures/grpo (made by scripts/make_grpo_golden.py)");
    let mut failures = Vec::new();
    for dir in &dirs {
        match check_golden(dir) {
            Ok(names) => eprintln!("ok   {} ({})", dir.display(), names.join(", ")),
            Err(e) => {
                eprintln!("FAIL {e:#}");
                failures.push(format!("{e:#}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} goldens failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}

/// The project's goldens cover what issue 12 asks: every aggregation, both advantage kinds,
/// every KL type and none, dual clip on and off, groups of one, equal rewards, partly and
/// fully masked rows, and verl's NaN on a fully masked row under seq-mean-token-mean.
#[test]
fn project_goldens_cover_every_setting() -> Result<()> {
    let mut seen: Vec<String> = Vec::new();
    for dir in golden_dirs(&[project_root()])? {
        let g = load_golden(&dir)?;
        let m = &g.meta;
        seen.push(format!("agg {}", m.loss_agg_mode));
        seen.push(format!("grpo {}", m.norm_adv_by_std_in_grpo));
        seen.push(format!("kl {}", m.kl_type.as_deref().unwrap_or("none")));
        seen.push(format!("dual {}", m.clip_ratio_c.is_some()));
        seen.push(format!("entropy {}", m.entropy_coeff != 0.0));
        let lengths: Vec<f32> = g.mask.sum(1)?.to_vec1()?;
        let mut groups: BTreeMap<i64, Vec<f32>> = BTreeMap::new();
        for (&i, &r) in g.group_index.iter().zip(&g.rewards) {
            groups.entry(i).or_default().push(r);
        }
        if groups.values().any(|r| r.len() == 1) {
            seen.push("group of one".into());
        }
        if groups.values().any(|r| r.len() > 1 && r.iter().all(|&x| x == r[0])) {
            seen.push("equal rewards".into());
        }
        let t = g.mask.dim(1)? as f32;
        if lengths.iter().any(|&l| l > 0.0 && l < t) {
            seen.push("partly masked row".into());
        }
        if lengths.contains(&0.0) {
            seen.push("fully masked row".into());
        }
        if g.expected.iter().any(|(_, v)| v.iter().any(|x| x.is_nan())) {
            seen.push("NaN expected".into());
        }
    }
    let mut wanted: Vec<String> = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"].iter().map(|a| format!("agg {a}")).collect();
    wanted.extend(["kl none", "kl kl", "kl abs", "kl mse", "kl low_var_kl"].map(String::from));
    for s in ["grpo true", "grpo false", "dual true", "dual false", "entropy true", "entropy false"] {
        wanted.push(s.into());
    }
    for s in ["group of one", "equal rewards", "partly masked row", "fully masked row", "NaN expected"] {
        wanted.push(s.into());
    }
    let missing: Vec<&String> = wanted.iter().filter(|w| !seen.contains(w)).collect();
    ensure!(missing.is_empty(), "the goldens under tests/fixtures/grpo lack {missing:?}");
    Ok(())
}

/// A copy of a project golden in a temporary directory, under its own name.
fn copy_golden(name: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir)?;
    for file in ["meta.json", "inputs.safetensors", "expected.safetensors"] {
        std::fs::copy(project_root().join(name).join(file), dir.join(file)).with_context(|| format!("copying {name}/{file}"))?;
    }
    Ok((tmp, dir))
}

/// Rewrites `expected.safetensors` of `dir` with `edit` applied to tensor `name`.
fn edit_expected(dir: &Path, name: &str, edit: impl Fn(Tensor) -> Result<Tensor>) -> Result<()> {
    let path = dir.join("expected.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    let t = tensors.remove(name).with_context(|| format!("no `{name}`"))?;
    tensors.insert(name.to_string(), edit(t)?);
    candle_core::safetensors::save(&tensors, &path)?;
    Ok(())
}

fn expect_failure(dir: &Path, needles: &[&str]) -> Result<()> {
    let err = match check_golden(dir) {
        Ok(_) => bail!("the perturbed golden {} passed", dir.display()),
        Err(e) => format!("{e:#}"),
    };
    for needle in needles {
        ensure!(err.contains(needle), "the failure does not name `{needle}`: {err}");
    }
    Ok(())
}

const SAMPLE: &str = "token-mean_grpo_dual_low_var_kl";

#[test]
fn a_perturbed_golden_fails_naming_golden_and_tensor() -> Result<()> {
    let (_tmp, dir) = copy_golden(SAMPLE)?;
    check_golden(&dir).context("the unperturbed copy should pass")?;
    for (tensor, delta) in [("pg_loss", 1e-4), ("kl_loss", 1e-4), ("ppo_kl", 1e-4), ("pg_clipfrac", 1e-4)] {
        let (_tmp, dir) = copy_golden(SAMPLE)?;
        edit_expected(&dir, tensor, |t| Ok((t + delta)?))?;
        expect_failure(&dir, &[SAMPLE, tensor])?;
    }
    // One element of the advantages, by 2e-5 (just past the tolerance).
    let (_tmp, dir) = copy_golden(SAMPLE)?;
    edit_expected(&dir, "advantages", |t| {
        let mut v = t.flatten_all()?.to_vec1::<f32>()?;
        v[0] += 2e-5;
        Ok(Tensor::from_vec(v, t.shape(), &Device::Cpu)?)
    })?;
    expect_failure(&dir, &[SAMPLE, "advantages[0]"])?;
    // A NaN where verl's value is finite fails, and so does a finite value where verl's is NaN.
    let (_tmp, dir) = copy_golden(SAMPLE)?;
    edit_expected(&dir, "loss", |t| Ok((t * f64::NAN)?))?;
    expect_failure(&dir, &[SAMPLE, "loss"])?;
    let nan_golden = "seq-mean-token-mean_fully_masked";
    let (_tmp, dir) = copy_golden(nan_golden)?;
    check_golden(&dir).context("the unperturbed NaN golden should pass")?;
    edit_expected(&dir, "pg_loss", |t| Ok(t.zeros_like()?))?;
    expect_failure(&dir, &[nan_golden, "pg_loss"])?;
    Ok(())
}

#[test]
fn unknown_keys_and_tensors_are_errors() -> Result<()> {
    let (_tmp, dir) = copy_golden(SAMPLE)?;
    let path = dir.join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    meta["clip_ratio"] = serde_json::json!(0.2);
    std::fs::write(&path, meta.to_string())?;
    expect_failure(&dir, &[SAMPLE, "meta.json", "clip_ratio"])?;

    let (_tmp, dir) = copy_golden(SAMPLE)?;
    let path = dir.join("expected.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    tensors.insert("vf_loss".into(), Tensor::new(0.5f32, &Device::Cpu)?);
    candle_core::safetensors::save(&tensors, &path)?;
    expect_failure(&dir, &[SAMPLE, "vf_loss"])?;

    // A missing tensor the meta needs (kl_type is set, ref_log_prob is not there).
    let (_tmp, dir) = copy_golden(SAMPLE)?;
    let path = dir.join("inputs.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    tensors.remove("ref_log_prob");
    candle_core::safetensors::save(&tensors, &path)?;
    expect_failure(&dir, &[SAMPLE, "ref_log_prob"])?;
    Ok(())
}
