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
mod tests;
