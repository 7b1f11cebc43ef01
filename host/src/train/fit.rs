//! The supervised training loop (from scratch, or fine-tuning a pre-trained
//! backbone with a learning-rate multiplier): flat, seeded, checkpointed every
//! epoch, resumable exactly, and interruptible (Ctrl-C writes a checkpoint).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};
use tumorxai_shared::PreprocessSpec;

use super::checkpoint::{self, EpochLog, TrainState};
use super::config::{parse_device, TrainConfig};
use super::evaluate::{predict, EvaluationSet};
use super::optim::Optimizer;
use super::precision;
use super::schedule::lr_at;
use crate::data::augment::AugmentConfig;
use crate::data::loader::{steps_per_epoch, Prefetch};
use crate::data::{self, LoadedSet, Selection};
use crate::metrics;
use crate::model::weights::{self, Strictness};
use crate::model::{resnet, ResNet};
use crate::split::{Side, SplitFile};

/// How the run starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Random initialisation (torchvision's).
    Scratch,
    /// Backbone weights from a safetensors file; `fc` is new.
    Finetune(PathBuf),
    /// Continue the checkpoint in the output folder.
    Resume,
}

/// Why `fit` returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(TrainState),
    /// Stopped early (Ctrl-C or a step limit); the checkpoint holds the progress.
    Interrupted(TrainState),
}

/// Loaded data for a run.
pub struct RunData {
    pub train: LoadedSet,
    pub val: LoadedSet,
    pub spec: PreprocessSpec,
}

pub fn load_data(config: &TrainConfig, device: Device, progress: &ProgressBar) -> Result<RunData> {
    let split = SplitFile::load(&config.data.split)?;
    let spec = PreprocessSpec::with_input_size(config.model.input_size);
    let selection = config.train_selection();
    let train = data::load(&split, &config.data.root, selection, &spec, device, || {
        progress.inc(1)
    })?;
    let val = data::load(
        &split,
        &config.data.root,
        Selection::Side(Side::Val),
        &spec,
        device,
        || progress.inc(1),
    )?;
    for (path, why) in train.skipped.iter().chain(&val.skipped) {
        progress.println(format!("warning: skipped unreadable image {path}: {why}"));
    }
    Ok(RunData { train, val, spec })
}

/// Inverse-frequency class weights `N / (K · n_c)` (0 for absent classes).
pub fn class_weights(counts: &[usize]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                n as f32 / (present as f32 * c as f32)
            }
        })
        .collect()
}

/// The progress bar of the epoch `state` is in (hidden when `quiet`),
/// positioned at the steps already taken.
pub(crate) fn epoch_bar(state: &TrainState, steps: usize, quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps as u64)
    };
    bar.set_style(progress_style());
    bar.set_prefix(format!("{}/{}", state.epoch + 1, state.config.optim.epochs));
    bar.set_position(state.step_in_epoch as u64);
    bar
}

/// The per-epoch progress bar of every training loop.
fn progress_style() -> ProgressStyle {
    ProgressStyle::with_template("epoch {prefix} [{bar:25}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Trains per `config`. `interrupt` is polled between steps; `max_steps`
/// stops after that many optimizer steps in this call (tests, smoke runs).
pub fn fit(
    config: &TrainConfig,
    start: Start,
    data: &RunData,
    interrupt: &AtomicBool,
    max_steps: Option<usize>,
    quiet: bool,
) -> Result<Outcome> {
    let device = parse_device(&config.run.device)?;
    let out = &config.run.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    tch::manual_seed(config.run.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let classes = data.train.classes.len() as i64;
    let model = resnet(&vs.root(), config.model.resnet(), Some(classes));
    let finetuning = match &start {
        Start::Finetune(_) => true,
        Start::Scratch => false,
        Start::Resume => checkpoint::load_state(out)?.finetuning,
    };
    let backbone_mult = if finetuning {
        config.optim.backbone_lr_mult
    } else {
        1.0
    };
    let cuda = device.is_cuda();
    let mixed = config.run.mixed_precision && cuda;
    let nhwc = config.run.channels_last && cuda;
    let mut optimizer = Optimizer::new(&vs, &config.optim, backbone_mult);
    let mut state = TrainState {
        epoch: 0,
        step_in_epoch: 0,
        global_step: 0,
        optimizer_steps: 0,
        epoch_loss_sum: 0.0,
        config: config.clone(),
        spec: data.spec.clone(),
        classes: data.train.classes.clone(),
        history: Vec::new(),
        finetuning,
    };
    match &start {
        Start::Scratch => {}
        Start::Finetune(backbone) => {
            let loaded = weights::load(&mut vs, backbone, Strictness::Partial)?;
            if !loaded.iter().any(|n| n.starts_with("layer4.")) {
                bail!(
                    "{} holds no ResNet backbone of this architecture",
                    backbone.display()
                );
            }
        }
        Start::Resume => {
            let saved = checkpoint::load_state(out)?;
            if saved.config.model != config.model || saved.spec != data.spec {
                bail!(
                    "the checkpoint in {} was trained with another model or preprocessing",
                    out.display()
                );
            }
            checkpoint::restore(out, &mut vs, &mut optimizer, &saved)?;
            state = TrainState {
                config: config.clone(),
                ..saved
            };
        }
    }

    if nhwc {
        precision::store_channels_last(&vs);
    }
    let weights_tensor = config
        .optim
        .class_balanced
        .then(|| Tensor::from_slice(&class_weights(&data.train.class_counts())).to_device(device));
    let steps = steps_per_epoch(data.train.len(), config.optim.batch_size, true);
    let total = steps * config.optim.epochs;
    let warmup = (config.optim.warmup_epochs * steps as f64).round() as usize;
    let mut taken = 0usize;

    while state.epoch < config.optim.epochs {
        let bar = epoch_bar(&state, steps, quiet);
        let plan = state.training_plan(
            config
                .run
                .augment
                .then(|| AugmentConfig::supervised().with_domain(config.run.domain_randomisation)),
            Vec::new(),
        );
        let started = Instant::now();
        let mut images = 0usize;
        let mut lr = 0.0;
        for batch in Prefetch::spawn(&data.train, &data.spec, plan) {
            let batch = batch?;
            lr = lr_at(
                state.global_step,
                total,
                warmup,
                config.optim.lr,
                config.optim.final_lr_fraction,
            );
            let inputs = if nhwc {
                precision::channels_last(&batch.inputs)
            } else {
                batch.inputs.shallow_clone()
            };
            let logits = precision::autocast_bf16(mixed, device, || model.forward_t(&inputs, true));
            let loss = logits.to_kind(Kind::Float).cross_entropy_loss(
                &batch.labels,
                weights_tensor.as_ref(),
                Reduction::Mean,
                -100,
                config.optim.label_smoothing,
            );
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(lr);
            state.record_step(batch.step, loss.double_value(&[]), optimizer.steps_taken)?;
            images += batch.indices.len();
            taken += 1;
            bar.set_position(state.step_in_epoch as u64);
            bar.set_message(state.step_message(lr, images, started));
            if interrupt.load(Ordering::SeqCst) || max_steps.is_some_and(|m| taken >= m) {
                bar.abandon();
                checkpoint::save(out, &vs, &optimizer, &state, &[])?;
                return Ok(Outcome::Interrupted(state));
            }
        }
        bar.finish_and_clear();
        let val = evaluate_set(&model, &data.val, &data.spec, config.optim.batch_size)?;
        let log = EpochLog {
            epoch: state.epoch + 1,
            train_loss: state.epoch_loss_sum / steps as f64,
            val_accuracy: val.accuracy,
            val_macro_f1: val.macro_f1,
            learning_rate: lr,
            images_per_second: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
            embedding_spread: None,
            teacher_entropy: None,
            teacher_student_kl: None,
        };
        if !quiet {
            eprintln!(
                "epoch {}/{}: loss {:.4}, val accuracy {:.3}, val macro-F1 {:.3}, {:.0} img/s",
                log.epoch,
                config.optim.epochs,
                log.train_loss,
                log.val_accuracy,
                log.val_macro_f1,
                log.images_per_second
            );
        }
        state.history.push(log);
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        checkpoint::save(out, &vs, &optimizer, &state, &[])?;
    }
    weights::save(&vs, &out.join("model.safetensors"))?;
    Ok(Outcome::Finished(state))
}

fn evaluate_set(
    model: &ResNet,
    set: &LoadedSet,
    spec: &PreprocessSpec,
    batch: usize,
) -> Result<metrics::Report> {
    let logits = predict(model, &EvaluationSet { set, spec }, batch)?;
    Ok(metrics::report(
        &logits,
        &set.label_vec(),
        set.classes.len(),
        1.0,
    ))
}

/// Mean cross-entropy of a model on a set (used by tests and reports).
pub fn mean_loss(model: &ResNet, set: &LoadedSet, spec: &PreprocessSpec) -> Result<f64> {
    let logits = predict(model, &EvaluationSet { set, spec }, 64)?;
    let rows: Vec<f32> = logits.iter().flatten().copied().collect();
    let t = Tensor::from_slice(&rows).reshape([logits.len() as i64, -1]);
    let labels = set.labels.to_device(Device::Cpu);
    Ok(t.cross_entropy_for_logits(&labels)
        .to_kind(Kind::Double)
        .double_value(&[]))
}

/// Path of the final weights of a run.
pub fn final_weights(out: &Path) -> PathBuf {
    out.join("model.safetensors")
}
