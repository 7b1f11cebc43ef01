//! Building a signed model bundle from a training run: export (fp32, or int8
//! after calibration on training images), golden self-test vectors whose
//! expected logits come from the trained tch model, the manifest, and the
//! Ed25519 signature (format in `tumorxai_shared::bundle`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tch::{nn, Tensor};
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::tensor_sha256;
use tumorxai_device::runtime::Model;
use tumorxai_shared::bundle::{
    max_logit_tolerance, rfc3339_utc, write_bundle, BundleContents, GoldenVector, Manifest,
    Outputs, Quantization, QuantizationForm, Training, MANIFEST_FORMAT,
};
use tumorxai_shared::logits::{argmax, max_abs_diff, top1_margin};
use tumorxai_shared::ood::pooled_embedding;
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessSpec, Preprocessed};

use super::calibration::{fit_bundle_temperature, TemperatureFit};
use super::onnx;
use super::ood::calibrate_ood;
use super::quantize::{calibrate, CALIBRATION_METHOD};
use super::runtime::run_form;
use crate::data::{self, LoadedSet, Selection};
use crate::model::weights::{self, Strictness};
use crate::model::{resnet, ResNet};
use crate::split::{Side, SplitFile};
use crate::train::checkpoint::{self, TrainState};
use crate::train::fit::final_weights;

/// What to put in the bundle besides the run's weights.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    pub model_id: String,
    pub version: String,
    /// int8 QDQ weights with calibrated activation ranges instead of fp32.
    pub int8: bool,
    /// Training images to calibrate on (int8).
    pub calibration_images: usize,
    /// Self-test images; empty picks up to three test-side images of the
    /// run's split (of different classes).
    pub golden_images: Vec<PathBuf>,
    pub notice: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
}

/// A trained run loaded on the CPU, as the exporter and parity need it.
pub struct TrainedRun {
    pub state: TrainState,
    pub vs: nn::VarStore,
    pub model: ResNet,
    pub weights_path: PathBuf,
}

impl TrainedRun {
    /// Loads `run` (a run folder, or its `model.safetensors`).
    pub fn load(run: &Path) -> Result<TrainedRun> {
        let run = if run.is_file() {
            run.parent().unwrap_or(Path::new("."))
        } else {
            run
        };
        let state = checkpoint::load_state(run)?;
        let mut vs = nn::VarStore::new(tch::Device::Cpu);
        let model = resnet(
            &vs.root(),
            state.config.model.resnet(),
            Some(state.classes.len() as i64),
        );
        let weights_path = final_weights(run);
        weights::load(&mut vs, &weights_path, Strictness::Exact)?;
        Ok(TrainedRun {
            state,
            vs,
            model,
            weights_path,
        })
    }

    pub fn input_size(&self) -> u32 {
        self.state.config.model.input_size
    }

    /// The trained model's eval-mode logits for a preprocessed input.
    pub fn logits(&self, input: &[f32]) -> Result<Vec<f32>> {
        let s = i64::from(self.input_size());
        let x = Tensor::from_slice(input).reshape([1, 3, s, s]);
        let (logits, _) = onnx::reference_outputs(&self.model, &x);
        Ok(Vec::<f32>::try_from(logits.flatten(0, -1))?)
    }

    pub fn export_fp32(&self) -> Result<Vec<u8>> {
        onnx::export(
            &self.vs,
            self.model.config,
            self.input_size(),
            self.state.classes.len(),
            &onnx::metadata(&self.state.classes, &self.state.spec)?,
        )
    }

    /// One side of the run's split, decoded on the CPU (the bundle step's
    /// calibrations); `None` when the split has nothing on that side.
    pub fn load_side(&self, side: Side) -> Result<Option<LoadedSet>> {
        let split = SplitFile::load(&self.state.config.data.split)?;
        if split.on(side).next().is_none() {
            return Ok(None);
        }
        let set = data::load(
            &split,
            &self.state.config.data.root,
            Selection::Side(side),
            &self.state.spec,
            tch::Device::Cpu,
            || {},
        )?;
        Ok(Some(set))
    }
}

/// Evenly spaced picks (deterministic, spread over classes as the split is
/// ordered by class): `count` of `items`.
fn spread<T: Clone>(items: &[T], count: usize) -> Vec<T> {
    if items.len() <= count {
        return items.to_vec();
    }
    (0..count)
        .map(|i| items[i * items.len() / count].clone())
        .collect()
}

fn split_paths(state: &TrainState, side: Side) -> Result<(PathBuf, Vec<(PathBuf, usize)>)> {
    let split = SplitFile::load(&state.config.data.split)?;
    let root = state.config.data.root.clone();
    let items = split
        .on(side)
        .map(|item| (root.join(&item.path), item.class))
        .collect();
    Ok((root, items))
}

fn preprocess_file(path: &Path, spec: &PreprocessSpec) -> Result<(Vec<u8>, Preprocessed)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let input = preprocess_bytes(&bytes, spec, DecodeLimits::default())
        .with_context(|| format!("preprocessing {}", path.display()))?;
    Ok((bytes, input))
}

/// Golden vectors a bundle gets by default.
const DEFAULT_GOLDEN_VECTORS: usize = 3;

/// Candidate self-test images with their labels: the test images spread
/// over the split, one of each class first, then the others. More than needed,
/// because an image the model is undecided about (top-1 margin within twice
/// the tolerance) or gets wrong cannot certify anything.
fn default_golden_images(state: &TrainState) -> Result<Vec<(PathBuf, Option<usize>)>> {
    let (_, items) = split_paths(state, Side::Test)?;
    let mut firsts = Vec::new();
    let mut others = Vec::new();
    let mut classes = Vec::new();
    for (path, class) in spread(&items, items.len()) {
        if classes.contains(&class) {
            others.push((path, Some(class)));
        } else {
            classes.push(class);
            firsts.push((path, Some(class)));
        }
    }
    firsts.extend(others);
    ensure!(
        !firsts.is_empty(),
        "the split has no test images for self-tests"
    );
    Ok(firsts)
}

/// The label of a self-test image the user chose: its folder's class, when
/// it lies in a class folder of the dataset layout.
fn folder_label(path: &Path, classes: &[String]) -> Option<usize> {
    let folder = path.parent()?.file_name()?.to_str()?;
    let name = tumorxai_shared::classes::nfc(folder);
    classes.iter().position(|c| *c == name)
}

/// Builds and signs a bundle for `run`; `progress` receives status lines.
pub fn build_bundle(
    run: &TrainedRun,
    options: &BundleOptions,
    key: &SigningKey,
    mut progress: impl FnMut(&str),
) -> Result<(Vec<u8>, BundleSummary)> {
    let state = &run.state;
    if let Some(why) = tumorxai_shared::classes::class_list_mismatch(&state.classes) {
        bail!(
            "the run's class list is not the contract's ({why}): the device names tumours by logit \
             index, so a bundle carries exactly the 17 classes in their order"
        );
    }
    let spec = state.spec.clone();
    let s = spec.input_size;
    let fp32 = run.export_fp32()?;
    let (model, form, calibration_images) = if options.int8 {
        let (_, items) = split_paths(state, Side::Train)?;
        let picks = spread(&items, options.calibration_images.max(1));
        progress(&format!("calibrating on {} training images", picks.len()));
        let inputs: Vec<Vec<f32>> = picks
            .iter()
            .map(|(path, _)| preprocess_file(path, &spec).map(|(_, x)| x.data))
            .collect::<Result<_>>()?;
        let ranges = calibrate(&fp32, s, &inputs)?;
        let int8 = onnx::export_int8(
            &run.vs,
            run.model.config,
            s,
            state.classes.len(),
            &onnx::metadata(&state.classes, &spec)?,
            &ranges,
        )?;
        (int8, QuantizationForm::Int8Qdq, Some(picks.len() as u32))
    } else {
        (fp32.clone(), QuantizationForm::Fp32, None)
    };

    let chosen_by_user = !options.golden_images.is_empty();
    let golden_paths = if chosen_by_user {
        options
            .golden_images
            .iter()
            .map(|p| (p.clone(), folder_label(p, &state.classes)))
            .collect()
    } else {
        default_golden_images(state)?
    };
    let forms_to_check: &[ExecutionForm] = match form {
        QuantizationForm::Fp32 => &[ExecutionForm::AsShipped],
        QuantizationForm::Int8Qdq => &[
            ExecutionForm::AsShipped,
            ExecutionForm::Dequantized,
            ExecutionForm::Int8,
        ],
    };
    let runtimes: Vec<Model> = forms_to_check
        .iter()
        .map(|&f| run_form(&model, f, s))
        .collect::<Result<_>>()?;
    let mut golden = Vec::new();
    let mut golden_images = Vec::new();
    let mut max_delta = 0f32;
    let mut misnamed = 0usize;
    for (path, label) in &golden_paths {
        if !chosen_by_user && golden.len() == DEFAULT_GOLDEN_VECTORS {
            break;
        }
        let (bytes, preprocessed) = preprocess_file(path, &spec)?;
        let expected = run.logits(&preprocessed.data)?;
        let Some(top1) = argmax(&expected) else {
            bail!(
                "the trained model gives non-finite logits for {}: refusing to bundle it",
                path.display()
            );
        };
        // The image's own truth must be what the class list names at its
        // top-1: a self-test the model passes by a wrong answer proves
        // nothing about the names the device will show.
        let expected_class = match label.and_then(|l| state.classes.get(l)) {
            Some(name) => {
                if state.classes.get(top1) != Some(name) {
                    if chosen_by_user {
                        bail!(
                            "the model calls golden image {} {:?}, not its label {name:?}: choose another",
                            path.display(),
                            state.classes.get(top1).map_or("?", String::as_str)
                        );
                    }
                    misnamed += 1;
                    continue;
                }
                Some(name.clone())
            }
            None => None,
        };
        let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
        let mut delta = 0f32;
        for runtime in &runtimes {
            let got = runtime.run(&preprocessed)?.logits;
            // +∞ for non-finite outputs: fails every bar below.
            delta = delta.max(max_abs_diff(&got, &expected));
        }
        if !delta.is_finite() {
            bail!(
                "an execution form gives non-finite logits for {}: export regression",
                path.display()
            );
        }
        let tolerance = match form {
            QuantizationForm::Fp32 => {
                let bar = 1e-4 * scale;
                if delta > bar {
                    bail!(
                        "tract and tch disagree by {delta:.2e} on {} (bar {bar:.1e}): export regression",
                        path.display()
                    );
                }
                bar
            }
            // Quantization drift differs per form and CPU; the self-test is
            // there to catch broken weights or preprocessing, not rounding.
            // But never looser than the shared ceiling: a model that drifts
            // that far cannot certify itself.
            QuantizationForm::Int8Qdq => {
                let tolerance = 2.0 * delta + 1e-3 * scale;
                let ceiling = max_logit_tolerance(&expected);
                if tolerance > ceiling {
                    bail!(
                        "int8 logits drift by {delta:.3e} on {} (tolerance {tolerance:.3e} > ceiling {ceiling:.3e}): \
                         the quantized model is too far from the trained one; calibrate on more images or ship fp32",
                        path.display()
                    );
                }
                tolerance
            }
        };
        let margin = top1_margin(&expected).unwrap_or(0.0);
        if margin <= 2.0 * tolerance {
            if chosen_by_user {
                bail!(
                    "the model is undecided about golden image {} (top-1 margin {margin:.3e} ≤ 2 × tolerance {tolerance:.3e}): choose another",
                    path.display()
                );
            }
            progress(&format!(
                "skipping {} as a self-test image: top-1 margin {margin:.3e} too small",
                path.display()
            ));
            continue;
        }
        max_delta = max_delta.max(delta);
        golden.push(GoldenVector {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            image_sha256: hex::encode(Sha256::digest(&bytes)),
            input_sha256: tensor_sha256(&preprocessed.data),
            logits: expected,
            top1,
            logit_tolerance: tolerance,
            expected_class,
        });
        golden_images.push(bytes);
    }
    if misnamed > 0 {
        progress(&format!(
            "passed over {misnamed} candidate self-test images the model does not name by their label"
        ));
    }
    ensure!(
        !golden.is_empty(),
        "none of {} candidate self-test images is decided and named right enough to certify the model",
        golden_paths.len()
    );

    progress(
        "calibrating the out-of-distribution score (Mahalanobis statistics: training images; \
         threshold: validation images in every execution form)",
    );
    let (_, held_out_items) = split_paths(state, Side::Val)?;
    let held_out: Vec<Preprocessed> = held_out_items
        .iter()
        .map(|(path, _)| preprocess_file(path, &spec).map(|(_, input)| input))
        .collect::<Result<_>>()?;
    let ood = calibrate_ood(run, |scorer| {
        let mut scores = Vec::with_capacity(held_out.len() * runtimes.len());
        for input in &held_out {
            for runtime in &runtimes {
                let out = runtime.run(input)?;
                let embedding = pooled_embedding(&out.features, out.feature_shape[0]);
                scores.push(scorer.score(&embedding));
            }
        }
        Ok((scores, held_out.len() as u32))
    })?;
    progress("fitting the softmax temperature on the validation images");
    let calibration = fit_bundle_temperature(run)?;
    if let Some(fit) = &calibration {
        progress(&format!(
            "temperature {:.3} on {} validation images: ECE {:.3} → {:.3}",
            fit.temperature, fit.images, fit.ece_before, fit.ece_after
        ));
    }
    let checkpoint_bytes = std::fs::read(&run.weights_path)
        .with_context(|| format!("reading {}", run.weights_path.display()))?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        model_id: options.model_id.clone(),
        version: options.version.clone(),
        created: rfc3339_utc(options.created_unix),
        classes: state.classes.clone(),
        preprocess_spec_sha256: spec.hash_hex(),
        preprocess_spec: spec,
        input_size: s,
        outputs: Outputs {
            logits: onnx::LOGITS.to_string(),
            features: onnx::FEATURES.to_string(),
        },
        model_sha256: hex::encode(Sha256::digest(&model)),
        training: Training {
            checkpoint_sha256: hex::encode(Sha256::digest(&checkpoint_bytes)),
            metrics: test_metrics(&run.weights_path)?,
        },
        quantization: Quantization {
            form,
            calibration_images,
            calibration_method: calibration_images.map(|_| CALIBRATION_METHOD.to_string()),
        },
        notice: options.notice.clone(),
        ood: Some(ood.calibration),
        temperature: calibration.map(|fit| fit.temperature),
    };
    let summary = BundleSummary {
        fp32_onnx_bytes: fp32.len(),
        model_bytes: model.len(),
        golden_vectors: golden.len(),
        golden_max_delta: max_delta,
        calibration,
    };
    let bytes = write_bundle(
        &BundleContents {
            manifest,
            model,
            golden,
            golden_images,
            ood_statistics: Some(ood.statistics),
        },
        key,
    )?;
    Ok((bytes, summary))
}

#[derive(Debug, Clone)]
pub struct BundleSummary {
    pub fp32_onnx_bytes: usize,
    pub model_bytes: usize,
    pub golden_vectors: usize,
    /// Largest |Δ logit| between tch and any execution form on the golden images.
    pub golden_max_delta: f32,
    /// The temperature carried in the manifest, when the split has a validation side.
    pub calibration: Option<TemperatureFit>,
}

/// Numeric fields of the run's test report (`report-test.json` beside the
/// weights), if it was evaluated.
fn test_metrics(weights_path: &Path) -> Result<BTreeMap<String, f64>> {
    let path = weights_path.with_file_name("report-test.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(BTreeMap::new());
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(json["report"]
        .as_object()
        .map(|report| {
            report
                .iter()
                .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                .filter(|(_, v)| v.is_finite())
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_picks_evenly() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&v, 3), vec![0, 3, 6]);
        assert_eq!(spread(&v, 20), v);
    }
}
