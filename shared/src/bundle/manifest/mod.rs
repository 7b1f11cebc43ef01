//! The bundle manifest (what the model is, how its input is made, how it was
//! trained and quantized) and the golden self-test vectors, with the
//! validation a device runs before it trusts any field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mcuboot::ImageVersion;
use super::BundleError;
use crate::classes::ClassInfo;
use crate::logits::{argmax, top1_margin};
use crate::spec::PreprocessSpec;

/// Version of the manifest schema this build reads and writes.
pub const MANIFEST_FORMAT: u32 = 1;
const MAX_CLASSES: usize = 1000;
const MAX_GOLDEN_VECTORS: usize = 16;
/// A golden vector's tolerance may be at most this fraction of its logit
/// scale (`max(1, max |logit|)`): above it the self-test could no longer tell
/// a working model from a broken one, so such a bundle is refused.
pub const MAX_RELATIVE_LOGIT_TOLERANCE: f32 = 0.05;
/// Temperatures a manifest may carry (softmax(z / T)).
const TEMPERATURE_RANGE: std::ops::RangeInclusive<f32> = 0.04..=25.0;

/// How the model's weights are stored in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantizationForm {
    /// Plain fp32 ONNX.
    Fp32,
    /// int8 weights (per-channel symmetric) and calibrated activation ranges in
    /// ONNX QDQ form; the device picks the execution form at load time.
    Int8Qdq,
}

impl std::fmt::Display for QuantizationForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuantizationForm::Fp32 => "fp32",
            QuantizationForm::Int8Qdq => "int8-qdq",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    pub form: QuantizationForm,
    /// Images used for calibration (int8 only).
    pub calibration_images: Option<u32>,
    /// Calibration method, e.g. "max-abs" (int8 only).
    pub calibration_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    pub logits: String,
    pub features: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// SHA-256 of the safetensors file the model was exported from.
    pub checkpoint_sha256: String,
    /// Held-out metrics of that checkpoint (e.g. accuracy, macro_f1).
    pub metrics: BTreeMap<String, f64>,
}

/// Where the Mahalanobis statistics are: the bundle's binary
/// out-of-distribution section ([`crate::ood::ClassGaussians`] bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodGaussians {
    pub classes: u32,
    pub dim: u32,
    /// SHA-256 of the section.
    pub sha256: String,
}

impl OodGaussians {
    /// Section length the layout implies, if it is representable.
    pub fn section_len(&self) -> Option<usize> {
        let (c, d) = (self.classes as usize, self.dim as usize);
        c.checked_add(d)?.checked_mul(d)?.checked_mul(4)
    }
}

/// Out-of-distribution calibration (see [`crate::ood`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodCalibration {
    /// "mahalanobis-normalised" (with `gaussians`) or "centroid-cosine".
    pub method: String,
    /// Unit centroids, one per class, in class order.
    pub centroids: Vec<Vec<f32>>,
    /// Scores above this are out of distribution (→ REVIEW).
    pub threshold: f32,
    /// Fraction of the calibration images whose score is at or below the
    /// threshold.
    pub percentile: f64,
    /// Training images the centroids were computed from.
    pub training_images: u32,
    /// Held-out (validation) images the threshold was set on, scored in
    /// every execution form the bundle may run in; 0: set on the training
    /// images (bundles before manifest 1.1).
    #[serde(default)]
    pub held_out_images: u32,
    /// Mahalanobis statistics (method "mahalanobis-normalised").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaussians: Option<OodGaussians>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Stable identifier of the model line; versions are monotonic per id.
    pub model_id: String,
    /// `MAJOR.MINOR.REVISION[+BUILD]`, equal to the MCUboot header version.
    pub version: String,
    /// Creation time, RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    pub created: String,
    /// Class names in logit index order.
    pub classes: Vec<String>,
    pub preprocess_spec: PreprocessSpec,
    pub preprocess_spec_sha256: String,
    pub input_size: u32,
    pub outputs: Outputs,
    /// SHA-256 of the model section.
    pub model_sha256: String,
    pub training: Training,
    pub quantization: Quantization,
    /// Free text shown to users, e.g. "trained on synthetic phantoms".
    pub notice: Option<String>,
    /// Out-of-distribution calibration; without it the device cannot flag
    /// inputs that are not brain slices.
    #[serde(default)]
    pub ood: Option<OodCalibration>,
    /// Softmax temperature fitted on held-out images (probabilities are
    /// `softmax(logits / T)`); absent: uncalibrated (T = 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

/// One self-test: a sample image, the tensor it must preprocess to (by hash,
/// bit for bit) and the logits the model must give for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenVector {
    pub name: String,
    /// SHA-256 of the golden image section's bytes.
    pub image_sha256: String,
    /// SHA-256 of the preprocessed `1×3×S×S` tensor as little-endian f32.
    pub input_sha256: String,
    pub logits: Vec<f32>,
    pub top1: usize,
    /// Largest allowed |Δ| per logit on the device.
    pub logit_tolerance: f32,
    /// The class the image truly shows (its dataset label), which
    /// `classes[top1]` must name: a class list reordered after training is
    /// caught by the image's own truth, not only by the list. Absent in
    /// bundles made before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_class: Option<String>,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`),
/// the manifest's `created` format (civil-from-days, proleptic Gregorian).
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn invalid(msg: impl Into<String>) -> BundleError {
    BundleError::Invalid(format!("manifest: {}", msg.into()))
}

impl Manifest {
    /// The class list must be the shared contract's, in its order: the
    /// device names tumours by logit index. Checked where a bundle is made
    /// and where one is loaded (not in [`Manifest::validate`], which also
    /// serves the format's own tests with short lists).
    pub fn validate_class_contract(&self) -> Result<(), BundleError> {
        match crate::classes::class_list_mismatch(&self.classes) {
            None => Ok(()),
            Some(why) => Err(invalid(format!(
                "the class list is not the contract's ({why})"
            ))),
        }
    }

    pub fn image_version(&self) -> Result<ImageVersion, BundleError> {
        self.version.parse()
    }

    /// Checks every field on its own and against the others.
    pub fn validate(&self) -> Result<(), BundleError> {
        if self.format != MANIFEST_FORMAT {
            return Err(invalid(format!(
                "format {} is not supported (this build reads {MANIFEST_FORMAT})",
                self.format
            )));
        }
        let id_ok = !self.model_id.is_empty()
            && self.model_id.len() <= 64
            && self
                .model_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !id_ok {
            return Err(invalid(format!(
                "model id {:?} must be 1–64 characters of a-z 0-9 - _ .",
                self.model_id
            )));
        }
        self.image_version()?;
        if !is_rfc3339_utc(&self.created) {
            return Err(invalid(format!(
                "created {:?} is not YYYY-MM-DDTHH:MM:SSZ",
                self.created
            )));
        }
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return Err(invalid(format!(
                "{} classes (1–{MAX_CLASSES} allowed)",
                self.classes.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for name in &self.classes {
            if name.is_empty() || !seen.insert(name) {
                return Err(invalid(format!("class name {name:?} empty or repeated")));
            }
            // The triage policy sums probabilities per family: a class
            // outside every family would make every slice REVIEW silently.
            if ClassInfo::parse(name).is_none() {
                return Err(invalid(format!(
                    "class name {name:?} names no tumour family and sequence of the dataset's layout"
                )));
            }
        }
        if let Some(t) = self.temperature {
            if !TEMPERATURE_RANGE.contains(&t) {
                return Err(invalid(format!(
                    "temperature {t} is outside {}–{}",
                    TEMPERATURE_RANGE.start(),
                    TEMPERATURE_RANGE.end()
                )));
            }
        }
        self.preprocess_spec
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        if self.preprocess_spec.hash_hex() != self.preprocess_spec_sha256 {
            return Err(invalid(
                "preprocess_spec_sha256 is not the hash of preprocess_spec",
            ));
        }
        if self.input_size != self.preprocess_spec.input_size {
            return Err(invalid(format!(
                "input size {} differs from the spec's {}",
                self.input_size, self.preprocess_spec.input_size
            )));
        }
        if self.outputs.logits.is_empty() || self.outputs.features.is_empty() {
            return Err(invalid("output names must not be empty"));
        }
        for (what, hash) in [
            ("model_sha256", &self.model_sha256),
            (
                "training.checkpoint_sha256",
                &self.training.checkpoint_sha256,
            ),
        ] {
            if !is_sha256_hex(hash) {
                return Err(invalid(format!("{what} is not 64 lowercase hex digits")));
            }
        }
        if self.training.metrics.values().any(|v| !v.is_finite()) {
            return Err(invalid("training metrics must be finite"));
        }
        if let Some(ood) = &self.ood {
            let dim = ood.centroids.first().map_or(0, Vec::len);
            let common = ood.centroids.len() == self.classes.len()
                && dim > 0
                && ood
                    .centroids
                    .iter()
                    .all(|c| c.len() == dim && c.iter().all(|v| v.is_finite()))
                && ood.threshold.is_finite()
                && (0.0..=1.0).contains(&ood.percentile);
            let method = match (ood.method.as_str(), &ood.gaussians) {
                (crate::ood::METHOD_COSINE, None) => (0.0..=2.0).contains(&ood.threshold),
                (crate::ood::METHOD_MAHALANOBIS, Some(g)) => {
                    ood.threshold >= 0.0
                        && g.classes as usize == self.classes.len()
                        && g.dim as usize == dim
                        && is_sha256_hex(&g.sha256)
                        && g.section_len()
                            .is_some_and(|len| len <= super::payload::MAX_OOD_STATISTICS_BYTES)
                }
                _ => false,
            };
            if !(common && method) {
                return Err(invalid(
                    "ood calibration is malformed (method and its statistics, one centroid per class, threshold range)",
                ));
            }
        }
        let int8 = self.quantization.form == QuantizationForm::Int8Qdq;
        if int8 != self.quantization.calibration_images.is_some() {
            return Err(invalid(
                "calibration_images is given exactly when the form is int8-qdq",
            ));
        }
        Ok(())
    }

    /// Checks golden vectors against this manifest. A bundle needs at least
    /// one: a model that cannot prove itself on the device is not loaded.
    pub fn validate_golden(&self, golden: &[GoldenVector]) -> Result<(), BundleError> {
        if golden.is_empty() || golden.len() > MAX_GOLDEN_VECTORS {
            return Err(invalid(format!(
                "{} golden vectors (1–{MAX_GOLDEN_VECTORS} required)",
                golden.len()
            )));
        }
        for g in golden {
            let ok = g.logits.len() == self.classes.len()
                && argmax(&g.logits) == Some(g.top1)
                && g.logit_tolerance.is_finite()
                && g.logit_tolerance > 0.0
                && is_sha256_hex(&g.image_sha256)
                && is_sha256_hex(&g.input_sha256);
            if !ok {
                return Err(invalid(format!(
                    "golden vector {:?} is malformed (logits per class, finite, top1 = their argmax, tolerance > 0)",
                    g.name
                )));
            }
            if let Some(expected) = &g.expected_class {
                let named = self.classes.get(g.top1).map(String::as_str);
                if named != Some(expected.as_str()) {
                    return Err(invalid(format!(
                        "golden vector {:?} shows {expected:?} but the class list names its top-1 {:?}",
                        g.name,
                        named.unwrap_or("nothing")
                    )));
                }
            }
            let ceiling = max_logit_tolerance(&g.logits);
            if g.logit_tolerance > ceiling {
                return Err(invalid(format!(
                    "golden vector {:?}: tolerance {:.3e} exceeds the ceiling {ceiling:.3e} \
                     ({MAX_RELATIVE_LOGIT_TOLERANCE} × the logit scale): the model drifts too far to certify itself",
                    g.name, g.logit_tolerance
                )));
            }
            // Every logit may move by the tolerance: the top-1 must survive that.
            let margin = top1_margin(&g.logits).unwrap_or(0.0);
            if margin <= 2.0 * g.logit_tolerance {
                return Err(invalid(format!(
                    "golden vector {:?}: top-1 margin {margin:.3e} is within twice the tolerance {:.3e}; \
                     pick an image the model is decided about",
                    g.name, g.logit_tolerance
                )));
            }
        }
        Ok(())
    }
}

/// The largest self-test tolerance allowed for a golden vector with these
/// logits: [`MAX_RELATIVE_LOGIT_TOLERANCE`] × `max(1, max |logit|)`.
pub fn max_logit_tolerance(logits: &[f32]) -> f32 {
    let scale = logits.iter().fold(1f32, |m, v| m.max(v.abs()));
    MAX_RELATIVE_LOGIT_TOLERANCE * scale
}

#[cfg(test)]
pub(crate) mod tests;
