//! Collapse monitor of self-supervised pre-training, run after every epoch:
//! the spread of the L2-normalised backbone embeddings (per-dimension
//! standard deviation × √D, as in SimSiam's collapse study: ≈ 0 when every
//! image maps to one point) and, when labels exist, the weighted kNN
//! accuracy of a small labelled subset (training sample → validation side).

use anyhow::Result;
use tch::{Kind, Tensor};
use tumorxai_shared::PreprocessSpec;

use crate::data::LoadedSet;
use crate::metrics;
use crate::model::ResNet;
use crate::tensor::l2_normalize;
use crate::train::evaluate::{embed, EvaluationSet};
use crate::train::probe::{knn_scores, matrix};

/// Below this spread the embeddings have collapsed (a constant embedding
/// gives 0, rows spread evenly over the sphere give 1).
pub const COLLAPSE_SPREAD: f64 = 0.02;

/// What the monitor embeds every epoch.
pub struct MonitorSets {
    /// A sample of the pre-training images (its labels, when it has them,
    /// are the kNN memory).
    pub memory: LoadedSet,
    /// Labelled queries (the split's validation side), when labels exist.
    pub queries: Option<LoadedSet>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    pub embedding_spread: f64,
    pub knn_accuracy: Option<f64>,
    /// Labelled queries behind the kNN accuracy.
    pub knn_queries: usize,
}

/// Mean over dimensions of the standard deviation over rows of the
/// L2-normalised rows, × √D.
pub fn embedding_spread(rows: &Tensor) -> f64 {
    let d = rows.size().get(1).copied().unwrap_or(1).max(1);
    let x = rows.to_kind(Kind::Double);
    let x = l2_normalize(&x);
    x.std_dim(&[0i64][..], false, false)
        .mean(Kind::Double)
        .double_value(&[])
        * (d as f64).sqrt()
}

pub fn measure(
    backbone: &ResNet,
    sets: &MonitorSets,
    spec: &PreprocessSpec,
    knn_k: usize,
) -> Result<Health> {
    let memory = embed(
        backbone,
        &EvaluationSet {
            set: &sets.memory,
            spec,
        },
        64,
    )?;
    let spread = embedding_spread(&matrix(&memory, tch::Device::Cpu));
    let knn_accuracy = match &sets.queries {
        Some(queries) => {
            let query_rows = embed(backbone, &EvaluationSet { set: queries, spec }, 64)?;
            let classes = queries.classes.len();
            let scores = knn_scores(
                &memory,
                &sets.memory.label_vec(),
                &query_rows,
                classes,
                knn_k,
                0.07,
                tch::Device::Cpu,
            )?;
            Some(metrics::report(&scores, &queries.label_vec(), classes, 1.0).accuracy)
        }
        None => None,
    };
    Ok(Health {
        embedding_spread: spread,
        knn_accuracy,
        knn_queries: sets.queries.as_ref().map_or(0, LoadedSet::len),
    })
}

/// A warning when the run is collapsing: the embeddings shrink to a point,
/// or the kNN accuracy falls back to chance after an earlier epoch
/// (`best_knn`) was clearly above it (a run that has not learnt yet at
/// epoch 1 is not collapsing).
pub fn verdict(health: &Health, best_knn: Option<f64>, classes: usize) -> Option<String> {
    if !health.embedding_spread.is_finite() || health.embedding_spread < COLLAPSE_SPREAD {
        return Some(format!(
            "COLLAPSING: embedding spread {:.4} (< {COLLAPSE_SPREAD}): every image maps to nearly the same point",
            health.embedding_spread
        ));
    }
    let chance = 1.0 / classes.max(1) as f64;
    // Fewer than 5 queries per class: chance-level accuracy is not evidence.
    let enough = health.knn_queries >= 5 * classes;
    match (health.knn_accuracy, best_knn) {
        (Some(acc), Some(best)) if enough && acc <= 1.5 * chance && best > 2.0 * chance => {
            Some(format!(
                "COLLAPSING: kNN accuracy {acc:.3} fell back to chance ({chance:.3}) from {best:.3}: the embedding lost its class information"
            ))
        }
        _ => None,
    }
}

/// The teacher's output distribution over an epoch (DINO §5.3): its mean
/// entropy and the mean KL divergence from the teacher's to the student's
/// distribution on the other global view, over `prototypes` outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherDistribution {
    pub entropy: f64,
    pub kl_teacher_student: f64,
    pub prototypes: usize,
}

/// A teacher whose entropy stays within this fraction of ln K is uniform:
/// it teaches nothing (DINO's uniform collapse; at initialisation the
/// centred teacher is close to uniform).
pub const UNIFORM_TEACHER_FRACTION: f64 = 0.98;

/// `NOT LEARNING` when, after the first epoch, the teacher's entropy is
/// still at least [`UNIFORM_TEACHER_FRACTION`] × ln K: the loss then sits at
/// ln K and the features are as good as random, whatever the embedding
/// spread says.
pub fn learning_verdict(distribution: &TeacherDistribution, epoch: usize) -> Option<String> {
    let uniform = (distribution.prototypes.max(1) as f64).ln();
    let stuck = !distribution.entropy.is_finite()
        || distribution.entropy >= UNIFORM_TEACHER_FRACTION * uniform;
    (epoch >= 2 && stuck).then(|| {
        format!(
            "NOT LEARNING: the teacher's entropy {:.3} is still at ln K = {uniform:.3} \
             (K = {} prototypes; KL(teacher‖student) {:.4}): a uniform teacher teaches nothing",
            distribution.entropy, distribution.prototypes, distribution.kl_teacher_student
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_zero_for_a_point_and_known_for_orthonormal_rows() {
        let same = Tensor::ones([10, 4], (Kind::Float, tch::Device::Cpu));
        assert!(embedding_spread(&same) < 1e-9);
        // Rows ±e₁, ±e₂ (D = 2): each column is (1, −1, 0, 0) → population
        // std √(1/2); mean over columns √½; × √2 = 1.
        let rows =
            Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0]).reshape([4, 2]);
        assert!((embedding_spread(&rows) - 1.0).abs() < 1e-9);
        // A scaled copy spreads the same (normalised first).
        assert!((embedding_spread(&(rows * 5.0)) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_teacher_at_ln_k_after_the_first_epoch_is_not_learning() {
        // ln 256 = 5.545 (hand-computed); 0.98 × 5.545 = 5.434.
        let d = |entropy| TeacherDistribution {
            entropy,
            kl_teacher_student: 0.01,
            prototypes: 256,
        };
        assert!(learning_verdict(&d(5.5), 2).is_some());
        assert!(learning_verdict(&d(f64::NAN), 3).is_some());
        // Epoch 1 may still start uniform; 4.49 (lightly's first epoch on
        // the phantoms) is learning.
        assert_eq!(learning_verdict(&d(5.5), 1), None);
        assert_eq!(learning_verdict(&d(4.49), 5), None);
        assert_eq!(learning_verdict(&d(5.40), 5), None);
    }

    #[test]
    fn verdicts() {
        let health = |embedding_spread, knn_accuracy, knn_queries| Health {
            embedding_spread,
            knn_accuracy,
            knn_queries,
        };
        assert_eq!(verdict(&health(0.3, Some(0.6), 200), Some(0.6), 17), None);
        assert!(verdict(&health(0.001, Some(0.6), 200), Some(0.6), 17).is_some());
        assert!(verdict(&health(f64::NAN, None, 0), None, 17).is_some());
        // Back to chance after 0.4 earlier: collapsing.
        assert!(verdict(&health(0.3, Some(0.06), 200), Some(0.4), 17).is_some());
        // At chance from the start (nothing learnt yet): no alarm.
        assert_eq!(verdict(&health(0.3, Some(0.06), 200), Some(0.07), 17), None);
        // 20 queries for 17 classes: chance accuracy proves nothing.
        assert_eq!(verdict(&health(0.3, Some(0.06), 20), Some(0.4), 17), None);
        assert_eq!(verdict(&health(0.3, None, 0), None, 0), None);
    }
}
