//! Token sampling, kept apart from the model: greedy, or temperature with top-k and top-p
//! (applied in that order, as transformers' logits warpers do), and a small seeded random number
//! generator whose whole state can be saved and restored (for reproducible, resumable runs).
//!
//! What a draw is, on every device: `z = logits * (1 / temperature)`; top-k keeps the ids whose
//! `z` is at least the k-th largest (ties at the boundary are all kept, as transformers' top-k
//! does); top-p then keeps the ids whose `z` is at least `t`, the largest value such that the
//! kept ids at or above `t` hold at least `top_p` of the kept mass (the smallest head of the
//! sorted distribution that reaches `top_p`, ties included). One uniform `u` per row from [`Rng`]
//! picks the first kept id, in id order, whose running mass exceeds `u` times the kept mass
//! (inverse CDF: no sort is needed when nothing is truncated). The log-probability returned is
//! the token's under `softmax(z)` over the whole vocabulary, before truncation (what verl and
//! the PPO ratio use).
//!
//! [`sample_rows`] samples every row of a `[B, V]` logits tensor where it lies. On the CPU it reads
//! the tensor's memory in place, one row per thread, with a partial selection (`select_nth`) for
//! top-k and a sort of only the top candidates for top-p, widened only when they do not reach
//! `top_p`; on other devices ([`device`]) the same definition runs as tensor ops (thresholds by
//! bisection, the inverse CDF over chunk sums), and only the ids and log-probabilities come back.
//! [`choose`] is the one-row form on a host slice.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

pub mod device;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token (the first one on ties).
    Greedy,
    /// A draw from `softmax(logits / temperature)`, restricted to the `top_k` most likely tokens
    /// (0 = no limit) and then to the smallest set whose probability reaches `top_p`.
    Random { temperature: f32, top_p: f32, top_k: usize },
}

impl Sampling {
    /// Validated sampling settings (temperature 0 means greedy).
    pub fn new(temperature: f32, top_p: f32, top_k: usize) -> Result<Self> {
        if !(temperature >= 0.0) || !temperature.is_finite() {
            bail!("temperature must be a finite number >= 0 (got {temperature})");
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            bail!("top-p must be in (0, 1] (got {top_p})");
        }
        if temperature == 0.0 {
            return Ok(Self::Greedy);
        }
        Ok(Self::Random { temperature, top_p, top_k })
    }
}

/// xoshiro256++ seeded through splitmix64: fast, good statistical quality, and its state is four
/// integers, which checkpoints store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn seed(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { s: [next(), next(), next(), next()] }
    }

    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    pub fn from_state(s: [u64; 4]) -> Self {
        Self { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// `n` draws from a normal distribution with mean 0 and standard deviation `std`
    /// (Box-Muller).
    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1 = 1.0 - self.next_f64();
            let u2 = self.next_f64();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            out.push((r * a.cos()) as f32 * std);
            out.push((r * a.sin()) as f32 * std);
        }
        out.truncate(n);
        out
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A chosen token and its log-probability under `softmax(logits / temperature)` (the full
/// distribution before top-k/top-p; plain `softmax(logits)` for greedy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub token: u32,
    pub logprob: f32,
}

/// A row of logits holding NaN or an infinity (a broken model or weights): never a draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFiniteLogits {
    /// The row of the `[B, V]` logits (0 for [`choose`]).
    pub row: usize,
    /// The first bad id in that row, and its value.
    pub token: usize,
    pub value: f32,
}

impl std::fmt::Display for NonFiniteLogits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the logits of row {} are not finite (token {} has {}): the model or its weights are broken",
            self.row, self.token, self.value
        )
    }
}

impl std::error::Error for NonFiniteLogits {}

/// Chooses the next token from one row of logits. A row holding NaN or an infinity is an error
/// naming the first bad index ([`NonFiniteLogits`]), never a draw.
pub fn choose(logits: &[f32], sampling: Sampling, rng: &mut Rng) -> Result<Choice> {
    if logits.is_empty() {
        bail!("the logits are empty");
    }
    let u = uniform(sampling, rng);
    Ok(SCRATCH.with(|s| choose_row(logits, sampling, u, &mut s.borrow_mut()))?)
}

/// Samples one token from each row of `logits` (`[B, V]`, f32 or f64) where the tensor lies:
/// one uniform per row from `rng` (in row order; none for greedy), so runs are reproducible and
/// resumable from a saved [`Rng`]. A non-finite row is a [`NonFiniteLogits`] error.
pub fn sample_rows(logits: &Tensor, sampling: Sampling, rng: &mut Rng) -> Result<Vec<Choice>> {
    let (b, v) = logits.dims2().context("the logits must be a [batch, vocabulary] tensor")?;
    if v == 0 {
        bail!("the logits are empty");
    }
    let uniforms: Vec<f64> = (0..b).map(|_| uniform(sampling, rng)).collect();
    if logits.device().is_cpu() {
        sample_rows_on_host(logits, sampling, &uniforms)
    } else {
        device::sample(logits, sampling, &uniforms)
    }
}

/// The uniform a draw consumes: one `next_f64` for a random draw, none for greedy.
fn uniform(sampling: Sampling, rng: &mut Rng) -> f64 {
    match sampling {
        Sampling::Greedy => 0.0,
        Sampling::Random { .. } => rng.next_f64(),
    }
}

/// The CPU path: the rows are read in place from the tensor's memory, in parallel.
fn sample_rows_on_host(logits: &Tensor, sampling: Sampling, uniforms: &[f64]) -> Result<Vec<Choice>> {
    let (_, v) = logits.dims2()?;
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = logits.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("host sampling needs logits on the CPU") };
    let (start, end) = layout.contiguous_offsets().context("the logits are not contiguous")?;
    let data = &cpu.as_slice::<f32>()?[start..end];
    let choices = data
        .par_chunks(v)
        .zip(uniforms.par_iter())
        .enumerate()
        .map(|(row, (x, &u))| {
            SCRATCH.with(|s| choose_row(x, sampling, u, &mut s.borrow_mut())).map_err(|e| NonFiniteLogits { row, ..e })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(choices)
}

thread_local! {
    /// Each thread's buffers, kept between rows and steps (a row of the real vocabulary is 600 kB).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Buffers reused across the rows one thread samples.
#[derive(Default)]
struct Scratch {
    /// `exp(z - max z)` per id.
    e: Vec<f32>,
    /// The values of `z`, reordered by the partial selections.
    values: Vec<f32>,
}

/// One row on the host, with the uniform `u` already drawn. The row must not be empty.
fn choose_row(x: &[f32], sampling: Sampling, u: f64, s: &mut Scratch) -> std::result::Result<Choice, NonFiniteLogits> {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if !v.is_finite() {
            return Err(NonFiniteLogits { row: 0, token: i, value: v });
        }
        if v > x[best] {
            best = i;
        }
    }
    let (temperature, top_p, top_k) = match sampling {
        Sampling::Greedy => (1.0, 1.0, 0),
        Sampling::Random { temperature, top_p, top_k } => (temperature, top_p, top_k),
    };
    let inv = (1.0 / temperature as f64) as f32;
    let m = x[best] * inv;
    if matches!(sampling, Sampling::Greedy) {
        let total: f64 = x.iter().map(|&v| (v - m).exp() as f64).sum();
        return Ok(Choice { token: best as u32, logprob: -total.ln() as f32 });
    }
    s.e.clear();
    s.e.extend(x.iter().map(|&v| (v * inv - m).exp()));
    let total: f64 = s.e.iter().map(|&e| e as f64).sum();
    let logprob = |t: usize| ((x[t] * inv - m) as f64 - total.ln()) as f32;
    let token = match threshold(x, inv, m, top_k, top_p, total, s) {
        None => inverse_cdf(&s.e, |_| true, total, u),
        Some(t) => {
            let kept = |i: usize| x[i] * inv >= t;
            let mass = kept_mass(&s.e, kept);
            inverse_cdf(&s.e, kept, mass, u)
        }
    };
    Ok(Choice { token: token as u32, logprob: logprob(token) })
}

/// The mass (sum of `e`) of the kept ids, in id order.
fn kept_mass(e: &[f32], kept: impl Fn(usize) -> bool) -> f64 {
    e.iter().enumerate().filter(|&(i, _)| kept(i)).map(|(_, &e)| e as f64).sum()
}

/// The first kept id whose running mass exceeds `u * mass` (the last kept id if rounding leaves
/// the target unreached).
fn inverse_cdf(e: &[f32], kept: impl Fn(usize) -> bool, mass: f64, u: f64) -> usize {
    let target = u * mass;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &p) in e.iter().enumerate() {
        if kept(i) {
            acc += p as f64;
            last = i;
            if acc > target {
                return i;
            }
        }
    }
    last
}

/// The smallest kept value of `z = x * inv` under top-k and top-p (see the module docs), or None
/// when nothing is truncated. `m` is the largest `z`, `total` the sum of `s.e`.
fn threshold(x: &[f32], inv: f32, m: f32, top_k: usize, top_p: f32, total: f64, s: &mut Scratch) -> Option<f32> {
    let n = x.len();
    let top_k = if top_k > 0 && top_k < n { top_k } else { 0 };
    if top_k == 0 && top_p >= 1.0 {
        return None;
    }
    s.values.clear();
    s.values.extend(x.iter().map(|&v| v * inv));
    let descending = |a: &f32, b: &f32| b.total_cmp(a);
    let mut floor = None;
    if top_k > 0 {
        s.values.select_nth_unstable_by(top_k - 1, descending);
        floor = Some(s.values[top_k - 1]);
    }
    if top_p >= 1.0 {
        return floor;
    }
    let mass = match floor {
        Some(t) => kept_mass(&s.e, |i| x[i] * inv >= t),
        None => total,
    };
    let need = top_p as f64 * mass;
    // Walk the candidates in descending order; sort only a head of them, widening it (x8) until
    // its mass reaches `need` (with top-k, the k candidates are the whole head).
    let candidates = if top_k > 0 { top_k } else { n };
    let (mut sorted, mut head, mut acc) = (0, candidates.min(64), 0.0);
    loop {
        if head < candidates {
            s.values[sorted..candidates].select_nth_unstable_by(head - sorted - 1, descending);
        }
        s.values[sorted..head].sort_unstable_by(descending);
        for &v in &s.values[sorted..head] {
            acc += (v - m).exp() as f64;
            if acc >= need {
                return Some(v);
            }
        }
        if head == candidates {
            // Rounding (or ties below the top-k boundary): everything the floor keeps.
            return Some(floor.unwrap_or(s.values[candidates - 1]));
        }
        sorted = head;
        head = (head * 8).min(candidates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        let mut rng = Rng::seed(0);
        let c = choose(&[0.0, 3.0, 3.0, 1.0], Sampling::Greedy, &mut rng).unwrap();
        assert_eq!(c.token, 1);
        let expected = 3.0 - (1.0f64 + 2.0 * 3f64.exp() + 1f64.exp()).ln() as f32;
        assert!((c.logprob - expected).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [2.0f32, 1.0, 0.5, 0.0, -1.0];
        let mut rng = Rng::seed(7);
        let mut seen = [0usize; 5];
        for _ in 0..2000 {
            seen[choose(&logits, Sampling::Random { temperature: 1.0, top_p: 1.0, top_k: 2 }, &mut rng).unwrap().token as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2..].iter().all(|&n| n == 0), "{seen:?}");
        // softmax: [0.545, 0.200, 0.122, 0.074, 0.027]; top_p 0.7 keeps the first two
        // (mass before the third is 0.745 >= 0.7).
        let mut seen = [0usize; 5];
        for _ in 0..2000 {
            seen[choose(&logits, Sampling::Random { temperature: 1.0, top_p: 0.7, top_k: 0 }, &mut rng).unwrap().token as usize] += 1;
        }
        assert!(seen[1] > 0 && seen[2..].iter().all(|&n| n == 0), "{seen:?}");
        // Frequencies follow the renormalised probabilities 0.731 / 0.269.
        let share = seen[0] as f64 / 2000.0;
        assert!((share - 0.731).abs() < 0.04, "{share}");
    }

    #[test]
    fn non_finite_logits_are_errors() {
        let mut rng = Rng::seed(0);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for sampling in [Sampling::Greedy, Sampling::Random { temperature: 1.0, top_p: 0.9, top_k: 2 }] {
                let err = choose(&[0.0, bad, 1.0], sampling, &mut rng).unwrap_err().to_string();
                assert!(err.contains("token 1"), "{err}");
            }
        }
        let all_nan = [f32::NAN; 4];
        assert!(choose(&all_nan, Sampling::Random { temperature: 0.7, top_p: 1.0, top_k: 0 }, &mut rng).is_err());
        assert!(choose(&[], Sampling::Greedy, &mut rng).is_err());
    }

    #[test]
    fn rng_is_reproducible_and_restorable() {
        let mut a = Rng::seed(42);
        let _ = a.next_u64();
        let mut b = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::seed(1).next_u64(), Rng::seed(2).next_u64());
        let u = Rng::seed(3).next_f64();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn normal_draws_have_the_right_moments() {
        let x = Rng::seed(9).normal_vec(20001, 2.0);
        assert_eq!(x.len(), 20001);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05, "{mean} {var}");
    }

    #[test]
    fn invalid_settings_are_errors() {
        assert!(Sampling::new(-1.0, 1.0, 0).is_err());
        assert!(Sampling::new(1.0, 0.0, 0).is_err());
        assert_eq!(Sampling::new(0.0, 1.0, 0).unwrap(), Sampling::Greedy);
    }

    /// log softmax(logits / t)[i], in f64, the plain way.
    fn reference_logprob(logits: &[f32], t: f32, i: usize) -> f64 {
        let z: Vec<f64> = logits.iter().map(|&x| x as f64 / t as f64).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        z[i] - m - z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    }

    /// The kept set of the module's definition, by a full sort (the plain formulation).
    fn reference_kept(logits: &[f32], t: f32, top_k: usize, top_p: f32) -> Vec<bool> {
        let inv = (1.0 / t as f64) as f32;
        let z: Vec<f32> = logits.iter().map(|&x| x * inv).collect();
        let mut sorted = z.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let mut floor = f32::NEG_INFINITY;
        if top_k > 0 && top_k < z.len() {
            floor = sorted[top_k - 1];
        }
        if top_p < 1.0 {
            let m = sorted[0];
            let mass: f64 = z.iter().filter(|&&v| v >= floor).map(|&v| (v - m).exp() as f64).sum();
            let mut acc = 0.0;
            for &v in sorted.iter().filter(|&&v| v >= floor) {
                acc += (v - m).exp() as f64;
                if acc >= top_p as f64 * mass {
                    floor = v;
                    break;
                }
            }
        }
        z.iter().map(|&v| v >= floor).collect()
    }

    #[test]
    fn draws_follow_the_truncated_distribution() {
        // z = logits / 0.8 = [2.5, 1.25, 0.625, 0, -1.25, 1.25]. Top-4 keeps {0, 1, 5, 2}; their
        // sorted masses 0.579, 0.166, 0.166, 0.089 reach 0.9 at the tied value 1.25, so top-p
        // keeps {0, 1, 5} (both ties).
        let logits = [2.0f32, 1.0, 0.5, 0.0, -1.0, 1.0];
        let sampling = Sampling::Random { temperature: 0.8, top_p: 0.9, top_k: 4 };
        let kept = reference_kept(&logits, 0.8, 4, 0.9);
        assert_eq!(kept, [true, true, false, false, false, true]);
        let weights: Vec<f64> = logits.iter().zip(&kept).map(|(&x, &k)| if k { (x as f64 / 0.8).exp() } else { 0.0 }).collect();
        let total: f64 = weights.iter().sum();
        let n = 30_000;
        let rows = Tensor::from_vec(logits.repeat(n), (n, logits.len()), &candle_core::Device::Cpu).unwrap();
        let host = sample_rows(&rows, sampling, &mut Rng::seed(11)).unwrap();
        let dev = device::sample(&rows, sampling, &(0..n).map({ let mut r = Rng::seed(11); move |_| r.next_f64() }).collect::<Vec<_>>()).unwrap();
        for (name, draws) in [("host", &host), ("tensor ops", &dev)] {
            let mut seen = [0usize; 6];
            for c in draws.iter() {
                seen[c.token as usize] += 1;
                let want = reference_logprob(&logits, 0.8, c.token as usize);
                assert!((c.logprob as f64 - want).abs() < 1e-5, "{name}: logprob {} vs {want}", c.logprob);
            }
            assert!(seen.iter().zip(&kept).all(|(&s, &k)| k || s == 0), "{name}: {seen:?}");
            // Chi-square with 2 degrees of freedom; 13.8 is its 0.1 % critical value.
            let chi2: f64 = (0..6).filter(|&i| kept[i]).map(|i| {
                let expected = n as f64 * weights[i] / total;
                (seen[i] as f64 - expected).powi(2) / expected
            }).sum();
            assert!(chi2 < 13.8, "{name}: chi-square {chi2} for {seen:?}");
        }
        for (i, (h, d)) in host.iter().zip(&dev).enumerate() {
            assert_eq!(h.token, d.token, "draw {i}: host and tensor ops differ for the same uniform");
        }
    }

    #[test]
    fn plain_temperature_draws_follow_softmax() {
        let logits = [0.3f32, -1.2, 2.0, 0.0, 1.1, -0.4, 0.9, 1.7];
        let sampling = Sampling::Random { temperature: 1.3, top_p: 1.0, top_k: 0 };
        let mut rng = Rng::seed(3);
        let n = 40_000;
        let mut seen = [0usize; 8];
        for _ in 0..n {
            seen[choose(&logits, sampling, &mut rng).unwrap().token as usize] += 1;
        }
        // Chi-square with 7 degrees of freedom; 24.3 is its 0.1 % critical value.
        let chi2: f64 = (0..8).map(|i| {
            let expected = n as f64 * reference_logprob(&logits, 1.3, i).exp();
            (seen[i] as f64 - expected).powi(2) / expected
        }).sum();
        assert!(chi2 < 24.3, "chi-square {chi2} for {seen:?}");
    }

    #[test]
    fn host_threshold_equals_the_full_sort() {
        // Spread and flat rows, with ties, so that top-p has to widen its sorted head (x8) past
        // the first 64 candidates, and top-k boundaries fall on ties.
        let mut rng = Rng::seed(5);
        for (v, std, ties) in [(5000usize, 0.3f32, true), (5000, 0.3, false), (5000, 5.0, true), (700, 2.0, false)] {
            let logits: Vec<f32> = rng.normal_vec(v, std).iter().map(|&x| if ties { (x * 8.0).round() / 8.0 } else { x }).collect();
            for (t, top_k, top_p) in [(1.0, 0, 0.9), (0.7, 0, 0.5), (1.0, 40, 1.0), (1.2, 300, 0.95), (1.0, 3, 0.2), (1.0, 0, 0.999), (1.0, 1000, 0.9), (1.4, 500, 0.95)] {
                let want = reference_kept(&logits, t, top_k, top_p);
                let inv = (1.0 / t as f64) as f32;
                let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) * inv;
                let mut s = Scratch::default();
                s.e = logits.iter().map(|&x| (x * inv - m).exp()).collect();
                let total = s.e.iter().map(|&e| e as f64).sum();
                let got = threshold(&logits, inv, m, top_k, top_p, total, &mut s).unwrap();
                let kept: Vec<bool> = logits.iter().map(|&x| x * inv >= got).collect();
                let count = |k: &[bool]| k.iter().filter(|&&x| x).count();
                assert!(kept == want, "v {v}, std {std}, ties {ties}, t {t}, top-k {top_k}, top-p {top_p}: kept {} ids, want {}", count(&kept), count(&want));
            }
        }
    }

    #[test]
    fn host_and_tensor_op_draws_agree_row_by_row() {
        let mut rng = Rng::seed(8);
        let (b, v) = (24, 3000);
        let data: Vec<f32> = rng.normal_vec(b * v, 3.0);
        let logits = Tensor::from_vec(data.clone(), (b, v), &candle_core::Device::Cpu).unwrap();
        for sampling in [
            Sampling::Greedy,
            Sampling::Random { temperature: 1.0, top_p: 1.0, top_k: 0 },
            Sampling::Random { temperature: 0.6, top_p: 1.0, top_k: 20 },
            Sampling::Random { temperature: 1.0, top_p: 0.8, top_k: 0 },
            Sampling::Random { temperature: 1.4, top_p: 0.95, top_k: 500 },
        ] {
            let mut a = Rng::seed(21);
            let host = sample_rows(&logits, sampling, &mut a).unwrap();
            let uniforms: Vec<f64> = { let mut r = Rng::seed(21); (0..b).map(|_| uniform(sampling, &mut r)).collect() };
            let dev = device::sample(&logits, sampling, &uniforms).unwrap();
            let t = match sampling { Sampling::Random { temperature, .. } => temperature, Sampling::Greedy => 1.0 };
            for row in 0..b {
                assert_eq!(host[row].token, dev[row].token, "{sampling:?}, row {row}");
                let want = reference_logprob(&data[row * v..(row + 1) * v], t, host[row].token as usize);
                assert!((host[row].logprob as f64 - want).abs() < 1e-5 && (dev[row].logprob as f64 - want).abs() < 1e-4, "{sampling:?}, row {row}");
                let one = choose(&data[row * v..(row + 1) * v], sampling, &mut Rng::from_state([0; 4])).unwrap();
                if sampling == Sampling::Greedy {
                    assert_eq!(one, host[row]);
                }
            }
            // One uniform per row, in row order (none for greedy).
            let mut c = Rng::seed(21);
            (0..b).for_each(|_| { uniform(sampling, &mut c); });
            assert_eq!(a, c);
        }
    }

    #[test]
    fn non_finite_rows_are_errors_naming_row_and_token() {
        let mut data = vec![0.5f32; 3 * 7];
        data[2 * 7 + 4] = f32::NAN;
        data[2 * 7 + 5] = f32::INFINITY;
        let logits = Tensor::from_vec(data.clone(), (3, 7), &candle_core::Device::Cpu).unwrap();
        for sampling in [Sampling::Greedy, Sampling::Random { temperature: 1.0, top_p: 0.9, top_k: 3 }] {
            for err in [sample_rows(&logits, sampling, &mut Rng::seed(0)).unwrap_err(), device::sample(&logits, sampling, &[0.5; 3]).unwrap_err()] {
                let nf = err.downcast_ref::<NonFiniteLogits>().expect("a NonFiniteLogits error");
                assert_eq!((nf.row, nf.token), (2, 4), "{err}");
                assert!(nf.value.is_nan());
            }
        }
        data[2 * 7 + 4] = f32::NEG_INFINITY;
        let logits = Tensor::from_vec(data, (3, 7), &candle_core::Device::Cpu).unwrap();
        let err = device::sample(&logits, Sampling::Greedy, &[0.0; 3]).unwrap_err().to_string();
        assert!(err.contains("row 2") && err.contains("token 4 has -inf"), "{err}");
    }
}
