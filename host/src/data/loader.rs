//! Seeded batches from a [`LoadedSet`], prepared on a prefetch thread while
//! the model trains on the previous one. The epoch order and each batch's
//! augmentation are pure functions of (seed, epoch, step), so an interrupted
//! run resumes exactly without saving any RNG state.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;
use tumorxai_shared::PreprocessSpec;

use super::augment::{self, AugmentConfig};
use super::{normalize, LoadedSet};

/// SplitMix64 of the parts: independent streams per (seed, epoch, step).
pub fn stream_seed(parts: &[u64]) -> u64 {
    let mut z = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        z = z.wrapping_add(p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// Sample order of an epoch: a seeded permutation, or 0..n.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream_seed(&[
            seed,
            epoch as u64,
            0x5348,
        ])));
    }
    order
}

/// Batches per epoch (the last partial batch is dropped when training, so
/// BatchNorm never sees a batch of one).
pub fn steps_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        (n / batch_size).max(1)
    } else {
        n.div_ceil(batch_size)
    }
}

/// One prepared batch.
pub struct Batch {
    pub step: usize,
    /// Normalised inputs `[B, 3, S, S]`; for multi-view batches, the first view.
    pub inputs: Tensor,
    /// Further augmented views of the same images (SSL), one per
    /// [`BatchPlan::extra_views`], each at its own size.
    pub extra_views: Vec<Tensor>,
    pub labels: Tensor,
    pub indices: Vec<i64>,
}

/// What the prefetch thread prepares.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub batch_size: usize,
    pub seed: u64,
    pub epoch: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    /// None: the contract's planes as they are (evaluation).
    pub augment: Option<AugmentConfig>,
    /// Further views of each image (self-supervised pre-training).
    pub extra_views: Vec<ViewSpec>,
    /// First step to produce (resuming mid-epoch).
    pub start_step: usize,
}

/// One extra augmented view: its augmentation and output side in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewSpec {
    pub augment: AugmentConfig,
    pub size: i64,
}

/// Iterator over batches, fed by a background thread two batches ahead.
pub struct Prefetch {
    receiver: Receiver<Batch>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetch {
    pub fn spawn(set: &LoadedSet, spec: &PreprocessSpec, plan: BatchPlan) -> Prefetch {
        let planes = set.planes.shallow_clone();
        let labels = set.labels.shallow_clone();
        let spec = spec.clone();
        let n = set.len();
        let (sender, receiver) = sync_channel::<Batch>(2);
        let worker = std::thread::spawn(move || {
            let _guard = tch::no_grad_guard();
            let order = epoch_order(n, plan.seed, plan.epoch, plan.shuffle);
            let steps = steps_per_epoch(n, plan.batch_size, plan.drop_last);
            for step in plan.start_step..steps {
                let lo = step * plan.batch_size;
                let hi = (lo + plan.batch_size).min(n);
                let indices = order[lo..hi].to_vec();
                let index = Tensor::from_slice(&indices).to_device(planes.device());
                let x = planes.index_select(0, &index);
                let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(&[
                    plan.seed,
                    plan.epoch as u64,
                    step as u64,
                ]));
                let view = |rng: &mut ChaCha8Rng| match &plan.augment {
                    Some(config) => normalize(
                        &augment::apply(&x, &augment::draw(config, indices.len(), rng)),
                        &spec,
                    ),
                    None => normalize(&x, &spec),
                };
                let inputs = view(&mut rng);
                let extra_views = plan
                    .extra_views
                    .iter()
                    .map(|extra| {
                        let d = augment::draw(&extra.augment, indices.len(), &mut rng);
                        normalize(&augment::apply_at_size(&x, &d, extra.size), &spec)
                    })
                    .collect();
                let batch = Batch {
                    step,
                    inputs,
                    extra_views,
                    labels: labels.index_select(0, &index),
                    indices,
                };
                if sender.send(batch).is_err() {
                    return; // the consumer stopped early (e.g. Ctrl-C)
                }
            }
        });
        Prefetch {
            receiver,
            worker: Some(worker),
        }
    }
}

impl Iterator for Prefetch {
    /// A batch, or the prefetch thread's panic as an error (once; then the
    /// iteration ends). A dead worker never passes for a short epoch.
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<anyhow::Result<Batch>> {
        match self.receiver.recv() {
            Ok(batch) => Some(Ok(batch)),
            // Disconnected: the worker returned or died. Tell which.
            Err(_) => match self.worker.take()?.join() {
                Ok(()) => None,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("no message");
                    Some(Err(anyhow::anyhow!(
                        "preparing batches failed (the prefetch thread panicked: {why})"
                    )))
                }
            },
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Unblock the worker by dropping the receiver first, then join it.
        let (_, dead) = sync_channel(1);
        self.receiver = dead;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let a = epoch_order(50, 1, 0, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<i64>>());
        assert_eq!(a, epoch_order(50, 1, 0, true));
        assert_ne!(a, epoch_order(50, 1, 1, true));
        assert_ne!(a, epoch_order(50, 2, 0, true));
        assert_eq!(epoch_order(5, 1, 0, false), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn steps_drop_or_keep_the_last_partial_batch() {
        assert_eq!(steps_per_epoch(10, 4, true), 2);
        assert_eq!(steps_per_epoch(10, 4, false), 3);
        assert_eq!(steps_per_epoch(3, 4, true), 1);
    }

    fn set_of(images: i64, labels: i64) -> LoadedSet {
        LoadedSet {
            classes: vec!["Glioma T1".into()],
            planes: Tensor::zeros([images, 1, 8, 8], (tch::Kind::Float, tch::Device::Cpu)),
            labels: Tensor::zeros([labels], (tch::Kind::Int64, tch::Device::Cpu)),
            paths: vec!["p".into(); images as usize],
            skipped: Vec::new(),
        }
    }

    fn plan() -> BatchPlan {
        BatchPlan {
            batch_size: 2,
            seed: 1,
            epoch: 0,
            shuffle: false,
            drop_last: false,
            augment: None,
            extra_views: Vec::new(),
            start_step: 0,
        }
    }

    #[test]
    fn a_dying_prefetch_thread_is_an_error_not_a_short_epoch() {
        let spec = PreprocessSpec::with_input_size(8);
        let healthy: Vec<_> = Prefetch::spawn(&set_of(4, 4), &spec, plan()).collect();
        assert_eq!(healthy.len(), 2);
        assert!(healthy.iter().all(Result::is_ok));
        // Labels for 2 of 4 images: the second batch's label lookup panics
        // inside the worker (tch panics on an out-of-range index).
        let items: Vec<_> = Prefetch::spawn(&set_of(4, 2), &spec, plan()).collect();
        assert_eq!(items.len(), 2, "one batch, then the error");
        assert!(items[0].is_ok());
        let err = items[1].as_ref().err().expect("the panic must surface");
        assert!(
            err.to_string().contains("prefetch thread panicked"),
            "{err}"
        );
    }
}
