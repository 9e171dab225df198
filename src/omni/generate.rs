//! Generation: N continuations of each prompt from one shared prefill.
//!
//! The prompt batch is prefilled once, its state forked N ways (the N continuations of a prompt
//! read its key/value cache from one copy), and all B*N sequences decoded together, one token
//! per step, until each stops (`<|im_end|>`, end of text, or the token budget). Each step samples
//! every row where the logits are ([`sample_rows`]: only the ids and their log-probabilities come
//! to the host). Finished sequences leave the batch so that the rest decode at full speed.

use crate::omni::thinker::{PrefillOptions, PromptBatch, PromptState, Thinker};
use crate::sampling::{sample_rows, NonFiniteLogits, Rng, Sampling};
use anyhow::{bail, Result};
use serde::Serialize;

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Tokens that end a sequence (they are kept as its last token).
    pub stop_tokens: Vec<u32>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Generated ids, including the stop token when there is one.
    pub token_ids: Vec<u32>,
    /// Log-probability of each generated token under `softmax(logits / temperature)`, the whole
    /// distribution before top-k / top-p (`softmax(logits)` for greedy): the PPO old log-probs.
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// Generates `n` continuations of every prompt in `batch`; `result[b][i]` is sample `i` of
/// prompt `b`. The prompts are prefilled once and their caches shared by the `n` samples.
pub fn generate(
    thinker: &Thinker,
    batch: &PromptBatch,
    n: usize,
    cfg: &GenerationConfig,
    rng: &mut Rng,
) -> Result<Vec<Vec<Sample>>> {
    if n == 0 {
        bail!("the number of samples must be at least 1");
    }
    let prefill = thinker.prefill(batch, PrefillOptions::default())?;
    let state = if n == 1 { prefill.state } else { prefill.state.fork(n)? };
    let samples = decode(thinker, state, cfg, rng)?;
    Ok(samples.chunks(n).map(|c| c.to_vec()).collect())
}

/// Decodes every sequence of `state` until it stops; one sample per sequence, in order.
pub fn decode(thinker: &Thinker, mut state: PromptState, cfg: &GenerationConfig, rng: &mut Rng) -> Result<Vec<Sample>> {
    let total = state.batch_size();
    let mut samples: Vec<Sample> = (0..total)
        .map(|_| Sample { token_ids: Vec::new(), logprobs: Vec::new(), finish_reason: FinishReason::Length })
        .collect();
    // `active[i]` is the sample that row i of `state` produces.
    let mut active: Vec<usize> = (0..total).collect();
    state.reserve(cfg.max_new_tokens.saturating_sub(1));
    for step in 0..cfg.max_new_tokens {
        let choices = sample_rows(&state.next_logits, cfg.sampling, rng).map_err(|e| match e.downcast_ref::<NonFiniteLogits>() {
            Some(bad) => anyhow::anyhow!(
                "sampling new token {} of sequence {} (batch row {}): the logits are not finite (token {} has {}): \
                 the model or its weights are broken",
                step + 1,
                active[bad.row],
                bad.row,
                bad.token,
                bad.value
            ),
            None => e.context(format!("sampling new token {}", step + 1)),
        })?;
        let mut next = Vec::with_capacity(active.len());
        let mut keep = Vec::with_capacity(active.len());
        for (row, (&s, choice)) in active.iter().zip(choices).enumerate() {
            let sample = &mut samples[s];
            sample.token_ids.push(choice.token);
            sample.logprobs.push(choice.logprob);
            if cfg.stop_tokens.contains(&choice.token) {
                sample.finish_reason = FinishReason::Stop;
            } else {
                keep.push(row);
                next.push(choice.token);
            }
        }
        if keep.is_empty() || step + 1 == cfg.max_new_tokens {
            break;
        }
        if keep.len() < active.len() {
            state = state.select_rows(&keep)?;
            active = keep.iter().map(|&r| active[r]).collect();
        }
        thinker.decode_step(&mut state, &next)?;
    }
    Ok(samples)
}
