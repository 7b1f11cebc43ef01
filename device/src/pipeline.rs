//! One slice end to end on the device: decode and preprocess (shared
//! contract), infer (tract), EigenCAM, triage, overlay — with per-stage timings.

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;
use thiserror::Error;
use tumorxai_shared::integrity::damage;
use tumorxai_shared::logits::all_finite;
use tumorxai_shared::ood::pooled_embedding;
use tumorxai_shared::plausibility::implausible;
use tumorxai_shared::{
    decode_luminance, input_geometry, input_plane, normalize_plane, DecodeLimits, PreprocessError,
};

use crate::eigencam::{eigencam, upsample};
use crate::loader::LoadedModel;
use crate::overlay::overlay;
use crate::runtime::RuntimeError;
use crate::triage::{triage, Evidence, OodCheck, Thresholds, Triage};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Input(#[from] PreprocessError),
    /// The model gave NaN or infinite outputs: nothing can be vouched for.
    #[error("the model gave non-finite outputs for this slice: no triage")]
    NonFinite,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub eigencam_ms: f64,
    pub render_ms: f64,
}

pub struct SliceResult {
    pub triage: Triage,
    pub logits: Vec<f32>,
    pub timings: Timings,
    pub overlay: RgbImage,
    /// EigenCAM at the model input's resolution (S×S, [0, 1]).
    pub saliency: Vec<f32>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn run_slice(
    model: &LoadedModel,
    bytes: &[u8],
    thresholds: Thresholds,
) -> Result<SliceResult, PipelineError> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let lum = decode_luminance(bytes, DecodeLimits::slice())?;
    // Decoded leniently; is the encoded data itself whole, and is the image
    // plausibly one brain slice at all?
    let input_doubt = damage(bytes, &lum).or_else(|| implausible(&lum));
    timings.decode_ms = ms(t);
    let t = Instant::now();
    let geometry = input_geometry(&lum, &model.spec)?;
    let input = normalize_plane(&input_plane(&lum, &model.spec)?, &model.spec);
    timings.preprocess_ms = ms(t);
    let t = Instant::now();
    let out = model.model.run(&input)?;
    timings.inference_ms = ms(t);
    if !all_finite(&out.logits) || !all_finite(&out.features) {
        return Err(PipelineError::NonFinite);
    }
    let t = Instant::now();
    let [c, h, w] = out.feature_shape;
    let s = model.spec.input_size as usize;
    let saliency = upsample(&eigencam(&out.features, c, h, w), h, w, s);
    timings.eigencam_ms = ms(t);
    let t = Instant::now();
    let ood = model.ood.as_ref().map(|(scorer, threshold)| OodCheck {
        score: scorer.score(&pooled_embedding(&out.features, c)),
        threshold: *threshold,
    });
    let evidence = Evidence {
        temperature: model.manifest.temperature,
        ood,
        input_doubt,
    };
    let triage = triage(&out.logits, &model.classes, thresholds, evidence);
    let overlay = overlay(&lum, &saliency, &geometry);
    timings.render_ms = ms(t);
    Ok(SliceResult {
        triage,
        logits: out.logits,
        timings,
        overlay,
        saliency,
    })
}
