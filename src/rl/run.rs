//! What every training run (`adapt`, `sft`) shares: the data order, a fingerprint of the data
//! file, the check that a resumed run has the settings and data it was started with,
//! `metrics.jsonl` kept in step with the checkpoint, and the progress bar.

use anyhow::{bail, Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

/// The data order of an epoch: a permutation of `0..n` from the seed.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = crate::sampling::Rng::seed(seed ^ (0x5EED_0000 + epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Where a run is in its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataPosition {
    pub epoch: usize,
    pub index: usize,
}

/// Walks a dataset of `n` items in a seeded order, epoch after epoch.
pub struct DataCursor {
    pub position: DataPosition,
    n: usize,
    seed: u64,
    order: (usize, Vec<usize>),
}

impl DataCursor {
    /// A cursor at `position` (a position past the end of a shorter dataset starts the next
    /// epoch).
    pub fn new(n: usize, seed: u64, position: DataPosition) -> Self {
        let position = if position.index >= n { DataPosition { epoch: position.epoch.saturating_add(1), index: 0 } } else { position };
        Self { position, n, seed, order: (position.epoch, epoch_order(n, seed, position.epoch)) }
    }

    /// The next `k` items (`k` at most the dataset's size) of one epoch: when fewer than `k`
    /// are left in the epoch they are passed over and the next epoch starts (verl's loader with
    /// `drop_last`).
    pub fn next_batch(&mut self, k: usize) -> Vec<usize> {
        let k = k.min(self.n);
        if self.position.index > 0 && self.n - self.position.index < k {
            self.position = DataPosition { epoch: self.position.epoch.saturating_add(1), index: 0 };
        }
        (0..k).map(|_| self.next_index()).collect()
    }

    /// The index of the next item.
    pub fn next_index(&mut self) -> usize {
        if self.order.0 != self.position.epoch {
            self.order = (self.position.epoch, epoch_order(self.n, self.seed, self.position.epoch));
        }
        let i = self.order.1[self.position.index];
        self.position.index += 1;
        if self.position.index == self.n {
            self.position = DataPosition { epoch: self.position.epoch.saturating_add(1), index: 0 };
        }
        i
    }
}

/// What identifies a data file: its size and a 64-bit FNV-1a hash of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub bytes: u64,
    pub fnv1a: u64,
}

impl Fingerprint {
    pub fn of_file(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let fnv1a = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Ok(Self { bytes: data.len() as u64, fnv1a })
    }
}

/// The settings that differ between a saved run and this one, as `field: saved -> now` (fields
/// named in `ignore` do not count: e.g. the step budget, which a resumed run may extend).
pub fn config_changes<T: Serialize>(saved: &T, now: &T, ignore: &[&str]) -> Result<Vec<String>> {
    let (a, b) = (serde_json::to_value(saved)?, serde_json::to_value(now)?);
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { bail!("run settings are not a JSON object") };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|k| !ignore.contains(&k.as_str()))
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&serde_json::Value::Null), b.get(k).unwrap_or(&serde_json::Value::Null));
            (x != y).then(|| format!("{k}: {x} -> {y}"))
        })
        .collect())
}

/// Refuses to resume `dir` when the settings or the data file changed, unless `allow`.
pub fn check_resume<T: Serialize>(dir: &Path, saved: &T, now: &T, ignore: &[&str], data: Option<(&Fingerprint, &Fingerprint, &Path)>, allow: bool) -> Result<()> {
    let mut changes = config_changes(saved, now, ignore)?;
    if let Some((was, is, path)) = data {
        if was != is {
            changes.push(format!("data file {}: {} bytes (hash {:016x}) -> {} bytes (hash {:016x})", path.display(), was.bytes, was.fnv1a, is.bytes, is.fnv1a));
        }
    }
    if !changes.is_empty() && !allow {
        bail!(
            "cannot resume from {}: the run was started with other settings or data ({}); pass --allow-changes to resume anyway",
            dir.display(),
            changes.join("; ")
        );
    }
    for c in &changes {
        eprintln!("resuming with a change: {c}");
    }
    Ok(())
}

/// Opens `metrics.jsonl` for appending after cutting it to its first `keep` lines (the steps the
/// checkpoint has); returns those steps' metrics. When the file holds fewer lines (a run resumed
/// from a checkpoint into a new folder), they come from `checkpoint`'s own copy.
pub fn reopen_metrics<M: DeserializeOwned>(path: &Path, keep: usize, checkpoint: Option<&Path>) -> Result<(Vec<M>, std::fs::File)> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    let mut text = read(path)?;
    if let (Some(dir), true) = (checkpoint, text.lines().count() < keep) {
        text = read(&dir.join(METRICS))?;
    }
    let kept: Vec<&str> = text.lines().take(keep).collect();
    if kept.len() < keep {
        bail!("{} holds {} lines but the checkpoint is at step {keep}", path.display(), kept.len());
    }
    let metrics = kept
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a metrics line", path.display(), i + 1)))
        .collect::<Result<Vec<M>>>()?;
    std::fs::write(path, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).with_context(|| format!("cannot write {}", path.display()))?;
    let file = std::fs::OpenOptions::new().append(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok((metrics, file))
}

/// The name of the metrics file, in a run's folder and in each checkpoint.
pub const METRICS: &str = "metrics.jsonl";

/// Writes `metrics` (one JSON line each) to `path`.
pub fn write_metrics<M: Serialize>(path: &Path, metrics: &[M]) -> Result<()> {
    let mut text = String::new();
    for m in metrics {
        text += &serde_json::to_string(m)?;
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A progress bar over `total` steps starting at `done` (hidden when `quiet`).
pub fn progress_bar(total: usize, done: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let p = indicatif::ProgressBar::new(total as u64);
    p.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    p.set_position(done as u64);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Cfg {
        lr: f64,
        steps: usize,
        name: &'static str,
    }

    #[test]
    fn changes_name_the_fields() -> Result<()> {
        let a = Cfg { lr: 1e-3, steps: 10, name: "x" };
        let b = Cfg { lr: 2e-3, steps: 20, name: "x" };
        assert_eq!(config_changes(&a, &b, &["steps"])?, vec!["lr: 0.001 -> 0.002".to_string()]);
        let dir = Path::new("/tmp/run");
        let err = check_resume(dir, &a, &b, &[], None, false).unwrap_err().to_string();
        assert!(err.contains("lr: 0.001 -> 0.002") && err.contains("steps: 10 -> 20") && err.contains("--allow-changes"), "{err}");
        assert!(check_resume(dir, &a, &b, &[], None, true).is_ok());
        Ok(())
    }

    #[test]
    fn cursor_walks_epochs_in_seeded_orders() {
        let mut c = DataCursor::new(3, 1, DataPosition::default());
        let first: Vec<usize> = (0..3).map(|_| c.next_index()).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
        assert_eq!(c.position, DataPosition { epoch: 1, index: 0 });
        let mut resumed = DataCursor::new(3, 1, DataPosition { epoch: 0, index: 1 });
        assert_eq!(resumed.next_index(), first[1]);
        // Batches of 2 from 3 items: the third item of each epoch is passed over.
        let mut c = DataCursor::new(3, 1, DataPosition::default());
        let a = c.next_batch(2);
        let b = c.next_batch(2);
        assert_eq!(a, first[..2].to_vec());
        assert_eq!(c.position, DataPosition { epoch: 1, index: 2 });
        assert!(b.iter().all(|i| *i < 3));
        // A checkpoint past the end of a shrunk dataset continues with the next epoch.
        assert_eq!(DataCursor::new(2, 1, DataPosition { epoch: 0, index: 5 }).position, DataPosition { epoch: 1, index: 0 });
    }
}
