//! The client side of the SMP commands the device serves: requests encoded
//! and responses decoded, for the workstation's `tumorxai flash` and
//! `tumorxai device status`. Requests are sent as SMP version 1 so that
//! error answers carry their reason text (`rsn`).

use minicbor::data::Type;
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};

use super::body::{image, os, BodyError};
use super::group;
use super::header::{Header, Op, HEADER_LEN};

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest<'a> {
    Parameters,
    ImageState,
    /// `first` carries the image length and SHA-256 (offset 0 only).
    Upload {
        off: u64,
        data: &'a [u8],
        first: Option<(u64, [u8; 32])>,
    },
    Mark {
        hash: [u8; 32],
        confirm: bool,
    },
    Reset,
}

/// One slot of an image state answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotAnswer {
    pub slot: u64,
    pub version: heapless::String<32>,
    pub hash: heapless::Vec<u8, 32>,
    pub active: bool,
    pub confirmed: bool,
    pub pending: bool,
    pub permanent: bool,
}

/// A decoded answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    Parameters {
        buf_size: u64,
    },
    ImageState {
        slots: heapless::Vec<SlotAnswer, 2>,
    },
    Upload {
        off: u64,
        matched: Option<bool>,
    },
    /// An answer without fields of interest (reset).
    Done,
    /// The device refused: MCUmgr error code and its reason when given.
    Refused {
        rc: u64,
        reason: heapless::String<200>,
    },
}

fn cbor<E: core::fmt::Display>(e: E) -> BodyError {
    BodyError::Cbor(format!("{e}"))
}

impl ClientRequest<'_> {
    /// The request's operation, group and command: its answer must carry
    /// the same group and command, with the matching response operation.
    pub fn route(&self) -> (Op, u16, u8) {
        match self {
            ClientRequest::Parameters => (Op::Read, group::OS, os::PARAMETERS),
            ClientRequest::ImageState => (Op::Read, group::IMAGE, image::STATE),
            ClientRequest::Upload { .. } => (Op::Write, group::IMAGE, image::UPLOAD),
            ClientRequest::Mark { .. } => (Op::Write, group::IMAGE, image::STATE),
            ClientRequest::Reset => (Op::Write, group::OS, os::RESET),
        }
    }
}

/// Encodes `request` with `sequence` into `out`; returns the length.
pub fn encode_request(
    request: &ClientRequest,
    sequence: u8,
    out: &mut [u8],
) -> Result<usize, BodyError> {
    let capacity = out.len();
    let (head, rest) = out
        .split_at_mut_checked(HEADER_LEN)
        .ok_or(BodyError::Full(capacity))?;
    let mut e = Encoder::new(Cursor::new(rest));
    let full = |_| BodyError::Full(capacity);
    match request {
        ClientRequest::Parameters | ClientRequest::ImageState | ClientRequest::Reset => {
            e.map(0).map_err(full)?;
        }
        ClientRequest::Upload { off, data, first } => {
            e.map(if first.is_some() { 4 } else { 2 }).map_err(full)?;
            if let Some((len, sha)) = first {
                e.str("len").and_then(|e| e.u64(*len)).map_err(full)?;
                e.str("sha").and_then(|e| e.bytes(sha)).map_err(full)?;
            }
            e.str("off").and_then(|e| e.u64(*off)).map_err(full)?;
            e.str("data").and_then(|e| e.bytes(data)).map_err(full)?;
        }
        ClientRequest::Mark { hash, confirm } => {
            e.map(2).map_err(full)?;
            e.str("hash").and_then(|e| e.bytes(hash)).map_err(full)?;
            e.str("confirm")
                .and_then(|e| e.bool(*confirm))
                .map_err(full)?;
        }
    }
    let (op, group_id, command) = request.route();
    let body_len = e.writer().position();
    let header = Header {
        version: 0,
        op,
        flags: 0,
        length: u16::try_from(body_len).map_err(|_| BodyError::Full(capacity))?,
        group: group_id,
        sequence,
        command,
    };
    head.copy_from_slice(&header.encode());
    Ok(HEADER_LEN + body_len)
}

fn slot_answer(d: &mut Decoder) -> Result<SlotAnswer, BodyError> {
    let mut slot = SlotAnswer::default();
    let n = d
        .map()
        .map_err(cbor)?
        .ok_or(BodyError::Missing("definite map"))?;
    for _ in 0..n {
        match d.str().map_err(cbor)? {
            "slot" => slot.slot = d.u64().map_err(cbor)?,
            "version" => {
                let text = d.str().map_err(cbor)?;
                slot.version =
                    heapless::String::try_from(text.get(..text.len().min(32)).unwrap_or(""))
                        .unwrap_or_default();
            }
            "hash" => {
                slot.hash = heapless::Vec::from_slice(d.bytes().map_err(cbor)?)
                    .map_err(|_| BodyError::Cbor("hash longer than 32 bytes".into()))?
            }
            "active" => slot.active = d.bool().map_err(cbor)?,
            "confirmed" => slot.confirmed = d.bool().map_err(cbor)?,
            "pending" => slot.pending = d.bool().map_err(cbor)?,
            "permanent" => slot.permanent = d.bool().map_err(cbor)?,
            _ => d.skip().map_err(cbor)?,
        }
    }
    Ok(slot)
}

/// Decodes the answer to `request`, sent with `sequence`. `Ok(None)` for a
/// message that is not that answer: another sequence, group or command
/// (a stale answer to an earlier client's request), or a request.
pub fn parse_response(
    message: &[u8],
    request: &ClientRequest,
    sequence: u8,
) -> Result<Option<ClientResponse>, BodyError> {
    // A message that is not an SMP answer (noise that passed the CRC) is
    // not ours: ignored like an answer to another request.
    let Ok((header, body)) = Header::split(message) else {
        return Ok(None);
    };
    let (op, group_id, command) = request.route();
    if header.sequence != sequence
        || header.op != op.response()
        || header.group != group_id
        || header.command != command
    {
        return Ok(None);
    }
    let mut d = Decoder::new(body);
    let (mut rc, mut reason) = (0u64, heapless::String::<200>::new());
    let (mut off, mut matched, mut buf_size) = (None, None, None);
    let mut slots = heapless::Vec::<SlotAnswer, 2>::new();
    let n = if body.is_empty() {
        0
    } else {
        d.map()
            .map_err(cbor)?
            .ok_or(BodyError::Missing("definite map"))?
    };
    for _ in 0..n {
        match d.str().map_err(cbor)? {
            "rc" => rc = d.u64().map_err(cbor)?,
            "rsn" => {
                let text = d.str().map_err(cbor)?;
                for c in text.chars() {
                    if reason.push(c).is_err() {
                        break;
                    }
                }
            }
            "err" => {
                let m = d.map().map_err(cbor)?.unwrap_or(0);
                for _ in 0..m {
                    match d.str().map_err(cbor)? {
                        "rc" => rc = d.u64().map_err(cbor)?,
                        _ => d.skip().map_err(cbor)?,
                    }
                }
            }
            "off" => off = Some(d.u64().map_err(cbor)?),
            "match" => matched = Some(d.bool().map_err(cbor)?),
            "buf_size" => buf_size = Some(d.u64().map_err(cbor)?),
            "images" => {
                let count = d
                    .array()
                    .map_err(cbor)?
                    .ok_or(BodyError::Missing("definite array"))?;
                for _ in 0..count {
                    let slot = slot_answer(&mut d)?;
                    // A third slot would be another device's layout: ignored.
                    let _ = slots.push(slot);
                }
            }
            _ => {
                if d.datatype().map_err(cbor)? == Type::Break {
                    break;
                }
                d.skip().map_err(cbor)?
            }
        }
    }
    if rc != 0 {
        return Ok(Some(ClientResponse::Refused { rc, reason }));
    }
    Ok(Some(match (header.group, header.command) {
        (group::OS, os::PARAMETERS) => ClientResponse::Parameters {
            buf_size: buf_size.ok_or(BodyError::Missing("buf_size"))?,
        },
        (group::IMAGE, image::STATE) => ClientResponse::ImageState { slots },
        (group::IMAGE, image::UPLOAD) => ClientResponse::Upload {
            off: off.ok_or(BodyError::Missing("off"))?,
            matched,
        },
        _ => ClientResponse::Done,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smp::body::{
        parse_request, write_response, MgmtErr, Request, Response, SlotState, Upload,
    };

    #[test]
    fn an_upload_request_is_what_the_server_parses() {
        let mut out = [0u8; 256];
        let request = ClientRequest::Upload {
            off: 0,
            data: b"abc",
            first: Some((3, [7; 32])),
        };
        let n = encode_request(&request, 9, &mut out).unwrap();
        let (header, body) = Header::split(&out[..n]).unwrap();
        assert_eq!((header.version, header.sequence), (0, 9));
        assert_eq!(
            parse_request(&header, body).unwrap(),
            Request::Upload(Upload {
                off: 0,
                data: b"abc",
                len: Some(3),
                sha: Some(&[7; 32]),
                image: None,
                upgrade: None,
            })
        );
    }

    #[test]
    fn each_request_goes_to_the_documented_group_and_command() {
        // MCUmgr: op 0 read / 2 write; group 0 OS (5 reset, 6 parameters),
        // group 1 image (0 state, 1 upload). Header bytes 0, 4-5 and 7.
        let hash = [3u8; 32];
        let cases: [(ClientRequest, [u8; 4]); 5] = [
            (ClientRequest::Parameters, [0, 0, 0, 6]),
            (ClientRequest::ImageState, [0, 0, 1, 0]),
            (
                ClientRequest::Upload {
                    off: 5,
                    data: b"x",
                    first: None,
                },
                [2, 0, 1, 1],
            ),
            (
                ClientRequest::Mark {
                    hash,
                    confirm: false,
                },
                [2, 0, 1, 0],
            ),
            (ClientRequest::Reset, [2, 0, 0, 5]),
        ];
        for (request, [op, group_hi, group_lo, command]) in cases {
            let mut out = [0u8; 128];
            let n = encode_request(&request, 1, &mut out).unwrap();
            assert_eq!(
                [out[0], out[4], out[5], out[7]],
                [op, group_hi, group_lo, command],
                "{request:?}"
            );
            // And the server's parser reads it as the same request.
            let (header, body) = Header::split(&out[..n]).unwrap();
            let parsed = parse_request(&header, body).unwrap();
            let same = match (&request, &parsed) {
                (ClientRequest::Parameters, Request::Parameters)
                | (ClientRequest::ImageState, Request::ImageStateRead)
                | (ClientRequest::Reset, Request::Reset) => true,
                (ClientRequest::Upload { off, .. }, Request::Upload(u)) => u.off == *off,
                (
                    ClientRequest::Mark { hash, confirm },
                    Request::ImageStateWrite {
                        hash: h,
                        confirm: c,
                    },
                ) => *h == Some(&hash[..]) && c == confirm,
                _ => false,
            };
            assert!(same, "{request:?} parsed as {parsed:?}");
        }
    }

    #[test]
    fn answers_decode() {
        let mut request = [0u8; 64];
        let n = encode_request(&ClientRequest::ImageState, 4, &mut request).unwrap();
        let header = Header::decode(&request[..n]).unwrap();
        let mut out = [0u8; 512];
        let slots = [SlotState {
            slot: 0,
            version: "1.3.0",
            hash: [1; 32],
            bootable: true,
            pending: false,
            confirmed: true,
            active: true,
            permanent: false,
        }];
        let m = write_response(&header, &Response::ImageState { slots: &slots }, &mut out).unwrap();
        let state = ClientRequest::ImageState;
        let Some(ClientResponse::ImageState { slots }) =
            parse_response(&out[..m], &state, 4).unwrap()
        else {
            panic!("not a state answer");
        };
        assert_eq!(slots[0].version.as_str(), "1.3.0");
        assert!(slots[0].active && slots[0].confirmed);
        assert_eq!(
            parse_response(&out[..m], &state, 5).unwrap(),
            None,
            "other sequence"
        );
        // The same sequence answering another request (a stale answer left
        // on the line by an earlier client) is not this request's answer.
        assert_eq!(
            parse_response(&out[..m], &ClientRequest::Parameters, 4).unwrap(),
            None,
            "other group and command"
        );
        assert_eq!(
            parse_response(
                &out[..m],
                &ClientRequest::Upload {
                    off: 0,
                    data: b"",
                    first: None
                },
                4
            )
            .unwrap(),
            None,
            "other command"
        );
        // A mark (write) shares group and command with the state read: the
        // read answer's op tells them apart.
        let mark = ClientRequest::Mark {
            hash: [1; 32],
            confirm: true,
        };
        assert_eq!(
            parse_response(&out[..m], &mark, 4).unwrap(),
            None,
            "read answer to a write"
        );
        let error = Response::Error {
            code: MgmtErr::BadState,
            reason: "on trial",
        };
        let m = write_response(&header, &error, &mut out).unwrap();
        assert_eq!(
            parse_response(&out[..m], &state, 4).unwrap(),
            Some(ClientResponse::Refused {
                rc: 6,
                reason: heapless::String::try_from("on trial").unwrap()
            })
        );
    }
}
