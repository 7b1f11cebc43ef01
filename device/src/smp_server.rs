//! The device's MCUmgr SMP server: OS group (echo, reset, MCUmgr
//! parameters) and Image group (state read, test/confirm, upload, erase)
//! over the slots of [`crate::upgrade`]. [`SmpServer::handle`] turns one
//! request message into one response message (pure apart from the state
//! directory); [`crate::smp_transport`] carries messages over a serial
//! port with the shared console framing.
//!
//! Uploads resume: the bytes received so far are kept in
//! `STATE/upload.part` (fsynced per chunk) with the announced length and
//! SHA-256 in `STATE/upload.json`; a client that starts over at offset 0
//! with the same length and SHA-256 (after a disconnect, or after this
//! process restarted) is told the offset to go on from. When the last byte
//! arrives the whole file is hashed, compared with the announced SHA-256,
//! and staged (signature, manifest, anti-rollback, tract load, self-test);
//! only a staged bundle can be marked for test.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tumorxai_shared::smp::body::{
    parse_request, write_response, MgmtErr, Request, Response, SlotState, Upload,
};
use tumorxai_shared::smp::{Header, Op};

use crate::forms::ExecutionForm;
use crate::service::write_atomic;
use crate::state::{SlotInfo, StateDir, MAX_BUNDLE_BYTES};
use crate::upgrade::{Reloaded, UpgradeError};

/// The largest SMP message (header and body) accepted and sent; reported
/// to clients as `buf_size`, which they size their upload chunks by.
/// Each chunk costs a round trip and an fsync: at 921600 baud 2048-byte
/// messages left the payload at 64.9 % of the line rate and 4096-byte ones
/// at 66.6 %, 8192-byte ones at 67.8 % (`host/bench/flash_throughput.sh`;
/// the framing allows 72 %).
pub const BUF_SIZE: usize = 8192;
/// Serial packet capacity: the message plus length field and CRC.
pub const PACKET_CAPACITY: usize = BUF_SIZE + 4;

/// What a request changed, for the service around the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    None,
    /// OS reset: the slots were reloaded (see [`Reloaded`]); the service
    /// loads the active model.
    Reset(Reloaded),
    Progress {
        done: u64,
        total: u64,
    },
    Staged(SlotInfo),
    /// An upload or a staging attempt failed; the reason.
    Refused(String),
    Marked,
}

/// One handled request: the response's length in the output buffer (none
/// for messages that are not requests) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub response: Option<usize>,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadRecord {
    len: u64,
    /// Hex SHA-256 announced at offset 0, when the client sent one.
    sha256: Option<String>,
}

struct UploadProgress {
    record: UploadRecord,
    off: u64,
}

pub struct SmpServer {
    state: StateDir,
    form: ExecutionForm,
    upload: Option<UploadProgress>,
    now: fn() -> String,
}

type Refusal = (MgmtErr, String);

fn refusal(error: UpgradeError) -> Refusal {
    let code = match &error {
        UpgradeError::BadState(_) => MgmtErr::BadState,
        UpgradeError::NoSuchImage(_) => MgmtErr::NoEntry,
        UpgradeError::State(_) => MgmtErr::Invalid,
    };
    (code, error.to_string())
}

fn io_refusal(what: &str, e: std::io::Error) -> Refusal {
    (MgmtErr::Unknown, format!("{what}: {e}"))
}

impl SmpServer {
    /// A server over `state`; an upload interrupted earlier (even by a
    /// restart) is picked up where its file ends.
    pub fn new(state: StateDir, form: ExecutionForm, now: fn() -> String) -> SmpServer {
        let mut server = SmpServer {
            state,
            form,
            upload: None,
            now,
        };
        server.upload = server.restore_upload();
        server
    }

    fn part_path(&self) -> PathBuf {
        self.state.root.join("upload.part")
    }

    fn record_path(&self) -> PathBuf {
        self.state.root.join("upload.json")
    }

    fn restore_upload(&self) -> Option<UploadProgress> {
        let record: UploadRecord =
            serde_json::from_slice(&std::fs::read(self.record_path()).ok()?).ok()?;
        let size = std::fs::metadata(self.part_path()).ok()?.len();
        // A complete file was being staged when the process ended: the
        // client sends it again (or finds it staged).
        (size < record.len).then_some(UploadProgress { record, off: size })
    }

    fn clear_upload(&mut self) {
        self.upload = None;
        let _ = std::fs::remove_file(self.record_path());
        let _ = std::fs::remove_file(self.part_path());
    }

    /// Handles one request message, writing the response into `out`
    /// (at least [`BUF_SIZE`] bytes).
    pub fn handle(&mut self, message: &[u8], out: &mut [u8]) -> Handled {
        let (header, reply, event) = match Header::split(message) {
            Ok((header, _)) if matches!(header.op, Op::ReadResponse | Op::WriteResponse) => {
                return Handled {
                    response: None,
                    event: Event::None,
                }
            }
            Ok((header, body)) => match parse_request(&header, body) {
                Ok(request) => {
                    let (reply, event) = self.dispatch(request);
                    (header, reply, event)
                }
                Err(e) => (header, Reply::Error(e.code(), e.to_string()), Event::None),
            },
            // A header whose length disagrees with the message is answered;
            // bytes that are no header are not.
            Err(_) => match Header::decode(message) {
                Ok(header) => (
                    header,
                    Reply::Error(
                        MgmtErr::Invalid,
                        "the header's length is not the body's".into(),
                    ),
                    Event::None,
                ),
                Err(_) => {
                    return Handled {
                        response: None,
                        event: Event::None,
                    }
                }
            },
        };
        Handled {
            response: reply.write(&header, out),
            event,
        }
    }

    fn dispatch(&mut self, request: Request) -> (Reply, Event) {
        let result = match request {
            Request::Echo { text } => Ok((Reply::Echo(text.to_string()), Event::None)),
            // The slots change now, before the answer, so that the next
            // request sees them; the service loads the model between scans.
            Request::Reset => self
                .state
                .reset()
                .map(|reloaded| (Reply::Empty, Event::Reset(reloaded)))
                .map_err(refusal),
            Request::Parameters => Ok((Reply::Parameters, Event::None)),
            Request::ImageStateRead => self.image_state().map(|r| (r, Event::None)),
            Request::ImageStateWrite { hash, confirm } => self
                .state
                .mark(hash, confirm)
                .map_err(refusal)
                .and_then(|()| self.image_state())
                .map(|r| (r, Event::Marked)),
            Request::Upload(upload) => self.upload(upload),
            Request::Erase { .. } => self
                .state
                .erase_inactive()
                .map(|()| (Reply::Empty, Event::None))
                .map_err(refusal),
        };
        result.unwrap_or_else(|(code, reason)| {
            (Reply::Error(code, reason.clone()), Event::Refused(reason))
        })
    }

    fn image_state(&self) -> Result<Reply, Refusal> {
        let slots = self.state.report().map_err(refusal)?;
        Ok(Reply::State(slots))
    }

    fn upload(&mut self, chunk: Upload) -> Result<(Reply, Event), Refusal> {
        if chunk.image.is_some_and(|i| i != 0) {
            return Err((MgmtErr::Invalid, "this device has one image (0)".into()));
        }
        if chunk.off == 0 {
            let len = chunk
                .len
                .ok_or((MgmtErr::Invalid, "len is required at offset 0".to_string()))?;
            if len == 0 || len > MAX_BUNDLE_BYTES {
                return Err((
                    MgmtErr::NoMemory,
                    format!("a bundle of {len} bytes; a slot holds 1 to {MAX_BUNDLE_BYTES}"),
                ));
            }
            let sha256 = match chunk.sha {
                Some(sha) if sha.len() == 32 => Some(hex::encode(sha)),
                Some(_) => return Err((MgmtErr::Invalid, "sha must be a SHA-256".into())),
                None => None,
            };
            // Already staged or running (its last answer may have been
            // lost while it was verified): done.
            if let Some(sha) = &sha256 {
                let slots = self.state.report().map_err(refusal)?;
                if slots.iter().any(|r| &r.info.bundle_sha256 == sha) {
                    return Ok((
                        Reply::Upload {
                            off: len,
                            matched: Some(true),
                        },
                        Event::None,
                    ));
                }
            }
            let record = UploadRecord { len, sha256 };
            // The same image again: go on where it stopped.
            if let Some(p) = &self.upload {
                if p.record == record && record.sha256.is_some() && p.off > 0 {
                    let done = p.off;
                    return Ok((
                        Reply::Upload {
                            off: done,
                            matched: None,
                        },
                        Event::Progress { done, total: len },
                    ));
                }
            }
            self.state.may_upload().map_err(refusal)?;
            self.clear_upload();
            std::fs::create_dir_all(&self.state.root)
                .map_err(|e| io_refusal("creating the state directory", e))?;
            let json =
                serde_json::to_vec(&record).map_err(|e| (MgmtErr::Unknown, e.to_string()))?;
            std::fs::File::create(self.part_path())
                .map_err(|e| io_refusal("creating upload.part", e))?;
            write_atomic(&self.record_path(), &json)
                .map_err(|e| io_refusal("writing upload.json", e))?;
            self.upload = Some(UploadProgress { record, off: 0 });
        }
        let part = self.part_path();
        let progress = self.upload.as_mut().ok_or((
            MgmtErr::BadState,
            "no upload in progress: start at offset 0".to_string(),
        ))?;
        let total = progress.record.len;
        if chunk.off != progress.off {
            // Out of order (a lost response, a resent chunk): say where to
            // go on from.
            let done = progress.off;
            return Ok((
                Reply::Upload {
                    off: done,
                    matched: None,
                },
                Event::Progress { done, total },
            ));
        }
        let end = progress.off.saturating_add(chunk.data.len() as u64);
        if end > total {
            return Err((
                MgmtErr::Invalid,
                format!("data past the announced length {total}"),
            ));
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(|e| io_refusal("opening upload.part", e))?;
        file.seek(SeekFrom::Start(progress.off))
            .and_then(|_| file.write_all(chunk.data))
            .and_then(|()| file.sync_data())
            .map_err(|e| io_refusal("writing upload.part", e))?;
        progress.off = end;
        if end >= total / 2 && end.saturating_sub(chunk.data.len() as u64) < total / 2 {
            crate::failpoint::hit("upload-half");
        }
        if end < total {
            return Ok((
                Reply::Upload {
                    off: end,
                    matched: None,
                },
                Event::Progress { done: end, total },
            ));
        }
        let announced = progress.record.sha256.clone();
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&part).and_then(|mut f| f.read_to_end(&mut bytes));
        self.clear_upload();
        read.map_err(|e| io_refusal("reading upload.part", e))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let matched = announced.map(|sha| sha == digest);
        if matched == Some(false) {
            let reason = "the uploaded bytes do not have the announced SHA-256".to_string();
            return Ok((Reply::Upload { off: end, matched }, Event::Refused(reason)));
        }
        let (_, info) = self
            .state
            .stage(&bytes, self.form, &(self.now)())
            .map_err(refusal)?;
        Ok((Reply::Upload { off: end, matched }, Event::Staged(info)))
    }
}

/// A response, owned until it is written.
enum Reply {
    Empty,
    Echo(String),
    Parameters,
    State(Vec<crate::upgrade::SlotReport>),
    Upload { off: u64, matched: Option<bool> },
    Error(MgmtErr, String),
}

impl Reply {
    fn write(&self, header: &Header, out: &mut [u8]) -> Option<usize> {
        let slots: Vec<SlotState> = match self {
            Reply::State(reports) => reports
                .iter()
                .enumerate()
                .map(|(index, r)| SlotState {
                    slot: index as u32,
                    version: &r.info.version,
                    hash: hex::decode(&r.info.bundle_sha256)
                        .ok()
                        .and_then(|h| <[u8; 32]>::try_from(h).ok())
                        .unwrap_or_default(),
                    bootable: true,
                    pending: r.pending,
                    confirmed: r.confirmed,
                    active: r.active,
                    permanent: r.permanent,
                })
                .collect(),
            _ => Vec::new(),
        };
        let response = match self {
            Reply::Empty => Response::Empty,
            Reply::Echo(text) => Response::Echo { text },
            Reply::Parameters => Response::Parameters {
                buf_size: BUF_SIZE as u32,
                buf_count: 1,
            },
            Reply::State(_) => Response::ImageState { slots: &slots },
            Reply::Upload { off, matched } => Response::Upload {
                off: *off,
                matched: *matched,
            },
            Reply::Error(code, reason) => Response::Error {
                code: *code,
                reason,
            },
        };
        write_response(header, &response, out)
            .or_else(|e| {
                let fallback = Response::Error {
                    code: e.code(),
                    reason: "response too large",
                };
                write_response(header, &fallback, out)
            })
            .ok()
    }
}
