//! Prompts: the chat conversation, its rendering through the checkpoint's chat template (or the
//! built-in ChatML one Qwen2.5-Omni uses), and tokenisation with the checkpoint's tokenizer.json.
//! A text model's (Qwen2, Qwen3) prompts are text only: media in them is an error.
//!
//! A user turn is a list of content items (text, audio, image, video). Rendering writes one
//! placeholder per media item (`<|audio_bos|><|AUDIO|><|audio_eos|>`, ...); the media processors
//! expand each placeholder to as many tokens as the media's features. A video is a folder of
//! frames or an MP4 file; with `use_audio_in_video` an MP4's sound track becomes an audio clip
//! of its own, and the video's placeholder becomes `<|audio_bos|>`, then the video and audio
//! tokens interleaved per 2-second chunk, then `<|audio_eos|>` (as Qwen2.5-Omni's processor does).

use crate::hub::ModelSource;
use crate::omni::thinker::{AudioFeatures, EncodedPrompt, VisualFeatures};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One item of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentItem {
    Text(String),
    Audio(PathBuf),
    Image(PathBuf),
    Video(PathBuf),
}

/// The decoded media of one (non-text) content item, ready for feature extraction.
#[derive(Debug, Clone)]
pub enum MediaInput {
    /// Mono samples at 16 kHz.
    Audio(Vec<f32>),
    Image(image::RgbImage),
    Video(VideoInput),
}

/// A video's sampled frames (all of one size), the rate they were sampled at, and its sound track
/// (mono, 16 kHz) when the prompt uses audio in video.
#[derive(Debug, Clone)]
pub struct VideoInput {
    pub frames: Vec<image::RgbImage>,
    pub fps: f32,
    pub audio: Option<Vec<f32>>,
    /// Whether `frames` are already at the processor's video size ([`Processor::load_media`]
    /// resizes each frame as it is decoded); raw frames (false) are resized when the prompt is
    /// encoded.
    pub resized: bool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: Vec<ContentItem>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Self {
        Self { role: "system".into(), content: vec![ContentItem::Text(text.into())] }
    }

    pub fn user(content: Vec<ContentItem>) -> Self {
        Self { role: "user".into(), content }
    }

    pub fn user_text(text: impl Into<String>) -> Self {
        Self::user(vec![ContentItem::Text(text.into())])
    }
}

/// The Omni special tokens ttrav needs, by name.
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The checkpoint's chat template, or the built-in ChatML one.
#[derive(Debug, Clone)]
pub enum ChatTemplate {
    /// A Jinja template shipped with the checkpoint, and the file it came from.
    Jinja { source: String, file: PathBuf },
    /// The ChatML layout Qwen2.5-Omni uses, written in code.
    BuiltIn,
}

#[derive(Serialize)]
struct JinjaItem {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<String>,
}

#[derive(Serialize)]
struct JinjaMessage {
    role: String,
    content: serde_json::Value,
}

fn jinja_message(m: &Message) -> JinjaMessage {
    // A message that is all text is passed as a string (what chat templates expect of system
    // prompts); one with media as a list of typed items.
    let all_text = m.content.iter().all(|c| matches!(c, ContentItem::Text(_)));
    let content = if all_text {
        let text: String = m
            .content
            .iter()
            .map(|c| match c {
                ContentItem::Text(t) => t.as_str(),
                _ => "",
            })
            .collect();
        serde_json::Value::String(text)
    } else {
        let items: Vec<JinjaItem> = m
            .content
            .iter()
            .map(|c| {
                let p = |p: &Path| Some(p.display().to_string());
                match c {
                    ContentItem::Text(t) => JinjaItem { kind: "text", text: Some(t.clone()), audio: None, image: None, video: None },
                    ContentItem::Audio(a) => JinjaItem { kind: "audio", text: None, audio: p(a), image: None, video: None },
                    ContentItem::Image(i) => JinjaItem { kind: "image", text: None, audio: None, image: p(i), video: None },
                    ContentItem::Video(v) => JinjaItem { kind: "video", text: None, audio: None, image: None, video: p(v) },
                }
            })
            .collect();
        serde_json::to_value(items).unwrap_or(serde_json::Value::Null)
    };
    JinjaMessage { role: m.role.clone(), content }
}

impl ChatTemplate {
    /// The template the checkpoint ships (`chat_template.jinja`, `chat_template.json`, or the
    /// `chat_template` field of `tokenizer_config.json`), else the built-in one.
    pub fn load(model: &ModelSource) -> Result<Self> {
        if let Some(file) = model.get_optional("chat_template.jinja")? {
            let source = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            return Ok(Self::Jinja { source, file });
        }
        for name in ["chat_template.json", "tokenizer_config.json"] {
            let Some(file) = model.get_optional(name)? else { continue };
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{} is not valid JSON (line {}, column {}): {e}", file.display(), e.line(), e.column())
            })?;
            match value.get("chat_template") {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => return Ok(Self::Jinja { source: s.clone(), file }),
                // A list of named templates: take "default".
                Some(serde_json::Value::Array(list)) => {
                    let default = list.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"));
                    match default.and_then(|t| t.get("template")).and_then(|t| t.as_str()) {
                        Some(s) => return Ok(Self::Jinja { source: s.to_string(), file }),
                        None => bail!("{}: field `chat_template` lists no template named \"default\"", file.display()),
                    }
                }
                Some(_) => bail!("{}: field `chat_template` is neither a string nor a list", file.display()),
            }
        }
        Ok(Self::BuiltIn)
    }

    /// Renders a conversation, ending with the assistant's generation prompt when asked.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            Self::BuiltIn => Ok(render_chatml(messages, add_generation_prompt)),
            Self::Jinja { source, file } => {
                let mut env = minijinja::Environment::new();
                // Python string and dict methods (`.strip()`, `.items()`, ...) as Hugging Face templates use them.
                env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
                env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
                });
                env.add_template("chat", source)
                    .with_context(|| format!("the chat template in {} does not parse", file.display()))?;
                let msgs: Vec<JinjaMessage> = messages.iter().map(jinja_message).collect();
                env.get_template("chat")?
                    .render(minijinja::context! {
                        messages => msgs,
                        add_generation_prompt => add_generation_prompt,
                        bos_token => "",
                        eos_token => IM_END,
                    })
                    .with_context(|| format!("rendering the chat template in {} failed", file.display()))
            }
        }
    }
}

/// The placeholder a media item renders to before expansion.
pub fn placeholder(item: &ContentItem) -> &'static str {
    match item {
        ContentItem::Text(_) => "",
        ContentItem::Audio(_) => "<|audio_bos|><|AUDIO|><|audio_eos|>",
        ContentItem::Image(_) => "<|vision_bos|><|IMAGE|><|vision_eos|>",
        ContentItem::Video(_) => "<|vision_bos|><|VIDEO|><|vision_eos|>",
    }
}

/// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
fn render_chatml(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(IM_START);
        out.push_str(&m.role);
        out.push('\n');
        for item in &m.content {
            match item {
                ContentItem::Text(t) => out.push_str(t),
                other => out.push_str(placeholder(other)),
            }
        }
        out.push_str(IM_END);
        out.push('\n');
    }
    if add_generation_prompt {
        out.push_str(IM_START);
        out.push_str("assistant\n");
    }
    out
}

/// The checkpoint's tokenizer with the special token ids ttrav needs.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    file: PathBuf,
    /// `<|im_end|>`: ends the assistant's turn.
    pub im_end: u32,
    /// `<|endoftext|>`: padding and end of document.
    pub end_of_text: u32,
}

impl TextTokenizer {
    pub fn load(model: &ModelSource) -> Result<Self> {
        let file = model.get("tokenizer.json").with_context(|| {
            format!("model {} has no tokenizer.json, which generation needs", model.describe())
        })?;
        Self::from_file(&file)
    }

    pub fn from_file(file: &Path) -> Result<Self> {
        // The tokenizers library panics on some malformed files (an `expect` in its decoder
        // deserialisation): that is this file's error, not the program's end.
        let loaded = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_file(file)).map_err(|_| {
            anyhow::anyhow!("cannot load tokenizer {}: the tokenizers library failed on its content (malformed JSON)", file.display())
        })?;
        let inner = loaded.map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", file.display()))?;
        let mut t = Self { inner, file: file.to_path_buf(), im_end: 0, end_of_text: 0 };
        t.im_end = t.special_id(IM_END)?;
        t.end_of_text = t.special_id(END_OF_TEXT)?;
        Ok(t)
    }

    /// The id of a special token; an error naming the tokenizer file when it lacks it.
    pub fn special_id(&self, token: &str) -> Result<u32> {
        self.inner.token_to_id(token).with_context(|| {
            format!("tokenizer {} has no special token {token}, which ttrav's prompts need", self.file.display())
        })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing with {} failed: {e}", self.file.display()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow::anyhow!("decoding with {} failed: {e}", self.file.display()))
    }
}

/// Tokenizer, chat template and media feature extraction: turns a conversation into prompt ids
/// with each media placeholder expanded to as many tokens as the media's features.
pub struct Processor {
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
    /// Image resizing limits (from preprocessor_config.json when the checkpoint has one).
    pub image: crate::media::image::ImageProcessorConfig,
    /// Video frame resizing limits.
    pub video: crate::media::video::VideoProcessorConfig,
    /// Frames per second of video input: video files are sampled at this rate, and a frame
    /// folder is taken as sampled at it.
    pub fps: f32,
    /// Fewest frames taken from a video file (qwen-omni-utils' 4), when it has that many.
    pub min_frames: usize,
    /// Most frames kept from one video (evenly spaced when there are more).
    pub max_frames: usize,
    /// Use each video file's sound track too: it becomes an audio clip, interleaved with the
    /// video's tokens in 2-second chunks. Every video of the prompt must then have sound.
    pub use_audio_in_video: bool,
    /// The `model_type` of a text model (`qwen2`, `qwen3`), whose prompts cannot hold media.
    pub text_model: Option<String>,
    mel: crate::media::mel::MelExtractor,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").field("tokenizer", &self.tokenizer).field("template", &self.template).finish()
    }
}

impl Processor {
    pub fn load(model: &ModelSource) -> Result<Self> {
        let mut p = Self::new(TextTokenizer::load(model)?, ChatTemplate::load(model)?);
        if let Some(path) = model.get_optional("config.json")? {
            let family = crate::omni::config::ThinkerConfig::from_file(&path)?.family;
            p.text_model = family.is_text_only().then(|| family.model_type().to_string());
        }
        if let Some(path) = model.get_optional("preprocessor_config.json")? {
            p.image = crate::media::image::ImageProcessorConfig::from_file(&path)?;
            p.video = crate::media::video::video_config_from_file(&path)?;
        }
        if let Some(path) = model.get_optional("video_preprocessor_config.json")? {
            p.video = crate::media::video::video_config_from_file(&path)?;
        }
        Ok(p)
    }

    pub fn new(tokenizer: TextTokenizer, template: ChatTemplate) -> Self {
        Self {
            tokenizer,
            template,
            image: Default::default(),
            video: Default::default(),
            fps: 2.0,
            min_frames: 4,
            max_frames: 768,
            use_audio_in_video: false,
            text_model: None,
            mel: crate::media::mel::MelExtractor::new(),
        }
    }

    /// The prompt for a conversation, ending with the assistant's generation prompt: media files
    /// are loaded and turned into features, and each placeholder token is repeated once per
    /// feature row. A media file that cannot be used gives a [`crate::media::MediaError`].
    pub fn encode_chat(&self, messages: &[Message]) -> Result<EncodedPrompt> {
        let items: Vec<&ContentItem> =
            messages.iter().flat_map(|m| &m.content).filter(|c| !matches!(c, ContentItem::Text(_))).collect();
        self.refuse_media_for_text_model(&items)?;
        let media = messages
            .iter()
            .flat_map(|m| &m.content)
            .filter_map(|item| self.load_media(item).transpose())
            .collect::<Result<Vec<_>>>()?;
        self.encode_chat_with_media(messages, media)
    }

    /// A text model (Qwen2, Qwen3) takes no audio, images or video: an error naming the first.
    fn refuse_media_for_text_model(&self, media_items: &[&ContentItem]) -> Result<()> {
        if let (Some(model_type), Some(item)) = (&self.text_model, media_items.first()) {
            let (kind, path) = match item {
                ContentItem::Audio(p) => ("audio", p),
                ContentItem::Image(p) => ("an image", p),
                ContentItem::Video(p) => ("a video", p),
                ContentItem::Text(_) => unreachable!("only media items are passed"),
            };
            bail!(
                "the prompt has {kind} ({}), but the model is a text model (model_type `{model_type}`), \
                 which takes no audio, images or video: use a Qwen2.5-Omni checkpoint, or text-only prompts",
                path.display()
            );
        }
        Ok(())
    }

    /// Loads and decodes one content item's media (`None` for text): audio at 16 kHz, an image,
    /// or a video's frames (a frame folder, or an MP4 file sampled at `fps`) with, when
    /// `use_audio_in_video` is set, the video file's sound track.
    pub fn load_media(&self, item: &ContentItem) -> Result<Option<MediaInput>> {
        use crate::media::MediaError;
        Ok(Some(match item {
            ContentItem::Text(_) => return Ok(None),
            ContentItem::Audio(path) => MediaInput::Audio(crate::media::audio::load_audio(path)?),
            ContentItem::Image(path) => MediaInput::Image(crate::media::image::load_image(path)?),
            ContentItem::Video(path) if path.is_dir() => {
                if self.use_audio_in_video {
                    return Err(MediaError::new(
                        path,
                        "audio in video needs the video's sound track, and a frame folder has none (pass an MP4 file, or the sound as --audio without --use-audio-in-video)",
                    )
                    .into());
                }
                let paths = crate::media::video::frame_folder_paths(path)?;
                let paths: Vec<_> = if paths.len() > self.max_frames {
                    let idx = crate::media::video::sample_indices(paths.len(), self.fps, self.fps, 1, self.max_frames);
                    idx.into_iter().map(|i| paths[i].clone()).collect()
                } else {
                    paths
                };
                let frames = crate::media::video::load_frames(&paths, &mut |f| self.resize_video_frame(&f))?;
                MediaInput::Video(VideoInput { frames, fps: self.fps, audio: None, resized: true })
            }
            ContentItem::Video(path) => {
                let sampling = crate::media::mp4::FrameSampling {
                    fps: self.fps,
                    min_frames: self.min_frames,
                    max_frames: self.max_frames,
                };
                let video = crate::media::mp4::load_mp4_with(path, &sampling, &mut |f| self.resize_video_frame(&f))?;
                let audio = if self.use_audio_in_video {
                    if !video.info.has_audio {
                        return Err(MediaError::new(
                            path,
                            "the video has no sound track, which audio in video needs (drop --use-audio-in-video)",
                        )
                        .into());
                    }
                    Some(crate::media::audio::load_audio(path)?)
                } else {
                    None
                };
                MediaInput::Video(VideoInput { frames: video.frames, fps: video.sample_fps, audio, resized: true })
            }
        }))
    }

    /// One video frame at the size the video processor gives it.
    fn resize_video_frame(&self, frame: &image::RgbImage) -> std::result::Result<image::RgbImage, String> {
        crate::media::video::resize_frame(frame, &self.video)
    }

    /// The patches of a video's frames (resized here unless they already are).
    fn video_features(&self, v: &VideoInput) -> std::result::Result<VisualFeatures, String> {
        if v.resized {
            crate::media::video::patchify_resized_frames(&v.frames, v.fps)
        } else {
            crate::media::video::preprocess_frames(&v.frames, &self.video, v.fps)
        }
    }

    /// The prompt for a conversation whose media are already decoded: `media[k]` belongs to the
    /// k-th non-text content item (in message order). Audio clips, including the sound tracks of
    /// videos under `use_audio_in_video`, are kept in prompt order.
    pub fn encode_chat_with_media(&self, messages: &[Message], media: Vec<MediaInput>) -> Result<EncodedPrompt> {
        use crate::media::MediaError;
        let items: Vec<&ContentItem> =
            messages.iter().flat_map(|m| &m.content).filter(|c| !matches!(c, ContentItem::Text(_))).collect();
        if items.len() != media.len() {
            bail!("the conversation has {} media items but {} decoded media were given", items.len(), media.len());
        }
        self.refuse_media_for_text_model(&items)?;
        // Text-only prompts need no media tokens (a text model's tokenizer has none).
        let (audio_id, video_id) = if items.is_empty() {
            (0, 0)
        } else {
            (self.tokenizer.special_id(AUDIO_PAD)?, self.tokenizer.special_id(VIDEO_PAD)?)
        };
        let mut prompt = EncodedPrompt::default();
        let mut audio_counts = Vec::new();
        let mut image_counts = Vec::new();
        let mut video_spans: Vec<Vec<u32>> = Vec::new();
        for (k, (item, input)) in items.into_iter().zip(media).enumerate() {
            match (item, input) {
                (ContentItem::Audio(path), MediaInput::Audio(samples)) => {
                    let features = AudioFeatures::from_waveform(&samples, &self.mel);
                    if features.token_count() == 0 {
                        return Err(MediaError::new(path, "the audio is too short (under 40 ms)").into());
                    }
                    audio_counts.push(features.token_count());
                    prompt.audio.push(features);
                }
                (ContentItem::Image(path), MediaInput::Image(img)) => {
                    let (pixel_values, grid) = crate::media::image::preprocess_image(&img, &self.image)
                        .map_err(|reason| MediaError::new(path, reason))?;
                    let features = VisualFeatures { pixel_values, grid, second_per_grid: 1.0 };
                    image_counts.push(features.token_count());
                    prompt.images.push(features);
                }
                (ContentItem::Video(path), MediaInput::Video(v)) => match (&v.audio, self.use_audio_in_video) {
                    (Some(samples), true) => {
                        let (video, audio) =
                            self.encode_video_with_audio(&v, samples).map_err(|reason| MediaError::new(path, reason))?;
                        let ids = SpanIds {
                            video: video_id,
                            audio: audio_id,
                            audio_bos: self.tokenizer.special_id("<|audio_bos|>")?,
                            audio_eos: self.tokenizer.special_id("<|audio_eos|>")?,
                        };
                        video_spans.push(audio_in_video_span(&video, audio.token_count(), &ids));
                        prompt.videos.push(video);
                        prompt.audio.push(audio);
                    }
                    (None, true) => {
                        return Err(MediaError::new(path, "audio in video is on but this video has no sound track").into())
                    }
                    (_, false) => {
                        let video = self.video_features(&v).map_err(|reason| MediaError::new(path, reason))?;
                        video_spans.push(vec![video_id; video.token_count()]);
                        prompt.videos.push(video);
                    }
                },
                (item, _) => bail!("decoded media {k} is not of the kind of its content item {item:?}"),
            }
        }
        prompt.use_audio_in_video = self.use_audio_in_video && !prompt.videos.is_empty();
        let text = self.template.render(messages, true)?;
        let mut ids = self.tokenizer.encode(&text)?;
        // Plain audio placeholders first: a video's span holds audio tokens of its own.
        let counts = |c: &[usize], id: u32| c.iter().map(|&n| vec![id; n]).collect::<Vec<_>>();
        let expansions: [(&str, Vec<Vec<u32>>); 3] = [
            (AUDIO_PAD, counts(&audio_counts, audio_id)),
            (IMAGE_PAD, if image_counts.is_empty() { Vec::new() } else { counts(&image_counts, self.tokenizer.special_id(IMAGE_PAD)?) }),
            (VIDEO_PAD, video_spans),
        ];
        for (token, spans) in expansions {
            if spans.is_empty() {
                continue;
            }
            ids = expand_placeholders_with(&ids, self.tokenizer.special_id(token)?, &spans)
                .with_context(|| format!("the chat template's {token} placeholders do not match the media items"))?;
        }
        prompt.input_ids = ids;
        Ok(prompt)
    }

    /// The features of a video and its sound track: the frames' patches at the video's rate, and
    /// the log-mel features of `samples` (mono, 16 kHz).
    pub fn encode_video_with_audio(
        &self,
        video: &VideoInput,
        samples: &[f32],
    ) -> std::result::Result<(VisualFeatures, AudioFeatures), String> {
        let video = self.video_features(video)?;
        let audio = AudioFeatures::from_waveform(samples, &self.mel);
        if audio.token_count() == 0 {
            return Err("the video's sound track is too short (under 40 ms)".into());
        }
        Ok((video, audio))
    }

    /// The conversation of an optional system prompt and one user turn.
    pub fn conversation(system: Option<&str>, user: Vec<ContentItem>) -> Vec<Message> {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(Message::system(s));
        }
        messages.push(Message::user(user));
        messages
    }
}

/// The media placeholder tokens.
pub const AUDIO_PAD: &str = "<|AUDIO|>";
pub const IMAGE_PAD: &str = "<|IMAGE|>";
pub const VIDEO_PAD: &str = "<|VIDEO|>";

/// Replaces the k-th `placeholder` id with `counts[k]` copies of it.
pub fn expand_placeholders(ids: &[u32], placeholder: u32, counts: &[usize]) -> Result<Vec<u32>> {
    let spans: Vec<Vec<u32>> = counts.iter().map(|&n| vec![placeholder; n]).collect();
    expand_placeholders_with(ids, placeholder, &spans)
}

/// Replaces the k-th `placeholder` id with `spans[k]`.
pub fn expand_placeholders_with(ids: &[u32], placeholder: u32, spans: &[Vec<u32>]) -> Result<Vec<u32>> {
    let found = ids.iter().filter(|&&t| t == placeholder).count();
    if found != spans.len() {
        bail!("the prompt has {found} placeholders for {} media items", spans.len());
    }
    let mut out = Vec::with_capacity(ids.len() + spans.iter().map(Vec::len).sum::<usize>());
    let mut k = 0;
    for &t in ids {
        if t == placeholder {
            out.extend_from_slice(&spans[k]);
            k += 1;
        } else {
            out.push(t);
        }
    }
    Ok(out)
}

/// Token ids of an audio-in-video span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanIds {
    pub video: u32,
    pub audio: u32,
    pub audio_bos: u32,
    pub audio_eos: u32,
}

/// Position ids per second of media time, and the chunk length (seconds) of the audio-in-video
/// interleave (the processor's `position_id_per_seconds` and `seconds_per_chunk`).
pub const POSITION_ID_PER_SECONDS: f32 = 25.0;
pub const SECONDS_PER_CHUNK: f32 = 2.0;

/// What a video's `<|VIDEO|>` placeholder becomes with its sound track, as transformers'
/// `Qwen2_5OmniProcessor.replace_video_with_audio_token` builds it: `<|audio_bos|>`, then per
/// 2-second chunk the chunk's video tokens and then its audio tokens, then `<|audio_eos|>`.
/// Video token (t, i, j) has time index `t * second_per_grid * 25` (truncated as the 3-D position
/// walk truncates it), audio token k has index k; a chunk is 50 index units.
pub fn audio_in_video_span(video: &VisualFeatures, audio_tokens: usize, ids: &SpanIds) -> Vec<u32> {
    let per_frame = video.grid[1] / 2 * (video.grid[2] / 2);
    let video_index: Vec<i64> = (0..video.grid[0])
        .flat_map(|t| {
            let index = (t as f32 * video.second_per_grid * POSITION_ID_PER_SECONDS) as i64;
            std::iter::repeat(index).take(per_frame)
        })
        .collect();
    let audio_index: Vec<i64> = (0..audio_tokens as i64).collect();
    let per_chunk = (POSITION_ID_PER_SECONDS * SECONDS_PER_CHUNK) as i64;
    let video_chunks = crate::omni::rope::chunked_index(&video_index, per_chunk, 0);
    let audio_chunks = crate::omni::rope::chunked_index(&audio_index, per_chunk, 0);
    let mut out = Vec::with_capacity(video_index.len() + audio_tokens + 2);
    out.push(ids.audio_bos);
    for j in 0..video_chunks.len().max(audio_chunks.len()) {
        if let Some(&(a, z)) = video_chunks.get(j) {
            out.extend(std::iter::repeat(ids.video).take(z - a));
        }
        if let Some(&(a, z)) = audio_chunks.get(j) {
            out.extend(std::iter::repeat(ids.audio).take(z - a));
        }
    }
    out.push(ids.audio_eos);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_chatml() {
        let msgs = vec![Message::system("Be brief."), Message::user_text("Hi")];
        let s = ChatTemplate::BuiltIn.render(&msgs, true).unwrap();
        assert_eq!(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        let msgs = vec![Message::user(vec![ContentItem::Audio("a.wav".into()), ContentItem::Text("What?".into())])];
        let s = ChatTemplate::BuiltIn.render(&msgs, false).unwrap();
        assert_eq!(s, "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>What?<|im_end|>\n");
    }

    #[test]
    fn jinja_template_sees_typed_items() {
        let t = ChatTemplate::Jinja {
            source: "{% for m in messages %}[{{ m.role }}:{% if m.content is string %}{{ m.content }}\
                     {% else %}{% for c in m.content %}{{ c.type }}{% endfor %}{% endif %}]{% endfor %}\
                     {% if add_generation_prompt %}>{% endif %}"
                .into(),
            file: "t.json".into(),
        };
        let msgs = vec![
            Message::system("S"),
            Message::user(vec![ContentItem::Image("x.png".into()), ContentItem::Text("q".into())]),
        ];
        assert_eq!(t.render(&msgs, true).unwrap(), "[system:S][user:imagetext]>");
    }

    #[test]
    fn placeholders_expand_in_order() {
        assert_eq!(expand_placeholders(&[1, 9, 2, 9, 3], 9, &[2, 3]).unwrap(), vec![1, 9, 9, 2, 9, 9, 9, 3]);
        assert!(expand_placeholders(&[1, 9, 2], 9, &[2, 3]).is_err());
    }

    #[test]
    fn audio_in_video_interleaves_per_two_seconds() {
        let ids = SpanIds { video: 9, audio: 3, audio_bos: 4, audio_eos: 5 };
        // The video_audio fixture: grid [3, 4, 6] (6 tokens per temporal step) at 1 s per step,
        // 82 audio tokens: V12 A50 V6 A32.
        let v = VisualFeatures { pixel_values: vec![], grid: [3, 4, 6], second_per_grid: 1.0 };
        let span = audio_in_video_span(&v, 82, &ids);
        let mut want = vec![4];
        want.extend([9; 12]);
        want.extend([3; 50]);
        want.extend([9; 6]);
        want.extend([3; 32]);
        want.push(5);
        assert_eq!(span, want);
        // Video longer than its sound: the extra chunks hold video only. 0.5 s per step (4 fps),
        // steps at index 0, 12, 25, 37, 50, 62: chunk 0 holds four steps.
        let v = VisualFeatures { pixel_values: vec![], grid: [6, 2, 2], second_per_grid: 0.5 };
        assert_eq!(audio_in_video_span(&v, 10, &ids), [vec![4, 9, 9, 9, 9], vec![3; 10], vec![9, 9, 5]].concat());
    }

    #[test]
    fn broken_template_names_its_file() {
        let t = ChatTemplate::Jinja { source: "{% for %}".into(), file: "/m/chat_template.json".into() };
        let e = format!("{:#}", t.render(&[Message::user_text("x")], true).unwrap_err());
        assert!(e.contains("/m/chat_template.json"), "{e}");
    }
}
