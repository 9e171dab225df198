//! Model resolution: turns a `--model` argument into files on disk.
//!
//! The argument is either a local directory or a hub id such as `Qwen/Qwen2.5-Omni-3B`. Hub ids
//! are looked up in the standard Hugging Face cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`) and, unless `HF_HUB_OFFLINE=1`, downloaded into it on a miss. Both
//! single-file and sharded (`model.safetensors.index.json`) checkpoints are supported. When a model
//! cannot be found, the error says where it looked and what to do.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where a model's files come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A directory on disk.
    Local(PathBuf),
    /// A hub repository, read through the local cache (and the network unless offline).
    Hub { id: String, cache_dir: PathBuf, offline: bool },
}

/// The hub cache directory, following huggingface_hub's precedence.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// True when `HF_HUB_OFFLINE` is set to a true value (1, true, yes, on).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

fn looks_like_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    !s.starts_with('.')
        && !s.starts_with('/')
        && !s.starts_with('~')
        && (parts.len() == 1 || parts.len() == 2)
        && parts.iter().all(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl ModelSource {
    /// Interprets a `--model` argument: an existing directory, else a hub id.
    pub fn resolve(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        if path.is_dir() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        if path.exists() {
            bail!("model path {arg} is a file; pass the directory that holds config.json and the weights");
        }
        if !looks_like_hub_id(arg) {
            bail!(
                "model directory {arg} does not exist (and it is not a hub id of the form ORG/NAME); \
                 check the path"
            );
        }
        Ok(Self::Hub { id: arg.to_string(), cache_dir: hub_cache_dir(), offline: hub_offline() })
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Hub { id, .. } => id.clone(),
        }
    }

    /// Looks for `file`: `Ok(Some)` when found, `Ok(None)` when the model has no such file, and
    /// `Err(reason)` when the hub could not be asked (no network, server error).
    fn fetch(&self, file: &str) -> std::result::Result<Option<PathBuf>, String> {
        match self {
            Self::Local(dir) => {
                let p = dir.join(file);
                Ok(p.is_file().then_some(p))
            }
            Self::Hub { id, cache_dir, offline } => {
                let cache = hf_hub::Cache::new(cache_dir.clone());
                if let Some(p) = cache.model(id.clone()).get(file) {
                    return Ok(Some(p));
                }
                if *offline {
                    return Ok(None);
                }
                let api = hf_hub::api::sync::ApiBuilder::new()
                    .with_cache_dir(cache_dir.clone())
                    .with_progress(false)
                    .build()
                    .map_err(|e| format!("cannot set up the hub client: {e}"))?;
                match api.model(id.clone()).get(file) {
                    Ok(p) => Ok(Some(p)),
                    Err(hf_hub::api::sync::ApiError::RequestError(e)) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// The path of `file` if the model has it (or if the hub cannot be reached and the cache
    /// lacks it); `Ok(None)` otherwise. For optional files such as a chat template.
    pub fn get_optional(&self, file: &str) -> Result<Option<PathBuf>> {
        Ok(self.fetch(file).unwrap_or(None))
    }

    /// The path of `file`; an error that says where it looked when the model lacks it.
    pub fn get(&self, file: &str) -> Result<PathBuf> {
        let network_error = match self.fetch(file) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        match self {
            Self::Local(dir) => bail!("{} not found in model directory {}", file, dir.display()),
            Self::Hub { id, cache_dir, offline } => {
                let folder = format!("models--{}", id.replace('/', "--"));
                let hint = if let Some(e) = network_error {
                    format!(
                        "it is not in the cache and the hub could not be reached ({e}). If this machine has no \
                         network, copy the model into the cache (or set HF_HOME / HF_HUB_CACHE to where it is), \
                         set HF_HUB_OFFLINE=1, or pass a local directory"
                    )
                } else if *offline {
                    "HF_HUB_OFFLINE is set, so the network was not tried. Download the model on a machine \
                     with network (e.g. `huggingface-cli download ID`) and copy the cache folder here, \
                     set HF_HOME / HF_HUB_CACHE to where it is, or pass a local directory"
                        .to_string()
                } else {
                    "the hub has no such file for this repository; check the id for typos".to_string()
                };
                bail!(
                    "{file} of model {id} not found: looked in {} (cache folder {folder}): {hint}",
                    cache_dir.display()
                )
            }
        }
    }

    /// The safetensors files that hold the weights: `model.safetensors`, or every shard named in
    /// `model.safetensors.index.json`.
    pub fn weight_files(&self) -> Result<Vec<PathBuf>> {
        if let Some(index) = self.get_optional("model.safetensors.index.json")? {
            let shards = shard_names(&index)?;
            return shards
                .iter()
                .map(|s| self.get(s).with_context(|| format!("shard {s} is named in {}", index.display())))
                .collect();
        }
        if let Some(single) = self.get_optional("model.safetensors")? {
            return Ok(vec![single]);
        }
        // Ask for the single file to get the full "where it looked" error.
        self.get("model.safetensors").map(|p| vec![p])
    }
}

fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let s = e.to_string();
    s.contains("404") || s.contains("Not Found") || s.contains("EntryNotFound")
}

/// The distinct shard file names of a sharded checkpoint's index, in first-seen order. A shard
/// must be a plain file name beside the index (no folders, no `..`).
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).with_context(|| format!("cannot read {}", index.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{} is not valid JSON (line {}, column {}): {e}", index.display(), e.line(), e.column())
    })?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: field `weight_map` is missing or not an object", index.display()))?;
    let mut shards: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .with_context(|| format!("{}: `weight_map.{tensor}` is not a file name", index.display()))?;
        let plain = Path::new(file).file_name().is_some_and(|n| n == std::ffi::OsStr::new(file));
        if !plain {
            bail!("{}: `weight_map.{tensor}` is {file:?}, not a file name beside the index", index.display());
        }
        if seen.insert(file) {
            shards.push(file.to_string());
        }
    }
    if shards.is_empty() {
        bail!("{}: `weight_map` is empty", index.display());
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_id_shapes() {
        assert!(looks_like_hub_id("Qwen/Qwen2.5-Omni-3B"));
        assert!(looks_like_hub_id("gpt2"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }

    #[test]
    fn shard_index_lists_distinct_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors.index.json");
        std::fs::write(
            &p,
            r#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
               "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let shards = shard_names(&p).unwrap();
        assert_eq!(shards, vec!["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
        std::fs::write(&p, r#"{"weight_map": 3}"#).unwrap();
        assert!(format!("{:#}", shard_names(&p).unwrap_err()).contains("weight_map"));
        for bad in ["../model.safetensors", "/etc/model.safetensors", "sub/model.safetensors", ".."] {
            std::fs::write(&p, format!(r#"{{"weight_map": {{"a": "{bad}"}}}}"#)).unwrap();
            let e = format!("{:#}", shard_names(&p).unwrap_err());
            assert!(e.contains("weight_map.a") && e.contains("not a file name"), "{bad}: {e}");
        }
    }
}
