//! The asymmetric online/target pair that BYOL and MoCo v3 share: an online
//! branch (backbone → projector → predictor) and an EMA target of the
//! backbone and projector (no predictor). The methods differ in the
//! projector's last layer and in the loss.

use anyhow::Result;
use std::collections::HashMap;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::ema::Target;
use super::heads::{mlp, Activation, LastNorm, Mlp};
use super::Progress;
use crate::model::ResNet;
use crate::train::config::{parse_device, TrainConfig};

pub struct Siamese {
    projector: Mlp,
    predictor: Mlp,
    target: Target<Mlp>,
}

impl Siamese {
    /// `projector` builds the projector under a root (`root / "projector"`),
    /// once for the online network and once for the target.
    pub fn new(
        online: &nn::VarStore,
        config: &TrainConfig,
        projector: impl Fn(&nn::Path) -> Mlp,
    ) -> Result<Siamese> {
        let ssl = &config.ssl;
        let root = online.root();
        let online_projector = projector(&root);
        // Predictor: out → hidden (BN, ReLU) → out, in both papers.
        let predictor = mlp(
            &(&root / "predictor"),
            &[ssl.out_dim, ssl.hidden_dim, ssl.out_dim],
            true,
            LastNorm::None,
            Activation::Relu,
        );
        let target = Target::new(
            online,
            config.model.resnet(),
            ssl.momentum,
            parse_device(&config.run.device)?,
            projector,
        )?;
        Ok(Siamese {
            projector: online_projector,
            predictor,
            target,
        })
    }

    /// The online prediction for a view.
    pub fn predict(&self, backbone: &ResNet, view: &Tensor) -> Tensor {
        let z = self.projector.forward_t(&backbone.embed(view, true), true);
        self.predictor.forward_t(&z, true)
    }

    /// The target's projection of a view (no gradient).
    pub fn target(&self, view: &Tensor) -> Tensor {
        self.target.forward(view)
    }

    pub fn after_step(&self, at: Progress) {
        self.target.follow(at);
    }

    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.target.state()
    }

    pub fn restore(&self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.target.restore(state)
    }
}
