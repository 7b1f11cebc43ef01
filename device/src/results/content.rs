//! What a result says, independent of how it is encoded: the finding (the
//! triage flag, or that the slice was not triaged and why), every class's
//! calibrated probability, whether the explanation map was withheld, and
//! which algorithm said it. Both the Secondary Capture and the structured
//! report are written from one [`ResultContent`], so they cannot disagree.

use tumorxai_shared::logits::softmax;

use crate::loader::LoadedModel;
use crate::pipeline::SliceResult;
use crate::triage::Flag;

/// The notice every result carries.
pub const NOT_FOR_DIAGNOSTIC_USE: &str = "NOT FOR DIAGNOSTIC USE";

/// The finding of one slice.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    TumourLikely {
        family: String,
    },
    NoTumour,
    /// The policy abstained; `category` is one of [`ReviewCategory`].
    Review {
        category: ReviewCategory,
        reason: String,
    },
    /// No triage at all (undecodable or refused input, non-finite outputs).
    NotTriaged {
        reason: String,
    },
}

/// Why a slice went to REVIEW, coarsely, for the coded SR item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewCategory {
    DoubtfulInput,
    OutOfDistribution,
    SequenceDisagreement,
    LowConfidence,
}

impl ReviewCategory {
    pub fn meaning(self) -> &'static str {
        match self {
            ReviewCategory::DoubtfulInput => "Doubtful input",
            ReviewCategory::OutOfDistribution => "Out of distribution",
            ReviewCategory::SequenceDisagreement => "Sequence disagreement",
            ReviewCategory::LowConfidence => "Low confidence",
        }
    }
}

impl Finding {
    /// The one-line banner, as on the panel.
    pub fn banner(&self) -> String {
        match self {
            Finding::TumourLikely { family } => format!("TUMOR LIKELY: {family}"),
            Finding::NoTumour => "NO TUMOR FLAGGED".into(),
            Finding::Review { category, .. } => format!("REVIEW: {}", category.meaning()),
            Finding::NotTriaged { .. } => "NOT TRIAGED".into(),
        }
    }
}

/// The algorithm that produced the result (Contributing Equipment, SC
/// device attributes, and the burnt-in model line).
#[derive(Debug, Clone, PartialEq)]
pub struct Algorithm {
    pub model_id: String,
    pub model_version: String,
    /// SHA-256 of the signed bundle (hex, 64 digits).
    pub bundle_sha256: String,
    /// This runtime's version.
    pub software_version: String,
    /// Device Serial Number of the Enhanced General Equipment module.
    pub device_serial: String,
}

impl Algorithm {
    pub fn of(model: &LoadedModel, device_serial: &str) -> Algorithm {
        Algorithm {
            model_id: model.manifest.model_id.clone(),
            model_version: model.manifest.version.clone(),
            bundle_sha256: model.bundle_sha256.clone(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            device_serial: device_serial.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultContent {
    pub finding: Finding,
    /// Every class and its calibrated probability, in the bundle's class
    /// order; empty when not triaged.
    pub probabilities: Vec<(String, f32)>,
    /// The three most probable classes, most probable first.
    pub top3: Vec<(String, f32)>,
    /// Whether the EigenCAM map was withheld (`None`: not triaged).
    pub map_withheld: Option<bool>,
    pub algorithm: Algorithm,
}

impl ResultContent {
    /// The content of a triaged slice: the flag and the probabilities the
    /// triage policy used (softmax of the logits at the bundle's
    /// temperature, the same function and temperature as the answer's).
    pub fn triaged(result: &SliceResult, classes: &[String], algorithm: Algorithm) -> Self {
        let t = &result.triage;
        let finding = match &t.flag {
            Flag::TumourLikely(family) => Finding::TumourLikely {
                family: family.clone(),
            },
            Flag::NoTumour => Finding::NoTumour,
            Flag::Review => Finding::Review {
                category: if t.input_doubt.is_some() {
                    ReviewCategory::DoubtfulInput
                } else if t.out_of_distribution {
                    ReviewCategory::OutOfDistribution
                } else if t.declared_sequence.is_some()
                    && t.model_sequence.is_some()
                    && t.declared_sequence != t.model_sequence
                {
                    ReviewCategory::SequenceDisagreement
                } else {
                    ReviewCategory::LowConfidence
                },
                reason: t.reason.clone(),
            },
        };
        let probabilities = softmax(&result.logits, f64::from(t.temperature));
        ResultContent {
            finding,
            probabilities: classes.iter().cloned().zip(probabilities).collect(),
            top3: t
                .top3
                .iter()
                .map(|r| (r.class.clone(), r.probability))
                .collect(),
            map_withheld: Some(result.explanation.low_confidence),
            algorithm,
        }
    }

    /// The content of a slice that was not triaged.
    pub fn not_triaged(reason: &str, algorithm: Algorithm) -> Self {
        ResultContent {
            finding: Finding::NotTriaged {
                reason: reason.into(),
            },
            probabilities: Vec::new(),
            top3: Vec::new(),
            map_withheld: None,
            algorithm,
        }
    }
}
