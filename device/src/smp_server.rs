//! The device's MCUmgr SMP server: OS group (echo, reset, MCUmgr
//! parameters) and Image group (state read, test/confirm, upload, erase)
//! over the slots of [`crate::upgrade`]. [`SmpServer::handle`] turns one
//! request message into one response message (pure apart from the state
//! directory); [`run_transport`] carries messages over a serial port with
//! the shared console framing.
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
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tumorxai_shared::smp::body::{
    parse_request, write_response, MgmtErr, Request, Response, SlotState, Upload,
};
use tumorxai_shared::smp::{frames, FrameDecoder, Header, Op};

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

/// The events to act on from a batch queued since the last look: every
/// event in order, except progress reports superseded by a later one in the
/// batch (drawing each would only slow the panel down).
pub fn newest_progress_only(events: Vec<Event>) -> Vec<Event> {
    let newest = events
        .iter()
        .rposition(|e| matches!(e, Event::Progress { .. }));
    events
        .into_iter()
        .enumerate()
        .filter(|(index, event)| !matches!(event, Event::Progress { .. }) || Some(*index) == newest)
        .map(|(_, event)| event)
        .collect()
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

/// Serves SMP over a serial port (or anything that reads and writes bytes)
/// until `stop` is set; every handled request's event goes to `events`
/// after its response has been written, except a reset's, which goes
/// before (`events` may block until the service has reloaded). Read
/// timeouts only re-check `stop`.
pub fn run_transport<P: Read + Write>(
    port: &mut P,
    server: &mut SmpServer,
    stop: &AtomicBool,
    mut events: impl FnMut(Event),
    mut log: impl FnMut(String),
) -> std::io::Result<()> {
    let mut decoder = FrameDecoder::<PACKET_CAPACITY>::new();
    let mut input = [0u8; 512];
    let mut out = vec![0u8; BUF_SIZE];
    while !stop.load(Ordering::SeqCst) {
        let n = match port.read(&mut input) {
            Ok(0) => {
                // End of file on a port: wait rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        for &byte in input.get(..n).unwrap_or_default() {
            match decoder.feed(byte) {
                None => {}
                Some(Err(e)) => log(format!("SMP: dropped a packet: {e}")),
                Some(Ok(message)) => {
                    let handled = server.handle(&message, &mut out);
                    // A reset is answered once the service has acted on it
                    // (loaded the model, or reverted): the answer then means
                    // the reload is over, and a state read that follows it
                    // on the line sees the result.
                    let reset = matches!(handled.event, Event::Reset(_));
                    let event = if reset {
                        events(handled.event);
                        // Stopped while the service had not taken it: no
                        // answer, which the client cannot mistake for a
                        // reload done.
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        None
                    } else {
                        Some(handled.event)
                    };
                    if let Some(len) = handled.response {
                        let response = out.get(..len).unwrap_or_default();
                        match frames(response) {
                            Ok(lines) => {
                                for line in lines {
                                    port.write_all(&line)?;
                                }
                                port.flush()?;
                            }
                            Err(e) => log(format!("SMP: response not sent: {e}")),
                        }
                    }
                    if let Some(event) = event {
                        events(event);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64) -> Event {
        Event::Progress { done, total: 100 }
    }

    #[test]
    fn only_the_newest_progress_of_a_batch_is_kept_and_the_rest_in_order() {
        let batch = vec![
            progress(10),
            Event::Refused("bad offset".into()),
            progress(20),
            progress(30),
            Event::Marked,
        ];
        assert_eq!(
            newest_progress_only(batch),
            vec![
                Event::Refused("bad offset".into()),
                progress(30),
                Event::Marked
            ]
        );
        assert_eq!(newest_progress_only(vec![progress(5)]), vec![progress(5)]);
        assert_eq!(
            newest_progress_only(vec![Event::Marked, Event::None]),
            vec![Event::Marked, Event::None]
        );
        assert!(newest_progress_only(Vec::new()).is_empty());
    }

    /// A port whose input is a fixed byte string and whose output is
    /// shared with the test.
    struct Port {
        input: std::io::Cursor<Vec<u8>>,
        output: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    }

    impl Read for Port {
        /// The input, then an error that ends the transport.
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.input.read(buf)? {
                0 => Err(std::io::ErrorKind::BrokenPipe.into()),
                n => Ok(n),
            }
        }
    }

    impl Write for Port {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs the transport over one OS reset request (SMP v2 write: op 2 |
    /// version 1 << 3, flags, length 1, group 0, sequence 7, command 5;
    /// body an empty CBOR map) until its input ends; `stop_on_reset` sets
    /// the stop flag as the service takes the reset. The bytes written
    /// before the reset reached the service, and all bytes written.
    fn run_one_reset(stop_on_reset: bool) -> (Vec<usize>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut server = SmpServer::new(StateDir::new(dir.path()), ExecutionForm::auto(), || {
            "t".into()
        });
        let request = [0x0A, 0, 0, 1, 0, 0, 7, 5, 0xA0];
        let mut input = Vec::new();
        for line in frames(&request).unwrap() {
            input.extend_from_slice(&line);
        }
        let output = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut port = Port {
            input: std::io::Cursor::new(input),
            output: output.clone(),
        };
        let stop = AtomicBool::new(false);
        let mut written_when_delivered = Vec::new();
        let _ended = run_transport(
            &mut port,
            &mut server,
            &stop,
            |event| {
                if matches!(event, Event::Reset(_)) {
                    written_when_delivered.push(output.borrow().len());
                    stop.store(stop_on_reset, Ordering::SeqCst);
                }
            },
            |line| panic!("{line}"),
        );
        let written = output.borrow().clone();
        (written_when_delivered, written)
    }

    #[test]
    fn a_reset_is_answered_only_after_the_service_has_taken_it() {
        let (delivered, written) = run_one_reset(false);
        assert_eq!(delivered, vec![0], "delivered before any answer");
        let mut decoder = FrameDecoder::<PACKET_CAPACITY>::new();
        let message = written
            .iter()
            .find_map(|&b| decoder.feed(b))
            .expect("an answer after the event")
            .unwrap();
        // Write response (op 3), OS group 0, sequence 7, command 5.
        assert_eq!(message[0], 0x0B);
        assert_eq!(&message[4..8], &[0, 0, 7, 5]);
    }

    #[test]
    fn a_reset_the_service_was_stopped_before_taking_is_not_answered() {
        let (delivered, written) = run_one_reset(true);
        assert_eq!(delivered, vec![0]);
        assert!(written.is_empty(), "{written:?}");
    }
}
