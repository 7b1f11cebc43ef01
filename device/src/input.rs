//! The device's preprocessing path: a slice file to the model input array,
//! through the shared contract.

use std::path::Path;

use anyhow::{Context, Result};
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessSpec, Preprocessed};

/// Reads and preprocesses one slice file.
pub fn load_input(
    path: &Path,
    spec: &PreprocessSpec,
    limits: DecodeLimits,
) -> Result<Preprocessed> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    preprocess_bytes(&bytes, spec, limits)
        .with_context(|| format!("preprocessing {}", path.display()))
}
