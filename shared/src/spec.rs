//! The versioned preprocessing spec: every number that decides what tensor a
//! slice becomes. It serialises to canonical JSON with a stable SHA-256, so a
//! model bundle can state the spec it was trained with and a device can refuse
//! a mismatch.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PreprocessError;

/// Version of the spec's meaning. Bump it whenever the same numbers would
/// produce a different tensor (a changed formula, not a changed parameter).
pub const SPEC_FORMAT_VERSION: u32 = 1;

/// Optional crop to the bounding box of the brain (the bright foreground).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BrainCrop {
    /// A pixel is foreground when its luminance is strictly above
    /// `threshold × (the image's maximum luminance)`.
    pub threshold: f32,
    /// The box is grown on every side by `round(margin × longer box side)`
    /// pixels, then clamped to the image.
    pub margin: f32,
}

/// How a non-square (cropped) image becomes square.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AspectPolicy {
    /// Centre the image on a black square of side max(w, h) (left/top offset
    /// `floor((side − w) / 2)`), so anatomy is never distorted.
    PadToSquare,
    /// Scale width and height independently.
    Stretch,
}

/// Resampling filter of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Separable triangle (bilinear) filter on pixel centres; when shrinking,
    /// the kernel widens by the scale factor (area-aware anti-aliasing, as
    /// Pillow's BILINEAR). Taps outside the image are dropped and the weights
    /// renormalised. See [`crate::resize`].
    Triangle,
}

/// Everything that decides the model input for a slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// [`SPEC_FORMAT_VERSION`] this spec was written for.
    pub version: u32,
    /// Side S of the square model input `1×3×S×S`.
    pub input_size: u32,
    pub crop: Option<BrainCrop>,
    pub aspect: AspectPolicy,
    pub resize: ResizeFilter,
    /// Per-channel mean and standard deviation applied after the luminance is
    /// replicated to three channels (values in [0, 1] before normalising).
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl PreprocessSpec {
    /// The default contract at a given input size: brain crop (threshold 0.05,
    /// margin 0.04), pad to square, triangle resize, ImageNet mean/std (the
    /// paper's ResNets expect RGB inputs normalised that way).
    pub fn with_input_size(input_size: u32) -> PreprocessSpec {
        PreprocessSpec {
            version: SPEC_FORMAT_VERSION,
            input_size,
            crop: Some(BrainCrop {
                threshold: 0.05,
                margin: 0.04,
            }),
            aspect: AspectPolicy::PadToSquare,
            resize: ResizeFilter::Triangle,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// Rejects specs no implementation could honour.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let bad = |why: String| Err(PreprocessError::InvalidSpec(why));
        if self.version != SPEC_FORMAT_VERSION {
            return bad(format!(
                "spec version {} is not the supported version {SPEC_FORMAT_VERSION}",
                self.version
            ));
        }
        if !(1..=4096).contains(&self.input_size) {
            return bad(format!("input_size {} outside 1..=4096", self.input_size));
        }
        if let Some(crop) = self.crop {
            if !(0.0..1.0).contains(&crop.threshold) || !(0.0..=1.0).contains(&crop.margin) {
                return bad(format!(
                    "crop threshold {} must be in [0, 1) and margin {} in [0, 1]",
                    crop.threshold, crop.margin
                ));
            }
        }
        for c in 0..3 {
            if !self.mean[c].is_finite() || !self.std[c].is_finite() || self.std[c] <= 0.0 {
                return bad(format!(
                    "channel {c}: mean {} / std {} must be finite with std > 0",
                    self.mean[c], self.std[c]
                ));
            }
        }
        Ok(())
    }

    /// Canonical JSON: fields in declaration order, no whitespace, floats in
    /// their shortest round-trip form. Stable across platforms and runs.
    pub fn canonical_json(&self) -> String {
        // Serialising plain structs of numbers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Hex SHA-256 of [`Self::canonical_json`]: the identity of the contract.
    pub fn hash_hex(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    pub fn from_json(json: &str) -> Result<PreprocessSpec, PreprocessError> {
        let spec: PreprocessSpec =
            serde_json::from_str(json).map_err(|e| PreprocessError::InvalidSpec(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }
}

impl Default for PreprocessSpec {
    fn default() -> Self {
        PreprocessSpec::with_input_size(224)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_exact_and_round_trips() {
        let spec = PreprocessSpec::with_input_size(64);
        assert_eq!(
            spec.canonical_json(),
            r#"{"version":1,"input_size":64,"crop":{"threshold":0.05,"margin":0.04},"aspect":"pad-to-square","resize":"triangle","mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225]}"#
        );
        assert_eq!(
            PreprocessSpec::from_json(&spec.canonical_json()).unwrap(),
            spec
        );
    }

    #[test]
    fn hash_is_sha256_of_the_canonical_json_and_changes_with_any_field() {
        let spec = PreprocessSpec::with_input_size(64);
        // Independent check: the digest of the literal JSON text above.
        let expected = hex::encode(Sha256::digest(spec.canonical_json().as_bytes()));
        assert_eq!(spec.hash_hex(), expected);
        assert_eq!(spec.hash_hex().len(), 64);
        let mut other = spec.clone();
        other.input_size = 65;
        assert_ne!(other.hash_hex(), spec.hash_hex());
        let mut other = spec.clone();
        other.crop = None;
        assert_ne!(other.hash_hex(), spec.hash_hex());
    }

    #[test]
    fn invalid_specs_are_refused() {
        let mut spec = PreprocessSpec::default();
        spec.std[1] = 0.0;
        assert!(matches!(
            spec.validate(),
            Err(PreprocessError::InvalidSpec(_))
        ));
        let spec = PreprocessSpec {
            version: 99,
            ..Default::default()
        };
        assert!(spec.validate().is_err());
        let spec = PreprocessSpec {
            input_size: 0,
            ..Default::default()
        };
        assert!(spec.validate().is_err());
        assert!(PreprocessSpec::from_json("{\"version\":1}").is_err());
        assert!(PreprocessSpec::default().validate().is_ok());
    }
}
