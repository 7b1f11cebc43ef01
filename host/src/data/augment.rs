//! Augmentations as batched tensor ops (CPU and CUDA alike) on `[B, 1, S, S]`
//! planes in [0, 1]: random resized crop, horizontal flip and small rotation
//! (one affine resample), brightness/contrast jitter, gamma, Gaussian blur,
//! additive Gaussian noise, solarisation, and the scanner-domain
//! randomisation of [`super::domain`]. Every random draw (the noise
//! field included) comes from a seeded CPU RNG, so a batch is a pure function
//! of (seed, epoch, step) on any device.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::domain::{self, DomainConfig, DomainDraw};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Area fraction range of the random resized crop (1, 1 = no crop).
    pub crop_scale: (f64, f64),
    /// Aspect-ratio range of the crop.
    pub crop_ratio: (f64, f64),
    pub flip_p: f64,
    /// Maximum rotation, degrees (uniform in ±).
    pub rotation_deg: f64,
    /// Brightness shift and contrast factor amplitudes (uniform in ±).
    pub brightness: f64,
    pub contrast: f64,
    pub blur_p: f64,
    pub blur_sigma: (f64, f64),
    pub solarize_p: f64,
    /// Gamma amplitude g: γ log-uniform in [1/(1+g), 1+g] (0 = none). Scanners
    /// and reconstruction pipelines differ in their intensity curve.
    pub gamma: f64,
    /// Probability and σ range (on [0, 1] planes) of additive Gaussian noise:
    /// receiver noise differs between field strengths and coils.
    pub noise_p: f64,
    pub noise_std: (f64, f64),
    /// Intensity curves, bias fields, resolution and JPEG quality of other
    /// sites (off in every preset; [`AugmentConfig::with_domain`]).
    pub domain: DomainConfig,
}

impl AugmentConfig {
    /// Augmentation for supervised training and fine-tuning: mild geometry
    /// (a lesion must stay in the crop) and the intensity shifts between
    /// scanners, sequences' parameters and coils (brightness, contrast, gamma,
    /// blur, noise), so that a model learns anatomy and signal relations
    /// rather than one site's intensity curve.
    pub fn supervised() -> AugmentConfig {
        AugmentConfig {
            crop_scale: (0.7, 1.0),
            crop_ratio: (0.85, 1.18),
            flip_p: 0.5,
            rotation_deg: 10.0,
            brightness: 0.1,
            contrast: 0.2,
            blur_p: 0.2,
            blur_sigma: (0.1, 1.0),
            solarize_p: 0.0,
            gamma: 0.3,
            noise_p: 0.3,
            noise_std: (0.005, 0.04),
            domain: DomainConfig::off(),
        }
    }

    /// Strong two-view augmentation for self-supervised pre-training, the
    /// SimCLR family's crop/flip/blur/solarise adapted to grayscale MRI:
    /// no hue or saturation; the brightness shift is additive on [0, 1]
    /// planes, so ±0.2 (a third of a typical brain's mean grey) rather than
    /// ColorJitter's multiplicative 0.4; crops keep at least 40 % of the
    /// area (a lesion is a small part of a slice: two views of smaller crops
    /// of our phantoms often share no lesion, and SimCLR stayed at chance).
    pub fn ssl() -> AugmentConfig {
        AugmentConfig {
            crop_scale: (0.4, 1.0),
            crop_ratio: (0.75, 4.0 / 3.0),
            flip_p: 0.5,
            rotation_deg: 10.0,
            brightness: 0.2,
            contrast: 0.3,
            blur_p: 0.5,
            blur_sigma: (0.1, 1.5),
            solarize_p: 0.2,
            gamma: 0.0,
            noise_p: 0.0,
            noise_std: (0.0, 0.0),
            domain: DomainConfig::off(),
        }
    }

    /// This augmentation with the scanner-domain randomisation on
    /// ([`DomainConfig::scanners`]) or off.
    pub fn with_domain(self, on: bool) -> AugmentConfig {
        AugmentConfig {
            domain: if on {
                DomainConfig::scanners()
            } else {
                DomainConfig::off()
            },
            ..self
        }
    }

    pub fn none() -> AugmentConfig {
        AugmentConfig {
            crop_scale: (1.0, 1.0),
            crop_ratio: (1.0, 1.0),
            flip_p: 0.0,
            rotation_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            blur_p: 0.0,
            blur_sigma: (0.0, 0.0),
            solarize_p: 0.0,
            gamma: 0.0,
            noise_p: 0.0,
            noise_std: (0.0, 0.0),
            domain: DomainConfig::off(),
        }
    }
}

/// Per-sample parameters, drawn on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// Row-major 2×3 affine matrices mapping output to input in normalised
    /// coordinates (affine_grid convention).
    pub theta: Vec<[f32; 6]>,
    pub brightness: Vec<f32>,
    pub contrast: Vec<f32>,
    /// 0 = no blur.
    pub blur_sigma: Vec<f32>,
    pub solarize: Vec<bool>,
    /// Exponent per sample (1 = none).
    pub gamma: Vec<f32>,
    /// Noise σ per sample (0 = none) and the seed of the batch's noise field.
    pub noise_std: Vec<f32>,
    pub noise_seed: u64,
    pub domain: DomainDraw,
}

impl Draw {
    /// No change at all: identity crop, no intensity change.
    pub fn identity(batch: usize) -> Draw {
        Draw {
            theta: vec![[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]; batch],
            brightness: vec![0.0; batch],
            contrast: vec![1.0; batch],
            blur_sigma: vec![0.0; batch],
            solarize: vec![false; batch],
            gamma: vec![1.0; batch],
            noise_std: vec![0.0; batch],
            noise_seed: 0,
            domain: DomainDraw::identity(batch),
        }
    }
}

/// A draw from [lo, hi), or `lo` when the range is empty (a fixed value).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

pub fn draw(config: &AugmentConfig, batch: usize, rng: &mut ChaCha8Rng) -> Draw {
    let mut d = Draw {
        theta: Vec::with_capacity(batch),
        brightness: Vec::with_capacity(batch),
        contrast: Vec::with_capacity(batch),
        blur_sigma: Vec::with_capacity(batch),
        solarize: Vec::with_capacity(batch),
        gamma: Vec::with_capacity(batch),
        noise_std: Vec::with_capacity(batch),
        noise_seed: 0,
        domain: DomainDraw::default(),
    };
    for _ in 0..batch {
        // Random resized crop: a box of area `scale` and aspect `ratio`,
        // clamped inside the image, centred at a random admissible point.
        let scale = uniform(rng, config.crop_scale);
        let log_ratio = uniform(rng, (config.crop_ratio.0.ln(), config.crop_ratio.1.ln()));
        let ratio = log_ratio.exp();
        let w = (scale * ratio).sqrt().min(1.0);
        let h = (scale / ratio).sqrt().min(1.0);
        let cx = uniform(rng, (-(1.0 - w), 1.0 - w));
        let cy = uniform(rng, (-(1.0 - h), 1.0 - h));
        let flip = if rng.random_bool(config.flip_p.clamp(0.0, 1.0)) {
            -1.0
        } else {
            1.0
        };
        let angle = uniform(rng, (-config.rotation_deg, config.rotation_deg)).to_radians();
        let (c, s) = (angle.cos(), angle.sin());
        // Output (u, v) → input: centre + R · diag(w·flip, h) · (u, v).
        d.theta.push([
            (c * w * flip) as f32,
            (-s * h) as f32,
            cx as f32,
            (s * w * flip) as f32,
            (c * h) as f32,
            cy as f32,
        ]);
        d.brightness
            .push(uniform(rng, (-config.brightness, config.brightness)) as f32);
        d.contrast
            .push((1.0 + uniform(rng, (-config.contrast, config.contrast))) as f32);
        d.blur_sigma
            .push(if rng.random_bool(config.blur_p.clamp(0.0, 1.0)) {
                uniform(rng, config.blur_sigma) as f32
            } else {
                0.0
            });
        d.solarize
            .push(rng.random_bool(config.solarize_p.clamp(0.0, 1.0)));
        // Drawn only when enabled, so that presets without them (the SSL
        // views) keep their random streams.
        d.gamma.push(if config.gamma > 0.0 {
            let bound = (1.0 + config.gamma).ln();
            uniform(rng, (-bound, bound)).exp() as f32
        } else {
            1.0
        });
        d.noise_std.push(
            if config.noise_p > 0.0 && rng.random_bool(config.noise_p.clamp(0.0, 1.0)) {
                uniform(rng, config.noise_std) as f32
            } else {
                0.0
            },
        );
        domain::draw_sample(&config.domain, rng, &mut d.domain);
    }
    if config.noise_p > 0.0 {
        d.noise_seed = rng.random();
    }
    d
}

/// Applies drawn parameters to planes `[B, 1, S, S]` on their device.
pub fn apply(planes: &Tensor, d: &Draw) -> Tensor {
    let side = planes.size().last().copied().unwrap_or(1);
    apply_at_size(planes, d, side)
}

/// As [`apply`], resampling the crop to `side × side` pixels (DINO's small
/// local crops come out of the same affine resample).
pub fn apply_at_size(planes: &Tensor, d: &Draw, side: i64) -> Tensor {
    let device = planes.device();
    let b = planes.size()[0];
    let theta: Vec<f32> = d.theta.iter().flatten().copied().collect();
    let theta = Tensor::from_slice(&theta)
        .reshape([b, 2, 3])
        .to_device(device);
    let grid = Tensor::affine_grid_generator(&theta, [b, 1, side, side], false);
    // Bilinear (0), zero padding (0): the background of MRI slices is black.
    let mut x = planes.grid_sampler(&grid, 0, 0, false);
    // The coil's field multiplies the signal before any display mapping.
    x = domain::apply_bias(&x, &d.domain.bias);

    let column = |v: &[f32]| {
        Tensor::from_slice(v)
            .to_device(device)
            .reshape([b, 1, 1, 1])
    };
    let mean = x.mean_dim(&[2i64, 3][..], true, Kind::Float);
    x = (&x - &mean) * column(&d.contrast) + &mean + column(&d.brightness);
    x = x.clamp(0.0, 1.0);
    if d.gamma.iter().any(|g| *g != 1.0) {
        x = x.pow(&column(&d.gamma));
    }
    x = domain::apply_curve(&x, &d.domain.curve);
    x = domain::apply_lowres(&x, &d.domain.lowres);

    if d.blur_sigma.iter().any(|s| *s > 0.0) {
        x = gaussian_blur(&x, &d.blur_sigma);
    }
    if d.noise_std.iter().any(|s| *s > 0.0) {
        let noise = noise_field(d.noise_seed, b, side).to_device(device);
        x = (x + noise * column(&d.noise_std)).clamp(0.0, 1.0);
    }
    // Last of the acquisition chain: the file as it was stored.
    x = domain::apply_jpeg(&x, &d.domain.jpeg);
    if d.solarize.iter().any(|s| *s) {
        let flags: Vec<f32> = d
            .solarize
            .iter()
            .map(|&s| if s { 1.0 } else { 0.0 })
            .collect();
        let solarized = x.where_self(&x.lt(0.5), &(1.0 - &x));
        let flags = column(&flags);
        x = &solarized * &flags + &x * (1.0 - &flags);
    }
    x
}

/// Standard normal field `[B, 1, S, S]` from a seeded CPU RNG (not libtorch's
/// generator, whose stream differs between CPU and CUDA).
fn noise_field(seed: u64, batch: i64, side: i64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count = usize::try_from(batch * side * side).unwrap_or(0);
    let values: Vec<f32> = (0..count)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_slice(&values).reshape([batch, 1, side, side])
}

/// Per-sample separable Gaussian blur (σ = 0 → identity) as grouped convolutions.
fn gaussian_blur(x: &Tensor, sigmas: &[f32]) -> Tensor {
    let size = x.size();
    let (b, s) = (size[0], size[2]);
    let max_sigma = sigmas.iter().copied().fold(0f32, f32::max);
    let radius = ((3.0 * max_sigma).ceil() as i64).clamp(1, (s - 1).max(1) / 2);
    let k = 2 * radius + 1;
    let mut kernels = Vec::with_capacity((b * k) as usize);
    for &sigma in sigmas {
        let row: Vec<f32> = (-radius..=radius)
            .map(|i| {
                if sigma <= 0.0 {
                    if i == 0 {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()
                }
            })
            .collect();
        let sum: f32 = row.iter().sum();
        kernels.extend(row.iter().map(|v| v / sum));
    }
    let kernels = Tensor::from_slice(&kernels).to_device(x.device());
    let horizontal = kernels.reshape([b, 1, 1, k]);
    let vertical = kernels.reshape([b, 1, k, 1]);
    // Batch as channels: one group per sample.
    let y = x.reshape([1, b, s, s]);
    let y = y.reflection_pad2d([radius, radius, 0, 0]).conv2d(
        &horizontal,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        b,
    );
    let y = y.reflection_pad2d([0, 0, radius, radius]).conv2d(
        &vertical,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        b,
    );
    y.reshape([b, 1, s, s])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ramp(b: i64, s: i64) -> Tensor {
        Tensor::arange(s * s, (Kind::Float, tch::Device::Cpu))
            .divide_scalar((s * s) as f64)
            .reshape([1, 1, s, s])
            .repeat([b, 1, 1, 1])
    }

    #[test]
    fn no_augmentation_is_the_identity() {
        let x = ramp(3, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = draw(&AugmentConfig::none(), 3, &mut rng);
        let y = apply(&x, &d);
        let diff = (&y - &x).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn flip_mirrors_columns() {
        let x = ramp(1, 6);
        let d = Draw {
            theta: vec![[-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]],
            ..Draw::identity(1)
        };
        let y = apply(&x, &d);
        let diff = (&y - x.flip([3])).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn solarize_inverts_bright_pixels_only() {
        let x = Tensor::from_slice(&[0.2f32, 0.7, 0.4, 0.9]).reshape([1, 1, 2, 2]);
        let d = Draw {
            solarize: vec![true],
            ..Draw::identity(1)
        };
        let y = Vec::<f32>::try_from(apply(&x, &d).flatten(0, -1)).unwrap();
        let expect = [0.2, 0.3, 0.4, 0.1];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn gamma_raises_each_pixel_to_its_power() {
        let x = Tensor::from_slice(&[0.25f32, 0.5, 0.81, 1.0]).reshape([1, 1, 2, 2]);
        let d = Draw {
            gamma: vec![2.0],
            ..Draw::identity(1)
        };
        let y = Vec::<f32>::try_from(apply(&x, &d).flatten(0, -1)).unwrap();
        // Hand-computed: 0.25² = 0.0625, 0.5² = 0.25, 0.81² = 0.6561, 1² = 1.
        for (a, b) in y.iter().zip([0.0625, 0.25, 0.6561, 1.0]) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn noise_has_the_drawn_spread_only_where_drawn_and_is_seeded() {
        let x = Tensor::full([2, 1, 64, 64], 0.5, (Kind::Float, tch::Device::Cpu));
        let d = Draw {
            noise_std: vec![0.05, 0.0],
            noise_seed: 3,
            ..Draw::identity(2)
        };
        let y = apply(&x, &d);
        let noisy = y.get(0);
        // 4096 samples of N(0.5, 0.05²): the sample std is within ±10 % of
        // 0.05 (its standard error is 0.05/√8192 ≈ 0.0006), the mean within 0.005.
        let std = noisy.std(true).double_value(&[]);
        let mean = noisy.mean(Kind::Float).double_value(&[]);
        assert!((std - 0.05).abs() < 0.005, "{std}");
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        assert!((y.get(1) - 0.5).abs().max().double_value(&[]) < 1e-6);
        assert_eq!(
            Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(),
            Vec::<f32>::try_from(apply(&x, &d).flatten(0, -1)).unwrap()
        );
    }

    #[test]
    fn blur_keeps_constants_and_spreads_a_spike() {
        let x = Tensor::zeros([2, 1, 9, 9], (Kind::Float, tch::Device::Cpu));
        let _ = x.get(0).get(0).get(4).get(4).fill_(1.0);
        let _ = x.get(1).fill_(0.5);
        let y = gaussian_blur(&x, &[1.0, 1.5]);
        let spike = y.get(0);
        // Mass is kept up to what reflection padding mirrors back in at the
        // border (the kernel tail at distance 4: ≈ e⁻⁸ per side).
        assert!((spike.sum(Kind::Float).double_value(&[]) - 1.0).abs() < 2e-3);
        assert!(spike.get(0).get(4).get(4).double_value(&[]) < 0.5);
        let flat = y.get(1);
        assert!((flat - 0.5).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn draws_are_a_pure_function_of_the_seed() {
        let a = draw(&AugmentConfig::ssl(), 4, &mut ChaCha8Rng::seed_from_u64(9));
        let b = draw(&AugmentConfig::ssl(), 4, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b);
        assert_ne!(
            a,
            draw(&AugmentConfig::ssl(), 4, &mut ChaCha8Rng::seed_from_u64(10))
        );
    }
}
