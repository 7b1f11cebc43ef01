//! Self-supervised pre-training of the ResNet backbone: SimCLR, BYOL, DINO
//! and MoCo v3 behind one [`Objective`] trait, trained by one loop
//! ([`pretrain`]) with one augmentation pipeline and one checkpoint format.
//! A method is one file: its heads, its loss, its views and its per-step
//! update; adding a fifth means adding a file and a [`Method`] variant.

pub mod byol;
pub mod config;
pub mod dino;
pub mod dino_schedule;
pub mod ema;
pub mod heads;
pub mod mocov3;
pub mod monitor;
pub mod pretrain;
pub mod siamese;
pub mod simclr;
pub mod views;

use std::collections::HashMap;

use anyhow::Result;
use tch::nn;
use tch::Tensor;

pub use config::{Method, SslSection};
pub use views::ViewRecipe;

use crate::model::ResNet;
use crate::train::config::TrainConfig;
use crate::train::optim::cpu_contiguous;

/// Where training stands, for schedules inside a method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Optimizer steps taken before this one (0-based index of this step).
    pub step: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
}

/// One self-supervised method.
pub trait Objective {
    /// The augmented views each image contributes per step.
    fn views(&self, input_size: i64) -> ViewRecipe;
    /// The loss of one batch; `views[0]` and `views[1]` are the global views,
    /// any further ones local crops. The online backbone runs in training mode.
    fn loss(&mut self, backbone: &ResNet, views: &[Tensor], at: Progress) -> Tensor;
    /// The learning rate of this step when the method has its own schedule
    /// (DINO's reference `cosine_scheduler`); `None`: the shared `lr_at`.
    fn learning_rate(&self, _at: Progress) -> Option<f64> {
        None
    }
    /// Between the backward pass and the optimizer step: the method's
    /// gradient safeguards (DINO clips them).
    fn before_step(&mut self, _at: Progress) {}
    /// After the optimizer step: the EMA target follows the online network.
    fn after_step(&mut self, _at: Progress) {}
    /// Weight decay for this step (DINO ramps it); `base` is the configured one.
    fn weight_decay(&self, base: f64, _at: Progress) -> f64 {
        base
    }
    /// State beyond the online variables (target network, centre), for the
    /// checkpoint.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// The backbone to evaluate and hand on, when it is not the online one
    /// (DINO evaluates its teacher).
    fn evaluation_backbone(&self) -> Option<Vec<(String, Tensor)>> {
        None
    }
    /// The backbone the collapse monitor embeds, when it is not the online
    /// one: the one handed on (DINO's teacher).
    fn monitor_backbone(&self) -> Option<&ResNet> {
        None
    }
    /// The teacher's output distribution since the last call (DINO), for
    /// the monitor: averaged over the steps, then reset.
    fn take_distribution(&mut self) -> Option<monitor::TeacherDistribution> {
        None
    }
    /// Restores what [`Objective::state`] saved.
    fn restore(&mut self, _state: &HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}

/// Builds the method's heads under `online` (which must already hold the
/// backbone) and its target network, if any.
pub fn objective(online: &nn::VarStore, config: &TrainConfig) -> Result<Box<dyn Objective>> {
    let embedding = config.model.resnet().embedding_dim();
    Ok(match config.ssl.method {
        Method::Simclr => Box::new(simclr::SimClr::new(&online.root(), embedding, &config.ssl)),
        Method::Byol => Box::new(byol::Byol::new(online, config)?),
        Method::Dino => Box::new(dino::Dino::new(online, config)?),
        Method::Mocov3 => Box::new(mocov3::MocoV3::new(online, config)?),
    })
}

/// Copies saved tensors into the variables of `store` with the same name
/// after `prefix`; every variable must be present.
pub fn restore_prefixed(
    store: &nn::VarStore,
    prefix: &str,
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    for (name, mut var) in store.variables() {
        let key = format!("{prefix}{name}");
        let Some(saved) = state.get(&key) else {
            anyhow::bail!("the checkpoint has no {key}");
        };
        if saved.size() != var.size() {
            anyhow::bail!(
                "{key}: shape {:?} in the checkpoint, {:?} in the model",
                saved.size(),
                var.size()
            );
        }
        tch::no_grad(|| var.copy_(saved));
    }
    Ok(())
}

/// The variables of `store` as checkpoint tensors named `prefix` + name.
pub fn prefixed(store: &nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = store
        .variables()
        .into_iter()
        .map(|(name, t)| (format!("{prefix}{name}"), cpu_contiguous(&t.detach())))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}
