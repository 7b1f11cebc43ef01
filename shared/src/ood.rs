//! Out-of-distribution score, the same arithmetic on host and device: the
//! pooled embedding (mean of the `features` map over positions), L2-normalised,
//! against each class centroid of the training set (normalised mean of the
//! training embeddings); the score is `1 − max cosine similarity`, 0 for an
//! input that sits on a centroid, up to 2. The threshold ships in the bundle
//! manifest, set at a percentile of the training set's own scores.

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
    fn percentile_is_nearest_rank() {
        let s = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 0.4), 2.0);
        assert_eq!(percentile(&s, 0.99), 5.0);
    }
}
