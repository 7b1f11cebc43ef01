//! Which out-of-distribution score to ship, by measurement: for a trained run,
//! every candidate score is fitted on the training side, thresholded at the
//! same percentile of the validation side as the bundle does, and measured
//! on the test side (false REVIEW) and on a folder of out-of-distribution
//! inputs (detection per category = first sub-folder), alone and combined
//! with the device's input checks (damaged data, implausible slice).
//!
//! Candidates: the shipped centroid cosine; Mahalanobis distance to the
//! nearest class mean with a shared, shrunk covariance (Lee et al., NeurIPS
//! 2018), on raw and on L2-normalised embeddings; energy −T·logsumexp(z/T)
//! on temperature-scaled logits (Liu et al., NeurIPS 2020); and 1 − max
//! softmax (Hendrycks & Gimpel, ICLR 2017) as the usual baseline.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use tch::Tensor;
use tumorxai_shared::logits::softmax;
use tumorxai_shared::ood::{
    class_centroids, energy, mahalanobis_score, normalised, ood_score, percentile, ClassGaussians,
    OodScorer,
};
use tumorxai_shared::plausibility::input_doubt;
use tumorxai_shared::{decode_luminance, input_plane, DecodeLimits};

use super::bundle::TrainedRun;
use super::ood::{fit_gaussians, OOD_PERCENTILE};
use crate::data::{self, LoadedSet};
use crate::dataset::image_files;
use crate::split::Side;
use crate::train::evaluate::rows;

/// Embeddings and logits of a set of images, in order.
struct Outputs {
    embeddings: Vec<Vec<f32>>,
    logits: Vec<Vec<f32>>,
}

fn outputs_of(run: &TrainedRun, set: &LoadedSet) -> Result<Outputs> {
    let _guard = tch::no_grad_guard();
    let mut embeddings = Vec::with_capacity(set.len());
    let mut logits = Vec::with_capacity(set.len());
    let n = set.len() as i64;
    let mut start = 0;
    while start < n {
        let len = (n - start).min(64);
        let x = data::normalize(&set.planes.narrow(0, start, len), &run.state.spec);
        let e = run.model.embed(&x, false);
        let z = run.model.head(&e);
        embeddings.extend(rows(&e)?);
        logits.extend(rows(&z)?);
        start += len;
    }
    Ok(Outputs { embeddings, logits })
}

/// One candidate score, fitted on the training side.
trait Candidate {
    fn name(&self) -> &'static str;
    fn score(&self, embedding: &[f32], logits: &[f32]) -> f32;
}

struct Cosine(Vec<Vec<f32>>);
impl Candidate for Cosine {
    fn name(&self) -> &'static str {
        "centroid-cosine"
    }
    fn score(&self, e: &[f32], _: &[f32]) -> f32 {
        ood_score(e, &self.0)
    }
}

struct Mahalanobis {
    gaussians: ClassGaussians,
    normalise: bool,
    /// The shipped form (normalised): the device's own scorer.
    scorer: OodScorer,
}
impl Mahalanobis {
    fn new(gaussians: ClassGaussians, normalise: bool) -> Mahalanobis {
        let scorer = OodScorer::mahalanobis(gaussians.clone());
        Mahalanobis {
            gaussians,
            normalise,
            scorer,
        }
    }
}

impl Candidate for Mahalanobis {
    fn name(&self) -> &'static str {
        if self.normalise {
            "mahalanobis-normalised"
        } else {
            "mahalanobis"
        }
    }
    fn score(&self, e: &[f32], _: &[f32]) -> f32 {
        if self.normalise {
            self.scorer.score(e)
        } else {
            mahalanobis_score(e, &self.gaussians)
        }
    }
}

struct Energy(f32);
impl Candidate for Energy {
    fn name(&self) -> &'static str {
        "energy"
    }
    fn score(&self, _: &[f32], z: &[f32]) -> f32 {
        energy(z, self.0)
    }
}

struct MaxSoftmax(f32);
impl Candidate for MaxSoftmax {
    fn name(&self) -> &'static str {
        "max-softmax"
    }
    fn score(&self, _: &[f32], z: &[f32]) -> f32 {
        let p = softmax(z, f64::from(self.0));
        1.0 - p.iter().copied().fold(0f32, f32::max)
    }
}

/// One out-of-distribution input as the device sees it.
struct OodInput {
    category: String,
    name: String,
    /// Refused before inference (unreadable, undecodable), or doubted by
    /// the input checks.
    input_doubt: bool,
    outputs: Option<(Vec<f32>, Vec<f32>)>,
}

fn ood_inputs(run: &TrainedRun, dir: &Path) -> Result<Vec<OodInput>> {
    let spec = &run.state.spec;
    let mut out = Vec::new();
    for path in image_files(dir)? {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let category = rel
            .components()
            .next()
            .filter(|_| rel.components().count() > 1)
            .map_or_else(
                || "uncategorised".to_string(),
                |c| c.as_os_str().to_string_lossy().into_owned(),
            );
        let name = rel.display().to_string();
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let decoded = decode_luminance(&bytes, DecodeLimits::slice())
            .ok()
            .and_then(|lum| input_plane(&lum, spec).ok().map(|plane| (lum, plane)));
        let Some((lum, plane)) = decoded else {
            out.push(OodInput {
                category,
                name,
                input_doubt: true,
                outputs: None,
            });
            continue;
        };
        let doubt = input_doubt(&bytes, &lum).is_some();
        let s = i64::from(spec.input_size);
        let planes = Tensor::from_slice(&plane).reshape([1, 1, s, s]);
        let x = data::normalize(&planes, spec);
        let _guard = tch::no_grad_guard();
        let e = run.model.embed(&x, false);
        let z = run.model.head(&e);
        let e = rows(&e)?.pop().unwrap_or_default();
        let z = rows(&z)?.pop().unwrap_or_default();
        out.push(OodInput {
            category,
            name,
            input_doubt: doubt,
            outputs: Some((e, z)),
        });
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct CandidateResult {
    pub method: String,
    pub threshold: f32,
    /// Share of clean test slices whose score crosses the threshold.
    pub test_false_review: f64,
    /// Same, with the input checks' doubts added (what the device does).
    pub test_false_review_with_input_checks: f64,
    /// Share of out-of-distribution inputs whose score crosses it.
    pub ood_detected: f64,
    pub ood_detected_with_input_checks: f64,
    /// Per category: (score alone, with input checks, inputs).
    pub per_category: BTreeMap<String, (f64, f64, usize)>,
    /// Threshold-free separation of test slices from decodable OOD inputs.
    pub auroc: f64,
    /// Inputs the combined rule misses.
    pub missed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StudyReport {
    pub run: String,
    pub percentile: f64,
    pub training_images: usize,
    pub validation_images: usize,
    pub test_images: usize,
    pub test_input_doubts: usize,
    pub ood_inputs: usize,
    pub ood_refused_before_inference: usize,
    pub candidates: Vec<CandidateResult>,
}

/// The study over `ood_dir` for the run (its training, validation and test
/// sides must be readable).
pub fn study(run: &TrainedRun, run_name: &str, ood_dir: &Path) -> Result<StudyReport> {
    let side = |s: Side| -> Result<LoadedSet> {
        run.load_side(s)?
            .with_context(|| format!("the run's split has no {s:?} side"))
    };
    let (train, val, test) = (side(Side::Train)?, side(Side::Val)?, side(Side::Test)?);
    let train_out = outputs_of(run, &train)?;
    let val_out = outputs_of(run, &val)?;
    let test_out = outputs_of(run, &test)?;
    let labels = train.label_vec();
    let classes = run.state.classes.len();
    let temperature = fitted_temperature(&val_out.logits, &val.label_vec());
    let normalised_train: Vec<Vec<f32>> =
        train_out.embeddings.iter().map(|e| normalised(e)).collect();
    let candidates: Vec<Box<dyn Candidate>> = vec![
        Box::new(Cosine(class_centroids(
            &train_out.embeddings,
            &labels,
            classes,
        ))),
        Box::new(Mahalanobis::new(
            fit_gaussians(&train_out.embeddings, &labels, classes)?,
            false,
        )),
        Box::new(Mahalanobis::new(
            fit_gaussians(&normalised_train, &labels, classes)?,
            true,
        )),
        Box::new(Energy(temperature)),
        Box::new(MaxSoftmax(temperature)),
    ];
    let test_doubts = test_input_doubts(run, &test)?;
    let ood = ood_inputs(run, ood_dir)?;
    let mut results = Vec::new();
    for c in &candidates {
        let score_all = |o: &Outputs| -> Vec<f32> {
            o.embeddings
                .iter()
                .zip(&o.logits)
                .map(|(e, z)| c.score(e, z))
                .collect()
        };
        let threshold = percentile(&score_all(&val_out), OOD_PERCENTILE);
        let test_scores = score_all(&test_out);
        let flagged = |s: f32| s.is_nan() || s > threshold;
        let n_test = test_scores.len().max(1) as f64;
        let test_false = test_scores.iter().filter(|&&s| flagged(s)).count() as f64 / n_test;
        let test_false_combined = test_scores
            .iter()
            .zip(&test_doubts)
            .filter(|(&s, &d)| d || flagged(s))
            .count() as f64
            / n_test;
        let mut per_category: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
        let mut missed = Vec::new();
        let mut ood_scores = Vec::new();
        let (mut alone, mut combined) = (0usize, 0usize);
        for input in &ood {
            let score = input.outputs.as_ref().map(|(e, z)| c.score(e, z));
            if let Some(s) = score {
                ood_scores.push(s);
            }
            let by_score = score.is_some_and(flagged);
            let by_any = by_score || input.input_doubt;
            alone += usize::from(by_score);
            combined += usize::from(by_any);
            if !by_any {
                missed.push(input.name.clone());
            }
            let entry = per_category.entry(input.category.clone()).or_default();
            entry.0 += f64::from(u8::from(by_score));
            entry.1 += f64::from(u8::from(by_any));
            entry.2 += 1;
        }
        for v in per_category.values_mut() {
            v.0 /= v.2.max(1) as f64;
            v.1 /= v.2.max(1) as f64;
        }
        let n_ood = ood.len().max(1) as f64;
        results.push(CandidateResult {
            method: c.name().to_string(),
            threshold,
            test_false_review: test_false,
            test_false_review_with_input_checks: test_false_combined,
            ood_detected: alone as f64 / n_ood,
            ood_detected_with_input_checks: combined as f64 / n_ood,
            per_category,
            auroc: auroc(&test_scores, &ood_scores),
            missed,
        });
    }
    Ok(StudyReport {
        run: run_name.to_string(),
        percentile: OOD_PERCENTILE,
        training_images: train.len(),
        validation_images: val.len(),
        test_images: test.len(),
        test_input_doubts: test_doubts.iter().filter(|&&d| d).count(),
        ood_inputs: ood.len(),
        ood_refused_before_inference: ood.iter().filter(|o| o.outputs.is_none()).count(),
        candidates: results,
    })
}

/// The temperature the bundle step would ship (validation NLL fit).
fn fitted_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f32 {
    crate::metrics::fit_temperature(logits, labels) as f32
}

/// The device's input checks on each test-side file (same order as the set).
fn test_input_doubts(run: &TrainedRun, set: &LoadedSet) -> Result<Vec<bool>> {
    let root = &run.state.config.data.root;
    set.paths
        .iter()
        .map(|p| {
            let path = root.join(p);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(match decode_luminance(&bytes, DecodeLimits::slice()) {
                Ok(lum) => input_doubt(&bytes, &lum).is_some(),
                Err(_) => true,
            })
        })
        .collect()
}

/// Probability that a random OOD input scores above a random clean one
/// (ties count half): the Mann–Whitney form of the ROC area.
pub fn auroc(clean: &[f32], ood: &[f32]) -> f64 {
    if clean.is_empty() || ood.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0f64;
    for &o in ood {
        for &c in clean {
            wins += match o.total_cmp(&c) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    wins / (clean.len() as f64 * ood.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::auroc;

    #[test]
    fn auroc_by_hand() {
        assert_eq!(auroc(&[0.0, 1.0], &[2.0, 3.0]), 1.0);
        assert_eq!(auroc(&[2.0, 3.0], &[0.0, 1.0]), 0.0);
        // 1 vs {0, 1, 2}: win, tie, loss → 0.5.
        assert_eq!(auroc(&[0.0, 1.0, 2.0], &[1.0]), 0.5);
    }
}
