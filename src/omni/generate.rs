//! Generation: N continuations of each prompt from one shared prefill.
//!
//! The prompt batch is prefilled once, its state forked N ways, and all B*N sequences decoded
//! together, one token per step, until each stops (`<|im_end|>`, end of text, or the token
//! budget). Finished sequences leave the batch so that the rest decode at full speed.

use crate::omni::thinker::{PrefillOptions, PromptBatch, PromptState, Thinker};
use crate::sampling::{choose, Rng, Sampling};
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
    /// Log-probability of each generated token under the sampling distribution.
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
    for step in 0..cfg.max_new_tokens {
        let logits: Vec<Vec<f32>> = state.next_logits.to_vec2()?;
        let mut next = Vec::with_capacity(active.len());
        let mut keep = Vec::with_capacity(active.len());
        for (row, &s) in active.iter().enumerate() {
            let choice = choose(&logits[row], cfg.sampling, rng)
                .map_err(|e| anyhow::anyhow!("sampling new token {} of sequence {s} (batch row {row}): {e}", step + 1))?;
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
