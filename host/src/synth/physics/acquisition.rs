//! Acquisition effects where they arise: the receive coil's sensitivity
//! multiplies the magnetisation, k-space is sampled only up to the
//! acquisition matrix (truncation → Gibbs ringing and blur), motion between
//! phase-encoding lines puts phase errors on those lines (ghosts along the
//! phase-encoding direction), and thermal noise is complex Gaussian on every
//! acquired sample, so the magnitude image has Rician noise (correlated
//! between pixels when the matrix is smaller than the image).
//!
//! References: Haacke et al., *Magnetic Resonance Imaging: Physical
//! Principles and Sequence Design* (1999), ch. 12–15 (sampling, truncation,
//! Gibbs ringing, motion); Gudbjartsson & Patz, "The Rician distribution of
//! noisy MRI data", MRM 34 (1995) 910–914; Roemer et al., "The NMR phased
//! array", MRM 16 (1990) 192–225 (sum-of-squares combination of coil
//! elements); the on-axis field of a circular loop, B ∝ (1 + (d/a)²)^(−3/2)
//! (Biot–Savart), as each element's sensitivity; Kwan et al. 1999 (BrainWeb)
//! simulate noise and intensity non-uniformity the same way.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rustfft::num_complex::Complex32;
use rustfft::FftPlannerScalar;

/// A phased-array head coil: elements on a ring around the head.
#[derive(Debug, Clone)]
pub struct Coil {
    /// (position relative to the image centre in pixels, gain) per element.
    elements: Vec<([f32; 2], f32)>,
    /// Loop radius (pixels).
    loop_px: f32,
    /// Exponent on the combined sensitivity: vendors' intensity
    /// normalisation flattens it partly (0 = flat, 1 = raw).
    exponent: f32,
    /// Central brightening of the transmit field at 3 T (0 at 1.5 T).
    centre_gain: f32,
}

impl Coil {
    pub fn random(rng: &mut ChaCha8Rng, size: usize, high_field: bool) -> Coil {
        let count = if rng.random_bool(0.5) { 8 } else { 12 };
        let n = size as f32;
        let ring = n * rng.random_range(0.45..0.6);
        let offset = [
            rng.random_range(-0.05..0.05) * n,
            rng.random_range(-0.05..0.05) * n,
        ];
        let turn = rng.random_range(0.0..std::f32::consts::TAU);
        let elements = (0..count)
            .map(|k| {
                let a = turn + std::f32::consts::TAU * k as f32 / count as f32;
                (
                    [offset[0] + ring * a.cos(), offset[1] + ring * a.sin()],
                    rng.random_range(0.8..1.2),
                )
            })
            .collect();
        Coil {
            elements,
            loop_px: n * rng.random_range(0.25..0.4),
            exponent: rng.random_range(0.2..0.8),
            centre_gain: if high_field {
                rng.random_range(0.05..0.3)
            } else {
                0.0
            },
        }
    }

    /// Sensitivity map (mean 1 over the central disc of radius 0.3 n).
    pub fn sensitivity(&self, size: usize) -> Vec<f32> {
        let n = size as f32;
        let half = n / 2.0;
        let mut map = Vec::with_capacity(size * size);
        let (mut sum, mut count) = (0.0f64, 0usize);
        for row in 0..size {
            for col in 0..size {
                let p = [col as f32 + 0.5 - half, row as f32 + 0.5 - half];
                let sos: f32 = self
                    .elements
                    .iter()
                    .map(|(e, g)| {
                        let d2 = ((p[0] - e[0]).powi(2) + (p[1] - e[1]).powi(2))
                            / (self.loop_px * self.loop_px);
                        // b = g / (1 + d²)^(3/2), so b² = g² / (1 + d²)³.
                        let q = 1.0 + d2;
                        g * g / (q * q * q)
                    })
                    .sum::<f32>()
                    .sqrt();
                let r2 = (p[0] * p[0] + p[1] * p[1]) / (0.35 * n).powi(2);
                let v = sos.powf(self.exponent) * (1.0 + self.centre_gain * (-r2 / 2.0).exp());
                if r2 < (0.3f32 / 0.35).powi(2) {
                    sum += f64::from(v);
                    count += 1;
                }
                map.push(v);
            }
        }
        let mean = (sum / count.max(1) as f64) as f32;
        map.iter().map(|v| v / mean.max(1e-12)).collect()
    }
}

/// Periodic motion during the scan (breathing, swallowing, pulsation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Motion {
    /// Peak displacement along the phase-encoding direction (pixels).
    pub amplitude_px: f32,
    /// Period in phase-encoding lines.
    pub period_lines: f32,
    pub phase: f32,
}

/// How one series is sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Acquired k-space extent (lines) along columns (x) and rows (y).
    pub matrix: [usize; 2],
    /// Phase encoding runs along rows (y) if true, along columns otherwise.
    pub phase_along_rows: bool,
    pub motion: Option<Motion>,
    /// Standard deviation of the complex noise, per channel.
    pub noise_sigma: f32,
}

/// Signed frequency index of FFT bin `k` of `n`.
fn freq(k: usize, n: usize) -> i64 {
    if k < n.div_ceil(2) {
        k as i64
    } else {
        k as i64 - n as i64
    }
}

fn transpose(data: &mut [Complex32], n: usize) {
    for r in 0..n {
        for c in r + 1..n {
            data.swap(r * n + c, c * n + r);
        }
    }
}

/// 2-D FFT of an n × n row-major grid (unnormalised, both directions).
/// Uses rustfft's scalar planner: the same algorithms on every CPU, so the
/// images do not depend on the machine's SIMD features.
pub fn fft2(data: &mut [Complex32], n: usize, inverse: bool) {
    let mut planner = FftPlannerScalar::<f32>::new();
    let fft = if inverse {
        planner.plan_fft_inverse(n)
    } else {
        planner.plan_fft_forward(n)
    };
    fft.process(data);
    transpose(data, n);
    fft.process(data);
    transpose(data, n);
}

/// Simulates the acquisition of a magnitude `object` (n × n) seen through
/// `coil`: returns the reconstructed magnitude image.
pub fn acquire(
    object: &[f32],
    n: usize,
    coil: &[f32],
    sampling: &Sampling,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let mut k: Vec<Complex32> = object
        .iter()
        .zip(coil)
        .map(|(v, s)| Complex32::new(v * s, 0.0))
        .collect();
    fft2(&mut k, n, false);
    // Kept frequencies: symmetric about DC (|f| ≤ (m − 1)/2), so a real
    // object stays real; the full matrix keeps every bin.
    let keep = |f: i64, m: usize| m >= n || f.abs() <= (m.saturating_sub(1) / 2) as i64;
    let [mx, my] = sampling.matrix;
    for row in 0..n {
        let fy = freq(row, n);
        for col in 0..n {
            let fx = freq(col, n);
            let i = row * n + col;
            if !keep(fx, mx) || !keep(fy, my) {
                k[i] = Complex32::new(0.0, 0.0);
                continue;
            }
            if let Some(m) = sampling.motion {
                // The line's acquisition order is its phase-encoding index;
                // a shift δ along the phase direction multiplies it by
                // e^(−2πi f δ / n).
                let (line, f) = if sampling.phase_along_rows {
                    (fy, fy)
                } else {
                    (fx, fx)
                };
                let delta = m.amplitude_px
                    * (std::f32::consts::TAU * line as f32 / m.period_lines + m.phase).sin();
                let angle = -std::f32::consts::TAU * f as f32 * delta / n as f32;
                k[i] *= Complex32::new(angle.cos(), angle.sin());
            }
        }
    }
    // Thermal noise enters with each acquired sample: complex Gaussian in
    // k-space, scaled so that each image pixel gets σ per channel
    // (inverse DFT of K samples / n²: variance K σₖ² / n⁴).
    let kept = (0..n).filter(|&r| keep(freq(r, n), my)).count()
        * (0..n).filter(|&c| keep(freq(c, n), mx)).count();
    let sigma_k = sampling.noise_sigma * (n * n) as f32 / (kept.max(1) as f32).sqrt();
    if sigma_k > 0.0 {
        for row in 0..n {
            if !keep(freq(row, n), my) {
                continue;
            }
            for col in 0..n {
                if keep(freq(col, n), mx) {
                    let re: f32 = rng.sample(StandardNormal);
                    let im: f32 = rng.sample(StandardNormal);
                    k[row * n + col] += Complex32::new(sigma_k * re, sigma_k * im);
                }
            }
        }
    }
    fft2(&mut k, n, true);
    let norm = 1.0 / (n * n) as f32;
    k.iter().map(|z| z.norm() * norm).collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn flat_coil(n: usize) -> Vec<f32> {
        vec![1.0; n * n]
    }

    #[test]
    fn fft_round_trip_and_dc() {
        let n = 6;
        let mut d: Vec<Complex32> = (0..n * n).map(|i| Complex32::new(i as f32, 0.0)).collect();
        fft2(&mut d, n, false);
        // DC = Σ i for i < 36 = 630.
        assert!((d[0].re - 630.0).abs() < 1e-3 && d[0].im.abs() < 1e-3);
        fft2(&mut d, n, true);
        for (i, z) in d.iter().enumerate() {
            assert!((z.re / 36.0 - i as f32).abs() < 1e-3, "{i}: {z}");
        }
    }

    #[test]
    fn full_matrix_without_noise_returns_the_object() {
        let n = 16;
        let object: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 11) as f32).collect();
        let s = Sampling {
            matrix: [n, n],
            phase_along_rows: true,
            motion: None,
            noise_sigma: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = acquire(&object, n, &flat_coil(n), &s, &mut rng);
        for (a, b) in object.iter().zip(&out) {
            assert!((a - b).abs() < 1e-3);
        }
    }

    #[test]
    fn truncation_rings_at_an_edge() {
        // A step edge along x: with half the matrix, the bright side
        // overshoots near the edge (Gibbs, ≈ 9 % of the step).
        let n = 64;
        let object: Vec<f32> = (0..n * n)
            .map(|i| {
                if (16..48).contains(&(i % n)) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let s = Sampling {
            matrix: [32, n],
            phase_along_rows: true,
            motion: None,
            noise_sigma: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = acquire(&object, n, &flat_coil(n), &s, &mut rng);
        let row = &out[10 * n..11 * n];
        let peak = row.iter().copied().fold(0.0, f32::max);
        assert!(peak > 1.05 && peak < 1.2, "{peak}");
    }

    #[test]
    fn rician_noise_has_the_known_background_mean() {
        // Zero signal: magnitude is Rayleigh, mean σ √(π/2) = 1.2533 σ.
        let n = 64;
        let s = Sampling {
            matrix: [n, n],
            phase_along_rows: true,
            motion: None,
            noise_sigma: 0.1,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let out = acquire(&vec![0.0; n * n], n, &flat_coil(n), &s, &mut rng);
        let mean = out.iter().sum::<f32>() / out.len() as f32;
        assert!((mean - 0.12533).abs() < 0.004, "{mean}");
    }

    #[test]
    fn motion_puts_ghosts_outside_the_object() {
        let n = 64;
        let object: Vec<f32> = (0..n * n)
            .map(|i| {
                let (x, y) = (i % n, i / n);
                if (24..40).contains(&x) && (24..40).contains(&y) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let mut s = Sampling {
            matrix: [n, n],
            phase_along_rows: true,
            motion: None,
            noise_sigma: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let background = |img: &[f32]| (0..16 * n).map(|i| img[i]).sum::<f32>();
        let still = acquire(&object, n, &flat_coil(n), &s, &mut rng);
        s.motion = Some(Motion {
            amplitude_px: 2.0,
            period_lines: 8.0,
            phase: 0.3,
        });
        let moved = acquire(&object, n, &flat_coil(n), &s, &mut rng);
        assert!(background(&still) < 1e-3);
        assert!(background(&moved) > 1.0, "{}", background(&moved));
    }

    #[test]
    fn coil_sensitivity_is_normalised_and_brighter_near_elements() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut coil = Coil::random(&mut rng, 64, false);
        coil.exponent = 1.0;
        let map = coil.sensitivity(64);
        let centre = map[32 * 64 + 32];
        let edge = map.iter().copied().fold(0.0, f32::max);
        assert!(edge > 1.3 * centre, "{edge} vs {centre}");
    }
}
