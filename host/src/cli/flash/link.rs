//! The serial link of `tumorxai flash` and `tumorxai device`: a port
//! opened with stale input dropped, requests sent with fresh sequence
//! numbers, answers accepted only when they match the request (sequence,
//! group, command, operation), and re-opening after a timeout or a lost
//! port.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tumorxai_shared::smp::client::{
    encode_request, parse_response, ClientRequest, ClientResponse, SlotAnswer,
};
use tumorxai_shared::smp::{frames, FrameDecoder};

use super::{PortArgs, MESSAGE_CAPACITY};

/// One serial link to the device.
pub(super) struct Link {
    pub(super) args: PortArgs,
    port: Box<dyn serialport::SerialPort>,
    decoder: FrameDecoder<{ MESSAGE_CAPACITY + 4 }>,
    sequence: u8,
}

#[derive(Debug)]
pub(super) enum Failure {
    /// No answer in time, or the port failed: worth a retry.
    Link(String),
    /// The device answered with a refusal or nonsense.
    Answer(anyhow::Error),
}

fn open(args: &PortArgs) -> Result<Box<dyn serialport::SerialPort>> {
    let port = serialport::new(&args.port, args.baud)
        .timeout(Duration::from_millis(50))
        .open()
        .with_context(|| {
            format!(
                "opening serial port {} (is it the device's port?)",
                args.port
            )
        })?;
    // Bytes waiting from before (answers to a client that was killed) are
    // not ours. Best effort: those still in flight are told apart by
    // sequence, group and command.
    let _ = port.clear(serialport::ClearBuffer::Input);
    Ok(port)
}

impl Link {
    pub(super) fn open(args: PortArgs) -> Result<Link> {
        let port = open(&args)?;
        Ok(Link {
            args,
            port,
            decoder: FrameDecoder::new(),
            // A random start, so that an earlier client's answers still on
            // the line (it was killed mid-exchange) are unlikely to carry
            // the sequence this one waits for.
            sequence: rand::random(),
        })
    }

    pub(super) fn reopen(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(port) = open(&self.args) {
            self.port = port;
        }
        self.decoder = FrameDecoder::new();
    }

    pub(super) fn exchange(&mut self, request: &ClientRequest) -> Result<ClientResponse, Failure> {
        self.exchange_within(request, Duration::from_millis(self.args.timeout_ms))
    }

    pub(super) fn exchange_within(
        &mut self,
        request: &ClientRequest,
        timeout: Duration,
    ) -> Result<ClientResponse, Failure> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut message = vec![0u8; MESSAGE_CAPACITY];
        let n = encode_request(request, self.sequence, &mut message)
            .map_err(|e| Failure::Answer(e.into()))?;
        let lines =
            frames(message.get(..n).unwrap_or_default()).map_err(|e| Failure::Answer(e.into()))?;
        for line in lines {
            self.port
                .write_all(&line)
                .map_err(|e| Failure::Link(format!("writing: {e}")))?;
        }
        self.port
            .flush()
            .map_err(|e| Failure::Link(format!("writing: {e}")))?;
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 512];
        while Instant::now() < deadline {
            let read = match self.port.read(&mut buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => 0,
                Err(e) => return Err(Failure::Link(format!("reading: {e}"))),
            };
            for &byte in buffer.get(..read).unwrap_or_default() {
                // Damaged packets are dropped: the timeout and a retry
                // recover from them.
                if let Some(Ok(answer)) = self.decoder.feed(byte) {
                    match parse_response(&answer, request, self.sequence) {
                        Ok(Some(response)) => return Ok(response),
                        Ok(None) => {}
                        Err(e) => return Err(Failure::Answer(e.into())),
                    }
                }
            }
        }
        Err(Failure::Link(format!(
            "no answer within {} ms",
            timeout.as_millis()
        )))
    }

    /// `exchange`, retried after link failures (re-opening the port).
    pub(super) fn ask(&mut self, request: &ClientRequest, retries: u32) -> Result<ClientResponse> {
        self.ask_unless_done(request, retries, |_| Ok(false))?
            .context("the device's answer went missing")
    }

    /// `ask`, for a request that must not be repeated once it has taken
    /// effect: after each lost answer (the port re-opened) `done` looks at
    /// the device; when it says the request arrived, no answer is waited
    /// for (`None`).
    pub(super) fn ask_unless_done(
        &mut self,
        request: &ClientRequest,
        retries: u32,
        mut done: impl FnMut(&mut Link) -> Result<bool>,
    ) -> Result<Option<ClientResponse>> {
        let mut failures = 0;
        loop {
            match self.exchange(request) {
                Ok(ClientResponse::Refused { rc, reason }) => {
                    bail!("the device refused: {reason} (MCUmgr error {rc})")
                }
                Ok(response) => return Ok(Some(response)),
                Err(Failure::Answer(e)) => return Err(e),
                Err(Failure::Link(why)) => {
                    failures += 1;
                    if failures > retries {
                        bail!(
                            "no SMP answer from {} ({why}, {failures} tries): is the device's \
                             `serve --serial` running on it, at {} baud?",
                            self.args.port,
                            self.args.baud
                        );
                    }
                    self.reopen();
                    if done(self)? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

pub(super) fn slots(link: &mut Link, retries: u32) -> Result<Vec<SlotAnswer>> {
    let ClientResponse::ImageState { slots } = link.ask(&ClientRequest::ImageState, retries)?
    else {
        bail!("the device's image state answer has no slots");
    };
    Ok(slots.into_iter().collect())
}

pub(super) fn print_slots(link: &mut Link) -> Result<Vec<SlotAnswer>> {
    let slots = slots(link, 3)?;
    println!("slot  version   active  confirmed  pending  sha256");
    for s in &slots {
        println!(
            "{:<5} {:<9} {:<7} {:<10} {:<8} {}",
            s.slot,
            s.version.as_str(),
            s.active,
            s.confirmed,
            s.pending,
            hex::encode(&s.hash)
        );
    }
    Ok(slots)
}
