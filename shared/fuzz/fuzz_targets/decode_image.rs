//! Fuzz target: slices arrive from outside (scanner, gateway, USB stick), so
//! the whole device-side decoding path — format sniffing, the dimension and
//! allocation limits, the lenient decode, the strict integrity check and
//! the preprocessing to a model input — must never panic, overflow or
//! allocate without bound on arbitrary bytes. Run in `shared/` with
//! `cargo +nightly fuzz run decode_image -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tumorxai_shared::integrity::damage;
use tumorxai_shared::{decode_luminance, input_geometry, input_plane, normalize_plane};
use tumorxai_shared::{DecodeLimits, PreprocessSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(lum) = decode_luminance(data, DecodeLimits::slice()) else {
        return;
    };
    let _ = damage(data, &lum);
    let _ = tumorxai_shared::plausibility::implausible(&lum);
    let spec = PreprocessSpec::with_input_size(32);
    let _ = input_geometry(&lum, &spec);
    if let Ok(plane) = input_plane(&lum, &spec) {
        let input = normalize_plane(&plane, &spec);
        assert_eq!(input.data.len(), 3 * 32 * 32);
    }
});
