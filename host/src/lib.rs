//! TumorXAI workstation library: phantom MRI generation, ImageFolder datasets
//! and splits, the bridge from the shared preprocessing contract to libtorch
//! tensors, ResNet models, training, evaluation and metrics, EigenCAM,
//! export to ONNX and signed bundles, and host↔device parity.

pub mod data;
pub mod dataset;
pub mod experiment;
pub mod explain;
pub mod export;
pub mod metrics;
pub mod model;
pub mod parity;
pub mod split;
pub mod ssl;
pub mod synth;
pub mod tensor;
pub mod train;
