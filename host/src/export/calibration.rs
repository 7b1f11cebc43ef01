//! Probability calibration for the bundle manifest: one softmax temperature
//! fitted on the run's validation side (held out from training), so the
//! device's probabilities — and the thresholds it applies to them — mean
//! what they say. Temperature scaling (Guo et al., 2017) keeps the top-1.

use anyhow::Result;

use crate::export::bundle::TrainedRun;
use crate::metrics;
use crate::split::Side;
use crate::train::evaluate::{predict, EvaluationSet};

/// A fitted temperature and what it did to the validation side's expected
/// calibration error (15 bins).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureFit {
    pub temperature: f32,
    pub ece_before: f64,
    pub ece_after: f64,
    pub images: usize,
}

/// Fits the temperature on the validation side; `None` when the split has no
/// validation images (the bundle then says its probabilities are raw).
pub fn fit_bundle_temperature(run: &TrainedRun) -> Result<Option<TemperatureFit>> {
    let state = &run.state;
    let Some(set) = run.load_side(Side::Val)? else {
        return Ok(None);
    };
    let eval = EvaluationSet {
        set: &set,
        spec: &state.spec,
    };
    let logits = predict(&run.model, &eval, 64)?;
    let truth = set.label_vec();
    let temperature = metrics::fit_temperature(&logits, &truth);
    let classes = state.classes.len();
    Ok(Some(TemperatureFit {
        temperature: temperature as f32,
        ece_before: metrics::report(&logits, &truth, classes, 1.0).ece,
        ece_after: metrics::report(&logits, &truth, classes, temperature).ece,
        images: truth.len(),
    }))
}
