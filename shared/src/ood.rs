//! Out-of-distribution scores, the same arithmetic on host and device, on the
//! pooled embedding (mean of the `features` map over positions):
//!
//! - `mahalanobis-normalised` (shipped since bundle 1.2): the L2-normalised
//!   embedding's squared Mahalanobis distance to the nearest class mean, with
//!   one shared within-class covariance (Lee et al., NeurIPS 2018). Chosen by
//!   measurement (`tumorxai bench ood`, README): best ROC area against
//!   other body parts, planes, montages and damaged slices.
//! - `centroid-cosine`: `1 − max cosine(embedding, class centroid)`, 0 on a
//!   centroid, up to 2 (bundles 1.0–1.1).
//!
//! Higher is more unusual; the threshold ships in the bundle manifest, set at
//! a percentile of held-out images' scores.

use serde::{Deserialize, Serialize};

use crate::bundle::{BundleError, OodCalibration};

pub const METHOD_COSINE: &str = "centroid-cosine";
pub const METHOD_MAHALANOBIS: &str = "mahalanobis-normalised";

/// Pooled embedding of features `[C, h, w]` (row-major).
pub fn pooled_embedding(features: &[f32], channels: usize) -> Vec<f32> {
    let n = features.len() / channels.max(1);
    (0..channels)
        .map(|c| {
            let plane = &features[c * n..(c + 1) * n];
            (plane.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64) as f32
        })
        .collect()
}

/// `v / |v|` (zeros stay zeros).
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm <= 0.0 {
        return v.to_vec();
    }
    v.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
}

/// `1 − max_k cos(embedding, centroid_k)`; centroids are unit vectors.
pub fn ood_score(embedding: &[f32], centroids: &[Vec<f32>]) -> f32 {
    let e = normalised(embedding);
    let best = centroids
        .iter()
        .map(|c| {
            c.iter()
                .zip(&e)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>()
        })
        .fold(f64::NEG_INFINITY, f64::max);
    if best.is_finite() {
        (1.0 - best) as f32
    } else {
        2.0
    }
}

/// Unit centroids of embeddings grouped by label (`classes` of them; a class
/// with no embedding gets a zero vector, which matches nothing).
pub fn class_centroids(embeddings: &[Vec<f32>], labels: &[usize], classes: usize) -> Vec<Vec<f32>> {
    let dim = embeddings.first().map_or(0, Vec::len);
    let mut sums = vec![vec![0f64; dim]; classes];
    for (e, &label) in embeddings.iter().zip(labels) {
        if label < classes {
            for (s, &v) in sums[label].iter_mut().zip(&normalised(e)) {
                *s += f64::from(v);
            }
        }
    }
    sums.iter()
        .map(|s| normalised(&s.iter().map(|&v| v as f32).collect::<Vec<_>>()))
        .collect()
}

/// Class-conditional Gaussians with one shared covariance, as the Mahalanobis
/// score needs them: `means[k]` of length D and the D×D precision (inverse
/// covariance), row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassGaussians {
    pub means: Vec<Vec<f32>>,
    pub precision: Vec<f32>,
}

impl ClassGaussians {
    /// Bundle section bytes: the means (class-major), then the precision,
    /// all f32 little-endian.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.means
            .iter()
            .flatten()
            .chain(&self.precision)
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Parses [`Self::to_le_bytes`] for `classes` means of length `dim`;
    /// `None` unless the length is exact and every value finite.
    pub fn from_le_bytes(bytes: &[u8], classes: usize, dim: usize) -> Option<ClassGaussians> {
        let values = classes.checked_add(dim)?.checked_mul(dim)?;
        if bytes.len() != values.checked_mul(4)? {
            return None;
        }
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if !floats.iter().all(|v| v.is_finite()) {
            return None;
        }
        let (means, precision) = floats.split_at(classes * dim);
        // A precision matrix is symmetric with a positive diagonal; the fast
        // score relies on the symmetry.
        let scale = precision.iter().fold(0f32, |m, v| m.max(v.abs()));
        for i in 0..dim {
            if precision[i * dim + i] <= 0.0 {
                return None;
            }
            for j in 0..i {
                if (precision[i * dim + j] - precision[j * dim + i]).abs() > 1e-5 * scale {
                    return None;
                }
            }
        }
        Some(ClassGaussians {
            means: means
                .chunks_exact(dim.max(1))
                .map(<[f32]>::to_vec)
                .collect(),
            precision: precision.to_vec(),
        })
    }
}

/// Squared Mahalanobis distance to the nearest class mean,
/// `min_k (e − μ_k)ᵀ P (e − μ_k)`; +∞ when the shapes disagree or nothing is
/// finite (doubt is out of distribution).
pub fn mahalanobis_score(embedding: &[f32], gaussians: &ClassGaussians) -> f32 {
    let d = embedding.len();
    if d == 0 || gaussians.precision.len() != d.saturating_mul(d) {
        return f32::INFINITY;
    }
    let mut best = f64::INFINITY;
    let mut diff = vec![0f64; d];
    for mean in &gaussians.means {
        if mean.len() != d {
            return f32::INFINITY;
        }
        for ((x, &e), &m) in diff.iter_mut().zip(embedding).zip(mean) {
            *x = f64::from(e) - f64::from(m);
        }
        let quad: f64 = gaussians
            .precision
            .chunks_exact(d)
            .zip(&diff)
            .map(|(row, &xi)| {
                xi * row
                    .iter()
                    .zip(&diff)
                    .map(|(&p, &xj)| f64::from(p) * xj)
                    .sum::<f64>()
            })
            .sum();
        if quad.is_finite() && quad < best {
            best = quad;
        }
    }
    best as f32
}

/// Free energy of the temperature-scaled logits, `−T·log Σ exp(z/T)`: low for
/// inputs the classifier knows, higher for unfamiliar ones. Non-finite
/// logits or temperature give +∞.
pub fn energy(logits: &[f32], temperature: f32) -> f32 {
    let t = f64::from(temperature);
    if logits.is_empty() || !(t.is_finite() && t > 0.0) || logits.iter().any(|z| !z.is_finite()) {
        return f32::INFINITY;
    }
    let scaled: Vec<f64> = logits.iter().map(|&z| f64::from(z) / t).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
    (-t * lse) as f32
}

/// A bundle's out-of-distribution score, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum OodScorer {
    Cosine {
        centroids: Vec<Vec<f32>>,
    },
    /// On the L2-normalised embedding. `p_mu[k] = P μ_k` and
    /// `mu_p_mu[k] = μ_kᵀ P μ_k` are precomputed, so a score costs one
    /// D×D product instead of one per class:
    /// `(e − μ)ᵀP(e − μ) = eᵀPe − 2 eᵀPμ + μᵀPμ` (P symmetric).
    Mahalanobis {
        gaussians: ClassGaussians,
        p_mu: Vec<Vec<f64>>,
        mu_p_mu: Vec<f64>,
    },
}

fn mat_vec(matrix: &[f32], v: &[f64]) -> Vec<f64> {
    matrix
        .chunks_exact(v.len().max(1))
        .map(|row| row.iter().zip(v).map(|(&p, &x)| f64::from(p) * x).sum())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl OodScorer {
    pub fn mahalanobis(gaussians: ClassGaussians) -> OodScorer {
        let (p_mu, mu_p_mu) = gaussians
            .means
            .iter()
            .map(|mean| {
                let mu: Vec<f64> = mean.iter().map(|&v| f64::from(v)).collect();
                let p_mu = mat_vec(&gaussians.precision, &mu);
                let mu_p_mu = dot(&mu, &p_mu);
                (p_mu, mu_p_mu)
            })
            .unzip();
        OodScorer::Mahalanobis {
            gaussians,
            p_mu,
            mu_p_mu,
        }
    }

    /// The scorer a verified bundle describes: its manifest calibration and,
    /// for Mahalanobis, the statistics section (already hash-checked).
    pub fn from_calibration(
        calibration: &OodCalibration,
        statistics: Option<&[u8]>,
    ) -> Result<OodScorer, BundleError> {
        let invalid = |why: &str| BundleError::Invalid(format!("ood calibration: {why}"));
        match (
            calibration.method.as_str(),
            &calibration.gaussians,
            statistics,
        ) {
            (METHOD_COSINE, None, None) => Ok(OodScorer::Cosine {
                centroids: calibration.centroids.clone(),
            }),
            (METHOD_MAHALANOBIS, Some(layout), Some(bytes)) => {
                let gaussians = ClassGaussians::from_le_bytes(
                    bytes,
                    layout.classes as usize,
                    layout.dim as usize,
                )
                .ok_or_else(|| {
                    invalid("statistics section has the wrong size or non-finite values")
                })?;
                Ok(OodScorer::mahalanobis(gaussians))
            }
            (METHOD_COSINE | METHOD_MAHALANOBIS, _, _) => Err(invalid(
                "statistics section present or missing against the method",
            )),
            (other, _, _) => Err(invalid(&format!("unknown method {other:?}"))),
        }
    }

    /// Embedding length the scorer expects.
    pub fn dim(&self) -> usize {
        match self {
            OodScorer::Cosine { centroids } => centroids.first().map_or(0, Vec::len),
            OodScorer::Mahalanobis { p_mu, .. } => p_mu.first().map_or(0, Vec::len),
        }
    }

    /// Score of a pooled embedding (higher = more unusual); +∞ for a
    /// misshapen or non-finite embedding.
    pub fn score(&self, embedding: &[f32]) -> f32 {
        if embedding.len() != self.dim() || embedding.iter().any(|v| !v.is_finite()) {
            return f32::INFINITY;
        }
        match self {
            OodScorer::Cosine { centroids } => ood_score(embedding, centroids),
            OodScorer::Mahalanobis {
                gaussians,
                p_mu,
                mu_p_mu,
            } => {
                let e: Vec<f64> = normalised(embedding)
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let e_p_e = dot(&e, &mat_vec(&gaussians.precision, &e));
                let best = p_mu
                    .iter()
                    .zip(mu_p_mu)
                    .map(|(pm, mpm)| e_p_e - 2.0 * dot(&e, pm) + mpm)
                    .filter(|q| q.is_finite())
                    .fold(f64::INFINITY, f64::min);
                // Rounding can take a distance of ~0 just below zero; a
                // clearly negative one means the precision is not positive
                // definite: doubt, not "in distribution".
                if best < -1e-3 {
                    f32::INFINITY
                } else {
                    best.max(0.0) as f32
                }
            }
        }
    }
}

/// The value below which `fraction` of `scores` lie (nearest rank).
pub fn percentile(scores: &[f32], fraction: f64) -> f32 {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f32::total_cmp);
    if sorted.is_empty() {
        return f32::NAN;
    }
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_and_scores_by_hand() {
        // Two channels over 2 positions: means 2 and 0.
        assert_eq!(pooled_embedding(&[1.0, 3.0, -1.0, 1.0], 2), vec![2.0, 0.0]);
        let centroids = class_centroids(
            &[vec![2.0, 0.0], vec![4.0, 0.0], vec![0.0, 3.0]],
            &[0, 0, 1],
            3,
        );
        assert_eq!(centroids[0], vec![1.0, 0.0]);
        assert_eq!(centroids[1], vec![0.0, 1.0]);
        assert_eq!(centroids[2], vec![0.0, 0.0]);
        assert!(ood_score(&[5.0, 0.0], &centroids).abs() < 1e-7);
        // 45° from both centroids: 1 − cos 45°.
        let s = ood_score(&[1.0, 1.0], &centroids);
        assert!((s - (1.0 - std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-6);
        assert!((ood_score(&[-1.0, 0.0], &centroids) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn mahalanobis_by_hand() {
        // Means (0,0) and (4,0); precision diag(1, 1/4) (variances 1 and 4).
        let g = ClassGaussians {
            means: vec![vec![0.0, 0.0], vec![4.0, 0.0]],
            precision: vec![1.0, 0.0, 0.0, 0.25],
        };
        // (1, 2): to mean 0: 1 + 4/4 = 2; to mean 1: 9 + 1 = 10 → 2.
        assert_eq!(mahalanobis_score(&[1.0, 2.0], &g), 2.0);
        // (3, 0): 9 vs 1 → 1.
        assert_eq!(mahalanobis_score(&[3.0, 0.0], &g), 1.0);
        // Off-diagonal precision [[2, 1], [1, 2]] at (1, −1) from 0: 2 − 1 − 1 + 2 = 2.
        let g = ClassGaussians {
            means: vec![vec![0.0, 0.0]],
            precision: vec![2.0, 1.0, 1.0, 2.0],
        };
        assert_eq!(mahalanobis_score(&[1.0, -1.0], &g), 2.0);
        assert_eq!(mahalanobis_score(&[1.0, 1.0], &g), 6.0);
        // Shapes that disagree, and NaN, are out of distribution.
        assert_eq!(mahalanobis_score(&[1.0], &g), f32::INFINITY);
        assert_eq!(mahalanobis_score(&[f32::NAN, 0.0], &g), f32::INFINITY);
    }

    #[test]
    fn scorer_matches_the_direct_form_and_normalises() {
        let g = ClassGaussians {
            means: vec![vec![0.6, 0.8], vec![1.0, 0.0]],
            precision: vec![2.0, 1.0, 1.0, 2.0],
        };
        let scorer = OodScorer::mahalanobis(g.clone());
        // (3, 4) normalises to (0.6, 0.8): on the first mean.
        assert!(scorer.score(&[3.0, 4.0]).abs() < 1e-6);
        // (0, 5) → (0, 1): to mean 0, d = (−0.6, 0.2): 2·0.36 − 2·0.12 + 2·0.04 = 0.56;
        // to mean 1, d = (−1, 1): 2 − 2 + 2 = 2 → 0.56.
        assert!((scorer.score(&[0.0, 5.0]) - 0.56).abs() < 1e-6);
        for e in [[0.3f32, -0.9], [-1.0, 0.2], [0.7, 0.7]] {
            let direct = mahalanobis_score(&normalised(&e), &g);
            assert!((scorer.score(&e) - direct).abs() < 1e-5, "{e:?}");
        }
        assert_eq!(scorer.score(&[1.0]), f32::INFINITY);
        assert_eq!(scorer.score(&[f32::NAN, 1.0]), f32::INFINITY);
        let bytes = g.to_le_bytes();
        assert_eq!(bytes.len(), (2 * 2 + 4) * 4);
        assert_eq!(&bytes[..4], &0.6f32.to_le_bytes());
        assert_eq!(ClassGaussians::from_le_bytes(&bytes, 2, 2), Some(g.clone()));
        assert_eq!(ClassGaussians::from_le_bytes(&bytes[1..], 2, 2), None);
        assert_eq!(ClassGaussians::from_le_bytes(&bytes, 3, 2), None);
        let mut nan = bytes.clone();
        nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(ClassGaussians::from_le_bytes(&nan, 2, 2), None);
        // Precision [[2, 1], [0, 2]] is not symmetric; [[0, 0], [0, 1]] has a
        // zero on its diagonal: both refused.
        for precision in [[2.0f32, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 1.0]] {
            let mut g2 = g.clone();
            g2.precision = precision.to_vec();
            assert_eq!(ClassGaussians::from_le_bytes(&g2.to_le_bytes(), 2, 2), None);
        }
        // Indefinite precision [[1, 2], [2, 1]] (eigenvalues 3, −1) gives a
        // negative distance along (1, −1): doubt, never "in distribution".
        let indefinite = OodScorer::mahalanobis(ClassGaussians {
            means: vec![vec![0.0, 0.0]],
            precision: vec![1.0, 2.0, 2.0, 1.0],
        });
        assert_eq!(indefinite.score(&[1.0, -1.0]), f32::INFINITY);
        assert_eq!(ClassGaussians::from_le_bytes(&[], usize::MAX, 2), None);
    }

    #[test]
    fn energy_by_hand() {
        // Two equal logits 0: −log 2.
        assert!((energy(&[0.0, 0.0], 1.0) + std::f32::consts::LN_2).abs() < 1e-7);
        // T = 2, logits (2, 0): −2·log(e + 1) = −2.626523.
        assert!((energy(&[2.0, 0.0], 2.0) + 2.626_523).abs() < 1e-5);
        // Large logits stay finite (max subtracted): ≈ −1000.
        assert!((energy(&[1000.0, -1000.0], 1.0) + 1000.0).abs() < 1e-3);
        assert_eq!(energy(&[f32::NAN, 0.0], 1.0), f32::INFINITY);
        assert_eq!(energy(&[1.0], 0.0), f32::INFINITY);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let s = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 0.4), 2.0);
        assert_eq!(percentile(&s, 0.99), 5.0);
    }
}
