//! Rollout decoding against the plain formulation: N continuations that read one copy of their
//! prompt's cache (cascade attention, the sequences' own tokens in in-place caches, finished
//! sequences and prompts leaving the batch) give, at every step, the logits that a full forward
//! of the prompt and the tokens so far gives; on text, left-padded multi-prompt and multimodal
//! (image, video with its audio) fixtures. And the errors a broken model gives while decoding.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{copy_fixture, fixture};
use ttrav::omni::generate::decode;
use ttrav::omni::parity::fixture_batch;
use ttrav::sampling::sample_rows;
use ttrav::{GenerationConfig, ModelSource, PrefillOptions, PromptBatch, PromptState, Rng, Sampling, Thinker};

fn thinker(name: &str) -> Thinker {
    Thinker::load(&ModelSource::Local(fixture(name)), &Device::Cpu, DType::F32).unwrap()
}

/// Prompt `p` of `batch` alone: its unpadded ids and its own media (media are listed in prompt
/// order; each prompt takes as many as its placeholder tokens need).
fn prompt_alone(model: &Thinker, batch: &PromptBatch, p: usize) -> PromptBatch {
    let t = &model.config().token_ids;
    let count = |row: usize, token: u32| batch.input_ids[row].iter().zip(&batch.attention_mask[row]).filter(|(&x, &m)| m == 1 && x == token).count();
    fn take<T: Clone>(items: &[T], tokens_of: impl Fn(&T) -> usize, before: usize, wanted: usize) -> Vec<T> {
        let (mut seen, mut out) = (0, Vec::new());
        for item in items {
            if seen >= before && seen < before + wanted {
                out.push(item.clone());
            }
            seen += tokens_of(item);
        }
        out
    }
    let before = |token: u32| (0..p).map(|r| count(r, token)).sum::<usize>();
    let ids: Vec<u32> = batch.input_ids[p].iter().zip(&batch.attention_mask[p]).filter(|(_, &m)| m == 1).map(|(&x, _)| x).collect();
    let mut alone = PromptBatch::left_padded(&[ids], 0).unwrap();
    alone.audio = take(&batch.audio, |a| a.token_count(), before(t.audio), count(p, t.audio));
    alone.images = take(&batch.images, |v| v.token_count(), before(t.image), count(p, t.image));
    alone.videos = take(&batch.videos, |v| v.token_count(), before(t.video), count(p, t.video));
    alone.use_audio_in_video = batch.use_audio_in_video;
    alone
}

/// The next-token logits after each prefix of `tokens` (`tokens.len() + 1` rows), by one full
/// forward of the prompt and the tokens (no cache).
fn reference_logits(model: &Thinker, prompt: &PromptBatch, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut full = prompt.clone();
    full.input_ids[0].extend(tokens);
    full.attention_mask[0].extend(std::iter::repeat(1).take(tokens.len()));
    let out = model.prefill(&full, PrefillOptions { all_logits: true, ..Default::default() }).unwrap();
    let l = prompt.len();
    let all = out.logits.unwrap().get(0).unwrap();
    (0..=tokens.len()).map(|j| all.get(l - 1 + j).unwrap().to_vec1().unwrap()).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Per sequence of `fork(n)`: the prompt it continues, its tokens, and the logits it saw.
struct Trace {
    prompt: usize,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

/// Decodes `steps` tokens of `n` samples per prompt (temperature 1.5, so the samples differ),
/// dropping the sequences `drop(step)` names (by sequence number) before that step's forward.
fn traced_rollout(model: &Thinker, batch: &PromptBatch, n: usize, steps: usize, drop: impl Fn(usize) -> Vec<usize>, unshared: bool) -> Vec<Trace> {
    let prefill = model.prefill(batch, PrefillOptions::default()).unwrap();
    let mut state: PromptState = prefill.state.fork(n).unwrap();
    if unshared {
        state = state.unshared().unwrap();
    }
    let sampling = Sampling::new(1.5, 1.0, 0).unwrap();
    let mut rng = Rng::seed(4);
    let mut traces: Vec<Trace> = (0..state.batch_size()).map(|i| Trace { prompt: i / n, tokens: vec![], logits: vec![] }).collect();
    let mut active: Vec<usize> = (0..traces.len()).collect();
    // A sampled media marker would be text to the decoder but a placeholder to the full forward's
    // processor; such draws are fed as token 0 instead.
    let t = &model.config().token_ids;
    let markers = [t.audio, t.image, t.video, t.audio_start, t.audio_end, t.vision_start, t.vision_end];
    for step in 0..steps {
        let logits: Vec<Vec<f32>> = state.next_logits.to_vec2().unwrap();
        let choices = sample_rows(&state.next_logits, sampling, &mut rng).unwrap();
        for (row, &s) in active.iter().enumerate() {
            traces[s].logits.push(logits[row].clone());
            let token = choices[row].token;
            traces[s].tokens.push(if markers.contains(&token) { 0 } else { token });
        }
        let gone = drop(step);
        let keep: Vec<usize> = (0..active.len()).filter(|&r| !gone.contains(&active[r])).collect();
        if keep.len() < active.len() {
            state = state.select_rows(&keep).unwrap();
            active = keep.iter().map(|&r| active[r]).collect();
        }
        let next: Vec<u32> = active.iter().map(|&s| *traces[s].tokens.last().unwrap()).collect();
        model.decode_step(&mut state, &next).unwrap();
    }
    for (row, &s) in active.iter().enumerate() {
        traces[s].logits.push(state.next_logits.get(row).unwrap().to_vec1().unwrap());
    }
    traces
}

/// Every sequence's logits at every step equal the full forward's, within `tol`.
fn assert_matches_reference(model: &Thinker, batch: &PromptBatch, traces: &[Trace], tol: f32) {
    let alone: Vec<PromptBatch> = (0..batch.batch_size()).map(|p| prompt_alone(model, batch, p)).collect();
    for (s, t) in traces.iter().enumerate() {
        // The logits seen before the last sampled token of a dropped sequence was fed.
        let fed = &t.tokens[..t.logits.len() - 1];
        let want = reference_logits(model, &alone[t.prompt], fed);
        for (j, (got, want)) in t.logits.iter().zip(&want).enumerate() {
            let d = max_diff(got, want);
            assert!(d <= tol, "sequence {s} (prompt {}), step {j}: max |diff| = {d:e}", t.prompt);
        }
    }
}

#[test]
fn shared_prompt_decode_equals_the_full_forward_on_text() {
    let model = thinker("text_basic");
    let batch = fixture_batch(&fixture("text_basic")).unwrap();
    let traces = traced_rollout(&model, &batch, 4, 6, |_| vec![], false);
    let distinct: std::collections::HashSet<_> = traces.iter().map(|t| t.tokens.clone()).collect();
    assert!(distinct.len() > 1, "the samples must differ for the test to mean anything");
    assert_matches_reference(&model, &batch, &traces, 1e-4);
}

#[test]
fn left_padded_prompts_with_ragged_groups_and_a_finished_prompt_match_the_full_forward() {
    // Two prompts of different lengths (left padding), 3 samples each: sequence 1 finishes after
    // step 1 (groups of 2 and 3: padded query slots), then all of prompt 0 (its cache is dropped).
    let model = thinker("text_batch_leftpad");
    let batch = fixture_batch(&fixture("text_batch_leftpad")).unwrap();
    assert!(batch.attention_mask.iter().any(|r| r.contains(&0)), "the fixture must be left-padded");
    let traces = traced_rollout(&model, &batch, 3, 7, |step| match step {
        1 => vec![1],
        3 => vec![0, 2],
        _ => vec![],
    }, false);
    assert_eq!(traces[1].logits.len(), 2);
    assert_eq!(traces[0].logits.len(), 4);
    assert_eq!(traces[5].logits.len(), 8);
    assert_matches_reference(&model, &batch, &traces, 1e-4);
}

#[test]
fn multimodal_prompts_match_the_full_forward() {
    // Two left-padded prompts with an image each; one prompt with a video and its sound track
    // (3-D positions, non-zero rope deltas).
    for (name, n) in [("mm_batch_leftpad", 3), ("video_audio", 4)] {
        let model = thinker(name);
        let batch = fixture_batch(&fixture(name)).unwrap();
        assert!(!batch.images.is_empty() || !batch.videos.is_empty(), "{name} has media");
        let traces = traced_rollout(&model, &batch, n, 5, |step| if step == 2 { vec![0] } else { vec![] }, false);
        assert_matches_reference(&model, &batch, &traces, 1e-4);
    }
}

#[test]
fn shared_and_private_prompt_caches_decode_alike_and_the_shared_one_is_n_times_smaller() {
    let model = thinker("text_batch_leftpad");
    let batch = fixture_batch(&fixture("text_batch_leftpad")).unwrap();
    let n = 4;
    let shared = traced_rollout(&model, &batch, n, 5, |_| vec![], false);
    let private = traced_rollout(&model, &batch, n, 5, |_| vec![], true);
    for (a, b) in shared.iter().zip(&private) {
        assert_eq!(a.tokens, b.tokens);
        for (x, y) in a.logits.iter().zip(&b.logits) {
            assert!(max_diff(x, y) <= 1e-5);
        }
    }
    // Bytes: the prompts' keys and values once, against once per sequence.
    let t = &model.config().text;
    let per_token = t.num_hidden_layers * 2 * t.num_key_value_heads * t.head_dim * 4;
    let state = model.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(n).unwrap();
    assert_eq!(state.prompt_count(), 2);
    assert_eq!(state.cache_bytes(), 2 * batch.len() * per_token);
    assert_eq!(state.unshared().unwrap().cache_bytes(), 2 * n * batch.len() * per_token);
}

#[test]
fn the_sequences_own_caches_are_written_in_place_and_clones_are_independent() {
    let model = thinker("text_basic");
    let batch = fixture_batch(&fixture("text_basic")).unwrap();
    let t = &model.config().text;
    let per_token = t.num_hidden_layers * 2 * t.num_key_value_heads * t.head_dim * 4;
    let mut state = model.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(3).unwrap();
    let prompt_bytes = batch.len() * per_token;
    state.reserve(12);
    let mut sizes = Vec::new();
    for step in 0..10u32 {
        model.decode_step(&mut state, &[5 + step, 6, 7]).unwrap();
        sizes.push(state.cache_bytes());
    }
    // One allocation of 12 positions for 3 sequences, kept for all 10 steps.
    assert!(sizes.iter().all(|&b| b == prompt_bytes + 3 * 12 * per_token), "{sizes:?}");
    // A clone decodes on its own: the clone and the original write their next tokens into the
    // same free slot of their buffers, and each still sees its own at the step after.
    let mut fork = state.clone();
    model.decode_step(&mut fork, &[1, 2, 3]).unwrap();
    model.decode_step(&mut state, &[9, 9, 9]).unwrap();
    model.decode_step(&mut fork, &[4, 4, 4]).unwrap();
    model.decode_step(&mut state, &[8, 8, 8]).unwrap();
    for (decoded, tail) in [(&fork, [[1u32, 2, 3], [4, 4, 4]]), (&state, [[9, 9, 9], [8, 8, 8]])] {
        let mut fresh = model.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(3).unwrap();
        for step in 0..10u32 {
            model.decode_step(&mut fresh, &[5 + step, 6, 7]).unwrap();
        }
        for tokens in tail {
            model.decode_step(&mut fresh, &tokens).unwrap();
        }
        let a: Vec<f32> = decoded.next_logits.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = fresh.next_logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(max_diff(&a, &b) <= 1e-5, "{tail:?}: {}", max_diff(&a, &b));
    }
    // Without a reservation the buffers double (16, 32, ...) rather than grow each step.
    let mut state = model.prefill(&batch, PrefillOptions::default()).unwrap().state;
    let mut sizes = Vec::new();
    for step in 0..20u32 {
        model.decode_step(&mut state, &[5 + step]).unwrap();
        sizes.push((state.cache_bytes() - prompt_bytes) / per_token);
    }
    assert_eq!(sizes, [vec![16; 16], vec![32; 4]].concat());
}

#[test]
fn rows_that_select_nothing_valid_are_errors() {
    let model = thinker("text_basic");
    let batch = fixture_batch(&fixture("text_basic")).unwrap();
    let state = model.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(2).unwrap();
    let err = state.select_rows(&[0, 2]).unwrap_err().to_string();
    assert!(err.contains("sequence 2 does not exist"), "{err}");
}

#[test]
fn non_finite_logits_while_decoding_name_the_step_and_the_sequence() {
    // Sequence 1's logits hold NaN at id 7 before the first token.
    let model = thinker("text_basic");
    let batch = fixture_batch(&fixture("text_basic")).unwrap();
    let mut state = model.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(3).unwrap();
    let mut rows: Vec<Vec<f32>> = state.next_logits.to_vec2().unwrap();
    rows[1][7] = f32::NAN;
    let v = rows[0].len();
    state.next_logits = Tensor::from_vec(rows.concat(), (3, v), &Device::Cpu).unwrap();
    let cfg = GenerationConfig { max_new_tokens: 4, sampling: Sampling::new(1.0, 0.9, 5).unwrap(), stop_tokens: vec![] };
    let err = format!("{:#}", decode(&model, state, &cfg, &mut Rng::seed(0)).unwrap_err());
    assert!(err.contains("new token 1 of sequence 1 (batch row 1)") && err.contains("token 7 has NaN"), "{err}");

    // A checkpoint whose embedding of one token is NaN: the step after that token is fed fails,
    // naming it. The prompt is one whose greedy first token it does not hold.
    let dir = copy_fixture("text_basic");
    let greedy_first = |prompt: &[u32]| {
        let b = PromptBatch::left_padded(&[prompt.to_vec()], 0).unwrap();
        let cfg = GenerationConfig { max_new_tokens: 1, sampling: Sampling::Greedy, stop_tokens: vec![] };
        decode(&model, model.prefill(&b, PrefillOptions::default()).unwrap().state, &cfg, &mut Rng::seed(0)).unwrap()[0].token_ids[0]
    };
    let (prompt, first) = (10u32..60)
        .map(|a| vec![a, a + 1, a + 2])
        .map(|p| { let f = greedy_first(&p); (p, f) })
        .find(|(p, f)| !p.contains(f))
        .expect("a prompt whose greedy first token it does not hold");
    let first = first as usize;
    let batch = PromptBatch::left_padded(&[prompt], 0).unwrap();
    let path = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let key = tensors.keys().find(|k| k.ends_with("embed_tokens.weight")).unwrap().clone();
    let mut emb: Vec<Vec<f32>> = tensors[&key].to_vec2().unwrap();
    emb[first].iter_mut().for_each(|x| *x = f32::NAN);
    let (rows, cols) = (emb.len(), emb[0].len());
    tensors.insert(key, Tensor::from_vec(emb.concat(), (rows, cols), &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let broken = Thinker::load(&ModelSource::Local(dir.path().to_path_buf()), &Device::Cpu, DType::F32).unwrap();
    let state = broken.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(2).unwrap();
    let cfg = GenerationConfig { max_new_tokens: 4, sampling: Sampling::Greedy, stop_tokens: vec![] };
    let err = format!("{:#}", decode(&broken, state, &cfg, &mut Rng::seed(0)).unwrap_err());
    assert!(err.contains("new token 2 of sequence 0 (batch row 0)") && err.contains("not finite"), "{err}");
}
