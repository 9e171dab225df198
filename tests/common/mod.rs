//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A committed fixture directory.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/omni").join(name)
}

/// Copies every file of a fixture into a fresh temporary directory.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&fixture(name), dir.path());
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `{:#}` of an error, for substring checks.
pub fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

/// A JPEG with an EXIF orientation tag (6: rotate 90 degrees clockwise) spliced in.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut exif = Vec::new();
    exif.extend(b"Exif\0\0");
    exif.extend(b"MM\0\x2a\0\0\0\x08"); // big-endian TIFF header, IFD at 8
    exif.extend(&1u16.to_be_bytes()); // one entry
    exif.extend(&0x0112u16.to_be_bytes()); // Orientation
    exif.extend(&3u16.to_be_bytes()); // SHORT
    exif.extend(&1u32.to_be_bytes());
    exif.extend(&orientation.to_be_bytes());
    exif.extend(&[0, 0]);
    exif.extend(&0u32.to_be_bytes()); // no next IFD
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend(&[0xFF, 0xE1]);
    out.extend(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend(&exif);
    out.extend(&jpeg[2..]);
    out
}
