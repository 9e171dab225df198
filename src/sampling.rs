//! Token sampling, kept apart from the model: greedy, or temperature with top-k and top-p
//! (applied in that order, as transformers' logits warpers do), and a small seeded random number
//! generator whose whole state can be saved and restored (for reproducible, resumable runs).

use anyhow::{bail, Result};

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

/// Chooses the next token from one row of logits. A row holding NaN or an infinity (a broken
/// model or weights) is an error naming the first bad index, never a draw.
pub fn choose(logits: &[f32], sampling: Sampling, rng: &mut Rng) -> Result<Choice> {
    if logits.is_empty() {
        bail!("the logits are empty");
    }
    if let Some(i) = logits.iter().position(|x| !x.is_finite()) {
        bail!("the logits are not finite (token {i} has {}): the model or its weights are broken", logits[i]);
    }
    Ok(match sampling {
        Sampling::Greedy => {
            let token = argmax(logits);
            Choice { token: token as u32, logprob: log_softmax_at(logits, 1.0, token) }
        }
        Sampling::Random { temperature, top_p, top_k } => {
            let token = draw(logits, temperature, top_p, top_k, rng);
            Choice { token: token as u32, logprob: log_softmax_at(logits, temperature, token) }
        }
    })
}

fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

fn log_softmax_at(logits: &[f32], temperature: f32, index: usize) -> f32 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64 / temperature as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 / temperature as f64 - max).exp()).sum();
    (logits[index] as f64 / temperature as f64 - max - sum.ln()) as f32
}

fn draw(logits: &[f32], temperature: f32, top_p: f32, top_k: usize, rng: &mut Rng) -> usize {
    // Candidates in descending order of logit (stable: lower id first on ties).
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 && top_k < order.len() {
        order.truncate(top_k);
    }
    let max = logits[order[0]] as f64 / temperature as f64;
    let mut probs: Vec<f64> = order.iter().map(|&i| (logits[i] as f64 / temperature as f64 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    // Keep a token while the mass strictly before it is below top_p (at least one token).
    if top_p < 1.0 {
        let mut mass = 0.0;
        let mut keep = 0;
        for p in &probs {
            if keep > 0 && mass >= top_p as f64 {
                break;
            }
            mass += p;
            keep += 1;
        }
        order.truncate(keep);
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.next_f64() * total;
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            return order[i];
        }
        u -= p;
    }
    order[order.len() - 1]
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
}
