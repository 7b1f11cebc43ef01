//! EigenCAM with libtorch's SVD: features `[C, h, w]` → activations A
//! (h·w × C), centred per channel; the map is A's first left singular vector,
//! sign fixed to correlate positively with the mean activation map, ReLU,
//! divided by its maximum. Same definition as the device's EigenCAM, computed
//! a different way (full SVD in f64 instead of power iteration).

use anyhow::{Context, Result};
use tch::{Kind, Tensor};

/// EigenCAM of one feature map `[C, h, w]`; returns `h·w` values in [0, 1].
pub fn eigencam(features: &Tensor) -> Result<Vec<f32>> {
    Ok(eigencam_with_gap(features)?.map)
}

/// An EigenCAM map and how well its component is separated from the next.
#[derive(Debug, Clone, PartialEq)]
pub struct EigenMap {
    /// `h·w` values in [0, 1].
    pub map: Vec<f32>,
    /// `(λ1 − λ2) / λ1` for the two largest eigenvalues of the centred
    /// activations' covariance (λ = singular value²): 1 when one component
    /// dominates, near 0 when the first two are nearly tied and the map
    /// could as well be the other one.
    pub eigengap: f64,
}

/// EigenCAM with its eigengap.
pub fn eigencam_with_gap(features: &Tensor) -> Result<EigenMap> {
    let (c, h, w) = features
        .size3()
        .context("EigenCAM needs features [C, h, w]")?;
    let a = features
        .to_kind(Kind::Double)
        .reshape([c, h * w])
        .transpose(0, 1);
    let centred = &a - a.mean_dim(0, true, Kind::Double);
    let (u, s, _) = centred.f_svd(true, true)?;
    let s0 = s.double_value(&[0]);
    if s0 < 1e-12 {
        return Ok(EigenMap {
            map: vec![0.0; (h * w) as usize],
            eigengap: 0.0,
        });
    }
    let s1 = if s.size()[0] > 1 {
        s.double_value(&[1])
    } else {
        0.0
    };
    let eigengap = (s0 * s0 - s1 * s1) / (s0 * s0);
    let mut map = u.select(1, 0);
    let mean_map = a.mean_dim(1, false, Kind::Double);
    let correlation = ((&map - map.mean(Kind::Double)) * (&mean_map - mean_map.mean(Kind::Double)))
        .sum(Kind::Double)
        .double_value(&[]);
    if correlation < 0.0 {
        map = -map;
    }
    let map = map.relu();
    let max = map.max().double_value(&[]);
    let map = if max > 0.0 { map / max } else { map };
    Ok(EigenMap {
        map: Vec::<f64>::try_from(map)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        eigengap,
    })
}

/// Pearson correlation of two maps (0 when either is constant).
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        cov += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_one_features_give_their_spatial_pattern() {
        // features[c][p] = g[c]·m[p]: after centring, A = (m − mean m)·gᵀ, so
        // the first left singular vector is ±(m − mean m); the sign fix picks +.
        let m = [0.0f32, 1.0, 3.0, 2.0];
        let g = [1.0f32, 2.0, 0.5];
        let data: Vec<f32> = g
            .iter()
            .flat_map(|gc| m.iter().map(move |mp| gc * mp))
            .collect();
        let features = Tensor::from_slice(&data).reshape([3, 2, 2]);
        let map = eigencam(&features).unwrap();
        // (m − 1.5) = [−1.5, −0.5, 1.5, 0.5] → ReLU → [0, 0, 1.5, 0.5] / 1.5.
        let expected = [0.0, 0.0, 1.0, 1.0 / 3.0];
        for (a, b) in map.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{map:?}");
        }
    }

    #[test]
    fn constant_features_explain_nothing() {
        let map = eigencam(&Tensor::ones([4, 3, 3], (Kind::Float, tch::Device::Cpu))).unwrap();
        assert!(map.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn correlation_by_hand() {
        assert!((correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((correlation(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}
