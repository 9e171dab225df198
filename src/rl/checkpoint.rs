//! Adapters and training checkpoints on disk.
//!
//! Adapters are PEFT-compatible: `adapter_model.safetensors` (`<module>.lora_A.weight` `[r, in]`,
//! `<module>.lora_B.weight` `[out, r]`) and `adapter_config.json`. A checkpoint directory holds
//! the adapter, the optimizer's moments (`optimizer.safetensors`) and `state.json` (step, RNG
//! state, data position, reward state, configuration). Checkpoints are written to a temporary
//! directory and renamed into place, so a crash never leaves a half-written one.

use crate::nn::Lora;
use crate::omni::thinker::Thinker;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// PEFT's adapter_config.json (the fields ttrav writes and reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    #[serde(default = "none")]
    pub bias: String,
    #[serde(default = "causal")]
    pub task_type: String,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub inference_mode: bool,
}

fn none() -> String {
    "none".into()
}
fn causal() -> String {
    "CAUSAL_LM".into()
}

/// Writes an adapter (PEFT layout) into `dir`.
pub fn save_adapter(dir: &Path, adapters: &[(String, Arc<Lora>)], cfg: &AdapterConfig) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, lora) in adapters {
        tensors.insert(format!("{name}.lora_A.weight"), lora.a.as_tensor().to_device(&Device::Cpu)?);
        tensors.insert(format!("{name}.lora_B.weight"), lora.b.as_tensor().to_device(&Device::Cpu)?);
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    std::fs::write(dir.join("adapter_config.json"), serde_json::to_string_pretty(cfg)?)?;
    Ok(())
}

/// Reads an adapter directory's config.
pub fn read_adapter_config(dir: &Path) -> Result<AdapterConfig> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {} (is {} an adapter directory?)", path.display(), dir.display()))?;
    let cfg: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a valid adapter config (line {}, column {}): {e}", path.display(), e.line(), e.column()))?;
    if cfg.peft_type != "LORA" {
        bail!("{}: peft_type is {}, only LORA adapters are supported", path.display(), cfg.peft_type);
    }
    if !cfg.lora_alpha.is_finite() {
        bail!("{}: lora_alpha is {}; it must be a finite number", path.display(), cfg.lora_alpha);
    }
    Ok(cfg)
}

/// Checks that the adapter's tensors have the config's rank `r` (before any adapter of that rank
/// is made: a corrupt `r` must not size an allocation).
fn check_rank(cfg: &AdapterConfig, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut found = false;
    for (key, t) in tensors {
        let rank_dim = if key.ends_with(".lora_A.weight") {
            0
        } else if key.ends_with(".lora_B.weight") {
            1
        } else {
            continue;
        };
        found = true;
        if t.rank() != 2 || t.dims()[rank_dim] != cfg.r {
            bail!("{}: tensor `{key}` has shape {:?}, which does not fit the rank r = {} of adapter_config.json", path.display(), t.dims(), cfg.r);
        }
    }
    if !found {
        bail!("{}: it holds no LoRA tensors (`*.lora_A.weight`, `*.lora_B.weight`)", path.display());
    }
    Ok(())
}

/// Attaches the adapter in `dir` to `thinker` (its weights replace the initial ones).
pub fn load_adapter(thinker: &mut Thinker, dir: &Path) -> Result<(Vec<(String, Arc<Lora>)>, AdapterConfig)> {
    let cfg = read_adapter_config(dir)?;
    let path = dir.join("adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&path, thinker.device()).with_context(|| format!("cannot read {}", path.display()))?;
    check_rank(&cfg, &tensors, &path)?;
    let config_file = || format!("adapter config {}", dir.join("adapter_config.json").display());
    let adapters =
        super::lora::attach_lora(thinker, cfg.r, cfg.lora_alpha, &cfg.target_modules, 0.0, &mut crate::sampling::Rng::seed(0))
            .with_context(config_file)?;
    super::lora::set_lora_dropout(thinker, cfg.lora_dropout as f32).with_context(config_file)?;
    for (name, lora) in &adapters {
        for (part, var) in [("lora_A", &lora.a), ("lora_B", &lora.b)] {
            let key = format!("{name}.{part}.weight");
            let t = tensors.get(&key).with_context(|| format!("{}: tensor `{key}` is missing", path.display()))?;
            if t.dims() != var.as_tensor().dims() {
                bail!("{}: tensor `{key}` has shape {:?}, the model needs {:?}", path.display(), t.dims(), var.as_tensor().dims());
            }
            var.set(&t.to_dtype(var.dtype())?)?;
        }
    }
    Ok((adapters, cfg))
}

/// The file holding fully fine-tuned weights in a checkpoint.
pub const FULL_WEIGHTS: &str = "trainable.safetensors";

/// Saves fully fine-tuned weights by name.
pub fn save_full(dir: &Path, params: &[(String, candle_core::Var)]) -> Result<()> {
    let t: HashMap<String, Tensor> =
        params.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().to_device(&Device::Cpu)?))).collect::<Result<_>>()?;
    candle_core::safetensors::save(&t, dir.join(FULL_WEIGHTS))?;
    Ok(())
}

/// Makes the decoder trainable and loads fully fine-tuned weights from `dir` (with `keep_frozen`,
/// the loaded weights remain the frozen reference, see [`super::lora::make_decoder_trainable`]).
pub fn load_full(thinker: &mut Thinker, dir: &Path, keep_frozen: bool) -> Result<Vec<(String, candle_core::Var)>> {
    let params = super::lora::make_decoder_trainable(thinker, keep_frozen)?;
    set_params(&dir.join(FULL_WEIGHTS), &params)?;
    Ok(params)
}

/// Sets each variable from the tensor of its name in the safetensors file at `path` (every one
/// must be there, with the variable's shape).
pub fn set_params(path: &Path, params: &[(String, candle_core::Var)]) -> Result<()> {
    let device = params.first().map_or(Device::Cpu, |(_, v)| v.device().clone());
    let t = candle_core::safetensors::load(path, &device).with_context(|| format!("cannot read {}", path.display()))?;
    for (name, var) in params {
        let w = t.get(name).with_context(|| format!("{}: tensor `{name}` is missing", path.display()))?;
        if w.dims() != var.as_tensor().dims() {
            bail!("{}: tensor `{name}` has shape {:?}, the model needs {:?}", path.display(), w.dims(), var.as_tensor().dims());
        }
        var.set(&w.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Loads what a training run produced into `thinker`: a LoRA adapter (PEFT layout) or fully
/// fine-tuned weights.
pub fn load_trained(thinker: &mut Thinker, dir: &Path) -> Result<()> {
    if dir.join(FULL_WEIGHTS).is_file() {
        load_full(thinker, dir, false)?;
    } else {
        load_adapter(thinker, dir)?;
    }
    Ok(())
}

/// Writes `write` into a fresh temporary directory and renames it to `dir` (replacing any
/// previous one only once the new one is complete).
pub fn write_atomically(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint");
    let tmp = parent.join(format!(".{name}.tmp"));
    let old = parent.join(format!(".{name}.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    write(&tmp)?;
    for entry in std::fs::read_dir(&tmp)?.flatten() {
        if let Ok(f) = std::fs::File::open(entry.path()) {
            let _ = f.sync_all();
        }
    }
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The checkpoint to resume from: `dir`, or the previous one a crash mid-rename left behind.
pub fn find_checkpoint(dir: &Path) -> Option<PathBuf> {
    if dir.join("state.json").is_file() {
        return Some(dir.to_path_buf());
    }
    let name = dir.file_name()?.to_str()?;
    let old = dir.parent()?.join(format!(".{name}.old"));
    old.join("state.json").is_file().then_some(old)
}

/// Saves optimizer moments as `m.<i>` / `v.<i>`.
pub fn save_moments(path: &Path, m: &[Tensor], v: &[Tensor]) -> Result<()> {
    let mut t = HashMap::new();
    for (i, (a, b)) in m.iter().zip(v).enumerate() {
        t.insert(format!("m.{i}"), a.to_device(&Device::Cpu)?);
        t.insert(format!("v.{i}"), b.to_device(&Device::Cpu)?);
    }
    candle_core::safetensors::save(&t, path)?;
    Ok(())
}

/// Loads moments saved by [`save_moments`] for `params` (in optimizer order): each must be f32
/// and of its parameter's shape, and the file must hold no others.
pub fn load_moments(path: &Path, params: &[(String, candle_core::Var)], device: &Device) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let t = candle_core::safetensors::load(path, device).with_context(|| format!("cannot read {}", path.display()))?;
    let get = |kind: &str, i: usize, (name, param): &(String, candle_core::Var)| -> Result<Tensor> {
        let key = format!("{kind}.{i}");
        let m = t.get(&key).with_context(|| format!("{}: `{key}` (the moment of `{name}`) is missing", path.display()))?;
        if m.dims() != param.dims() || m.dtype() != candle_core::DType::F32 {
            bail!(
                "{}: `{key}` is {:?} {:?}, but the moment of `{name}` must be F32 {:?} (the checkpoint does not fit this adapter)",
                path.display(),
                m.dtype(),
                m.dims(),
                param.dims()
            );
        }
        Ok(m.clone())
    };
    let m = params.iter().enumerate().map(|(i, p)| get("m", i, p)).collect::<Result<Vec<_>>>()?;
    let v = params.iter().enumerate().map(|(i, p)| get("v", i, p)).collect::<Result<Vec<_>>>()?;
    if t.len() != 2 * params.len() {
        bail!("{}: it holds {} moments, but the adapter has {} parameters (2 moments each)", path.display(), t.len(), params.len());
    }
    Ok((m, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    #[test]
    fn moments_must_fit_their_parameters() {
        let dev = Device::Cpu;
        let params: Vec<(String, Var)> = vec![
            ("a.lora_A".into(), Var::zeros((2, 3), DType::F32, &dev).unwrap()),
            ("a.lora_B".into(), Var::zeros((4, 2), DType::F32, &dev).unwrap()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let ones = |shape: &[usize], dtype| Tensor::ones(shape, dtype, &dev).unwrap();
        let good = [ones(&[2, 3], DType::F32), ones(&[4, 2], DType::F32)];
        save_moments(&path, &good, &good).unwrap();
        let (m, v) = load_moments(&path, &params, &dev).unwrap();
        assert_eq!((m[1].dims(), v[0].dims()), (&[4, 2][..], &[2, 3][..]));

        let cases: Vec<(Vec<Tensor>, &str)> = vec![
            (vec![ones(&[3, 2], DType::F32), ones(&[4, 2], DType::F32)], "`m.0` is F32 [3, 2], but the moment of `a.lora_A` must be F32 [2, 3]"),
            (vec![ones(&[2, 3], DType::F32), ones(&[4, 2], DType::F16)], "`m.1` is F16"),
            (vec![ones(&[2, 3], DType::F32)], "`m.1` (the moment of `a.lora_B`) is missing"),
            (vec![ones(&[2, 3], DType::F32), ones(&[4, 2], DType::F32), ones(&[1], DType::F32)], "holds 6 moments"),
        ];
        for (m, want) in cases {
            save_moments(&path, &m, &m).unwrap();
            let e = format!("{:#}", load_moments(&path, &params, &dev).unwrap_err());
            assert!(e.contains("optimizer.safetensors") && e.contains(want), "{e}");
        }
    }
}
