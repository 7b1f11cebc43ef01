//! Tests of manifest and golden-vector validation, with hand-computed
//! limits; `sample_manifest` also serves the bundle tests.

use super::*;

pub(crate) fn sample_manifest() -> Manifest {
    let spec = PreprocessSpec::with_input_size(64);
    Manifest {
        format: MANIFEST_FORMAT,
        model_id: "tumorxai-demo".to_string(),
        version: "1.0.0".to_string(),
        created: "2026-11-27T04:00:00Z".to_string(),
        classes: vec!["Glioma T1".to_string(), "NORMAL T2".to_string()],
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
        temperature: None,
    }
}

/// A golden vector with placeholder hashes and no label.
fn golden(logits: Vec<f32>, top1: usize, logit_tolerance: f32) -> GoldenVector {
    GoldenVector {
        name: "g".into(),
        image_sha256: "a".repeat(64),
        input_sha256: "b".repeat(64),
        logits,
        top1,
        logit_tolerance,
        expected_class: None,
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
        ("repeated", Box::new(|m| m.classes[1] = "Glioma T1".into())),
        ("no tumour family", Box::new(|m| m.classes[1] = "a".into())),
        ("temperature", Box::new(|m| m.temperature = Some(f32::NAN))),
        ("temperature", Box::new(|m| m.temperature = Some(0.0))),
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
                    held_out_images: 0,
                    gaussians: None,
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
    let good = golden(vec![0.5, -1.0], 0, 1e-4);
    m.validate_golden(std::slice::from_ref(&good)).unwrap();
    let mut short = good.clone();
    short.logits.pop();
    assert!(m.validate_golden(&[short]).is_err());
    let mut top = good.clone();
    top.top1 = 2;
    assert!(m.validate_golden(&[top]).is_err());
    let mut wrong_top = good.clone();
    wrong_top.top1 = 1;
    assert!(
        m.validate_golden(&[wrong_top]).is_err(),
        "top1 must be the argmax"
    );
    let mut nan = good.clone();
    nan.logits[0] = f32::NAN;
    assert!(m.validate_golden(&[nan]).is_err());
    let mut nan_tolerance = good;
    nan_tolerance.logit_tolerance = f32::NAN;
    assert!(m.validate_golden(&[nan_tolerance]).is_err());
}

#[test]
fn a_golden_vector_s_label_must_be_what_its_top1_is_called() {
    let m = sample_manifest();
    let mut g = golden(vec![0.5, -1.0], 0, 1e-4);
    g.expected_class = Some("Glioma T1".into());
    m.validate_golden(std::slice::from_ref(&g)).unwrap();
    g.expected_class = Some("NORMAL T2".into());
    let err = m.validate_golden(&[g]).unwrap_err().to_string();
    assert!(
        err.contains("shows \"NORMAL T2\"") && err.contains("\"Glioma T1\""),
        "{err}"
    );
}

#[test]
fn only_the_contract_class_list_passes_the_contract_check() {
    // The sample's two-class list is a valid manifest but not the contract.
    let mut m = sample_manifest();
    assert!(m.validate_class_contract().is_err());
    m.classes = crate::CLASS_NAMES.iter().map(|c| c.to_string()).collect();
    m.validate_class_contract().unwrap();
    m.classes.swap(6, 7);
    let err = m.validate_class_contract().unwrap_err().to_string();
    assert!(err.contains("logit 6 is \"NORMAL T2\""), "{err}");
}

#[test]
fn a_bundle_without_golden_vectors_is_refused() {
    let err = sample_manifest().validate_golden(&[]).unwrap_err();
    assert!(err.to_string().contains("0 golden vectors"), "{err}");
}

#[test]
fn the_tolerance_has_a_ceiling_from_the_logit_scale() {
    let m = sample_manifest();
    // Scale max(1, 8) = 8 → ceiling 0.05 × 8 = 0.4 (hand-computed).
    let mut g = golden(vec![8.0, -3.0], 0, 0.4);
    assert_eq!(max_logit_tolerance(&g.logits), 0.4);
    m.validate_golden(std::slice::from_ref(&g)).unwrap();
    g.logit_tolerance = 0.41;
    let err = m.validate_golden(std::slice::from_ref(&g)).unwrap_err();
    assert!(err.to_string().contains("ceiling"), "{err}");
    // Small logits: the scale is at least 1 → ceiling 0.05.
    assert_eq!(max_logit_tolerance(&[0.1, -0.2]), 0.05);
}

#[test]
fn an_undecided_golden_image_is_refused() {
    // Margin 0.08 ≤ 2 × 0.05: a tolerated drift could flip the top-1.
    let g = golden(vec![1.0, 0.92], 0, 0.05);
    let err = sample_manifest().validate_golden(&[g]).unwrap_err();
    assert!(err.to_string().contains("margin"), "{err}");
}

fn mahalanobis_calibration(dim: usize) -> OodCalibration {
    OodCalibration {
        method: "mahalanobis-normalised".into(),
        centroids: vec![vec![1.0; dim]; 2],
        threshold: 150.0,
        percentile: 0.995,
        training_images: 10,
        held_out_images: 5,
        gaussians: Some(OodGaussians {
            classes: 2,
            dim: dim as u32,
            sha256: "a".repeat(64),
        }),
    }
}

#[test]
fn ood_methods_and_their_statistics() {
    let mut m = sample_manifest();
    m.ood = Some(mahalanobis_calibration(3));
    m.validate().unwrap();
    // (2 + 3) · 3 floats of 4 bytes.
    assert_eq!(
        m.ood
            .as_ref()
            .unwrap()
            .gaussians
            .as_ref()
            .unwrap()
            .section_len(),
        Some(60)
    );
    type Breakage = Box<dyn Fn(&mut OodCalibration)>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("no statistics", Box::new(|o| o.gaussians = None)),
        (
            "cosine with statistics",
            Box::new(|o| o.method = "centroid-cosine".into()),
        ),
        ("unknown method", Box::new(|o| o.method = "knn".into())),
        ("negative threshold", Box::new(|o| o.threshold = -1.0)),
        ("NaN threshold", Box::new(|o| o.threshold = f32::NAN)),
        (
            "class count",
            Box::new(|o| o.gaussians.as_mut().unwrap().classes = 3),
        ),
        ("dim", Box::new(|o| o.gaussians.as_mut().unwrap().dim = 4)),
        (
            "hash",
            Box::new(|o| o.gaussians.as_mut().unwrap().sha256 = "xyz".into()),
        ),
    ];
    for (what, breaks) in cases {
        let mut o = mahalanobis_calibration(3);
        breaks(&mut o);
        let mut m = sample_manifest();
        m.ood = Some(o);
        assert!(m.validate().is_err(), "{what} must be refused");
    }
    // 5,000 dimensions: 100 MB of statistics, over the 64 MiB section bound.
    let mut m = sample_manifest();
    m.ood = Some(mahalanobis_calibration(5000));
    assert!(m.validate().is_err());
}
