//! Fuzz target: a model bundle arrives from outside (serial line, USB stick),
//! so parsing and verifying arbitrary bytes must never panic, overflow or
//! allocate without bound. Run with
//! `cargo +nightly fuzz run read_bundle -- -max_total_time=60` in `shared/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tumorxai_shared::bundle::read_bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = read_bundle(data) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let _ = bundle.verify(&key);
        let _ = bundle.manifest.image_version();
    }
});
