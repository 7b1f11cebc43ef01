//! Scanner-domain randomisation: the intensity and acquisition differences
//! between sites that a model must not learn as cues. Each slice may get a
//! random monotone intensity curve (scanners and reconstruction pipelines
//! map signal to grey values differently; a monotone curve keeps the order
//! of tissues, which is what a radiologist reads), a smooth multiplicative
//! bias field (receive-coil sensitivity), a lower acquisition resolution
//! (downsampled by area, resampled back), and JPEG compression at a random
//! quality (the public dataset and many exports are JPEG). Draws come from
//! the caller's seeded CPU RNG, so a batch stays a pure function of (seed,
//! epoch, step). Applied by [`super::augment::apply_at_size`].
//!
//! The technique follows domain randomisation for MRI (Billot et al. 2023,
//! SynthSeg: random contrast, bias field, resolution) and the histogram /
//! intensity-curve augmentation of nnU-Net-style pipelines.

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageFormat};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::augment::uniform;

/// Segments of the piecewise-linear intensity curve (its knots sit at
/// 0, 1/4, …, 1 of the input range).
pub const CURVE_SEGMENTS: usize = 4;
/// Side of the bias field's control grid (bilinearly upsampled: a field
/// that varies smoothly across the head, as a coil's sensitivity does).
pub const BIAS_GRID: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DomainConfig {
    /// Probability and strength s of a monotone curve: each segment's share
    /// of the output range is drawn log-uniform in [1/(1+s), 1+s], then
    /// the shares are normalised so that 0 ↦ 0 and 1 ↦ 1.
    pub curve_p: f64,
    pub curve_strength: f64,
    /// Probability and amplitude b of the bias field: log-gains uniform in
    /// ±b at the control points (b = 0.3: gains from 0.74 to 1.35).
    pub bias_p: f64,
    pub bias_strength: f64,
    /// Probability and range of the resolution factor (2 = acquired at half
    /// the side, then resampled to the input size).
    pub lowres_p: f64,
    pub lowres_factor: (f64, f64),
    /// Probability and quality range (1–100) of a JPEG round trip.
    pub jpeg_p: f64,
    pub jpeg_quality: (u8, u8),
}

impl DomainConfig {
    /// No domain randomisation.
    pub fn off() -> DomainConfig {
        DomainConfig {
            curve_p: 0.0,
            curve_strength: 0.0,
            bias_p: 0.0,
            bias_strength: 0.0,
            lowres_p: 0.0,
            lowres_factor: (1.0, 1.0),
            jpeg_p: 0.0,
            jpeg_quality: (100, 100),
        }
    }

    /// The scanner shifts the demo is trained for: about half the slices
    /// get a curve and a bias field, a third a lower resolution (up to 2.5×
    /// coarser: 128² from a 51² acquisition) and a JPEG round trip at
    /// quality 30–95 (the public dataset's files are JPEG of unknown quality).
    pub fn scanners() -> DomainConfig {
        DomainConfig {
            curve_p: 0.5,
            curve_strength: 0.6,
            bias_p: 0.5,
            bias_strength: 0.3,
            lowres_p: 0.3,
            lowres_factor: (1.0, 2.5),
            jpeg_p: 0.3,
            jpeg_quality: (30, 95),
        }
    }

    pub fn is_off(&self) -> bool {
        self.curve_p <= 0.0 && self.bias_p <= 0.0 && self.lowres_p <= 0.0 && self.jpeg_p <= 0.0
    }
}

/// Per-sample parameters of the domain randomisation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DomainDraw {
    /// Output value at each knot (`CURVE_SEGMENTS + 1`, 0 … 1), or none.
    pub curve: Vec<Option<[f32; CURVE_SEGMENTS + 1]>>,
    /// Log-gains of the control grid, row-major, or none.
    pub bias: Vec<Option<[f32; BIAS_GRID * BIAS_GRID]>>,
    /// Resolution factor (1 = unchanged).
    pub lowres: Vec<f32>,
    /// JPEG quality (0 = no round trip).
    pub jpeg: Vec<u8>,
}

impl DomainDraw {
    pub fn identity(batch: usize) -> DomainDraw {
        DomainDraw {
            curve: vec![None; batch],
            bias: vec![None; batch],
            lowres: vec![1.0; batch],
            jpeg: vec![0; batch],
        }
    }
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p.clamp(0.0, 1.0))
}

/// Draws one sample's parameters into `d`. Nothing is drawn for a disabled
/// effect, so configurations without them keep their random streams.
pub fn draw_sample(config: &DomainConfig, rng: &mut ChaCha8Rng, d: &mut DomainDraw) {
    d.curve.push(chance(rng, config.curve_p).then(|| {
        let bound = (1.0 + config.curve_strength.max(0.0)).ln();
        let shares: Vec<f64> = (0..CURVE_SEGMENTS)
            .map(|_| uniform(rng, (-bound, bound)).exp())
            .collect();
        let total: f64 = shares.iter().sum();
        let mut knots = [0f32; CURVE_SEGMENTS + 1];
        let mut acc = 0.0;
        for (i, share) in shares.iter().enumerate() {
            acc += share / total;
            if let Some(k) = knots.get_mut(i + 1) {
                *k = acc as f32;
            }
        }
        // Exactly 1 at the top despite rounding.
        knots[CURVE_SEGMENTS] = 1.0;
        knots
    }));
    d.bias.push(chance(rng, config.bias_p).then(|| {
        let b = config.bias_strength.max(0.0);
        let mut grid = [0f32; BIAS_GRID * BIAS_GRID];
        for g in &mut grid {
            *g = uniform(rng, (-b, b)) as f32;
        }
        grid
    }));
    d.lowres.push(if chance(rng, config.lowres_p) {
        uniform(rng, config.lowres_factor).max(1.0) as f32
    } else {
        1.0
    });
    d.jpeg.push(if chance(rng, config.jpeg_p) {
        let (lo, hi) = config.jpeg_quality;
        let (lo, hi) = (lo.clamp(1, 100), hi.clamp(1, 100));
        if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        }
    } else {
        0
    });
}

/// The bias field: multiplies each slice by exp of its bilinearly
/// upsampled log-gain grid (corners of the grid at the image's corners).
pub fn apply_bias(x: &Tensor, bias: &[Option<[f32; BIAS_GRID * BIAS_GRID]>]) -> Tensor {
    if bias.iter().all(Option::is_none) {
        return x.shallow_clone();
    }
    let size = x.size();
    let b = size.first().copied().unwrap_or(1);
    let side = size.last().copied().unwrap_or(1);
    let grid: Vec<f32> = bias
        .iter()
        .flat_map(|g| g.unwrap_or([0.0; BIAS_GRID * BIAS_GRID]))
        .collect();
    let g = BIAS_GRID as i64;
    let field = Tensor::from_slice(&grid)
        .reshape([b, 1, g, g])
        .to_device(x.device())
        .upsample_bilinear2d([side, side], true, None, None)
        .exp();
    (x * field).clamp(0.0, 1.0)
}

/// The monotone curve: piecewise-linear between the knots at k/4.
pub fn apply_curve(x: &Tensor, curve: &[Option<[f32; CURVE_SEGMENTS + 1]>]) -> Tensor {
    if curve.iter().all(Option::is_none) {
        return x.shallow_clone();
    }
    let size = x.size();
    let b = size.first().copied().unwrap_or(1);
    let segments = CURVE_SEGMENTS as f64;
    let identity: [f32; CURVE_SEGMENTS + 1] =
        std::array::from_fn(|i| i as f32 / CURVE_SEGMENTS as f32);
    let knots: Vec<f32> = curve.iter().flat_map(|c| c.unwrap_or(identity)).collect();
    let knots = Tensor::from_slice(&knots)
        .reshape([b, CURVE_SEGMENTS as i64 + 1])
        .to_device(x.device());
    let flat = x.reshape([b, -1]).clamp(0.0, 1.0);
    let t = &flat * segments;
    let index = t.floor().clamp(0.0, segments - 1.0).to_kind(Kind::Int64);
    let frac = &t - index.to_kind(Kind::Float);
    let low = knots.gather(1, &index, false);
    let high = knots.gather(1, &(&index + 1), false);
    (&low + (high - &low) * frac).reshape(size.as_slice())
}

/// A lower acquisition resolution: each affected slice averaged down to
/// side/f (area) and resampled bilinearly back to its side.
pub fn apply_lowres(x: &Tensor, factors: &[f32]) -> Tensor {
    if factors.iter().all(|f| *f <= 1.0) {
        return x.shallow_clone();
    }
    let side = x.size().last().copied().unwrap_or(1);
    let slices: Vec<Tensor> = factors
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let slice = x.narrow(0, i as i64, 1);
            if f <= 1.0 {
                return slice;
            }
            let low = ((side as f64 / f64::from(f)).round() as i64).clamp(1, side);
            slice.adaptive_avg_pool2d([low, low]).upsample_bilinear2d(
                [side, side],
                false,
                None,
                None,
            )
        })
        .collect();
    Tensor::cat(&slices, 0)
}

/// A JPEG round trip per affected slice (8-bit grey, the `image` crate's
/// baseline encoder). A slice that cannot be encoded stays as it is.
pub fn apply_jpeg(x: &Tensor, qualities: &[u8]) -> Tensor {
    if qualities.iter().all(|q| *q == 0) {
        return x.shallow_clone();
    }
    let device = x.device();
    let side = x.size().last().copied().unwrap_or(1);
    let slices: Vec<Tensor> = qualities
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let slice = x.narrow(0, i as i64, 1);
            if q == 0 {
                return slice;
            }
            jpeg_round_trip(&slice, side, q)
                .map(|y| y.to_device(device))
                .unwrap_or(slice)
        })
        .collect();
    Tensor::cat(&slices, 0)
}

fn jpeg_round_trip(slice: &Tensor, side: i64, quality: u8) -> Option<Tensor> {
    let bytes = Vec::<u8>::try_from(
        (slice.to_device(Device::Cpu).flatten(0, -1).clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8),
    )
    .ok()?;
    let side_u32 = u32::try_from(side).ok()?;
    let mut encoded = Vec::new();
    JpegEncoder::new_with_quality(&mut encoded, quality)
        .encode(&bytes, side_u32, side_u32, ExtendedColorType::L8)
        .ok()?;
    let decoded = image::load_from_memory_with_format(&encoded, ImageFormat::Jpeg)
        .ok()?
        .into_luma8();
    let values: Vec<f32> = decoded
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    (values.len() == bytes.len()).then(|| Tensor::from_slice(&values).reshape([1, 1, side, side]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn the_curve_interpolates_between_its_knots() {
        let x = Tensor::from_slice(&[0.0f32, 0.125, 0.25, 0.6, 1.0]).reshape([1, 1, 1, 5]);
        let knots = [0.0, 0.4, 0.5, 0.9, 1.0];
        let y = values(&apply_curve(&x, &[Some(knots)]));
        // By hand: 0 → 0; 0.125 is half-way in segment 0 → 0.2; 0.25 → 0.4;
        // 0.6 is 0.4 of the way through segment 2 (0.5 … 0.75) → 0.5 + 0.4·0.4 = 0.66; 1 → 1.
        for (a, b) in y.iter().zip([0.0, 0.2, 0.4, 0.66, 1.0]) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn drawn_curves_are_monotone_and_keep_the_ends() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut d = DomainDraw::default();
        let config = DomainConfig {
            curve_p: 1.0,
            curve_strength: 2.0,
            ..DomainConfig::off()
        };
        for _ in 0..50 {
            draw_sample(&config, &mut rng, &mut d);
        }
        for knots in d.curve.iter().flatten() {
            assert_eq!(knots[0], 0.0);
            assert_eq!(knots[CURVE_SEGMENTS], 1.0);
            assert!(knots.windows(2).all(|w| w[1] > w[0]), "{knots:?}");
        }
        let ramp = Tensor::linspace(0.0, 1.0, 101, (Kind::Float, Device::Cpu))
            .reshape([1, 1, 1, 101])
            .repeat([50, 1, 1, 1]);
        let y = apply_curve(&ramp, &d.curve);
        let steps = y.narrow(3, 1, 100) - y.narrow(3, 0, 100);
        assert!(steps.min().double_value(&[]) >= 0.0);
    }

    #[test]
    fn a_uniform_bias_grid_scales_by_its_gain_and_a_tilted_one_interpolates() {
        let x = Tensor::full([2, 1, 5, 5], 0.5, (Kind::Float, Device::Cpu));
        let flat = [0.2f32; 9];
        // Log-gains −0.3, 0, 0.3 along the columns, the same on every row.
        let tilted = [-0.3f32, 0.0, 0.3, -0.3, 0.0, 0.3, -0.3, 0.0, 0.3];
        let y = apply_bias(&x, &[Some(flat), Some(tilted)]);
        // 0.5 · e^0.2 = 0.610701 everywhere.
        let a = values(&y.get(0));
        assert!(a.iter().all(|v| (v - 0.610_701).abs() < 1e-5), "{a:?}");
        // Column j of 5 sits at log-gain −0.3 + 0.15·j (align-corners bilinear):
        // 0.5·e^−0.3 = 0.370409, 0.5·e^−0.15 = 0.430354, 0.5, 0.580917, 0.674929.
        let row = values(&y.get(1).get(0).get(2));
        for (a, b) in row
            .iter()
            .zip([0.370_409, 0.430_354, 0.5, 0.580_917, 0.674_929])
        {
            assert!((a - b).abs() < 1e-5, "{row:?}");
        }
    }

    #[test]
    fn low_resolution_averages_fine_detail_and_keeps_flat_areas() {
        // A one-pixel checkerboard at half resolution is flat grey (each
        // 2×2 block averages to 0.5); a constant slice is unchanged.
        let board = Tensor::from_slice(
            &(0..64)
                .map(|i| ((i / 8 + i % 8) % 2) as f32)
                .collect::<Vec<_>>(),
        )
        .reshape([1, 1, 8, 8]);
        let flat = Tensor::full([1, 1, 8, 8], 0.3, (Kind::Float, Device::Cpu));
        let y = apply_lowres(&Tensor::cat(&[board.shallow_clone(), flat], 0), &[2.0, 2.0]);
        assert!((y.get(0) - 0.5).abs().max().double_value(&[]) < 1e-6);
        assert!((y.get(1) - 0.3).abs().max().double_value(&[]) < 1e-6);
        // Factor 1 leaves a slice untouched.
        let same = apply_lowres(&board, &[1.0]);
        assert_eq!(values(&same), values(&board));
    }

    #[test]
    fn jpeg_keeps_flat_grey_and_loses_fine_noise_at_low_quality() {
        let flat = Tensor::full([1, 1, 32, 32], 128.0 / 255.0, (Kind::Float, Device::Cpu));
        let y = apply_jpeg(&flat, &[50]);
        assert!((y - 128.0 / 255.0).abs().max().double_value(&[]) <= 1.0 / 255.0 + 1e-6);
        // Pixel noise (σ ≈ 0.1) around grey: quality 10 keeps much less of
        // its energy than quality 95 (JPEG quantises high frequencies first).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let noise: Vec<f32> = (0..32 * 32)
            .map(|_| 0.5 + rng.random_range(-0.17f32..0.17))
            .collect();
        let noisy = Tensor::from_slice(&noise).reshape([1, 1, 32, 32]);
        let kept = |q| apply_jpeg(&noisy, &[q]).std(true).double_value(&[]);
        let original = noisy.std(true).double_value(&[]);
        assert!(kept(95) > 0.8 * original, "{} vs {original}", kept(95));
        assert!(kept(10) < 0.6 * original, "{} vs {original}", kept(10));
        // Quality 0 means no round trip.
        assert_eq!(values(&apply_jpeg(&noisy, &[0])), values(&noisy));
    }

    #[test]
    fn nothing_is_drawn_when_off() {
        let mut a = ChaCha8Rng::seed_from_u64(1);
        let b = ChaCha8Rng::seed_from_u64(1);
        let mut d = DomainDraw::default();
        draw_sample(&DomainConfig::off(), &mut a, &mut d);
        assert_eq!(a, b, "the stream is untouched");
        assert_eq!(d, DomainDraw::identity(1));
    }
}
