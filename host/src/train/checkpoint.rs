//! Checkpoints: a folder with the weights (torchvision names), the optimizer
//! state, and `state.json` (progress, config, spec, history). Written to a
//! temporary folder and renamed, so a crash never leaves half a checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};
use tumorxai_shared::PreprocessSpec;

use super::config::TrainConfig;
use super::optim::Optimizer;
use crate::model::weights;

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub learning_rate: f64,
    pub images_per_second: f64,
    /// Self-supervised runs: spread of the normalised embeddings (collapse
    /// monitor; `val_accuracy` / `val_macro_f1` are then the kNN scores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_spread: Option<f64>,
    /// DINO: the teacher's mean entropy over the epoch (monitor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_entropy: Option<f64>,
    /// DINO: mean KL(teacher‖student) over the epoch (monitor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_student_kl: Option<f64>,
}

/// Where training stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epoch in progress (0-based); equals `epochs` when finished.
    pub epoch: usize,
    /// Batches of `epoch` already taken.
    pub step_in_epoch: usize,
    pub global_step: usize,
    pub optimizer_steps: i64,
    /// Sum of the training loss over the batches of `epoch` taken so far.
    pub epoch_loss_sum: f64,
    pub config: TrainConfig,
    pub spec: PreprocessSpec,
    pub classes: Vec<String>,
    pub history: Vec<EpochLog>,
    /// Fine-tuning a pre-trained backbone (its learning rate is
    /// `lr × backbone_lr_mult`, also after a resume).
    #[serde(default)]
    pub finetuning: bool,
}

impl TrainState {
    /// Books one optimizer step (batch `step_in_epoch` of the epoch); a
    /// non-finite loss ends the run with an error instead.
    pub fn record_step(
        &mut self,
        step_in_epoch: usize,
        loss: f64,
        optimizer_steps: i64,
    ) -> Result<()> {
        if !loss.is_finite() {
            anyhow::bail!(
                "training diverged (loss {loss}) at epoch {} step {step_in_epoch}",
                self.epoch + 1
            );
        }
        self.epoch_loss_sum += loss;
        self.global_step += 1;
        self.step_in_epoch = step_in_epoch + 1;
        self.optimizer_steps = optimizer_steps;
        Ok(())
    }

    /// The shuffled, seeded batches of the current epoch from the next step
    /// on (the last partial batch dropped: BatchNorm never sees a batch of one).
    pub fn training_plan(
        &self,
        augment: Option<crate::data::augment::AugmentConfig>,
        extra_views: Vec<crate::data::loader::ViewSpec>,
    ) -> crate::data::loader::BatchPlan {
        crate::data::loader::BatchPlan {
            batch_size: self.config.optim.batch_size,
            seed: self.config.run.seed,
            epoch: self.epoch,
            shuffle: true,
            drop_last: true,
            augment,
            extra_views,
            start_step: self.step_in_epoch,
        }
    }

    /// The progress bar's message: mean loss of the epoch so far, learning
    /// rate, throughput since `started`.
    pub fn step_message(&self, lr: f64, images: usize, started: std::time::Instant) -> String {
        format!(
            "loss {:.4} lr {lr:.5} {:.0} img/s",
            self.epoch_loss_sum / self.step_in_epoch.max(1) as f64,
            images as f64 / started.elapsed().as_secs_f64().max(1e-9)
        )
    }
}

/// The run's checkpoint folder: `checkpoint/`, or `checkpoint.old/` when a
/// crash came between the two renames of [`save`] (the previous checkpoint,
/// complete and durable).
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let current = out.join("checkpoint");
    let previous = out.join("checkpoint.old");
    if !current.exists() && previous.exists() {
        previous
    } else {
        current
    }
}

/// Fsyncs a file or folder.
fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Writes a checkpoint. The new one is complete and fsynced before the old
/// one is touched, and the old one is only deleted once the new one has its
/// name: `checkpoint.partial/` (written, synced) → old `checkpoint/` renamed
/// to `checkpoint.old/` → `checkpoint.partial/` renamed to `checkpoint/` →
/// `checkpoint.old/` removed. A crash at any point leaves one complete
/// checkpoint that [`checkpoint_dir`] finds.
pub fn save(
    out: &Path,
    vs: &nn::VarStore,
    optimizer: &Optimizer,
    state: &TrainState,
    extra: &[(String, Tensor)],
) -> Result<()> {
    let dir = out.join("checkpoint");
    let old = out.join("checkpoint.old");
    let tmp = out.join("checkpoint.partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    weights::save(vs, &tmp.join("model.safetensors"))?;
    let opt = optimizer.state_tensors();
    if !opt.is_empty() {
        Tensor::write_safetensors(&opt, tmp.join("optimizer.safetensors"))?;
    }
    if !extra.is_empty() {
        Tensor::write_safetensors(extra, tmp.join(EXTRA_FILE))?;
    }
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    for entry in std::fs::read_dir(&tmp)? {
        sync_path(&entry?.path())?;
    }
    sync_path(&tmp)?;
    if dir.exists() {
        if old.exists() {
            // Left by a crash after the new checkpoint got its name.
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(&dir, &old)
            .with_context(|| format!("renaming {} to {}", dir.display(), old.display()))?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    sync_path(out)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Tensors beyond the model and optimizer (an SSL method's target network).
const EXTRA_FILE: &str = "extra.safetensors";

/// The extra tensors of the checkpoint in `out` (empty when it has none).
pub fn load_extra(out: &Path) -> Result<std::collections::HashMap<String, Tensor>> {
    let path = checkpoint_dir(out).join(EXTRA_FILE);
    if !path.exists() {
        return Ok(Default::default());
    }
    Ok(Tensor::read_safetensors(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect())
}

/// Writes the epoch history of a finished run as `history.json`.
pub fn write_history(out: &Path, history: &[EpochLog]) -> Result<()> {
    let path = out.join("history.json");
    std::fs::write(&path, serde_json::to_string_pretty(history)?)
        .with_context(|| format!("writing {}", path.display()))
}

pub fn load_state(out: &Path) -> Result<TrainState> {
    let path = checkpoint_dir(out).join("state.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no checkpoint to resume at {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Loads weights and optimizer state of the checkpoint in `out`.
pub fn restore(
    out: &Path,
    vs: &mut nn::VarStore,
    optimizer: &mut Optimizer,
    state: &TrainState,
) -> Result<()> {
    let dir = checkpoint_dir(out);
    weights::load(
        vs,
        &dir.join("model.safetensors"),
        weights::Strictness::Exact,
    )?;
    let opt_path = dir.join("optimizer.safetensors");
    let tensors = if opt_path.exists() {
        Tensor::read_safetensors(&opt_path)?
    } else {
        Vec::new()
    };
    optimizer.restore(tensors, state.optimizer_steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::OptimSection;

    fn state(epoch: usize) -> TrainState {
        TrainState {
            epoch,
            step_in_epoch: 0,
            global_step: epoch * 10,
            optimizer_steps: 0,
            epoch_loss_sum: 0.0,
            config: TrainConfig::default(),
            spec: PreprocessSpec::with_input_size(32),
            classes: vec!["Glioma T1".into()],
            history: Vec::new(),
            finetuning: false,
        }
    }

    #[test]
    fn a_new_checkpoint_replaces_the_old_one_without_a_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _w = vs.root().zeros("w", &[2]);
        let optimizer = Optimizer::new(&vs, &OptimSection::default(), 1.0);
        save(out, &vs, &optimizer, &state(1), &[]).unwrap();
        save(
            out,
            &vs,
            &optimizer,
            &state(2),
            &[("t".into(), Tensor::from_slice(&[4.0f32]))],
        )
        .unwrap();
        assert_eq!(
            Vec::<f32>::try_from(&load_extra(out).unwrap()["t"]).unwrap(),
            [4.0]
        );
        assert_eq!(load_state(out).unwrap().epoch, 2);
        assert!(!out.join("checkpoint.old").exists());
        assert!(!out.join("checkpoint.partial").exists());
        // A crash between save's two renames: only the previous checkpoint
        // has a name (and a complete new one waits as .partial).
        std::fs::rename(out.join("checkpoint"), out.join("checkpoint.old")).unwrap();
        assert_eq!(load_state(out).unwrap().epoch, 2, "found under .old");
        // The next save recovers the layout.
        save(out, &vs, &optimizer, &state(3), &[]).unwrap();
        assert!(load_extra(out).unwrap().is_empty());
        assert_eq!(load_state(out).unwrap().epoch, 3);
        assert!(!out.join("checkpoint.old").exists());
    }
}

#[cfg(test)]
mod channels_last_tests {
    use super::*;
    use crate::train::config::OptimSection;
    use crate::train::precision::store_channels_last;

    /// CUDA training keeps convolution weights and their optimizer moments
    /// channels-last; a checkpoint must still be writable and read back the
    /// same values (reproduced on the CPU, where the layout works the same).
    #[test]
    fn channels_last_weights_and_moments_round_trip_through_a_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = (vs.root() / "conv").randn("weight", &[4, 3, 3, 3], 0.0, 1.0);
        store_channels_last(&vs);
        assert!(!w.is_contiguous(), "the weight really is channels-last");
        let mut optimizer = Optimizer::new(&vs, &OptimSection::default(), 1.0);
        let loss = (&w * &w).sum(tch::Kind::Float);
        loss.backward();
        optimizer.step(0.1);
        let state = TrainState {
            epoch: 1,
            step_in_epoch: 0,
            global_step: 1,
            optimizer_steps: 1,
            epoch_loss_sum: 0.0,
            config: TrainConfig::default(),
            spec: PreprocessSpec::with_input_size(32),
            classes: Vec::new(),
            history: Vec::new(),
            finetuning: false,
        };
        save(
            tmp.path(),
            &vs,
            &optimizer,
            &state,
            &crate::ssl::prefixed(&vs, "t."),
        )
        .unwrap();
        let saved: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(tmp.path().join("checkpoint/model.safetensors"))
                .unwrap()
                .into_iter()
                .collect();
        assert!(saved["conv.weight"].equal(&w.contiguous()));
        assert!(load_extra(tmp.path()).unwrap()["t.conv.weight"].equal(&w.contiguous()));
        let moments =
            Tensor::read_safetensors(tmp.path().join("checkpoint/optimizer.safetensors")).unwrap();
        assert_eq!(moments.len(), 1);
    }
}
