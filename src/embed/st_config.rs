//! What a sentence-transformers model directory says about itself: the modules it chains
//! (`modules.json`), its pooling (`1_Pooling/config.json`), and its maximum length and case
//! handling (`sentence_bert_config.json`). These override the truncation and fixed padding that
//! tokenizer.json files often carry.

use crate::hub::ModelSource;
use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (`[CLS]`).
    Cls,
    /// The mean over real (unpadded) tokens.
    Mean,
    /// The last real token (decoder models, left padding).
    LastToken,
}

/// The resolved sentence-transformers settings of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub max_seq_length: usize,
    pub do_lower_case: bool,
    /// Whether modules.json lists a Normalize module (ttrav's encoder normalises in any case).
    pub normalize: bool,
    /// Set when modules.json was missing and the family's defaults were used.
    pub fallback_note: Option<String>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize, Default)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(model: &ModelSource, file: &str) -> Result<Option<T>> {
    let Some(path) = model.get_optional(file)? else { return Ok(None) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{} is not valid (line {}, column {}): {e}", path.display(), e.line(), e.column())
    })?;
    Ok(Some(value))
}

impl SentenceConfig {
    /// Reads the model's sentence-transformers files; `default_pooling` and
    /// `default_max_length` (the family's) apply where the model says nothing.
    pub fn load(model: &ModelSource, default_pooling: Pooling, default_max_length: usize) -> Result<Self> {
        let modules: Option<Vec<Module>> = read_json(model, "modules.json")?;
        let Some(modules) = modules else {
            let st: SentenceBertFile = read_json(model, "sentence_bert_config.json")?.unwrap_or_default();
            return Ok(Self {
                pooling: default_pooling,
                max_seq_length: st.max_seq_length.unwrap_or(default_max_length),
                do_lower_case: st.do_lower_case,
                normalize: true,
                fallback_note: Some(format!(
                    "{} has no modules.json: using this model family's default, {:?} pooling, and L2 normalisation",
                    model.describe(),
                    default_pooling
                )),
            });
        };
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .map(|m| m.path.clone())
            .with_context(|| format!("{}: modules.json lists no Pooling module", model.describe()))?;
        let pooling_file = format!("{}/config.json", pooling_dir.trim_end_matches('/'));
        let p: PoolingFile = read_json(model, &pooling_file)?
            .with_context(|| format!("{}: {pooling_file} is missing", model.describe()))?;
        let pooling = match (p.pooling_mode_cls_token, p.pooling_mode_mean_tokens, p.pooling_mode_lasttoken) {
            (true, false, false) => Pooling::Cls,
            (false, true, false) => Pooling::Mean,
            (false, false, true) => Pooling::LastToken,
            _ => bail!(
                "{}: {pooling_file} asks for a pooling ttrav does not support (one of CLS, mean or last token is needed)",
                model.describe()
            ),
        };
        if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens || p.pooling_mode_weightedmean_tokens {
            bail!("{}: {pooling_file} combines pooling modes, which ttrav does not support", model.describe());
        }
        let st: SentenceBertFile = read_json(model, "sentence_bert_config.json")?.unwrap_or_default();
        Ok(Self {
            pooling,
            max_seq_length: st.max_seq_length.unwrap_or(default_max_length),
            do_lower_case: st.do_lower_case,
            normalize: modules.iter().any(|m| m.kind.ends_with(".Normalize")),
            fallback_note: None,
        })
    }
}
