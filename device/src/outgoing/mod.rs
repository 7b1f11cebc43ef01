//! Store-and-forward of DICOM results to the hospital's nodes
//! (`serve --send-to`): each destination has its own on-disk queue
//! ([`queue`]) and its own sending thread ([`sender`]) speaking C-STORE as
//! an SCU ([`scu`]), plain or over DICOM TLS. A result is queued, fsynced,
//! before the slice's answer is committed, and leaves its queue only after
//! the destination's success response: nothing is lost across restarts,
//! and a resend keeps its SOP Instance UID.

pub mod destination;
pub mod queue;
pub mod scu;
pub mod sender;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

pub use destination::Destination;
pub use queue::{Queue, QueueError, Queued};
pub use scu::Client;
pub use sender::SendEvent;

use crate::results::ResultObject;

/// One destination with its queue and the nudge for its sender.
struct Route {
    destination: Destination,
    queue: Queue,
    wake: mpsc::Sender<()>,
}

/// The sending side of the service: every destination's queue and sender.
pub struct Outgoing {
    routes: Vec<Route>,
    events: mpsc::Receiver<SendEvent>,
    senders: Vec<std::thread::JoinHandle<()>>,
}

/// What queuing one object for one destination came to.
#[derive(Debug)]
pub struct Enqueued {
    pub destination: String,
    pub outcome: Result<Queued, QueueError>,
}

impl Outgoing {
    /// Starts one sender per destination; queues live in
    /// `root/<destination key>/`, each bounded to `max_bytes`. What earlier
    /// runs left queued is sent first.
    pub fn start(
        destinations: &[Destination],
        root: &Path,
        max_bytes: u64,
        client: &Client,
        stop: &Arc<AtomicBool>,
    ) -> std::io::Result<Outgoing> {
        let (events_tx, events) = mpsc::channel();
        let mut routes = Vec::with_capacity(destinations.len());
        let mut senders = Vec::with_capacity(destinations.len());
        for destination in destinations {
            let queue = Queue::new(root.join(destination.queue_key()), max_bytes);
            let (wake, woken) = mpsc::channel();
            senders.push(sender::spawn(
                destination.clone(),
                queue.clone(),
                client.clone(),
                Arc::clone(stop),
                woken,
                events_tx.clone(),
            )?);
            routes.push(Route {
                destination: destination.clone(),
                queue,
                wake,
            });
        }
        Ok(Outgoing {
            routes,
            events,
            senders,
        })
    }

    /// Queues `objects` for every destination (fsynced when this returns)
    /// and wakes the senders.
    pub fn enqueue(&self, objects: &[ResultObject]) -> Vec<Enqueued> {
        let mut done = Vec::with_capacity(objects.len() * self.routes.len());
        for route in &self.routes {
            for object in objects {
                done.push(Enqueued {
                    destination: route.destination.to_string(),
                    outcome: route.queue.enqueue(object),
                });
            }
            let _ = route.wake.send(());
        }
        done
    }

    /// The senders' reports since the last call.
    pub fn events(&self) -> Vec<SendEvent> {
        self.events.try_iter().collect()
    }

    /// Waits for the senders to stop (after `stop` was set: each ends
    /// within a fraction of a second, or after the C-STORE under way) and
    /// returns their last reports.
    pub fn finish(self) -> Vec<SendEvent> {
        for sender in self.senders {
            // A sender that panicked has nothing more to report.
            let _ = sender.join();
        }
        self.events.try_iter().collect()
    }

    /// Objects waiting, per destination.
    pub fn backlog(&self) -> Vec<(String, usize)> {
        self.routes
            .iter()
            .map(|r| {
                let waiting = r.queue.pending().map_or(0, |p| p.len());
                (r.destination.to_string(), waiting)
            })
            .collect()
    }
}
