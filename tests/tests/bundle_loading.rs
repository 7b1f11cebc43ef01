//! The device's bundle loader against bundles written with the shared format
//! around a real export: what it accepts, and each refusal with its reason
//! (foreign signer, spec it cannot honour, golden self-test failures) — and
//! hostile-but-signed bundles: NaN outputs, no golden vectors, a class count
//! or feature length that does not fit the manifest, outputs under other
//! names. Each is refused with a typed error, never loaded.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tch::nn;
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::{tensor_sha256, LoadError, LoadedModel};
use tumorxai_host::export::onnx;
use tumorxai_host::model::{resnet, Depth, ResNetConfig};
use tumorxai_shared::bundle::{
    mcuboot, payload, write_bundle, BundleContents, GoldenVector, Manifest, OodCalibration,
    OodGaussians, Outputs, Quantization, QuantizationForm, Training, MANIFEST_FORMAT,
};
use tumorxai_shared::logits::argmax;
use tumorxai_shared::ood::ClassGaussians;
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessSpec, CLASS_NAMES};

const SIZE: u32 = 32;

fn sample() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/samples/01-glioma-t1c.jpg"
    );
    std::fs::read(path).unwrap()
}

const CONFIG: ResNetConfig = ResNetConfig {
    depth: Depth::ResNet18,
    width: 0.125,
};

/// A random ResNet-18 ×0.125 with `classes` outputs: its ONNX export and
/// the tch logits for the sample scan.
fn exported(classes: i64, poison_with_nan: bool) -> (Vec<u8>, Vec<f32>) {
    let (vs, net) = crate::seeded::seeded(11, || {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = resnet(&vs.root(), CONFIG, Some(classes));
        (vs, net)
    });
    if poison_with_nan {
        tch::no_grad(|| {
            for (name, mut tensor) in vs.variables() {
                if name.starts_with("fc.") {
                    let _ = tensor.fill_(f64::NAN);
                }
            }
        });
    }
    let spec = PreprocessSpec::with_input_size(SIZE);
    let model = onnx::export(&vs, CONFIG, SIZE, classes as usize, &[]).unwrap();
    let input = preprocess_bytes(&sample(), &spec, DecodeLimits::default()).unwrap();
    let x = tch::Tensor::from_slice(&input.data).reshape([1, 3, SIZE as i64, SIZE as i64]);
    let (logits, _) = onnx::reference_outputs(&net, &x);
    (model, Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap())
}

/// A signed fp32 bundle of a random ResNet-18 ×0.125, with one golden vector
/// whose expected logits come from tch.
fn contents() -> BundleContents {
    let spec = PreprocessSpec::with_input_size(SIZE);
    let classes: Vec<String> = CLASS_NAMES.iter().map(|c| c.to_string()).collect();
    let (model, logits) = exported(17, false);
    let image = sample();
    let input = preprocess_bytes(&image, &spec, DecodeLimits::default()).unwrap();
    BundleContents {
        manifest: Manifest {
            format: MANIFEST_FORMAT,
            model_id: "loader-test".into(),
            version: "2.1.0".into(),
            created: "2026-11-27T00:00:00Z".into(),
            classes,
            preprocess_spec_sha256: spec.hash_hex(),
            preprocess_spec: spec,
            input_size: SIZE,
            outputs: Outputs {
                logits: "logits".into(),
                features: "features".into(),
            },
            model_sha256: hex::encode(Sha256::digest(&model)),
            training: Training {
                checkpoint_sha256: "a".repeat(64),
                metrics: Default::default(),
            },
            quantization: Quantization {
                form: QuantizationForm::Fp32,
                calibration_images: None,
                calibration_method: None,
            },
            notice: None,
            ood: None,
            temperature: None,
        },
        model,
        golden: vec![GoldenVector {
            name: "glioma".into(),
            image_sha256: hex::encode(Sha256::digest(&image)),
            input_sha256: tensor_sha256(&input.data),
            top1: argmax(&logits).unwrap(),
            logits,
            logit_tolerance: 1e-4,
            expected_class: None,
        }],
        golden_images: vec![image],
        ood_statistics: None,
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn load(c: &BundleContents, signer: u8, trusted: u8) -> Result<LoadedModel, LoadError> {
    let bytes = write_bundle(c, &key(signer)).unwrap();
    LoadedModel::from_bundle(
        &bytes,
        &[key(trusted).verifying_key()],
        ExecutionForm::auto(),
    )
}

/// Signed bundle bytes of `c` without golden vectors, assembled by hand:
/// `write_bundle` validates, a hostile signer need not.
fn signed_without_validation(c: &BundleContents) -> Vec<u8> {
    let manifest = serde_json::to_vec(&c.manifest).unwrap();
    let payload = payload::encode_sections(&payload::Sections {
        manifest: &manifest,
        model: &c.model,
        golden: None,
        golden_images: vec![],
        ood_statistics: None,
    })
    .unwrap();
    mcuboot::sign_image(&payload, "2.1.0".parse().unwrap(), &key(1)).unwrap()
}

/// Contents whose model is replaced (the manifest's model hash follows).
fn with_model(mut c: BundleContents, model: Vec<u8>) -> BundleContents {
    c.manifest.model_sha256 = hex::encode(Sha256::digest(&model));
    c.model = model;
    c
}

#[test]
fn a_good_bundle_loads_with_its_manifest() {
    let c = contents();
    let loaded = load(&c, 1, 1).unwrap();
    assert_eq!(loaded.classes.len(), 17);
    assert_eq!(loaded.spec, PreprocessSpec::with_input_size(SIZE));
    assert_eq!(loaded.manifest.version, "2.1.0");
    assert_eq!(loaded.form, ExecutionForm::AsShipped);
    assert!(loaded.self_test_max_delta <= 1e-4);
}

#[test]
fn a_foreign_signer_is_refused() {
    let err = load(&contents(), 2, 1).err().expect("must refuse");
    assert!(err.to_string().contains("not in the trust store"), "{err}");
}

#[test]
fn a_spec_this_build_cannot_honour_is_refused() {
    let mut c = contents();
    c.manifest.preprocess_spec.version = 99;
    c.manifest.preprocess_spec_sha256 = c.manifest.preprocess_spec.hash_hex();
    // The writer validates too, so assemble the signed bytes by hand.
    assert!(write_bundle(&c, &key(1)).is_err());
    let bytes = signed_without_validation(&c);
    let err = LoadedModel::from_bundle(&bytes, &[key(1).verifying_key()], ExecutionForm::auto())
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("spec version 99"), "{err}");
}

#[test]
fn golden_self_test_failures_are_refused() {
    let mut c = contents();
    c.golden[0].logits[3] += 0.01;
    let err = load(&c, 1, 1).err().expect("wrong logits must fail");
    assert!(
        matches!(&err, LoadError::SelfTest { why, .. } if why.contains("logits differ")),
        "{err}"
    );
    let mut c = contents();
    c.golden[0].input_sha256 = "0".repeat(64);
    let err = load(&c, 1, 1).err().expect("wrong input hash must fail");
    assert!(err.to_string().contains("different tensor"), "{err}");
}

#[test]
fn a_model_with_nan_outputs_is_refused() {
    // A signed bundle whose classifier weights are NaN, with the golden
    // vector of a healthy model: `fold(0, f32::max)` used to drop every NaN
    // difference, so this loaded and flagged slices.
    let (poisoned, nan_logits) = exported(17, true);
    assert!(nan_logits.iter().all(|v| v.is_nan()), "the poison took");
    let c = with_model(contents(), poisoned);
    let err = load(&c, 1, 1).err().expect("NaN outputs must be refused");
    assert!(
        matches!(&err, LoadError::SelfTest { why, .. } if why.contains("non-finite")),
        "{err}"
    );
}

#[test]
fn a_bundle_without_golden_vectors_is_refused() {
    let c = contents();
    let bytes = signed_without_validation(&c);
    let err = LoadedModel::from_bundle(&bytes, &[key(1).verifying_key()], ExecutionForm::auto())
        .err()
        .expect("a bundle that cannot test itself must be refused");
    assert!(err.to_string().contains("0 golden vectors"), "{err}");
}

#[test]
fn a_class_count_the_model_does_not_have_is_refused() {
    // The manifest and its golden vector say 17 classes; the model gives 5.
    let (five_class_model, _) = exported(5, false);
    let c = with_model(contents(), five_class_model);
    let err = load(&c, 1, 1).err().expect("must refuse");
    assert!(
        matches!(&err, LoadError::Inconsistent(why) if why.contains("5 logits for 17 classes")),
        "{err}"
    );
}

#[test]
fn outputs_are_found_by_the_manifest_names() {
    // Swapped names: the "logits" would be the feature map.
    let mut c = contents();
    c.manifest.outputs = Outputs {
        logits: "features".into(),
        features: "logits".into(),
    };
    let err = load(&c, 1, 1)
        .err()
        .expect("swapped outputs must be refused");
    assert!(err.to_string().contains("ranks 4 and 2"), "{err}");
    // A name the model does not have.
    let mut c = contents();
    c.manifest.outputs.logits = "probabilities".into();
    let err = load(&c, 1, 1)
        .err()
        .expect("unknown output must be refused");
    assert!(
        err.to_string()
            .contains("no output named \"probabilities\""),
        "{err}"
    );
}

#[test]
fn ood_centroids_of_another_length_are_refused() {
    let mut c = contents();
    c.manifest.ood = Some(OodCalibration {
        method: "centroid-cosine".into(),
        centroids: vec![vec![1.0, 0.0, 0.0]; 17],
        threshold: 0.3,
        percentile: 0.995,
        training_images: 100,
        held_out_images: 0,
        gaussians: None,
    });
    let err = load(&c, 1, 1).err().expect("must refuse");
    assert!(
        matches!(&err, LoadError::Inconsistent(why) if why.contains("statistics have 3")),
        "{err}"
    );
}

#[test]
fn mahalanobis_statistics_of_another_length_are_refused() {
    let mut c = contents();
    let gaussians = ClassGaussians {
        means: vec![vec![0.5; 3]; 17],
        precision: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    };
    let stats = gaussians.to_le_bytes();
    c.manifest.ood = Some(OodCalibration {
        method: "mahalanobis-normalised".into(),
        centroids: vec![vec![1.0, 0.0, 0.0]; 17],
        threshold: 100.0,
        percentile: 0.995,
        training_images: 100,
        held_out_images: 50,
        gaussians: Some(OodGaussians {
            classes: 17,
            dim: 3,
            sha256: hex::encode(Sha256::digest(&stats)),
        }),
    });
    c.ood_statistics = Some(stats);
    let err = load(&c, 1, 1).err().expect("must refuse");
    assert!(
        matches!(&err, LoadError::Inconsistent(why) if why.contains("statistics have 3")),
        "{err}"
    );
}

#[test]
fn a_self_test_with_the_wrong_top1_is_refused() {
    // Logits within tolerance cannot change the top-1 (the margin rule), so
    // forge a golden vector whose logits rank another class first: both the
    // logit check and the top-1 check stand in the way.
    let mut c = contents();
    let top = c.golden[0].top1;
    let other = (top + 1) % 17;
    c.golden[0].logits[other] = c.golden[0].logits[top] + 1.0;
    c.golden[0].top1 = other;
    let err = load(&c, 1, 1).err().expect("must refuse");
    assert!(matches!(err, LoadError::SelfTest { .. }), "{err}");
}

#[test]
fn a_golden_label_must_match_the_name_at_its_top1() {
    let mut c = contents();
    let top = c.golden[0].top1;
    c.golden[0].expected_class = Some(CLASS_NAMES[top].to_string());
    load(&c, 1, 1).expect("the label names the top-1");
    c.golden[0].expected_class = Some(CLASS_NAMES[(top + 1) % 17].to_string());
    let err = write_bundle(&c, &key(1)).expect_err("refused where it is made");
    assert!(
        err.to_string()
            .contains("but the class list names its top-1"),
        "{err}"
    );
}

#[test]
fn a_permuted_class_list_is_refused_even_when_signed() {
    let mut c = contents();
    c.manifest.classes.swap(1, 4);
    let err = load(&c, 1, 1).err().expect("must refuse");
    assert!(
        err.to_string().contains("class list is not the contract's"),
        "{err}"
    );
}
