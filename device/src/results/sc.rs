//! The Secondary Capture preview (Secondary Capture Image IOD, PS3.3
//! A.8.1): the captioned picture of [`super::burn_in`] as an 8-bit RGB
//! image in a new series of the source's study, Image Type DERIVED\SECONDARY,
//! Conversion Type WSD (workstation), Burned In Annotation YES, and the
//! source slice in the Source Image Sequence.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use image::RgbImage;

use super::burn_in::captioned;
use super::content::ResultContent;
use super::uid::derived_uid;
use super::{
    code, common_modules, part10, put_sequence, put_str, put_strs, put_u16, referenced_sop, Common,
    Created, ResultError, ResultKind, ResultObject, SourceStudy, MANUFACTURER, MODEL_NAME,
    SECONDARY_CAPTURE,
};

/// Series Number of the SC series.
pub const SERIES_NUMBER: &str = "9901";
pub const SERIES_DESCRIPTION: &str = "TumorXAI triage preview (not for diagnostic use)";

pub fn secondary_capture(
    source: &SourceStudy,
    content: &ResultContent,
    overlay: &RgbImage,
    created: &Created,
) -> Result<ResultObject, ResultError> {
    let bundle = &content.algorithm.bundle_sha256;
    // The decision is part of the identity: the same slice, model and
    // decision again (a re-run after a restart) is the same instance, which
    // the PACS files once; a different decision is a different instance.
    let sop_instance_uid = derived_uid(&[
        "sc",
        &source.sop_instance_uid,
        bundle,
        &content.finding.banner(),
    ]);
    let common = Common {
        sop_class_uid: SECONDARY_CAPTURE,
        sop_instance_uid: sop_instance_uid.clone(),
        series_instance_uid: derived_uid(&["sc series", &source.series_instance_uid, bundle]),
        series_number: SERIES_NUMBER,
        series_description: SERIES_DESCRIPTION,
        modality: "OT",
    };
    let mut object = InMemDicomObject::new_empty();
    common_modules(&mut object, source, content, created, &common);
    // General Series: not a paired structure, so Laterality (Type 2C)
    // stays absent.
    put_str(&mut object, tags::BODY_PART_EXAMINED, VR::CS, "BRAIN");
    // SC Equipment (C.8.6.1).
    put_str(&mut object, tags::CONVERSION_TYPE, VR::CS, "WSD");
    put_str(
        &mut object,
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER,
        VR::LO,
        MANUFACTURER,
    );
    put_str(
        &mut object,
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER_MODEL_NAME,
        VR::LO,
        MODEL_NAME,
    );
    put_str(
        &mut object,
        tags::SECONDARY_CAPTURE_DEVICE_SOFTWARE_VERSIONS,
        VR::LO,
        &content.algorithm.software_version,
    );
    // General Image (C.7.6.1) and SC Image (C.8.6.2).
    put_strs(
        &mut object,
        tags::IMAGE_TYPE,
        VR::CS,
        &["DERIVED", "SECONDARY"],
    );
    put_str(&mut object, tags::PATIENT_ORIENTATION, VR::CS, "");
    put_str(&mut object, tags::CONTENT_DATE, VR::DA, &created.date);
    put_str(&mut object, tags::CONTENT_TIME, VR::TM, &created.time);
    put_str(
        &mut object,
        tags::DATE_OF_SECONDARY_CAPTURE,
        VR::DA,
        &created.date,
    );
    put_str(
        &mut object,
        tags::TIME_OF_SECONDARY_CAPTURE,
        VR::TM,
        &created.time,
    );
    put_str(&mut object, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    put_str(&mut object, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put_str(
        &mut object,
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        "EigenCAM overlay and triage caption over the source slice; not for diagnostic use",
    );
    let mut source_image = referenced_sop(source);
    // CID 7202 "Source Image Purposes of Reference".
    put_sequence(
        &mut source_image,
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![code(
            "121322",
            "DCM",
            "Source image for image processing operation",
        )],
    );
    put_sequence(&mut object, tags::SOURCE_IMAGE_SEQUENCE, vec![source_image]);
    // Image Pixel (C.7.6.3): 8-bit RGB, interleaved.
    let picture = captioned(overlay, content);
    let rows = u16::try_from(picture.height())
        .map_err(|_| ResultError::Encoding("preview taller than 65535 rows".into()))?;
    let columns = u16::try_from(picture.width())
        .map_err(|_| ResultError::Encoding("preview wider than 65535 columns".into()))?;
    put_u16(&mut object, tags::SAMPLES_PER_PIXEL, 3);
    put_str(&mut object, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
    put_u16(&mut object, tags::PLANAR_CONFIGURATION, 0);
    put_u16(&mut object, tags::ROWS, rows);
    put_u16(&mut object, tags::COLUMNS, columns);
    put_u16(&mut object, tags::BITS_ALLOCATED, 8);
    put_u16(&mut object, tags::BITS_STORED, 8);
    put_u16(&mut object, tags::HIGH_BIT, 7);
    put_u16(&mut object, tags::PIXEL_REPRESENTATION, 0);
    let mut pixels = picture.into_raw();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    Ok(ResultObject {
        kind: ResultKind::SecondaryCapture,
        sop_class_uid: SECONDARY_CAPTURE.into(),
        sop_instance_uid,
        bytes: part10(object)?,
    })
}
