//! Media input: decoding and resampling audio, images, frame folders and MP4 video, and the
//! model-ready features made from them.
//!
//! Errors carry the file and the reason ([`MediaError`]), so that a dataset run can report a bad
//! item and skip it. The third-party decoders run behind `guarded`: some of them assert on
//! malformed data, and such a panic becomes that file's error.

pub mod audio;
pub mod image;
pub mod mel;
pub mod mp4;
pub mod video;

use std::path::{Path, PathBuf};

/// A media file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaError {
    pub path: PathBuf,
    pub reason: String,
}

impl MediaError {
    pub fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), reason: reason.into() }
    }
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for MediaError {}

/// Runs a decoder on `path`; a panic inside it (a third-party decoder's assertion on malformed
/// data) becomes an error naming the file instead of ending the program.
pub(crate) fn guarded<T>(path: &Path, decode: impl FnOnce() -> Result<T, MediaError>) -> Result<T, MediaError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(MediaError::new(path, format!("the decoder failed on malformed data ({what})")))
    })
}
