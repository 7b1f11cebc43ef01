//! EigenCAM: the first principal component of the last conv block's
//! activations as a saliency map. For activations A (h·w positions × C
//! channels), centred per channel, the map is A's first left singular vector
//! (found by power iteration on the small h·w × h·w Gram matrix A·Aᵀ), with
//! its sign fixed so it correlates positively with the mean activation map
//! (the reference implementation's arbitrary sign makes maps invert or
//! vanish), then ReLU and normalisation to [0, 1].

/// Largest feature map (h·w positions) the device computes EigenCAM for: the
/// Gram matrix is (h·w)² and its squarings (h·w)³, so this bounds the cost
/// (32² positions: 8 MiB and ~10⁹ multiply-adds). ResNets at 224² give 7².
pub const MAX_POSITIONS: usize = 32 * 32;
/// Largest channel count accepted (ResNet-50 has 2048).
pub const MAX_CHANNELS: usize = 8192;

/// An EigenCAM map and how clearly its component stands out.
#[derive(Debug, Clone, PartialEq)]
pub struct EigenCam {
    /// `h × w` values in [0, 1].
    pub map: Vec<f32>,
    /// `(λ1 − λ2) / λ1` for the two largest eigenvalues of the Gram matrix
    /// (the squared singular values of the centred activations): near 0 the
    /// first two components are nearly tied, and a small perturbation (int8
    /// weights, another kernel) can swap them — the map is then arbitrary.
    pub eigengap: f64,
    /// |Pearson correlation| of the component with the mean activation map,
    /// which fixes its sign: near 0 the sign is a coin toss that a small
    /// perturbation flips, and the map shows the inverse of what it should.
    pub sign_certainty: f64,
}

/// EigenCAM of features `[C, h, w]` (row-major); returns an `h × w` map in [0, 1].
pub fn eigencam(features: &[f32], channels: usize, height: usize, width: usize) -> Vec<f32> {
    eigencam_with_gap(features, channels, height, width).map
}

/// λ2 of the PSD matrix `gram` (n×n) given its top eigenpair: power
/// iteration on `gram − λ1·u·uᵀ`, Rayleigh quotient.
fn second_eigenvalue(gram: &[f64], n: usize, u: &[f64], lambda1: f64) -> f64 {
    let deflated = |v: &[f64]| -> Vec<f64> {
        let along = dot(u, v);
        (0..n)
            .map(|i| dot(&gram[i * n..(i + 1) * n], v) - lambda1 * u[i] * along)
            .collect()
    };
    // A start vector with no component along u.
    let mut v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 1.618).sin()).collect();
    let along = dot(u, &v);
    v.iter_mut().zip(u).for_each(|(x, &ui)| *x -= along * ui);
    if !normalise(&mut v) {
        return 0.0;
    }
    let mut lambda = 0.0;
    for _ in 0..300 {
        let mut next = deflated(&v);
        let estimate = dot(&v, &next);
        if !normalise(&mut next) {
            return 0.0;
        }
        let converged = (estimate - lambda).abs() <= 1e-9 * lambda1.abs().max(1e-300);
        lambda = estimate;
        v = next;
        if converged {
            break;
        }
    }
    lambda.max(0.0)
}

/// EigenCAM with its eigengap.
pub fn eigencam_with_gap(
    features: &[f32],
    channels: usize,
    height: usize,
    width: usize,
) -> EigenCam {
    let n = height * width;
    assert_eq!(
        features.len(),
        channels * n,
        "features do not match their shape"
    );
    // A[p][c] as f64, centred per channel.
    let mut a = vec![0f64; n * channels];
    for c in 0..channels {
        let plane = &features[c * n..(c + 1) * n];
        let mean = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        for p in 0..n {
            a[p * channels + c] = f64::from(plane[p]) - mean;
        }
    }
    // Gram matrix G = A·Aᵀ (n × n).
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        let row_i = &a[i * channels..(i + 1) * channels];
        for j in i..n {
            let d = dot(row_i, &a[j * channels..(j + 1) * channels]);
            gram[i * n + j] = d;
            gram[j * n + i] = d;
        }
    }
    // G⁸ by three squarings (scaled to stay in range): the same top
    // eigenvector (G is positive semi-definite), with the eigenvalue gap
    // raised to the 8th power, so power iteration needs ~8× fewer steps.
    let mut power = gram.clone();
    for _ in 0..3 {
        power = square(&power, n);
        let max = power.iter().fold(0f64, |m, v| m.max(v.abs()));
        if max > 0.0 {
            power.iter_mut().for_each(|v| *v /= max);
        }
    }
    // Mean activation map (uncentred), for the sign and as the start vector.
    let mean_map: Vec<f64> = (0..n)
        .map(|p| {
            (0..channels)
                .map(|c| f64::from(features[c * n + p]))
                .sum::<f64>()
                / channels as f64
        })
        .collect();
    let mut u: Vec<f64> = mean_map
        .iter()
        .enumerate()
        .map(|(i, m)| m + 1e-3 * (1.0 + (i as f64 * 0.618).sin()))
        .collect();
    normalise(&mut u);
    for _ in 0..1000 {
        let mut next: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| power[i * n + j] * u[j]).sum())
            .collect();
        if !normalise(&mut next) {
            // No variation at all: nothing to explain.
            return EigenCam {
                map: vec![0.0; n],
                eigengap: 0.0,
                sign_certainty: 0.0,
            };
        }
        let change: f64 = next
            .iter()
            .zip(&u)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        u = next;
        if change < 1e-10 {
            break;
        }
    }
    let mean_of_map = mean_map.iter().sum::<f64>() / n as f64;
    let mean_of_u = u.iter().sum::<f64>() / n as f64;
    let (mut covariance, mut var_u, mut var_mean) = (0f64, 0f64, 0f64);
    for (x, m) in u.iter().zip(&mean_map) {
        let (dx, dm) = (x - mean_of_u, m - mean_of_map);
        covariance += dx * dm;
        var_u += dx * dx;
        var_mean += dm * dm;
    }
    if covariance < 0.0 {
        u.iter_mut().for_each(|x| *x = -*x);
    }
    let sign_certainty = if var_u > 0.0 && var_mean > 0.0 {
        (covariance.abs() / (var_u * var_mean).sqrt()).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let gu: Vec<f64> = (0..n).map(|i| dot(&gram[i * n..(i + 1) * n], &u)).collect();
    let lambda1 = dot(&u, &gu);
    let eigengap = if lambda1 > 0.0 {
        ((lambda1 - second_eigenvalue(&gram, n, &u, lambda1)) / lambda1).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let max = u.iter().copied().fold(0.0f64, f64::max);
    let map = u
        .iter()
        .map(|&x| {
            if max > 0.0 {
                (x.max(0.0) / max) as f32
            } else {
                0.0
            }
        })
        .collect();
    EigenCam {
        map,
        eigengap,
        sign_certainty,
    }
}

/// Dot product with four independent accumulators (lets the compiler vectorise).
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for k in 0..4 {
            acc[k] += a[k] * b[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// M·M for a symmetric n × n matrix M (row-major).
fn square(m: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            // Symmetric: column j of M is row j.
            let v = dot(&m[i * n..(i + 1) * n], &m[j * n..(j + 1) * n]);
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

fn normalise(v: &mut [f64]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm < 1e-300 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Bilinear upsampling (pixel centres, edges clamped) of an `h × w` map to `size × size`.
pub fn upsample(map: &[f32], height: usize, width: usize, size: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(size * size);
    let sample = |y: usize, x: usize| map[y.min(height - 1) * width + x.min(width - 1)];
    for oy in 0..size {
        let fy = ((oy as f32 + 0.5) * height as f32 / size as f32 - 0.5).max(0.0);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        for ox in 0..size {
            let fx = ((ox as f32 + 0.5) * width as f32 / size as f32 - 0.5).max(0.0);
            let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
            let top = sample(y0, x0) * (1.0 - tx) + sample(y0, x0 + 1) * tx;
            let bottom = sample(y0 + 1, x0) * (1.0 - tx) + sample(y0 + 1, x0 + 1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    /// Reference: direct SVD of the centred activation matrix.
    fn by_svd(features: &[f32], channels: usize, n: usize) -> Vec<f32> {
        let mut a = DMatrix::<f64>::zeros(n, channels);
        for c in 0..channels {
            let mean = (0..n).map(|p| f64::from(features[c * n + p])).sum::<f64>() / n as f64;
            for p in 0..n {
                a[(p, c)] = f64::from(features[c * n + p]) - mean;
            }
        }
        let svd = a.svd(true, false);
        let (best, _) = svd
            .singular_values
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (i, &s)| if s > b.1 { (i, s) } else { b });
        let u = svd.u.unwrap();
        let mut col: Vec<f64> = (0..n).map(|p| u[(p, best)]).collect();
        let mean_map: Vec<f64> = (0..n)
            .map(|p| {
                (0..channels)
                    .map(|c| f64::from(features[c * n + p]))
                    .sum::<f64>()
                    / channels as f64
            })
            .collect();
        let (mu, mm) = (
            col.iter().sum::<f64>() / n as f64,
            mean_map.iter().sum::<f64>() / n as f64,
        );
        let corr: f64 = col
            .iter()
            .zip(&mean_map)
            .map(|(x, m)| (x - mu) * (m - mm))
            .sum();
        if corr < 0.0 {
            col.iter_mut().for_each(|x| *x = -*x);
        }
        let max = col.iter().copied().fold(0.0, f64::max);
        col.iter().map(|&x| (x.max(0.0) / max) as f32).collect()
    }

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 10_000) as f32 / 10_000.0
            })
            .collect()
    }

    #[test]
    fn sign_certainty_is_the_correlation_with_the_mean_map() {
        // One row of 4 positions; P1 = [1, −1, 1, −1], P2 = [1, 1, −1, −1]
        // (orthogonal, both centred, |P|² = 4). Channels 3·P1, ±3·P1 and P2:
        // the first component is P1 (eigenvalue 72 against 4).
        let p1 = [1.0f32, -1.0, 1.0, -1.0];
        let p2 = [1.0f32, 1.0, -1.0, -1.0];
        let features = |second: f32| -> Vec<f32> {
            let mut f: Vec<f32> = p1.iter().map(|v| 3.0 * v).collect();
            f.extend(p1.iter().map(|v| second * v));
            f.extend(p2);
            f
        };
        // 3·P1 − 3·P1 cancel in the mean map, which is P2 / 3: orthogonal to
        // the component, so its sign is arbitrary.
        let tied = eigencam_with_gap(&features(-3.0), 3, 1, 4);
        assert!(tied.sign_certainty < 1e-6, "{tied:?}");
        // Mean map 2·P1 + P2/3: correlation 8 / √(4 · (16 + 4/9)) = 0.98639.
        let clear = eigencam_with_gap(&features(3.0), 3, 1, 4);
        assert!((clear.sign_certainty - 0.986_394).abs() < 1e-5, "{clear:?}");
        // Its sign follows the mean map: high where P1 is +1.
        assert_eq!(clear.map, vec![1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn matches_a_direct_svd() {
        for (channels, h, w, seed) in [(8, 3, 3, 1), (32, 7, 7, 2), (5, 4, 6, 3)] {
            let n = h * w;
            // A dominant spatial pattern shared by the channels, plus noise.
            let noise = pseudo_random(channels * n, seed);
            let features: Vec<f32> = (0..channels * n)
                .map(|i| {
                    let (c, p) = (i / n, i % n);
                    let blob = if p % w < w / 2 && p / w < h / 2 {
                        3.0
                    } else {
                        0.0
                    };
                    blob * (1.0 + c as f32 * 0.1) + 0.3 * noise[i]
                })
                .collect();
            let ours = eigencam(&features, channels, h, w);
            let reference = by_svd(&features, channels, n);
            for (a, b) in ours.iter().zip(&reference) {
                assert!((a - b).abs() < 1e-4, "{ours:?}\n{reference:?}");
            }
            // The sign is fixed: the bright blob is where the map is high.
            assert!(ours[0] > 0.5, "{ours:?}");
        }
    }

    /// (s0² − s1²) / s0² from nalgebra's singular values.
    fn gap_by_svd(features: &[f32], channels: usize, n: usize) -> f64 {
        let mut a = DMatrix::<f64>::zeros(n, channels);
        for c in 0..channels {
            let mean = (0..n).map(|p| f64::from(features[c * n + p])).sum::<f64>() / n as f64;
            for p in 0..n {
                a[(p, c)] = f64::from(features[c * n + p]) - mean;
            }
        }
        let mut s: Vec<f64> = a
            .svd(false, false)
            .singular_values
            .iter()
            .copied()
            .collect();
        s.sort_by(|x, y| y.total_cmp(x));
        let s1 = s.get(1).copied().unwrap_or(0.0);
        (s[0] * s[0] - s1 * s1) / (s[0] * s[0])
    }

    #[test]
    fn eigengap_matches_the_singular_values() {
        for (channels, h, w, seed, blob) in [
            (8, 3, 3, 1, 3.0f32),
            (32, 7, 7, 2, 3.0),
            (5, 4, 6, 3, 0.5),
            // Pure noise: the first two components are close.
            (64, 7, 7, 4, 0.0),
        ] {
            let n = h * w;
            let noise = pseudo_random(channels * n, seed);
            let features: Vec<f32> = (0..channels * n)
                .map(|i| {
                    let (c, p) = (i / n, i % n);
                    let inside = p % w < w / 2 && p / w < h / 2;
                    f32::from(u8::from(inside)) * blob * (1.0 + c as f32 * 0.1) + 0.3 * noise[i]
                })
                .collect();
            let ours = eigencam_with_gap(&features, channels, h, w).eigengap;
            let reference = gap_by_svd(&features, channels, n);
            assert!(
                (ours - reference).abs() < 1e-6,
                "{channels}×{h}×{w}: {ours} vs {reference}"
            );
        }
    }

    #[test]
    fn inverted_activations_still_point_at_the_active_region() {
        // One channel active in the top-left, another negatively correlated: the
        // map must highlight the region where activations are high on average.
        let (h, w) = (2, 2);
        let features = vec![5.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let map = eigencam(&features, 2, h, w);
        assert_eq!(map[0], 1.0, "{map:?}");
        assert!(map[1..].iter().all(|v| *v < 0.5), "{map:?}");
    }

    #[test]
    fn constant_features_give_an_empty_map() {
        assert_eq!(eigencam(&[1.0; 8], 2, 2, 2), vec![0.0; 4]);
    }

    #[test]
    fn upsampling_is_bilinear_with_clamped_edges() {
        let map = [0.0, 1.0];
        let up = upsample(&map, 1, 2, 4);
        // Output centres at x = 0.25·2 − 0.5 … → −0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped).
        assert_eq!(&up[0..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(up.len(), 16);
    }
}
