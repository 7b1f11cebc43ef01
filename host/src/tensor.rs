//! The host's preprocessing path: the shared contract's output as a tch tensor.

use std::path::Path;

use anyhow::{Context, Result};
use tch::Tensor;
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessSpec, Preprocessed};

/// A preprocessed model input as a `1×3×S×S` f32 CPU tensor.
pub fn to_tensor(input: &Preprocessed) -> Tensor {
    let s = input.size as i64;
    Tensor::from_slice(&input.data).reshape([1, 3, s, s])
}

/// Rows of `x` divided by their L2 norm (F.normalize, eps 1e-12): cosine
/// similarities are then plain products..
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1i64], true).clamp_min(1e-12)
}

/// Reads an image file and preprocesses it into a tensor.
pub fn load_input(path: &Path, spec: &PreprocessSpec, limits: DecodeLimits) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let input = preprocess_bytes(&bytes, spec, limits)
        .with_context(|| format!("preprocessing {}", path.display()))?;
    Ok(to_tensor(&input))
}
