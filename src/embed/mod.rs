//! Sentence encoders in process: BERT (BGE, MiniLM), MPNet and Qwen3-Embedding, giving the same
//! L2-normalised vectors as sentence-transformers.
//!
//! A model is a sentence-transformers directory (local or from the hub cache). Its family comes
//! from config.json; pooling, maximum length and lower-casing from its own modules.json,
//! 1_Pooling/config.json and sentence_bert_config.json, which override any truncation or fixed
//! padding in tokenizer.json. Texts are batched by length so that padding stays small, and
//! recent embeddings are kept in a bounded cache keyed by the text.

pub mod mpnet;
pub mod qwen3;
pub mod st_config;

use crate::hub::ModelSource;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use st_config::{Pooling, SentenceConfig};
use std::collections::{HashMap, VecDeque};

/// Short names and the hub ids they stand for (OP-TTRAV's `TTRL_OE_ENCODER` values among them).
pub const SHORT_NAMES: &[(&str, &str)] = &[
    ("bge", "BAAI/bge-small-en-v1.5"),
    ("bge-large", "BAAI/bge-large-en-v1.5"),
    ("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    ("mpnet", "sentence-transformers/paraphrase-mpnet-base-v2"),
    ("qwen3", "Qwen/Qwen3-Embedding-4B"),
];

/// The instruction OP-TTRAV puts before every text it embeds with Qwen3-Embedding.
pub const QWEN3_INSTRUCTION: &str = "Instruct: Retrieve passages with the same semantic meaning as the query\nQuery: ";

/// The default encoder: `TTRL_OE_ENCODER` when set, else `bge` (as in OP-TTRAV).
pub fn default_encoder_name() -> String {
    std::env::var("TTRL_OE_ENCODER").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "bge".into())
}

/// Resolves a short name, a hub id or a local directory.
pub fn resolve_encoder(name: &str) -> Result<ModelSource> {
    if let Some((_, id)) = SHORT_NAMES.iter().find(|(short, _)| *short == name) {
        return ModelSource::resolve(id);
    }
    let known = || SHORT_NAMES.iter().map(|(s, id)| format!("{s} ({id})")).collect::<Vec<_>>().join(", ");
    // Not a short name, not a directory, and not of the ORG/NAME form of a hub id.
    if !std::path::Path::new(name).is_dir() && !name.contains('/') {
        bail!("unknown encoder `{name}`: known short names are {}; or pass a hub id (ORG/NAME) or a directory", known());
    }
    ModelSource::resolve(name).map_err(|e| anyhow::anyhow!("unknown encoder `{name}`: {e:#}\nknown short names: {}", known()))
}

enum Backbone {
    Bert(candle_transformers::models::bert::BertModel),
    MpNet(mpnet::MpNet),
    Qwen3(qwen3::Qwen3Embedder),
}

/// Which side padding goes on for this family.
fn left_padded(b: &Backbone) -> bool {
    matches!(b, Backbone::Qwen3(_))
}

/// A bounded text -> embedding cache; the oldest entry leaves first.
struct EmbeddingCache {
    capacity: usize,
    map: HashMap<String, Vec<f32>>,
    order: VecDeque<String>,
}

impl EmbeddingCache {
    fn get(&self, text: &str) -> Option<&Vec<f32>> {
        self.map.get(text)
    }

    fn insert(&mut self, text: String, v: Vec<f32>) {
        if self.capacity == 0 || self.map.contains_key(&text) {
            return;
        }
        if self.map.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(text.clone());
        self.map.insert(text, v);
    }
}

/// A loaded sentence encoder.
pub struct Encoder {
    backbone: Backbone,
    tokenizer: tokenizers::Tokenizer,
    config: SentenceConfig,
    pad_id: u32,
    /// Put before every text (Qwen3-Embedding: OP-TTRAV's instruction).
    pub prefix: String,
    pub batch_size: usize,
    device: Device,
    name: String,
    cache: std::sync::Mutex<EmbeddingCache>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("name", &self.name).field("config", &self.config).finish()
    }
}

/// Reads the `model_type` of a config.json.
fn model_type(path: &std::path::Path) -> Result<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON (line {}, column {}): {e}", path.display(), e.line(), e.column()))?;
    let t = v.get("model_type").and_then(|t| t.as_str()).unwrap_or("").to_string();
    Ok((t, v))
}

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value, path: &std::path::Path) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| anyhow::anyhow!("{}: field `{}`: {}", path.display(), e.path(), e.inner()))
}

impl Encoder {
    /// Loads an encoder by short name, hub id or directory, on `device` (f32).
    pub fn load(name: &str, device: &Device) -> Result<Self> {
        let model = resolve_encoder(name)?;
        let config_path = model.get("config.json")?;
        let (family, raw) = model_type(&config_path)?;
        let files = model.weight_files()?;
        // SAFETY: read-only memory maps of files ttrav does not modify.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device) }
            .with_context(|| format!("cannot read the weights of encoder {}", model.describe()))?;
        let wrap = |e: candle_core::Error| anyhow::anyhow!("encoder {}: {e}", model.describe());
        let (backbone, pooling, max_len) = match family.as_str() {
            "bert" => {
                let cfg: candle_transformers::models::bert::Config = parse(raw, &config_path)?;
                let max = cfg.max_position_embeddings;
                (Backbone::Bert(candle_transformers::models::bert::BertModel::load(vb, &cfg).map_err(wrap)?), Pooling::Mean, max)
            }
            "mpnet" => {
                let cfg: mpnet::MpNetConfig = parse(raw, &config_path)?;
                let max = cfg.max_position_embeddings - 2;
                (Backbone::MpNet(mpnet::MpNet::load(&cfg, vb).map_err(wrap)?), Pooling::Mean, max)
            }
            "qwen3" => {
                let cfg: qwen3::Qwen3Config = parse(raw, &config_path)?;
                let max = cfg.max_position_embeddings.min(8192);
                (Backbone::Qwen3(qwen3::Qwen3Embedder::load(&cfg, vb).map_err(wrap)?), Pooling::LastToken, max)
            }
            other => bail!(
                "{}: model_type `{other}` is not a supported encoder family (bert, mpnet, qwen3)",
                config_path.display()
            ),
        };
        let config = SentenceConfig::load(&model, pooling, max_len)?;
        if let Some(note) = &config.fallback_note {
            eprintln!("note: {note}");
        }
        let tok_path = model.get("tokenizer.json")?;
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", tok_path.display()))?;
        // sentence-transformers truncates to max_seq_length and pads to the batch's longest text;
        // whatever tokenizer.json says about either is overridden.
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: config.max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("{}: {e}", tok_path.display()))?;
        tokenizer.with_padding(None);
        let pad_id = pad_token_id(&tokenizer, &model)?;
        let prefix = if matches!(backbone, Backbone::Qwen3(_)) { QWEN3_INSTRUCTION.to_string() } else { String::new() };
        Ok(Self {
            backbone,
            tokenizer,
            config,
            pad_id,
            prefix,
            batch_size: 32,
            device: device.clone(),
            name: model.describe(),
            cache: std::sync::Mutex::new(EmbeddingCache { capacity: 8192, map: HashMap::new(), order: VecDeque::new() }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bounds the embedding cache (0 turns it off and empties it).
    pub fn set_cache_capacity(&self, capacity: usize) {
        if let Ok(mut c) = self.cache.lock() {
            c.capacity = capacity;
            while c.map.len() > capacity {
                match c.order.pop_front() {
                    Some(old) => {
                        c.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    pub fn config(&self) -> &SentenceConfig {
        &self.config
    }

    /// The token ids the model sees for `text` (prefix, case, truncation applied).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenize_prepared(&self.prepare(text))
    }

    fn tokenize_prepared(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| anyhow::anyhow!("tokenizing failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    fn prepare(&self, text: &str) -> String {
        let text = format!("{}{}", self.prefix, text);
        if self.config.do_lower_case {
            text.to_lowercase()
        } else {
            text
        }
    }

    /// L2-normalised embeddings, one per text, in input order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        // The cache is keyed by the text as the model sees it (prefix and case applied).
        let keys: Vec<String> = texts.iter().map(|t| self.prepare(t)).collect();
        let mut out: Vec<Option<Vec<f32>>> = {
            let cache = self.cache.lock().map_err(|_| anyhow::anyhow!("embedding cache poisoned"))?;
            keys.iter().map(|k| cache.get(k).cloned()).collect()
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        // Tokenise, then batch by length so that padding stays small.
        let mut encoded: Vec<(usize, Vec<u32>)> =
            missing.iter().map(|&i| Ok((i, self.tokenize_prepared(&keys[i])?))).collect::<Result<Vec<_>>>()?;
        encoded.sort_by_key(|(_, ids)| ids.len());
        for batch in encoded.chunks(self.batch_size.max(1)) {
            let vectors = self.embed_batch(batch.iter().map(|(_, ids)| ids.as_slice()).collect())?;
            for ((i, _), v) in batch.iter().zip(vectors) {
                out[*i] = Some(v);
            }
        }
        let mut cache = self.cache.lock().map_err(|_| anyhow::anyhow!("embedding cache poisoned"))?;
        for &i in &missing {
            if let Some(v) = &out[i] {
                cache.insert(keys[i].clone(), v.clone());
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or_default()).collect())
    }

    fn embed_batch(&self, batch: Vec<&[u32]>) -> Result<Vec<Vec<f32>>> {
        let l = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let left = left_padded(&self.backbone);
        let mut ids = Vec::with_capacity(batch.len());
        let mut mask = Vec::with_capacity(batch.len());
        for row in &batch {
            let pad = l - row.len();
            let (r, m): (Vec<u32>, Vec<u32>) = if left {
                (std::iter::repeat(self.pad_id).take(pad).chain(row.iter().copied()).collect(),
                 std::iter::repeat(0).take(pad).chain(std::iter::repeat(1).take(row.len())).collect())
            } else {
                (row.iter().copied().chain(std::iter::repeat(self.pad_id).take(pad)).collect(),
                 std::iter::repeat(1).take(row.len()).chain(std::iter::repeat(0).take(pad)).collect())
            };
            ids.push(r);
            mask.push(m);
        }
        let b = batch.len();
        let dev = &self.device;
        let hidden = match &self.backbone {
            Backbone::Bert(m) => {
                let ids_t = Tensor::from_vec(ids.concat(), (b, l), dev)?;
                let mask_t = Tensor::from_vec(mask.concat(), (b, l), dev)?;
                m.forward(&ids_t, &ids_t.zeros_like()?, Some(&mask_t))?
            }
            Backbone::MpNet(m) => m.forward(&ids, &mask, dev)?,
            Backbone::Qwen3(m) => m.forward(&ids, &mask, dev)?,
        };
        let mask_t = Tensor::from_vec(mask.concat(), (b, l), dev)?.to_dtype(DType::F32)?;
        let pooled = match self.config.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask_t.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)?
            }
            Pooling::LastToken => {
                // The last real token of each row (the end of the row under left padding).
                let last: Vec<u32> = mask.iter().map(|r| r.iter().rposition(|&m| m != 0).unwrap_or(0) as u32).collect();
                let idx = Tensor::from_vec(last, (b, 1, 1), dev)?.broadcast_as((b, 1, hidden.dim(2)?))?.contiguous()?;
                hidden.gather(&idx, 1)?.squeeze(1)?
            }
        };
        let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let normed: Vec<Vec<f32>> = pooled.broadcast_div(&norm)?.to_dtype(DType::F32)?.to_vec2()?;
        if let Some(row) = normed.iter().position(|v| v.iter().any(|x| !x.is_finite())) {
            bail!("encoder {} produced a non-finite embedding (text {row} of a batch): the model is broken", self.name);
        }
        Ok(normed)
    }
}

fn pad_token_id(tokenizer: &tokenizers::Tokenizer, model: &ModelSource) -> Result<u32> {
    for t in ["[PAD]", "<pad>", "<|endoftext|>"] {
        if let Some(id) = tokenizer.token_to_id(t) {
            return Ok(id);
        }
    }
    bail!("{}: the tokenizer has no padding token ([PAD], <pad> or <|endoftext|>)", model.describe())
}

/// Cosine similarity of two L2-normalised vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_drops_the_oldest() {
        let mut c = EmbeddingCache { capacity: 2, map: HashMap::new(), order: VecDeque::new() };
        c.insert("a".into(), vec![1.0]);
        c.insert("b".into(), vec![2.0]);
        c.insert("c".into(), vec![3.0]);
        assert!(c.get("a").is_none());
        assert_eq!(c.get("c"), Some(&vec![3.0]));
        assert_eq!(c.map.len(), 2);
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = format!("{:#}", resolve_encoder("./no-such-encoder").unwrap_err());
        assert!(e.contains("minilm") && e.contains("bge"), "{e}");
    }
}
