//! Where a model's tensors come from, as Candle `VarBuilder`s the model code loads from
//! unchanged: checkpoint files as trainable variables (every tensor a [`Var`], for full
//! fine-tuning), or seeded random values (for models trained from scratch, benches and device
//! checks at real sizes). The plain frozen case is Candle's memory-mapped builder.
//!
//! Both builders record what the model asked for, by its checkpoint name, so that the caller
//! gets the parameter list (to train or to save) without the model code knowing about it.

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The tensors a builder handed out, by checkpoint name, in the order they were asked for.
#[derive(Debug)]
pub struct Recorded<T> {
    items: Mutex<Vec<(String, T)>>,
}

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Self { items: Mutex::new(Vec::new()) }
    }
}

impl<T: Clone> Recorded<T> {
    fn push(&self, name: &str, value: T) {
        if let Ok(mut items) = self.items.lock() {
            items.push((name.to_string(), value));
        }
    }

    fn find(&self, name: &str) -> Option<T> {
        self.items.lock().ok()?.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    /// Everything recorded so far, each name once.
    pub fn take(&self) -> Vec<(String, T)> {
        self.items.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

struct TrainableBackend {
    files: MmapedSafetensors,
    vars: Arc<Recorded<Var>>,
}

impl SimpleBackend for TrainableBackend {
    fn get(&self, shape: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(v) = self.vars.find(name) {
            return Ok(v.as_tensor().clone());
        }
        let t = self.files.load(name, dev)?.to_dtype(dtype)?;
        if t.shape() != &shape {
            candle_core::bail!("tensor `{name}` has shape {:?} in the checkpoint, the config expects {:?}", t.dims(), shape.dims());
        }
        let var = Var::from_tensor(&t)?;
        self.vars.push(name, var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.files.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.files.get(name).is_ok()
    }
}

/// A builder over safetensors `files` whose every tensor becomes a trainable [`Var`] (loaded in
/// `dtype`); the returned record lists them by checkpoint name once the model is built.
pub fn trainable(files: &[PathBuf], dtype: DType, device: &Device) -> Result<(VarBuilder<'static>, Arc<Recorded<Var>>)> {
    // SAFETY: the files are memory-mapped read-only; ttrav never writes to them while mapped.
    let files = unsafe { MmapedSafetensors::multi(files)? };
    let vars = Arc::new(Recorded::default());
    let backend: Box<dyn SimpleBackend> = Box::new(TrainableBackend { files, vars: vars.clone() });
    Ok((VarBuilder::from_backend(backend, dtype, device.clone()), vars))
}

struct RandomBackend {
    seed: u64,
    absent: Box<dyn Fn(&str) -> bool + Send + Sync>,
    tensors: Arc<Recorded<Tensor>>,
}

/// FNV-1a of a name: each tensor's random stream depends on its name, not on load order.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The initial value of a freshly made tensor, as Hugging Face initialises these models: norms
/// (1-D weights of `*norm*` / `ln_*` modules) at 1, biases at 0, everything else normal with
/// standard deviation `std`.
fn initial_value(name: &str, shape: &Shape, seed: u64, std: f32) -> Vec<f32> {
    let n = shape.elem_count();
    let module = name.rsplit('.').nth(1).unwrap_or("");
    let is_norm = shape.rank() == 1 && (module.contains("norm") || module.starts_with("ln_"));
    if name.ends_with(".weight") && is_norm {
        vec![1.0; n]
    } else if name.ends_with(".bias") {
        vec![0.0; n]
    } else {
        crate::sampling::Rng::seed(seed ^ name_hash(name)).normal_vec(n, std)
    }
}

impl SimpleBackend for RandomBackend {
    fn get(&self, shape: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(t) = self.tensors.find(name) {
            return Ok(t);
        }
        let t = Tensor::from_vec(initial_value(name, &shape, self.seed, 0.02), shape, dev)?.to_dtype(dtype)?;
        self.tensors.push(name, t.clone());
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("a random model has no tensor `{name}` of unknown shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        !(self.absent)(name)
    }
}

/// A builder that makes every tensor asked for from `seed` (norms at 1, biases at 0, the rest
/// normal with std 0.02, each from its own name's stream) and records
/// it; `absent` names the tensors a checkpoint of this model would not hold (e.g. a tied
/// `lm_head.weight`).
pub fn random(
    seed: u64,
    absent: impl Fn(&str) -> bool + Send + Sync + 'static,
    dtype: DType,
    device: &Device,
) -> (VarBuilder<'static>, Arc<Recorded<Tensor>>) {
    let tensors = Arc::new(Recorded::default());
    let backend: Box<dyn SimpleBackend> = Box::new(RandomBackend { seed, absent: Box::new(absent), tensors: tensors.clone() });
    (VarBuilder::from_backend(backend, dtype, device.clone()), tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_follow_the_name_not_the_order() -> Result<()> {
        let dev = Device::Cpu;
        let (vb, rec) = random(5, |_| false, DType::F32, &dev);
        let a = vb.pp("x").get((3, 4), "weight")?;
        let _ = vb.pp("y").get(4, "bias")?;
        let n = vb.pp("input_layernorm").get(4, "weight")?;
        let (vb2, _) = random(5, |_| false, DType::F32, &dev);
        let a2 = vb2.pp("x").get((3, 4), "weight")?;
        assert_eq!(a.to_vec2::<f32>()?, a2.to_vec2::<f32>()?);
        assert_eq!(n.to_vec1::<f32>()?, vec![1.0; 4]);
        let names: Vec<String> = rec.take().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["x.weight", "y.bias", "input_layernorm.weight"]);
        Ok(())
    }
}
