//! Fuzz target: a model bundle arrives from outside (serial line, USB stick),
//! so parsing and verifying arbitrary bytes must never panic, overflow or
//! allocate without bound. The outer SHA-256 check rejects almost every
//! mutation, so the inner parsers (payload sections, manifest, golden
//! vectors) are also fed the raw input directly. Run in `shared/` with
//! `cargo +nightly fuzz run read_bundle -- -max_total_time=60`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tumorxai_shared::bundle::payload::decode_sections;
use tumorxai_shared::bundle::{read_bundle, GoldenVector, Manifest};
use tumorxai_shared::ood::OodScorer;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = read_bundle(data) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let _ = bundle.verify(&key);
    }
    if let Ok(sections) = decode_sections(data) {
        if let Ok(manifest) = serde_json::from_slice::<Manifest>(sections.manifest) {
            if manifest.validate().is_ok() {
                // The out-of-distribution statistics section, as a device
                // turns it into its scorer and scores an embedding.
                if let Some(ood) = &manifest.ood {
                    if let Ok(scorer) = OodScorer::from_calibration(ood, sections.ood_statistics) {
                        let _ = scorer.score(&vec![0.5; scorer.dim().min(1 << 12)]);
                    }
                }
            }
            if let Some(golden) = sections.golden {
                if let Ok(golden) = serde_json::from_slice::<Vec<GoldenVector>>(golden) {
                    let _ = manifest.validate_golden(&golden);
                }
            }
        }
    }
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let _ = manifest.validate();
        let _ = manifest.image_version();
    }
});
