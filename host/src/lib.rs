//! TumorXAI workstation library: phantom MRI generation, ImageFolder datasets
//! and splits, and the bridge from the shared preprocessing contract to
//! libtorch tensors.

pub mod dataset;
pub mod split;
pub mod synth;
pub mod tensor;
