//! The triage policy: from logits to top-3 classes, family probabilities and
//! one flag for the radiographer — `TUMOR LIKELY: <family>`, `NO TUMOR
//! FLAGGED`, or `REVIEW` (abstain) when the model is not confident enough or
//! the input looks out of distribution (not like any training slice).

use serde::{Deserialize, Serialize};
use tumorxai_shared::logits::{all_finite, softmax};
use tumorxai_shared::{ClassInfo, Family, Sequence};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A tumour family at or above this probability is flagged.
    pub tumour: f32,
    /// Normal at or above this probability (and no tumour flagged) clears the slice.
    pub normal: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            tumour: 0.5,
            normal: 0.7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "flag", content = "family")]
pub enum Flag {
    #[serde(rename = "TUMOR LIKELY")]
    TumourLikely(String),
    #[serde(rename = "NO TUMOR FLAGGED")]
    NoTumour,
    #[serde(rename = "REVIEW")]
    Review,
}

impl Flag {
    pub fn banner(&self) -> String {
        match self {
            Flag::TumourLikely(family) => format!("TUMOR LIKELY: {family}"),
            Flag::NoTumour => "NO TUMOR FLAGGED".to_string(),
            Flag::Review => "REVIEW".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub class: String,
    pub probability: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    pub top3: Vec<Ranked>,
    /// Family → summed probability of its T1 / T1C+ / T2 classes, in family order.
    pub families: Vec<(String, f32)>,
    pub flag: Flag,
    /// Why the flag was raised, in words.
    pub reason: String,
    /// Out-of-distribution score (see `tumorxai_shared::ood`), when the
    /// bundle ships a calibration.
    pub ood_score: Option<f32>,
    /// The score crossed its threshold (the flag is then REVIEW).
    pub out_of_distribution: bool,
    /// Why the input itself is doubtful (damaged data, not a brain slice),
    /// when it is; the flag is then REVIEW.
    pub input_doubt: Option<String>,
    /// Probabilities are `softmax(logits / T)` with a temperature fitted on
    /// held-out images (the bundle's); `false`: raw softmax (T = 1).
    pub calibrated: bool,
    pub temperature: f32,
    /// The sequence the input declares (DICOM series tags), if it does.
    #[serde(default)]
    pub declared_sequence: Option<String>,
    /// The sequence of the model's top class.
    #[serde(default)]
    pub model_sequence: Option<String>,
}

/// An out-of-distribution score and the threshold above which it abstains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OodCheck {
    pub score: f32,
    pub threshold: f32,
}

/// What is known about a slice besides its logits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// The bundle's softmax temperature (`None`: 1, uncalibrated).
    pub temperature: Option<f32>,
    pub ood: Option<OodCheck>,
    /// Why the input is doubtful, if it is.
    pub input_doubt: Option<String>,
    /// The sequence the input declares (DICOM Series Description, Protocol
    /// Name); a model reading another sequence is sent to REVIEW.
    pub declared_sequence: Option<Sequence>,
}

/// Applies the policy. Classes whose names are not of the real layout count
/// toward no family (they can still be in the top 3). Non-finite logits, a
/// logit count other than the class count, a doubtful input, an
/// out-of-distribution score or a top class of another sequence than the
/// declared one end in REVIEW whatever else holds.
pub fn triage(
    logits: &[f32],
    classes: &[String],
    thresholds: Thresholds,
    evidence: Evidence,
) -> Triage {
    let Evidence {
        temperature,
        ood,
        input_doubt,
        declared_sequence,
    } = evidence;
    let t = temperature.unwrap_or(1.0);
    let p = softmax(logits, f64::from(t));
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let top3 = order
        .iter()
        .take(3)
        .map(|&i| Ranked {
            class: classes
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            probability: p[i],
        })
        .collect();
    let families: Vec<(String, f32)> = Family::ALL
        .iter()
        .map(|&f| {
            let total = classes
                .iter()
                .zip(&p)
                .filter(|(name, _)| ClassInfo::parse(name).is_some_and(|c| c.family == f))
                .map(|(_, &q)| q)
                .sum();
            (f.label().to_string(), total)
        })
        .collect();
    let tumour = families
        .iter()
        .filter(|(name, _)| name != Family::Normal.label())
        .fold(None::<&(String, f32)>, |best, f| match best {
            Some(b) if b.1 >= f.1 => Some(b),
            _ => Some(f),
        });
    let normal = families
        .iter()
        .find(|(n, _)| n == Family::Normal.label())
        .map_or(0.0, |f| f.1);
    let out_of_distribution = ood.is_some_and(|o| o.score.is_nan() || o.score > o.threshold);
    let sound = all_finite(logits) && all_finite(&p) && logits.len() == classes.len();
    let model_sequence = order
        .first()
        .and_then(|&i| classes.get(i))
        .and_then(|name| ClassInfo::parse(name))
        .map(|c| c.sequence);
    let (flag, reason) = match (ood, tumour) {
        // A doubtful input is named first: it may not have been run at all.
        _ if input_doubt.is_some() => (
            Flag::Review,
            format!(
                "doubtful input: {}",
                input_doubt.as_deref().unwrap_or_default()
            ),
        ),
        _ if !sound => (
            Flag::Review,
            format!(
                "model output unusable: {} logits for {} classes, finite: {}",
                logits.len(),
                classes.len(),
                all_finite(logits)
            ),
        ),
        (Some(o), _) if out_of_distribution => (
            Flag::Review,
            format!(
                "input looks out of distribution (score {:.3} > {:.3})",
                o.score, o.threshold
            ),
        ),
        _ if declared_sequence.is_some() && declared_sequence != model_sequence => (
            Flag::Review,
            format!(
                "sequence disagreement: the DICOM series declares {}, the model reads {}",
                declared_sequence.map_or("?", |s| s.label()),
                model_sequence.map_or("no known sequence", |s| s.label())
            ),
        ),
        (_, Some((name, q))) if *q >= thresholds.tumour => (
            Flag::TumourLikely(name.clone()),
            format!("{name} probability {q:.2} ≥ {:.2}", thresholds.tumour),
        ),
        _ if normal >= thresholds.normal => (
            Flag::NoTumour,
            format!("Normal probability {normal:.2} ≥ {:.2}", thresholds.normal),
        ),
        _ => (
            Flag::Review,
            format!(
                "low confidence: no tumour family ≥ {:.2}, Normal {normal:.2} < {:.2}",
                thresholds.tumour, thresholds.normal
            ),
        ),
    };
    Triage {
        top3,
        families,
        flag,
        reason,
        ood_score: ood.map(|o| o.score),
        out_of_distribution,
        input_doubt,
        calibrated: temperature.is_some(),
        temperature: t,
        declared_sequence: declared_sequence.map(|s| s.label().to_string()),
        model_sequence: model_sequence.map(|s| s.label().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tumorxai_shared::CLASS_NAMES;

    fn classes() -> Vec<String> {
        CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    }

    /// Logits giving exactly the probabilities `p` (log p).
    fn logits_for(p: &[(usize, f32)]) -> Vec<f32> {
        let rest = 1.0 - p.iter().map(|x| x.1).sum::<f32>();
        let mut probs = [rest / (17 - p.len()) as f32; 17];
        for &(i, q) in p {
            probs[i] = q;
        }
        probs.iter().map(|q| q.ln()).collect()
    }

    #[test]
    fn families_sum_their_sequences_and_tumours_are_flagged() {
        // Glioma T1 0.3 + T1C+ 0.25 → Glioma 0.55 + a share of the rest.
        let t = triage(
            &logits_for(&[(0, 0.3), (1, 0.25), (6, 0.1)]),
            &classes(),
            Thresholds::default(),
            Evidence::default(),
        );
        assert_eq!(t.top3[0].class, CLASS_NAMES[0]);
        assert!((t.top3[0].probability - 0.3).abs() < 1e-5);
        let glioma = t.families.iter().find(|f| f.0 == "Glioma").unwrap().1;
        let rest = (1.0 - 0.65) / 14.0;
        assert!((glioma - (0.55 + rest)).abs() < 1e-5, "{glioma}");
        assert_eq!(t.flag, Flag::TumourLikely("Glioma".into()));
        assert_eq!(t.flag.banner(), "TUMOR LIKELY: Glioma");
        let total: f32 = t.families.iter().map(|f| f.1).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn confident_normal_clears_and_uncertainty_abstains() {
        let t = triage(
            &logits_for(&[(6, 0.5), (7, 0.4)]),
            &classes(),
            Thresholds::default(),
            Evidence::default(),
        );
        assert_eq!(t.flag, Flag::NoTumour);
        // Spread evenly: no family reaches its threshold → REVIEW.
        let t = triage(
            &[0.0; 17],
            &classes(),
            Thresholds::default(),
            Evidence::default(),
        );
        assert_eq!(t.flag, Flag::Review);
        assert!(t.reason.starts_with("low confidence"), "{}", t.reason);
        // Normal 0.6 with the default normal threshold 0.7 → REVIEW.
        let t = triage(
            &logits_for(&[(6, 0.6)]),
            &classes(),
            Thresholds::default(),
            Evidence::default(),
        );
        assert_eq!(t.flag, Flag::Review);
        let json = serde_json::to_string(&Flag::TumourLikely("Schwannoma".into())).unwrap();
        assert_eq!(json, r#"{"flag":"TUMOR LIKELY","family":"Schwannoma"}"#);
    }

    #[test]
    fn out_of_distribution_inputs_are_sent_to_review_whatever_the_model_says() {
        let confident = logits_for(&[(0, 0.9)]);
        let inside = OodCheck {
            score: 0.1,
            threshold: 0.2,
        };
        let t = triage(
            &confident,
            &classes(),
            Thresholds::default(),
            Evidence {
                ood: Some(inside),
                ..Evidence::default()
            },
        );
        assert_eq!(t.flag, Flag::TumourLikely("Glioma".into()));
        assert_eq!(t.ood_score, Some(0.1));
        assert!(!t.out_of_distribution);
        let outside = OodCheck {
            score: 0.35,
            threshold: 0.2,
        };
        let t = triage(
            &confident,
            &classes(),
            Thresholds::default(),
            Evidence {
                ood: Some(outside),
                ..Evidence::default()
            },
        );
        assert_eq!(t.flag, Flag::Review);
        assert!(t.out_of_distribution);
        assert!(t.reason.contains("out of distribution"), "{}", t.reason);
        let nan = OodCheck {
            score: f32::NAN,
            threshold: 0.2,
        };
        let t = triage(
            &confident,
            &classes(),
            Thresholds::default(),
            Evidence {
                ood: Some(nan),
                ..Evidence::default()
            },
        );
        assert_eq!(t.flag, Flag::Review);
        let json = serde_json::to_string(&Flag::TumourLikely("Schwannoma".into())).unwrap();
        assert_eq!(json, r#"{"flag":"TUMOR LIKELY","family":"Schwannoma"}"#);
    }

    #[test]
    fn the_bundle_temperature_softens_probabilities() {
        // Logits [ln 9, 0, …]: at T = 2 the first becomes ln 3 → p = 3/(3+16).
        let mut logits = vec![0.0f32; 17];
        logits[0] = 9f32.ln();
        let t = triage(
            &logits,
            &classes(),
            Thresholds::default(),
            Evidence {
                temperature: Some(2.0),
                ..Evidence::default()
            },
        );
        assert!((t.top3[0].probability - 3.0 / 19.0).abs() < 1e-6);
        assert!(t.calibrated);
        assert_eq!(t.temperature, 2.0);
        let raw = triage(
            &logits,
            &classes(),
            Thresholds::default(),
            Evidence::default(),
        );
        assert!((raw.top3[0].probability - 9.0 / 25.0).abs() < 1e-6);
        assert!(!raw.calibrated);
    }

    #[test]
    fn non_finite_or_misshapen_logits_are_never_flagged() {
        let mut confident = logits_for(&[(0, 0.99)]);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            confident[5] = bad;
            let t = triage(
                &confident,
                &classes(),
                Thresholds::default(),
                Evidence::default(),
            );
            assert_eq!(t.flag, Flag::Review, "{bad}");
            assert!(t.reason.contains("unusable"), "{}", t.reason);
        }
        let short = logits_for(&[(0, 0.99)])[..16].to_vec();
        let t = triage(
            &short,
            &classes(),
            Thresholds::default(),
            Evidence::default(),
        );
        assert_eq!(t.flag, Flag::Review);
    }

    #[test]
    fn a_doubtful_input_goes_to_review_whatever_the_model_says() {
        let confident = logits_for(&[(0, 0.99)]);
        let evidence = Evidence {
            input_doubt: Some("damaged JPEG data".into()),
            ..Evidence::default()
        };
        let t = triage(&confident, &classes(), Thresholds::default(), evidence);
        assert_eq!(t.flag, Flag::Review);
        assert!(t.reason.contains("damaged JPEG"), "{}", t.reason);
        assert_eq!(t.input_doubt.as_deref(), Some("damaged JPEG data"));
    }

    #[test]
    fn a_declared_sequence_the_model_does_not_read_goes_to_review() {
        // Class 1 is Glioma T1C+; declared T1C+ agrees, declared T2 does not.
        let confident = logits_for(&[(1, 0.95)]);
        let agree = Evidence {
            declared_sequence: Some(Sequence::T1C),
            ..Evidence::default()
        };
        let t = triage(&confident, &classes(), Thresholds::default(), agree);
        assert_eq!(t.flag, Flag::TumourLikely("Glioma".into()));
        assert_eq!(t.declared_sequence.as_deref(), Some("T1C+"));
        assert_eq!(t.model_sequence.as_deref(), Some("T1C+"));
        let disagree = Evidence {
            declared_sequence: Some(Sequence::T2),
            ..Evidence::default()
        };
        let t = triage(&confident, &classes(), Thresholds::default(), disagree);
        assert_eq!(t.flag, Flag::Review);
        assert!(
            t.reason.contains("declares T2") && t.reason.contains("reads T1C+"),
            "{}",
            t.reason
        );
    }
}
