//! One sending thread per destination: it empties that destination's
//! queue in order over one association at a time, removes each object only
//! after a success response, sets aside what the destination refuses for
//! good, and backs off (1 s doubling to 60 s) while it cannot be reached.
//! It reports every step as a [`SendEvent`] for the service to log and
//! audit; it never sees, and so never logs, a patient identifier.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::destination::Destination;
use super::queue::{Queue, Queued};
use super::scu::Client;

/// What happened to a queued result.
#[derive(Debug, Clone, PartialEq)]
pub enum SendEvent {
    Sent {
        destination: String,
        kind: String,
        uid_hash: String,
        status: u16,
        /// The C-STORE alone, command to response.
        elapsed: Duration,
    },
    /// The destination will not take it: kept in the queue's `failed/`.
    Refused {
        destination: String,
        kind: String,
        uid_hash: String,
        message: String,
    },
    /// The destination is down or the association broke: retried later.
    Unreachable {
        destination: String,
        message: String,
        pending: usize,
        retry_in: Duration,
    },
    /// The queue folder itself failed (a full or read-only disk).
    QueueFailed {
        destination: String,
        message: String,
    },
}

/// Wait before the next attempt after `failures` failed ones in a row.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs((1u64 << exponent).min(60))
}

/// How often an idle sender looks at its queue without being woken.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Starts the sender of `destination`. `wake` nudges it when something was
/// queued; it stops when `stop` is set (within a fraction of a second, or
/// after the C-STORE under way).
pub fn spawn(
    destination: Destination,
    queue: Queue,
    client: Client,
    stop: Arc<AtomicBool>,
    wake: mpsc::Receiver<()>,
    events: mpsc::Sender<SendEvent>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("send {}", destination.queue_key()))
        .spawn(move || run(&destination, &queue, &client, &stop, &wake, &events))
}

fn run(
    destination: &Destination,
    queue: &Queue,
    client: &Client,
    stop: &AtomicBool,
    wake: &mpsc::Receiver<()>,
    events: &mpsc::Sender<SendEvent>,
) {
    let name = destination.to_string();
    let report = |event: SendEvent| {
        // The service is gone only when it is stopping.
        let _ = events.send(event);
    };
    let mut failures = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let pending = match queue.pending() {
            Ok(pending) => pending,
            Err(e) => {
                report(SendEvent::QueueFailed {
                    destination: name.clone(),
                    message: e.to_string(),
                });
                sleep_unless_stopped(Duration::from_secs(5), stop);
                continue;
            }
        };
        if pending.is_empty() {
            let _ = wake.recv_timeout(IDLE_POLL);
            continue;
        }
        let failure = match client.open(destination) {
            Ok(mut session) => {
                match send_batch(&mut session, &pending, queue, &name, stop, &report) {
                    Ok(()) => {
                        session.release();
                        None
                    }
                    Err(Broken::Association(reason)) => {
                        session.abort();
                        Some(reason)
                    }
                    Err(Broken::Queue(reason)) => {
                        session.release();
                        Some(reason)
                    }
                }
            }
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => failures = 0,
            Some(message) => {
                failures = failures.saturating_add(1);
                let retry_in = backoff(failures);
                report(SendEvent::Unreachable {
                    destination: name.clone(),
                    message,
                    pending: queue.pending().map_or(pending.len(), |p| p.len()),
                    retry_in,
                });
                sleep_unless_stopped(retry_in, stop);
            }
        }
    }
}

/// Why a batch stopped early: the rest waits for the next attempt, after
/// the back-off (never at once, which would flood the destination and the
/// log while a disk or a link is broken).
enum Broken {
    /// The association failed or the destination cannot store now: it is
    /// aborted.
    Association(String),
    /// The queue folder failed (reading, removing or setting aside an
    /// object): the association is released.
    Queue(String),
}

/// Sends `pending` in order on one association.
fn send_batch(
    session: &mut super::scu::Session,
    pending: &[Queued],
    queue: &Queue,
    name: &str,
    stop: &AtomicBool,
    report: &impl Fn(SendEvent),
) -> Result<(), Broken> {
    for queued in pending {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let bytes = match std::fs::read(&queued.path) {
            Ok(bytes) => bytes,
            // Replaced meanwhile by a newer copy under the same name, or
            // removed: the next round sees the queue as it is.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let message = format!("reading a queued result: {e}");
                report(SendEvent::QueueFailed {
                    destination: name.to_string(),
                    message: message.clone(),
                });
                return Err(Broken::Queue(message));
            }
        };
        let started = Instant::now();
        match session.store(&bytes) {
            Ok(status) => {
                report(SendEvent::Sent {
                    destination: name.to_string(),
                    kind: queued.kind.clone(),
                    uid_hash: queued.uid_hash.clone(),
                    status,
                    elapsed: started.elapsed(),
                });
                if let Err(e) = queue.remove(queued) {
                    // Sent, but still on disk: it will be sent again, after
                    // the back-off, with the same SOP Instance UID, which
                    // the PACS files as the same instance.
                    let message = e.to_string();
                    report(SendEvent::QueueFailed {
                        destination: name.to_string(),
                        message: message.clone(),
                    });
                    return Err(Broken::Queue(message));
                }
            }
            Err(e) if e.is_transient() => return Err(Broken::Association(e.to_string())),
            Err(e) => {
                let set_aside = queue.set_aside(queued);
                let message = match &set_aside {
                    Ok(_) => e.to_string(),
                    Err(moved) => format!("{e} (and setting it aside failed: {moved})"),
                };
                report(SendEvent::Refused {
                    destination: name.to_string(),
                    kind: queued.kind.clone(),
                    uid_hash: queued.uid_hash.clone(),
                    message: message.clone(),
                });
                if set_aside.is_err() {
                    return Err(Broken::Queue(message));
                }
            }
        }
    }
    Ok(())
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_one_second_and_stops_at_a_minute() {
        let seconds: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
