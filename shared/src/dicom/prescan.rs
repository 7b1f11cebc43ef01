//! Structural pre-scan of a Part 10 file, before dicom-rs parses it.
//!
//! dicom-rs sizes each value buffer from the length the element declares and
//! zero-fills it before reading (`Vec::resize`), so a file of a few hundred
//! bytes that declares a 4 GiB pixel value makes the parser touch 4 GiB
//! before it notices the file is short: on the device that is an
//! out-of-memory kill, not an error answer. This walk reads only element
//! headers (tag, VR, length), never values, and refuses any declared length
//! larger than the bytes that are left, at every nesting level (sequences,
//! items, encapsulated pixel fragments). After it passes, no value dicom-rs
//! allocates can exceed the file's own size.
//!
//! Deflated data sets are inflated here once, up to a cap derived from the
//! decode limits (a deflate bomb is refused), and the inflated bytes are
//! walked the same way.

use std::io::Read;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use crate::decode::DecodeLimits;
use crate::error::PreprocessError;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
/// Deeper nesting than any real object; bounds the recursion.
const MAX_DEPTH: usize = 16;

const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
const JPIP_REFERENCED_DEFLATE: &str = "1.2.840.10008.1.2.4.95";
const JPIP_HTJ2K_REFERENCED_DEFLATE: &str = "1.2.840.10008.1.2.4.205";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Implicit,
    Explicit { big_endian: bool },
}

/// Where a data set ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The end of the bytes (the top level).
    Eof,
    /// A defined-length item: this offset.
    At(usize),
    /// An undefined-length item: its Item Delimitation.
    ItemDelimiter,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    big_endian: bool,
}

fn truncated(what: String) -> PreprocessError {
    PreprocessError::Truncated(format!("DICOM: {what} (truncated or corrupt file)"))
}

fn corrupt(what: String) -> PreprocessError {
    PreprocessError::Corrupt(format!("DICOM: {what}"))
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], PreprocessError> {
        let end = self.at.checked_add(N).filter(|&e| e <= self.bytes.len());
        let chunk = end
            .and_then(|end| self.bytes.get(self.at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| truncated(format!("element header cut off at byte {}", self.at)))?;
        self.at += N;
        Ok(chunk)
    }

    fn u16(&mut self) -> Result<u16, PreprocessError> {
        let b = self.take::<2>()?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self) -> Result<u32, PreprocessError> {
        let b = self.take::<4>()?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn tag(&mut self) -> Result<(u16, u16), PreprocessError> {
        Ok((self.u16()?, self.u16()?))
    }

    /// Skips a defined-length value, refusing one longer than what is left.
    fn skip(&mut self, tag: (u16, u16), length: u32) -> Result<(), PreprocessError> {
        let length = length as usize;
        if length > self.left() {
            return Err(truncated(format!(
                "({:04X},{:04X}) declares {length} value bytes but only {} are left",
                tag.0,
                tag.1,
                self.left()
            )));
        }
        self.at += length;
        Ok(())
    }
}

/// VRs whose explicit header has a 2-byte length (PS3.5 7.1.2); every
/// other VR, unknown ones included, has two reserved bytes and a 4-byte
/// length — exactly as dicom-rs reads them (an unknown VR is UN to it).
fn short_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// In implicit VR only the dictionary says whether an element is a sequence.
fn dictionary_says_sequence(tag: (u16, u16)) -> bool {
    StandardDataDictionary
        .by_tag(Tag(tag.0, tag.1))
        .is_some_and(|entry| entry.vr() == VirtualVr::Exact(VR::SQ))
}

fn items(
    c: &mut Cursor,
    encoding: Encoding,
    end: Option<usize>,
    depth: usize,
) -> Result<(), PreprocessError> {
    if depth > MAX_DEPTH {
        return Err(corrupt(format!("sequences nested deeper than {MAX_DEPTH}")));
    }
    loop {
        if end == Some(c.at) {
            return Ok(());
        }
        if end.is_some_and(|end| c.at > end) {
            return Err(corrupt("an item runs past its sequence's length".into()));
        }
        let tag = c.tag()?;
        let length = c.u32()?;
        match tag {
            SEQUENCE_END if end.is_none() => return Ok(()),
            ITEM if length == UNDEFINED => dataset(c, encoding, End::ItemDelimiter, depth + 1)?,
            ITEM => {
                let start = c.at;
                c.skip(tag, length)?;
                if end.is_some_and(|end| c.at > end) {
                    return Err(corrupt("an item runs past its sequence's length".into()));
                }
                c.at = start;
                dataset(c, encoding, End::At(start + length as usize), depth + 1)?;
            }
            other => {
                return Err(corrupt(format!(
                    "({:04X},{:04X}) where a sequence item was expected",
                    other.0, other.1
                )))
            }
        }
    }
}

/// Encapsulated pixel data: defined-length fragments up to the Sequence
/// Delimitation.
fn fragments(c: &mut Cursor) -> Result<(), PreprocessError> {
    loop {
        if c.left() == 0 {
            return Ok(()); // no delimiter before the end: nothing left to allocate
        }
        let tag = c.tag()?;
        let length = c.u32()?;
        match tag {
            SEQUENCE_END => return Ok(()),
            ITEM if length != UNDEFINED => c.skip(tag, length)?,
            _ => {
                return Err(corrupt(
                    "encapsulated pixel data holds something other than defined-length fragments"
                        .into(),
                ))
            }
        }
    }
}

fn dataset(
    c: &mut Cursor,
    encoding: Encoding,
    end: End,
    depth: usize,
) -> Result<(), PreprocessError> {
    loop {
        match end {
            // Fewer bytes than an element header: padding dicom-rs ignores.
            End::Eof if c.left() < 8 => return Ok(()),
            End::At(at) if c.at == at => return Ok(()),
            End::At(at) if c.at > at => {
                return Err(corrupt("an element runs past its item's length".into()))
            }
            _ => {}
        }
        let tag = c.tag()?;
        if tag == ITEM_END {
            c.u32()?;
            match end {
                End::ItemDelimiter => return Ok(()),
                // A stray delimiter at the top level, which dicom-rs skips.
                End::Eof => continue,
                End::At(_) => {
                    return Err(corrupt("an item delimiter in a defined-length item".into()))
                }
            }
        }
        let (vr, length) = match encoding {
            Encoding::Implicit => (None, c.u32()?),
            Encoding::Explicit { .. } if tag.0 == 0xFFFE => (None, c.u32()?),
            Encoding::Explicit { .. } => {
                let vr = c.take::<2>()?;
                if short_length(vr) {
                    (Some(vr), u32::from(c.u16()?))
                } else {
                    c.take::<2>()?;
                    (Some(vr), c.u32()?)
                }
            }
        };
        let sequence = match vr {
            Some(vr) => &vr == b"SQ",
            None => dictionary_says_sequence(tag),
        };
        if length == UNDEFINED {
            // As dicom-rs reads it: encapsulated fragments for Pixel Data
            // not declared SQ, otherwise a sequence in the file's own
            // encoding (whatever the VR, UN included).
            if tag == PIXEL_DATA && !sequence {
                fragments(c)?;
            } else {
                items(c, encoding, None, depth)?;
            }
        } else if sequence {
            let start = c.at;
            c.skip(tag, length)?;
            c.at = start;
            items(c, encoding, Some(start + length as usize), depth)?;
        } else {
            c.skip(tag, length)?;
        }
    }
}

/// Walks the file meta group (explicit VR little endian) as dicom-rs does:
/// (0002,0000) first, a 4-byte group length, then elements until that many
/// bytes are consumed. Returns the transfer syntax and where the data set
/// starts.
fn meta(bytes: &[u8]) -> Result<(String, usize), PreprocessError> {
    let mut c = Cursor {
        bytes,
        at: 132,
        big_endian: false,
    };
    let header = |c: &mut Cursor| -> Result<((u16, u16), u32), PreprocessError> {
        let tag = c.tag()?;
        let vr = c.take::<2>()?;
        let length = if short_length(vr) {
            u32::from(c.u16()?)
        } else {
            c.take::<2>()?;
            c.u32()?
        };
        Ok((tag, length))
    };
    let no_meta = || corrupt("no file meta group (0002,0000) after the DICM marker".into());
    let (tag, length) = header(&mut c).map_err(|_| no_meta())?;
    if tag != (0x0002, 0x0000) || length != 4 {
        return Err(no_meta());
    }
    let group_length = c.u32()? as usize;
    let start = c.at;
    let mut transfer_syntax = None;
    while c.at - start < group_length {
        let (tag, length) = header(&mut c)?;
        if length == UNDEFINED {
            return Err(corrupt("undefined length in the file meta group".into()));
        }
        let value_start = c.at;
        c.skip(tag, length)?;
        if tag == (0x0002, 0x0010) {
            let value = bytes.get(value_start..c.at).unwrap_or_default();
            transfer_syntax = Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches(|ch: char| ch.is_whitespace() || ch == '\0')
                    .to_string(),
            );
        }
    }
    let ts = transfer_syntax
        .ok_or_else(|| corrupt("the file meta group has no Transfer Syntax UID".into()))?;
    Ok((ts, c.at))
}

/// Refuses a file whose element lengths cannot be true; see the module docs.
/// `bytes` start with the 128-byte preamble and "DICM".
pub fn prescan(bytes: &[u8], limits: DecodeLimits) -> Result<(), PreprocessError> {
    let (transfer_syntax, start) = meta(bytes)?;
    let body = bytes.get(start..).unwrap_or_default();
    let (owned, encoding);
    let data: &[u8] = match transfer_syntax.as_str() {
        IMPLICIT_VR_LITTLE_ENDIAN => {
            encoding = Encoding::Implicit;
            body
        }
        EXPLICIT_VR_BIG_ENDIAN => {
            encoding = Encoding::Explicit { big_endian: true };
            body
        }
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        | JPIP_REFERENCED_DEFLATE
        | JPIP_HTJ2K_REFERENCED_DEFLATE => {
            // Samples of at most 2 bytes, plus room for the header.
            let cap = limits.max_pixels.saturating_mul(2).saturating_add(16 << 20);
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(body)
                .take(cap.saturating_add(1))
                .read_to_end(&mut inflated)
                .map_err(|e| corrupt(format!("deflated data set: {e}")))?;
            if inflated.len() as u64 > cap {
                return Err(corrupt(format!(
                    "the deflated data set inflates to more than {cap} bytes"
                )));
            }
            owned = inflated;
            encoding = Encoding::Explicit { big_endian: false };
            &owned
        }
        _ => {
            encoding = Encoding::Explicit { big_endian: false };
            body
        }
    };
    let big_endian = encoding == Encoding::Explicit { big_endian: true };
    let mut c = Cursor {
        bytes: data,
        at: 0,
        big_endian,
    };
    dataset(&mut c, encoding, End::Eof, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, marker and a meta group holding only the transfer syntax.
    fn file(transfer_syntax: &str, body: &[u8]) -> Vec<u8> {
        let mut uid = transfer_syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        // (0002,0000) UL 4: the group's length, then (0002,0010) UI.
        out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        out.extend_from_slice(&(8 + uid.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        out.extend_from_slice(&uid);
        out.extend_from_slice(body);
        out
    }

    /// Explicit VR little endian element with a 4-byte length.
    fn long(group: u16, element: u16, vr: &[u8; 2], length: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&length.to_le_bytes());
        out
    }

    /// Item, item delimiter or sequence delimiter (no VR in any syntax).
    fn marker(element: u16, length: u32) -> Vec<u8> {
        let mut out = vec![0xFE, 0xFF];
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out
    }

    const EXPLICIT: &str = "1.2.840.10008.1.2.1";

    fn check(bytes: &[u8]) -> Result<(), PreprocessError> {
        prescan(bytes, DecodeLimits::default())
    }

    #[test]
    fn a_short_value_and_an_empty_data_set_pass() {
        // (0010,0010) PN "AB".
        let body = [0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B'];
        assert!(check(&file(EXPLICIT, &body)).is_ok());
        assert!(check(&file(EXPLICIT, &[])).is_ok());
    }

    #[test]
    fn a_short_value_longer_than_the_file_is_refused() {
        let body = [0x10, 0x00, 0x10, 0x00, b'P', b'N', 3, 0, b'A', b'B'];
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(
            err.contains("(0010,0010) declares 3 value bytes but only 2 are left"),
            "{err}"
        );
    }

    #[test]
    fn undefined_length_sequences_and_items_are_walked() {
        let mut body = long(0x0008, 0x1140, b"SQ", UNDEFINED);
        body.extend(marker(0xE000, UNDEFINED));
        body.extend(long(0x0009, 0x1010, b"OB", 4));
        body.extend_from_slice(b"MARK");
        body.extend(marker(0xE00D, 0));
        body.extend(marker(0xE0DD, 0));
        assert!(check(&file(EXPLICIT, &body)).is_ok());
        // The same with the inner value declaring 4 GiB.
        let at = body.len() - 8 - 8 - 4; // where "MARK" starts
        body[at - 4..at].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(
            err.contains("(0009,1010) declares 4294967280 value bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_defined_length_item_overrunning_its_sequence_is_refused() {
        // Sequence of 8 bytes holding an item that declares 10.
        let mut body = long(0x0008, 0x1140, b"SQ", 8);
        body.extend(marker(0xE000, 10));
        body.extend_from_slice(&[0; 10]);
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(err.contains("past its sequence"), "{err}");
    }

    #[test]
    fn encapsulated_fragments_must_have_defined_lengths() {
        let mut body = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
        body.extend(marker(0xE000, 0)); // empty basic offset table
        body.extend(marker(0xE000, 4));
        body.extend_from_slice(&[1, 2, 3, 4]);
        body.extend(marker(0xE0DD, 0));
        assert!(check(&file(EXPLICIT, &body)).is_ok());
        let mut bad = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
        bad.extend(marker(0xE000, UNDEFINED));
        let err = check(&file(EXPLICIT, &bad)).unwrap_err().to_string();
        assert!(err.contains("defined-length fragments"), "{err}");
        let mut huge = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
        huge.extend(marker(0xE000, 0xFFFF_FFF0));
        let err = check(&file(EXPLICIT, &huge)).unwrap_err().to_string();
        assert!(err.contains("declares 4294967280"), "{err}");
    }

    #[test]
    fn an_undefined_length_un_is_walked_as_dicom_rs_reads_it() {
        // dicom-rs reads any undefined-length element as a sequence in the
        // file's own encoding: an explicit-VR element inside it that
        // declares 4 GiB must be found.
        let mut body = long(0x0009, 0x1000, b"UN", UNDEFINED);
        body.extend(marker(0xE000, UNDEFINED));
        body.extend(long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(err.contains("declares 4294967280"), "{err}");
    }

    #[test]
    fn unknown_vrs_have_4_byte_lengths_as_in_dicom_rs() {
        // "XX" is unknown: reserved bytes, then a 4-byte length of 4 GiB.
        let body = long(0x0009, 0x1010, b"XX", 0xFFFF_FFF0);
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(err.contains("declares 4294967280"), "{err}");
    }

    #[test]
    fn pixel_data_declared_sq_is_walked_as_a_sequence() {
        let mut body = long(0x7FE0, 0x0010, b"SQ", UNDEFINED);
        body.extend(marker(0xE000, 12));
        body.extend(long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(err.contains("declares 4294967280"), "{err}");
    }

    #[test]
    fn trailing_padding_and_a_stray_delimiter_are_tolerated() {
        let mut body = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B'];
        body.extend(marker(0xE00D, 0));
        body.extend_from_slice(&[0, 0, 0]);
        assert!(check(&file(EXPLICIT, &body)).is_ok());
    }

    #[test]
    fn the_meta_group_length_decides_where_the_data_set_starts() {
        let mut bytes = file(EXPLICIT, &[]);
        // A group length 8 bytes too long would swallow the data set's
        // first element header as meta, as dicom-rs would: the walk must
        // agree (here: the value of that "meta" element runs past the end).
        bytes.extend(long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
        let at = 128 + 4 + 8;
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        bytes[at..at + 4].copy_from_slice(&(length + 12).to_le_bytes());
        let err = check(&bytes).unwrap_err().to_string();
        assert!(err.contains("declares 4294967280"), "{err}");
        // No (0002,0000) first: refused.
        let mut bare = vec![0u8; 128];
        bare.extend_from_slice(b"DICM");
        bare.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 2, 0, b'1', 0]);
        assert!(check(&bare)
            .unwrap_err()
            .to_string()
            .contains("(0002,0000)"));
    }

    #[test]
    fn a_transfer_syntax_padded_with_a_tab_is_still_implicit_vr() {
        // (0010,0010), 4 GiB, in implicit VR: only an implicit reading finds it.
        let mut body = vec![0x10, 0x00, 0x10, 0x00];
        body.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = check(&file("1.2.840.10008.1.2\t", &body))
            .unwrap_err()
            .to_string();
        assert!(err.contains("declares 4294967280"), "{err}");
    }

    #[test]
    fn implicit_vr_sequences_are_known_from_the_dictionary() {
        // (0008,1140) Referenced Image Sequence, 12 bytes: one item of 4
        // bytes whose content (a header cut off) is not a valid element.
        let mut body = vec![0x08, 0x00, 0x40, 0x11, 12, 0, 0, 0];
        body.extend(marker(0xE000, 4));
        body.extend_from_slice(&[0x10, 0x00, 0x10, 0x00]);
        let err = check(&file(IMPLICIT_VR_LITTLE_ENDIAN, &body))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut off"), "{err}");
        // Not a sequence in the dictionary: the same bytes are an opaque value.
        body[2..4].copy_from_slice(&[0x3E, 0x10]); // (0008,103E) LO
        assert!(check(&file(IMPLICIT_VR_LITTLE_ENDIAN, &body)).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let mut body = Vec::new();
        for _ in 0..(MAX_DEPTH + 4) {
            body.extend(long(0x0008, 0x1140, b"SQ", UNDEFINED));
            body.extend(marker(0xE000, UNDEFINED));
        }
        let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn big_endian_lengths_are_read_big_endian() {
        // (0010,0010) PN, length 2 in big endian.
        let body = [0x00, 0x10, 0x00, 0x10, b'P', b'N', 0, 2, b'A', b'B'];
        assert!(check(&file(EXPLICIT_VR_BIG_ENDIAN, &body)).is_ok());
        let body = [0x00, 0x10, 0x00, 0x10, b'P', b'N', 2, 0, b'A', b'B'];
        let err = check(&file(EXPLICIT_VR_BIG_ENDIAN, &body))
            .unwrap_err()
            .to_string();
        assert!(err.contains("declares 512"), "{err}");
    }
}
