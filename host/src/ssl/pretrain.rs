//! The one self-supervised training loop: every method's views come from the
//! same seeded prefetcher, its loss from its [`Objective`], and the run
//! writes the same checkpoint as supervised training (plus the method's
//! target network), resumes exactly, stops cleanly on Ctrl-C, and logs the
//! collapse monitor every epoch. The result, `backbone.safetensors`, holds
//! the backbone alone under torchvision's names, ready for `linear-eval`,
//! `finetune` and `knn-eval` (or PyTorch's `load_state_dict(strict=False)`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use tch::{nn, Tensor};
use tumorxai_shared::PreprocessSpec;

use super::monitor::{self, MonitorSets};
use super::{objective, Progress};
use crate::data::loader::{steps_per_epoch, Prefetch};
use crate::data::{self, LoadedSet, Selection};
use crate::model::resnet;
use crate::model::weights;
use crate::split::{Side, SplitFile};
use crate::train::checkpoint::{self, EpochLog, TrainState};
use crate::train::config::{parse_device, TrainConfig};
use crate::train::fit::{epoch_bar, Outcome};
use crate::train::optim::Optimizer;
use crate::train::precision;
use crate::train::schedule::lr_at;

/// Images to pre-train on, and what the collapse monitor embeds.
pub struct PretrainData {
    pub images: LoadedSet,
    pub monitor: MonitorSets,
    pub spec: PreprocessSpec,
}

/// The training side of a split (labels ignored; the validation side feeds
/// the kNN monitor), or, without a split, every image under `data.root`.
pub fn load_data(config: &TrainConfig, progress: &ProgressBar) -> Result<PretrainData> {
    let device = parse_device(&config.run.device)?;
    let spec = PreprocessSpec::with_input_size(config.model.input_size);
    let root = &config.data.root;
    let (images, queries) = if config.data.split.as_os_str().is_empty() {
        (
            data::load_folder(root, &spec, device, || progress.inc(1))?,
            None,
        )
    } else {
        let split = SplitFile::load(&config.data.split)?;
        let images = data::load(
            &split,
            root,
            Selection::Side(Side::Train),
            &spec,
            device,
            || progress.inc(1),
        )?;
        let val = data::load(
            &split,
            root,
            Selection::Side(Side::Val),
            &spec,
            device,
            || progress.inc(1),
        )?;
        (
            images,
            Some(val.sample(config.ssl.monitor_images, config.run.seed)),
        )
    };
    for (path, why) in &images.skipped {
        progress.println(format!("warning: skipped unreadable image {path}: {why}"));
    }
    let memory = images.sample(config.ssl.monitor_images, config.run.seed ^ 0x4D4F4E);
    Ok(PretrainData {
        monitor: MonitorSets { memory, queries },
        images,
        spec,
    })
}

/// The backbone weights a finished pre-training run leaves.
pub fn backbone_weights(out: &Path) -> PathBuf {
    out.join("backbone.safetensors")
}

/// Pre-trains per `config` (`config.ssl.method`). `resume` continues the
/// checkpoint in `run.out`; `interrupt` is polled between steps;
/// `max_steps` stops after that many steps in this call.
pub fn pretrain(
    config: &TrainConfig,
    resume: bool,
    data: &PretrainData,
    interrupt: &AtomicBool,
    max_steps: Option<usize>,
    quiet: bool,
) -> Result<Outcome> {
    let device = parse_device(&config.run.device)?;
    let out = &config.run.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    tch::manual_seed(config.run.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let backbone = resnet(&vs.root(), config.model.resnet(), None);
    let mut method = objective(&vs, config)?;
    let mut optimizer = Optimizer::new(&vs, &config.optim, 1.0);
    let mut state = TrainState {
        epoch: 0,
        step_in_epoch: 0,
        global_step: 0,
        optimizer_steps: 0,
        epoch_loss_sum: 0.0,
        config: config.clone(),
        spec: data.spec.clone(),
        classes: data.images.classes.clone(),
        history: Vec::new(),
        finetuning: false,
    };
    if resume {
        let saved = checkpoint::load_state(out)?;
        if saved.config.model != config.model
            || saved.config.ssl != config.ssl
            || saved.spec != data.spec
        {
            bail!(
                "the checkpoint in {} was pre-trained with another model, method or preprocessing",
                out.display()
            );
        }
        checkpoint::restore(out, &mut vs, &mut optimizer, &saved)?;
        method.restore(&checkpoint::load_extra(out)?)?;
        state = TrainState {
            config: config.clone(),
            ..saved
        };
    }
    if data.images.len() < config.optim.batch_size {
        bail!(
            "{} images are fewer than one batch of {}: lower optim.batch_size",
            data.images.len(),
            config.optim.batch_size
        );
    }
    let cuda = device.is_cuda();
    let mixed = config.run.mixed_precision && cuda;
    let nhwc = config.run.channels_last && cuda;
    if nhwc {
        precision::store_channels_last(&vs);
    }
    let recipe = method
        .views(i64::from(config.model.input_size))
        .adjusted(&config.ssl);
    let steps = steps_per_epoch(data.images.len(), config.optim.batch_size, true);
    let total = steps * config.optim.epochs;
    let warmup = (config.optim.warmup_epochs * steps as f64).round() as usize;
    let classes = data.images.classes.len();
    let mut taken = 0usize;

    while state.epoch < config.optim.epochs {
        let bar = epoch_bar(&state, steps, quiet);
        let plan = state.training_plan(Some(recipe.first), recipe.extra.clone());
        let started = Instant::now();
        let mut images = 0usize;
        let mut lr = 0.0;
        for batch in Prefetch::spawn(&data.images, &data.spec, plan) {
            let batch = batch?;
            let at = Progress {
                step: state.global_step,
                total_steps: total,
                steps_per_epoch: steps,
            };
            lr = method.learning_rate(at).unwrap_or_else(|| {
                lr_at(
                    at.step,
                    total,
                    warmup,
                    config.optim.lr,
                    config.optim.final_lr_fraction,
                )
            });
            let mut views = vec![batch.inputs.shallow_clone()];
            views.extend(batch.extra_views.iter().map(Tensor::shallow_clone));
            if nhwc {
                views = views.iter().map(precision::channels_last).collect();
            }
            let loss =
                precision::autocast_bf16(mixed, device, || method.loss(&backbone, &views, at));
            optimizer.zero_grad();
            loss.backward();
            method.before_step(at);
            optimizer.set_weight_decay(method.weight_decay(config.optim.weight_decay, at));
            optimizer.step(lr);
            method.after_step(at);
            state.record_step(batch.step, loss.double_value(&[]), optimizer.steps_taken)?;
            images += batch.indices.len();
            taken += 1;
            bar.set_position(state.step_in_epoch as u64);
            bar.set_message(state.step_message(lr, images, started));
            if interrupt.load(Ordering::SeqCst) || max_steps.is_some_and(|m| taken >= m) {
                bar.abandon();
                checkpoint::save(out, &vs, &optimizer, &state, &method.state())?;
                return Ok(Outcome::Interrupted(state));
            }
        }
        bar.finish_and_clear();
        // The backbone that is handed on is the one monitored (DINO: the
        // teacher, not the student).
        let monitored = method.monitor_backbone().unwrap_or(&backbone);
        let health = monitor::measure(monitored, &data.monitor, &data.spec, config.ssl.knn_k)?;
        let distribution = method.take_distribution();
        let log = EpochLog {
            epoch: state.epoch + 1,
            train_loss: state.epoch_loss_sum / steps as f64,
            val_accuracy: health.knn_accuracy.unwrap_or(0.0),
            val_macro_f1: 0.0,
            learning_rate: lr,
            images_per_second: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
            embedding_spread: Some(health.embedding_spread),
            teacher_entropy: distribution.map(|d| d.entropy),
            teacher_student_kl: distribution.map(|d| d.kl_teacher_student),
        };
        if !quiet {
            let knn = health
                .knn_accuracy
                .map(|a| format!(", kNN accuracy {a:.3}"))
                .unwrap_or_default();
            let teacher = distribution
                .map(|d| {
                    format!(
                        ", teacher entropy {:.3} (ln K {:.3}), KL(teacher‖student) {:.4}",
                        d.entropy,
                        (d.prototypes.max(1) as f64).ln(),
                        d.kl_teacher_student
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "epoch {}/{}: loss {:.4}, embedding spread {:.3}{knn}{teacher}, {:.0} img/s",
                log.epoch,
                config.optim.epochs,
                log.train_loss,
                health.embedding_spread,
                log.images_per_second
            );
        }
        let best_knn = state
            .history
            .iter()
            .filter(|h| h.embedding_spread.is_some())
            .map(|h| h.val_accuracy)
            .chain(health.knn_accuracy)
            .reduce(f64::max);
        if let Some(warning) = monitor::verdict(&health, best_knn, classes) {
            eprintln!("warning: {warning}");
        }
        let lowest_entropy = state
            .history
            .iter()
            .filter_map(|h| h.teacher_entropy)
            .reduce(f64::min);
        if let Some(warning) =
            distribution.and_then(|d| monitor::learning_verdict(&d, log.epoch, lowest_entropy))
        {
            eprintln!("warning: {warning}");
        }
        state.history.push(log);
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        checkpoint::save(out, &vs, &optimizer, &state, &method.state())?;
    }
    checkpoint::write_history(out, &state.history)?;
    // Last: its presence marks a finished pre-training (the experiment
    // reuses it), so it appears whole or not at all.
    let named = match method.evaluation_backbone() {
        Some(teacher) => teacher,
        None => backbone_tensors(&vs),
    };
    let path = backbone_weights(out);
    let partial = path.with_extension("partial");
    weights::write(&named, &partial)?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", partial.display()))?;
    std::fs::rename(&partial, &path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    Ok(Outcome::Finished(state))
}

/// The backbone's variables of a store holding backbone and heads
/// (torchvision names, with torchvision's BatchNorm counters).
pub fn backbone_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let heads = ["projector.", "predictor.", "head."];
    weights::named_tensors(vs)
        .into_iter()
        .filter(|(name, _)| !heads.iter().any(|h| name.starts_with(h)))
        .collect()
}
