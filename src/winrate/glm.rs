//! AlpacaEval 2's length-controlled win rate (`alpaca_eval/metrics/glm_winrate.py` at commit
//! cd543a1), and the L1-regularised logistic regression it fits.
//!
//! For each judged item i (the model's output against the reference's, both measured in
//! characters): `delta_i = len(reference_i) - len(output_i)`, `std_delta_len_i = delta_i / sd(delta)`
//! (sample standard deviation over all items), and the soft label `y_i = preference_i - 1` in
//! [0, 1] (a draw, preference 0, is 0.5). The GLM is a logistic regression without intercept on
//! `tanh(std_delta_len)`, the instruction's difficulty `d_i` and `not_gamed_baseline` (1 for the
//! model's items, so a bias), fitted with soft labels (each item counted as a 1 with weight `y_i`
//! and a 0 with weight `1 - y_i`). `length_controlled_v1` (AlpacaEval 2's default) also trains on
//! the annotations of two "gamed" baselines (the reference asked to be verbose, and concise;
//! `not_gamed_baseline` 0 there) with weight 0.2 / 2 each, which pulls the length and difficulty
//! weights towards the reference's (those annotations, and every instruction's difficulty, come
//! from `df_gamed.csv` in the Hugging Face dataset `tatsu-lab/alpaca_eval`: see [`LcData`]); `length_controlled_noreg` leaves them out; and
//! `length_controlled_minimal` also drops `d_i`. The fit is scikit-learn's
//! `LogisticRegressionCV(penalty="l1", solver="liblinear", fit_intercept=False, Cs=10)`:
//! minimise `|w|_1 + C * sum_i t_i * CE(y_i, sigmoid(w . x_i))` for each C in
//! `logspace(-4, 4, 10)`, score each on 5 folds (whole items kept together, item g of N in fold
//! `(N - 1 - g) mod 5`, as scikit-learn's `GroupKFold` assigns equal-sized groups) by the mean
//! of `t_i * CE` on the held-out items (predictions clipped to [1e-15, 1 - 1e-15]), take the C
//! with the best summed score (the smallest on ties) and refit on everything. The
//! length-controlled win rate is the mean over all items of the prediction with the length term
//! zeroed, `100 * mean_i sigmoid(w_difficulty * d_i + w_not_gamed)`, and its standard error that
//! mean's (`100 * sd / sqrt(n)`). The fit here is solved to convergence (proximal Newton with
//! coordinate descent). liblinear stops at its tolerance (1e-4), and AlpacaEval's numbers carry
//! that: on its published annotations the exact optimum at the C it chose differs from its value
//! by up to 0.06 points, and where the cross-validation scores of two C differ by less than that
//! tolerance the choice of C may differ too (a few hundredths of a point).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The design-matrix column names, as patsy writes AlpacaEval's formula.
pub const LENGTH_TERM: &str = "np.tanh(std_delta_len)";
pub const DIFFICULTY_TERM: &str = "instruction_difficulty";
pub const NOT_GAMED_TERM: &str = "not_gamed_baseline.astype(float)";

/// Weight of the gamed baselines' annotations in `length_controlled_v1`
/// (`regularize_to_baseline_lambda`), shared by its two gamed baselines.
const REGULARIZE_TO_BASELINE_LAMBDA: f64 = 0.2;

/// Which of AlpacaEval's GLMs (`GLM_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Glm {
    #[serde(rename = "length_controlled_v1")]
    V1,
    #[serde(rename = "length_controlled_noreg")]
    NoReg,
    #[serde(rename = "length_controlled_minimal")]
    Minimal,
}

impl Glm {
    pub fn as_str(self) -> &'static str {
        match self {
            Glm::V1 => "length_controlled_v1",
            Glm::NoReg => "length_controlled_noreg",
            Glm::Minimal => "length_controlled_minimal",
        }
    }

    /// Whether the GLM has the instruction-difficulty term.
    pub fn uses_difficulty(self) -> bool {
        self != Glm::Minimal
    }

    fn terms(self) -> Vec<&'static str> {
        if self.uses_difficulty() {
            vec![LENGTH_TERM, DIFFICULTY_TERM, NOT_GAMED_TERM]
        } else {
            vec![LENGTH_TERM, NOT_GAMED_TERM]
        }
    }
}

impl fmt::Display for Glm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Glm {
    type Err = String;

    /// `length_controlled_v1` (or `v1`), `length_controlled_noreg` (`noreg`),
    /// `length_controlled_minimal` (`minimal`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().trim_start_matches("length_controlled_") {
            "v1" => Ok(Glm::V1),
            "noreg" => Ok(Glm::NoReg),
            "minimal" => Ok(Glm::Minimal),
            _ => Err(format!("unknown GLM {s:?} (expected length_controlled_v1, length_controlled_noreg or length_controlled_minimal)")),
        }
    }
}

/// One judged item, as the GLM sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LcItem {
    /// The instruction's position in AlpacaEval's evaluation set (its `index`).
    pub index: usize,
    /// AlpacaEval's preference: 1 = the reference is better, 2 = the model's output; 0 or 1.5 a
    /// draw; `None` when the judge gave none (not trained on, still predicted).
    pub preference: Option<f64>,
    pub reference_chars: usize,
    pub output_chars: usize,
}

/// One row of AlpacaEval's `df_gamed.csv`: an annotation of a gamed baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct GamedRow {
    pub index: usize,
    /// In [0, 1] (1 = the gamed output is better); `None` when missing.
    pub preference: Option<f64>,
    pub std_delta_len: f64,
    pub instruction_difficulty: f64,
    pub not_gamed_baseline: bool,
}

/// What AlpacaEval downloads from the Hugging Face dataset `tatsu-lab/alpaca_eval` for its GLM:
/// `df_gamed.csv`, the annotations of the gamed baselines, which also carries every
/// instruction's difficulty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LcData {
    pub gamed: Vec<GamedRow>,
    /// The difficulty AlpacaEval gives the model's item with index g: that of the row at position
    /// g when it is the first row of its instruction (`df_gamed.drop_duplicates("index")
    /// ["instruction_difficulty"][g]`, a lookup by row label).
    difficulty_by_label: HashMap<usize, f64>,
}

impl LcData {
    /// The gamed rows, as AlpacaEval reads them (every row, whatever its `not_gamed_baseline`).
    pub fn new(gamed: Vec<GamedRow>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let difficulty_by_label =
            gamed.iter().enumerate().filter(|(_, g)| seen.insert(g.index)).map(|(label, g)| (label, g.instruction_difficulty)).collect();
        Self { gamed, difficulty_by_label }
    }

    /// The difficulty of the model's item with this index (see the field).
    pub fn difficulty(&self, index: usize) -> Option<f64> {
        self.difficulty_by_label.get(&index).copied()
    }

    /// Reads `df_gamed.csv` (columns `index`, `preference`, `std_delta_len`,
    /// `instruction_difficulty`, `not_gamed_baseline`; others ignored).
    pub fn load(path: &Path) -> Result<Self> {
        let table = Csv::read(path)?;
        let cols = ["index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"].map(|c| table.column(c));
        let [i_index, i_pref, i_std, i_diff, i_ng] = cols;
        let (i_index, i_pref, i_std, i_diff, i_ng) = (i_index?, i_pref?, i_std?, i_diff?, i_ng?);
        let mut gamed = Vec::new();
        for (line, row) in table.rows() {
            let at = |field: &str| format!("{}:{line}: field {field}", path.display());
            let not_gamed_baseline = match row[i_ng].trim() {
                "False" | "false" | "0" | "0.0" => false,
                "True" | "true" | "1" | "1.0" => true,
                other => bail!("{}: {other:?} is not a boolean", at("not_gamed_baseline")),
            };
            let preference = parse_float(&row[i_pref]).with_context(|| at("preference"))?;
            if preference.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                bail!("{}: {} is outside [0, 1]", at("preference"), row[i_pref]);
            }
            let need = |i: usize, field: &str| -> Result<f64> { parse_float(&row[i]).with_context(|| at(field))?.with_context(|| format!("{} is empty", at(field))) };
            gamed.push(GamedRow {
                index: parse_index(&row[i_index]).with_context(|| at("index"))?,
                preference,
                std_delta_len: need(i_std, "std_delta_len")?,
                instruction_difficulty: need(i_diff, "instruction_difficulty")?,
                not_gamed_baseline,
            });
        }
        if gamed.is_empty() {
            bail!("{} has no rows", path.display());
        }
        Ok(Self::new(gamed))
    }
}

/// A small comma-separated table with a header (no quoted fields: the GLM files hold numbers,
/// booleans and model names).
struct Csv {
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
    path: String,
}

impl Csv {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else { bail!("{} is empty", path.display()) };
        let header: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines {
            let fields: Vec<String> = line.split(',').map(str::to_string).collect();
            if fields.len() != header.len() {
                bail!("{}:{}: {} fields, the header has {}", path.display(), i + 1, fields.len(), header.len());
            }
            rows.push((i + 1, fields));
        }
        Ok(Self { header, rows, path: path.display().to_string() })
    }

    /// The column named `name`; pandas writes the index column with an empty name, which counts
    /// as `index`.
    fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .or_else(|| (name == "index").then(|| self.header.iter().position(|h| h.is_empty())).flatten())
            .with_context(|| format!("{} has no column {name:?} (columns: {})", self.path, self.header.join(", ")))
    }

    fn rows(&self) -> impl Iterator<Item = (usize, &Vec<String>)> {
        self.rows.iter().map(|(l, r)| (*l, r))
    }
}

fn parse_index(s: &str) -> Result<usize> {
    let t = s.trim();
    // pandas may write integer columns as floats ("12.0").
    t.parse::<usize>().or_else(|_| match t.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < 1e15 => Ok(v as usize),
        _ => bail!("{s:?} is not an index"),
    })
}

fn parse_float(s: &str) -> Result<Option<f64>> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => bail!("{s:?} is not a number"),
    }
}

/// The fitted GLM and what it predicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LcResult {
    pub glm: Glm,
    /// 100 x the mean predicted preference with the length term zeroed.
    pub length_controlled_winrate: f64,
    /// 100 x that mean's standard error (`None` with fewer than two items).
    pub lc_standard_error: Option<f64>,
    /// The GLM's weights by term (AlpacaEval's saved weights).
    pub weights: Vec<(String, f64)>,
    /// The regularisation strength the cross-validation chose.
    pub c: f64,
}

/// The fewest items with a preference the GLM is fitted on (one per fold).
pub const MIN_ITEMS: usize = 5;

/// How the GLM's C is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fit {
    /// AlpacaEval's: 5-fold cross-validation over [`default_cs`].
    CrossValidated,
    /// This C, without cross-validation.
    FixedC(f64),
}

/// The length-controlled win rate of `items` with `glm`; `data` (AlpacaEval's `df_gamed.csv`:
/// the instruction difficulties, and for `length_controlled_v1` the gamed annotations) is needed
/// by every GLM but `length_controlled_minimal`.
pub fn length_controlled(items: &[LcItem], glm: Glm, data: Option<&LcData>) -> Result<LcResult> {
    length_controlled_with(items, glm, data, Fit::CrossValidated)
}

/// [`length_controlled`] with the choice of C given.
pub fn length_controlled_with(items: &[LcItem], glm: Glm, data: Option<&LcData>, fit: Fit) -> Result<LcResult> {
    let data = match (glm.uses_difficulty(), data) {
        (true, None) => bail!("{glm} needs AlpacaEval's df_gamed.csv (--lc-data)"),
        (_, d) => d,
    };
    let difficulty = |index: usize| -> Result<f64> {
        match data {
            Some(d) if glm.uses_difficulty() => d.difficulty(index).with_context(|| format!("df_gamed.csv gives no instruction difficulty for index {index}")),
            _ => Ok(0.0),
        }
    };
    let std_delta = std_delta_len(items);
    // Training rows: the gamed baselines' first (v1), then the model's, those without a
    // preference left out.
    let mut x: Vec<Vec<f64>> = Vec::new();
    let mut y: Vec<f64> = Vec::new();
    let mut t: Vec<f64> = Vec::new();
    let with_difficulty = |len: f64, d: f64, not_gamed: f64| if glm.uses_difficulty() { vec![len, d, not_gamed] } else { vec![len, not_gamed] };
    if glm == Glm::V1 {
        for g in data.map(|d| d.gamed.as_slice()).unwrap_or_default() {
            if let Some(p) = g.preference {
                let not_gamed = f64::from(u8::from(g.not_gamed_baseline));
                x.push(with_difficulty(g.std_delta_len.tanh(), g.instruction_difficulty, not_gamed));
                y.push(p);
                // AlpacaEval: not_gamed + lambda * (1 - not_gamed) / 2 (two gamed baselines).
                t.push(not_gamed + REGULARIZE_TO_BASELINE_LAMBDA * (1.0 - not_gamed) / 2.0);
            }
        }
    }
    let mut test: Vec<Vec<f64>> = Vec::new();
    let mut model_rows = 0;
    for (item, s) in items.iter().zip(&std_delta) {
        let d = difficulty(item.index)?;
        test.push(with_difficulty(0.0, d, 1.0));
        if let Some(p) = item.preference.map(soft_label) {
            x.push(with_difficulty(s.tanh(), d, 1.0));
            y.push(p);
            t.push(1.0);
            model_rows += 1;
        }
    }
    if model_rows < MIN_ITEMS {
        bail!("the length-controlled win rate needs at least {MIN_ITEMS} judged items, got {model_rows}");
    }
    // Without the gamed rows every weight is 1, and AlpacaEval's scorer gets no weights.
    let (c, w) = match fit {
        Fit::CrossValidated => fit_cv(&x, &y, &t, 5),
        Fit::FixedC(c) => (c, fit_l1(&x, &y, &t, c)),
    };
    let preds: Vec<f64> = test.iter().map(|r| sigmoid(dot(r, &w))).collect();
    let (mean, se) = mean_and_sem(&preds);
    Ok(LcResult {
        glm,
        length_controlled_winrate: 100.0 * mean,
        lc_standard_error: se.map(|s| 100.0 * s),
        weights: glm.terms().iter().map(|s| s.to_string()).zip(w).collect(),
        c,
    })
}

/// AlpacaEval's preference in [0, 1]: `preference - 1`, a 0 (its old draw) read as 1.5.
fn soft_label(preference: f64) -> f64 {
    let p = if preference == 0.0 { 1.5 } else { preference };
    p - 1.0
}

/// `(len(reference) - len(output)) / sd` over all items (sample sd); all 0 when the differences
/// do not vary (AlpacaEval would divide by zero).
fn std_delta_len(items: &[LcItem]) -> Vec<f64> {
    let delta: Vec<f64> = items.iter().map(|i| i.reference_chars as f64 - i.output_chars as f64).collect();
    match sample_sd(&delta) {
        Some(sd) if sd > 0.0 && sd.is_finite() => delta.iter().map(|d| d / sd).collect(),
        _ => vec![0.0; delta.len()],
    }
}

fn sample_sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// The mean and its standard error (pandas' `sem`, `None` with fewer than two values).
pub fn mean_and_sem(v: &[f64]) -> (f64, Option<f64>) {
    let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    (mean, sample_sd(v).map(|sd| sd / (v.len() as f64).sqrt()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// scikit-learn's `Cs=10`: `logspace(-4, 4, 10)`.
pub fn default_cs() -> Vec<f64> {
    (0..10).map(|j| 10f64.powf(-4.0 + 8.0 * j as f64 / 9.0)).collect()
}

/// Cross-validated choice of C over [`default_cs`] (see the module documentation), then the fit on
/// all rows. Returns (C, weights).
pub fn fit_cv(x: &[Vec<f64>], y: &[f64], t: &[f64], n_splits: usize) -> (f64, Vec<f64>) {
    let n = x.len();
    let fold = |g: usize| (n - 1 - g) % n_splits;
    let cs = default_cs();
    let mut best: Option<(f64, f64)> = None;
    for &c in &cs {
        let mut total = 0.0;
        for k in 0..n_splits {
            let train: Vec<usize> = (0..n).filter(|&g| fold(g) != k).collect();
            let held: Vec<usize> = (0..n).filter(|&g| fold(g) == k).collect();
            let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            let xs: Vec<Vec<f64>> = train.iter().map(|&i| x[i].clone()).collect();
            let w = fit_l1(&xs, &pick(y, &train), &pick(t, &train), c);
            let loss: f64 = held
                .iter()
                .map(|&i| {
                    let q = sigmoid(dot(&x[i], &w)).clamp(1e-15, 1.0 - 1e-15);
                    t[i] * -(y[i] * q.ln() + (1.0 - y[i]) * (1.0 - q).ln())
                })
                .sum();
            total -= loss / held.len().max(1) as f64;
        }
        if best.is_none_or(|(_, s)| total > s) {
            best = Some((c, total));
        }
    }
    let c = best.map_or(cs[cs.len() - 1], |(c, _)| c);
    (c, fit_l1(x, y, t, c))
}

/// `argmin_w |w|_1 + C * sum_i t_i * (softplus(x_i . w) - y_i * x_i . w)`, the soft-label logistic
/// loss with an L1 penalty (liblinear's L1-regularised logistic regression with per-row weights
/// `C * t_i * y_i` on a 1 and `C * t_i * (1 - y_i)` on a 0), by proximal Newton steps whose
/// sub-problems are solved by coordinate descent, with a backtracking line search.
pub fn fit_l1(x: &[Vec<f64>], y: &[f64], t: &[f64], c: f64) -> Vec<f64> {
    let k = x.first().map_or(0, Vec::len);
    let objective = |w: &[f64]| -> f64 {
        let smooth: f64 = x.iter().zip(y).zip(t).map(|((r, yi), ti)| {
            let z = dot(r, w);
            ti * (softplus(z) - yi * z)
        }).sum();
        c * smooth + w.iter().map(|v| v.abs()).sum::<f64>()
    };
    let mut w = vec![0.0; k];
    let mut f = objective(&w);
    for _ in 0..200 {
        // Gradient and Hessian of the smooth part.
        let mut g = vec![0.0; k];
        let mut h = vec![vec![0.0; k]; k];
        for ((r, yi), ti) in x.iter().zip(y).zip(t) {
            let s = sigmoid(dot(r, &w));
            let (gi, hi) = (c * ti * (s - yi), c * ti * s * (1.0 - s));
            for a in 0..k {
                g[a] += gi * r[a];
                for b in 0..k {
                    h[a][b] += hi * r[a] * r[b];
                }
            }
        }
        // The step d minimises g.d + d'Hd/2 + |w + d|_1 (coordinate descent on u = w + d).
        let mut u = w.clone();
        for _ in 0..500 {
            let mut moved: f64 = 0.0;
            for j in 0..k {
                let a = h[j][j];
                let coupling: f64 = (0..k).filter(|&m| m != j).map(|m| h[j][m] * (u[m] - w[m])).sum();
                let b = g[j] + coupling;
                let new = if a > 1e-300 { soft_threshold(w[j] - b / a, 1.0 / a) } else { 0.0 };
                moved = moved.max((new - u[j]).abs());
                u[j] = new;
            }
            if moved < 1e-15 {
                break;
            }
        }
        let d: Vec<f64> = u.iter().zip(&w).map(|(a, b)| a - b).collect();
        let step_norm = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if step_norm < 1e-12 {
            break;
        }
        let decrease = dot(&g, &d) + u.iter().map(|v| v.abs()).sum::<f64>() - w.iter().map(|v| v.abs()).sum::<f64>();
        let mut alpha = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let trial: Vec<f64> = w.iter().zip(&d).map(|(a, b)| a + alpha * b).collect();
            let ft = objective(&trial);
            if ft <= f + 1e-4 * alpha * decrease || ft < f {
                w = trial;
                f = ft;
                accepted = true;
                break;
            }
            alpha *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    w
}

fn soft_threshold(v: f64, lambda: f64) -> f64 {
    if v > lambda {
        v - lambda
    } else if v < -lambda {
        v + lambda
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cs_are_sklearns() {
        let cs = default_cs();
        assert_eq!(cs.len(), 10);
        assert!((cs[0] - 1e-4).abs() < 1e-18 && (cs[9] - 1e4).abs() < 1e-9);
        assert!((cs[1] - 7.742_636_826_811_278e-4).abs() < 1e-16);
    }

    /// With no penalty to speak of, the fit is the soft-label maximum-likelihood estimate: its
    /// gradient vanishes; with a strong one the weights are exactly 0.
    #[test]
    fn l1_fit_is_the_penalised_optimum() {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![((i as f64) * 0.37).sin(), 1.0]).collect();
        let y: Vec<f64> = x.iter().map(|r| sigmoid(1.5 * r[0] - 0.4)).collect();
        let t = vec![1.0; 40];
        let w = fit_l1(&x, &y, &t, 1e8);
        assert!((w[0] - 1.5).abs() < 1e-6 && (w[1] + 0.4).abs() < 1e-6, "{w:?}");
        assert_eq!(fit_l1(&x, &y, &t, 1e-4), vec![0.0, 0.0]);
        // At a moderate C the subgradient condition holds: |grad_j| = 1 where w_j != 0.
        let c = 0.05;
        let w = fit_l1(&x, &y, &t, c);
        for j in 0..2 {
            let g: f64 = x.iter().zip(&y).map(|(r, yi)| c * (sigmoid(dot(r, &w)) - yi) * r[j]).sum();
            if w[j] != 0.0 {
                assert!((g + w[j].signum()).abs() < 1e-8, "coordinate {j}: grad {g}, w {w:?}");
            } else {
                assert!(g.abs() <= 1.0 + 1e-9, "coordinate {j}: grad {g}");
            }
        }
    }
}
