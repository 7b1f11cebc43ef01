//! What a DICOM slice says about itself, reduced to what triage needs and
//! free of patient identifiers: modality, body part, image type, plane, the
//! declared MR sequence (from Series Description / Protocol Name / Sequence
//! Name) and a hash of the SOP Instance UID to reference the slice by.

use sha2::{Digest, Sha256};

use crate::classes::Sequence;

/// The slice's own description. Holds no patient names, dates or IDs: the
/// slice is referenced by its SOP Instance UID's hash ([`uid_hash`]), and
/// the source UIDs (which identify objects, not people) are kept for the
/// structured result a PACS links back to its study.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DicomInfo {
    /// Modality (0008,0060), upper case, e.g. "MR".
    pub modality: Option<String>,
    /// Body Part Examined (0018,0015), upper case.
    pub body_part: Option<String>,
    /// Image Type (0008,0008) values, upper case.
    pub image_type: Vec<String>,
    /// Image Orientation (Patient) (0020,0037): row and column direction cosines.
    pub orientation: Option<[f64; 6]>,
    /// What the sequence is read from: the Series Description, else the
    /// Protocol Name (often exam-wide, hence second), else the Sequence Name.
    /// Never shown verbatim.
    pub sequence_text: String,
    /// First 16 hex digits of SHA-256 of the SOP Instance UID, if present.
    pub sop_instance_uid_hash: Option<String>,
    /// Study, Series and SOP Instance UIDs and the SOP Class UID, as in the file.
    pub source: SourceUids,
    /// Transfer syntax UID of the file.
    pub transfer_syntax: String,
}

/// The UIDs a result refers back to (no names).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SourceUids {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
}

/// The declared MR sequence, as far as the description tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredSequence {
    /// One of the model's three sequences.
    Known(Sequence),
    /// A sequence the model was not trained on (FLAIR, DWI, ADC, SWI, …).
    Other(&'static str),
}

/// Reference of a slice in outputs: 16 hex digits of SHA-256(UID).
pub fn uid_hash(uid: &str) -> String {
    let digest = Sha256::digest(uid.trim_end_matches(['\0', ' ']).as_bytes());
    hex::encode(&digest[..8])
}

/// Reads the declared sequence from a free-text series description.
/// Scanners write these from hand-made protocol names, so this is a keyword
/// reading, cautious towards REVIEW: sequences the model does not know
/// (FLAIR and Siemens' TIRM / dark-fluid, diffusion, ADC, SWI, STIR, PD,
/// T2* / gradient echo, perfusion) are named as such; T1 with a contrast
/// keyword (C+, +C, POST, GD, GAD, CONTRAST, CE) and no pre-contrast one
/// (PRE, W/O, WO, NON, WITHOUT, NONCONTRAST) is T1C+; T1 alone T1; T2 alone
/// T2; anything else (both, neither) is unknown (None).
pub fn declared_sequence(text: &str) -> Option<DeclaredSequence> {
    let upper = text.to_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '+'))
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    let has_prefix = |p: &str| words.iter().any(|w| w.starts_with(p));
    let unknown_to_the_model: [(bool, &'static str); 10] = [
        (
            has_prefix("FLAIR")
                || has_prefix("TIRM")
                || upper.contains("DARK") && upper.contains("FLUID"),
            "FLAIR",
        ),
        (
            has("DWI") || has_prefix("DIFF") || has_prefix("TRACE") || has("DTI") || has("EP2D"),
            "DWI",
        ),
        (has("ADC"), "ADC"),
        (has("SWI") || has("SWAN"), "SWI"),
        (has_prefix("STIR"), "STIR"),
        (has("PD") || has_prefix("PDW"), "PD"),
        (
            upper.contains("T2*") || has("GRE") || has("FFE") || has("T2STAR"),
            "T2*",
        ),
        (has_prefix("PERF") || has("DSC") || has("ASL"), "perfusion"),
        (has("MRA") || has("TOF"), "angiography"),
        (
            has_prefix("LOC") || has("SCOUT") || has("SURVEY"),
            "localiser",
        ),
    ];
    if let Some((_, name)) = unknown_to_the_model.iter().find(|(hit, _)| *hit) {
        return Some(DeclaredSequence::Other(name));
    }
    let pre_contrast = has("PRE")
        || has("WO")
        || has("NON")
        || has("WITHOUT")
        || has("NONCONTRAST")
        || upper.contains("W/O");
    let contrast = !pre_contrast
        && (upper.contains("C+")
            || upper.contains("+C")
            || has("POST")
            || has_prefix("GD")
            || has_prefix("GAD")
            || has("CONTRAST")
            || has("CE"));
    let t1 = words.iter().any(|w| w.starts_with("T1"));
    let t2 = words.iter().any(|w| w.starts_with("T2"));
    match (t1, t2) {
        (true, false) if contrast => Some(DeclaredSequence::Known(Sequence::T1C)),
        (true, false) => Some(DeclaredSequence::Known(Sequence::T1)),
        (false, true) => Some(DeclaredSequence::Known(Sequence::T2)),
        _ => None,
    }
}

/// Why a DICOM slice's own tags rule it out before inference: not an axial
/// brain MR ([`not_axial_brain_mr`]), or a declared sequence the model was
/// not trained on.
pub fn ruled_out(info: &DicomInfo) -> Option<String> {
    if let Some(why) = not_axial_brain_mr(info) {
        return Some(why);
    }
    match declared_sequence(&info.sequence_text) {
        Some(DeclaredSequence::Other(name)) => Some(format!(
            "the series declares {name}; the model reads {}, {} and {} only",
            Sequence::T1.label(),
            Sequence::T1C.label(),
            Sequence::T2.label()
        )),
        _ => None,
    }
}

/// Why a slice must not be classified at all (before inference), or None:
/// not MR, a localiser, a body part other than head/brain, or a plane other
/// than axial. Absent tags are not held against a slice (exports often strip
/// them); present ones must agree.
pub fn not_axial_brain_mr(info: &DicomInfo) -> Option<String> {
    if let Some(modality) = &info.modality {
        if modality != "MR" {
            return Some(format!("DICOM modality {modality}, not MR"));
        }
    }
    if info.image_type.iter().any(|t| t == "LOCALIZER") {
        return Some("DICOM image type LOCALIZER (a scout, not a diagnostic slice)".into());
    }
    if let Some(part) = &info.body_part {
        const HEAD: [&str; 5] = ["BRAIN", "HEAD", "HEADNECK", "SKULL", "CEREBRUM"];
        if !part.is_empty() && !HEAD.contains(&part.as_str()) {
            return Some(format!("DICOM body part {part}, not the brain"));
        }
    }
    if let Some(o) = info.orientation {
        match plane(&o) {
            Some(Plane::Axial) => {}
            Some(other) => return Some(format!("{} plane, not axial", other.name())),
            None => return Some("oblique plane (no axis within 30°), not axial".into()),
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    pub fn name(&self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }
}

/// The acquisition plane from the direction cosines: the slice normal (row ×
/// column) within 30° (|cos| ≥ 0.866) of the patient's z (axial), y
/// (coronal) or x (sagittal) axis.
pub fn plane(o: &[f64; 6]) -> Option<Plane> {
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let n = [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ];
    let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    if norm.is_nan() || norm <= 1e-6 {
        return None;
    }
    let threshold = 0.866;
    let along = |i: usize| (n[i] / norm).abs() >= threshold;
    if along(2) {
        Some(Plane::Axial)
    } else if along(1) {
        Some(Plane::Coronal)
    } else if along(0) {
        Some(Plane::Sagittal)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_from_typical_series_descriptions() {
        use DeclaredSequence::*;
        for (text, expect) in [
            ("AX T1 SE", Some(Known(Sequence::T1))),
            ("t1_mprage_tra", Some(Known(Sequence::T1))),
            ("AX T1 POST GD", Some(Known(Sequence::T1C))),
            ("T1 C+ axial", Some(Known(Sequence::T1C))),
            ("Ax T1+C", Some(Known(Sequence::T1C))),
            ("t1_se_tra_Gd", Some(Known(Sequence::T1C))),
            ("AX T2 FSE", Some(Known(Sequence::T2))),
            ("t2_tse_tra_512", Some(Known(Sequence::T2))),
            ("AX T2 FLAIR", Some(Other("FLAIR"))),
            ("ep2d_diff DWI", Some(Other("DWI"))),
            ("ADC map", Some(Other("ADC"))),
            ("t2_tirm_tra_dark-fluid", Some(Other("FLAIR"))),
            ("ep2d_diff_3scan_trace", Some(Other("DWI"))),
            ("TRACEW", Some(Other("DWI"))),
            ("AX T2* GRE", Some(Other("T2*"))),
            ("COR STIR", Some(Other("STIR"))),
            ("AX T1 PRE GAD", Some(Known(Sequence::T1))),
            ("T1 W/O GD", Some(Known(Sequence::T1))),
            ("T1 NON CONTRAST", Some(Known(Sequence::T1))),
            ("localizer", Some(Other("localiser"))),
            ("T1 T2 exam", None),
            ("", None),
        ] {
            assert_eq!(declared_sequence(text), expect, "{text:?}");
        }
    }

    #[test]
    fn planes_from_direction_cosines() {
        assert_eq!(plane(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), Some(Plane::Axial));
        assert_eq!(
            plane(&[1.0, 0.0, 0.0, 0.0, 0.0, -1.0]),
            Some(Plane::Coronal)
        );
        assert_eq!(
            plane(&[0.0, 1.0, 0.0, 0.0, 0.0, -1.0]),
            Some(Plane::Sagittal)
        );
        // Axial tilted 20° about x: normal (0, −sin20°, cos20°), cos 0.94 ≥ 0.866.
        let (s, c) = (20f64.to_radians().sin(), 20f64.to_radians().cos());
        assert_eq!(plane(&[1.0, 0.0, 0.0, 0.0, c, s]), Some(Plane::Axial));
        // 45°: no axis within 30°.
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert_eq!(plane(&[1.0, 0.0, 0.0, 0.0, h, h]), None);
        assert_eq!(plane(&[0.0; 6]), None);
    }

    #[test]
    fn only_axial_brain_mr_passes() {
        let axial_mr = DicomInfo {
            modality: Some("MR".into()),
            body_part: Some("BRAIN".into()),
            orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            ..DicomInfo::default()
        };
        assert_eq!(not_axial_brain_mr(&axial_mr), None);
        assert_eq!(not_axial_brain_mr(&DicomInfo::default()), None);
        let ct = DicomInfo {
            modality: Some("CT".into()),
            ..axial_mr.clone()
        };
        assert!(not_axial_brain_mr(&ct).unwrap().contains("CT"));
        let scout = DicomInfo {
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "LOCALIZER".into()],
            ..axial_mr.clone()
        };
        assert!(not_axial_brain_mr(&scout).unwrap().contains("LOCALIZER"));
        let spine = DicomInfo {
            body_part: Some("LSPINE".into()),
            ..axial_mr.clone()
        };
        assert!(not_axial_brain_mr(&spine).unwrap().contains("LSPINE"));
        let sagittal = DicomInfo {
            orientation: Some([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]),
            ..axial_mr
        };
        assert!(not_axial_brain_mr(&sagittal).unwrap().contains("sagittal"));
    }

    #[test]
    fn uid_hash_is_sha256_prefix_ignoring_padding() {
        // `printf 1.2.3 | sha256sum` = c47f5b18b8a430e6…
        assert_eq!(uid_hash("1.2.3"), "c47f5b18b8a430e6");
        assert_eq!(uid_hash("1.2.3\0"), "c47f5b18b8a430e6");
    }
}
