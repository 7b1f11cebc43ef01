//! BYOL (Grill et al. 2020): an online network (backbone → projector →
//! predictor) regresses the target network's projection of the other view;
//! the target is an EMA of the online backbone and projector with τ on a
//! cosine from 0.99 to 1. Loss per pair: 2 − 2·cos(p, z′) averaged over the
//! batch, **summed** over both view orders (the paper's symmetrised loss;
//! averaging the two halves the gradient, a known cause of lost accuracy).

use anyhow::Result;
use tch::nn;
use tch::Tensor;

use super::heads::{at_least_f32, l2_normalize, mlp, Activation, LastNorm};
use super::siamese::Siamese;
use super::views::{asymmetric_pair, ViewRecipe};
use super::{Objective, Progress};
use crate::model::ResNet;
use crate::train::config::TrainConfig;

pub struct Byol {
    pair: Siamese,
}

impl Byol {
    pub fn new(online: &nn::VarStore, config: &TrainConfig) -> Result<Byol> {
        let (ssl, embedding) = (&config.ssl, config.model.resnet().embedding_dim());
        let pair = Siamese::new(online, config, |vs| {
            mlp(
                &(vs / "projector"),
                &[embedding, ssl.hidden_dim, ssl.out_dim],
                true,
                LastNorm::None,
                Activation::Relu,
            )
        })?;
        Ok(Byol { pair })
    }
}

/// 2 − 2·cos(p, z) averaged over the rows (z is a constant).
pub fn regression(p: &Tensor, z: &Tensor) -> Tensor {
    // In f32 even inside bf16 autocast: softmaxes over sharp logits.
    tch::autocast(false, || {
        let p = l2_normalize(&at_least_f32(p));
        let z = l2_normalize(&at_least_f32(z)).detach();
        let kind = p.kind();
        let cosine = (p * z).sum_dim_intlist(&[-1i64][..], false, kind);
        2.0 - 2.0 * cosine.mean(kind)
    })
}

/// BYOL's symmetric loss: predictions of view 1 against the target's
/// projection of view 2, plus the other order.
pub fn byol_loss(p1: &Tensor, p2: &Tensor, z1: &Tensor, z2: &Tensor) -> Tensor {
    regression(p1, z2) + regression(p2, z1)
}

impl Objective for Byol {
    fn views(&self, input_size: i64) -> ViewRecipe {
        asymmetric_pair(input_size)
    }

    fn loss(&mut self, backbone: &ResNet, views: &[Tensor], _at: Progress) -> Tensor {
        match views {
            [a, b, ..] => byol_loss(
                &self.pair.predict(backbone, a),
                &self.pair.predict(backbone, b),
                &self.pair.target(a),
                &self.pair.target(b),
            ),
            _ => Tensor::from(f32::NAN),
        }
    }

    fn after_step(&mut self, at: Progress) {
        self.pair.after_step(at);
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.pair.state()
    }

    fn restore(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        self.pair.restore(state)
    }
}
