//! The structured report: a Comprehensive 3D SR (PS3.3 A.35.13) with TID
//! 1500 "Measurement Report" at its root, as IHE AI Results asks:
//!
//! ```text
//! CONTAINER Imaging Measurement Report            (TID 1500, SEPARATE)
//!  ├ HAS CONCEPT MOD  Language = English (United States)     (TID 1204)
//!  ├ HAS OBS CONTEXT  Observer Type = Device, device UID/name/…  (TID 1004)
//!  ├ HAS CONCEPT MOD  Procedure reported = MR Brain
//!  ├ CONTAINS CONTAINER Image Library > Image Library Group > IMAGE (source)
//!  ├ CONTAINS CONTAINER Qualitative Evaluations
//!  │    Triage flag (coded), tumour family, review reason (coded), reason,
//!  │    explanation map shown/withheld, bundle SHA-256, notice
//!  └ CONTAINS CONTAINER Derived Imaging Measurements
//!       one NUM per class: calibrated probability, UCUM "1"
//! ```
//!
//! Our own concepts use the private coding scheme `99TUMORXAI` (PS3.16
//! 8.2: designators starting "99" are private), declared in the Coding
//! Scheme Identification Sequence.

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::content::{Finding, ResultContent, ReviewCategory, NOT_FOR_DIAGNOSTIC_USE};
use super::uid::derived_uid;
use super::{
    code, common_modules, lo, part10, put_sequence, put_str, referenced_sop, Common, Created,
    ResultError, ResultKind, ResultObject, SourceStudy, COMPREHENSIVE_3D_SR, MANUFACTURER,
    MODEL_NAME,
};
use crate::display::short_class_label;

/// Our private coding scheme designator.
pub const SCHEME: &str = "99TUMORXAI";
/// Series Number of the SR series.
pub const SERIES_NUMBER: &str = "9902";
pub const SERIES_DESCRIPTION: &str = "TumorXAI triage report (not for diagnostic use)";

/// A coded concept: (value, scheme, meaning).
type Concept = (&'static str, &'static str, String);

fn dcm(value: &'static str, meaning: &str) -> Concept {
    (value, "DCM", meaning.into())
}

fn ours(value: &'static str, meaning: &str) -> Concept {
    (value, SCHEME, meaning.into())
}

/// One content item (PS3.3 C.17.3) and its children.
enum Item {
    Container(Concept, Vec<(Rel, Item)>),
    Code(Concept, Concept),
    Text(Concept, String),
    Num(Concept, f64),
    UidRef(Concept, String),
    Image(String, String),
}

#[derive(Clone, Copy)]
enum Rel {
    Contains,
    HasConceptMod,
    HasObsContext,
}

impl Rel {
    fn name(self) -> &'static str {
        match self {
            Rel::Contains => "CONTAINS",
            Rel::HasConceptMod => "HAS CONCEPT MOD",
            Rel::HasObsContext => "HAS OBS CONTEXT",
        }
    }
}

fn code_item(concept: &Concept) -> InMemDicomObject {
    code(concept.0, concept.1, &concept.2)
}

/// Encodes an item's value type, concept and value into `object`.
fn encode(item: &Item, object: &mut InMemDicomObject) {
    let (value_type, concept) = match item {
        Item::Container(concept, _) => ("CONTAINER", Some(concept)),
        Item::Code(concept, _) => ("CODE", Some(concept)),
        Item::Text(concept, _) => ("TEXT", Some(concept)),
        Item::Num(concept, _) => ("NUM", Some(concept)),
        Item::UidRef(concept, _) => ("UIDREF", Some(concept)),
        Item::Image(..) => ("IMAGE", None),
    };
    put_str(object, tags::VALUE_TYPE, VR::CS, value_type);
    if let Some(concept) = concept {
        put_sequence(
            object,
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code_item(concept)],
        );
    }
    match item {
        Item::Container(_, children) => {
            put_str(object, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
            let encoded = children
                .iter()
                .map(|(rel, child)| {
                    let mut child_object = InMemDicomObject::new_empty();
                    put_str(
                        &mut child_object,
                        tags::RELATIONSHIP_TYPE,
                        VR::CS,
                        rel.name(),
                    );
                    encode(child, &mut child_object);
                    child_object
                })
                .collect();
            put_sequence(object, tags::CONTENT_SEQUENCE, encoded);
        }
        Item::Code(_, value) => {
            put_sequence(object, tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)]);
        }
        Item::Text(_, text) => put_str(object, tags::TEXT_VALUE, VR::UT, text),
        Item::Num(_, value) => {
            let mut measured = InMemDicomObject::new_empty();
            // DS: at most 16 characters.
            put_str(
                &mut measured,
                tags::NUMERIC_VALUE,
                VR::DS,
                &format!("{value:.6}"),
            );
            put_sequence(
                &mut measured,
                tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
                vec![code("1", "UCUM", "no units")],
            );
            put_sequence(object, tags::MEASURED_VALUE_SEQUENCE, vec![measured]);
        }
        Item::UidRef(_, uid) => put_str(object, tags::UID, VR::UI, uid),
        Item::Image(class, instance) => {
            let mut reference = InMemDicomObject::new_empty();
            put_str(
                &mut reference,
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                class,
            );
            put_str(
                &mut reference,
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                instance,
            );
            put_sequence(object, tags::REFERENCED_SOP_SEQUENCE, vec![reference]);
        }
    }
}

/// The coded flag: (code value, meaning).
fn flag_code(finding: &Finding) -> Concept {
    match finding {
        Finding::TumourLikely { .. } => ours("TUMOR_LIKELY", "Tumor likely"),
        Finding::NoTumour => ours("NO_TUMOR", "No tumor flagged"),
        Finding::Review { .. } => ours("REVIEW", "Review"),
        Finding::NotTriaged { .. } => ours("NOT_TRIAGED", "Not triaged"),
    }
}

fn review_code(category: ReviewCategory) -> Concept {
    let value = match category {
        ReviewCategory::DoubtfulInput => "DOUBTFUL_INPUT",
        ReviewCategory::OutOfDistribution => "OOD",
        ReviewCategory::SequenceDisagreement => "SEQ_DISAGREE",
        ReviewCategory::LowConfidence => "LOW_CONFIDENCE",
    };
    ours(value, category.meaning())
}

/// Concept of a class's probability: "P01".."P17" in the bundle's order.
fn probability_concept(index: usize, class: &str) -> Concept {
    const VALUES: [&str; 32] = [
        "P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P09", "P10", "P11", "P12", "P13",
        "P14", "P15", "P16", "P17", "P18", "P19", "P20", "P21", "P22", "P23", "P24", "P25", "P26",
        "P27", "P28", "P29", "P30", "P31", "P32",
    ];
    let value = VALUES.get(index).copied().unwrap_or("PXX");
    // Code Meaning is LO (64 characters): the short label, "Glioma T1C+".
    ours(
        value,
        &lo(&format!("Probability {}", short_class_label(class))),
    )
}

fn qualitative(content: &ResultContent) -> Vec<(Rel, Item)> {
    let mut items = vec![(
        Rel::Contains,
        Item::Code(ours("FLAG", "Triage flag"), flag_code(&content.finding)),
    )];
    let text = |value: &'static str, meaning: &str, text: String| {
        (Rel::Contains, Item::Text(ours(value, meaning), text))
    };
    match &content.finding {
        Finding::TumourLikely { family } => {
            items.push(text("FAMILY", "Tumor family", family.clone()));
        }
        Finding::NoTumour => {}
        Finding::Review { category, reason } => {
            items.push((
                Rel::Contains,
                Item::Code(
                    ours("REVIEW_REASON", "Review reason"),
                    review_code(*category),
                ),
            ));
            items.push(text("REASON", "Reason", reason.clone()));
        }
        Finding::NotTriaged { reason } => {
            items.push(text("REASON", "Reason", reason.clone()));
        }
    }
    if let Some(withheld) = content.map_withheld {
        let shown = if withheld {
            "withheld (low confidence): the preview shows the slice alone"
        } else {
            "shown on the preview"
        };
        items.push(text("MAP", "EigenCAM explanation map", shown.into()));
    }
    items.push(text(
        "MODEL",
        "Model",
        format!(
            "{} {}",
            content.algorithm.model_id, content.algorithm.model_version
        ),
    ));
    items.push(text(
        "BUNDLE_SHA256",
        "Model bundle SHA-256",
        content.algorithm.bundle_sha256.clone(),
    ));
    items.push(text("NOTICE", "Notice", NOT_FOR_DIAGNOSTIC_USE.into()));
    items
}

fn report_tree(source: &SourceStudy, content: &ResultContent) -> Item {
    let algorithm = &content.algorithm;
    let mut children = vec![
        (
            Rel::HasConceptMod,
            Item::Code(
                dcm("121049", "Language of Content Item and Descendants"),
                ("en-US", "RFC5646", "English (United States)".into()),
            ),
        ),
        (
            Rel::HasObsContext,
            Item::Code(dcm("121005", "Observer Type"), dcm("121007", "Device")),
        ),
        (
            Rel::HasObsContext,
            Item::UidRef(
                dcm("121012", "Device Observer UID"),
                derived_uid(&["device observer", &algorithm.device_serial]),
            ),
        ),
        (
            Rel::HasObsContext,
            Item::Text(dcm("121013", "Device Observer Name"), MODEL_NAME.into()),
        ),
        (
            Rel::HasObsContext,
            Item::Text(
                dcm("121014", "Device Observer Manufacturer"),
                MANUFACTURER.into(),
            ),
        ),
        (
            Rel::HasObsContext,
            Item::Text(
                dcm("121015", "Device Observer Model Name"),
                format!("{} {}", algorithm.model_id, algorithm.model_version),
            ),
        ),
        (
            Rel::HasObsContext,
            Item::Text(
                dcm("121016", "Device Observer Serial Number"),
                algorithm.device_serial.clone(),
            ),
        ),
        (
            Rel::HasConceptMod,
            Item::Code(
                dcm("121058", "Procedure reported"),
                ("24590-2", "LN", "MR Brain".into()),
            ),
        ),
        (
            Rel::Contains,
            Item::Container(
                dcm("111028", "Image Library"),
                vec![(
                    Rel::Contains,
                    Item::Container(
                        dcm("126200", "Image Library Group"),
                        vec![(
                            Rel::Contains,
                            Item::Image(
                                source.sop_class_uid.clone(),
                                source.sop_instance_uid.clone(),
                            ),
                        )],
                    ),
                )],
            ),
        ),
        (
            Rel::Contains,
            Item::Container(
                ("C0034375", "UMLS", "Qualitative Evaluations".into()),
                qualitative(content),
            ),
        ),
    ];
    if !content.probabilities.is_empty() {
        let measurements = content
            .probabilities
            .iter()
            .enumerate()
            .map(|(i, (class, p))| {
                (
                    Rel::Contains,
                    Item::Num(probability_concept(i, class), f64::from(*p)),
                )
            })
            .collect();
        children.push((
            Rel::Contains,
            Item::Container(dcm("126011", "Derived Imaging Measurements"), measurements),
        ));
    }
    Item::Container(dcm("126000", "Imaging Measurement Report"), children)
}

/// The SR of one slice.
pub fn structured_report(
    source: &SourceStudy,
    content: &ResultContent,
    created: &Created,
) -> Result<ResultObject, ResultError> {
    let bundle = &content.algorithm.bundle_sha256;
    // The decision is part of the identity: the same slice, model and
    // decision again (a re-run after a restart) is the same instance, which
    // the PACS files once; a different decision is a different instance.
    let sop_instance_uid = derived_uid(&[
        "sr",
        &source.sop_instance_uid,
        bundle,
        &content.finding.banner(),
    ]);
    let common = Common {
        sop_class_uid: COMPREHENSIVE_3D_SR,
        sop_instance_uid: sop_instance_uid.clone(),
        series_instance_uid: derived_uid(&["sr series", &source.series_instance_uid, bundle]),
        series_number: SERIES_NUMBER,
        series_description: SERIES_DESCRIPTION,
        modality: "SR",
    };
    let mut object = InMemDicomObject::new_empty();
    common_modules(&mut object, source, content, created, &common);
    // SR Document Series (C.17.1): Type 2, empty.
    put_sequence(
        &mut object,
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        Vec::new(),
    );
    // SR Document General (C.17.2).
    put_str(&mut object, tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put_str(&mut object, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    put_str(&mut object, tags::CONTENT_DATE, VR::DA, &created.date);
    put_str(&mut object, tags::CONTENT_TIME, VR::TM, &created.time);
    put_sequence(
        &mut object,
        tags::PERFORMED_PROCEDURE_CODE_SEQUENCE,
        Vec::new(),
    );
    put_sequence(
        &mut object,
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![evidence(source)],
    );
    let mut scheme = InMemDicomObject::new_empty();
    put_str(&mut scheme, tags::CODING_SCHEME_DESIGNATOR, VR::SH, SCHEME);
    put_str(
        &mut scheme,
        tags::CODING_SCHEME_NAME,
        VR::ST,
        "TumorXAI triage results",
    );
    put_str(
        &mut scheme,
        tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
        VR::ST,
        MANUFACTURER,
    );
    put_sequence(
        &mut object,
        tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
        vec![scheme],
    );
    // SR Document Content (C.17.3): the root container and its template.
    let mut template = InMemDicomObject::new_empty();
    put_str(&mut template, tags::MAPPING_RESOURCE, VR::CS, "DCMR");
    put_str(&mut template, tags::TEMPLATE_IDENTIFIER, VR::CS, "1500");
    put_sequence(&mut object, tags::CONTENT_TEMPLATE_SEQUENCE, vec![template]);
    encode(&report_tree(source, content), &mut object);
    Ok(ResultObject {
        kind: ResultKind::StructuredReport,
        sop_class_uid: COMPREHENSIVE_3D_SR.into(),
        sop_instance_uid,
        bytes: part10(object)?,
    })
}

/// The Hierarchical SOP Instance Reference of the source (C.17.2.1).
fn evidence(source: &SourceStudy) -> InMemDicomObject {
    let mut series = InMemDicomObject::new_empty();
    put_str(
        &mut series,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &source.series_instance_uid,
    );
    put_sequence(
        &mut series,
        tags::REFERENCED_SOP_SEQUENCE,
        vec![referenced_sop(source)],
    );
    let mut study = InMemDicomObject::new_empty();
    put_str(
        &mut study,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &source.study_instance_uid,
    );
    put_sequence(&mut study, tags::REFERENCED_SERIES_SEQUENCE, vec![series]);
    study
}
