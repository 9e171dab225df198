//! The bundled demo: data the project synthesises itself, a small model of the real
//! architecture trained on it, and (in `ttrav demo`) the test-time RL result in miniature.

pub mod data;
pub mod model;
pub mod run;
