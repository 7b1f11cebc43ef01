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
}

pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

pub fn save(
    out: &Path,
    vs: &nn::VarStore,
    optimizer: &Optimizer,
    state: &TrainState,
) -> Result<()> {
    let dir = checkpoint_dir(out);
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
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(())
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
