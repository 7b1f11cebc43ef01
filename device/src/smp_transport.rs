//! Carrying SMP over a serial port: [`run_transport`] feeds the bytes read
//! to the shared frame decoder, hands each request to the
//! [`SmpServer`], writes its response in console framing and passes what
//! happened to the service; [`newest_progress_only`] thins a batch of
//! those events for the panel.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tumorxai_shared::smp::{frames, FrameDecoder};

use crate::smp_server::{Event, SmpServer, BUF_SIZE, PACKET_CAPACITY};

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
    use crate::forms::ExecutionForm;
    use crate::state::StateDir;

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
