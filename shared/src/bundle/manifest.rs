//! The bundle manifest (what the model is, how its input is made, how it was
//! trained and quantized) and the golden self-test vectors, with the
//! validation a device runs before it trusts any field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mcuboot::ImageVersion;
use super::BundleError;
use crate::spec::PreprocessSpec;

/// Version of the manifest schema this build reads and writes.
pub const MANIFEST_FORMAT: u32 = 1;
const MAX_CLASSES: usize = 1000;
const MAX_GOLDEN_VECTORS: usize = 16;

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

/// Out-of-distribution calibration (see [`crate::ood`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodCalibration {
    /// "centroid-cosine": `1 − max cosine(pooled embedding, class centroid)`.
    pub method: String,
    /// Unit centroids, one per class, in class order.
    pub centroids: Vec<Vec<f32>>,
    /// Scores above this are out of distribution (→ REVIEW).
    pub threshold: f32,
    /// Fraction of training images whose score is at or below the threshold.
    pub percentile: f64,
    pub training_images: u32,
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
            let ok = ood.method == "centroid-cosine"
                && ood.centroids.len() == self.classes.len()
                && dim > 0
                && ood
                    .centroids
                    .iter()
                    .all(|c| c.len() == dim && c.iter().all(|v| v.is_finite()))
                && ood.threshold.is_finite()
                && (0.0..=2.0).contains(&ood.threshold)
                && (0.0..=1.0).contains(&ood.percentile);
            if !ok {
                return Err(invalid(
                    "ood calibration is malformed (method, one centroid per class, threshold in [0, 2])",
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

    /// Checks golden vectors against this manifest.
    pub fn validate_golden(&self, golden: &[GoldenVector]) -> Result<(), BundleError> {
        if golden.len() > MAX_GOLDEN_VECTORS {
            return Err(invalid(format!(
                "{} golden vectors (at most {MAX_GOLDEN_VECTORS})",
                golden.len()
            )));
        }
        for g in golden {
            let ok = g.logits.len() == self.classes.len()
                && g.top1 < self.classes.len()
                && g.logits.iter().all(|v| v.is_finite())
                && g.logit_tolerance.is_finite()
                && g.logit_tolerance > 0.0
                && is_sha256_hex(&g.image_sha256)
                && is_sha256_hex(&g.input_sha256);
            if !ok {
                return Err(invalid(format!("golden vector {:?} is malformed", g.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_manifest() -> Manifest {
        let spec = PreprocessSpec::with_input_size(64);
        Manifest {
            format: MANIFEST_FORMAT,
            model_id: "tumorxai-demo".to_string(),
            version: "1.0.0".to_string(),
            created: "2026-11-27T04:00:00Z".to_string(),
            classes: vec!["a".to_string(), "b".to_string()],
            preprocess_spec_sha256: spec.hash_hex(),
            preprocess_spec: spec,
            input_size: 64,
            outputs: Outputs {
                logits: "logits".to_string(),
                features: "features".to_string(),
            },
            model_sha256: "0".repeat(64),
            training: Training {
                checkpoint_sha256: "1".repeat(64),
                metrics: BTreeMap::from([("accuracy".to_string(), 0.5)]),
            },
            quantization: Quantization {
                form: QuantizationForm::Fp32,
                calibration_images: None,
                calibration_method: None,
            },
            notice: None,
            ood: None,
        }
    }

    #[test]
    fn rfc3339_matches_python_datetime() {
        // Expected values printed by Python's datetime.fromtimestamp(t, UTC).
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_838_400), "2026-11-28T04:00:00Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert!(is_rfc3339_utc(&rfc3339_utc(1_795_838_400)));
    }

    #[test]
    fn a_well_formed_manifest_validates() {
        sample_manifest().validate().unwrap();
    }

    #[test]
    fn each_broken_field_is_named() {
        type Breakage = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Breakage)> = vec![
            ("model id", Box::new(|m| m.model_id = "Bad Id".into())),
            ("version", Box::new(|m| m.version = "1.0".into())),
            ("created", Box::new(|m| m.created = "2026-11-27".into())),
            ("classes", Box::new(|m| m.classes.clear())),
            ("repeated", Box::new(|m| m.classes[1] = "a".into())),
            ("hash", Box::new(|m| m.preprocess_spec.input_size = 65)),
            ("input size", Box::new(|m| m.input_size = 32)),
            ("model_sha256", Box::new(|m| m.model_sha256 = "XY".into())),
            (
                "calibration",
                Box::new(|m| m.quantization.form = QuantizationForm::Int8Qdq),
            ),
            (
                "ood",
                Box::new(|m| {
                    m.ood = Some(OodCalibration {
                        method: "centroid-cosine".into(),
                        centroids: vec![vec![1.0, 0.0]],
                        threshold: 0.3,
                        percentile: 0.99,
                        training_images: 10,
                    })
                }),
            ),
            (
                "finite",
                Box::new(|m| {
                    m.training.metrics.insert("x".into(), f64::NAN);
                }),
            ),
        ];
        for (what, breaks) in cases {
            let mut m = sample_manifest();
            breaks(&mut m);
            let err = m.validate().expect_err(what).to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn golden_vectors_must_fit_the_class_list() {
        let m = sample_manifest();
        let good = GoldenVector {
            name: "g".into(),
            image_sha256: "a".repeat(64),
            input_sha256: "b".repeat(64),
            logits: vec![0.5, -1.0],
            top1: 0,
            logit_tolerance: 1e-4,
        };
        m.validate_golden(std::slice::from_ref(&good)).unwrap();
        let mut short = good.clone();
        short.logits.pop();
        assert!(m.validate_golden(&[short]).is_err());
        let mut top = good.clone();
        top.top1 = 2;
        assert!(m.validate_golden(&[top]).is_err());
        let mut nan = good;
        nan.logits[0] = f32::NAN;
        assert!(m.validate_golden(&[nan]).is_err());
    }
}
