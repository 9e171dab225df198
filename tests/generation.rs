//! Prompts and generation on the fixture models: the chat template renders as transformers
//! does, N samples share one prefill, and left-padded batches decode like single prompts.

mod common;

use candle_core::{DType, Device};
use common::fixture;
use ttrav::{generate, GenerationConfig, Message, ModelSource, Processor, PromptBatch, Rng, Sampling, Thinker};

fn thinker(name: &str) -> Thinker {
    Thinker::load(&ModelSource::Local(fixture(name)), &Device::Cpu, DType::F32).unwrap()
}

fn expected_i64(name: &str, key: &str) -> Vec<i64> {
    let t = candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu).unwrap();
    t[key].flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn chat_template_renders_like_transformers() {
    let prompt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("text_basic").join("prompt.json")).unwrap()).unwrap();
    let processor = Processor::load(&ModelSource::Local(fixture("text_basic"))).unwrap();
    assert!(matches!(processor.template, ttrav::ChatTemplate::Jinja { .. }));
    let msgs = vec![
        Message::system(prompt["system"].as_str().unwrap()),
        Message::user_text(prompt["prompt"].as_str().unwrap()),
    ];
    assert_eq!(processor.template.render(&msgs, true).unwrap(), prompt["text"].as_str().unwrap());
    let ids: Vec<u32> = prompt["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(processor.encode_chat(&msgs).unwrap().input_ids, ids);
    // Without a system message the Omni template inserts its default one.
    let text = processor.template.render(&[Message::user_text("Hi")], true).unwrap();
    assert!(text.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"), "{text}");
}

#[test]
fn decoding_ids_beyond_the_tokenizer_does_not_panic() {
    let processor = Processor::load(&ModelSource::Local(fixture("text_basic"))).unwrap();
    // The model's vocabulary (420) is larger than the tokenizer's (410), as in the real checkpoint.
    let text = processor.tokenizer.decode(&[417, 331, 400]).unwrap();
    assert_eq!(text, "system");
}

fn no_stop(max_new_tokens: usize, sampling: Sampling) -> GenerationConfig {
    GenerationConfig { max_new_tokens, sampling, stop_tokens: vec![] }
}

#[test]
fn shared_prefill_greedy_samples_equal_the_reference() {
    let model = thinker("text_basic");
    let ids: Vec<u32> = common_input_ids("text_basic").remove(0);
    let batch = PromptBatch::left_padded(&[ids], 400).unwrap();
    let out = generate(&model, &batch, 3, &no_stop(6, Sampling::Greedy), &mut Rng::seed(0)).unwrap();
    let expected: Vec<u32> = expected_i64("text_basic", "greedy_token_ids").iter().map(|&x| x as u32).collect();
    assert_eq!(out.len(), 1);
    for s in &out[0] {
        assert_eq!(s.token_ids, expected);
    }
}

fn common_input_ids(name: &str) -> Vec<Vec<u32>> {
    let t = candle_core::safetensors::load(fixture(name).join("inputs.safetensors"), &Device::Cpu).unwrap();
    let ids: Vec<Vec<i64>> = t["input_ids"].to_vec2().unwrap();
    let mask: Vec<Vec<i64>> = t["attention_mask"].to_vec2().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| r.iter().zip(m).filter(|(_, &m)| m == 1).map(|(&x, _)| x as u32).collect())
        .collect()
}

#[test]
fn left_padded_batch_decodes_like_each_prompt_alone() {
    let model = thinker("text_batch_leftpad");
    let prompts = common_input_ids("text_batch_leftpad");
    assert_ne!(prompts[0].len(), prompts[1].len());
    let expected = expected_i64("text_batch_leftpad", "greedy_token_ids");
    let batch = PromptBatch::left_padded(&prompts, 400).unwrap();
    let together = generate(&model, &batch, 1, &no_stop(6, Sampling::Greedy), &mut Rng::seed(0)).unwrap();
    for (b, prompt) in prompts.iter().enumerate() {
        let want: Vec<u32> = expected[b * 6..b * 6 + 6].iter().map(|&x| x as u32).collect();
        assert_eq!(together[b][0].token_ids, want, "sequence {b} in the batch");
        let single = PromptBatch::left_padded(&[prompt.clone()], 400).unwrap();
        let alone = generate(&model, &single, 1, &no_stop(6, Sampling::Greedy), &mut Rng::seed(0)).unwrap();
        assert_eq!(alone[0][0].token_ids, want, "sequence {b} alone");
    }
}

#[test]
fn sampling_is_seeded_and_stops_at_stop_tokens() {
    let model = thinker("text_basic");
    let batch = PromptBatch::left_padded(&common_input_ids("text_basic"), 400).unwrap();
    let sampling = Sampling::new(1.5, 1.0, 0).unwrap();
    let cfg = GenerationConfig { max_new_tokens: 12, sampling, stop_tokens: vec![331, 350] };
    let a = generate(&model, &batch, 8, &cfg, &mut Rng::seed(5)).unwrap().remove(0);
    let b = generate(&model, &batch, 8, &cfg, &mut Rng::seed(5)).unwrap().remove(0);
    let c = generate(&model, &batch, 8, &cfg, &mut Rng::seed(6)).unwrap().remove(0);
    assert_eq!(a, b, "same seed, same samples");
    assert_ne!(a, c, "another seed, other samples");
    assert_eq!(a.len(), 8);
    let distinct: std::collections::HashSet<_> = a.iter().map(|s| s.token_ids.clone()).collect();
    assert!(distinct.len() > 1, "samples from one prefill must differ");
    for s in &a {
        assert_eq!(s.token_ids.len(), s.logprobs.len());
        assert!(s.logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()));
        match s.finish_reason {
            ttrav::FinishReason::Stop => assert!([331, 350].contains(s.token_ids.last().unwrap())),
            ttrav::FinishReason::Length => assert_eq!(s.token_ids.len(), 12),
        }
        let stops = s.token_ids.iter().filter(|t| [331u32, 350].contains(t)).count();
        assert!(stops <= 1 && (stops == 0 || [331, 350].contains(s.token_ids.last().unwrap())));
    }
}

#[test]
fn forked_rows_see_the_same_logits_as_the_prompt() {
    // The shared prefill must give each of the N rows exactly the unforked prompt's logits.
    let model = thinker("text_basic");
    let batch = PromptBatch::left_padded(&common_input_ids("text_basic"), 400).unwrap();
    let out = model.prefill(&batch, Default::default()).unwrap();
    let forked = out.state.fork(4).unwrap();
    let base: Vec<f32> = out.state.next_logits.flatten_all().unwrap().to_vec1().unwrap();
    let rows: Vec<Vec<f32>> = forked.next_logits.to_vec2().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(r, base);
    }
}
