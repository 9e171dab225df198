//! The self-judge's model handle: greedy completion of a raw prompt (no chat template, as the
//! reference judges) with the thinker, the prompt cut to its first `max_prompt_tokens` tokens.

use crate::omni::generate::{decode, GenerationConfig};
use crate::omni::prompt::TextTokenizer;
use crate::omni::thinker::{PrefillOptions, PromptBatch, Thinker};
use crate::reward::Judge;
use crate::sampling::{Rng, Sampling};
use anyhow::Result;

pub struct ThinkerJudge<'a> {
    pub thinker: &'a Thinker,
    pub tokenizer: &'a TextTokenizer,
    pub max_prompt_tokens: usize,
    /// Judge with the frozen base model (adapters off) rather than the current policy.
    pub base_model: bool,
}

impl Judge for ThinkerJudge<'_> {
    fn complete(&self, prompt: &str, max_new_tokens: usize) -> Result<String> {
        let mut ids = self.tokenizer.encode(prompt)?;
        ids.truncate(self.max_prompt_tokens.max(1));
        let batch = PromptBatch::left_padded(&[ids], self.tokenizer.end_of_text)?;
        let cfg = GenerationConfig {
            max_new_tokens,
            sampling: Sampling::Greedy,
            stop_tokens: vec![self.tokenizer.im_end, self.tokenizer.end_of_text],
        };
        let prefill = self.thinker.prefill(&batch, PrefillOptions { base_model: self.base_model, ..Default::default() })?;
        let out = decode(self.thinker, prefill.state, &cfg, &mut Rng::seed(0))?;
        self.tokenizer.decode(&out[0].token_ids)
    }
}
