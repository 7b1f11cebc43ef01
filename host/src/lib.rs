//! TumorXAI workstation library: phantom MRI generation, dataset splits, and
//! the bridge from the shared preprocessing contract to libtorch tensors.

pub mod tensor;
