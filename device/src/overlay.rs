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

fn sample(map: &[f32], size: usize, u: f32, v: f32) -> f32 {
    let (u, v) = (
        u.clamp(0.0, (size - 1) as f32),
        v.clamp(0.0, (size - 1) as f32),
    );
    let (x0, y0) = (u.floor() as usize, v.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
    let (tx, ty) = (u - x0 as f32, v - y0 as f32);
    let top = map[y0 * size + x0] * (1.0 - tx) + map[y0 * size + x1] * tx;
    let bottom = map[y1 * size + x0] * (1.0 - tx) + map[y1 * size + x1] * tx;
    top * (1.0 - ty) + bottom * ty
}

/// Blends the S×S saliency map (in [0, 1]) onto the original slice.
pub fn overlay(slice: &Luminance, saliency: &[f32], geometry: &InputGeometry) -> RgbImage {
    let s = geometry.input_size as usize;
    let mut out = RgbImage::new(slice.width, slice.height);
    for y in 0..slice.height as usize {
        for x in 0..slice.width as usize {
            let g = slice.data[y * slice.width as usize + x];
            let (r, gr, b) = match geometry.to_input(x, y) {
                Some((u, v)) => {
                    let m = sample(saliency, s, u, v);
                    let alpha = 0.5 * m;
                    let c = colour(m);
                    (
                        g * (1.0 - alpha) + c[0] * alpha,
                        g * (1.0 - alpha) + c[1] * alpha,
                        g * (1.0 - alpha) + c[2] * alpha,
                    )
                }
                None => (g, g, g),
            };
            let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            out.put_pixel(x as u32, y as u32, image::Rgb([byte(r), byte(gr), byte(b)]));
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
}
