//! Perceptual hash (pHash) of a slice, computed on the shared contract's
//! luminance so it sees exactly what training sees: resize to 32×32 (the
//! contract's triangle filter), 2-D DCT-II, keep the 8×8 lowest frequencies
//! without the DC term's row and column bias, threshold at their median.
//! Near-duplicate slices (re-encoded, slightly shifted or windowed) differ in
//! few bits; unrelated slices in about half of them.

use tumorxai_shared::resize::resize_triangle;
use tumorxai_shared::Luminance;

const N: usize = 32;
const K: usize = 8;

fn dct_matrix() -> Vec<f64> {
    let mut m = vec![0f64; K * N];
    for u in 0..K {
        for x in 0..N {
            m[u * N + x] =
                ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / (2 * N) as f64).cos();
        }
    }
    m
}

/// 64-bit pHash; bit `8u + v` is set when DCT coefficient (u, v) exceeds the
/// median of the 64 low-frequency coefficients (DC excluded from the median).
pub fn phash(lum: &Luminance) -> u64 {
    let small = resize_triangle(&lum.data, lum.width as usize, lum.height as usize, N, N);
    let m = dct_matrix();
    // Rows first: R[y][v] = Σx small[y][x] · m[v][x]; then columns: C[u][v] = Σy m[u][y] · R[y][v].
    let mut rows = vec![0f64; N * K];
    for y in 0..N {
        for v in 0..K {
            rows[y * K + v] = (0..N)
                .map(|x| f64::from(small[y * N + x]) * m[v * N + x])
                .sum();
        }
    }
    let mut coeffs = [0f64; K * K];
    for u in 0..K {
        for v in 0..K {
            coeffs[u * K + v] = (0..N).map(|y| m[u * N + y] * rows[y * K + v]).sum();
        }
    }
    let mut ac: Vec<f64> = coeffs[1..].to_vec();
    ac.sort_by(f64::total_cmp);
    let median = (ac[31] + ac[32]) / 2.0;
    coeffs
        .iter()
        .enumerate()
        .fold(0u64, |h, (i, &c)| if c > median { h | (1 << i) } else { h })
}

pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32, f: impl Fn(f32, f32) -> f32) -> Luminance {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.push(f(x as f32 / w as f32, y as f32 / h as f32));
            }
        }
        Luminance::new(w, h, data)
    }

    #[test]
    fn same_picture_at_other_resolution_and_brightness_hashes_alike() {
        let disc = |x: f32, y: f32| {
            if (x - 0.45).powi(2) + (y - 0.5).powi(2) < 0.1 {
                0.8
            } else {
                0.1
            }
        };
        let a = phash(&pattern(256, 256, disc));
        let b = phash(&pattern(200, 200, |x, y| disc(x, y) * 0.9 + 0.02));
        assert!(hamming(a, b) <= 4, "{}", hamming(a, b));
    }

    #[test]
    fn different_pictures_hash_far_apart() {
        let a = phash(&pattern(
            64,
            64,
            |x, y| if x < 0.5 { 1.0 } else { 0.0 } + 0.0 * y,
        ));
        let b = phash(&pattern(
            64,
            64,
            |x, y| if y < 0.5 { 1.0 } else { 0.0 } + 0.0 * x,
        ));
        assert!(hamming(a, b) >= 16, "{}", hamming(a, b));
        assert_eq!(hamming(0b1011, 0b0001), 2);
    }
}
