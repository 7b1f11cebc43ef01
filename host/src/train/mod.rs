//! Training and evaluation: configuration, schedule, optimizers, checkpoints,
//! the supervised / fine-tuning loop, and inference with reports.

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod fit;
pub mod optim;
pub mod plots;
pub mod precision;
pub mod probe;
pub mod run_eval;
pub mod schedule;
