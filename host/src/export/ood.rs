//! Out-of-distribution calibration for the bundle manifest: the
//! Mahalanobis statistics (class means and shared precision of the
//! L2-normalised pooled embeddings of the training side, tch model, eval
//! mode) and the threshold at a percentile of *held-out* images' scores as
//! the device computes them (`tumorxai_shared::ood` on tract's features, in
//! every execution form the bundle may run in). Training images score lower
//! than unseen ones — a threshold set on them sends clean slices to REVIEW —
//! and int8 features drift from fp32 ones. Why Mahalanobis: `bench ood`.

use anyhow::Result;
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};
use tumorxai_shared::bundle::{OodCalibration, OodGaussians};
use tumorxai_shared::ood::{
    class_centroids, normalised, percentile, ClassGaussians, OodScorer, METHOD_MAHALANOBIS,
};

use crate::export::bundle::TrainedRun;
use crate::split::Side;
use crate::train::evaluate::{embed, EvaluationSet};

/// Fraction of held-out images the threshold keeps in distribution.
pub const OOD_PERCENTILE: f64 = 0.995;

/// The manifest's calibration and the bundle's statistics section.
pub struct OodFit {
    pub calibration: OodCalibration,
    pub statistics: Vec<u8>,
}

/// Statistics from the training side; threshold from `held_out_scores`
/// (given the scorer, the scores of the held-out images in every form).
/// Without held-out scores (a split with no validation side) the training
/// images' own scores set the threshold, and the manifest says so
/// (`held_out_images: 0`).
pub fn calibrate_ood(
    run: &TrainedRun,
    held_out_scores: impl FnOnce(&OodScorer) -> Result<(Vec<f32>, u32)>,
) -> Result<OodFit> {
    let state = &run.state;
    let set = run
        .load_side(Side::Train)?
        .ok_or_else(|| anyhow::anyhow!("the run's split has no training images"))?;
    let eval = EvaluationSet {
        set: &set,
        spec: &state.spec,
    };
    let embeddings = embed(&run.model, &eval, 64)?;
    let labels = set.label_vec();
    let classes = state.classes.len();
    let unit: Vec<Vec<f32>> = embeddings.iter().map(|e| normalised(e)).collect();
    let gaussians = fit_gaussians(&unit, &labels, classes)?;
    let statistics = gaussians.to_le_bytes();
    let dim = gaussians.precision.len().isqrt();
    let scorer = OodScorer::mahalanobis(gaussians);
    let (held_out, held_out_images) = held_out_scores(&scorer)?;
    let scores: Vec<f32> = if held_out.is_empty() {
        embeddings.iter().map(|e| scorer.score(e)).collect()
    } else {
        held_out
    };
    let threshold = percentile(&scores, OOD_PERCENTILE);
    anyhow::ensure!(
        threshold.is_finite(),
        "the out-of-distribution threshold is not finite: the model's features are not usable"
    );
    Ok(OodFit {
        calibration: OodCalibration {
            method: METHOD_MAHALANOBIS.to_string(),
            centroids: class_centroids(&embeddings, &labels, classes),
            threshold,
            percentile: OOD_PERCENTILE,
            training_images: embeddings.len() as u32,
            held_out_images,
            gaussians: Some(OodGaussians {
                classes: classes as u32,
                dim: dim as u32,
                sha256: hex::encode(Sha256::digest(&statistics)),
            }),
        },
        statistics,
    })
}

/// Covariance shrinkage towards a scaled identity (this fraction of the mean
/// variance is added to the diagonal): keeps the precision finite and stable
/// when the embedding has more dimensions than the training set supports.
pub const MAHALANOBIS_SHRINKAGE: f64 = 0.01;

/// Class means of `embeddings` and the precision of their shared
/// within-class covariance (maximum likelihood, shrunk by
/// [`MAHALANOBIS_SHRINKAGE`]), computed in f64 by libtorch.
pub fn fit_gaussians(
    embeddings: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
) -> Result<ClassGaussians> {
    let d = embeddings.first().map_or(0, Vec::len);
    anyhow::ensure!(
        d > 0 && embeddings.iter().all(|e| e.len() == d),
        "embeddings of unequal or zero length"
    );
    anyhow::ensure!(embeddings.len() == labels.len(), "one label per embedding");
    let flat: Vec<f64> = embeddings.iter().flatten().map(|&v| f64::from(v)).collect();
    let x = Tensor::from_slice(&flat).reshape([embeddings.len() as i64, d as i64]);
    let mut means = Vec::with_capacity(classes);
    let mut centred = x.zeros_like();
    for class in 0..classes {
        let rows: Vec<i64> = (0..labels.len())
            .filter(|&i| labels[i] == class)
            .map(|i| i as i64)
            .collect();
        anyhow::ensure!(
            !rows.is_empty(),
            "class {class} has no training image: its out-of-distribution statistics cannot be fitted"
        );
        let index = Tensor::from_slice(&rows);
        let members = x.index_select(0, &index);
        let mean = members.mean_dim(0, true, Kind::Double);
        let _ = centred.index_copy_(0, &index, &(members - &mean));
        means.push(Vec::<f32>::try_from(
            mean.flatten(0, -1).to_kind(Kind::Float),
        )?);
    }
    let n = embeddings.len() as f64;
    let covariance = centred.transpose(0, 1).matmul(&centred) / n;
    let mean_variance = covariance.trace().double_value(&[]) / d as f64;
    let ridge = Tensor::eye(d as i64, (Kind::Double, tch::Device::Cpu))
        * (MAHALANOBIS_SHRINKAGE * mean_variance.max(f64::MIN_POSITIVE));
    let precision = Tensor::linalg_inv(&(covariance + ridge));
    let precision = Vec::<f32>::try_from(precision.flatten(0, -1).to_kind(Kind::Float))?;
    anyhow::ensure!(
        precision.iter().all(|v| v.is_finite()),
        "the embedding covariance could not be inverted"
    );
    Ok(ClassGaussians { means, precision })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussians_by_hand() {
        // Class 0 at (±1, 0), class 1 at (10, ±2): means (0,0), (10,0);
        // within-class covariance diag((1+1+0+0)/4, (0+0+4+4)/4) = diag(0.5, 2);
        // mean variance 1.25, ridge 0.0125.
        let e = vec![
            vec![-1.0, 0.0],
            vec![1.0, 0.0],
            vec![10.0, 2.0],
            vec![10.0, -2.0],
        ];
        let g = fit_gaussians(&e, &[0, 0, 1, 1], 2).unwrap();
        assert_eq!(g.means, vec![vec![0.0, 0.0], vec![10.0, 0.0]]);
        let expected = [1.0 / 0.5125, 0.0, 0.0, 1.0 / 2.0125];
        for (got, want) in g.precision.iter().zip(expected) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
