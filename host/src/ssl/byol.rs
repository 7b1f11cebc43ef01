//! BYOL (Grill et al. 2020): an online network (backbone → projector →
//! predictor) regresses the target network's projection of the other view;
//! the target is an EMA of the online backbone and projector with τ on a
//! cosine from 0.99 to 1. Loss per pair: 2 − 2·cos(p, z′) averaged over the
//! batch, **summed** over both view orders (the paper's symmetrised loss;
//! averaging the two halves the gradient, a known cause of lost accuracy).

use anyhow::Result;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::ema::Target;
use super::heads::{at_least_f32, l2_normalize, mlp, Activation, LastNorm, Mlp};
use super::views::{asymmetric_pair, ViewRecipe};
use super::{Objective, Progress};
use crate::model::ResNet;
use crate::train::config::{parse_device, TrainConfig};

pub struct Byol {
    projector: Mlp,
    predictor: Mlp,
    target: Target<Mlp>,
}

fn projector(vs: &nn::Path, embedding: i64, hidden: i64, out: i64) -> Mlp {
    mlp(
        &(vs / "projector"),
        &[embedding, hidden, out],
        true,
        LastNorm::None,
        Activation::Relu,
    )
}

impl Byol {
    pub fn new(online: &nn::VarStore, config: &TrainConfig) -> Result<Byol> {
        let ssl = &config.ssl;
        let embedding = config.model.resnet().embedding_dim();
        let root = online.root();
        let projector_online = projector(&root, embedding, ssl.hidden_dim, ssl.out_dim);
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
            |vs| projector(vs, embedding, ssl.hidden_dim, ssl.out_dim),
        )?;
        Ok(Byol {
            projector: projector_online,
            predictor,
            target,
        })
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
        let predict = |v: &Tensor| {
            let z = self.projector.forward_t(&backbone.embed(v, true), true);
            self.predictor.forward_t(&z, true)
        };
        match views {
            [a, b, ..] => byol_loss(
                &predict(a),
                &predict(b),
                &self.target.forward(a),
                &self.target.forward(b),
            ),
            _ => Tensor::from(f32::NAN),
        }
    }

    fn after_step(&mut self, at: Progress) {
        self.target.follow(at);
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.target.state()
    }

    fn restore(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        self.target.restore(state)
    }
}
