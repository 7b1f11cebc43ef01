//! The source slice's Patient and General Study modules, copied element by
//! element (original VR, value and character set) into the result objects,
//! so that the PACS files them into the same study; and the source's UIDs
//! for the references. These identifiers go into the DICOM results only:
//! the panel, stdout, the audit log and the JSON answer never carry them.

use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::ResultError;

/// Patient and study attributes copied: Patient module (PS3.3 C.7.1.1) and
/// General Study module (C.7.2.1), the Type 1 and 2 ones and the usual
/// Type 3 ones. Their text is decoded in the source's character set and
/// written in the result's (UTF-8, ISO_IR 192).
const COPIED: [Tag; 12] = [
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
];

/// Type 2 attributes of the copied modules: present (empty) in the result
/// even where the source lacks them.
const TYPE_2: [(Tag, VR); 9] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

/// What a result takes from the slice it answers.
#[derive(Debug, Clone)]
pub struct SourceStudy {
    /// The copied elements, in [`COPIED`] order, absent ones left out.
    elements: Vec<DataElement<InMemDicomObject>>,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The source's Instance Number, if it has one (results sort alike).
    pub instance_number: Option<i32>,
}

impl SourceStudy {
    /// Reads the header of a Part 10 file (up to the pixel data). A file
    /// that is not DICOM, or lacks one of the four UIDs a result refers
    /// to, gives no result: the PACS could not file it with its study.
    pub fn from_part10(bytes: &[u8]) -> Result<SourceStudy, ResultError> {
        let object = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .from_reader(bytes)
            .map_err(|e| ResultError::Source(format!("not a readable DICOM file: {e}")))?;
        let uid = |tag: Tag, name: &str| {
            object
                .element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ResultError::Source(format!("the source has no {name}")))
        };
        let elements = COPIED
            .iter()
            .filter_map(|&tag| object.element_opt(tag).ok().flatten().cloned())
            .collect();
        Ok(SourceStudy {
            elements,
            study_instance_uid: uid(tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
            series_instance_uid: uid(tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
            sop_class_uid: uid(tags::SOP_CLASS_UID, "SOP Class UID")?,
            sop_instance_uid: uid(tags::SOP_INSTANCE_UID, "SOP Instance UID")?,
            instance_number: object
                .element_opt(tags::INSTANCE_NUMBER)
                .ok()
                .flatten()
                .and_then(|e| e.to_int::<i32>().ok()),
        })
    }

    /// Puts the Patient and General Study modules into `object`: the
    /// source's elements as they are, Type 2 ones it lacks as empty.
    pub fn copy_into(&self, object: &mut InMemDicomObject) {
        for (tag, vr) in TYPE_2 {
            object.put(DataElement::new(tag, vr, ""));
        }
        for element in &self.elements {
            object.put(element.clone());
        }
    }
}
