//! The bundle's inner payload (what MCUboot calls the image): a small section
//! container holding the manifest, the ONNX model, the golden self-test
//! vectors and their input images.
//!
//! ```text
//! "TXAIBNDL" | format u16 | section count u16 |
//! { kind u16 | reserved u16 (0) | length u32 | bytes }...
//! ```
//!
//! Kinds: 1 manifest (JSON), 2 model (ONNX), 3 golden vectors (JSON),
//! 4 golden image (one per vector), 5 out-of-distribution statistics
//! (f32 little-endian, layout in the manifest; since bundle 1.2).
//!
//! Little-endian. Every length is bounded before use.

use super::BundleError;

pub const PAYLOAD_MAGIC: &[u8; 8] = b"TXAIBNDL";
pub const PAYLOAD_FORMAT: u16 = 1;
const PREAMBLE: usize = 12;
const SECTION_HEADER: usize = 8;

/// Upper bounds on what a device accepts (checked before anything is copied).
pub const MAX_SECTIONS: usize = 64;
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
pub const MAX_GOLDEN_BYTES: usize = 1 << 20;
pub const MAX_GOLDEN_IMAGE_BYTES: usize = 4 << 20;
pub const MAX_MODEL_BYTES: usize = 512 << 20;
/// Class means + a D×D precision: 64 MiB allows D ≈ 4,000.
pub const MAX_OOD_STATISTICS_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum SectionKind {
    Manifest = 1,
    Model = 2,
    Golden = 3,
    GoldenImage = 4,
    OodStatistics = 5,
}

impl SectionKind {
    fn from_u16(v: u16) -> Option<SectionKind> {
        Some(match v {
            1 => SectionKind::Manifest,
            2 => SectionKind::Model,
            3 => SectionKind::Golden,
            4 => SectionKind::GoldenImage,
            5 => SectionKind::OodStatistics,
            _ => return None,
        })
    }

    fn limit(self) -> usize {
        match self {
            SectionKind::Manifest => MAX_MANIFEST_BYTES,
            SectionKind::Model => MAX_MODEL_BYTES,
            SectionKind::Golden => MAX_GOLDEN_BYTES,
            SectionKind::GoldenImage => MAX_GOLDEN_IMAGE_BYTES,
            SectionKind::OodStatistics => MAX_OOD_STATISTICS_BYTES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SectionKind::Manifest => "manifest",
            SectionKind::Model => "model",
            SectionKind::Golden => "golden vectors",
            SectionKind::GoldenImage => "golden image",
            SectionKind::OodStatistics => "ood statistics",
        }
    }
}

/// Sections of a payload, in file order, borrowing the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections<'a> {
    pub manifest: &'a [u8],
    pub model: &'a [u8],
    pub golden: Option<&'a [u8]>,
    pub golden_images: Vec<&'a [u8]>,
    pub ood_statistics: Option<&'a [u8]>,
}

pub fn encode_sections(sections: &Sections<'_>) -> Result<Vec<u8>, BundleError> {
    let mut list: Vec<(SectionKind, &[u8])> = vec![
        (SectionKind::Manifest, sections.manifest),
        (SectionKind::Model, sections.model),
    ];
    if let Some(golden) = sections.golden {
        list.push((SectionKind::Golden, golden));
    }
    list.extend(
        sections
            .golden_images
            .iter()
            .map(|image| (SectionKind::GoldenImage, *image)),
    );
    if let Some(statistics) = sections.ood_statistics {
        list.push((SectionKind::OodStatistics, statistics));
    }
    if list.len() > MAX_SECTIONS {
        return Err(BundleError::TooLarge("section count", list.len()));
    }
    let mut out = Vec::with_capacity(
        PREAMBLE
            + list
                .iter()
                .map(|(_, b)| SECTION_HEADER + b.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(PAYLOAD_MAGIC);
    out.extend_from_slice(&PAYLOAD_FORMAT.to_le_bytes());
    out.extend_from_slice(&(list.len() as u16).to_le_bytes());
    for (kind, bytes) in list {
        if bytes.len() > kind.limit() {
            return Err(BundleError::TooLarge(kind.name(), bytes.len()));
        }
        out.extend_from_slice(&(kind as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

pub fn decode_sections(payload: &[u8]) -> Result<Sections<'_>, BundleError> {
    if payload.len() < PREAMBLE || &payload[..8] != PAYLOAD_MAGIC {
        return Err(BundleError::Invalid(
            "payload is not a TumorXAI bundle (magic TXAIBNDL missing)".to_string(),
        ));
    }
    let format = u16::from_le_bytes([payload[8], payload[9]]);
    if format != PAYLOAD_FORMAT {
        return Err(BundleError::Invalid(format!(
            "payload format {format} is not supported (this build reads {PAYLOAD_FORMAT})"
        )));
    }
    let count = usize::from(u16::from_le_bytes([payload[10], payload[11]]));
    if count > MAX_SECTIONS {
        return Err(BundleError::TooLarge("section count", count));
    }
    let (mut manifest, mut model, mut golden, mut ood_statistics) = (None, None, None, None);
    let mut golden_images = Vec::new();
    let mut at = PREAMBLE;
    for _ in 0..count {
        let header = payload
            .get(at..at + SECTION_HEADER)
            .ok_or(BundleError::Truncated("section header"))?;
        let raw_kind = u16::from_le_bytes([header[0], header[1]]);
        let reserved = u16::from_le_bytes([header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let kind = SectionKind::from_u16(raw_kind)
            .ok_or_else(|| BundleError::Invalid(format!("unknown section kind {raw_kind}")))?;
        if reserved != 0 {
            return Err(BundleError::Invalid(format!(
                "{} section has non-zero reserved bits",
                kind.name()
            )));
        }
        if len > kind.limit() {
            return Err(BundleError::TooLarge(kind.name(), len));
        }
        let start = at + SECTION_HEADER;
        let bytes = payload
            .get(start..start + len)
            .ok_or(BundleError::Truncated("section"))?;
        let duplicate = |name: &str| BundleError::Invalid(format!("two {name} sections"));
        match kind {
            SectionKind::Manifest if manifest.replace(bytes).is_some() => {
                return Err(duplicate("manifest"))
            }
            SectionKind::Model if model.replace(bytes).is_some() => return Err(duplicate("model")),
            SectionKind::Golden if golden.replace(bytes).is_some() => {
                return Err(duplicate("golden"))
            }
            SectionKind::OodStatistics if ood_statistics.replace(bytes).is_some() => {
                return Err(duplicate("ood statistics"))
            }
            SectionKind::GoldenImage => golden_images.push(bytes),
            _ => {}
        }
        at = start + len;
    }
    if at != payload.len() {
        return Err(BundleError::Invalid(format!(
            "{} bytes after the last section",
            payload.len() - at
        )));
    }
    Ok(Sections {
        manifest: manifest.ok_or(BundleError::Invalid("no manifest section".to_string()))?,
        model: model.ok_or(BundleError::Invalid("no model section".to_string()))?,
        golden,
        golden_images,
        ood_statistics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes_of_a_small_payload() {
        let sections = Sections {
            manifest: b"{}",
            model: b"M",
            golden: None,
            golden_images: vec![],
            ood_statistics: None,
        };
        let bytes = encode_sections(&sections).unwrap();
        let expected: Vec<u8> = [
            b"TXAIBNDL".as_slice(),
            &[1, 0, 2, 0],
            &[1, 0, 0, 0, 2, 0, 0, 0],
            b"{}",
            &[2, 0, 0, 0, 1, 0, 0, 0],
            b"M",
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(decode_sections(&bytes).unwrap(), sections);
    }

    #[test]
    fn exact_bytes_of_an_ood_statistics_section() {
        let sections = Sections {
            manifest: b"{}",
            model: b"M",
            golden: None,
            golden_images: vec![],
            ood_statistics: Some(&[0xAB, 0xCD]),
        };
        let bytes = encode_sections(&sections).unwrap();
        assert_eq!(&bytes[10..12], &[3, 0]);
        assert_eq!(
            &bytes[bytes.len() - 10..],
            &[5, 0, 0, 0, 2, 0, 0, 0, 0xAB, 0xCD]
        );
        assert_eq!(decode_sections(&bytes).unwrap(), sections);
        let mut twice = bytes.clone();
        twice.splice(10..12, [4, 0]);
        twice.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode_sections(&twice).is_err());
    }

    #[test]
    fn round_trip_with_golden_images() {
        let sections = Sections {
            manifest: b"{\"a\":1}",
            model: &[9; 100],
            golden: Some(b"[]"),
            golden_images: vec![b"png1", b"png22"],
            ood_statistics: Some(&[7; 8]),
        };
        let bytes = encode_sections(&sections).unwrap();
        assert_eq!(decode_sections(&bytes).unwrap(), sections);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let good = encode_sections(&Sections {
            manifest: b"{}",
            model: b"M",
            golden: None,
            golden_images: vec![],
            ood_statistics: None,
        })
        .unwrap();
        for len in 0..good.len() {
            assert!(decode_sections(&good[..len]).is_err(), "prefix {len}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_sections(&trailing).is_err());
        let mut unknown = good.clone();
        unknown[12] = 99;
        assert!(decode_sections(&unknown).is_err());
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_sections(&huge),
            Err(BundleError::TooLarge("manifest", _))
        ));
        let mut twice = good.clone();
        twice[22] = 1; // the model section claims to be a second manifest
        assert!(decode_sections(&twice).is_err());
    }
}
