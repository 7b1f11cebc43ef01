//! The exponential-moving-average target of BYOL, MoCo v3 and DINO: a
//! second copy of the online network (in its own variable store, so the
//! optimizer never sees it) whose parameters follow
//! `target ← τ·target + (1 − τ)·online` after every optimizer step, under
//! no-grad. BatchNorm running statistics are not averaged: the target keeps
//! the ones its own forward passes (in training mode, as in the reference
//! implementations) accumulate.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

use super::Progress;
use crate::model::{resnet, ResNet, ResNetConfig};
use crate::train::schedule::cosine_ramp;

/// A target network: a backbone and a head mirroring the online ones
/// (same names), updated only by the EMA with τ on a cosine from `base` to 1.
pub struct Target<H> {
    store: nn::VarStore,
    backbone: ResNet,
    head: H,
    ema: Ema,
    base_momentum: f64,
}

impl<H: ModuleT> Target<H> {
    /// `head` builds the head under the target's root exactly as the online
    /// head was built under the online root.
    pub fn new(
        online: &nn::VarStore,
        backbone: ResNetConfig,
        base_momentum: f64,
        device: Device,
        head: impl FnOnce(&nn::Path) -> H,
    ) -> Result<Target<H>> {
        let mut store = nn::VarStore::new(device);
        let root = store.root();
        let backbone = resnet(&root, backbone, None);
        let head = head(&root);
        let ema = Ema::new(online, &mut store)?;
        Ok(Target {
            store,
            backbone,
            head,
            ema,
            base_momentum,
        })
    }

    /// Head output for a batch, without gradients. The target runs in
    /// training mode (batch statistics), as in the reference code.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        tch::no_grad(|| self.head.forward_t(&self.backbone.embed(xs, true), true))
    }

    /// τ at this step: 1 − (1 − base)(cos(πk/K) + 1)/2.
    pub fn momentum(&self, at: Progress) -> f64 {
        cosine_ramp(at.step, at.total_steps, self.base_momentum, 1.0)
    }

    /// The EMA step after an optimizer step.
    pub fn follow(&self, at: Progress) {
        self.ema.update(self.momentum(at));
    }

    /// The EMA step with a momentum the method computed (DINO's depends on
    /// the run's length).
    pub fn follow_with(&self, tau: f64) {
        self.ema.update(tau);
    }

    pub fn state(&self) -> Vec<(String, Tensor)> {
        super::prefixed(&self.store, "target.")
    }

    /// The target's backbone alone, torchvision names.
    /// The target's backbone itself (what the collapse monitor embeds when
    /// the target is what is handed on).
    pub fn backbone_module(&self) -> &ResNet {
        &self.backbone
    }

    pub fn backbone(&self) -> Vec<(String, Tensor)> {
        super::pretrain::backbone_tensors(&self.store)
    }

    pub fn restore(&self, state: &HashMap<String, Tensor>) -> Result<()> {
        super::restore_prefixed(&self.store, "target.", state)
    }
}

/// Pairs of (online, target) trainable parameters with the same name.
pub struct Ema {
    pairs: Vec<(String, Tensor, Tensor)>,
}

impl Ema {
    /// Pairs every trainable variable of `target` with the online variable
    /// of the same name, copies the online values (and buffers) into the
    /// target, so it starts equal to the online network, and freezes it.
    pub fn new(online: &nn::VarStore, target: &mut nn::VarStore) -> Result<Ema> {
        target
            .copy(online)
            .context("the target network does not mirror the online one")?;
        let online_vars = online.variables();
        let mut pairs = Vec::new();
        for (name, target_tensor) in target.trainable_variables_named() {
            let Some(online_tensor) = online_vars.get(&name) else {
                bail!("the online network has no variable {name}");
            };
            pairs.push((name, online_tensor.shallow_clone(), target_tensor));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        // The target learns only through the EMA: no gradients, no graph.
        target.freeze();
        Ok(Ema { pairs })
    }

    /// One EMA step with momentum `tau` (1 = frozen target, 0 = copy).
    pub fn update(&self, tau: f64) {
        tch::no_grad(|| {
            for (_, online, target) in &self.pairs {
                let mut target = target.shallow_clone();
                let _ = target.g_mul_scalar_(tau);
                let _ = target.g_add_(&(online * (1.0 - tau)));
            }
        });
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Trainable variables of a store with their names (tch keeps names only in
/// `variables()`, which also holds buffers).
trait NamedTrainable {
    fn trainable_variables_named(&self) -> Vec<(String, Tensor)>;
}

impl NamedTrainable for nn::VarStore {
    fn trainable_variables_named(&self) -> Vec<(String, Tensor)> {
        self.variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;
    use tch::{Device, Kind};

    #[test]
    fn the_target_starts_equal_then_lags_by_tau() {
        let online = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(online.root() / "fc", 3, 2, Default::default());
        let mut target = nn::VarStore::new(Device::Cpu);
        let target_lin = nn::linear(target.root() / "fc", 3, 2, Default::default());
        let ema = Ema::new(&online, &mut target).unwrap();
        assert_eq!(ema.len(), 2);
        let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let diff = (lin.forward_t(&x, false) - target_lin.forward_t(&x, false))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(diff, 0.0, "starts as a copy");
        // Online weight moves from w0 to w0 + 1; with τ = 0.9 the target
        // moves a tenth of the way: w0 + 0.1 (hand-computed).
        let w0 = lin.ws.copy();
        tch::no_grad(|| {
            let _ = lin.ws.shallow_clone().g_add_scalar_(1.0);
        });
        ema.update(0.9);
        let moved = (&target_lin.ws - &w0 - 0.1).abs().max().double_value(&[]);
        assert!(moved < 1e-6, "{moved}");
        // A second step: 0.9·(w0 + 0.1) + 0.1·(w0 + 1) = w0 + 0.19.
        ema.update(0.9);
        let moved = (&target_lin.ws - &w0 - 0.19).abs().max().double_value(&[]);
        assert!(moved < 1e-6, "{moved}");
        // τ = 1 freezes it; no gradient is recorded on either side.
        let before = target_lin.ws.copy();
        ema.update(1.0);
        assert_eq!((&target_lin.ws - before).abs().max().double_value(&[]), 0.0);
        assert!(!target_lin.ws.requires_grad(), "the target is frozen");
    }
}
