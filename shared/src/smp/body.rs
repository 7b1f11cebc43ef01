//! CBOR bodies of the SMP commands this device serves (OS: echo, reset,
//! MCUmgr parameters; Image: state read/write, upload, erase), parsed from
//! requests and written into responses, without allocation (minicbor).
//! Field names and meanings follow Zephyr's SMP group specifications
//! (`smp_groups/smp_group_0.html`, `smp_group_1.html`); unknown keys are
//! skipped, as the specification asks of servers.

use minicbor::data::Type;
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};
use thiserror::Error;

use super::group;
use super::header::{Header, Op};

/// OS group command ids.
pub mod os {
    pub const ECHO: u8 = 0;
    pub const RESET: u8 = 5;
    pub const PARAMETERS: u8 = 6;
}

/// Image group command ids.
pub mod image {
    pub const STATE: u8 = 0;
    pub const UPLOAD: u8 = 1;
    pub const ERASE: u8 = 5;
}

/// MCUmgr's generic error codes (`MGMT_ERR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtErr {
    Unknown = 1,
    NoMemory = 2,
    Invalid = 3,
    NoEntry = 5,
    BadState = 6,
    MessageSize = 7,
    NotSupported = 8,
    Corrupt = 9,
    Busy = 10,
    AccessDenied = 11,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Echo {
        text: &'a str,
    },
    Reset,
    Parameters,
    ImageStateRead,
    /// Mark an image for test (`confirm` false) or make one permanent.
    ImageStateWrite {
        hash: Option<&'a [u8]>,
        confirm: bool,
    },
    Upload(Upload<'a>),
    Erase {
        slot: Option<u64>,
    },
}

/// One chunk of an image upload. `len`, `sha` and `image` come with the
/// chunk at offset 0 only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Upload<'a> {
    pub off: u64,
    pub data: &'a [u8],
    pub len: Option<u64>,
    pub sha: Option<&'a [u8]>,
    pub image: Option<u64>,
    pub upgrade: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    #[error("group {group} command {command} ({op:?}) is not served")]
    NotSupported { group: u16, command: u8, op: Op },
    #[error("malformed CBOR body: {0}")]
    Cbor(String),
    #[error("missing field {0:?}")]
    Missing(&'static str),
    #[error("the response does not fit the {0}-byte buffer")]
    Full(usize),
}

impl BodyError {
    /// The MCUmgr error code reported for this error.
    pub fn code(&self) -> MgmtErr {
        match self {
            BodyError::NotSupported { .. } => MgmtErr::NotSupported,
            BodyError::Cbor(_) | BodyError::Missing(_) => MgmtErr::Invalid,
            BodyError::Full(_) => MgmtErr::MessageSize,
        }
    }
}

fn cbor(e: minicbor::decode::Error) -> BodyError {
    BodyError::Cbor(format!("{e}"))
}

/// Calls `each` with every key of the body's top-level map, the decoder
/// positioned on its value (which `each` must consume). An empty body is
/// an empty map.
fn for_each_field<'b>(
    body: &'b [u8],
    mut each: impl FnMut(&'b str, &mut Decoder<'b>) -> Result<(), minicbor::decode::Error>,
) -> Result<(), BodyError> {
    if body.is_empty() {
        return Ok(());
    }
    let mut d = Decoder::new(body);
    match d.map().map_err(cbor)? {
        Some(n) => {
            for _ in 0..n {
                let key = d.str().map_err(cbor)?;
                each(key, &mut d).map_err(cbor)?;
            }
        }
        None => loop {
            if d.datatype().map_err(cbor)? == Type::Break {
                break;
            }
            let key = d.str().map_err(cbor)?;
            each(key, &mut d).map_err(cbor)?;
        },
    }
    Ok(())
}

/// Parses a request's body by its header's group, command and op.
pub fn parse_request<'a>(header: &Header, body: &'a [u8]) -> Result<Request<'a>, BodyError> {
    let unsupported = || BodyError::NotSupported {
        group: header.group,
        command: header.command,
        op: header.op,
    };
    match (header.group, header.command, header.op) {
        (group::OS, os::ECHO, Op::Write) => {
            let mut text = None;
            for_each_field(body, |key, d| {
                match key {
                    "d" => text = Some(d.str()?),
                    _ => d.skip()?,
                }
                Ok(())
            })?;
            Ok(Request::Echo {
                text: text.ok_or(BodyError::Missing("d"))?,
            })
        }
        (group::OS, os::RESET, Op::Write) => {
            for_each_field(body, |_, d| d.skip())?;
            Ok(Request::Reset)
        }
        (group::OS, os::PARAMETERS, Op::Read) => Ok(Request::Parameters),
        (group::IMAGE, image::STATE, Op::Read) => Ok(Request::ImageStateRead),
        (group::IMAGE, image::STATE, Op::Write) => {
            let (mut hash, mut confirm) = (None, false);
            for_each_field(body, |key, d| {
                match key {
                    "hash" => hash = Some(d.bytes()?),
                    "confirm" => confirm = d.bool()?,
                    _ => d.skip()?,
                }
                Ok(())
            })?;
            Ok(Request::ImageStateWrite { hash, confirm })
        }
        (group::IMAGE, image::UPLOAD, Op::Write) => {
            let mut upload = Upload::default();
            let (mut off, mut data) = (None, None);
            for_each_field(body, |key, d| {
                match key {
                    "off" => off = Some(d.u64()?),
                    "data" => data = Some(d.bytes()?),
                    "len" => upload.len = Some(d.u64()?),
                    "sha" => upload.sha = Some(d.bytes()?),
                    "image" => upload.image = Some(d.u64()?),
                    "upgrade" => upload.upgrade = Some(d.bool()?),
                    _ => d.skip()?,
                }
                Ok(())
            })?;
            upload.off = off.ok_or(BodyError::Missing("off"))?;
            upload.data = data.ok_or(BodyError::Missing("data"))?;
            Ok(Request::Upload(upload))
        }
        (group::IMAGE, image::ERASE, Op::Write) => {
            let mut slot = None;
            for_each_field(body, |key, d| {
                match key {
                    "slot" => slot = Some(d.u64()?),
                    _ => d.skip()?,
                }
                Ok(())
            })?;
            Ok(Request::Erase { slot })
        }
        _ => Err(unsupported()),
    }
}

/// One slot as the image state response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState<'a> {
    /// 0: the running slot (primary), 1: the other one (secondary).
    pub slot: u32,
    pub version: &'a str,
    /// SHA-256 of the slot's bundle, the hash test and confirm refer to.
    pub hash: [u8; 32],
    pub bootable: bool,
    pub pending: bool,
    pub confirmed: bool,
    pub active: bool,
    pub permanent: bool,
}

/// A response body to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// An empty map (reset, erase).
    Empty,
    Echo {
        text: &'a str,
    },
    Parameters {
        buf_size: u32,
        buf_count: u32,
    },
    ImageState {
        slots: &'a [SlotState<'a>],
    },
    /// `matched` with the last chunk: whether the image's SHA-256 is the
    /// one announced at offset 0.
    Upload {
        off: u64,
        matched: Option<bool>,
    },
    /// An error, with its reason (`rsn`).
    Error {
        code: MgmtErr,
        reason: &'a str,
    },
}

type EncodeResult = Result<(), minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>;

fn encode_body(response: &Response, e: &mut Encoder<Cursor<&mut [u8]>>) -> EncodeResult {
    match response {
        Response::Empty => {
            e.map(0)?;
        }
        Response::Echo { text } => {
            e.map(1)?.str("r")?.str(text)?;
        }
        Response::Parameters {
            buf_size,
            buf_count,
        } => {
            e.map(2)?;
            e.str("buf_size")?.u32(*buf_size)?;
            e.str("buf_count")?.u32(*buf_count)?;
        }
        Response::ImageState { slots } => {
            e.map(2)?.str("images")?.array(slots.len() as u64)?;
            for s in slots.iter() {
                e.map(9)?;
                e.str("image")?.u32(0)?;
                e.str("slot")?.u32(s.slot)?;
                e.str("version")?.str(s.version)?;
                e.str("hash")?.bytes(&s.hash)?;
                e.str("bootable")?.bool(s.bootable)?;
                e.str("pending")?.bool(s.pending)?;
                e.str("confirmed")?.bool(s.confirmed)?;
                e.str("active")?.bool(s.active)?;
                e.str("permanent")?.bool(s.permanent)?;
            }
            e.str("splitStatus")?.u32(0)?;
        }
        Response::Upload { off, matched } => {
            e.map(if matched.is_some() { 3 } else { 2 })?;
            e.str("rc")?.u32(0)?;
            e.str("off")?.u64(*off)?;
            if let Some(m) = matched {
                e.str("match")?.bool(*m)?;
            }
        }
        // Generic MCUmgr errors are a top-level `rc` in both SMP versions
        // (version 2's `err` map is for group-specific codes), with the
        // reason as `rsn`.
        Response::Error { code, reason } => {
            e.map(2)?;
            e.str("rc")?.u32(*code as u32)?;
            e.str("rsn")?.str(reason)?;
        }
    }
    Ok(())
}

/// Writes the whole response message (header and body) answering
/// `request` into `out`; returns its length.
pub fn write_response(
    request: &Header,
    response: &Response,
    out: &mut [u8],
) -> Result<usize, BodyError> {
    let capacity = out.len();
    let (head, rest) = out
        .split_at_mut_checked(super::HEADER_LEN)
        .ok_or(BodyError::Full(capacity))?;
    let mut e = Encoder::new(Cursor::new(rest));
    encode_body(response, &mut e).map_err(|_| BodyError::Full(capacity))?;
    let body_len = e.writer().position();
    let header = Header {
        version: request.version,
        op: request.op.response(),
        flags: 0,
        length: u16::try_from(body_len).map_err(|_| BodyError::Full(capacity))?,
        group: request.group,
        sequence: request.sequence,
        command: request.command,
    };
    head.copy_from_slice(&header.encode());
    Ok(super::HEADER_LEN + body_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smp::fixtures::documented_upload;

    #[test]
    fn the_documented_upload_request_parses() {
        let message = documented_upload();
        let (header, body) = Header::split(&message).unwrap();
        let data: Vec<u8> = (0..64).collect();
        assert_eq!(
            parse_request(&header, body).unwrap(),
            Request::Upload(Upload {
                off: 42,
                data: &data,
                len: Some(13),
                sha: Some(b"trust me bro"),
                image: Some(0),
                upgrade: Some(false),
            })
        );
    }

    fn request(version: u8, op: Op, group: u16, command: u8) -> Header {
        Header {
            version,
            op,
            flags: 0,
            length: 0,
            group,
            sequence: 7,
            command,
        }
    }

    #[test]
    fn responses_are_the_expected_bytes() {
        let mut out = [0u8; 64];
        let echo = request(0, Op::Write, group::OS, os::ECHO);
        let n = write_response(&echo, &Response::Echo { text: "hi" }, &mut out).unwrap();
        // Header: v1 write response, 6-byte body, group 0, seq 7, command 0;
        // body {"r": "hi"}.
        assert_eq!(
            &out[..n],
            &[3, 0, 0, 6, 0, 0, 7, 0, 0xA1, 0x61, b'r', 0x62, b'h', b'i']
        );
        // An error, in either version: {"rc": 3, "rsn": "..."}.
        for version in [0u8, 1] {
            let upload = request(version, Op::Write, group::IMAGE, image::UPLOAD);
            let error = Response::Error {
                code: MgmtErr::Invalid,
                reason: "bad offset",
            };
            let n = write_response(&upload, &error, &mut out).unwrap();
            let mut expected = vec![(version << 3) | 3, 0, 0, 20, 0, 1, 7, 1, 0xA2, 0x62];
            expected.extend_from_slice(b"rc\x03\x63rsn\x6Abad offset");
            assert_eq!(&out[..n], &expected[..]);
        }
    }

    #[test]
    fn a_response_too_large_for_the_buffer_is_an_error() {
        let echo = request(0, Op::Write, group::OS, os::ECHO);
        let mut out = [0u8; 12];
        assert_eq!(
            write_response(&echo, &Response::Echo { text: "hello" }, &mut out),
            Err(BodyError::Full(12))
        );
    }

    #[test]
    fn bad_requests_are_typed_errors() {
        let echo = request(0, Op::Write, group::OS, os::ECHO);
        // {"x": 1}: no "d".
        assert_eq!(
            parse_request(&echo, &[0xA1, 0x61, b'x', 0x01]),
            Err(BodyError::Missing("d"))
        );
        // Truncated map.
        assert!(matches!(
            parse_request(&echo, &[0xA2, 0x61, b'd']),
            Err(BodyError::Cbor(_))
        ));
        // {"d": 1}: wrong type.
        assert!(matches!(
            parse_request(&echo, &[0xA1, 0x61, b'd', 0x01]),
            Err(BodyError::Cbor(_))
        ));
        let stats = request(0, Op::Read, 2, 0);
        assert_eq!(
            parse_request(&stats, &[]).unwrap_err().code(),
            MgmtErr::NotSupported
        );
        // Indefinite-length map with an unknown key skipped.
        let body = [0xBF, 0x61, b'q', 0x05, 0x61, b'd', 0x61, b'z', 0xFF];
        assert_eq!(parse_request(&echo, &body), Ok(Request::Echo { text: "z" }));
    }
}
