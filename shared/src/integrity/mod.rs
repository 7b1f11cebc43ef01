//! Integrity of an input's encoded data, beyond "it decodes". The JPEG
//! decoder behind the contract is lenient, as browsers are: damaged entropy
//! data (a bad Huffman code, a marker inside the scan, a premature end) is
//! painted as grey or garbage texture instead of failing. A model reads a
//! confident class out of such texture, so the damage is found here and the
//! device sends the slice to REVIEW:
//! - the same file decoded once more in the decoder's strict mode (catches
//!   truncation and misplaced markers);
//! - the entropy data walked code by code against what the headers promise
//!   (`jpeg_entropy`): a zeroed or overwritten run throws the codes out of
//!   step, which shows as invalid codes, too many coefficients, misplaced
//!   restart markers, or data that ends early or goes on after the last
//!   block, even where the repainted picture looks plausible;
//! - the signatures corrupt entropy data leaves in the decoded picture:
//!   image rows that jump at an 8-pixel block row (the rest of the scan
//!   decoded out of step), and seams along the 8×8 block grid (DC drift).
//!   Thresholds sit well above clean slices (see the constants).
//!
//! The decoded pixels themselves come from the lenient path only, so the
//! preprocessing contract is unchanged.

mod jpeg_entropy;
mod jpeg_segments;

use zune_core::bytestream::ZCursor;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::decode::Luminance;

/// Largest row jump (mean |Δ| across a block-row boundary over the image's
/// mean row-to-row |Δ|) of a clean slice: 5.2 on 323 clean phantom and
/// sample slices; damaged ones reach 8–44.
const MAX_ROW_JUMP: f32 = 8.0;
/// Largest blockiness (mean |Δ| across 8×8 block seams over mean |Δ| inside
/// blocks) of a clean slice: 1.35 on the same 323 (JPEG q70–95); damaged
/// ones reach 1.5–2.5.
const MAX_BLOCKINESS: f32 = 1.5;

/// What is wrong with the encoded data of `bytes` (decoded leniently into
/// `lum`), in words; `None` when nothing is known to be (formats other than
/// JPEG decode strictly already and refuse damage with an error).
///
/// Call it on bytes whose dimensions were already bounded (after
/// [`crate::decode_luminance`] accepted them): it decodes the image again.
pub fn damage(bytes: &[u8], lum: &Luminance) -> Option<String> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    if let Err(e) = decoder.decode() {
        return Some(format!("damaged JPEG data ({e})"));
    }
    if let Err(why) = jpeg_entropy::walk(bytes) {
        return Some(format!("damaged JPEG data ({why})"));
    }
    let (jump, row) = row_jump(lum);
    if jump > MAX_ROW_JUMP {
        return Some(format!(
            "damaged JPEG data (the picture jumps at row {row}: {jump:.1}× the usual row change)"
        ));
    }
    let seams = blockiness(lum);
    if seams > MAX_BLOCKINESS {
        return Some(format!(
            "damaged JPEG data (8×8 block seams {seams:.2}× the texture inside blocks)"
        ));
    }
    None
}

/// Mean |Δ| between two rows.
fn row_change(upper: &[f32], lower: &[f32]) -> f32 {
    let n = upper.len().max(1) as f32;
    upper
        .iter()
        .zip(lower)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / n
}

/// The largest change across a block-row boundary (rows 8k−1 → 8k) over the
/// mean row-to-row change, and where it is.
fn row_jump(lum: &Luminance) -> (f32, usize) {
    let w = lum.width as usize;
    if w == 0 {
        return (0.0, 0);
    }
    let rows: Vec<&[f32]> = lum.data.chunks_exact(w).collect();
    let changes: Vec<f32> = rows.windows(2).map(|p| row_change(p[0], p[1])).collect();
    if changes.is_empty() {
        return (0.0, 0);
    }
    let mean = changes.iter().sum::<f32>() / changes.len() as f32;
    // changes[i] is between rows i and i + 1: a boundary when i + 1 ≡ 0 mod 8.
    changes
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % 8 == 0)
        .map(|(i, &c)| (c / (mean + 1e-6), i + 1))
        .fold((0.0, 0), |best, x| if x.0 > best.0 { x } else { best })
}

/// Mean |Δ| of neighbours across 8×8 block seams over the mean inside blocks.
fn blockiness(lum: &Luminance) -> f32 {
    let w = lum.width as usize;
    if w == 0 {
        return 0.0;
    }
    let (mut seam, mut seam_n, mut inner, mut inner_n) = (0f64, 0usize, 0f64, 0usize);
    let mut add = |boundary: bool, d: f32| {
        if boundary {
            seam += f64::from(d);
            seam_n += 1;
        } else {
            inner += f64::from(d);
            inner_n += 1;
        }
    };
    let rows: Vec<&[f32]> = lum.data.chunks_exact(w).collect();
    for row in &rows {
        for (x, pair) in row.windows(2).enumerate() {
            add((x + 1) % 8 == 0, (pair[1] - pair[0]).abs());
        }
    }
    for (y, pair) in rows.windows(2).enumerate() {
        for (a, b) in pair[0].iter().zip(pair[1]) {
            add((y + 1) % 8 == 0, (b - a).abs());
        }
    }
    if seam_n == 0 || inner_n == 0 {
        return 0.0;
    }
    ((seam / seam_n as f64) / (inner / inner_n as f64 + 1e-9)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean baseline JPEG of a smooth gradient (encoded by the image crate).
    fn jpeg() -> Vec<u8> {
        let img = image::GrayImage::from_fn(64, 64, |x, y| image::Luma([(x * 3 + y) as u8]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// Offset of the first byte after the SOS segment (the entropy data).
    fn scan_start(bytes: &[u8]) -> usize {
        let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let len = usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]));
        sos + 2 + len
    }

    fn decoded(bytes: &[u8]) -> Luminance {
        crate::decode_luminance(bytes, crate::DecodeLimits::default()).unwrap()
    }

    #[test]
    fn a_clean_jpeg_has_no_damage() {
        let bytes = jpeg();
        assert_eq!(damage(&bytes, &decoded(&bytes)), None);
    }

    #[test]
    fn a_truncated_scan_is_reported_though_it_still_decodes() {
        let bytes = jpeg();
        let cut = &bytes[..scan_start(&bytes) + (bytes.len() - scan_start(&bytes)) / 2];
        let lum = decoded(cut);
        let why = damage(cut, &lum).expect("damage must be found");
        assert!(why.contains("damaged JPEG"), "{why}");
    }

    #[test]
    fn block_artefacts_by_hand() {
        // 16×16: rows 0–7 at 0.1, rows 8–15 at 0.9 → one jump at row 8,
        // no change elsewhere: the jump dominates the mean row change.
        let data: Vec<f32> = (0..16 * 16)
            .map(|i| if i / 16 < 8 { 0.1 } else { 0.9 })
            .collect();
        let lum = Luminance::new(16, 16, data);
        let (jump, row) = row_jump(&lum);
        assert_eq!(row, 8);
        // Mean change = 0.8 / 15 rows; the jump is 0.8 → ratio 15.
        assert!((jump - 15.0).abs() < 1e-3, "{jump}");
        // A smooth ramp has no seams: ratio 1.
        let ramp: Vec<f32> = (0..16 * 16).map(|i| (i % 16) as f32 / 16.0).collect();
        assert!((blockiness(&Luminance::new(16, 16, ramp)) - 1.0).abs() < 1e-3);
        // Flat 8×8 tiles of different levels: all change sits on seams.
        let tiles: Vec<f32> = (0..16 * 16)
            .map(|i| {
                if ((i % 16) / 8 + (i / 16) / 8) % 2 == 0 {
                    0.2
                } else {
                    0.7
                }
            })
            .collect();
        assert!(blockiness(&Luminance::new(16, 16, tiles)) > 1000.0);
    }

    #[test]
    fn other_formats_and_garbage_are_left_to_the_decoder() {
        let lum = Luminance::new(1, 1, vec![0.5]);
        assert_eq!(damage(b"\x89PNG\r\n\x1a\n", &lum), None);
        assert_eq!(damage(b"", &lum), None);
        // A JPEG signature followed by nothing is damage, not a panic.
        assert!(damage(&[0xFF, 0xD8, 0xFF], &lum).is_some());
    }
}
