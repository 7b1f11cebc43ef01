//! The simulated scanner of one study: field strength, the T1- and
//! T2-weighted protocols (`sequence.rs`), slice thickness, acquisition
//! matrix, phase-encoding direction, signal-to-noise ratio, receive coil and
//! how its flowing blood behaves; and the export of a reconstructed series
//! to an 8-bit picture through a display window, as a PACS viewer or a
//! DICOM-to-JPEG conversion does.
//!
//! Ranges are those of routine clinical brain protocols (slice 3–6 mm,
//! matrix 128–320 over a 200–250 mm field of view, white-matter SNR about
//! 12–35 at 1.5 T and 20–60 at 3 T; SNR ∝ voxel volume, Edelstein et al.,
//! "The intrinsic signal-to-noise ratio in NMR imaging", MRM 3 (1986)
//! 604–618). Flow: spin echoes lose the signal of blood that leaves the
//! slice between excitation and refocusing (flow void); gradient echoes gain
//! from fresh, unsaturated spins flowing in (Bradley & Waluch, "Blood flow:
//! magnetic resonance imaging", Radiology 154 (1985) 443–450).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::acquisition::{Coil, Motion, Sampling};
use super::sequence::Protocol;
use super::tissue::Field;

/// One study's scanner and protocols.
#[derive(Debug, Clone)]
pub struct Scanner {
    pub field: Field,
    /// T1-weighted protocol, the same before and after contrast.
    pub t1: Protocol,
    pub t2: Protocol,
    pub slice_mm: f32,
    /// Acquired matrix as fractions of the output side (x, y).
    pub matrix_fraction: [f32; 2],
    pub phase_along_rows: bool,
    /// White-matter SNR of the T1 and T2 series at this voxel size.
    pub snr: f32,
    pub coil: Coil,
    /// Fraction of flowing blood's signal lost on spin echoes.
    pub washout: f32,
    /// Gain of flowing blood's signal on gradient echoes.
    pub inflow: f32,
}

impl Scanner {
    pub fn draw(rng: &mut ChaCha8Rng, size: usize) -> Scanner {
        let field = if rng.random_bool(0.55) {
            Field::T1_5
        } else {
            Field::T3
        };
        let t1 = Protocol::draw_t1(field, rng);
        let t2 = Protocol::draw_t2(rng);
        let slice_mm = rng.random_range(3.0..6.0);
        // Acquired lines: 128–320 over the field of view, as a fraction of
        // an output side of 256 (and proportionally for other sizes).
        let freq = (rng.random_range(160.0..320.0) / 256.0f32).min(1.0);
        let phase = (freq * rng.random_range(0.7..1.0)).min(1.0);
        let phase_along_rows = rng.random_bool(0.6);
        let matrix_fraction = if phase_along_rows {
            [freq, phase]
        } else {
            [phase, freq]
        };
        let base = match field {
            Field::T1_5 => rng.random_range(12.0..35.0),
            Field::T3 => rng.random_range(20.0..60.0),
        };
        // SNR ∝ voxel volume: thickness, and in-plane size (fewer lines).
        let snr = base * (slice_mm / 5.0) / (freq * phase).sqrt();
        Scanner {
            field,
            t1,
            t2,
            slice_mm,
            matrix_fraction,
            phase_along_rows,
            snr,
            coil: Coil::random(rng, size, field == Field::T3),
            washout: rng.random_range(0.4..0.95),
            inflow: rng.random_range(1.0..1.6),
        }
    }

    /// Sampling of one series: matrix, motion (drawn per series), and the
    /// noise level for a white-matter signal of `wm_signal`; pixels are
    /// `mm_per_px` wide. Motion: one series in five, 0.15–0.8 mm peak — the
    /// cooperative patient's swallowing and pulsation; a few millimetres
    /// would smear the slice beyond reading (and be repeated in practice).
    pub fn sampling(
        &self,
        size: usize,
        mm_per_px: f32,
        wm_signal: f32,
        rng: &mut ChaCha8Rng,
    ) -> Sampling {
        let lines = |f: f32| ((size as f32 * f).round() as usize).clamp(8, size);
        let motion = rng.random_bool(0.2).then(|| Motion {
            amplitude_px: rng.random_range(0.15..0.8) / mm_per_px.max(1e-3),
            period_lines: rng.random_range(4.0..24.0),
            phase: rng.random_range(0.0..std::f32::consts::TAU),
        });
        Sampling {
            matrix: [
                lines(self.matrix_fraction[0]),
                lines(self.matrix_fraction[1]),
            ],
            phase_along_rows: self.phase_along_rows,
            motion,
            noise_sigma: wm_signal / self.snr,
        }
    }

    /// Factor on flowing blood's signal for `protocol`.
    pub fn flow_factor(&self, protocol: &Protocol) -> f32 {
        if protocol.flow_void() {
            1.0 - self.washout
        } else {
            self.inflow
        }
    }
}

/// Value at quantile `q` ∈ [0, 1] of `values` (nearest rank; 0 if empty).
pub fn quantile(values: &[f32], q: f32) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let k = ((v.len() - 1) as f32 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

/// Maps an image to 8 bits through a display window set from its bright
/// pixels: the top at the 99.0–99.9th percentile of the head (pixels above
/// 5 % of the maximum) times 0.9–1.12, the bottom at 0–5 % of the top.
pub fn window(image: &[f32], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let max = image.iter().copied().fold(0.0f32, f32::max);
    let head: Vec<f32> = image.iter().copied().filter(|v| *v > 0.05 * max).collect();
    let top = quantile(&head, rng.random_range(0.990..0.999)) * rng.random_range(0.9..1.12);
    let bottom = top * rng.random_range(0.0..0.05);
    let span = (top - bottom).max(1e-9);
    image
        .iter()
        .map(|v| ((v - bottom) / span * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn quantile_by_nearest_rank() {
        let v: Vec<f32> = (0..101).map(|i| i as f32).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn window_saturates_only_the_brightest() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let image: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        let px = window(&image, &mut rng);
        let saturated = px.iter().filter(|&&v| v == 255).count();
        // Top ≥ (0.05 + 0.95 × 0.99) × 0.9 = 0.891 (less half a grey level):
        // at most ≈ 1,105 of the 10,000 values saturate.
        assert!(saturated < 1_120, "{saturated}");
        assert_eq!(px[0], 0);
    }

    #[test]
    fn matrices_stay_within_the_output_and_above_eight_lines() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..50 {
            let s = Scanner::draw(&mut rng, 64);
            let m = s.sampling(64, 3.5, 1.0, &mut rng);
            assert!(m.matrix.iter().all(|&l| (8..=64).contains(&l)), "{m:?}");
            assert!(s.snr > 5.0 && s.snr < 200.0);
        }
    }
}
