//! TumorXAI scanner-side runtime.

pub mod input;
