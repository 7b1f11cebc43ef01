//! DICOM result objects sent back to the hospital's PACS for every answered
//! slice, in the source's study: a Secondary Capture preview ([`sc`]: the
//! slice with its EigenCAM overlay and the flag burnt in) and a
//! Comprehensive 3D SR with TID 1500 at its root ([`sr`]: the flag, every
//! class's calibrated probability, the model and bundle in the Contributing
//! Equipment Sequence, the source slice as evidence), as IHE's AI Results
//! profile describes. A REVIEW and a slice that could not be triaged are
//! results too: the SR then says so and why.
//!
//! The builders are pure (source header, content, time in; Part 10 bytes
//! out) and written against PS3.3's module tables; dciodvfy, dsrdump and
//! pydicom check their output in the tests.

mod burn_in;
pub mod content;
pub mod sc;
pub mod source;
pub mod sr;
pub mod uid;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
use image::RgbImage;
use thiserror::Error;

pub use content::{Algorithm, Finding, ResultContent, ReviewCategory, NOT_FOR_DIAGNOSTIC_USE};
pub use source::SourceStudy;

/// Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
/// Comprehensive 3D SR Storage.
pub const COMPREHENSIVE_3D_SR: &str = "1.2.840.10008.5.1.4.1.1.88.34";
/// Our implementation class UID (PS3.7 D.3.3.2): under the UUID arc, fixed.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.97114911059836612394719437117306547271";
/// Manufacturer in every result.
pub const MANUFACTURER: &str = "TumorXAI";
/// Manufacturer's Model Name in every result.
pub const MODEL_NAME: &str = "tumorxai-device";

#[derive(Debug, Error)]
pub enum ResultError {
    /// The source cannot be answered into its study.
    #[error("no PACS result: {0}")]
    Source(String),
    #[error("encoding the result object: {0}")]
    Encoding(String),
}

/// Which result object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    SecondaryCapture,
    StructuredReport,
}

impl ResultKind {
    pub fn name(self) -> &'static str {
        match self {
            ResultKind::SecondaryCapture => "SC",
            ResultKind::StructuredReport => "SR",
        }
    }
}

/// One encoded result, ready to store or send.
#[derive(Debug, Clone)]
pub struct ResultObject {
    pub kind: ResultKind,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// Part 10 file, Explicit VR Little Endian.
    pub bytes: Vec<u8>,
}

/// When the result was made: DICOM DA and TM, in UTC (Timezone Offset From
/// UTC says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub date: String,
    pub time: String,
}

impl Created {
    pub fn at_unix(seconds: u64) -> Created {
        // "YYYY-MM-DDTHH:MM:SSZ"
        let text = tumorxai_shared::bundle::rfc3339_utc(seconds);
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let (date, time) = digits.split_at(8.min(digits.len()));
        Created {
            date: date.into(),
            time: time.into(),
        }
    }

    pub fn now() -> Created {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Created::at_unix(seconds)
    }
}

/// Both results of one slice: the SC where there is an image to show, and
/// always the SR.
pub fn build(
    source: &SourceStudy,
    content: &ResultContent,
    overlay: Option<&RgbImage>,
    created: &Created,
) -> Result<Vec<ResultObject>, ResultError> {
    let mut objects = Vec::with_capacity(2);
    if let Some(image) = overlay {
        objects.push(sc::secondary_capture(source, content, image, created)?);
    }
    objects.push(sr::structured_report(source, content, created)?);
    Ok(objects)
}

/// A string value, padded to even length as PS3.5 6.2 asks (UIDs with NUL,
/// text with a space).
fn padded(vr: VR, value: &str) -> String {
    let mut value = value.to_string();
    if value.len() % 2 == 1 {
        value.push(if vr == VR::UI { '\0' } else { ' ' });
    }
    value
}

fn put_str(object: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    object.put(DataElement::new(tag, vr, padded(vr, value)));
}

fn put_strs(object: &mut InMemDicomObject, tag: Tag, vr: VR, values: &[&str]) {
    let joined = values.join("\\");
    put_str(object, tag, vr, &joined);
}

fn put_u16(object: &mut InMemDicomObject, tag: Tag, value: u16) {
    object.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

fn put_sequence(object: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    object.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A Code Sequence item (PS3.3 Table 8.8-1).
fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put_str(&mut item, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut item, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put_str(&mut item, tags::CODE_MEANING, VR::LO, meaning);
    item
}

/// A Software Versions value: LO, at most 64 characters.
pub(crate) fn lo(value: &str) -> String {
    value.chars().take(64).collect()
}

/// SOP Common, Patient, General Study, the series attributes both IODs
/// share, and the General and Contributing Equipment (IHE AIR: the
/// algorithm identified with Purpose of Reference "Processing Algorithm").
struct Common<'a> {
    sop_class_uid: &'a str,
    sop_instance_uid: String,
    series_instance_uid: String,
    series_number: &'a str,
    series_description: &'a str,
    modality: &'a str,
}

fn common_modules(
    object: &mut InMemDicomObject,
    source: &SourceStudy,
    content: &ResultContent,
    created: &Created,
    common: &Common<'_>,
) {
    let algorithm = &content.algorithm;
    source.copy_into(object);
    // Copied names may hold any character: the writer encodes every text
    // value in UTF-8 once this is set.
    put_str(object, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_str(object, tags::SOP_CLASS_UID, VR::UI, common.sop_class_uid);
    put_str(
        object,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        &common.sop_instance_uid,
    );
    put_str(object, tags::INSTANCE_CREATION_DATE, VR::DA, &created.date);
    put_str(object, tags::INSTANCE_CREATION_TIME, VR::TM, &created.time);
    put_str(object, tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000");
    put_str(object, tags::MODALITY, VR::CS, common.modality);
    put_str(
        object,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &common.series_instance_uid,
    );
    put_str(object, tags::SERIES_NUMBER, VR::IS, common.series_number);
    put_str(object, tags::SERIES_DATE, VR::DA, &created.date);
    put_str(object, tags::SERIES_TIME, VR::TM, &created.time);
    put_str(
        object,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        common.series_description,
    );
    let instance = source.instance_number.unwrap_or(1).to_string();
    put_str(object, tags::INSTANCE_NUMBER, VR::IS, &instance);
    put_str(object, tags::MANUFACTURER, VR::LO, MANUFACTURER);
    put_str(object, tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL_NAME);
    put_str(
        object,
        tags::DEVICE_SERIAL_NUMBER,
        VR::LO,
        &lo(&algorithm.device_serial),
    );
    let versions = software_versions(algorithm);
    let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
    put_strs(object, tags::SOFTWARE_VERSIONS, VR::LO, &versions);
    let mut equipment = InMemDicomObject::new_empty();
    put_str(&mut equipment, tags::MANUFACTURER, VR::LO, MANUFACTURER);
    put_str(
        &mut equipment,
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        &lo(&format!("{} (model {})", MODEL_NAME, algorithm.model_id)),
    );
    put_strs(&mut equipment, tags::SOFTWARE_VERSIONS, VR::LO, &versions);
    put_str(
        &mut equipment,
        tags::DEVICE_SERIAL_NUMBER,
        VR::LO,
        &lo(&algorithm.device_serial),
    );
    put_str(
        &mut equipment,
        tags::CONTRIBUTION_DATE_TIME,
        VR::DT,
        &format!("{}{}+0000", created.date, created.time),
    );
    put_str(
        &mut equipment,
        tags::CONTRIBUTION_DESCRIPTION,
        VR::ST,
        "Automated triage by a self-supervised ResNet classifier; not for diagnostic use",
    );
    // IHE AI Results (AIR) Rev 1.1, 6.5.3.1: the algorithm as contributing
    // equipment; the profile's code until DICOM assigns one.
    put_sequence(
        &mut equipment,
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![code("Newcode1", "99IHE", "Processing Algorithm")],
    );
    put_sequence(
        object,
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        vec![equipment],
    );
}

/// Runtime, model and bundle, each at most 64 characters (LO).
fn software_versions(algorithm: &Algorithm) -> Vec<String> {
    vec![
        lo(&format!("{} {}", MODEL_NAME, algorithm.software_version)),
        lo(&format!(
            "{} {}",
            algorithm.model_id, algorithm.model_version
        )),
        lo(&algorithm.bundle_sha256),
    ]
}

/// The Part 10 file of a data set, Explicit VR Little Endian.
fn part10(object: InMemDicomObject) -> Result<Vec<u8>, ResultError> {
    let file = object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN.uid())
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(format!(
                    "TUMORXAI_{}",
                    env!("CARGO_PKG_VERSION").replace('.', "")
                )),
        )
        .map_err(|e| ResultError::Encoding(e.to_string()))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|e| ResultError::Encoding(e.to_string()))?;
    Ok(bytes)
}

/// The source image as a referenced SOP (Source Image Sequence, evidence).
fn referenced_sop(source: &SourceStudy) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put_str(
        &mut item,
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        &source.sop_class_uid,
    );
    put_str(
        &mut item,
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        &source.sop_instance_uid,
    );
    item
}
