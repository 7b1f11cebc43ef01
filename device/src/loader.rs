//! Loading a signed model bundle on the device, once: structure and hash,
//! signature against the trust store, manifest and preprocessing spec against
//! what this build honours, execution form (int8 bundles), tract
//! optimisation, the model's outputs against the manifest (one logit per
//! class, features as long as the out-of-distribution statistics), and the
//! bundle's golden self-test (every output finite, every logit within the
//! tolerance, the same top-1). Any failure refuses the bundle with a message
//! that says which check failed.

use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;
use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tract_onnx::pb;
use tumorxai_shared::bundle::{read_bundle, BundleError, Manifest, QuantizationForm};
use tumorxai_shared::logits::{all_finite, argmax, max_abs_diff};
use tumorxai_shared::ood::OodScorer;
use tumorxai_shared::spec::SPEC_FORMAT_VERSION;
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessError, PreprocessSpec};

use crate::eigencam::{MAX_CHANNELS, MAX_POSITIONS};
use crate::forms::{self, ExecutionForm, FormError};
use crate::runtime::{Model, OutputNames, RuntimeError};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("the bundle's preprocessing spec cannot be honoured by this build: {0}")]
    Spec(String),
    #[error("the bundle's ONNX model is not valid protobuf: {0}")]
    Onnx(String),
    #[error("cannot prepare the {form} execution form: {source}")]
    Form {
        form: &'static str,
        source: FormError,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("self-test {name:?} failed: {why}")]
    SelfTest { name: String, why: String },
    #[error("the bundle carries no golden self-test vectors: refusing an unverifiable model")]
    NoSelfTest,
    #[error("the model does not fit its manifest: {0}")]
    Inconsistent(String),
    #[error("trust store key {0}: {1}")]
    TrustKey(String, String),
}

/// A verified bundle, ready to run.
pub struct LoadedModel {
    pub model: Model,
    pub manifest: Manifest,
    pub classes: Vec<String>,
    pub spec: PreprocessSpec,
    pub form: ExecutionForm,
    /// MCUboot image digest of the bundle (hex), for the audit log.
    pub bundle_sha256: String,
    /// Largest |Δ logit| of the golden self-test.
    pub self_test_max_delta: f32,
    /// Golden vectors the self-test ran (at least one).
    pub self_tests_passed: usize,
    /// The out-of-distribution score and its threshold, when the bundle
    /// carries a calibration.
    pub ood: Option<(OodScorer, f32)>,
    /// Signed with the public demo key (the caller knows the key and sets
    /// this; the panel then says DEMO).
    pub demo: bool,
}

/// Parses a PEM (SubjectPublicKeyInfo) Ed25519 public key.
pub fn parse_trusted_key(name: &str, pem: &str) -> Result<VerifyingKey, LoadError> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| LoadError::TrustKey(name.to_string(), e.to_string()))
}

/// SHA-256 (hex) of a tensor as little-endian f32: what golden vectors record.
pub fn tensor_sha256(values: &[f32]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

impl LoadedModel {
    /// Verifies and loads `bytes` (a bundle) with `form` for int8 bundles.
    pub fn from_bundle(
        bytes: &[u8],
        trust: &[VerifyingKey],
        form: ExecutionForm,
    ) -> Result<LoadedModel, LoadError> {
        let bundle = read_bundle(bytes)?;
        bundle.verify_trusted(trust)?;
        // Signed is not enough: names are shown by logit index, so a list in
        // another order would name the wrong tumour with a valid signature.
        bundle.manifest.validate_class_contract()?;
        let manifest = bundle.manifest.clone();
        let spec = manifest.preprocess_spec.clone();
        if spec.version != SPEC_FORMAT_VERSION {
            return Err(LoadError::Spec(format!(
                "spec format {} (this build implements {SPEC_FORMAT_VERSION})",
                spec.version
            )));
        }
        spec.validate()
            .map_err(|e| LoadError::Spec(e.to_string()))?;
        let mut proto =
            pb::ModelProto::decode(bundle.model).map_err(|e| LoadError::Onnx(e.to_string()))?;
        let form = match manifest.quantization.form {
            QuantizationForm::Fp32 => ExecutionForm::AsShipped,
            QuantizationForm::Int8Qdq => form,
        };
        forms::apply(&mut proto, form).map_err(|source| LoadError::Form {
            form: form.name(),
            source,
        })?;
        let names = OutputNames {
            logits: &manifest.outputs.logits,
            features: &manifest.outputs.features,
        };
        let model = Model::load_proto(&proto, spec.input_size, names)?;
        // `read_bundle` refuses bundles without golden vectors already; this
        // build never loads an unverified model whatever that check becomes.
        if bundle.golden.is_empty() || bundle.golden.len() != bundle.golden_images.len() {
            return Err(LoadError::NoSelfTest);
        }
        let ood = manifest
            .ood
            .as_ref()
            .map(|o| {
                OodScorer::from_calibration(o, bundle.ood_statistics).map(|s| (s, o.threshold))
            })
            .transpose()?;
        let ood_dim = ood.as_ref().map(|(scorer, _)| scorer.dim());
        let mut self_test_max_delta = 0f32;
        for (golden, image) in bundle.golden.iter().zip(&bundle.golden_images) {
            let fail = |why: String| LoadError::SelfTest {
                name: golden.name.clone(),
                why,
            };
            let input = preprocess_bytes(image, &spec, DecodeLimits::default())
                .map_err(|e: PreprocessError| fail(e.to_string()))?;
            if tensor_sha256(&input.data) != golden.input_sha256 {
                return Err(fail(
                    "preprocessing gave a different tensor than on the workstation".to_string(),
                ));
            }
            let out = model.run(&input)?;
            if out.logits.len() != manifest.classes.len() {
                return Err(LoadError::Inconsistent(format!(
                    "{} logits for {} classes",
                    out.logits.len(),
                    manifest.classes.len()
                )));
            }
            let [channels, height, width] = out.feature_shape;
            if height.saturating_mul(width) > MAX_POSITIONS || channels > MAX_CHANNELS {
                return Err(LoadError::Inconsistent(format!(
                    "a {channels}×{height}×{width} feature map is beyond what this device explains \
                     (at most {MAX_POSITIONS} positions and {MAX_CHANNELS} channels)"
                )));
            }
            if let Some(len) = ood_dim {
                if out.feature_shape[0] != len {
                    return Err(LoadError::Inconsistent(format!(
                        "{} feature channels, but the out-of-distribution statistics have {len}",
                        out.feature_shape[0]
                    )));
                }
            }
            if !all_finite(&out.logits) || !all_finite(&out.features) {
                return Err(fail("the model gave non-finite outputs".to_string()));
            }
            let delta = max_abs_diff(&out.logits, &golden.logits);
            // Non-finite values give +∞ here: they never pass.
            if delta > golden.logit_tolerance {
                return Err(fail(format!(
                    "logits differ by {delta:.3e} (tolerance {:.1e})",
                    golden.logit_tolerance
                )));
            }
            let top1 = argmax(&out.logits);
            if top1 != Some(golden.top1) {
                return Err(fail(format!(
                    "top-1 is class {top1:?}, the workstation's was {}",
                    golden.top1
                )));
            }
            self_test_max_delta = self_test_max_delta.max(delta);
        }
        Ok(LoadedModel {
            model,
            classes: manifest.classes.clone(),
            spec,
            form,
            bundle_sha256: hex::encode(bundle.digest),
            self_test_max_delta,
            self_tests_passed: bundle.golden.len(),
            ood,
            demo: false,
            manifest,
        })
    }
}
