//! Classification metrics on plain slices: confusion matrix, accuracy,
//! precision / recall / F1 (per class, macro, weighted), top-k accuracy,
//! expected calibration error, and temperature scaling.
//!
//! Conventions (as scikit-learn with `zero_division=0`): a class never
//! predicted has precision 0; a class with no true samples has recall 0 and
//! weight 0 in the weighted average; macro averages run over all classes.

use serde::{Deserialize, Serialize};
pub use tumorxai_shared::logits::{argmax, softmax};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub samples: usize,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    pub top3_accuracy: f64,
    pub ece: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// `confusion[t][p]` counts samples of true class t predicted as p.
pub fn confusion_matrix(truth: &[usize], predicted: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0usize; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        m[t][p] += 1;
    }
    m
}

pub fn per_class_scores(confusion: &[Vec<usize>]) -> Vec<ClassScores> {
    let k = confusion.len();
    (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let precision = if predicted == 0 {
                0.0
            } else {
                tp / predicted as f64
            };
            let recall = if support == 0 {
                0.0
            } else {
                tp / support as f64
            };
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect()
}

/// Fraction of rows whose true class is among the k highest probabilities.
pub fn top_k_accuracy(probabilities: &[Vec<f32>], truth: &[usize], k: usize) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let hits = probabilities
        .iter()
        .zip(truth)
        .filter(|(row, &t)| row.iter().filter(|&&p| p > row[t]).count() < k)
        .count();
    hits as f64 / truth.len() as f64
}

/// Expected calibration error over `bins` equal-width confidence bins:
/// Σ_b (n_b / N) · |accuracy_b − mean confidence_b|, confidence = max probability.
pub fn expected_calibration_error(probabilities: &[Vec<f32>], truth: &[usize], bins: usize) -> f64 {
    let n = truth.len();
    if n == 0 {
        return 0.0;
    }
    let mut count = vec![0usize; bins];
    let mut correct = vec![0f64; bins];
    let mut confidence = vec![0f64; bins];
    for (row, &t) in probabilities.iter().zip(truth) {
        let arg = argmax(row);
        let conf = arg.and_then(|i| row.get(i)).copied().unwrap_or(0.0);
        let b = ((f64::from(conf) * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        confidence[b] += f64::from(conf);
        if arg == Some(t) {
            correct[b] += 1.0;
        }
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            (count[b] as f64 / n as f64)
                * (correct[b] / count[b] as f64 - confidence[b] / count[b] as f64).abs()
        })
        .sum()
}

/// Mean negative log-likelihood of the truth at a temperature.
pub fn nll(logits: &[Vec<f32>], truth: &[usize], temperature: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(truth)
        .map(|(row, &t)| {
            let scaled: Vec<f64> = row.iter().map(|&z| f64::from(z) / temperature).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
            log_sum - scaled[t]
        })
        .sum();
    total / truth.len().max(1) as f64
}

/// Temperature T > 0 minimising the NLL (golden-section search on ln T ∈ [−3, 3]).
pub fn fit_temperature(logits: &[Vec<f32>], truth: &[usize]) -> f64 {
    let f = |log_t: f64| nll(logits, truth, log_t.exp());
    let (mut a, mut b) = (-3.0f64, 3.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..80 {
        let c = b - g * (b - a);
        let d = a + g * (b - a);
        if f(c) < f(d) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}

/// The full report from logits (one row per sample) and true labels.
pub fn report(logits: &[Vec<f32>], truth: &[usize], classes: usize, temperature: f64) -> Report {
    let probabilities: Vec<Vec<f32>> = logits.iter().map(|row| softmax(row, temperature)).collect();
    // A row with non-finite logits has no top-1; it is counted as class 0,
    // as the NaN-dropping maximum always did (wrong unless the truth is 0).
    let predicted: Vec<usize> = probabilities
        .iter()
        .map(|row| argmax(row).unwrap_or(0))
        .collect();
    let confusion = confusion_matrix(truth, &predicted, classes);
    let per_class = per_class_scores(&confusion);
    let n = truth.len();
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    // Macro averages over the classes that occur (in the truth or the
    // predictions), as scikit-learn: evaluating on a folder holding some of
    // the classes must not count the absent ones as zeros.
    let occurring: Vec<&ClassScores> = per_class
        .iter()
        .enumerate()
        .filter(|(c, s)| {
            s.support > 0
                || confusion
                    .iter()
                    .any(|row| row.get(*c).is_some_and(|&n| n > 0))
        })
        .map(|(_, s)| s)
        .collect();
    let macro_avg = |f: fn(&ClassScores) -> f64| {
        occurring.iter().map(|s| f(s)).sum::<f64>() / occurring.len().max(1) as f64
    };
    let weighted = |f: fn(&ClassScores) -> f64| {
        per_class
            .iter()
            .map(|s| f(s) * s.support as f64)
            .sum::<f64>()
            / n.max(1) as f64
    };
    Report {
        samples: n,
        accuracy: correct as f64 / n.max(1) as f64,
        macro_precision: macro_avg(|s| s.precision),
        macro_recall: macro_avg(|s| s.recall),
        macro_f1: macro_avg(|s| s.f1),
        weighted_precision: weighted(|s| s.precision),
        weighted_recall: weighted(|s| s.recall),
        weighted_f1: weighted(|s| s.f1),
        top3_accuracy: top_k_accuracy(&probabilities, truth, 3),
        ece: expected_calibration_error(&probabilities, truth, 15),
        per_class,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn hand_computed_three_class_case_with_a_never_predicted_class() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 1 1   (class 2 never predicted)
        let truth = [0, 0, 0, 1, 1, 2];
        let predicted = [0, 0, 1, 1, 1, 1];
        let m = confusion_matrix(&truth, &predicted, 3);
        assert_eq!(m, vec![vec![2, 1, 0], vec![0, 2, 0], vec![0, 1, 0]]);
        let s = per_class_scores(&m);
        // class 0: P 2/2, R 2/3, F1 0.8; class 1: P 2/4, R 2/2, F1 2/3; class 2: 0, 0, 0.
        close(s[0].precision, 1.0);
        close(s[0].recall, 2.0 / 3.0);
        close(s[0].f1, 0.8);
        close(s[1].precision, 0.5);
        close(s[1].recall, 1.0);
        close(s[1].f1, 2.0 / 3.0);
        assert_eq!(
            (s[2].precision, s[2].recall, s[2].f1, s[2].support),
            (0.0, 0.0, 0.0, 1)
        );
    }

    #[test]
    fn report_averages_match_hand_computation() {
        // Logits whose argmax reproduces the case above.
        let one_hot = |c: usize| {
            let mut row = vec![0.0f32; 3];
            row[c] = 5.0;
            row
        };
        let logits: Vec<Vec<f32>> = [0, 0, 1, 1, 1, 1].iter().map(|&c| one_hot(c)).collect();
        let r = report(&logits, &[0, 0, 0, 1, 1, 2], 3, 1.0);
        close(r.accuracy, 4.0 / 6.0);
        close(r.macro_precision, 0.5);
        close(r.macro_recall, (2.0 / 3.0 + 1.0) / 3.0);
        close(r.macro_f1, (0.8 + 2.0 / 3.0) / 3.0);
        // weighted by support 3, 2, 1.
        close(r.weighted_f1, (3.0 * 0.8 + 2.0 * 2.0 / 3.0) / 6.0);
        close(r.weighted_recall, 4.0 / 6.0);
        close(r.top3_accuracy, 1.0);
    }

    #[test]
    fn macro_averages_skip_classes_that_never_occur() {
        // The case above inside a 5-class model: classes 3 and 4 are neither
        // in the truth nor predicted, so the macro averages are unchanged.
        let one_hot = |c: usize| {
            let mut row = vec![0.0f32; 5];
            row[c] = 5.0;
            row
        };
        let logits: Vec<Vec<f32>> = [0, 0, 1, 1, 1, 1].iter().map(|&c| one_hot(c)).collect();
        let r = report(&logits, &[0, 0, 0, 1, 1, 2], 5, 1.0);
        close(r.macro_precision, 0.5);
        close(r.macro_f1, (0.8 + 2.0 / 3.0) / 3.0);
        // A class predicted but absent from the truth counts (precision 0).
        let logits: Vec<Vec<f32>> = [0, 3].iter().map(|&c| one_hot(c)).collect();
        // Class 0: P 1/1, R 1/2; class 3: P 0/1, R 0 → macro P 0.5, R 0.25.
        let r = report(&logits, &[0, 0], 5, 1.0);
        close(r.macro_precision, 0.5);
        close(r.macro_recall, 0.25);
    }

    #[test]
    fn top_k_counts_ties_in_favour_of_the_truth() {
        let p = vec![
            vec![0.5, 0.3, 0.2],
            vec![0.1, 0.2, 0.7],
            vec![0.4, 0.4, 0.2],
        ];
        // Row 1: truth 1 is second; row 2: truth 0 is last; row 3: truth 1 ties for first.
        close(top_k_accuracy(&p, &[1, 0, 1], 1), 1.0 / 3.0);
        close(top_k_accuracy(&p, &[1, 0, 1], 2), 2.0 / 3.0);
        close(top_k_accuracy(&p, &[1, 0, 1], 3), 1.0);
    }

    #[test]
    fn ece_by_hand() {
        // Two samples in bin (0.8, 0.8667]: confidences 0.85, 0.85, one correct → |0.5 − 0.85| = 0.35.
        // One sample at 0.6 (bin (0.5333, 0.6]), correct → |1 − 0.6| = 0.4.
        let p = vec![vec![0.85, 0.15], vec![0.85, 0.15], vec![0.4, 0.6]];
        let ece = expected_calibration_error(&p, &[0, 1, 1], 15);
        // Probabilities are f32: compare at f32 precision.
        assert!(
            (ece - ((2.0 / 3.0) * 0.35 + (1.0 / 3.0) * 0.4)).abs() < 1e-6,
            "{ece}"
        );
    }

    #[test]
    fn temperature_fit_recovers_overconfidence() {
        // Logits 4× too sharp for a 75%-accurate predictor: the best T is > 1,
        // and NLL at the fitted T is below NLL at T = 1.
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        for i in 0..40 {
            logits.push(vec![4.0 * (3f32).ln(), 0.0]);
            truth.push(if i % 4 == 0 { 1 } else { 0 });
        }
        let t = fit_temperature(&logits, &truth);
        // Exact optimum: softmax(z/T)[0] = 0.75 ⇔ z/T = ln 3 ⇔ T = 4.
        assert!((t - 4.0).abs() < 1e-3, "{t}");
        assert!(nll(&logits, &truth, t) < nll(&logits, &truth, 1.0));
    }
}
