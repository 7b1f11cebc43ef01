//! TumorXAI workstation library: phantom MRI generation, ImageFolder datasets
//! and splits, the bridge from the shared preprocessing contract to libtorch
//! tensors, ResNet models, training, evaluation and metrics.

pub mod data;
pub mod dataset;
pub mod export;
pub mod metrics;
pub mod model;
pub mod split;
pub mod synth;
pub mod tensor;
pub mod train;
