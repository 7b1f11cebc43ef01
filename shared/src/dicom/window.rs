//! DICOM grey-scale pipeline on decoded samples, pure arithmetic: stored
//! value → modality LUT (rescale slope/intercept) → VOI (window centre and
//! width, PS3.3 C.11.2.1.2) → [0, 1], with MONOCHROME1 inverted. Every step
//! is in f64 and rounds once to f32, so host and device produce the same
//! plane bit for bit.

use crate::error::PreprocessError;

/// How samples are laid out in the decoded pixel data (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleLayout {
    /// 8, 16 or 32.
    pub bits_allocated: u16,
    /// 1..=bits_allocated: the significant low bits.
    pub bits_stored: u16,
    /// Two's complement (Pixel Representation 1).
    pub signed: bool,
}

impl SampleLayout {
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if !matches!(self.bits_allocated, 8 | 16 | 32) {
            return Err(PreprocessError::UnsupportedDicom(format!(
                "Bits Allocated {} (supported: 8, 16, 32)",
                self.bits_allocated
            )));
        }
        if self.bits_stored == 0 || self.bits_stored > self.bits_allocated {
            return Err(PreprocessError::Corrupt(format!(
                "DICOM Bits Stored {} does not fit Bits Allocated {}",
                self.bits_stored, self.bits_allocated
            )));
        }
        Ok(())
    }

    fn bytes(&self) -> usize {
        usize::from(self.bits_allocated / 8)
    }
}

/// The stored values of `count` samples: the low `bits_stored` bits of each
/// little-endian sample, sign-extended when signed (the unused high bits may
/// hold anything, e.g. overlays, and are ignored).
pub fn stored_values(
    data: &[u8],
    layout: SampleLayout,
    count: usize,
) -> Result<Vec<i64>, PreprocessError> {
    layout.validate()?;
    let width = layout.bytes();
    let needed = count
        .checked_mul(width)
        .ok_or_else(|| PreprocessError::Corrupt("DICOM pixel count overflows".into()))?;
    let data = data.get(..needed).ok_or_else(|| {
        PreprocessError::Truncated(format!(
            "DICOM pixel data holds {} bytes, the image needs {needed}",
            data.len()
        ))
    })?;
    let bits = u32::from(layout.bits_stored);
    let mask: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    Ok(data
        .chunks_exact(width)
        .map(|chunk| {
            let mut raw: u64 = 0;
            for (i, byte) in chunk.iter().enumerate() {
                raw |= u64::from(*byte) << (8 * i);
            }
            let value = raw & mask;
            if layout.signed && bits > 0 && value >> (bits - 1) & 1 == 1 {
                // Two's complement in `bits` bits.
                (value as i64) - (1i64 << bits)
            } else {
                value as i64
            }
        })
        .collect())
}

/// VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// The value of interest window applied after the modality LUT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Voi {
    /// Window Center (0028,1050) / Width (0028,1051), the first pair.
    Window {
        center: f64,
        width: f64,
        function: VoiFunction,
    },
    /// No window in the file: the documented auto-window, from the minimum
    /// to the 99.5th percentile of the modality values (a few bright pixels,
    /// fat or vessels, must not darken the whole slice), linear.
    Auto,
}

/// Maps modality values to [0, 1].
pub fn apply_voi(values: &[f64], voi: Voi) -> Vec<f64> {
    match voi {
        Voi::Window {
            center,
            width,
            function,
        } => values
            .iter()
            .map(|&x| window(x, center, width, function))
            .collect(),
        Voi::Auto => {
            let (low, high) = auto_window(values);
            let span = high - low;
            values
                .iter()
                .map(|&x| {
                    if span > 0.0 {
                        ((x - low) / span).clamp(0.0, 1.0)
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    }
}

/// PS3.3 C.11.2.1.2.1 (LINEAR, output range [0, 1]), C.11.2.1.3.2
/// (LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID).
fn window(x: f64, c: f64, w: f64, function: VoiFunction) -> f64 {
    match function {
        VoiFunction::Linear => {
            // The standard requires width ≥ 1 for LINEAR; a width below 1
            // degenerates to a threshold at the centre.
            if w < 1.0 || !w.is_finite() {
                return if x > c - 0.5 { 1.0 } else { 0.0 };
            }
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                1.0
            } else {
                (x - (c - 0.5)) / (w - 1.0) + 0.5
            }
        }
        VoiFunction::LinearExact => {
            if w <= 0.0 || !w.is_finite() {
                return if x > c { 1.0 } else { 0.0 };
            }
            ((x - c) / w + 0.5).clamp(0.0, 1.0)
        }
        VoiFunction::Sigmoid => {
            if w <= 0.0 || !w.is_finite() {
                return if x > c { 1.0 } else { 0.0 };
            }
            1.0 / (1.0 + (-4.0 * (x - c) / w).exp())
        }
    }
}

/// Minimum and 99.5th percentile (nearest rank) of the values.
fn auto_window(values: &[f64]) -> (f64, f64) {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return (0.0, 0.0);
    }
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len() - 1;
    // Nearest rank: ceil(0.995 · n) − 1, within [0, n − 1].
    let rank = ((sorted.len() as f64 * 0.995).ceil() as usize)
        .saturating_sub(1)
        .min(last);
    (sorted[0], sorted[rank])
}

/// The whole chain for one frame: stored values → slope/intercept → VOI →
/// [0, 1] f32, inverted for MONOCHROME1 (where the minimum is white).
pub fn to_unit_plane(
    stored: &[i64],
    slope: f64,
    intercept: f64,
    voi: Voi,
    monochrome1: bool,
) -> Result<Vec<f32>, PreprocessError> {
    if !slope.is_finite() || !intercept.is_finite() || slope == 0.0 {
        return Err(PreprocessError::Corrupt(format!(
            "DICOM rescale slope {slope} / intercept {intercept} is not usable"
        )));
    }
    let modality: Vec<f64> = stored
        .iter()
        .map(|&v| v as f64 * slope + intercept)
        .collect();
    Ok(apply_voi(&modality, voi)
        .into_iter()
        .map(|y| {
            let y = if y.is_finite() {
                y.clamp(0.0, 1.0)
            } else {
                0.0
            };
            (if monochrome1 { 1.0 - y } else { y }) as f32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_mask_and_sign_extend() {
        // 12 bits stored in 16 allocated: 0x0FFF = 4095 unsigned, −1 signed;
        // 0xF800 keeps only its low 12 bits (0x800 = 2048, or −2048 signed).
        let data = [0xFF, 0x0F, 0x00, 0xF8, 0x01, 0x00];
        let unsigned = SampleLayout {
            bits_allocated: 16,
            bits_stored: 12,
            signed: false,
        };
        assert_eq!(
            stored_values(&data, unsigned, 3).unwrap(),
            vec![4095, 2048, 1]
        );
        let signed = SampleLayout {
            signed: true,
            ..unsigned
        };
        assert_eq!(stored_values(&data, signed, 3).unwrap(), vec![-1, -2048, 1]);
        let bytes = SampleLayout {
            bits_allocated: 8,
            bits_stored: 8,
            signed: true,
        };
        assert_eq!(
            stored_values(&[0x80, 0x7F], bytes, 2).unwrap(),
            vec![-128, 127]
        );
    }

    #[test]
    fn short_pixel_data_and_bad_layouts_are_refused() {
        let layout = SampleLayout {
            bits_allocated: 16,
            bits_stored: 16,
            signed: false,
        };
        assert!(matches!(
            stored_values(&[0, 0, 0], layout, 2),
            Err(PreprocessError::Truncated(_))
        ));
        for (allocated, stored) in [(12, 12), (16, 0), (8, 12)] {
            let bad = SampleLayout {
                bits_allocated: allocated,
                bits_stored: stored,
                signed: false,
            };
            assert!(stored_values(&[0; 8], bad, 1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn linear_window_matches_the_standard_by_hand() {
        // c = 100, w = 21: 0 at or below 89.5, 1 above 109.5, linear between:
        // x = 99.5 → (99.5 − 99.5)/20 + 0.5 = 0.5; x = 104.5 → 0.75.
        let voi = Voi::Window {
            center: 100.0,
            width: 21.0,
            function: VoiFunction::Linear,
        };
        let y = apply_voi(&[89.5, 90.0, 99.5, 104.5, 109.5, 110.0], voi);
        let expect = [0.0, 0.025, 0.5, 0.75, 1.0, 1.0];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{y:?}");
        }
    }

    #[test]
    fn linear_exact_and_sigmoid_by_hand() {
        let exact = Voi::Window {
            center: 0.0,
            width: 10.0,
            function: VoiFunction::LinearExact,
        };
        assert_eq!(
            apply_voi(&[-5.0, 0.0, 2.5, 6.0], exact),
            vec![0.0, 0.5, 0.75, 1.0]
        );
        let sigmoid = Voi::Window {
            center: 0.0,
            width: 4.0,
            function: VoiFunction::Sigmoid,
        };
        // 1 / (1 + e^(−4·1/4)) = 1 / (1 + e⁻¹) = 0.7310585786.
        let y = apply_voi(&[0.0, 1.0], sigmoid);
        assert!((y[0] - 0.5).abs() < 1e-12 && (y[1] - 0.731_058_578_6).abs() < 1e-9);
    }

    #[test]
    fn rescale_then_window_then_monochrome1() {
        // CT-like: stored 1024 with slope 1, intercept −1024 → 0 HU; a window
        // c 40 w 81 (LINEAR): 0 HU → (0 − 39.5)/80 + 0.5 = 0.00625.
        let voi = Voi::Window {
            center: 40.0,
            width: 81.0,
            function: VoiFunction::Linear,
        };
        let y = to_unit_plane(&[1024, 2048], 1.0, -1024.0, voi, false).unwrap();
        assert!((y[0] - 0.00625).abs() < 1e-7 && y[1] == 1.0, "{y:?}");
        let inverted = to_unit_plane(&[1024, 2048], 1.0, -1024.0, voi, true).unwrap();
        assert!((inverted[0] - 0.99375).abs() < 1e-6 && inverted[1] == 0.0);
        assert!(to_unit_plane(&[1], f64::NAN, 0.0, voi, false).is_err());
    }

    #[test]
    fn auto_window_spans_minimum_to_the_995th_percentile() {
        // 0..=999 and one hot pixel: nearest rank ⌈0.995·1001⌉ = ⌈995.995⌉ =
        // 996th value (index 995) = 995; the hot pixel saturates instead of
        // compressing the rest.
        let mut values: Vec<f64> = (0..1000).map(f64::from).collect();
        values.push(1e6);
        let y = apply_voi(&values, Voi::Auto);
        assert_eq!(y[0], 0.0);
        assert!((y[498] - 498.0 / 995.0).abs() < 1e-12);
        assert_eq!(y[1000], 1.0);
        assert_eq!(apply_voi(&[7.0, 7.0], Voi::Auto), vec![0.0, 0.0]);
    }
}
