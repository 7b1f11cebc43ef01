//! The EigenCAM overlay on the original slice: the original pixels are copied
//! (never altered in place) and tinted with a colour map where the map is
//! salient; outside the model's crop the slice stays grey.

use image::RgbImage;
use tumorxai_shared::{InputGeometry, Luminance};

/// A compact "turbo"-like colour map: blue → cyan → green → yellow → red.
pub fn colour(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        [0.19, 0.07, 0.23],
        [0.16, 0.47, 0.93],
        [0.10, 0.85, 0.60],
        [0.64, 0.99, 0.24],
        [0.98, 0.73, 0.21],
        [0.80, 0.19, 0.03],
    ];
    let f = t * (stops.len() - 1) as f32;
    let i = (f as usize).min(stops.len() - 2);
    let w = f - i as f32;
    let (a, b) = (stops[i], stops[i + 1]);
    [
        a[0] + (b[0] - a[0]) * w,
        a[1] + (b[1] - a[1]) * w,
        a[2] + (b[2] - a[2]) * w,
    ]
}

/// Bilinear taps along one axis: (low index, high index, weight of high).
type Taps = (usize, usize, f32);

fn taps(coordinate: f32, size: usize) -> Taps {
    let c = coordinate.clamp(0.0, (size - 1) as f32);
    let low = c.floor() as usize;
    (low, (low + 1).min(size - 1), c - low as f32)
}

/// Colour map sampled at 256 levels, so the per-pixel work is a lookup.
const LEVELS: usize = 256;

/// Blends the S×S saliency map (in [0, 1]) onto the original slice.
///
/// The crop-and-frame mapping is separable (u depends on x only, v on y
/// only), so the bilinear taps are computed once per column and per row.
pub fn overlay(slice: &Luminance, saliency: &[f32], geometry: &InputGeometry) -> RgbImage {
    let s = geometry.input_size as usize;
    let (w, h) = (slice.width as usize, slice.height as usize);
    let crop = geometry.crop;
    let in_x = |x: usize| (crop.x..crop.x + crop.w).contains(&x);
    let in_y = |y: usize| (crop.y..crop.y + crop.h).contains(&y);
    let columns: Vec<Option<Taps>> = (0..w)
        .map(|x| {
            let y = crop.y.min(h.saturating_sub(1));
            in_x(x)
                .then(|| geometry.to_input(x, y).map(|(u, _)| taps(u, s)))
                .flatten()
        })
        .collect();
    let rows: Vec<Option<Taps>> = (0..h)
        .map(|y| {
            let x = crop.x.min(w.saturating_sub(1));
            in_y(y)
                .then(|| geometry.to_input(x, y).map(|(_, v)| taps(v, s)))
                .flatten()
        })
        .collect();
    let lut: Vec<[f32; 3]> = (0..LEVELS)
        .map(|i| colour(i as f32 / (LEVELS - 1) as f32))
        .collect();
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
    let mut out = RgbImage::new(slice.width, slice.height);
    let buffer: &mut [u8] = &mut out;
    for (y, row_taps) in rows.iter().enumerate() {
        let line = &slice.data[y * w..(y + 1) * w];
        let pixels = &mut buffer[y * w * 3..(y + 1) * w * 3];
        for (x, (&g, px)) in line.iter().zip(pixels.chunks_exact_mut(3)).enumerate() {
            let (r, gr, b) = match (row_taps, columns[x]) {
                (Some((y0, y1, ty)), Some((x0, x1, tx))) => {
                    let top = saliency[y0 * s + x0] * (1.0 - tx) + saliency[y0 * s + x1] * tx;
                    let bottom = saliency[y1 * s + x0] * (1.0 - tx) + saliency[y1 * s + x1] * tx;
                    let m = (top * (1.0 - ty) + bottom * ty).clamp(0.0, 1.0);
                    let alpha = 0.5 * m;
                    let c = lut[(m * (LEVELS - 1) as f32 + 0.5) as usize];
                    (
                        g * (1.0 - alpha) + c[0] * alpha,
                        g * (1.0 - alpha) + c[1] * alpha,
                        g * (1.0 - alpha) + c[2] * alpha,
                    )
                }
                _ => (g, g, g),
            };
            px.copy_from_slice(&[byte(r), byte(gr), byte(b)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tumorxai_shared::{input_geometry, PreprocessSpec};

    #[test]
    fn salient_regions_are_tinted_and_the_rest_stays_grey() {
        let slice = Luminance::new(4, 4, vec![0.5; 16]);
        let mut spec = PreprocessSpec::with_input_size(4);
        spec.crop = None;
        let geometry = input_geometry(&slice, &spec).unwrap();
        let mut saliency = vec![0.0; 16];
        saliency[0] = 1.0;
        let img = overlay(&slice, &saliency, &geometry);
        let grey = img.get_pixel(3, 3).0;
        assert_eq!(grey, [128, 128, 128]);
        let hot = img.get_pixel(0, 0).0;
        assert!(hot[0] > hot[2], "{hot:?}"); // red end of the map
        assert_eq!(slice.data, vec![0.5; 16], "the original is untouched");
        assert!(colour(0.0)[2] > colour(0.0)[0] && colour(1.0)[0] > colour(1.0)[2]);
    }

    /// The per-pixel definition, written directly (the reference the fast
    /// separable version must match within one 8-bit step).
    fn reference(slice: &Luminance, saliency: &[f32], geometry: &InputGeometry) -> RgbImage {
        let s = geometry.input_size as usize;
        let sample = |u: f32, v: f32| {
            let (x0, x1, tx) = taps(u, s);
            let (y0, y1, ty) = taps(v, s);
            let top = saliency[y0 * s + x0] * (1.0 - tx) + saliency[y0 * s + x1] * tx;
            let bottom = saliency[y1 * s + x0] * (1.0 - tx) + saliency[y1 * s + x1] * tx;
            top * (1.0 - ty) + bottom * ty
        };
        RgbImage::from_fn(slice.width, slice.height, |x, y| {
            let g = slice.data[y as usize * slice.width as usize + x as usize];
            let v = match geometry.to_input(x as usize, y as usize) {
                Some((u, v)) => {
                    let m = sample(u, v).clamp(0.0, 1.0);
                    let c = colour(m);
                    let a = 0.5 * m;
                    [0, 1, 2].map(|k| g * (1.0 - a) + c[k] * a)
                }
                None => [g; 3],
            };
            image::Rgb(v.map(|c| (c.clamp(0.0, 1.0) * 255.0 + 0.5) as u8))
        })
    }

    #[test]
    fn the_fast_overlay_matches_the_per_pixel_definition() {
        // A slice with a dark border so the brain crop is a proper sub-box.
        let (w, h) = (90usize, 70usize);
        let data: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if (10..80).contains(&x) && (8..60).contains(&y) {
                    0.3 + 0.5 * ((x * 7 + y * 3) % 17) as f32 / 17.0
                } else {
                    0.0
                }
            })
            .collect();
        let slice = Luminance::new(w as u32, h as u32, data);
        let spec = PreprocessSpec::with_input_size(16);
        let geometry = input_geometry(&slice, &spec).unwrap();
        let saliency: Vec<f32> = (0..256).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let fast = overlay(&slice, &saliency, &geometry);
        let slow = reference(&slice, &saliency, &geometry);
        for (a, b) in fast.pixels().zip(slow.pixels()) {
            for k in 0..3 {
                assert!(
                    (i16::from(a.0[k]) - i16::from(b.0[k])).abs() <= 1,
                    "{a:?} vs {b:?}"
                );
            }
        }
    }
}
