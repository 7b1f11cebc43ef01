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

/// A teacher whose entropy stays above this fraction of ln K after the
/// first epoch is (close to) uniform: it teaches nothing (DINO's uniform
/// collapse). The runs that learn start lower and fall: lightly's DINO on
/// the 64² phantoms 4.49 → 4.17 of ln 256 = 5.545 (0.81 → 0.75); the run
/// that did not learn sat at 0.96 ln K, which the former 0.98 let pass.
pub const UNIFORM_TEACHER_FRACTION: f64 = 0.9;

/// A teacher whose entropy has climbed back more than this share of the way
/// from its lowest so far to ln K is flattening out: the centring wins over
/// the sharpening, and the run is heading for the uniform collapse (ours
/// went 4.40 → 5.33 of 5.545 in 100 epochs while its loss sat at ln K).
pub const RISING_TEACHER_SHARE: f64 = 0.5;

/// `NOT LEARNING` when, after the first epoch, the teacher's entropy is
/// still at least [`UNIFORM_TEACHER_FRACTION`] × ln K, or has risen more
/// than [`RISING_TEACHER_SHARE`] of the way from `lowest` (the lowest epoch
/// entropy before this one) back to ln K: the loss then ends at ln K and the
/// features are as good as random, whatever the embedding spread says.
pub fn learning_verdict(
    distribution: &TeacherDistribution,
    epoch: usize,
    lowest: Option<f64>,
) -> Option<String> {
    let uniform = (distribution.prototypes.max(1) as f64).ln();
    let entropy = distribution.entropy;
    let context = format!(
        "(K = {} prototypes, ln K = {uniform:.3}; KL(teacher‖student) {:.4})",
        distribution.prototypes, distribution.kl_teacher_student
    );
    if epoch < 2 {
        return None;
    }
    if !entropy.is_finite() || entropy >= UNIFORM_TEACHER_FRACTION * uniform {
        return Some(format!(
            "NOT LEARNING: the teacher's entropy {entropy:.3} is still near ln K {context}: \
             a uniform teacher teaches nothing"
        ));
    }
    let low = lowest.filter(|l| l.is_finite() && *l < uniform)?;
    (entropy > low + RISING_TEACHER_SHARE * (uniform - low)).then(|| {
        format!(
            "NOT LEARNING: the teacher's entropy rose from {low:.3} to {entropy:.3}, back toward \
             ln K {context}: the centring is flattening the teacher faster than it sharpens"
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
        // ln 256 = 5.545 (hand-computed); 0.9 × 5.545 = 4.990.
        let d = |entropy| TeacherDistribution {
            entropy,
            kl_teacher_student: 0.01,
            prototypes: 256,
        };
        assert!(learning_verdict(&d(5.5), 2, None).is_some());
        assert!(learning_verdict(&d(f64::NAN), 3, None).is_some());
        // The run that did not learn: 5.33 (0.96 ln K) after 100 epochs.
        assert!(learning_verdict(&d(5.33), 100, Some(4.40)).is_some());
        assert!(learning_verdict(&d(5.00), 5, None).is_some());
        // Epoch 1 may still start uniform; 4.49 and then 4.17 (lightly's run
        // on the phantoms) are learning.
        assert_eq!(learning_verdict(&d(5.5), 1, None), None);
        assert_eq!(learning_verdict(&d(4.49), 2, Some(4.49)), None);
        assert_eq!(learning_verdict(&d(4.17), 100, Some(4.20)), None);
        assert_eq!(learning_verdict(&d(4.98), 5, None), None);
    }

    #[test]
    fn a_teacher_climbing_back_toward_ln_k_is_not_learning() {
        let d = |entropy| TeacherDistribution {
            entropy,
            kl_teacher_student: 0.2,
            prototypes: 256,
        };
        // Lowest 4.40: half-way back to 5.545 is 4.9727 (by hand).
        assert!(learning_verdict(&d(4.98), 30, Some(4.40)).is_some());
        assert_eq!(learning_verdict(&d(4.96), 30, Some(4.40)), None);
        // Small wobbles around a falling curve are not an alarm.
        assert_eq!(learning_verdict(&d(4.25), 30, Some(4.17)), None);
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
