//! Out-of-distribution calibration for the bundle manifest: class centroids
//! of the training set's pooled embeddings (tch model, eval mode), and the
//! threshold at a percentile of *held-out* images' scores as the device
//! computes them (`tumorxai_shared::ood` on tract's features, in every
//! execution form the bundle may run in). Training images score lower than
//! unseen ones — a threshold set on them sends clean slices to REVIEW —
//! and int8 features drift from fp32 ones.

use anyhow::Result;
use tumorxai_shared::bundle::OodCalibration;
use tumorxai_shared::ood::{class_centroids, ood_score, percentile};

use crate::export::bundle::TrainedRun;
use crate::split::Side;
use crate::train::evaluate::{embed, EvaluationSet};

/// Fraction of training images the threshold keeps in distribution.
pub const OOD_PERCENTILE: f64 = 0.995;

/// Centroids from the training side; threshold from `held_out_scores`
/// (given the centroids, the scores of the held-out images in every form).
/// Without held-out scores (a split with no validation side) the training
/// images' own scores set the threshold, and the manifest says so
/// (`held_out_images: 0`).
pub fn calibrate_ood(
    run: &TrainedRun,
    held_out_scores: impl FnOnce(&[Vec<f32>]) -> Result<(Vec<f32>, u32)>,
) -> Result<OodCalibration> {
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
    let centroids = class_centroids(&embeddings, &labels, state.classes.len());
    let (held_out, held_out_images) = held_out_scores(&centroids)?;
    let scores: Vec<f32> = if held_out.is_empty() {
        embeddings
            .iter()
            .map(|e| ood_score(e, &centroids))
            .collect()
    } else {
        held_out
    };
    Ok(OodCalibration {
        method: "centroid-cosine".to_string(),
        centroids,
        threshold: percentile(&scores, OOD_PERCENTILE),
        percentile: OOD_PERCENTILE,
        training_images: embeddings.len() as u32,
        held_out_images,
    })
}
