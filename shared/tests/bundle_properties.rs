//! Property tests of the bundle parser, which reads bytes that arrive from
//! outside: random input, truncation and byte corruption never panic, and no
//! corruption of a signed bundle passes verification except in the one field
//! MCUboot leaves unsigned (the KEYHASH hint that selects the key).

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tumorxai_shared::bundle::{
    read_bundle, write_bundle, BundleContents, GoldenVector, Manifest, Outputs, Quantization,
    QuantizationForm, Training, MANIFEST_FORMAT,
};
use tumorxai_shared::PreprocessSpec;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn signed_bundle() -> Vec<u8> {
    let model = vec![3u8; 300];
    let image = vec![5u8; 40];
    let spec = PreprocessSpec::with_input_size(32);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        model_id: "prop-model".into(),
        version: "0.1.0".into(),
        created: "2026-11-27T00:00:00Z".into(),
        classes: vec![
            "Glioma T1".into(),
            "NORMAL T1".into(),
            "Schwannoma T2".into(),
        ],
        preprocess_spec_sha256: spec.hash_hex(),
        preprocess_spec: spec,
        input_size: 32,
        outputs: Outputs {
            logits: "logits".into(),
            features: "features".into(),
        },
        model_sha256: hex::encode(Sha256::digest(&model)),
        training: Training {
            checkpoint_sha256: "e".repeat(64),
            metrics: Default::default(),
        },
        quantization: Quantization {
            form: QuantizationForm::Fp32,
            calibration_images: None,
            calibration_method: None,
        },
        notice: Some("test".into()),
        ood: None,
        temperature: None,
    };
    let contents = BundleContents {
        manifest,
        model,
        golden: vec![GoldenVector {
            name: "g".into(),
            image_sha256: hex::encode(Sha256::digest(&image)),
            input_sha256: "d".repeat(64),
            logits: vec![0.0, 1.0, -1.0],
            top1: 1,
            logit_tolerance: 1e-3,
            expected_class: None,
        }],
        golden_images: vec![image],
        ood_statistics: None,
    };
    write_bundle(&contents, &key()).expect("valid contents")
}

/// The KEYHASH TLV (type, length, value): after header, payload, TLV info and
/// the SHA-256 TLV (4 + 32 bytes). Not signed: an edit there may go unseen
/// (e.g. its type turned into an unknown one), as in MCUboot itself.
fn keyhash_range(bundle: &[u8]) -> std::ops::Range<usize> {
    let image_size = u32::from_le_bytes(bundle[12..16].try_into().unwrap()) as usize;
    let start = 32 + image_size + 4 + 36;
    start..start + 4 + 32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_bundle(&bytes);
    }

    #[test]
    fn corrupted_bundles_never_verify(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let original = signed_bundle();
        let mut bytes = original.clone();
        let mut touched_signed_part = false;
        for (at, xor) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            touched_signed_part |= !keyhash_range(&original).contains(&i);
        }
        let verdict = read_bundle(&bytes).and_then(|b| b.verify(&key().verifying_key()));
        if bytes != original && touched_signed_part {
            prop_assert!(verdict.is_err());
        }
    }

    #[test]
    fn truncated_bundles_are_refused(cut in 1usize..500) {
        let original = signed_bundle();
        let len = original.len().saturating_sub(cut);
        prop_assert!(read_bundle(&original[..len]).is_err());
    }
}
