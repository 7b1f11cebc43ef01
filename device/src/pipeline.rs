//! One slice end to end on the device: decode and preprocess (shared
//! contract), infer (tract), EigenCAM, triage, overlay — with per-stage timings.

use std::time::Instant;

use image::RgbImage;
use prost::Message;
use serde::Serialize;
use thiserror::Error;
use tract_onnx::pb;
use tumorxai_shared::{
    decode_luminance, input_geometry, input_plane, normalize_plane, DecodeLimits, PreprocessError,
    PreprocessSpec,
};

use crate::eigencam::{eigencam, upsample};
use crate::overlay::overlay;
use crate::runtime::{Model, RuntimeError};
use crate::triage::{triage, Thresholds, Triage};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("the model file carries no usable metadata: {0}")]
    Metadata(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Input(#[from] PreprocessError),
}

/// A loaded model with what it was trained with (from the ONNX metadata
/// written by `tumorxai export`).
pub struct LoadedModel {
    pub model: Model,
    pub classes: Vec<String>,
    pub spec: PreprocessSpec,
}

impl LoadedModel {
    /// Loads ONNX bytes; the class list and preprocessing spec come from the
    /// model's metadata, and the spec must be one this build can honour.
    pub fn from_onnx(bytes: &[u8]) -> Result<LoadedModel, PipelineError> {
        let proto =
            pb::ModelProto::decode(bytes).map_err(|e| PipelineError::Metadata(e.to_string()))?;
        let get = |key: &str| {
            proto
                .metadata_props
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.value.clone())
                .ok_or_else(|| PipelineError::Metadata(format!("no {key:?} entry")))
        };
        let classes: Vec<String> = serde_json::from_str(&get("classes")?)
            .map_err(|e| PipelineError::Metadata(format!("classes: {e}")))?;
        let spec = PreprocessSpec::from_json(&get("preprocess_spec")?)?;
        if let Ok(hash) = get("preprocess_spec_sha256") {
            if hash != spec.hash_hex() {
                return Err(PipelineError::Metadata(format!(
                    "preprocessing spec hash {hash} does not match its JSON ({})",
                    spec.hash_hex()
                )));
            }
        }
        let model = Model::load(bytes, spec.input_size)?;
        Ok(LoadedModel {
            model,
            classes,
            spec,
        })
    }
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
    let lum = decode_luminance(bytes, DecodeLimits::default())?;
    timings.decode_ms = ms(t);
    let t = Instant::now();
    let geometry = input_geometry(&lum, &model.spec)?;
    let input = normalize_plane(&input_plane(&lum, &model.spec)?, &model.spec);
    timings.preprocess_ms = ms(t);
    let t = Instant::now();
    let out = model.model.run(&input)?;
    timings.inference_ms = ms(t);
    let t = Instant::now();
    let [c, h, w] = out.feature_shape;
    let s = model.spec.input_size as usize;
    let saliency = upsample(&eigencam(&out.features, c, h, w), h, w, s);
    timings.eigencam_ms = ms(t);
    let t = Instant::now();
    let triage = triage(&out.logits, &model.classes, thresholds);
    let overlay = overlay(&lum, &saliency, &geometry);
    timings.render_ms = ms(t);
    Ok(SliceResult {
        triage,
        timings,
        overlay,
        saliency,
    })
}
