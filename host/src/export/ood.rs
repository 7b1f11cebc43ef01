//! Out-of-distribution calibration for the bundle manifest: class centroids
//! of the training set's pooled embeddings (tch model, eval mode) and the
//! threshold at a percentile of the training images' own scores — the same
//! score (`tumorxai_shared::ood`) the device computes from its `features`.

use anyhow::Result;
use tumorxai_shared::bundle::OodCalibration;
use tumorxai_shared::ood::{class_centroids, ood_score, percentile};

use crate::data::{self, Selection};
use crate::export::bundle::TrainedRun;
use crate::split::{Side, SplitFile};
use crate::train::evaluate::{embed, EvaluationSet};

/// Fraction of training images the threshold keeps in distribution.
pub const OOD_PERCENTILE: f64 = 0.995;

pub fn calibrate_ood(run: &TrainedRun) -> Result<OodCalibration> {
    let state = &run.state;
    let split = SplitFile::load(&state.config.data.split)?;
    let set = data::load(
        &split,
        &state.config.data.root,
        Selection::Side(Side::Train),
        &state.spec,
        tch::Device::Cpu,
        || {},
    )?;
    let eval = EvaluationSet {
        set: &set,
        spec: &state.spec,
    };
    let embeddings = embed(&run.model, &eval, 64)?;
    let labels = set.label_vec();
    let centroids = class_centroids(&embeddings, &labels, state.classes.len());
    let scores: Vec<f32> = embeddings
        .iter()
        .map(|e| ood_score(e, &centroids))
        .collect();
    Ok(OodCalibration {
        method: "centroid-cosine".to_string(),
        centroids,
        threshold: percentile(&scores, OOD_PERCENTILE),
        percentile: OOD_PERCENTILE,
        training_images: embeddings.len() as u32,
    })
}
