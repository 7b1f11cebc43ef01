//! One slice end to end on the device: decode and preprocess (shared
//! contract), infer (tract), EigenCAM, triage, overlay — with per-stage timings.
//! A DICOM slice that is not an axial brain MR of a known sequence (its own
//! tags say so) goes to REVIEW before inference.

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;
use thiserror::Error;
use tumorxai_shared::dicom::{
    declared_sequence, ruled_out, DeclaredSequence, SourceUids, DICOM_FRONT_END,
};
use tumorxai_shared::logits::all_finite;
use tumorxai_shared::ood::pooled_embedding;
use tumorxai_shared::plausibility::input_doubt;
use tumorxai_shared::{
    decode_slice, input_geometry, input_plane, normalize_plane, DecodeLimits, PreprocessError,
};

use crate::eigencam::{eigencam_with_gap, upsample};
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

/// Below this EigenCAM eigengap the map is not shown: its first two
/// components are nearly tied, so it could as well be the other one. Chosen
/// by measurement (`tumorxai parity --json`, demo model, 306 test slices):
/// the two int8 maps that correlate at −0.49 with the host's have gaps
/// 0.147 and 0.154; at ≥ 0.2 every shown map correlates ≥ 0.997 (int8) and
/// 82 % of the maps are shown.
pub const LOW_CONFIDENCE_EIGENGAP: f64 = 0.2;

/// Below this sign certainty (|correlation of the component with the mean
/// activation map|) the map is not shown either: its sign, and so which
/// pixels it calls important, is a coin toss. Chosen by measurement (`tumorxai
/// parity --json`, the 2.0.0 demo, 510 test slices, int8 form): the one
/// shown map that correlated at −0.47 with the host's had a clear eigengap
/// (0.34) but sign certainty 0.021; the next lowest of the clear-gap maps is
/// 0.175 (1st percentile). At ≥ 0.1 every shown map correlates ≥ 0.9995 and
/// 471 of 510 are shown (3 fewer than by the eigengap alone).
pub const LOW_CONFIDENCE_SIGN: f64 = 0.1;

/// Whether the device shows an EigenCAM map of this eigengap and sign
/// certainty: both clear (NaN is neither).
pub fn map_is_shown(eigengap: f64, sign_certainty: f64) -> bool {
    eigengap >= LOW_CONFIDENCE_EIGENGAP && sign_certainty >= LOW_CONFIDENCE_SIGN
}

/// How far the explanation can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Explanation {
    pub method: &'static str,
    /// `(λ1 − λ2) / λ1` of the activations' principal components.
    pub eigengap: f64,
    /// |correlation| of the component with the mean activation map.
    pub sign_certainty: f64,
    /// The map was withheld (overlay shows the slice alone).
    pub low_confidence: bool,
}

/// What a DICOM input said about itself, as far as an answer may repeat it:
/// no patient names, dates or IDs; the slice is referenced by its UID's
/// hash, and the source UIDs make the answer a structured result a PACS
/// can link to its study (the audit log and the panel do not carry them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DicomSummary {
    /// Version of the DICOM grey-scale front end the plane came from.
    pub front_end: &'static str,
    /// SHA-256 of the SOP Instance UID, first 16 hex digits.
    pub sop_instance_uid_sha256: Option<String>,
    pub modality: Option<String>,
    pub transfer_syntax: String,
    /// The sequence the series tags declare, if they name one.
    pub declared_sequence: Option<String>,
    /// The source object's UIDs, for the structured result a PACS links back.
    pub source: SourceUids,
}

pub struct SliceResult {
    pub triage: Triage,
    /// Present for DICOM input.
    pub dicom: Option<DicomSummary>,
    pub explanation: Explanation,
    pub logits: Vec<f32>,
    pub timings: Timings,
    pub overlay: RgbImage,
    /// EigenCAM at the model input's resolution (S×S, [0, 1]); all zero
    /// when the explanation is low-confidence.
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
    let decoded = decode_slice(bytes, DecodeLimits::slice())?;
    let lum = decoded.luminance;
    // Decoded leniently; is the encoded data itself whole, and is the image
    // plausibly one brain slice at all?
    let input_doubt = input_doubt(bytes, &lum);
    let declared = decoded
        .dicom
        .as_ref()
        .and_then(|info| declared_sequence(&info.sequence_text));
    // What the DICOM tags rule out is decided before inference.
    let tag_doubt = decoded.dicom.as_ref().and_then(ruled_out);
    let dicom = decoded.dicom.as_ref().map(|info| DicomSummary {
        front_end: DICOM_FRONT_END,
        sop_instance_uid_sha256: info.sop_instance_uid_hash.clone(),
        source: info.source.clone(),
        modality: info.modality.clone(),
        transfer_syntax: info.transfer_syntax.clone(),
        declared_sequence: declared.map(|d| match d {
            DeclaredSequence::Known(s) => s.label().to_string(),
            DeclaredSequence::Other(name) => name.to_string(),
        }),
    });
    timings.decode_ms = ms(t);
    let t = Instant::now();
    let geometry = input_geometry(&lum, &model.spec)?;
    if let Some(why) = tag_doubt {
        return Ok(refused_before_inference(
            model, thresholds, lum, geometry, why, dicom, timings,
        ));
    }
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
    let cam = eigencam_with_gap(&out.features, c, h, w);
    let explanation = Explanation {
        method: "eigencam",
        eigengap: cam.eigengap,
        sign_certainty: cam.sign_certainty,
        low_confidence: !map_is_shown(cam.eigengap, cam.sign_certainty),
    };
    let saliency = if explanation.low_confidence {
        vec![0.0; s * s]
    } else {
        upsample(&cam.map, h, w, s)
    };
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
        declared_sequence: match declared {
            Some(DeclaredSequence::Known(s)) => Some(s),
            _ => None,
        },
    };
    let triage = triage(&out.logits, &model.classes, thresholds, evidence);
    let overlay = overlay(&lum, &saliency, &geometry);
    timings.render_ms = ms(t);
    Ok(SliceResult {
        triage,
        dicom,
        explanation,
        logits: out.logits,
        timings,
        overlay,
        saliency,
    })
}

/// The answer for a slice refused before inference: REVIEW with the reason,
/// no logits, no explanation, the slice itself as the overlay.
fn refused_before_inference(
    model: &LoadedModel,
    thresholds: Thresholds,
    lum: tumorxai_shared::Luminance,
    geometry: tumorxai_shared::InputGeometry,
    why: String,
    dicom: Option<DicomSummary>,
    timings: Timings,
) -> SliceResult {
    let evidence = Evidence {
        temperature: model.manifest.temperature,
        input_doubt: Some(why),
        ..Evidence::default()
    };
    let triage = triage(&[], &model.classes, thresholds, evidence);
    let s = model.spec.input_size as usize;
    let saliency = vec![0.0; s * s];
    let overlay = overlay(&lum, &saliency, &geometry);
    SliceResult {
        triage,
        dicom,
        explanation: Explanation {
            method: "eigencam",
            eigengap: f64::NAN,
            sign_certainty: f64::NAN,
            low_confidence: true,
        },
        logits: Vec::new(),
        timings,
        overlay,
        saliency,
    }
}
