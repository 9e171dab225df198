//! Parity with transformers: every fixture directory under `tests/fixtures/omni/` and under each
//! root in `TTRAV_OMNI_FIXTURES` (colon-separated) is loaded, run on the CPU in f32, and compared
//! with every expected tensor it holds (see `ttrav::omni::parity`). A fixture that needs a
//! capability ttrav lacks fails with a message naming it; nothing passes by being skipped.

use std::path::PathBuf;
use ttrav::omni::parity::{check_fixture, fixture_dirs, ParityOptions};

#[test]
fn omni_fixtures_match_transformers() {
    let mut roots = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/omni")];
    if let Ok(extra) = std::env::var("TTRAV_OMNI_FIXTURES") {
        roots.extend(extra.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    let dirs = fixture_dirs(&roots).unwrap();
    assert!(!dirs.is_empty(), "no fixtures found under tests/fixtures/omni");
    let opts = ParityOptions::default();
    let mut failures = Vec::new();
    for dir in &dirs {
        match check_fixture(dir, &opts) {
            Ok(keys) => eprintln!("ok   {} ({})", dir.display(), keys.join(", ")),
            Err(e) => {
                eprintln!("FAIL {}: {e:#}", dir.display());
                failures.push(format!("{}: {e:#}", dir.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}
