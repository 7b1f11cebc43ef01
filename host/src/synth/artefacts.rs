//! Acquisition artefacts and finishing touches of a phantom slice: bias field,
//! blur, Rician noise, percentile normalisation, gamma, quantisation and
//! occasional burnt-in text. Also the outward distance map used for the skull.

use embedded_graphics::mono_font::ascii::{FONT_6X10, FONT_7X13};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Gray8;

use super::canvas::GrayCanvas;
use embedded_graphics::prelude::*;
use embedded_graphics::text::Text;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Chamfer (3-4) distance, in pixels, from each outside pixel to the nearest
/// inside pixel; 0 inside.
pub fn distance_outside(inside: &[bool], size: usize) -> Vec<f32> {
    const FAR: f32 = 1e9;
    let (a, b) = (1.0f32, std::f32::consts::SQRT_2);
    let mut d: Vec<f32> = inside.iter().map(|&i| if i { 0.0 } else { FAR }).collect();
    for y in 0..size {
        for x in 0..size {
            let i = y * size + x;
            let mut v = d[i];
            if x > 0 {
                v = v.min(d[i - 1] + a);
            }
            if y > 0 {
                v = v.min(d[i - size] + a);
                if x > 0 {
                    v = v.min(d[i - size - 1] + b);
                }
                if x + 1 < size {
                    v = v.min(d[i - size + 1] + b);
                }
            }
            d[i] = v;
        }
    }
    for y in (0..size).rev() {
        for x in (0..size).rev() {
            let i = y * size + x;
            let mut v = d[i];
            if x + 1 < size {
                v = v.min(d[i + 1] + a);
            }
            if y + 1 < size {
                v = v.min(d[i + size] + a);
                if x + 1 < size {
                    v = v.min(d[i + size + 1] + b);
                }
                if x > 0 {
                    v = v.min(d[i + size - 1] + b);
                }
            }
            d[i] = v;
        }
    }
    d
}

fn gaussian_blur(image: &mut [f32], size: usize, sigma: f32) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / sum).collect();
    let clamp = |v: isize| v.clamp(0, size as isize - 1) as usize;
    let mut tmp = vec![0f32; image.len()];
    for y in 0..size {
        for x in 0..size {
            let mut acc = 0.0;
            for (j, k) in kernel.iter().enumerate() {
                acc += k * image[y * size + clamp(x as isize + j as isize - radius)];
            }
            tmp[y * size + x] = acc;
        }
    }
    for y in 0..size {
        for x in 0..size {
            let mut acc = 0.0;
            for (j, k) in kernel.iter().enumerate() {
                acc += k * tmp[clamp(y as isize + j as isize - radius) * size + x];
            }
            image[y * size + x] = acc;
        }
    }
}

/// Bias field, blur, Rician noise, normalisation at the 99.7th percentile,
/// gamma and a random window: the variation real scans have.
pub fn apply(image: &mut [f32], size: usize, rng: &mut ChaCha8Rng) {
    // Smooth multiplicative bias field: exp of a 2nd-order polynomial.
    let c: Vec<f32> = (0..5)
        .map(|_| 0.2 * Distribution::<f32>::sample(&StandardNormal, rng))
        .collect();
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (
                x as f32 / size as f32 * 2.0 - 1.0,
                y as f32 / size as f32 * 2.0 - 1.0,
            );
            let field = (c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v).exp();
            image[y * size + x] *= field;
        }
    }
    gaussian_blur(image, size, rng.random_range(0.3..0.9));
    // Rician noise: magnitude of a complex signal with Gaussian noise on both parts.
    let sigma = rng.random_range(0.008..0.035);
    for v in image.iter_mut() {
        let re = *v + sigma * Distribution::<f32>::sample(&StandardNormal, rng);
        let im = sigma * Distribution::<f32>::sample(&StandardNormal, rng);
        *v = (re * re + im * im).sqrt();
    }
    let mut sorted = image.to_vec();
    let k = ((sorted.len() as f32 * 0.997) as usize).min(sorted.len() - 1);
    let (_, p997, _) = sorted.select_nth_unstable_by(k, f32::total_cmp);
    let top = p997.max(1e-6);
    let gamma = rng.random_range(0.8..1.2);
    // Windowing: some scans are displayed a little darker or brighter.
    let window = rng.random_range(0.92..1.08);
    for v in image.iter_mut() {
        *v = ((*v / top).clamp(0.0, 1.0).powf(gamma) * window).clamp(0.0, 1.0);
    }
}

pub fn to_u8(image: &[f32]) -> Vec<u8> {
    image
        .iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Scanner annotations burnt into the pixels, as some real slices carry.
pub fn burn_in_text(pixels: &mut [u8], size: u32, rng: &mut ChaCha8Rng) {
    let mut canvas = GrayCanvas::new(pixels, size, size);
    let shade = Gray8::new(rng.random_range(180..=255));
    let font = if size >= 256 && rng.random_bool(0.5) {
        &FONT_7X13
    } else {
        &FONT_6X10
    };
    let style = MonoTextStyle::new(font, shade);
    let labels = [
        format!(
            "SE:{} IM:{}",
            rng.random_range(1..12),
            rng.random_range(1..40)
        ),
        if rng.random_bool(0.5) {
            "R".to_string()
        } else {
            "L".to_string()
        },
        format!("{}mm", rng.random_range(3..7)),
    ];
    let count = rng.random_range(1..=labels.len());
    let corners = [
        (4, 12),
        (size as i32 - 60, 12),
        (4, size as i32 - 6),
        (size as i32 - 40, size as i32 - 6),
    ];
    for (label, (x, y)) in labels.iter().take(count).zip(corners.iter()) {
        // Drawing into memory cannot fail (Infallible).
        let _ = Text::new(label, Point::new(*x, *y), style).draw(&mut canvas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_map_counts_steps_from_the_inside() {
        let size = 5;
        let mut inside = vec![false; 25];
        inside[2 * 5 + 2] = true;
        let d = distance_outside(&inside, size);
        assert_eq!(d[12], 0.0);
        assert_eq!(d[12 + 1], 1.0);
        assert_eq!(d[12 + 2], 2.0);
        assert!((d[6] - std::f32::consts::SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn blur_keeps_constant_images_and_mass() {
        let mut img = vec![0.5f32; 64];
        gaussian_blur(&mut img, 8, 0.8);
        assert!(img.iter().all(|v| (v - 0.5).abs() < 1e-5));
        let mut spike = vec![0f32; 81];
        spike[40] = 1.0;
        gaussian_blur(&mut spike, 9, 0.7);
        let sum: f32 = spike.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4 && spike[40] < 1.0);
    }
}
