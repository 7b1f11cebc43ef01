//! Property tests: any valid image of any size and content gives a finite
//! tensor of the spec's shape, and decoding random bytes (or checking a damaged
//! JPEG's integrity) never panics.

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat};
use proptest::prelude::*;
use tumorxai_shared::{decode_luminance, preprocess_bytes, DecodeLimits, PreprocessSpec};

fn png_bytes(w: u32, h: u32, pixels: Vec<u8>) -> Vec<u8> {
    let img = ImageBuffer::from_raw(w, h, pixels).expect("buffer of the right length");
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageLuma8(img)
        .write_to(&mut out, ImageFormat::Png)
        .expect("png encode");
    out.into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn output_is_finite_and_shaped(
        (w, h, pixels) in (1u32..40, 1u32..40).prop_flat_map(|(w, h)| {
            (Just(w), Just(h), proptest::collection::vec(any::<u8>(), (w * h) as usize))
        }),
        size in 1u32..24,
        crop in any::<bool>(),
    ) {
        let mut spec = PreprocessSpec::with_input_size(size);
        if !crop { spec.crop = None; }
        let out = preprocess_bytes(&png_bytes(w, h, pixels), &spec, DecodeLimits::default()).unwrap();
        prop_assert_eq!(out.shape(), [1, 3, size as usize, size as usize]);
        prop_assert_eq!(out.data.len(), 3 * (size * size) as usize);
        prop_assert!(out.data.iter().all(|v| v.is_finite()));
        // Values stay within the normalised range of [0, 1] inputs.
        let lo = (0.0 - 0.485) / 0.229 - 1e-4;
        let hi = (1.0 - 0.406) / 0.225 + 1e-4;
        prop_assert!(out.data.iter().all(|v| *v >= lo && *v <= hi));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_luminance(&bytes, DecodeLimits::default());
    }

    #[test]
    fn corrupted_png_never_panics(flip in 0usize..200, xor in 1u8..=255) {
        let mut bytes = png_bytes(16, 16, (0..256).map(|i| i as u8).collect());
        let i = flip % bytes.len();
        bytes[i] ^= xor;
        let _ = preprocess_bytes(&bytes, &PreprocessSpec::with_input_size(8), DecodeLimits::default());
    }

    /// The integrity walk reads headers and entropy data of hostile JPEGs:
    /// any damage to a restart-marker file (headers included) gives an answer,
    /// never a panic or a hang.
    #[test]
    fn damaged_jpeg_integrity_check_never_panics(
        at in 0usize..12_000,
        replacement in proptest::collection::vec(any::<u8>(), 1..24),
    ) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jpeg/rgb-420-restart-blocks.jpg");
        let mut bytes = std::fs::read(path).unwrap();
        let at = at % bytes.len();
        let end = (at + replacement.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&replacement[..end - at]);
        if let Ok(lum) = decode_luminance(&bytes, DecodeLimits::default()) {
            let _ = tumorxai_shared::integrity::damage(&bytes, &lum);
        }
    }
}
