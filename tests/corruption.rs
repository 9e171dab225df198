//! Corruption tests with counts. For every input parser, valid files made here (or committed
//! fixtures) are fed through the real reader after thousands of seeded mutations: truncations
//! at every length class, bit flips, random bytes, extreme values where sizes are declared
//! (binary fields and JSON numbers), insertions, deletions and duplicated spans. Each case must
//! end in an error that names the file or in a valid result, and never in a panic (caught and
//! counted), a hang (a case over 10 s fails; a watchdog ends the run after 120 s) or an
//! allocation far beyond the file's size (a counting allocator measures each case's peak of live
//! heap bytes against the parser's bound). Everything is seeded: every run makes the same cases.
//! `cargo test --test corruption -- --nocapture` prints the counts per parser;
//! `CORRUPTION_KEEP=DIR` keeps the files of failing cases there, `CORRUPTION_TRACE=1` names each
//! case before it runs (for one that ends the process), `CORRUPTION_MUTATIONS=N` runs N per file.

mod common;
#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/synth_audio.rs"]
mod synth_audio;
#[path = "common/synth_mp4.rs"]
mod synth_mp4;

use alloc::{measure, serial, MIB};
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use ttrav::Rng;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

// ---- mutations --------------------------------------------------------------------------------

/// Values written where a file declares a size or count.
const EXTREME_U32: [u32; 7] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fff0, 0xffff_ffff, 0x4000_0000];
const EXTREME_U64: [u64; 4] = [0, u64::MAX, 0x7fff_ffff_ffff_ffff, 0x0000_0100_0000_0000];
/// Numbers written over a JSON file's numbers.
const EXTREME_NUMBERS: [&str; 13] = [
    "0", "-1", "1e308", "-1e308", "4294967296", "18446744073709551615", "99999999999999999999999", "1.5", "NaN",
    "1e-320", "9007199254740993", "2147483648", "1000000000000",
];

/// Lengths a file is cut to: every length up to 32 bytes, around every power of two, the last 32
/// lengths, and 31 evenly spaced ones.
fn truncation_lengths(len: usize) -> Vec<usize> {
    let mut out: Vec<usize> = (0..=32.min(len)).collect();
    let mut p = 1usize;
    while p < len {
        out.extend([p - 1, p, p + 1]);
        p *= 2;
    }
    out.extend((1..=32).filter_map(|d| len.checked_sub(d)));
    out.extend((1..32).map(|i| len * i / 32));
    out.retain(|&l| l < len);
    out.sort_unstable();
    out.dedup();
    out
}

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// A position in a file: mostly in the first or last 512 bytes, where headers and indexes are.
fn position(rng: &mut Rng, len: usize) -> usize {
    match below(rng, 10) {
        0..=3 => below(rng, len.min(512)),
        4..=5 => len - 1 - below(rng, len.min(512)),
        _ => below(rng, len),
    }
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// One random change to `data` (non-empty); returns what it did.
fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, text: bool) -> String {
    let len = data.len();
    let kinds = if text { 9 } else { 8 };
    match below(rng, kinds) {
        0 | 1 => {
            let bits: Vec<usize> = (0..1 + below(rng, 4)).map(|_| position(rng, len) * 8 + below(rng, 8)).collect();
            for &b in &bits {
                data[b / 8] ^= 1 << (b % 8);
            }
            format!("flip bits {bits:?}")
        }
        2 => {
            let at = position(rng, len);
            let n = (1 + below(rng, 16)).min(len - at);
            let bytes = random_bytes(rng, n);
            data[at..at + n].copy_from_slice(&bytes);
            format!("random bytes at {at}..{}", at + n)
        }
        3 => {
            let at = position(rng, len);
            let big_endian = below(rng, 2) == 0;
            let bytes: Vec<u8> = if below(rng, 3) == 0 {
                let v = EXTREME_U64[below(rng, EXTREME_U64.len())];
                if big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() }
            } else {
                let v = EXTREME_U32[below(rng, EXTREME_U32.len())];
                if big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() }
            };
            let n = bytes.len().min(len - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
            format!("extreme value {bytes:02x?} at {at}")
        }
        4 => {
            let at = position(rng, len);
            let n = 1 + below(rng, 64);
            let bytes = random_bytes(rng, n);
            data.splice(at..at, bytes);
            format!("insert {n} bytes at {at}")
        }
        5 => {
            let at = position(rng, len);
            let n = (1 + below(rng, 64)).min(len - at);
            data.drain(at..at + n);
            format!("delete {at}..{}", at + n)
        }
        6 => {
            let from = position(rng, len);
            let n = (1 + below(rng, 256)).min(len - from);
            let to = position(rng, len);
            let span = data[from..from + n].to_vec();
            data.splice(to..to, span);
            format!("duplicate {from}..{} at {to}", from + n)
        }
        7 => {
            let at = position(rng, len);
            let n = (1 + below(rng, 256)).min(len - at);
            data[at..at + n].fill(if below(rng, 2) == 0 { 0 } else { 0xff });
            format!("fill {at}..{}", at + n)
        }
        _ => {
            // A JSON number replaced by an extreme one.
            let numbers: Vec<(usize, usize)> = {
                let mut spans = Vec::new();
                let mut i = 0;
                while i < data.len() {
                    if data[i].is_ascii_digit() {
                        let start = i;
                        while i < data.len() && (data[i].is_ascii_digit() || data[i] == b'.') {
                            i += 1;
                        }
                        spans.push((start, i));
                    } else {
                        i += 1;
                    }
                }
                spans
            };
            if numbers.is_empty() {
                return mutate_once(rng, data, false);
            }
            let (a, z) = numbers[below(rng, numbers.len())];
            let with = EXTREME_NUMBERS[below(rng, EXTREME_NUMBERS.len())];
            data.splice(a..z, with.bytes());
            format!("number at {a} -> {with}")
        }
    }
}

/// Mutation `index` of `data`: the truncations first, then one to three random changes (a whole
/// file of random bytes now and then).
fn mutation(data: &[u8], index: usize, truncations: &[usize], rng: &mut Rng, text: bool) -> (String, Vec<u8>) {
    if let Some(&l) = truncations.get(index) {
        return (format!("truncate to {l} bytes"), data[..l].to_vec());
    }
    if below(rng, 64) == 0 {
        return ("random bytes, same length".into(), random_bytes(rng, data.len()));
    }
    let mut out = data.to_vec();
    let mut what = Vec::new();
    for _ in 0..1 + below(rng, 3) {
        if out.is_empty() {
            break;
        }
        what.push(mutate_once(rng, &mut out, text));
    }
    (what.join(", "), out)
}

// ---- running cases ----------------------------------------------------------------------------

/// What a reader made of a file.
enum Verdict {
    /// A valid result.
    Valid,
    /// An error (its text).
    Error(String),
    /// A result or error that breaks the reader's promises.
    Broken(String),
}

/// An error verdict, which must name the file (or one of `also`, files the reader was given).
fn refused(message: String, path: &Path, also: &[&str]) -> Verdict {
    let name = path.file_name().unwrap().to_string_lossy();
    if message.contains(name.as_ref()) || also.iter().any(|a| message.contains(a)) {
        Verdict::Error(message)
    } else {
        Verdict::Broken(format!("the error does not name the file: {message}"))
    }
}

thread_local! {
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The case now running and when it began, for the watchdog.
static RUNNING: Mutex<Option<(Instant, String)>> = Mutex::new(None);
const CASE_LIMIT: Duration = Duration::from_secs(10);
const WATCHDOG_LIMIT: Duration = Duration::from_secs(120);

/// Panics inside a case are recorded, not printed; a watchdog ends the process when a case hangs.
fn install_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Errors that carry a backtrace (candle's, when RUST_BACKTRACE is set) would symbolise it
        // when formatted, and the debug information read for that would count as the case's heap.
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            } else {
                default(info);
            }
        }));
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((start, case)) = running {
                if start.elapsed() > WATCHDOG_LIMIT {
                    eprintln!("HANG: {case} has run for {:?}; ending the test run", start.elapsed());
                    std::process::exit(101);
                }
            }
        });
    });
}

/// The counts of one parser.
struct Report {
    parser: &'static str,
    files: usize,
    cases: usize,
    valid: usize,
    errors: usize,
    failures: Vec<String>,
    max_peak: usize,
    /// A few of the errors, to show what the readers say.
    examples: Vec<String>,
    /// Errors that ttrav made of a panic inside a third-party decoder.
    caught: usize,
    /// The case that held the most heap.
    max_case: String,
    /// The first caught panic's message.
    caught_example: Option<String>,
}

/// The valid inputs of a parser: file name and bytes (a reader is given the name, so that an
/// extension can tell the format), and what is done to each mutation before it is read.
struct Input {
    name: String,
    bytes: Vec<u8>,
    text: bool,
    /// Recomputes the format's checksums, so that mutations reach the decoder behind them.
    fix: Option<fn(&mut [u8])>,
}

fn input(name: &str, bytes: Vec<u8>) -> Input {
    let text = name.ends_with(".json") || name.ends_with(".jsonl");
    Input { name: name.to_string(), bytes, text, fix: None }
}

/// An input whose mutations get their checksums recomputed by `fix`.
fn input_fixed(name: &str, bytes: Vec<u8>, fix: fn(&mut [u8])) -> Input {
    Input { fix: Some(fix), ..input(name, bytes) }
}

/// CRC-32 as PNG computes it (reflected, polynomial 0xEDB88320).
fn crc32_png(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Rewrites the CRC of every PNG chunk that still lies within the file.
fn fix_png_crcs(d: &mut [u8]) {
    let mut pos = 8;
    while pos + 12 <= d.len() {
        let len = u32::from_be_bytes([d[pos], d[pos + 1], d[pos + 2], d[pos + 3]]) as usize;
        let Some(end) = (pos + 8).checked_add(len).filter(|&e| e + 4 <= d.len()) else { break };
        let crc = crc32_png(&d[pos + 4..end]);
        d[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end + 4;
    }
}

/// CRC-32 as Ogg computes it (not reflected, polynomial 0x04C11DB7, no final inversion).
fn crc32_ogg(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

/// Rewrites the checksum of every Ogg page that still lies within the file.
fn fix_ogg_crcs(d: &mut [u8]) {
    let mut pos = 0;
    while pos + 27 <= d.len() && &d[pos..pos + 4] == b"OggS" {
        let segments = d[pos + 26] as usize;
        let Some(table) = d.get(pos + 27..pos + 27 + segments) else { break };
        let end = pos + 27 + segments + table.iter().map(|&s| s as usize).sum::<usize>();
        if end > d.len() {
            break;
        }
        d[pos + 22..pos + 26].fill(0);
        let crc = crc32_ogg(&d[pos..end]);
        d[pos + 22..pos + 26].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Feeds `mutations` mutations of each input (plus the input itself, which must be valid) to
/// `read`, in `dir`; `bound(file_len)` is the most heap a case may hold at once.
fn fuzz(
    parser: &'static str,
    inputs: &[Input],
    mutations: usize,
    dir: &Path,
    bound: impl Fn(usize) -> usize,
    read: impl Fn(&Path) -> Verdict,
) -> Report {
    install_hooks();
    let mut report =
        Report { parser, files: inputs.len(), cases: 0, valid: 0, errors: 0, failures: Vec::new(), max_peak: 0, examples: Vec::new(), caught: 0, max_case: String::new(), caught_example: None };
    // Every input is in place, valid, while another one is mutated.
    for inp in inputs {
        std::fs::write(dir.join(&inp.name), &inp.bytes).unwrap();
    }
    for (k, inp) in inputs.iter().enumerate() {
        let path = dir.join(&inp.name);
        let truncations = truncation_lengths(inp.bytes.len());
        let mut rng = Rng::seed(0x5eed ^ (k as u64) << 32 ^ parser.len() as u64);
        for index in 0..=mutations {
            let (what, mut bytes) = if index == 0 {
                ("unchanged".to_string(), inp.bytes.clone())
            } else {
                mutation(&inp.bytes, index - 1, &truncations, &mut rng, inp.text)
            };
            if let Some(fix) = inp.fix {
                fix(&mut bytes);
            }
            // A new file each time: rewriting one in place (O_TRUNC) makes ext4 flush it to disk.
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, &bytes).unwrap();
            let case = format!("{parser} {} #{index} ({what})", inp.name);
            if std::env::var_os("CORRUPTION_TRACE").is_some() {
                eprintln!("case {case}");
            }
            *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), case.clone()));
            IN_CASE.with(|c| c.set(true));
            LAST_PANIC.with(|p| p.borrow_mut().clear());
            let start = Instant::now();
            let (outcome, used) = measure(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&path))));
            let took = start.elapsed();
            IN_CASE.with(|c| c.set(false));
            *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if used.peak > report.max_peak {
                report.max_peak = used.peak;
                report.max_case = case.clone();
            }
            if index > 0 {
                report.cases += 1;
            }
            let limit = bound(bytes.len());
            let failure = match outcome {
                Err(_) => Some(format!("PANIC {}", LAST_PANIC.with(|p| p.borrow().clone()))),
                Ok(_) if used.peak.max(used.largest) > limit => {
                    Some(format!("ALLOCATION peak {} bytes, largest request {} > bound {limit}", used.peak, used.largest))
                }
                Ok(_) if took > CASE_LIMIT => Some(format!("SLOW {took:?}")),
                Ok(Verdict::Broken(why)) => Some(format!("BROKEN {why}")),
                Ok(Verdict::Error(e)) if index == 0 => Some(format!("the valid input is refused: {e}")),
                Ok(Verdict::Error(e)) => {
                    report.errors += 1;
                    let panic = LAST_PANIC.with(|p| p.borrow().clone());
                    if !panic.is_empty() {
                        report.caught += 1;
                        report.caught_example.get_or_insert(format!("{what}: {panic}"));
                    }
                    if report.examples.len() < 3 || report.errors % 200 == 0 {
                        report.examples.push(format!("{what}: {e}"));
                    }
                    None
                }
                Ok(Verdict::Valid) => {
                    report.valid += (index > 0) as usize;
                    None
                }
            };
            if let Some(f) = failure {
                // CORRUPTION_KEEP=DIR keeps the failing files, to reproduce them.
                if let Some(keep) = std::env::var_os("CORRUPTION_KEEP") {
                    let _ = std::fs::write(Path::new(&keep).join(format!("{index}-{}", inp.name)), &bytes);
                }
                report.failures.push(format!("{case}: {f}"));
            }
        }
        std::fs::write(&path, &inp.bytes).unwrap();
    }
    report
}

fn check(report: Report) {
    eprintln!(
        "\n| {} | {} | {} | {} | {} valid, {} errors ({} from a caught decoder panic) | {:.1} MiB |",
        report.parser,
        report.files,
        report.cases,
        report.cases.saturating_sub(report.failures.len()),
        report.valid,
        report.errors,
        report.caught,
        report.max_peak as f64 / MIB as f64
    );
    eprintln!("    most heap: {}", report.max_case);
    if let Some(p) = &report.caught_example {
        eprintln!("    a caught panic: {}", p.replace('\n', " "));
    }
    for e in &report.examples {
        eprintln!("    e.g. {}", e.chars().take(300).collect::<String>());
    }
    assert!(
        report.failures.is_empty(),
        "{}: {} of {} cases failed:\n{}",
        report.parser,
        report.failures.len(),
        report.cases,
        report.failures.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---- the parsers ------------------------------------------------------------------------------

use synth_audio::{flac_bytes, mp3_bytes, to_i16, tone, vorbis_bytes, wav_f32, wav_i16};
use ttrav::{ContentItem, ModelSource, Processor};

/// Mutations per valid file (`CORRUPTION_MUTATIONS` overrides it, for longer searches).
fn mutations() -> usize {
    std::env::var("CORRUPTION_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(MUTATIONS)
}
const MUTATIONS: usize = 3000;

/// Heap bounds. JSON and safetensors readers hold the file and its parsed form: 64 MiB, or 1000
/// times the file for large files.
fn parsed_bound(len: usize) -> usize {
    (64 * MIB).max(1000 * len)
}

/// A processor with the video fixtures' small pixel limits and text_basic's tokenizer.
fn media_processor(audio_in_video: bool) -> (tempfile::TempDir, Processor) {
    let dir = common::copy_fixture("video_audio");
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.json"] {
        std::fs::copy(common::fixture("text_basic").join(f), dir.path().join(f)).unwrap();
    }
    let mut p = Processor::load(&ModelSource::Local(dir.path().to_path_buf())).unwrap();
    p.use_audio_in_video = audio_in_video;
    (dir, p)
}

/// A media file through the whole prompt path: decoding, features, placeholders.
fn read_media(p: &Processor, item: ContentItem, path: &Path) -> Verdict {
    let messages = Processor::conversation(None, vec![item, ContentItem::Text("What is it?".into())]);
    match p.encode_chat(&messages) {
        Ok(prompt) if prompt.input_ids.is_empty() => Verdict::Broken("an empty prompt".into()),
        Ok(_) => Verdict::Valid,
        Err(e) => refused(format!("{e:#}"), path, &[]),
    }
}

fn audio_fuzz(parser: &'static str, inputs: Vec<Input>) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_model, p) = media_processor(false);
    check(fuzz(parser, &inputs, mutations(), dir.path(), parsed_bound, |path| {
        read_media(&p, ContentItem::Audio(path.to_path_buf()), path)
    }));
}

#[test]
fn wav() {
    let mono = to_i16(&tone(440.0, 16000, 0.25, 0.5));
    let stereo: Vec<f32> = tone(300.0, 22050, 0.1, 0.5).iter().flat_map(|&v| [v, -v]).collect();
    audio_fuzz("WAV", vec![input("a.wav", wav_i16(&mono, 1, 16000)), input("b.wav", wav_f32(&stereo, 2, 22050))]);
}

#[test]
fn flac() {
    audio_fuzz("FLAC", vec![input("a.flac", flac_bytes(&to_i16(&tone(440.0, 16000, 0.25, 0.5)), 16000))]);
}

#[test]
fn mp3() {
    audio_fuzz("MP3", vec![input("a.mp3", mp3_bytes(&to_i16(&tone(440.0, 22050, 0.3, 0.5)), 22050))]);
}

#[test]
fn ogg_vorbis() {
    // The second copy gets its pages' checksums recomputed after each mutation, so that the
    // changes reach the Vorbis decoder (the first shows the checksums refusing them).
    let ogg = vorbis_bytes(&tone(440.0, 22050, 0.3, 0.5), 22050);
    audio_fuzz("Ogg Vorbis", vec![input("a.ogg", ogg.clone()), input_fixed("b.ogg", ogg, fix_ogg_crcs)]);
}

#[test]
fn m4a_aac() {
    let aac = synth_mp4::encode_aac(&tone(440.0, 16000, 0.3, 0.5), 16000, 1);
    audio_fuzz("M4A (AAC)", vec![input("a.m4a", synth_mp4::mux(None, Some(&aac)))]);
}

#[test]
fn mp4() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let video = synth_mp4::encode_h264(&synth_mp4::busy_frames(8, 64, 48), 8);
    let sound = synth_mp4::encode_aac(&tone(440.0, 16000, 1.0, 0.5), 16000, 1);
    let (_m1, silent) = media_processor(false);
    let (_m2, with_sound) = media_processor(true);
    let inputs = [input("a.mp4", synth_mp4::mux(Some(&video), None)), input("b.mp4", synth_mp4::mux(Some(&video), Some(&sound)))];
    // b.mp4 is read with its sound track (audio in video), a.mp4 without.
    check(fuzz("MP4 (H.264, AAC)", &inputs, mutations(), dir.path(), parsed_bound, |path| {
        let p = if path.ends_with("b.mp4") { &with_sound } else { &silent };
        read_media(p, ContentItem::Video(path.to_path_buf()), path)
    }));
}

fn image_bytes(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).unwrap();
    out
}

/// Image decoders allocate the image a header states before reading its data, so a few corrupt
/// bytes can ask for any size: ttrav refuses more than 256 MiB decoded (64 megapixels), and the
/// orientation and RGB conversions may copy it once more.
fn image_bound(_len: usize) -> usize {
    2 * ttrav::media::image::MAX_DECODE_BYTES as usize + 64 * MIB
}

fn image_fuzz(parser: &'static str, inputs: Vec<Input>) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_model, p) = media_processor(false);
    check(fuzz(parser, &inputs, mutations(), dir.path(), image_bound, |path| {
        read_media(&p, ContentItem::Image(path.to_path_buf()), path)
    }));
}

fn gradient(w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8])))
}

#[test]
fn png() {
    use image::ImageFormat::Png;
    let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 30, |x, y| image::Rgba([x as u8 * 6, y as u8 * 8, 90, (x * y) as u8])));
    let rgb = image_bytes(&gradient(48, 32), Png);
    // b.png's chunk checksums are recomputed after each mutation, so that they reach the decoder.
    image_fuzz("PNG", vec![input("a.png", rgb.clone()), input_fixed("b.png", rgb, fix_png_crcs), input_fixed("c.png", image_bytes(&rgba, Png), fix_png_crcs)]);
}

#[test]
fn jpeg() {
    let plain = image_bytes(&gradient(48, 32), image::ImageFormat::Jpeg);
    image_fuzz("JPEG", vec![input("a.jpg", plain.clone()), input("b.jpg", common::with_exif_orientation(&plain, 6))]);
}

#[test]
fn webp() {
    image_fuzz("WebP", vec![input("a.webp", image_bytes(&gradient(48, 32), image::ImageFormat::WebP))]);
}

#[test]
fn gif() {
    image_fuzz("GIF", vec![input("a.gif", image_bytes(&gradient(48, 32), image::ImageFormat::Gif))]);
}

use candle_core::{DType, Device};
use ttrav::{TextTokenizer, Thinker, ThinkerConfig};

/// Weights are read into memory once (and converted to the model's dtype at most once more).
fn weights_bound(len: usize) -> usize {
    64 * MIB + 4 * len
}

fn fixture_file(fixture: &str, file: &str) -> Vec<u8> {
    std::fs::read(common::fixture(fixture).join(file)).unwrap()
}

fn text_basic_config() -> ThinkerConfig {
    ThinkerConfig::from_file(&common::fixture("text_basic").join("config.json")).unwrap()
}

fn load_thinker(config: ThinkerConfig, weights: &Path) -> anyhow::Result<Thinker> {
    Thinker::from_files(config, &[weights.to_path_buf()], &Device::Cpu, DType::F32)
}

#[test]
fn safetensors() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = text_basic_config();
    let weights = fixture_file("text_basic", "model.safetensors");
    // A shard index naming the one file for every tensor: the weights are found through it, as
    // a sharded checkpoint's are.
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .map(|k| (k.clone(), "model.safetensors".into()))
        .collect();
    let index = serde_json::json!({"metadata": {"total_size": weights.len() - 8 - header_len}, "weight_map": map});
    let inputs = [input("model.safetensors", weights), input("model.safetensors.index.json", index.to_string().into_bytes())];
    check(fuzz("safetensors (weights, shard index)", &inputs, mutations(), dir.path(), weights_bound, |path| {
        let model = ModelSource::Local(path.parent().unwrap().to_path_buf());
        match model.weight_files().and_then(|files| Thinker::from_files(config.clone(), &files, &Device::Cpu, DType::F32)) {
            Ok(_) => Verdict::Valid,
            Err(e) => refused(format!("{e:#}"), path, &[]),
        }
    }));
}

#[test]
fn config_json() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The thinker-only layout and the full Qwen2.5-Omni layout, each loaded with its weights.
    let inputs = [
        input("text_basic.config.json", fixture_file("text_basic", "config.json")),
        input("full_tied.config.json", fixture_file("text_full_config_tied", "config.json")),
    ];
    check(fuzz("config.json (thinker)", &inputs, mutations(), dir.path(), parsed_bound, |path| {
        let fixture = if path.ends_with("text_basic.config.json") { "text_basic" } else { "text_full_config_tied" };
        let weights = common::fixture(fixture).join("model.safetensors");
        match ThinkerConfig::from_file(path).and_then(|c| load_thinker(c, &weights)) {
            Ok(_) => Verdict::Valid,
            // A config that loads but does not fit the weights is named by the weights' file.
            Err(e) => refused(format!("{e:#}"), path, &["model.safetensors"]),
        }
    }));
}

#[test]
fn tokenizer_json() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inputs = [input("tokenizer.json", fixture_file("text_basic", "tokenizer.json"))];
    check(fuzz("tokenizer.json", &inputs, mutations(), dir.path(), parsed_bound, |path| match TextTokenizer::from_file(path) {
        Ok(t) => match t.encode("Hello <|im_start|>user\nwhat is 12 + 30?<|im_end|> \u{e9}t\u{e9} \u{1F600}") {
            Ok(ids) => match t.decode(&ids) {
                Ok(_) => Verdict::Valid,
                Err(e) => refused(format!("{e:#}"), path, &[]),
            },
            Err(e) => refused(format!("{e:#}"), path, &[]),
        },
        Err(e) => refused(format!("{e:#}"), path, &[]),
    }));
}

#[test]
fn datasets() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = concat!(
        r#"{"id": "q1", "question": "Which is a colour?", "choices": ["red", "dog", "run", "ten"], "answer": "A"}"#, "\n",
        r#"{"id": "q2", "question": "What do you hear?", "audio": ["media/a.wav", "/data/audio/b.flac"], "answer": "a bell"}"#, "\n",
        r#"{"id": "q3", "question": "Describe the clip.", "video": "clip.mp4", "images": ["x.png"], "kind": "open"}"#, "\n",
        r#"{"id": 4, "question": "2 + 2 = ?", "answer": "4", "kind": "math"}"#, "\n",
        "\n",
        r#"{"question": "Caf\u00e9 \u2014 \ud83d\ude00?", "choices": ["A. oui", "B. non"], "answer": "B"}"#, "\n",
    );
    let op_ttrav = r#"[{"id": 1, "question": "Pick one.\nA. red\nB. dog\nC. run", "answer": "A", "audio_file": "/x/audio/a.wav", "source": "mmau"},
        {"prompt": "Say hi", "answer": "hi", "source": "alpaca", "id": "p2"}]"#;
    let mmau = r#"[{"id": "m1", "audio_id": "./test-mini-audios/a.wav", "question": "Which?", "choices": ["x", "y"], "answer": "y",
        "task": "sound", "category": "c", "difficulty": "easy"}]"#;
    let inputs = [input("items.jsonl", jsonl.as_bytes().to_vec()), input("op.json", op_ttrav.into()), input("mmau.json", mmau.into())];
    check(fuzz("datasets (JSONL, JSON lists)", &inputs, mutations(), dir.path(), parsed_bound, |path| {
        match ttrav::data::load_dataset(path, None, None) {
            Ok(ds) => {
                for item in &ds.items {
                    let _ = item.prompt_text();
                }
                Verdict::Valid
            }
            Err(e) => refused(format!("{e:#}"), path, &[]),
        }
    }));
}

use ttrav::rl::checkpoint::{self, AdapterConfig};

/// A rank-2 LoRA adapter on text_basic's attention projections, and its optimizer moments.
fn adapter_files(dir: &Path) -> Vec<(String, candle_core::Var)> {
    let weights = common::fixture("text_basic").join("model.safetensors");
    let mut thinker = load_thinker(text_basic_config(), &weights).unwrap();
    let targets: Vec<String> = ["q_proj", "v_proj"].iter().map(|s| s.to_string()).collect();
    let adapters = ttrav::rl::lora::attach_lora(&mut thinker, 2, 4.0, &targets, 0.02, &mut Rng::seed(3)).unwrap();
    let cfg = AdapterConfig {
        peft_type: "LORA".into(),
        r: 2,
        lora_alpha: 4.0,
        lora_dropout: 0.05,
        target_modules: targets,
        bias: "none".into(),
        task_type: "CAUSAL_LM".into(),
        base_model_name_or_path: Some("text_basic".into()),
        inference_mode: true,
    };
    checkpoint::save_adapter(dir, &adapters, &cfg).unwrap();
    let params: Vec<(String, candle_core::Var)> =
        adapters.iter().flat_map(|(n, l)| [(format!("{n}.lora_A"), l.a.clone()), (format!("{n}.lora_B"), l.b.clone())]).collect();
    let moments: Vec<candle_core::Tensor> = params.iter().map(|(_, v)| (v.as_tensor() * 0.5).unwrap()).collect();
    checkpoint::save_moments(&dir.join("optimizer.safetensors"), &moments, &moments).unwrap();
    params
}

#[test]
fn peft_adapters() {
    let _serial = serial();
    let made = tempfile::tempdir().unwrap();
    adapter_files(made.path());
    let read = |name: &str| std::fs::read(made.path().join(name)).unwrap();
    let inputs = [input("adapter_config.json", read("adapter_config.json")), input("adapter_model.safetensors", read("adapter_model.safetensors"))];
    let dir = tempfile::tempdir().unwrap();
    let weights = common::fixture("text_basic").join("model.safetensors");
    check(fuzz("PEFT adapters", &inputs, mutations(), dir.path(), parsed_bound, |path| {
        let mut thinker = load_thinker(text_basic_config(), &weights).unwrap();
        match checkpoint::load_adapter(&mut thinker, path.parent().unwrap()) {
            Ok(_) => Verdict::Valid,
            Err(e) => refused(format!("{e:#}"), path, &[]),
        }
    }));
}

#[test]
fn checkpoints() {
    let _serial = serial();
    let made = tempfile::tempdir().unwrap();
    let params = adapter_files(made.path());
    // Fully fine-tuned weights, as `--full-finetune` saves them.
    let weights = common::fixture("text_basic").join("model.safetensors");
    let mut thinker = load_thinker(text_basic_config(), &weights).unwrap();
    let trainable = ttrav::rl::lora::make_decoder_trainable(&mut thinker, false).unwrap();
    checkpoint::save_full(made.path(), &trainable).unwrap();
    let read = |name: &str| std::fs::read(made.path().join(name)).unwrap();
    let inputs = [input("optimizer.safetensors", read("optimizer.safetensors")), input(checkpoint::FULL_WEIGHTS, read(checkpoint::FULL_WEIGHTS))];
    let dir = tempfile::tempdir().unwrap();
    check(fuzz("checkpoints (moments, full weights)", &inputs, mutations(), dir.path(), weights_bound, |path| {
        let result = if path.ends_with("optimizer.safetensors") {
            checkpoint::load_moments(path, &params, &Device::Cpu).map(|_| ())
        } else {
            let mut thinker = load_thinker(text_basic_config(), &weights).unwrap();
            checkpoint::load_full(&mut thinker, path.parent().unwrap(), false).map(|_| ())
        };
        match result {
            Ok(()) => Verdict::Valid,
            Err(e) => refused(format!("{e:#}"), path, &[]),
        }
    }));
}

#[test]
fn preprocessor_config_json() {
    use ttrav::media::image::{preprocess_image, ImageProcessorConfig};
    use ttrav::media::video::{preprocess_frames, video_config_from_file};
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        input("preprocessor_config.json", fixture_file("video_audio", "preprocessor_config.json")),
        input("video_preprocessor_config.json", fixture_file("video_audio", "video_preprocessor_config.json")),
    ];
    let image = gradient(64, 48).to_rgb8();
    let frames = vec![image.clone(); 3];
    // The limits size the resized image: a case may hold it (f32 patches, twice) at the limits.
    check(fuzz("preprocessor_config.json (pixel limits)", &inputs, mutations(), dir.path(), parsed_bound, |path| {
        let result = ImageProcessorConfig::from_file(path).and_then(|image_cfg| {
            let video_cfg = video_config_from_file(path)?;
            preprocess_image(&image, &image_cfg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            preprocess_frames(&frames, &video_cfg, 2.0).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(())
        });
        match result {
            Ok(()) => Verdict::Valid,
            Err(e) => refused(format!("{e:#}"), path, &[]),
        }
    }));
}
