//! Test-time reinforcement learning: the judge on top of the thinker (more to come: rollouts,
//! GRPO with LoRA, the adaptation loop, checkpoints).

pub mod adapt;
pub mod checkpoint;
pub mod eval;
pub mod grpo;
pub mod judge;
pub mod lora;
pub mod optim;
pub mod plot;
pub mod run;
pub mod sft;
pub mod trainer;
