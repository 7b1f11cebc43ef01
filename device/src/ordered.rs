//! Independent slices triaged in parallel, answered in arrival order.
//!
//! A scanner sends a series at once; each slice is independent, so workers
//! share one optimised plan read-only (tract creates a fresh state per run)
//! and compute in parallel, while everything the outside world sees (answers,
//! audit entries, the panel) happens on the calling thread in the order the
//! inputs came. Memory stays bounded: at most `2 × workers` inputs are taken
//! and not yet consumed, whatever the length of the series or the speed of
//! one slice.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex};

/// A worker panicked on this input (a bug, not an input error): the caller
/// still gets its turn, in order, to answer it as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPanic(pub String);

impl std::fmt::Display for WorkerPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal error while computing: {}", self.0)
    }
}

impl std::error::Error for WorkerPanic {}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// How many inputs may be taken from `inputs` and not yet consumed.
pub fn in_flight_bound(workers: usize) -> usize {
    2 * workers.max(1)
}

/// Draws `inputs` (lazily, on a thread of its own, so it may block or claim
/// files), runs `compute` on up to `workers` of them at once, and hands each
/// input with its result to `consume` on the calling thread in input order.
/// With one worker everything runs on the calling thread.
pub fn map_in_order<I, O, P, C, F>(workers: usize, inputs: P, compute: C, mut consume: F)
where
    P: Iterator<Item = I> + Send,
    I: Send,
    O: Send,
    C: Fn(&I) -> O + Sync,
    F: FnMut(I, Result<O, WorkerPanic>),
{
    let guarded = |input: &I| {
        catch_unwind(AssertUnwindSafe(|| compute(input)))
            .map_err(|payload| WorkerPanic(panic_message(payload.as_ref())))
    };
    if workers <= 1 {
        for input in inputs {
            let output = guarded(&input);
            consume(input, output);
        }
        return;
    }
    // The window: the producer sends a token before each input (blocking
    // while the window is full); the consumer takes one back per result.
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight_bound(workers));
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, I)>(workers);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, I, Result<O, WorkerPanic>)>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (seq, input) in inputs.enumerate() {
                if token_tx.send(()).is_err() || job_tx.send((seq, input)).is_err() {
                    break;
                }
            }
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (job_rx, guarded) = (&job_rx, &guarded);
            scope.spawn(move || loop {
                // The lock is held while waiting: one idle worker waits on
                // the channel, the others on the lock; either way one job
                // goes to one worker.
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => break,
                };
                let Ok((seq, input)) = job else { break };
                let output = guarded(&input);
                if done_tx.send((seq, input, output)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut waiting = BTreeMap::new();
        let mut next = 0usize;
        for (seq, input, output) in done_rx.iter() {
            waiting.insert(seq, (input, output));
            while let Some((input, output)) = waiting.remove(&next) {
                consume(input, output);
                next += 1;
                // Frees the window slot this input held.
                let _ = token_rx.recv();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn results_come_in_input_order_whatever_the_compute_time() {
        for workers in [1, 2, 4] {
            let mut seen = Vec::new();
            // Early inputs are the slowest: they finish last.
            map_in_order(
                workers,
                0..20u64,
                |&i| {
                    std::thread::sleep(Duration::from_millis(20u64.saturating_sub(i)));
                    i * 10
                },
                |i, r| seen.push((i, r.unwrap())),
            );
            let expected: Vec<(u64, u64)> = (0..20).map(|i| (i, i * 10)).collect();
            assert_eq!(seen, expected, "{workers} workers");
        }
    }

    #[test]
    fn inputs_taken_but_not_consumed_stay_within_the_window() {
        let taken = AtomicUsize::new(0);
        let mut most = 0;
        let workers = 3;
        let inputs = (0..50).inspect(|_| {
            taken.fetch_add(1, Ordering::SeqCst);
        });
        let mut consumed = 0;
        map_in_order(
            workers,
            inputs,
            |&i| {
                // Input 0 is slow: everything after it waits for its turn.
                if i == 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                i
            },
            |_, _| {
                consumed += 1;
                most = most.max(taken.load(Ordering::SeqCst) - consumed + 1);
            },
        );
        assert_eq!(consumed, 50);
        // 2 × 3 = 6 slots; the producer may also hold one input it has
        // drawn but not yet been able to send.
        assert!(most <= 6 + 1, "{most} in flight");
    }

    #[test]
    fn workers_run_at_the_same_time() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        map_in_order(
            4,
            0..16,
            |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
            },
            |_, _| {},
        );
        assert!(peak.load(Ordering::SeqCst) >= 2, "no overlap at all");
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn a_panicking_input_is_answered_in_its_turn_and_the_rest_go_on() {
        let mut seen = Vec::new();
        map_in_order(
            2,
            0..6,
            |&i| {
                if i == 2 {
                    panic!("boom on {i}");
                }
                i * 10
            },
            |i, r| seen.push((i, r.map_err(|e| e.0))),
        );
        assert_eq!(
            seen,
            vec![
                (0, Ok(0)),
                (1, Ok(10)),
                (2, Err("boom on 2".to_string())),
                (3, Ok(30)),
                (4, Ok(40)),
                (5, Ok(50))
            ]
        );
    }
}
