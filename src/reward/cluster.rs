//! Cluster vote (OP-TTRAV's `simple_cluster` and `evolrl_cluster`).
//!
//! Non-empty answers are embedded and clustered with K-means (Lloyd's algorithm from k-means++
//! seeds as scikit-learn's, Euclidean, several seeded initialisations, the lowest inertia kept)
//! for every K in [k_min, min(k_max, m - 1)]; the K with
//! the best cosine silhouette wins (ties: the smaller K); with two answers or fewer each is its
//! own cluster. The modal cluster is the largest (ties: the tighter one, then the lower id) and
//! the anchor is the answer closest to its centroid. Rewards by variant:
//! - `simple`: 1 inside the modal cluster, 0 outside;
//! - `continuous`: (cos(answer, anchor) + 1) / 2;
//! - `kde`: mean over the others of exp((cos - 1) / tau), divided by the group's maximum;
//! - `evolrl`: 0.5 + 0.5u inside the modal cluster, -1 + 0.5u outside, u the answer's novelty
//!   min-max normalised within its band; empty answers -1.
//!
//! An optional novelty bonus adds beta * clip(1 - max cos to the last 100 anchors, 0, 1) (then
//! clips to [0, 1]); the anchors live in [`RewardState`], saved with checkpoints. Empty answers
//! get 0 (evolrl: -1).

use super::{check_finite, dot, length_stats, Diagnostics, Embedder, Group, RewardState, Scored};
use anyhow::Result;
use ndarray::Array2;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256Plus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    #[default]
    Simple,
    Continuous,
    Kde,
    Evolrl,
}

impl Variant {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "simple" => Self::Simple,
            "continuous" => Self::Continuous,
            "kde" => Self::Kde,
            "evolrl" | "evolrl_cluster" => Self::Evolrl,
            other => anyhow::bail!("unknown cluster variant `{other}`: use simple, continuous, kde or evolrl"),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub variant: Variant,
    pub kde_tau: f32,
    /// Weight of the novelty bonus (0 = off).
    pub novelty_beta: f32,
    /// Anchors kept for the novelty bonus.
    pub novelty_buffer: usize,
    pub k_min: usize,
    pub k_max: usize,
    pub n_init: usize,
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { variant: Variant::Simple, kde_tau: 0.2, novelty_beta: 0.0, novelty_buffer: 100, k_min: 2, k_max: 4, n_init: 4, seed: 0 }
    }
}

/// Differences below this count as ties (which go to the first candidate), so that float
/// rounding does not decide between answers that are equally good in exact arithmetic.
const TIE: f32 = 1e-6;

/// Index of the first value within [`TIE`] of the maximum.
fn first_max(values: &[f32]) -> usize {
    let max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    values.iter().position(|&v| v >= max - TIE).unwrap_or(0)
}

fn normalise(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt() + 1e-12;
    v.iter().map(|x| x / n).collect()
}

/// The points' Gram matrix `x_i . x_j`, row-major `[n * n]`, in f64 (one matrix product).
fn gram(points: &[Vec<f32>]) -> Vec<f64> {
    let n = points.len();
    let dim = points.first().map_or(0, |p| p.len());
    let x = Array2::from_shape_fn((n, dim), |(i, j)| points[i].get(j).copied().unwrap_or(0.0) as f64);
    let g = x.dot(&x.t());
    // Exactly symmetric, from the upper triangle.
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            out[i * n + j] = g[[i, j]];
            out[j * n + i] = g[[i, j]];
        }
    }
    out
}

/// Cosine distances `1 - cos` (clipped to [0, 2], 0 on the diagonal), row-major `[n * n]`, as
/// scikit-learn's `cosine_distances` (a zero vector counts as its own direction).
pub fn cosine_distances(points: &[Vec<f32>]) -> Vec<f64> {
    cosine_from_gram(&gram(points), points.len())
}

fn cosine_from_gram(g: &[f64], n: usize) -> Vec<f64> {
    let norm: Vec<f64> = (0..n).map(|i| g[i * n + i].sqrt()).map(|v| if v > 0.0 { v } else { 1.0 }).collect();
    let mut d = vec![0.0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let v = (1.0 - g[i * n + j] / (norm[i] * norm[j])).clamp(0.0, 2.0);
            d[i * n + j] = v;
            d[j * n + i] = v;
        }
    }
    d
}

/// The mean cosine silhouette of a labelling (scikit-learn's `silhouette_score(metric="cosine")`).
pub fn silhouette_cosine(points: &[Vec<f32>], labels: &[usize]) -> f64 {
    silhouette_from_distances(&cosine_distances(points), labels)
}

/// The mean silhouette from a precomputed distance matrix.
pub fn silhouette_from_distances(distances: &[f64], labels: &[usize]) -> f64 {
    let n = labels.len();
    let dist = |i: usize, j: usize| distances[i * n + j];
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut total = 0.0;
    for i in 0..n {
        let mut sums = vec![0.0f64; k];
        let mut counts = vec![0usize; k];
        for j in 0..n {
            sums[labels[j]] += dist(i, j);
            counts[labels[j]] += 1;
        }
        let own = labels[i];
        if counts[own] <= 1 {
            continue; // s = 0 for singletons
        }
        let a = sums[own] / (counts[own] - 1) as f64;
        let b = (0..k).filter(|&c| c != own && counts[c] > 0).map(|c| sums[c] / counts[c] as f64).fold(f64::INFINITY, f64::min);
        if !b.is_finite() {
            continue;
        }
        let s = (b - a) / a.max(b);
        if s.is_finite() {
            total += s;
        }
    }
    total / n as f64
}

/// A clustering: labels per point and centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    pub labels: Vec<usize>,
    pub centroids: Vec<Vec<f32>>,
    /// Silhouette of each K tried (None where it gave fewer than two clusters).
    pub silhouettes: Vec<(usize, Option<f64>)>,
}

/// K-means on `m` points given by their Gram matrix `g` (`[m * m]`): `n_init` runs of Lloyd's
/// algorithm from k-means++ seeds (scikit-learn's greedy variant: 2 + ln K candidates per seed, the
/// one that lowers the potential most), each to convergence (no label changes, at most 300
/// iterations), the run with the lowest inertia kept. A point's squared distance to a cluster's
/// mean is `G_xx - 2 mean_{j in S} G_xj + mean_{j,l in S} G_jl`, so an iteration costs O(m^2)
/// whatever the embedding's dimension. Returns the labels.
fn kmeans(g: &[f64], m: usize, k: usize, n_init: usize, seed: u64) -> Vec<usize> {
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let mut best: Option<(f64, Vec<usize>)> = None;
    for _ in 0..n_init.max(1) {
        let seeds = kmeans_plus_plus(g, m, k, &mut rng);
        // First assignment: to the nearest seed point.
        let mut labels: Vec<usize> = (0..m)
            .map(|x| {
                let d = |c: usize| g[x * m + x] + g[seeds[c] * m + seeds[c]] - 2.0 * g[x * m + seeds[c]];
                (0..k).fold(0, |b, c| if d(c) < d(b) { c } else { b })
            })
            .collect();
        for _ in 0..300 {
            let (next, _) = lloyd_step(g, m, k, &labels, true);
            let changed = next != labels;
            labels = next;
            if !changed {
                break;
            }
        }
        // The last assignment to the final means, with no relocation (ties: the lower cluster).
        let (labels, inertia) = lloyd_step(g, m, k, &labels, false);
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, labels));
        }
    }
    best.map(|(_, l)| l).unwrap_or_default()
}

/// One Lloyd iteration from `labels`: every point to its nearest cluster mean (ties: the lower
/// cluster); with `relocate`, an emptied cluster takes the point farthest from its mean, as
/// scikit-learn relocates empty clusters' centres. Returns the new labels and their inertia
/// (against the means they were assigned to).
fn lloyd_step(g: &[f64], m: usize, k: usize, labels: &[usize], relocate: bool) -> (Vec<usize>, f64) {
    let mut size = vec![0usize; k];
    for &l in labels {
        size[l] += 1;
    }
    // a[x * k + c] = sum over the members j of c of G_xj.
    let mut a = vec![0.0; m * k];
    for x in 0..m {
        let row = &g[x * m..(x + 1) * m];
        for (j, &l) in labels.iter().enumerate() {
            a[x * k + l] += row[j];
        }
    }
    let mut within = vec![0.0; k];
    for (x, &l) in labels.iter().enumerate() {
        within[l] += a[x * k + l];
    }
    let dist = |x: usize, c: usize| -> f64 {
        if size[c] == 0 {
            return f64::INFINITY;
        }
        let n = size[c] as f64;
        (g[x * m + x] - 2.0 * a[x * k + c] / n + within[c] / (n * n)).max(0.0)
    };
    let mut next = Vec::with_capacity(m);
    let mut nearest = Vec::with_capacity(m);
    for x in 0..m {
        let c = (0..k).fold(0, |b, c| if dist(x, c) < dist(x, b) { c } else { b });
        next.push(c);
        nearest.push(dist(x, c));
    }
    let mut counts = vec![0usize; k];
    for &l in &next {
        counts[l] += 1;
    }
    for c in 0..k {
        if relocate && counts[c] == 0 {
            let far = (0..m).filter(|&x| counts[next[x]] > 1).fold(None, |b: Option<usize>, x| match b {
                Some(b) if nearest[b] >= nearest[x] => Some(b),
                _ => Some(x),
            });
            if let Some(x) = far {
                counts[next[x]] -= 1;
                next[x] = c;
                counts[c] = 1;
                nearest[x] = 0.0;
            }
        }
    }
    (next, nearest.iter().sum())
}

/// k-means++ seeds (point indices) as scikit-learn's `_kmeans_plusplus`: the first uniformly at
/// random, each next one the best of `2 + ln k` candidates drawn with probability proportional to
/// the squared distance to the nearest seed so far (the one leaving the lowest potential).
fn kmeans_plus_plus(g: &[f64], m: usize, k: usize, rng: &mut Xoshiro256Plus) -> Vec<usize> {
    let uniform = |rng: &mut Xoshiro256Plus| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let d2 = |x: usize, y: usize| (g[x * m + x] + g[y * m + y] - 2.0 * g[x * m + y]).max(0.0);
    let trials = 2 + (k as f64).ln() as usize;
    let first = ((uniform(rng) * m as f64) as usize).min(m - 1);
    let mut seeds = vec![first];
    let mut closest: Vec<f64> = (0..m).map(|x| d2(x, first)).collect();
    while seeds.len() < k {
        let potential: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let target = uniform(rng) * potential;
            let mut acc = 0.0;
            let mut pick = m - 1;
            for (x, &c) in closest.iter().enumerate() {
                acc += c;
                if acc >= target {
                    pick = x;
                    break;
                }
            }
            let after: Vec<f64> = (0..m).map(|x| closest[x].min(d2(x, pick))).collect();
            let total: f64 = after.iter().sum();
            if best.as_ref().is_none_or(|(b, _, _)| total < *b) {
                best = Some((total, pick, after));
            }
        }
        let Some((_, pick, after)) = best else { break };
        seeds.push(pick);
        closest = after;
    }
    seeds
}

/// The mean of each label's points.
fn centroids(points: &[Vec<f32>], labels: &[usize], k: usize) -> Vec<Vec<f32>> {
    let dim = points[0].len();
    let mut sums = vec![vec![0f64; dim]; k];
    let mut counts = vec![0usize; k];
    for (p, &l) in points.iter().zip(labels) {
        counts[l] += 1;
        for (s, &x) in sums[l].iter_mut().zip(p) {
            *s += x as f64;
        }
    }
    sums.iter().zip(&counts).map(|(s, &c)| s.iter().map(|&v| (v / c.max(1) as f64) as f32).collect()).collect()
}

/// Renumbers labels to 0..K in order of first appearance, with centroids to match.
fn compact(labels: &[usize], centroids: &[Vec<f32>]) -> (Vec<usize>, Vec<Vec<f32>>) {
    let mut map: Vec<(usize, usize)> = Vec::new();
    let mut out = Vec::with_capacity(labels.len());
    for &l in labels {
        let id = match map.iter().find(|(old, _)| *old == l) {
            Some((_, new)) => *new,
            None => {
                map.push((l, map.len()));
                map.len() - 1
            }
        };
        out.push(id);
    }
    let cents = map.iter().map(|(old, _)| centroids[*old].clone()).collect();
    (out, cents)
}

/// K-means for each K in range, the best cosine silhouette kept (ties: the smaller K).
pub fn cluster_auto_k(points: &[Vec<f32>], cfg: &ClusterConfig) -> Clustering {
    let m = points.len();
    if m <= cfg.k_min {
        return Clustering { labels: (0..m).collect(), centroids: points.to_vec(), silhouettes: vec![] };
    }
    let dim = points[0].len();
    let mut mean = vec![0f32; dim];
    for p in points {
        for (a, x) in mean.iter_mut().zip(p) {
            *a += x / m as f32;
        }
    }
    let mut best = Clustering { labels: vec![0; m], centroids: vec![mean], silhouettes: vec![] };
    let mut best_score = -2.0f64;
    let mut silhouettes = Vec::new();
    let g = gram(points);
    let distances = cosine_from_gram(&g, m);
    for k in cfg.k_min..=cfg.k_max.min(m - 1) {
        let labels = kmeans(&g, m, k, cfg.n_init, cfg.seed);
        let (labels, centroids) = compact(&labels, &centroids(points, &labels, k));
        if centroids.len() < 2 {
            silhouettes.push((k, None));
            continue;
        }
        let s = silhouette_from_distances(&distances, &labels);
        silhouettes.push((k, Some(s)));
        if s > best_score {
            best_score = s;
            best = Clustering { labels, centroids, silhouettes: vec![] };
        }
    }
    best.silhouettes = silhouettes;
    best
}

/// The modal cluster: the largest; ties go to the highest mean cosine to its own normalised
/// centroid, then to the lower id.
pub fn modal_cluster(points: &[Vec<f32>], c: &Clustering) -> usize {
    let k = c.centroids.len();
    let mut sizes = vec![0usize; k];
    for &l in &c.labels {
        sizes[l] += 1;
    }
    let max = *sizes.iter().max().unwrap_or(&0);
    let mut best: Option<(usize, f32)> = None;
    for (cid, &size) in sizes.iter().enumerate() {
        if size != max {
            continue;
        }
        let cn = normalise(&c.centroids[cid]);
        let members: Vec<&Vec<f32>> = points.iter().zip(&c.labels).filter(|(_, &l)| l == cid).map(|(p, _)| p).collect();
        let tight = members.iter().map(|p| dot(p, &cn)).sum::<f32>() / members.len().max(1) as f32;
        if best.is_none_or(|(_, t)| tight > t + TIE) {
            best = Some((cid, tight));
        }
    }
    best.map_or(0, |(c, _)| c)
}

pub fn score(cfg: &ClusterConfig, group: &Group, embedder: &dyn Embedder, state: &mut RewardState) -> Result<Scored> {
    let n = group.candidates.len();
    let cleaned: Vec<String> = group.candidates.iter().map(|c| c.trim().to_string()).collect();
    let valid: Vec<usize> = (0..n).filter(|&i| !cleaned[i].is_empty()).collect();
    let (empty_share, mean_length) = length_stats(&group.candidates);
    let invalid_reward = if cfg.variant == Variant::Evolrl { -1.0 } else { 0.0 };
    let mut d = Diagnostics { empty_share, mean_length, ..Default::default() };
    let mut unique: Vec<&String> = valid.iter().map(|&i| &cleaned[i]).collect();
    unique.sort();
    unique.dedup();
    d.unique_answers = unique.len();
    if valid.is_empty() {
        d.clusters = Some(0);
        return Ok(Scored { rewards: vec![invalid_reward; n], label: None, anchor: None, diagnostics: d });
    }
    let texts: Vec<String> = valid.iter().map(|&i| cleaned[i].clone()).collect();
    let points = embedder.embed_texts(&texts)?;
    check_finite(&points)?;
    let m = points.len();
    let clustering = cluster_auto_k(&points, cfg);
    let modal = modal_cluster(&points, &clustering);
    let modal_dir = normalise(&clustering.centroids[modal]);
    let anchor_local = first_max(&points.iter().map(|p| dot(p, &modal_dir)).collect::<Vec<_>>());
    let unit: Vec<Vec<f32>> = points.iter().map(|p| normalise(p)).collect();
    let in_modal: Vec<bool> = clustering.labels.iter().map(|&l| l == modal).collect();
    let local: Vec<f32> = match cfg.variant {
        Variant::Simple => in_modal.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
        Variant::Continuous => {
            let a = normalise(&points[anchor_local]);
            unit.iter().map(|u| (dot(u, &a) + 1.0) / 2.0).collect()
        }
        Variant::Kde => {
            let dens: Vec<f32> = (0..m)
                .map(|i| {
                    if m == 1 {
                        return 1.0;
                    }
                    let s: f32 = (0..m).filter(|&j| j != i).map(|j| ((dot(&unit[i], &unit[j]) - 1.0) / cfg.kde_tau).exp()).sum();
                    s / (m - 1) as f32
                })
                .collect();
            let max = dens.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            if max > 0.0 { dens.iter().map(|x| x / max).collect() } else { vec![0.0; m] }
        }
        Variant::Evolrl => evolrl_rewards(&points, &in_modal),
    };
    let mut local = local;
    if cfg.variant != Variant::Evolrl {
        if cfg.novelty_beta > 0.0 && !state.novelty_buffer.is_empty() {
            let buffer: Vec<Vec<f32>> = state.novelty_buffer.iter().map(|b| normalise(b)).collect();
            for (r, u) in local.iter_mut().zip(&unit) {
                let closest = buffer.iter().map(|b| dot(u, b)).fold(f32::NEG_INFINITY, f32::max);
                let novelty = (1.0 - closest).clamp(0.0, 1.0);
                *r = (*r + cfg.novelty_beta * novelty).clamp(0.0, 1.0);
            }
        }
        state.novelty_buffer.push(points[anchor_local].clone());
        let excess = state.novelty_buffer.len().saturating_sub(cfg.novelty_buffer);
        state.novelty_buffer.drain(..excess);
    }
    let mut rewards = vec![invalid_reward; n];
    for (k, &i) in valid.iter().enumerate() {
        rewards[i] = local[k];
    }
    let modal_size = in_modal.iter().filter(|&&b| b).count();
    d.majority_ratio = modal_size as f32 / m as f32;
    d.clusters = Some(clustering.centroids.len());
    let sim: Vec<Vec<f32>> = unit.iter().map(|a| unit.iter().map(|b| dot(a, b)).collect()).collect();
    let (mean_sim, high) = super::medoid::pair_stats(&sim);
    d.mean_pairwise_similarity = Some(mean_sim);
    d.high_similarity_pairs = Some(high);
    d.collapse_warning = m > 1 && mean_sim > 0.92;
    let anchor = valid[anchor_local];
    Ok(Scored { rewards, label: Some(cleaned[anchor].clone()), anchor: Some(anchor), diagnostics: d })
}

/// EVOL-RL: banded rewards with novelty inside each band.
fn evolrl_rewards(points: &[Vec<f32>], in_modal: &[bool]) -> Vec<f32> {
    let m = points.len();
    let sim = |i: usize, j: usize| dot(&points[i], &points[j]);
    let novelty: Vec<f32> = (0..m)
        .map(|i| {
            let others: Vec<usize> = (0..m).filter(|&j| j != i).collect();
            let gmax = if others.is_empty() { 0.0 } else { others.iter().map(|&j| sim(i, j)).fold(f32::NEG_INFINITY, f32::max) };
            let band: Vec<usize> = others.iter().copied().filter(|&j| in_modal[j] == in_modal[i]).collect();
            let intra = if band.is_empty() { 0.0 } else { band.iter().map(|&j| sim(i, j)).sum::<f32>() / band.len() as f32 };
            1.0 - 0.5 * intra - 0.5 * gmax
        })
        .collect();
    let mut u = vec![0.5f32; m];
    for band in [true, false] {
        let idx: Vec<usize> = (0..m).filter(|&i| in_modal[i] == band).collect();
        if idx.is_empty() {
            continue;
        }
        let lo = idx.iter().map(|&i| novelty[i]).fold(f32::INFINITY, f32::min);
        let hi = idx.iter().map(|&i| novelty[i]).fold(f32::NEG_INFINITY, f32::max);
        for &i in &idx {
            u[i] = if hi - lo < 1e-9 { 0.5 } else { (novelty[i] - lo) / (hi - lo) };
        }
    }
    (0..m).map(|i| if in_modal[i] { 0.5 + 0.5 * u[i] } else { -1.0 + 0.5 * u[i] }).collect()
}
