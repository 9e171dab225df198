//! The thinker's configuration, read from a checkpoint's `config.json`.
//!
//! Three layouts are accepted: the full `Qwen2_5OmniConfig` (`model_type: qwen2_5_omni`, whose
//! `thinker_config` is what matters here; talker and token2wav settings are ignored), a
//! thinker-only config (`model_type: qwen2_5_omni_thinker`), and the text causal LMs
//! `qwen2` (Qwen2, Qwen2.5 and their Math and Instruct variants: q/k/v bias) and `qwen3` (q/k
//! RMSNorm, no bias, explicit `head_dim`), whose settings sit at the top level. A text model has
//! no towers, and its 1-D rotary is the multimodal rotary with every frequency slot on the
//! first position row (the three rows are equal for text anyway). Rotary settings come either from
//! transformers 5's `rope_parameters` or from the older top-level `rope_theta` plus
//! `rope_scaling.mrope_section`. Errors name the file and the field at fault. Every size that is
//! used as a divisor, a loop step or a table size is checked (positive, dividing what it must
//! divide, consistent with the other towers and with the patches ttrav's processors make), so
//! that a bad config is an error here rather than a division by zero or an endless loop later.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// Settings of the text decoder (`thinker_config.text_config`), resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Frequency slots per position row (temporal, height, width); sums to `head_dim / 2`.
    pub mrope_section: Vec<usize>,
    pub max_position_embeddings: usize,
    /// Bias on the q/k/v projections (Qwen2 and the Omni thinker always; Qwen3 when
    /// `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Qwen3 with `attention_bias`).
    pub o_bias: bool,
    /// RMSNorm over each head's queries and keys before the rotary (Qwen3).
    pub qk_norm: bool,
}

/// The checkpoint families ttrav runs, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// `qwen2_5_omni` or `qwen2_5_omni_thinker`: text decoder with audio and vision towers.
    Omni,
    /// `qwen2`: a Qwen2 / Qwen2.5 causal LM.
    Qwen2,
    /// `qwen3`: a Qwen3 causal LM.
    Qwen3,
}

/// The `model_type` values ttrav knows, for error messages.
pub const KNOWN_MODEL_TYPES: &str = "`qwen2_5_omni`, `qwen2_5_omni_thinker`, `qwen2`, `qwen3`";

impl ModelFamily {
    /// The `model_type` of the family (the thinker's for Omni).
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Omni => "qwen2_5_omni",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    /// A text causal LM: no audio or vision input.
    pub fn is_text_only(self) -> bool {
        self != Self::Omni
    }
}

/// Settings of the audio tower (`thinker_config.audio_config`), kept as read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AudioConfig {
    #[serde(default = "default_mel_bins")]
    pub num_mel_bins: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    #[serde(default = "default_n_window")]
    pub n_window: usize,
    #[serde(default = "default_max_source_positions")]
    pub max_source_positions: usize,
    pub output_dim: usize,
}

/// Settings of the vision tower (`thinker_config.vision_config`), kept as read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "default_temporal_patch_size")]
    pub temporal_patch_size: usize,
    #[serde(default = "default_spatial_merge_size")]
    pub spatial_merge_size: usize,
    #[serde(default = "default_window_size")]
    pub window_size: usize,
    #[serde(default)]
    pub fullatt_block_indexes: Vec<usize>,
    pub out_hidden_size: usize,
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
}

/// Special token ids the thinker needs to place media features and positions.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIds {
    pub audio: u32,
    pub image: u32,
    pub video: u32,
    pub audio_start: u32,
    pub audio_end: u32,
    pub vision_start: u32,
    pub vision_end: u32,
}

/// The thinker's configuration, resolved from either config layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ThinkerConfig {
    pub text: TextConfig,
    pub audio: Option<AudioConfig>,
    pub vision: Option<VisionConfig>,
    pub token_ids: TokenIds,
    pub position_id_per_seconds: f64,
    pub seconds_per_chunk: f64,
    /// Decided only by the thinker-level flag (`text_config.tie_word_embeddings` is ignored).
    pub tie_word_embeddings: bool,
    /// Prefix of the thinker's tensors in the checkpoint (`thinker.` for the real layout).
    pub weight_prefix: String,
    pub family: ModelFamily,
}

fn default_mel_bins() -> usize {
    128
}
fn default_n_window() -> usize {
    100
}
fn default_max_source_positions() -> usize {
    1500
}
fn default_patch_size() -> usize {
    14
}
fn default_temporal_patch_size() -> usize {
    2
}
fn default_spatial_merge_size() -> usize {
    2
}
fn default_window_size() -> usize {
    112
}
fn default_in_channels() -> usize {
    3
}

#[derive(Deserialize)]
struct RawRope {
    rope_theta: Option<f64>,
    mrope_section: Option<Vec<usize>>,
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
    /// Qwen3: bias on q/k/v/o.
    #[serde(default)]
    attention_bias: bool,
    /// Text models: the flag at the top level of their config.
    tie_word_embeddings: Option<bool>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    32768
}

#[derive(Deserialize)]
struct RawThinker {
    text_config: RawText,
    audio_config: Option<AudioConfig>,
    vision_config: Option<VisionConfig>,
    #[serde(default = "d_audio")]
    audio_token_index: u32,
    #[serde(default = "d_image")]
    image_token_index: u32,
    #[serde(default = "d_video")]
    video_token_index: u32,
    #[serde(default = "d_audio_start")]
    audio_start_token_id: u32,
    #[serde(default = "d_audio_end")]
    audio_end_token_id: u32,
    #[serde(default = "d_vision_start")]
    vision_start_token_id: u32,
    #[serde(default = "d_vision_end")]
    vision_end_token_id: u32,
    #[serde(default = "d_pos_per_s")]
    position_id_per_seconds: f64,
    #[serde(default = "d_s_per_chunk")]
    seconds_per_chunk: f64,
    /// The thinker class defaults to an untied lm_head.
    #[serde(default)]
    tie_word_embeddings: bool,
}

fn d_audio() -> u32 {
    151646
}
fn d_image() -> u32 {
    151655
}
fn d_video() -> u32 {
    151656
}
fn d_audio_start() -> u32 {
    151647
}
fn d_audio_end() -> u32 {
    151648
}
fn d_vision_start() -> u32 {
    151652
}
fn d_vision_end() -> u32 {
    151653
}
fn d_pos_per_s() -> f64 {
    25.0
}
fn d_s_per_chunk() -> f64 {
    2.0
}

impl ThinkerConfig {
    /// Reads and resolves `config.json` (either layout).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("invalid model config {}", path.display()))
    }

    /// Resolves a config from its JSON text (either layout).
    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()))?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        let family = match model_type {
            "qwen2_5_omni" | "qwen2_5_omni_thinker" => ModelFamily::Omni,
            "qwen2" => ModelFamily::Qwen2,
            "qwen3" => ModelFamily::Qwen3,
            "" => bail!("field `model_type` is missing: expected one of {KNOWN_MODEL_TYPES}"),
            other => bail!("field `model_type` is `{other}`: ttrav runs {KNOWN_MODEL_TYPES} checkpoints"),
        };
        if family.is_text_only() {
            let raw: RawText = serde_path_to_error::deserialize(value)
                .map_err(|e| anyhow::anyhow!("field `{}`: {}", e.path(), e.inner()))?;
            return Self::resolve_text_model(raw, family);
        }
        let (thinker_value, field_prefix) = if model_type == "qwen2_5_omni" {
            let Some(t) = value.get("thinker_config") else {
                bail!("field `thinker_config` is missing (model_type is qwen2_5_omni)");
            };
            (t.clone(), "thinker_config.")
        } else {
            (value, "")
        };
        let raw: RawThinker = serde_path_to_error::deserialize(thinker_value).map_err(|e| {
            anyhow::anyhow!("field `{}{}`: {}", field_prefix, e.path(), e.inner())
        })?;
        Self::resolve(raw, field_prefix)
    }

    /// A Qwen2 / Qwen3 causal LM: the text settings at the top level, no towers.
    fn resolve_text_model(raw: RawText, family: ModelFamily) -> Result<Self> {
        let tie_word_embeddings = raw.tie_word_embeddings.unwrap_or(false);
        let text = resolve_text(raw, "", family)?;
        // Media token ids are never used: a text model refuses media before they are looked up.
        let none = u32::MAX;
        Ok(Self {
            text,
            audio: None,
            vision: None,
            token_ids: TokenIds {
                audio: none,
                image: none,
                video: none,
                audio_start: none,
                audio_end: none,
                vision_start: none,
                vision_end: none,
            },
            position_id_per_seconds: d_pos_per_s(),
            seconds_per_chunk: d_s_per_chunk(),
            tie_word_embeddings,
            weight_prefix: String::new(),
            family,
        })
    }

    fn resolve(raw: RawThinker, prefix: &str) -> Result<Self> {
        let text = resolve_text(raw.text_config, &format!("{prefix}text_config."), ModelFamily::Omni)?;
        if let Some(audio) = &raw.audio_config {
            check_audio(audio, &format!("{prefix}audio_config."), text.hidden_size)?;
        }
        if let Some(vision) = &raw.vision_config {
            check_vision(vision, &format!("{prefix}vision_config."), text.hidden_size)?;
        }
        positive_finite(&format!("{prefix}position_id_per_seconds"), raw.position_id_per_seconds)?;
        positive_finite(&format!("{prefix}seconds_per_chunk"), raw.seconds_per_chunk)?;
        Ok(Self {
            text,
            audio: raw.audio_config,
            vision: raw.vision_config,
            token_ids: TokenIds {
                audio: raw.audio_token_index,
                image: raw.image_token_index,
                video: raw.video_token_index,
                audio_start: raw.audio_start_token_id,
                audio_end: raw.audio_end_token_id,
                vision_start: raw.vision_start_token_id,
                vision_end: raw.vision_end_token_id,
            },
            position_id_per_seconds: raw.position_id_per_seconds,
            seconds_per_chunk: raw.seconds_per_chunk,
            tie_word_embeddings: raw.tie_word_embeddings,
            weight_prefix: "thinker.".to_string(),
            family: ModelFamily::Omni,
        })
    }
}

/// The text decoder's settings; `prefix` is where they sit in the file (`text_config.` for the
/// thinker, nothing for a text model).
fn resolve_text(t: RawText, prefix: &str, family: ModelFamily) -> Result<TextConfig> {
    let field = |name: &str| format!("{prefix}{name}");
    for (name, value) in [
        ("vocab_size", t.vocab_size),
        ("hidden_size", t.hidden_size),
        ("intermediate_size", t.intermediate_size),
        ("num_hidden_layers", t.num_hidden_layers),
        ("num_attention_heads", t.num_attention_heads),
        ("max_position_embeddings", t.max_position_embeddings),
    ] {
        positive(&field(name), value)?;
    }
    positive_finite(&field("rms_norm_eps"), t.rms_norm_eps)?;
    let num_key_value_heads = t.num_key_value_heads.unwrap_or(t.num_attention_heads);
    if num_key_value_heads == 0 || t.num_attention_heads % num_key_value_heads != 0 {
        bail!(
            "field `{}` ({num_key_value_heads}) must divide num_attention_heads ({})",
            field("num_key_value_heads"),
            t.num_attention_heads
        );
    }
    let head_dim = match t.head_dim {
        Some(d) => d,
        None => {
            if t.hidden_size % t.num_attention_heads != 0 {
                bail!(
                    "field `{}` ({}) is not a multiple of num_attention_heads ({}) and no head_dim is given",
                    field("hidden_size"),
                    t.hidden_size,
                    t.num_attention_heads
                );
            }
            t.hidden_size / t.num_attention_heads
        }
    };
    if head_dim % 2 != 0 || head_dim == 0 {
        bail!("field `{}`: the head dimension {head_dim} must be even and positive", field("head_dim"));
    }
    if let Some(act) = &t.hidden_act {
        if act != "silu" {
            bail!("field `{}` is `{act}`: only `silu` is supported", field("hidden_act"));
        }
    }
    if t.use_sliding_window == Some(true) {
        bail!("field `{}` is true: sliding-window attention is not supported", field("use_sliding_window"));
    }
    // transformers 5 writes `rope_parameters`; older files a top-level rope_theta and rope_scaling.
    let (rope_theta, mrope_section) = match (&t.rope_parameters, &t.rope_scaling) {
        (Some(p), _) => (
            p.rope_theta.or(t.rope_theta),
            p.mrope_section.clone().or_else(|| t.rope_scaling.as_ref().and_then(|s| s.mrope_section.clone())),
        ),
        (None, Some(s)) => (s.rope_theta.or(t.rope_theta), s.mrope_section.clone()),
        (None, None) => (t.rope_theta, None),
    };
    for (name, rope) in [("rope_parameters", &t.rope_parameters), ("rope_scaling", &t.rope_scaling)] {
        let kind = rope.as_ref().and_then(|r| r.rope_type.as_deref().or(r.kind.as_deref()));
        if let Some(kind) = kind.filter(|k| !matches!(*k, "default" | "mrope")) {
            bail!("field `{}` is `{kind}`: only the default rotary (no scaling) is supported", field(&format!("{name}.rope_type")));
        }
    }
    let rope_theta = rope_theta.with_context(|| {
        format!("field `{}` (or `rope_parameters.rope_theta`) is missing", field("rope_theta"))
    })?;
    let mrope_section = match family {
        // 1-D rotary: every frequency slot on the first position row.
        ModelFamily::Qwen2 | ModelFamily::Qwen3 => Some(vec![head_dim / 2, 0, 0]),
        ModelFamily::Omni => mrope_section,
    };
    let mrope_section = mrope_section.with_context(|| {
        format!(
            "field `{}` (or `rope_parameters.mrope_section`) is missing: Qwen2.5-Omni needs the multimodal rotary sections",
            field("rope_scaling.mrope_section")
        )
    })?;
    positive_finite(&field("rope_theta"), rope_theta)?;
    if mrope_section.len() != 3 {
        bail!(
            "field `{}` {:?} must have 3 entries (temporal, height, width)",
            field("mrope_section"),
            mrope_section
        );
    }
    if mrope_section.iter().try_fold(0usize, |a, &x| a.checked_add(x)) != Some(head_dim / 2) {
        bail!(
            "field `{}` {:?} must sum to head_dim / 2 = {}",
            field("mrope_section"),
            mrope_section,
            head_dim / 2
        );
    }
    Ok(TextConfig {
        vocab_size: t.vocab_size,
        hidden_size: t.hidden_size,
        intermediate_size: t.intermediate_size,
        num_hidden_layers: t.num_hidden_layers,
        num_attention_heads: t.num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: t.rms_norm_eps,
        rope_theta,
        mrope_section,
        max_position_embeddings: t.max_position_embeddings,
        qkv_bias: family != ModelFamily::Qwen3 || t.attention_bias,
        o_bias: family == ModelFamily::Qwen3 && t.attention_bias,
        qk_norm: family == ModelFamily::Qwen3,
    })
}


fn positive(field: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("field `{field}` is 0; it must be positive");
    }
    Ok(())
}

fn positive_finite(field: &str, value: f64) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        bail!("field `{field}` is {value}; it must be a positive finite number");
    }
    Ok(())
}

fn must_equal(field: &str, value: usize, want: usize, why: &str) -> Result<()> {
    if value != want {
        bail!("field `{field}` is {value}; it must be {want} ({why})");
    }
    Ok(())
}

/// The audio tower's sizes: every divisor, loop step and table size usable.
fn check_audio(a: &AudioConfig, prefix: &str, text_hidden: usize) -> Result<()> {
    let field = |name: &str| format!("{prefix}{name}");
    for (name, value) in [
        ("d_model", a.d_model),
        ("encoder_attention_heads", a.encoder_attention_heads),
        ("encoder_ffn_dim", a.encoder_ffn_dim),
        ("n_window", a.n_window),
        ("output_dim", a.output_dim),
    ] {
        positive(&field(name), value)?;
    }
    must_equal(&field("num_mel_bins"), a.num_mel_bins, crate::media::mel::N_MELS, "ttrav's feature extractor makes 128 mel bins")?;
    if a.d_model % a.encoder_attention_heads != 0 {
        bail!(
            "field `{}` ({}) is not a multiple of encoder_attention_heads ({})",
            field("d_model"),
            a.d_model,
            a.encoder_attention_heads
        );
    }
    if a.d_model % 2 != 0 || a.d_model < 4 {
        bail!("field `{}` is {}; the sinusoidal positions need an even size of at least 4", field("d_model"), a.d_model);
    }
    // A chunk is 2 * n_window mel frames: longer than the 300 s window's frames is meaningless.
    let max_window = crate::media::mel::N_SAMPLES / crate::media::mel::HOP / 2;
    if a.n_window > max_window {
        bail!(
            "field `{}` is {}; a chunk of 2 x n_window mel frames cannot be longer than the 300 s window (n_window <= {max_window})",
            field("n_window"),
            a.n_window
        );
    }
    // A chunk of 2 * n_window mel frames leaves n_window positions after the stride-2 convolution.
    if a.max_source_positions < a.n_window {
        bail!(
            "field `{}` ({}) is below n_window ({}): a chunk's positions would run past the table",
            field("max_source_positions"),
            a.max_source_positions,
            a.n_window
        );
    }
    must_equal(&field("output_dim"), a.output_dim, text_hidden, "the audio tokens enter the text decoder, text_config.hidden_size")
}

/// The vision tower's sizes: every divisor, loop step and window size usable, and the patch
/// layout the image processor makes.
fn check_vision(v: &VisionConfig, prefix: &str, text_hidden: usize) -> Result<()> {
    use crate::media::image::{MERGE, PATCH, TEMPORAL_PATCH};
    let field = |name: &str| format!("{prefix}{name}");
    for (name, value) in [
        ("hidden_size", v.hidden_size),
        ("num_heads", v.num_heads),
        ("intermediate_size", v.intermediate_size),
        ("out_hidden_size", v.out_hidden_size),
    ] {
        positive(&field(name), value)?;
    }
    let layout = "the size of the patches ttrav's image and video processors make";
    must_equal(&field("patch_size"), v.patch_size, PATCH, layout)?;
    must_equal(&field("temporal_patch_size"), v.temporal_patch_size, TEMPORAL_PATCH, layout)?;
    must_equal(&field("spatial_merge_size"), v.spatial_merge_size, MERGE, layout)?;
    must_equal(&field("in_channels"), v.in_channels, 3, "RGB")?;
    if v.hidden_size % v.num_heads != 0 || (v.hidden_size / v.num_heads) % 4 != 0 {
        bail!(
            "field `{}` ({}) divided by num_heads ({}) must give a head size that is a multiple of 4 (2-D rotary)",
            field("hidden_size"),
            v.hidden_size,
            v.num_heads
        );
    }
    let unit = v.patch_size * v.spatial_merge_size;
    if v.window_size < unit || v.window_size % unit != 0 {
        bail!(
            "field `{}` is {}; it must be a positive multiple of patch_size x spatial_merge_size = {unit}",
            field("window_size"),
            v.window_size
        );
    }
    if let Some(&i) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
        bail!("field `{}` names block {i}, but the tower has {} (depth)", field("fullatt_block_indexes"), v.depth);
    }
    must_equal(&field("out_hidden_size"), v.out_hidden_size, text_hidden, "the visual tokens enter the text decoder, text_config.hidden_size")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thinker_json(text_extra: &str, top_extra: &str) -> String {
        format!(
            r#"{{"model_type": "qwen2_5_omni_thinker", {top_extra}
                "text_config": {{"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2 {text_extra}}}}}"#
        )
    }

    #[test]
    fn new_rope_form() {
        let c = ThinkerConfig::from_json_str(&thinker_json(
            r#", "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1,1,2]}"#,
            "",
        ))
        .unwrap();
        assert_eq!(c.text.head_dim, 8);
        assert_eq!(c.text.rope_theta, 1e6);
        assert_eq!(c.text.mrope_section, vec![1, 1, 2]);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.token_ids.audio, 151646);
    }

    #[test]
    fn old_rope_form_and_explicit_head_dim() {
        let c = ThinkerConfig::from_json_str(&thinker_json(
            r#", "head_dim": 16, "rope_theta": 10000.0, "rope_scaling": {"type": "default", "mrope_section": [2,3,3]}"#,
            r#""tie_word_embeddings": true, "audio_token_index": 7,"#,
        ))
        .unwrap();
        assert_eq!(c.text.head_dim, 16);
        assert_eq!(c.text.rope_theta, 10000.0);
        assert_eq!(c.text.mrope_section, vec![2, 3, 3]);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.token_ids.audio, 7);
    }

    #[test]
    fn full_config_nests_thinker() {
        let inner = thinker_json(r#", "rope_theta": 10.0, "rope_scaling": {"mrope_section": [1,1,2]}"#, "");
        let full = format!(r#"{{"model_type": "qwen2_5_omni", "thinker_config": {inner}, "talker_config": {{}}}}"#);
        let c = ThinkerConfig::from_json_str(&full).unwrap();
        assert_eq!(c.text.num_hidden_layers, 2);
    }

    /// A thinker config with audio and vision towers (the fixtures' sizes), with `edit` applied.
    fn towers_json(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v = serde_json::json!({
            "model_type": "qwen2_5_omni_thinker",
            "text_config": {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10.0,
                "rope_scaling": {"mrope_section": [1, 1, 2]}},
            "audio_config": {"d_model": 16, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 32,
                "n_window": 8, "output_dim": 32},
            "vision_config": {"depth": 2, "hidden_size": 16, "num_heads": 2, "intermediate_size": 32,
                "out_hidden_size": 32, "fullatt_block_indexes": [1]},
        });
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn zero_and_inconsistent_sizes_name_the_field() {
        assert!(ThinkerConfig::from_json_str(&towers_json(|_| {})).is_ok());
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/text_config/vocab_size", 0.into(), "text_config.vocab_size"),
            ("/text_config/hidden_size", 0.into(), "text_config.hidden_size"),
            ("/text_config/num_hidden_layers", 0.into(), "text_config.num_hidden_layers"),
            ("/text_config/num_attention_heads", 0.into(), "text_config.num_attention_heads"),
            ("/text_config/num_key_value_heads", 0.into(), "text_config.num_key_value_heads"),
            ("/text_config/num_key_value_heads", 3.into(), "text_config.num_key_value_heads"),
            ("/text_config/hidden_size", 30.into(), "text_config.hidden_size"),
            ("/text_config/rope_theta", 0.0.into(), "text_config.rope_theta"),
            ("/text_config/rms_norm_eps", (-1.0).into(), "text_config.rms_norm_eps"),
            ("/text_config/rope_scaling/mrope_section", serde_json::json!([4]), "text_config.mrope_section"),
            ("/text_config/rope_scaling/mrope_section", serde_json::json!([usize::MAX, 2, 1]), "text_config.mrope_section"),
            ("/audio_config/n_window", 0.into(), "audio_config.n_window"),
            ("/audio_config/n_window", 15001.into(), "audio_config.n_window"),
            ("/audio_config/encoder_attention_heads", 0.into(), "audio_config.encoder_attention_heads"),
            ("/audio_config/encoder_attention_heads", 3.into(), "audio_config.d_model"),
            ("/audio_config/d_model", 2.into(), "audio_config.d_model"),
            ("/audio_config/num_mel_bins", 80.into(), "audio_config.num_mel_bins"),
            ("/audio_config/max_source_positions", 4.into(), "audio_config.max_source_positions"),
            ("/audio_config/output_dim", 16.into(), "audio_config.output_dim"),
            ("/vision_config/num_heads", 0.into(), "vision_config.num_heads"),
            ("/vision_config/num_heads", 8.into(), "vision_config.hidden_size"),
            ("/vision_config/window_size", 0.into(), "vision_config.window_size"),
            ("/vision_config/window_size", 27.into(), "vision_config.window_size"),
            ("/vision_config/window_size", 100.into(), "vision_config.window_size"),
            ("/vision_config/patch_size", 0.into(), "vision_config.patch_size"),
            ("/vision_config/patch_size", 16.into(), "vision_config.patch_size"),
            ("/vision_config/spatial_merge_size", 0.into(), "vision_config.spatial_merge_size"),
            ("/vision_config/temporal_patch_size", 1.into(), "vision_config.temporal_patch_size"),
            ("/vision_config/fullatt_block_indexes", serde_json::json!([2]), "vision_config.fullatt_block_indexes"),
            ("/vision_config/out_hidden_size", 16.into(), "vision_config.out_hidden_size"),
            ("/position_id_per_seconds", 0.0.into(), "position_id_per_seconds"),
            ("/seconds_per_chunk", (-2.0).into(), "seconds_per_chunk"),
        ];
        for (pointer, value, field) in cases {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let json = towers_json(|v| v.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}"))[key] = value.clone());
            let e = format!("{:#}", ThinkerConfig::from_json_str(&json).expect_err(pointer));
            assert!(e.contains(&format!("`{field}`")), "{pointer} = {value}: {e}");
        }
        // The full layout names the nested field.
        let full = format!(
            r#"{{"model_type": "qwen2_5_omni", "thinker_config": {}}}"#,
            towers_json(|v| v["audio_config"]["n_window"] = 0.into())
        );
        let e = format!("{:#}", ThinkerConfig::from_json_str(&full).unwrap_err());
        assert!(e.contains("`thinker_config.audio_config.n_window`"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = thinker_json(r#", "rope_theta": 10.0, "rope_scaling": {"mrope_section": [1,1,1]}"#, "");
        let e = format!("{:#}", ThinkerConfig::from_json_str(&bad).unwrap_err());
        assert!(e.contains("mrope_section"), "{e}");
        let bad = r#"{"model_type": "qwen2_5_omni_thinker", "text_config": {"vocab_size": "many"}}"#;
        let e = format!("{:#}", ThinkerConfig::from_json_str(bad).unwrap_err());
        assert!(e.contains("text_config.vocab_size"), "{e}");
        let e = format!("{:#}", ThinkerConfig::from_json_str(r#"{"model_type": "llama"}"#).unwrap_err());
        assert!(e.contains("llama") && e.contains("`qwen2`, `qwen3`"), "the error lists the known types: {e}");
        let e = format!("{:#}", ThinkerConfig::from_json_str(r#"{"model_type": "qwen2_5_"#).unwrap_err());
        assert!(e.contains("line 1"), "{e}");
        let e = format!("{:#}", ThinkerConfig::from_json_str(r#"{"model_type": "qwen2_5_omni"}"#).unwrap_err());
        assert!(e.contains("thinker_config"), "{e}");
    }

    /// A Qwen2.5-3B-shaped `config.json` as the hub has it (older rotary form, tied head).
    const QWEN25_3B: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 2048,
        "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "rope_scaling": null, "sliding_window": 32768, "use_sliding_window": false, "max_window_layers": 36,
        "tie_word_embeddings": true, "hidden_act": "silu", "torch_dtype": "bfloat16"}"#;

    #[test]
    fn qwen2_text_model_has_bias_one_dimensional_rotary_and_no_towers() {
        let c = ThinkerConfig::from_json_str(QWEN25_3B).unwrap();
        assert_eq!(c.family, ModelFamily::Qwen2);
        assert!(c.family.is_text_only() && c.audio.is_none() && c.vision.is_none());
        assert_eq!((c.text.head_dim, c.text.num_key_value_heads), (128, 2));
        assert_eq!(c.text.mrope_section, vec![64, 0, 0]);
        assert!(c.text.qkv_bias && !c.text.o_bias && !c.text.qk_norm);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.weight_prefix, "");
        assert_eq!(c.text.rope_theta, 1e6);
    }

    #[test]
    fn qwen3_text_model_has_head_norms_explicit_head_dim_and_no_bias() {
        let text = r#"{"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 100,
            "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}, "attention_bias": false,
            "tie_word_embeddings": false, "layer_types": ["full_attention", "full_attention"]}"#;
        let c = ThinkerConfig::from_json_str(text).unwrap();
        assert_eq!(c.family, ModelFamily::Qwen3);
        assert_eq!((c.text.head_dim, c.text.mrope_section.clone()), (32, vec![16, 0, 0]));
        assert!(!c.text.qkv_bias && !c.text.o_bias && c.text.qk_norm && !c.tie_word_embeddings);
        assert_eq!(c.text.rope_theta, 5000.0);
        let biased = text.replace(r#""attention_bias": false"#, r#""attention_bias": true"#);
        let c = ThinkerConfig::from_json_str(&biased).unwrap();
        assert!(c.text.qkv_bias && c.text.o_bias);
        let scaled = text.replace(r#""rope_type": "default""#, r#""rope_type": "yarn""#);
        let e = format!("{:#}", ThinkerConfig::from_json_str(&scaled).unwrap_err());
        assert!(e.contains("rope_parameters.rope_type") && e.contains("yarn"), "{e}");
        let zero = text.replace(r#""num_hidden_layers": 2"#, r#""num_hidden_layers": 0"#);
        let e = format!("{:#}", ThinkerConfig::from_json_str(&zero).unwrap_err());
        assert!(e.contains("`num_hidden_layers` is 0"), "top-level field named: {e}");
    }
}
