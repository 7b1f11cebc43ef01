//! Host ↔ device parity: the same slice through the workstation path
//! (shared decode → libtorch normalisation → tch ResNet → SVD EigenCAM) and
//! the device path (shared preprocessing → tract on the bundle's model →
//! power-iteration EigenCAM), with the bars a regression must not cross.

use anyhow::Result;
use serde::Serialize;
use tch::Tensor;
use tumorxai_device::eigencam::eigencam_with_gap as device_eigencam_with_gap;
use tumorxai_device::loader::LoadedModel;
use tumorxai_device::pipeline::map_is_shown;
use tumorxai_device::runtime::Model;
use tumorxai_shared::bundle::QuantizationForm;
use tumorxai_shared::logits::{argmax, max_abs_diff};
use tumorxai_shared::ood::{pooled_embedding, OodScorer};
use tumorxai_shared::{
    decode_luminance, input_plane, preprocess_bytes, DecodeLimits, PreprocessSpec,
};

use crate::data::normalize;
use crate::explain::eigencam::{correlation, eigencam_with_gap, EigenMap};
use crate::export::bundle::TrainedRun;
use crate::export::onnx::reference_outputs;

#[derive(Debug, Clone, Serialize)]
pub struct FileParity {
    pub file: String,
    /// max |Δ| of the `1×3×S×S` model inputs (the contract says 0).
    pub preprocess_max_abs: f32,
    pub logits_max_abs: f32,
    /// max |host logit| (at least 1): the scale relative bars use.
    pub logit_scale: f32,
    pub features_max_abs: f32,
    pub feature_scale: f32,
    /// `None` when the logits are not finite (never counts as agreement).
    pub host_top1: Option<usize>,
    pub device_top1: Option<usize>,
    /// Pearson correlation of the host and device EigenCAM maps.
    pub cam_correlation: f64,
    /// The host's EigenCAM eigengap (libtorch SVD): how clearly the first
    /// component stands out.
    pub cam_eigengap: f64,
    /// The device's own eigengap and sign certainty: it withholds maps
    /// where either is unclear (`map_is_shown`).
    pub device_cam_eigengap: f64,
    pub device_cam_sign_certainty: f64,
    /// Out-of-distribution scores with the bundle's calibration (host: tch
    /// features; device: tract's), when the bundle has one.
    pub host_ood: Option<f32>,
    pub device_ood: Option<f32>,
    /// Both sides take the same in/out-of-distribution decision.
    pub ood_decision_agrees: Option<bool>,
}

impl FileParity {
    /// The device shows this file's EigenCAM map.
    pub fn device_shows_map(&self) -> bool {
        map_is_shown(self.device_cam_eigengap, self.device_cam_sign_certainty)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ParitySummary {
    pub files: usize,
    pub preprocess_max_abs: f32,
    pub logits_max_abs: f32,
    /// max over files of |Δ logit| / logit scale.
    pub logits_max_relative: f32,
    pub features_max_relative: f32,
    pub top1_agreement: f64,
    pub cam_correlation_min: f64,
    pub cam_correlation_mean: f64,
    /// Files whose map the device shows (clear eigengap and sign).
    pub cam_clear_gap_files: usize,
    /// Lowest correlation among them (1 when there are none).
    pub cam_correlation_min_clear_gap: f64,
    /// max |host − device| out-of-distribution score (0 without calibration).
    pub ood_max_relative: f32,
    /// Share of files with the same in/out decision on both sides.
    pub ood_decision_agreement: f64,
}

/// Regression bars, by the bundle's quantization form.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ParityBars {
    pub preprocess_max_abs: f32,
    /// `None`: not checked (int8 logits drift by design).
    pub logits_max_relative: Option<f32>,
    pub features_max_relative: Option<f32>,
    pub top1_agreement_min: f64,
    pub cam_correlation_mean_min: f64,
    /// Lowest correlation allowed where the eigengap is clear (the maps the
    /// device shows); `None`: not checked.
    pub cam_correlation_clear_gap_min: Option<f64>,
    /// `None`: not checked (int8 features drift by design).
    pub ood_max_relative: Option<f32>,
    pub ood_decision_agreement_min: f64,
}

impl ParityBars {
    pub fn for_form(form: QuantizationForm) -> ParityBars {
        match form {
            QuantizationForm::Fp32 => ParityBars {
                preprocess_max_abs: 0.0,
                logits_max_relative: Some(1e-4),
                features_max_relative: Some(1e-4),
                top1_agreement_min: 1.0,
                cam_correlation_mean_min: 0.999,
                cam_correlation_clear_gap_min: Some(0.99),
                ood_max_relative: Some(1e-4),
                ood_decision_agreement_min: 1.0,
            },
            QuantizationForm::Int8Qdq => ParityBars {
                preprocess_max_abs: 0.0,
                logits_max_relative: None,
                features_max_relative: None,
                top1_agreement_min: 0.99,
                cam_correlation_mean_min: 0.9,
                // Measured 0.9977 (int8 form) and 0.9995 (dequantized).
                cam_correlation_clear_gap_min: Some(0.99),
                ood_max_relative: None,
                ood_decision_agreement_min: 0.99,
            },
        }
    }

    /// The bars `summary` crosses, in words (empty: no regression).
    pub fn failures(&self, summary: &ParitySummary) -> Vec<String> {
        let mut out = Vec::new();
        if summary.preprocess_max_abs > self.preprocess_max_abs {
            out.push(format!(
                "preprocessed inputs differ by {:.3e} (bar {})",
                summary.preprocess_max_abs, self.preprocess_max_abs
            ));
        }
        if let Some(bar) = self.logits_max_relative {
            if summary.logits_max_relative.is_nan() || summary.logits_max_relative > bar {
                out.push(format!(
                    "logits differ by {:.3e} relative (bar {bar:.0e})",
                    summary.logits_max_relative
                ));
            }
        }
        if let Some(bar) = self.features_max_relative {
            if summary.features_max_relative.is_nan() || summary.features_max_relative > bar {
                out.push(format!(
                    "features differ by {:.3e} relative (bar {bar:.0e})",
                    summary.features_max_relative
                ));
            }
        }
        if summary.top1_agreement.is_nan() || summary.top1_agreement < self.top1_agreement_min {
            out.push(format!(
                "top-1 agreement {:.4} (bar {})",
                summary.top1_agreement, self.top1_agreement_min
            ));
        }
        if summary.cam_correlation_mean.is_nan()
            || summary.cam_correlation_mean < self.cam_correlation_mean_min
        {
            out.push(format!(
                "mean EigenCAM correlation {:.4} (bar {})",
                summary.cam_correlation_mean, self.cam_correlation_mean_min
            ));
        }
        if let Some(bar) = self.cam_correlation_clear_gap_min {
            if summary.cam_correlation_min_clear_gap.is_nan()
                || summary.cam_correlation_min_clear_gap < bar
            {
                out.push(format!(
                    "EigenCAM correlation {:.4} on a file whose map the device shows (clear eigengap and sign; bar {bar})",
                    summary.cam_correlation_min_clear_gap
                ));
            }
        }
        if let Some(bar) = self.ood_max_relative {
            if summary.ood_max_relative.is_nan() || summary.ood_max_relative > bar {
                out.push(format!(
                    "out-of-distribution scores differ by {:.3e} (bar {bar:.0e})",
                    summary.ood_max_relative
                ));
            }
        }
        if summary.ood_decision_agreement.is_nan()
            || summary.ood_decision_agreement < self.ood_decision_agreement_min
        {
            out.push(format!(
                "out-of-distribution decisions agree on {:.4} of the files (bar {})",
                summary.ood_decision_agreement, self.ood_decision_agreement_min
            ));
        }
        out
    }
}

/// The device side of a comparison: the runtime model, the preprocessing it
/// expects and the out-of-distribution calibration (score, threshold).
/// Usually a verified bundle's ([`From<&LoadedModel>`]); a model exported
/// from the run's weights can stand in, so that fp32 parity needs no
/// committed fp32 bundle.
#[derive(Clone, Copy)]
pub struct DeviceSide<'a> {
    pub model: &'a Model,
    pub spec: &'a PreprocessSpec,
    pub ood: Option<&'a (OodScorer, f32)>,
}

impl<'a> From<&'a LoadedModel> for DeviceSide<'a> {
    fn from(loaded: &'a LoadedModel) -> DeviceSide<'a> {
        DeviceSide {
            model: &loaded.model,
            spec: &loaded.spec,
            ood: loaded.ood.as_ref(),
        }
    }
}

/// Runs one slice (file bytes) through both paths.
pub fn compare_slice(
    run: &TrainedRun,
    device: DeviceSide<'_>,
    name: &str,
    bytes: &[u8],
) -> Result<FileParity> {
    let spec = device.spec;
    let s = i64::from(spec.input_size);
    // Host path: shared decode + plane, normalisation and model in libtorch.
    let lum = decode_luminance(bytes, DecodeLimits::default())?;
    let plane = input_plane(&lum, spec)?;
    let host_input = normalize(&Tensor::from_slice(&plane).reshape([1, 1, s, s]), spec);
    let (host_logits, host_features) = reference_outputs(&run.model, &host_input);
    let host_input = Vec::<f32>::try_from(host_input.flatten(0, -1))?;
    let host_logits = Vec::<f32>::try_from(host_logits.flatten(0, -1))?;
    let EigenMap {
        map: host_cam,
        eigengap: cam_eigengap,
    } = eigencam_with_gap(&host_features.squeeze_dim(0))?;
    let host_features = Vec::<f32>::try_from(host_features.flatten(0, -1))?;
    // Device path: the device crate's preprocessing, tract and EigenCAM.
    let device_input = preprocess_bytes(bytes, spec, DecodeLimits::default())?;
    let out = device.model.run(&device_input)?;
    let [c, h, w] = out.feature_shape;
    let device_map = device_eigencam_with_gap(&out.features, c, h, w);
    let (device_cam_eigengap, device_cam_sign_certainty) =
        (device_map.eigengap, device_map.sign_certainty);
    let device_cam = device_map.map;
    let scale = |v: &[f32]| v.iter().fold(1f32, |m, x| m.max(x.abs()));
    let calibration = device.ood;
    let score = |features: &[f32]| {
        calibration.map(|(scorer, _)| scorer.score(&pooled_embedding(features, c)))
    };
    let (host_ood, device_ood) = (score(&host_features), score(&out.features));
    let ood_decision_agrees =
        calibration
            .zip(host_ood.zip(device_ood))
            .map(|((_, threshold), (h, d))| {
                // NaN on either side is never an agreement.
                !h.is_nan() && !d.is_nan() && (h > *threshold) == (d > *threshold)
            });
    Ok(FileParity {
        file: name.to_string(),
        preprocess_max_abs: max_abs_diff(&host_input, &device_input.data),
        logits_max_abs: max_abs_diff(&host_logits, &out.logits),
        logit_scale: scale(&host_logits),
        features_max_abs: max_abs_diff(&host_features, &out.features),
        feature_scale: scale(&host_features),
        host_top1: argmax(&host_logits),
        device_top1: argmax(&out.logits),
        cam_correlation: correlation(&host_cam, &device_cam),
        cam_eigengap,
        device_cam_eigengap,
        device_cam_sign_certainty,
        host_ood,
        device_ood,
        ood_decision_agrees,
    })
}

pub fn summarise(rows: &[FileParity]) -> ParitySummary {
    let n = rows.len().max(1) as f64;
    // NaN-propagating maximum (`f32::max` would drop a NaN row).
    let max = |f: &dyn Fn(&FileParity) -> f32| {
        rows.iter()
            .map(f)
            .fold(0f32, |m, x| if x.is_nan() || x > m { x } else { m })
    };
    ParitySummary {
        files: rows.len(),
        preprocess_max_abs: max(&|r| r.preprocess_max_abs),
        logits_max_abs: max(&|r| r.logits_max_abs),
        logits_max_relative: max(&|r| r.logits_max_abs / r.logit_scale),
        features_max_relative: max(&|r| r.features_max_abs / r.feature_scale),
        top1_agreement: rows
            .iter()
            .filter(|r| r.host_top1.is_some() && r.host_top1 == r.device_top1)
            .count() as f64
            / n,
        cam_correlation_min: rows
            .iter()
            .map(|r| r.cam_correlation)
            .fold(f64::INFINITY, f64::min)
            .min(1.0),
        cam_correlation_mean: rows.iter().map(|r| r.cam_correlation).sum::<f64>() / n,
        cam_clear_gap_files: rows.iter().filter(|r| r.device_shows_map()).count(),
        cam_correlation_min_clear_gap: rows
            .iter()
            .filter(|r| r.device_shows_map())
            .map(|r| r.cam_correlation)
            // f64::min would drop a NaN: a NaN correlation must fail.
            .fold(1.0, |m, c| {
                if c.is_nan() || m.is_nan() {
                    f64::NAN
                } else {
                    m.min(c)
                }
            }),
        ood_max_relative: max(&|r| match (r.host_ood, r.device_ood) {
            // Relative to the score's scale (Mahalanobis scores are in the
            // hundreds, cosine scores below 2).
            (Some(h), Some(d)) => (h - d).abs() / h.abs().max(1.0),
            (None, None) => 0.0,
            _ => f32::INFINITY,
        }),
        ood_decision_agreement: {
            let decided: Vec<bool> = rows.iter().filter_map(|r| r.ood_decision_agrees).collect();
            if decided.is_empty() {
                1.0
            } else {
                decided.iter().filter(|&&a| a).count() as f64 / decided.len() as f64
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(logits: f32, top: usize, cam: f64) -> FileParity {
        FileParity {
            file: "f".into(),
            preprocess_max_abs: 0.0,
            logits_max_abs: logits,
            logit_scale: 10.0,
            features_max_abs: 0.0,
            feature_scale: 1.0,
            host_top1: Some(0),
            device_top1: Some(top),
            cam_correlation: cam,
            cam_eigengap: 0.5,
            device_cam_eigengap: 0.5,
            device_cam_sign_certainty: 0.5,
            host_ood: None,
            device_ood: None,
            ood_decision_agrees: None,
        }
    }

    #[test]
    fn summary_and_bars_by_hand() {
        let mut unclear = row(5e-4, 1, 0.9);
        unclear.device_cam_eigengap = 0.05;
        let rows = [row(1e-4, 0, 1.0), unclear];
        let s = summarise(&rows);
        // Only the first file's map is shown.
        assert_eq!(s.cam_clear_gap_files, 1);
        assert_eq!(s.cam_correlation_min_clear_gap, 1.0);
        assert_eq!(s.files, 2);
        assert!((s.logits_max_relative - 5e-5).abs() < 1e-9);
        assert_eq!(s.top1_agreement, 0.5);
        assert!((s.cam_correlation_mean - 0.95).abs() < 1e-12);
        assert_eq!(s.cam_correlation_min, 0.9);
        let fp32 = ParityBars::for_form(QuantizationForm::Fp32).failures(&s);
        assert_eq!(fp32.len(), 2, "{fp32:?}"); // agreement and CAM, not logits
        let int8 = ParityBars::for_form(QuantizationForm::Int8Qdq).failures(&s);
        assert_eq!(int8.len(), 1, "{int8:?}"); // agreement only
                                               // A clear-gap map that disagrees fails both forms' clear-gap bar.
        let s = summarise(&[row(1e-4, 0, 1.0), row(1e-4, 0, 0.98)]);
        assert_eq!(s.cam_correlation_min_clear_gap, 0.98);
        for form in [QuantizationForm::Fp32, QuantizationForm::Int8Qdq] {
            let f = ParityBars::for_form(form).failures(&s);
            assert!(f.iter().any(|m| m.contains("the device shows")), "{f:?}");
        }
    }

    #[test]
    fn non_finite_results_fail_every_bar_they_touch() {
        // A device giving NaN logits: max_abs_diff → +∞, top-1 → None.
        let mut bad = row(0.0, 0, f64::NAN);
        bad.logits_max_abs = max_abs_diff(&[1.0, 2.0], &[f32::NAN, 2.0]);
        bad.device_top1 = argmax(&[f32::NAN, 2.0]);
        let s = summarise(&[row(0.0, 0, 1.0), bad]);
        assert_eq!(s.logits_max_relative, f32::INFINITY);
        assert_eq!(s.top1_agreement, 0.5);
        assert!(s.cam_correlation_mean.is_nan());
        let fp32 = ParityBars::for_form(QuantizationForm::Fp32).failures(&s);
        assert_eq!(
            fp32.len(),
            4,
            "logits, agreement, CAM mean, CAM clear gap: {fp32:?}"
        );
        // Two NaN hosts and devices never "agree".
        let mut both = row(0.0, 0, 1.0);
        both.host_top1 = None;
        both.device_top1 = None;
        assert_eq!(summarise(&[both]).top1_agreement, 0.0);
    }

    #[test]
    fn out_of_distribution_scores_are_compared_and_decided_alike() {
        let mut a = row(0.0, 0, 1.0);
        (a.host_ood, a.device_ood, a.ood_decision_agrees) = (Some(0.20), Some(0.2003), Some(true));
        let mut b = row(0.0, 0, 1.0);
        (b.host_ood, b.device_ood, b.ood_decision_agrees) = (Some(0.25), Some(0.23), Some(false));
        let s = summarise(&[a.clone(), b]);
        assert!((s.ood_max_relative - 0.02).abs() < 1e-6, "{s:?}");
        assert_eq!(s.ood_decision_agreement, 0.5);
        let int8 = ParityBars::for_form(QuantizationForm::Int8Qdq).failures(&s);
        assert_eq!(int8.len(), 1, "decisions only: {int8:?}");
        let fp32 = ParityBars::for_form(QuantizationForm::Fp32).failures(&s);
        assert_eq!(fp32.len(), 2, "score and decisions: {fp32:?}");
        // A score on one side only fails the fp32 bar.
        a.device_ood = None;
        assert_eq!(summarise(&[a]).ood_max_relative, f32::INFINITY);
    }
}
