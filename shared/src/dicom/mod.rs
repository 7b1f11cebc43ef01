//! DICOM front end of the preprocessing contract (version
//! [`DICOM_FRONT_END`]): a Part 10 file's bytes → one luminance plane in
//! [0, 1] plus what the file says about itself ([`DicomInfo`]). Parsing and
//! pixel decoding are dicom-rs (`dicom-object`, `dicom-pixeldata`: native,
//! deflated, RLE, JPEG baseline/extended/lossless, and JPEG-LS through CharLS
//! when built with the `jpeg-ls` feature),
//! after our structural pre-scan ([`prescan`]); the grey-scale chain
//! (stored values, rescale, window, MONOCHROME1) is ours in [`window`], so
//! that host and device compute the same plane bit for bit.

mod prescan;
pub mod tags;
pub mod window;

use dicom_dictionary_std::tags as t;
use dicom_object::file::{OddLengthStrategy, ReadPreamble};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;

use crate::decode::{DecodeLimits, Luminance};
use crate::error::PreprocessError;
pub use tags::{
    declared_sequence, not_axial_brain_mr, ruled_out, uid_hash, DeclaredSequence, DicomInfo,
    SourceUids,
};
use window::{stored_values, to_unit_plane, SampleLayout, Voi, VoiFunction};

/// Version of the DICOM front end (the grey-scale chain and its auto-window).
/// Answers for DICOM input carry it beside the preprocessing spec's hash: a
/// change of this chain changes what the model sees only for DICOM input.
pub const DICOM_FRONT_END: &str = "dicom-v1";

/// Whether this build decodes JPEG-LS (the `jpeg-ls` feature: CharLS, which
/// needs cmake and a C++ compiler at build time).
pub const JPEG_LS_COMPILED_IN: bool = cfg!(feature = "jpeg-ls");

/// The JPEG-LS transfer syntaxes: lossless and near-lossless.
const JPEG_LS_TRANSFER_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

/// The refusal for a JPEG-LS file in a build without JPEG-LS, `None` when the
/// file is not JPEG-LS or the build can read it. A clear "rebuild with" instead
/// of the codec registry's generic "no decoder for this transfer syntax".
fn jpeg_ls_refusal(transfer_syntax: &str, compiled_in: bool) -> Option<PreprocessError> {
    let uid = transfer_syntax.trim_end_matches(['\0', ' ']);
    (!compiled_in && JPEG_LS_TRANSFER_SYNTAXES.contains(&uid)).then(|| {
        PreprocessError::UnsupportedDicom(format!(
            "JPEG-LS support not compiled in (transfer syntax {uid}): build with --features jpeg-ls"
        ))
    })
}

/// What the refusal of an unreadable transfer syntax lists as readable.
fn readable_syntaxes() -> &'static str {
    if JPEG_LS_COMPILED_IN {
        "implicit/explicit VR little endian, explicit VR big endian, deflated, RLE, JPEG baseline, extended and lossless, JPEG-LS"
    } else {
        "implicit/explicit VR little endian, explicit VR big endian, deflated, RLE, JPEG baseline, extended and lossless; JPEG-LS with --features jpeg-ls"
    }
}

/// A decoded DICOM slice.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomSlice {
    pub luminance: Luminance,
    pub info: DicomInfo,
}

/// Part 10 files: a 128-byte preamble, then "DICM".
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM".as_slice())
}

/// The error and its sources, "outer: inner: innermost" (dicom-rs puts the
/// useful detail, such as running out of data, in the innermost source).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

fn corrupt(error: &dyn std::error::Error) -> PreprocessError {
    let text = chain(error);
    let lower = text.to_lowercase();
    if lower.contains("transfersyntax") || lower.contains("transfer syntax") {
        // E.g. JPEG 2000, which needs a C library (OpenJPEG) this build
        // does not link: a clear refusal, not "corrupt".
        PreprocessError::UnsupportedDicom(format!("{text} (readable: {})", readable_syntaxes()))
    } else if lower.contains("eof")
        || lower.contains("end of file")
        || lower.contains("unexpected end")
        || lower.contains("fill whole buffer")
    {
        PreprocessError::Truncated(format!("DICOM: {text}"))
    } else {
        PreprocessError::Corrupt(format!("DICOM: {text}"))
    }
}

fn parse(bytes: &[u8]) -> Result<DefaultDicomObject, PreprocessError> {
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .odd_length_strategy(OddLengthStrategy::Fail)
        .from_reader(bytes)
        .map_err(|e| corrupt(&e))
}

fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let value = element.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn number(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<f64> {
    obj.element_opt(tag).ok().flatten()?.to_float64().ok()
}

fn info(obj: &DefaultDicomObject) -> DicomInfo {
    let upper = |tag| text(obj, tag).map(|s| s.to_uppercase());
    let image_type = obj
        .element_opt(t::IMAGE_TYPE)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_uppercase())
        .collect();
    let orientation = obj
        .element_opt(t::IMAGE_ORIENTATION_PATIENT)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_float64().ok())
        .and_then(|v| <[f64; 6]>::try_from(v.as_slice()).ok())
        .filter(|v| v.iter().all(|x| x.is_finite()));
    let sequence_text = [t::SERIES_DESCRIPTION, t::PROTOCOL_NAME, t::SEQUENCE_NAME]
        .into_iter()
        .find_map(|tag| text(obj, tag))
        .unwrap_or_default();
    DicomInfo {
        modality: upper(t::MODALITY),
        body_part: upper(t::BODY_PART_EXAMINED),
        image_type,
        orientation,
        sequence_text,
        sop_instance_uid_hash: text(obj, t::SOP_INSTANCE_UID).map(|u| uid_hash(&u)),
        source: SourceUids {
            study_instance_uid: text(obj, t::STUDY_INSTANCE_UID),
            series_instance_uid: text(obj, t::SERIES_INSTANCE_UID),
            sop_instance_uid: text(obj, t::SOP_INSTANCE_UID),
            sop_class_uid: text(obj, t::SOP_CLASS_UID),
        },
        transfer_syntax: obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string(),
    }
}

/// Decodes a Part 10 DICOM file to luminance. Refused with a typed error:
/// truncated or corrupt files, images above `limits` (checked from the
/// header before any pixel is decoded), multi-frame objects, colour, and
/// transfer syntaxes the decoder cannot read.
pub fn decode_dicom(bytes: &[u8], limits: DecodeLimits) -> Result<DicomSlice, PreprocessError> {
    if !is_dicom(bytes) {
        return Err(PreprocessError::UnsupportedDicom(
            "no DICM marker at offset 128 (not a DICOM Part 10 file)".into(),
        ));
    }
    prescan::prescan(bytes, limits)?;
    // One parse (the raw pixel data is no larger than the file); the
    // dimensions, frames and samples are checked before the pixel data is
    // decoded, so a file declaring 60000×60000 costs no decompression.
    let object = parse(bytes)?;
    let dimension = |tag, name: &str| -> Result<u32, PreprocessError> {
        let value = number(&object, tag).ok_or_else(|| {
            PreprocessError::Corrupt(format!("DICOM: {name} is missing or not a number"))
        })?;
        if !(0.0..=f64::from(u32::MAX)).contains(&value) {
            return Err(PreprocessError::Corrupt(format!("DICOM: {name} {value}")));
        }
        Ok(value as u32)
    };
    let (width, height) = (
        dimension(t::COLUMNS, "Columns")?,
        dimension(t::ROWS, "Rows")?,
    );
    limits.check(width, height)?;
    let frames = number(&object, t::NUMBER_OF_FRAMES).unwrap_or(1.0);
    if frames != 1.0 {
        return Err(PreprocessError::UnsupportedDicom(format!(
            "{frames} frames in one object: export the series as single-frame slices"
        )));
    }
    let samples = number(&object, t::SAMPLES_PER_PIXEL).unwrap_or(1.0);
    if samples != 1.0 {
        return Err(PreprocessError::UnsupportedDicom(format!(
            "{samples} samples per pixel (colour): an MR slice is grey-scale"
        )));
    }
    let info = info(&object);
    if object.element_opt(t::PIXEL_DATA).ok().flatten().is_none() {
        return Err(PreprocessError::Corrupt(
            "DICOM: no Pixel Data element".into(),
        ));
    }
    if let Some(refusal) = jpeg_ls_refusal(&info.transfer_syntax, JPEG_LS_COMPILED_IN) {
        return Err(refusal);
    }
    let pixels = object.decode_pixel_data().map_err(|e| {
        let text = chain(&e);
        if text.to_lowercase().contains("transfer syntax") {
            PreprocessError::UnsupportedDicom(format!("{text} ({})", info.transfer_syntax))
        } else {
            corrupt(&e)
        }
    })?;
    if pixels.columns() != width || pixels.rows() != height || pixels.number_of_frames() != 1 {
        return Err(PreprocessError::Corrupt(
            "DICOM: decoded pixel data disagrees with the header".into(),
        ));
    }
    let photometric = pixels.photometric_interpretation().as_str().to_string();
    let monochrome1 = match photometric.as_str() {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        other => {
            return Err(PreprocessError::UnsupportedDicom(format!(
                "photometric interpretation {other}: an MR slice is MONOCHROME1 or MONOCHROME2"
            )))
        }
    };
    // Stored bits are the low ones (High Bit = Bits Stored − 1, as every
    // current IOD requires); anything else would be masked wrongly.
    if u32::from(pixels.high_bit()) + 1 != u32::from(pixels.bits_stored()) {
        return Err(PreprocessError::UnsupportedDicom(format!(
            "High Bit {} with Bits Stored {} (expected High Bit = Bits Stored - 1)",
            pixels.high_bit(),
            pixels.bits_stored()
        )));
    }
    let layout = SampleLayout {
        bits_allocated: pixels.bits_allocated(),
        bits_stored: pixels.bits_stored(),
        signed: pixels.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed,
    };
    let count = width as usize * height as usize;
    let stored = stored_values(pixels.data(), layout, count)?;
    let (slope, intercept) = match pixels.rescale() {
        Ok([first, ..]) => (first.slope, first.intercept),
        _ => (1.0, 0.0),
    };
    let function = match pixels.voi_lut_function() {
        Ok(Some([dicom_pixeldata::VoiLutFunction::LinearExact, ..])) => VoiFunction::LinearExact,
        Ok(Some([dicom_pixeldata::VoiLutFunction::Sigmoid, ..])) => VoiFunction::Sigmoid,
        _ => VoiFunction::Linear,
    };
    let voi = match pixels.window() {
        Ok(Some([first, ..])) if first.width.is_finite() && first.center.is_finite() => {
            Voi::Window {
                center: first.center,
                width: first.width,
                function,
            }
        }
        _ => Voi::Auto,
    };
    let plane = to_unit_plane(&stored, slope, intercept, voi, monochrome1)?;
    Ok(DicomSlice {
        luminance: Luminance::new(width, height, plane),
        info,
    })
}

#[cfg(test)]
mod jpeg_ls_tests {
    use super::*;

    #[test]
    fn jpeg_ls_is_refused_by_name_only_when_not_compiled_in() {
        for uid in ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81\0"] {
            match jpeg_ls_refusal(uid, false) {
                Some(PreprocessError::UnsupportedDicom(text)) => {
                    assert!(text.contains("JPEG-LS support not compiled in"), "{text}");
                    assert!(text.contains("--features jpeg-ls"), "{text}");
                }
                other => panic!("{uid}: {other:?}"),
            }
            assert!(jpeg_ls_refusal(uid, true).is_none());
        }
        // JPEG lossless (.57, .70) and explicit little endian are not JPEG-LS.
        for uid in [
            "1.2.840.10008.1.2.4.57",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.4.8",
        ] {
            assert!(jpeg_ls_refusal(uid, false).is_none(), "{uid}");
        }
    }
}
