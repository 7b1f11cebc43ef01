//! The resize step of the contract, written out here rather than borrowed from
//! an image library: its exact arithmetic is part of what host and device must
//! agree on, and a dependency upgrade must not silently change it.
//!
//! Separable triangle filter on pixel centres. For an axis of `n_in` → `n_out`
//! samples, `scale = n_in / n_out` and the kernel half-width is
//! `support = max(scale, 1)`. Output sample `i` sits at
//! `centre = (i + 0.5) × scale` in input coordinates; input sample `j` (centre
//! `j + 0.5`) gets weight `max(0, 1 − |j + 0.5 − centre| / support)`. Taps
//! outside the image are dropped and the remaining weights renormalised to sum
//! to one. Weights are computed in f64, stored as f32 and accumulated in f32 in
//! ascending tap order: plain IEEE arithmetic, identical on x86-64 and aarch64.

/// One output sample's taps: first input index and weights.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

fn axis_taps(n_in: usize, n_out: usize) -> Vec<Taps> {
    let scale = n_in as f64 / n_out as f64;
    let support = scale.max(1.0);
    (0..n_out)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(n_in);
            let raw: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre).abs() / support)).max(0.0))
                .collect();
            let sum: f64 = raw.iter().sum();
            let weights = raw.iter().map(|w| (w / sum) as f32).collect();
            Taps { start: lo, weights }
        })
        .collect()
}

/// Resizes a row-major single-channel image from `w_in × h_in` to `w_out × h_out`
/// (all non-zero). Horizontal pass first, then vertical.
pub fn resize_triangle(
    src: &[f32],
    w_in: usize,
    h_in: usize,
    w_out: usize,
    h_out: usize,
) -> Vec<f32> {
    assert_eq!(
        src.len(),
        w_in * h_in,
        "source length does not match its size"
    );
    let xs = axis_taps(w_in, w_out);
    let ys = axis_taps(h_in, h_out);

    let mut horizontal = vec![0f32; w_out * h_in];
    for y in 0..h_in {
        let row = &src[y * w_in..(y + 1) * w_in];
        for (x, taps) in xs.iter().enumerate() {
            let mut acc = 0f32;
            for (k, w) in taps.weights.iter().enumerate() {
                acc += w * row[taps.start + k];
            }
            horizontal[y * w_out + x] = acc;
        }
    }

    let mut out = vec![0f32; w_out * h_out];
    for (y, taps) in ys.iter().enumerate() {
        let dst = &mut out[y * w_out..(y + 1) * w_out];
        for (k, w) in taps.weights.iter().enumerate() {
            let row = &horizontal[(taps.start + k) * w_out..(taps.start + k + 1) * w_out];
            for (d, s) in dst.iter_mut().zip(row) {
                *d += w * s;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn identity_size_is_exact() {
        let src = [0.1, 0.7, 0.3, 0.9, 0.5, 0.2];
        assert_eq!(resize_triangle(&src, 3, 2, 3, 2), src.to_vec());
    }

    #[test]
    fn halving_matches_hand_computed_weights() {
        // scale 2, support 2. Output 0 (centre 1.0): taps 0,1,2 with raw
        // weights 0.75, 0.75, 0.25 → 3/7, 3/7, 1/7. Output 1 (centre 3.0):
        // taps 1,2,3 → 1/7, 3/7, 3/7.
        let out = resize_triangle(&[0.0, 1.0, 2.0, 3.0], 4, 1, 2, 1);
        close(&out, &[5.0 / 7.0, 16.0 / 7.0]);
    }

    #[test]
    fn doubling_is_half_pixel_bilinear() {
        // scale 0.5, support 1: centres 0.25, 0.75, 1.25, 1.75.
        let out = resize_triangle(&[0.0, 1.0], 2, 1, 4, 1);
        close(&out, &[0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn vertical_axis_uses_the_same_rule() {
        let out = resize_triangle(&[0.0, 1.0, 2.0, 3.0], 1, 4, 1, 2);
        close(&out, &[5.0 / 7.0, 16.0 / 7.0]);
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![0.42f32; 7 * 5];
        for (w, h) in [(3, 2), (11, 13), (1, 1)] {
            let out = resize_triangle(&src, 7, 5, w, h);
            assert!(out.iter().all(|v| (v - 0.42).abs() < 1e-6));
        }
    }
}
