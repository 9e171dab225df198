//! The training path: gradients of the GRPO loss with respect to the LoRA parameters are right
//! (finite differences, f64) and reach every trainable parameter (a fused op that dropped its
//! gradient would leave some at zero).

mod common;

use candle_core::{DType, Device, Tensor};
use common::fixture;
use ttrav::nn::Pass;
use ttrav::rl::grpo::{loss, AggScale, LossConfig, LossInputs};
use ttrav::{ModelSource, PrefillOptions, PromptBatch, Rng, Thinker};

const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

fn model(dtype: DType) -> (Thinker, Vec<(String, std::sync::Arc<ttrav::nn::Lora>)>) {
    let mut t = Thinker::load(&ModelSource::Local(fixture("text_basic")), &Device::Cpu, dtype).unwrap();
    let targets: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    let adapters = ttrav::rl::lora::attach_lora(&mut t, 2, 4.0, &targets, 0.05, &mut Rng::seed(3)).unwrap();
    (t, adapters)
}

/// The full loss (policy + entropy bonus + k3 KL to the base model) for two fixed answers; the
/// old log-probs are those of the starting point (`old`, or the current ones shifted by 0.05
/// when None), so that the ratio is not exactly 1.
fn total_loss(t: &Thinker, cfg: &LossConfig, old: Option<&Tensor>) -> (Tensor, Tensor) {
    let batch = PromptBatch::left_padded(&[vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198]], 400).unwrap();
    let prompt = t.prefill(&batch, PrefillOptions::default()).unwrap().context(0).unwrap();
    let answers = vec![vec![331, 357, 165, 55], vec![20, 30, 402]];
    let lp = t.answer_logprobs(&prompt, &answers, 1.0, Pass::TRAIN).unwrap();
    let base = t.answer_logprobs(&prompt, &answers, 1.0, Pass::BASE).unwrap();
    let old = match old {
        Some(o) => o.clone(),
        None => (lp.logp.detach() - 0.05).unwrap(),
    };
    let adv = Tensor::new(&[1.0f64, -0.5], &Device::Cpu).unwrap().to_dtype(lp.logp.dtype()).unwrap();
    let reference = base.logp.detach();
    let inputs = LossInputs { logp: &lp.logp, old_logp: &old, advantages: &adv, mask: &lp.mask, ref_logp: Some(&reference), entropy: Some(&lp.entropy) };
    (loss(cfg, &inputs, &AggScale::of_mask(&lp.mask).unwrap()).unwrap().0, old)
}

fn cfg() -> LossConfig {
    LossConfig { kl_coef: 0.3, entropy_coef: 0.01, ..Default::default() }
}

/// The coordinate of `var` with the largest analytic gradient (`grad`): that gradient, and the
/// central finite difference (step 1e-5) of `loss` there; `var` is restored afterwards.
fn largest_coordinate_vs_finite_difference(var: &candle_core::Var, grad: &Tensor, loss: impl Fn() -> f64) -> (f64, f64) {
    let h = 1e-5;
    let flat: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
    let k = (0..flat.len()).fold(0, |b, i| if flat[i].abs() > flat[b].abs() { i } else { b });
    let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let shape = var.as_tensor().shape().clone();
    let set = |w: Vec<f64>| var.set(&Tensor::from_vec(w, shape.clone(), &Device::Cpu).unwrap()).unwrap();
    let at = |delta: f64| {
        let mut w = orig.clone();
        w[k] += delta;
        set(w);
        loss()
    };
    let numeric = (at(h) - at(-h)) / (2.0 * h);
    set(orig.clone());
    (flat[k], numeric)
}

#[test]
fn lora_gradients_match_finite_differences() {
    let (t, adapters) = model(DType::F64);
    let cfg = cfg();
    let (l0, old) = total_loss(&t, &cfg, None);
    let grads = l0.backward().unwrap();
    let mut checked = 0;
    for (name, lora) in adapters.iter().step_by(3) {
        for var in [&lora.a, &lora.b] {
            let g = grads.get(var.as_tensor()).expect("a gradient for every adapter");
            let (analytic, numeric) = largest_coordinate_vs_finite_difference(var, g, || total_loss(&t, &cfg, Some(&old)).0.to_scalar::<f64>().unwrap());
            let rel = (numeric - analytic).abs() / analytic.abs().max(1e-8);
            assert!(rel < 1e-3, "{name}: analytic {analytic} vs numeric {numeric} (relative error {rel:e})");
            checked += 1;
        }
    }
    assert!(checked >= 8);
}

#[test]
fn every_trainable_parameter_gets_a_gradient() {
    let (t, adapters) = model(DType::F32);
    assert_eq!(adapters.len(), 2 * TARGETS.len(), "2 layers x 7 projections");
    let grads = total_loss(&t, &cfg(), None).0.backward().unwrap();
    for (name, lora) in &adapters {
        for (part, var) in [("lora_A", &lora.a), ("lora_B", &lora.b)] {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}.{part}: no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0, "{name}.{part}: zero gradient");
        }
    }
}

/// A toy task whose reward is known: the share of answer tokens equal to a target token. GRPO
/// with LoRA must raise it within a few dozen steps.
#[test]
fn reward_rises_on_a_toy_task() {
    use ttrav::omni::generate::GenerationConfig;
    use ttrav::rl::grpo::AdvantageKind;
    use ttrav::rl::optim::{AdamW, AdamWConfig};
    use ttrav::rl::trainer::{rollout, update, TrainGroup, UpdateConfig};
    use ttrav::{EncodedPrompt, Sampling};

    let mut t = Thinker::load(&ModelSource::Local(fixture("text_basic")), &Device::Cpu, DType::F32).unwrap();
    let targets: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    let adapters = ttrav::rl::lora::attach_lora(&mut t, 4, 8.0, &targets, 0.0, &mut Rng::seed(1)).unwrap();
    let params = adapters.iter().flat_map(|(n, l)| [(format!("{n}.lora_A"), l.a.clone()), (format!("{n}.lora_B"), l.b.clone())]).collect();
    let steps = 40;
    let mut opt = AdamW::new(AdamWConfig { lr: 0.05, total_steps: steps, weight_decay: 0.0, ..Default::default() }, params).unwrap();
    let prompt = EncodedPrompt { input_ids: vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198], ..Default::default() };
    let gen = GenerationConfig { max_new_tokens: 6, sampling: Sampling::new(1.0, 1.0, 0).unwrap(), stop_tokens: vec![] };
    let cfg = UpdateConfig { advantage: AdvantageKind::Grpo, filter_equal_rewards: true, ..Default::default() };
    let target = 331u32; // about 5% of sampled tokens at the start
    let mut rng = Rng::seed(7);
    let mut history = Vec::new();
    let mut updates = 0;
    for _ in 0..steps {
        let r = rollout(&t, &prompt, 400, 8, &gen, &mut rng).unwrap();
        let rewards: Vec<f32> =
            r.answers.iter().map(|a| a.iter().filter(|&&x| x == target).count() as f32 / a.len().max(1) as f32).collect();
        history.push(rewards.iter().sum::<f32>() / rewards.len() as f32);
        let group = TrainGroup { rollout: &r, chosen: (0..8).collect(), rewards, weight: 1.0 };
        let stats = update(&t, &mut opt, &[group], &cfg).unwrap();
        // A step is skipped only when DAPO's filter left no group (all rewards equal).
        assert!(stats.skipped.is_none() || stats.groups_used == 0, "{stats:?}");
        if stats.skipped.is_none() {
            assert!(stats.grad_norm > 0.0, "{stats:?}");
            updates += 1;
        }
    }
    assert!(updates >= steps / 2, "only {updates} of {steps} steps updated");
    assert_eq!(opt.step, updates, "the optimizer stepped once per update");
    let first: f32 = history[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = history[steps - 5..].iter().sum::<f32>() / 5.0;
    assert!(last > first + 0.3, "reward did not rise enough: {first:.3} -> {last:.3} ({history:?})");
}

/// A NaN reward makes a NaN loss: the step is skipped, said so, and the optimizer is untouched.
#[test]
fn a_nan_loss_skips_the_step() {
    use ttrav::omni::generate::GenerationConfig;
    use ttrav::rl::grpo::AdvantageKind;
    use ttrav::rl::optim::{AdamW, AdamWConfig};
    use ttrav::rl::trainer::{rollout, update, TrainGroup, UpdateConfig};
    use ttrav::{EncodedPrompt, Sampling};

    let (t, adapters) = model(DType::F32);
    let prompt = EncodedPrompt { input_ids: vec![401, 301, 198, 401, 350, 198], ..Default::default() };
    let gen = GenerationConfig { max_new_tokens: 4, sampling: Sampling::new(1.0, 1.0, 0).unwrap(), stop_tokens: vec![] };
    let r = rollout(&t, &prompt, 400, 3, &gen, &mut Rng::seed(1)).unwrap();
    // Whole group at once, and in micro-batches of one answer (the NaN is in the second).
    for micro_batch in [0, 1] {
        let params = adapters.iter().flat_map(|(n, l)| [(format!("{n}.A"), l.a.clone()), (format!("{n}.B"), l.b.clone())]).collect();
        let mut opt = AdamW::new(AdamWConfig { lr: 0.1, ..Default::default() }, params).unwrap();
        let before: Vec<Vec<f32>> = opt.params.iter().map(|(_, p)| p.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect();
        let group = TrainGroup { rollout: &r, chosen: vec![0, 1, 2], rewards: vec![1.0, f32::NAN, 0.0], weight: 1.0 };
        let cfg = UpdateConfig { advantage: AdvantageKind::Grpo, filter_equal_rewards: false, micro_batch, ..Default::default() };
        let stats = update(&t, &mut opt, &[group], &cfg).unwrap();
        assert!(stats.skipped.as_deref().is_some_and(|s| s.contains("non-finite")), "micro-batch {micro_batch}: {stats:?}");
        assert_eq!(opt.step, 0);
        let after: Vec<Vec<f32>> = opt.params.iter().map(|(_, p)| p.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect();
        assert_eq!(before, after, "micro-batch {micro_batch}: the parameters moved");
        assert!(opt.m.iter().all(|m| m.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0));
    }
}

/// Micro-batches split a group's answers across differentiable forwards (each with its own
/// forward of the prompt) and sum their gradients: the update is the one of the whole group at
/// once, in f64 to 1e-10, while a different mini-batch size (more optimizer steps) is not.
#[test]
fn micro_batches_give_the_same_update() {
    use ttrav::omni::generate::GenerationConfig;
    use ttrav::rl::grpo::AdvantageKind;
    use ttrav::rl::optim::{AdamW, AdamWConfig};
    use ttrav::rl::trainer::{rollout, update, TrainGroup, UpdateConfig};
    use ttrav::{EncodedPrompt, Sampling};

    let prompt = EncodedPrompt { input_ids: vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198], ..Default::default() };
    let gen = GenerationConfig { max_new_tokens: 5, sampling: Sampling::new(1.0, 1.0, 0).unwrap(), stop_tokens: vec![] };
    let trained = |micro_batch: usize, mini_batch_size: usize| -> (f64, Vec<f64>) {
        let (t, adapters) = model(DType::F64);
        let params = adapters.iter().flat_map(|(n, l)| [(format!("{n}.A"), l.a.clone()), (format!("{n}.B"), l.b.clone())]).collect();
        let mut opt = AdamW::new(AdamWConfig { lr: 0.05, ..Default::default() }, params).unwrap();
        let r = rollout(&t, &prompt, 400, 4, &gen, &mut Rng::seed(5)).unwrap();
        let group = TrainGroup { rollout: &r, chosen: vec![0, 1, 2, 3], rewards: vec![1.0, 0.0, 0.5, 0.0], weight: 1.0 };
        let cfg = UpdateConfig { advantage: AdvantageKind::Grpo, micro_batch, mini_batch_size, ..Default::default() };
        let stats = update(&t, &mut opt, &[group], &cfg).unwrap();
        assert!(stats.skipped.is_none() && stats.grad_norm > 0.0, "{stats:?}");
        let values = opt.params.iter().flat_map(|(_, p)| p.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect();
        (stats.loss, values)
    };
    let (loss, whole) = trained(0, 0);
    for micro_batch in [1, 3] {
        let (l, p) = trained(micro_batch, 0);
        assert!((l - loss).abs() < 1e-10, "micro-batch {micro_batch}: loss {l} vs {loss}");
        let d = p.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d < 1e-10, "micro-batch {micro_batch}: parameters differ by {d}");
    }
    let (_, two_steps) = trained(0, 2);
    let d = two_steps.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d > 1e-6, "two optimizer steps should differ from one ({d})");
}

/// Prompts rolled out together (left-padded in one prefill) give each prompt the same training
/// context as a prefill of that prompt alone.
#[test]
fn batched_rollouts_keep_each_prompts_context() {
    use ttrav::omni::generate::GenerationConfig;
    use ttrav::rl::trainer::{rollout, rollout_batch};
    use ttrav::{EncodedPrompt, Sampling};

    let (t, _) = model(DType::F32);
    let long = EncodedPrompt { input_ids: vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198], ..Default::default() };
    let short = EncodedPrompt { input_ids: vec![401, 301, 198, 401, 350, 198], ..Default::default() };
    let gen = GenerationConfig { max_new_tokens: 4, sampling: Sampling::Greedy, stop_tokens: vec![] };
    let both = rollout_batch(&t, &[long.clone(), short.clone()], 400, 2, &gen, &mut Rng::seed(0)).unwrap();
    let alone = rollout(&t, &short, 400, 2, &gen, &mut Rng::seed(0)).unwrap();
    assert_eq!(both[1].answers, alone.answers, "greedy answers of the padded prompt");
    assert_eq!(both[1].context.positions, alone.context.positions);
    let a = t.answer_logprobs(&both[1].context, &both[1].answers, 1.0, Pass::TRAIN).unwrap().logp;
    let b = t.answer_logprobs(&alone.context, &alone.answers, 1.0, Pass::TRAIN).unwrap().logp;
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-5, "{d}");
}

/// LoRA dropout: a seeded mask (the same seed gives the same log-probs, another seed others),
/// off outside training (a pass without a seed gives the log-probs of the model without dropout),
/// and the gradients still reach every adapter.
#[test]
fn lora_dropout_is_seeded_and_keeps_gradients() {
    let (mut t, adapters) = model(DType::F32);
    let batch = PromptBatch::left_padded(&[vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198]], 400).unwrap();
    let prompt = t.prefill(&batch, PrefillOptions::default()).unwrap().context(0).unwrap();
    let answers = vec![vec![331, 357, 165, 55], vec![20, 30, 402]];
    let lp = |t: &Thinker, seed: Option<u64>| {
        let pass = Pass { dropout_seed: seed, ..Pass::TRAIN };
        t.answer_logprobs(&prompt, &answers, 1.0, pass).unwrap().logp
    };
    let values = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let without_dropout = values(&lp(&t, None));
    ttrav::rl::lora::set_lora_dropout(&mut t, 0.3).unwrap();
    assert_eq!(values(&lp(&t, Some(1))), values(&lp(&t, Some(1))));
    assert_ne!(values(&lp(&t, Some(1))), values(&lp(&t, Some(2))));
    assert_ne!(values(&lp(&t, Some(1))), without_dropout);
    assert_eq!(values(&lp(&t, None)), without_dropout, "no seed, no dropout");
    let grads = lp(&t, Some(3)).sum_all().unwrap().backward().unwrap();
    for (name, l) in &adapters {
        let g = grads.get(l.a.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(g > 0.0, "{name}");
    }
    assert!(ttrav::rl::lora::set_lora_dropout(&mut t, 1.0).is_err());
}

/// With full fine-tuning, the base-model pass (the KL reference, the base-model judge) runs the
/// original weights, not the ones being trained, when the frozen copy is kept.
#[test]
fn full_fine_tuning_keeps_the_original_model_as_the_reference() {
    let source = ModelSource::resolve(fixture("text_basic").to_str().unwrap()).unwrap();
    let logits = |t: &Thinker, base: bool| -> Vec<f32> {
        let batch = PromptBatch::left_padded(&[vec![401, 301, 198, 328, 316]], 400).unwrap();
        let out = t.prefill(&batch, PrefillOptions { base_model: base, ..Default::default() }).unwrap();
        out.state.next_logits.flatten_all().unwrap().to_vec1().unwrap()
    };
    let original = logits(&Thinker::load(&source, &Device::Cpu, DType::F32).unwrap(), false);
    for keep in [true, false] {
        let mut t = Thinker::load(&source, &Device::Cpu, DType::F32).unwrap();
        let params = ttrav::rl::lora::make_decoder_trainable(&mut t, keep).unwrap();
        assert_eq!(params.len(), 14);
        for (_, v) in &params {
            v.set(&(v.as_tensor() * 1.5).unwrap()).unwrap();
        }
        let (policy, base) = (logits(&t, false), logits(&t, true));
        let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff(&policy, &original) > 1e-3, "the trained weights are used by the policy");
        if keep {
            assert_eq!(base, original, "the base-model pass runs the original weights");
        } else {
            assert_eq!(base, policy, "without a frozen copy there is one model");
        }
    }
}

/// Adaptive votes: one round of the whole budget is the plain rollout; a prompt that settles after
/// its first round gets no more answers, the others the whole budget.
#[test]
fn adaptive_rollouts_stop_settled_prompts() {
    use ttrav::omni::generate::GenerationConfig;
    use ttrav::rl::trainer::{rollout_adaptive, rollout_batch};
    use ttrav::EncodedPrompt;
    let t = Thinker::load(&ModelSource::resolve(fixture("text_basic").to_str().unwrap()).unwrap(), &Device::Cpu, DType::F32).unwrap();
    let gen = GenerationConfig { max_new_tokens: 5, sampling: ttrav::Sampling::new(1.0, 1.0, 0).unwrap(), stop_tokens: vec![402] };
    let prompts = vec![
        EncodedPrompt { input_ids: vec![401, 301, 198, 328, 316], ..Default::default() },
        EncodedPrompt { input_ids: vec![401, 350, 198], ..Default::default() },
    ];
    let plain = rollout_batch(&t, &prompts, 400, 6, &gen, &mut Rng::seed(4)).unwrap();
    let one_round = rollout_adaptive(&t, &prompts, 400, 6, 6, &gen, &mut Rng::seed(4), |_, _| Ok(false)).unwrap();
    for (a, b) in plain.iter().zip(&one_round) {
        assert_eq!(a.answers, b.answers);
        assert_eq!(a.logprobs, b.logprobs);
    }
    let mut asked = Vec::new();
    let rounds = rollout_adaptive(&t, &prompts, 400, 6, 2, &gen, &mut Rng::seed(4), |q, r| {
        asked.push((q, r.answers.len()));
        Ok(q == 0)
    })
    .unwrap();
    assert_eq!(rounds[0].answers.len(), 2, "settled after its first round");
    assert_eq!(rounds[1].answers.len(), 6, "the whole budget");
    assert_eq!(rounds[1].logprobs.len(), 6);
    assert_eq!(asked, vec![(0, 2), (1, 2), (1, 4)], "asked after each round, not after the last");
}

/// The prompt runs once per group: the answers' log-probabilities, and their gradients with
/// respect to every adapter, equal those of each prompt + answer run on its own (the
/// per-sequence forward of `completion_logprobs`), in f64 to 1e-10.
#[test]
fn shared_prompt_forward_equals_the_per_answer_forward() {
    let (t, adapters) = model(DType::F64);
    let prompt_ids = vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198];
    let batch = PromptBatch::left_padded(&[prompt_ids.clone()], 400).unwrap();
    let prompt = t.prefill(&batch, PrefillOptions::default()).unwrap().context(0).unwrap();
    let answers = vec![vec![331, 357, 165, 55], vec![20, 30, 402], vec![7]];
    let shared = t.answer_logprobs(&prompt, &answers, 1.0, Pass::TRAIN).unwrap();
    let full: Vec<Vec<u32>> = answers.iter().map(|a| prompt_ids.iter().chain(a).copied().collect()).collect();
    let lens: Vec<usize> = answers.iter().map(|a| a.len()).collect();
    let each = t.completion_logprobs(&PromptBatch::left_padded(&full, 400).unwrap(), &lens, Pass::TRAIN).unwrap();
    let rows = |x: &Tensor| x.to_vec2::<f64>().unwrap();
    let (s, e) = (rows(&shared.logp), rows(&each.logp));
    for (i, a) in answers.iter().enumerate() {
        // The shared forward's rows are left-aligned, the per-sequence ones right-aligned.
        let (ours, theirs) = (&s[i][..a.len()], &e[i][e[i].len() - a.len()..]);
        for (x, y) in ours.iter().zip(theirs) {
            assert!((x - y).abs() < 1e-10, "answer {i}: {ours:?} vs {theirs:?}");
        }
    }
    let g_shared = (&shared.logp * &shared.mask).unwrap().sum_all().unwrap().backward().unwrap();
    let g_each = (&each.logp * &each.mask).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, lora) in &adapters {
        for var in [&lora.a, &lora.b] {
            let (a, b) = (g_shared.get(var.as_tensor()).unwrap(), g_each.get(var.as_tensor()).unwrap());
            let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().max(1e-12);
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(d / scale < 1e-9, "{name}: gradients differ by {d} (scale {scale})");
        }
    }
}

/// Gradient checkpointing (each decoder layer recomputed in the backward pass, the head a few
/// tokens at a time) gives the update of the full graph: same loss and same parameters after
/// an optimizer step, in f64 to 1e-10, with the KL reference, the entropy bonus, LoRA dropout
/// (the recomputed layers draw the same masks), micro-batches, and head chunks down to one
/// token column.
#[test]
fn checkpointed_update_equals_the_full_graph_update() {
    use ttrav::omni::generate::GenerationConfig;
    use ttrav::rl::grpo::AdvantageKind;
    use ttrav::rl::optim::{AdamW, AdamWConfig};
    use ttrav::rl::trainer::{rollout, update, TrainGroup, UpdateConfig};
    use ttrav::{EncodedPrompt, Sampling};

    let prompt = EncodedPrompt { input_ids: vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198], ..Default::default() };
    let gen = GenerationConfig { max_new_tokens: 5, sampling: Sampling::new(1.0, 1.0, 0).unwrap(), stop_tokens: vec![] };
    let trained = |checkpointing: bool, micro_batch: usize, logits_chunk: usize, entropy_coef: f64| -> (f64, Vec<f64>) {
        let (mut t, adapters) = model(DType::F64);
        ttrav::rl::lora::set_lora_dropout(&mut t, 0.2).unwrap();
        let params = adapters.iter().flat_map(|(n, l)| [(format!("{n}.A"), l.a.clone()), (format!("{n}.B"), l.b.clone())]).collect();
        let mut opt = AdamW::new(AdamWConfig { lr: 0.05, ..Default::default() }, params).unwrap();
        let r = rollout(&t, &prompt, 400, 4, &gen, &mut Rng::seed(5)).unwrap();
        let group = TrainGroup { rollout: &r, chosen: vec![0, 1, 2, 3], rewards: vec![1.0, 0.0, 0.5, 0.0], weight: 1.0 };
        let loss = LossConfig { kl_coef: 0.3, entropy_coef, ..Default::default() };
        let cfg = UpdateConfig {
            loss,
            advantage: AdvantageKind::Grpo,
            micro_batch,
            gradient_checkpointing: checkpointing,
            logits_chunk,
            dropout_seed: 11,
            ..Default::default()
        };
        let stats = update(&t, &mut opt, &[group], &cfg).unwrap();
        assert!(stats.skipped.is_none() && stats.grad_norm > 0.0, "{stats:?}");
        let values = opt.params.iter().flat_map(|(_, p)| p.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect();
        (stats.loss, values)
    };
    // (Dropout masks are drawn per micro-batch shape, so each is compared with the full graph
    // at the same micro-batch.)
    for entropy_coef in [0.01, 0.0] {
        for (micro_batch, chunk) in [(0, 512), (0, 3), (1, 1), (3, 5)] {
            let (loss, whole) = trained(false, micro_batch, 512, entropy_coef);
            let (l, p) = trained(true, micro_batch, chunk, entropy_coef);
            assert!((l - loss).abs() < 1e-10, "micro-batch {micro_batch}, chunk {chunk}: loss {l} vs {loss}");
            let d = p.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(d < 1e-10, "micro-batch {micro_batch}, chunk {chunk}, entropy {entropy_coef}: parameters differ by {d}");
        }
    }
}

/// The gradient of the full loss through the recomputed layers (the checkpointed backward)
/// matches finite differences of the loss, f64.
#[test]
fn checkpointed_gradients_match_finite_differences() {
    let (t, adapters) = model(DType::F64);
    let cfg = cfg();
    let (_, old) = total_loss(&t, &cfg, None);
    let batch = PromptBatch::left_padded(&[vec![401, 301, 198, 328, 316, 256, 318, 402, 198, 401, 350, 198]], 400).unwrap();
    let prompt = t.prefill(&batch, PrefillOptions::default()).unwrap().context(0).unwrap();
    let answers = vec![vec![331, 357, 165, 55], vec![20, 30, 402]];
    let (lp, kept) = t.answer_logprobs_kept(&prompt, &answers, 1.0, Pass::TRAIN, 3).unwrap();
    let reference = t.answer_logprobs_kept(&prompt, &answers, 1.0, Pass::BASE, 3).unwrap().0.logp;
    let (logp, entropy) = (candle_core::Var::from_tensor(&lp.logp).unwrap(), candle_core::Var::from_tensor(&lp.entropy).unwrap());
    let adv = Tensor::new(&[1.0f64, -0.5], &Device::Cpu).unwrap();
    let inputs = LossInputs {
        logp: logp.as_tensor(),
        old_logp: &old,
        advantages: &adv,
        mask: &lp.mask,
        ref_logp: Some(&reference),
        entropy: Some(entropy.as_tensor()),
    };
    let l = loss(&cfg, &inputs, &AggScale::of_mask(&lp.mask).unwrap()).unwrap().0;
    let g = l.backward().unwrap();
    let vars: Vec<&candle_core::Var> = adapters.iter().flat_map(|(_, l)| [&l.a, &l.b]).collect();
    let mut grads: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().zeros_like().unwrap()).collect();
    t.backward_answer_logprobs(&kept, g.get(logp.as_tensor()).unwrap(), g.get(entropy.as_tensor()), |store| {
        for (acc, v) in grads.iter_mut().zip(&vars) {
            if let Some(x) = store.get(v.as_tensor()) {
                *acc = (&*acc + x)?;
            }
        }
        Ok(())
    })
    .unwrap();
    let mut checked = 0;
    for (i, var) in vars.iter().enumerate().step_by(5) {
        let (analytic, numeric) = largest_coordinate_vs_finite_difference(var, &grads[i], || total_loss(&t, &cfg, Some(&old)).0.to_scalar::<f64>().unwrap());
        let rel = (numeric - analytic).abs() / analytic.abs().max(1e-8);
        assert!(analytic != 0.0, "parameter {i}: no gradient through the recomputed layers");
        assert!(rel < 1e-3, "parameter {i}: analytic {analytic} vs numeric {numeric} (relative error {rel:e})");
        checked += 1;
    }
    assert!(checked >= 5);
}
