//! MoCo v3 (Chen, Xie, He 2021): a query encoder (backbone → projector →
//! predictor, BatchNorm in every hidden layer; the projector ends in an
//! affine-free BatchNorm) and a momentum key encoder (EMA of backbone and
//! projector, τ on a cosine from 0.99 to 1). The projector has 2 layers, as
//! the reference code's ResNet variant (its ViT variant uses 3). Loss:
//! InfoNCE of each query against the keys of the other view (the batch's
//! other keys are the negatives), scaled by 2τ and symmetrised:
//! ctr(q₁, k₂) + ctr(q₂, k₁), as the paper's Algorithm 1. τ = 0.2 (the
//! paper's ViT value; its ResNet-50 runs used 1.0: `ssl.temperature`).

use anyhow::Result;
use tch::nn;
use tch::{Kind, Reduction, Tensor};

use super::heads::{at_least_f32, l2_normalize, mlp, Activation, LastNorm};
use super::siamese::Siamese;
use super::views::{asymmetric_pair, ViewRecipe};
use super::{Objective, Progress};
use crate::model::ResNet;
use crate::train::config::TrainConfig;

pub struct MocoV3 {
    pair: Siamese,
    temperature: f64,
}

impl MocoV3 {
    pub fn new(online: &nn::VarStore, config: &TrainConfig) -> Result<MocoV3> {
        let (ssl, embedding) = (&config.ssl, config.model.resnet().embedding_dim());
        let pair = Siamese::new(online, config, |vs| {
            mlp(
                &(vs / "projector"),
                &[embedding, ssl.hidden_dim, ssl.out_dim],
                true,
                LastNorm::BatchNormNoAffine,
                Activation::Relu,
            )
        })?;
        Ok(MocoV3 {
            pair,
            temperature: ssl.temperature,
        })
    }
}

/// ctr(q, k) = CrossEntropy(q̂·k̂ᵀ / τ, [0, 1, …]) · 2τ on L2-normalised rows.
pub fn contrastive(q: &Tensor, k: &Tensor, temperature: f64) -> Tensor {
    // In f32 even inside bf16 autocast: softmaxes over sharp logits.
    tch::autocast(false, || {
        let q = l2_normalize(&at_least_f32(q));
        let k = l2_normalize(&at_least_f32(k)).detach();
        let logits = q.matmul(&k.tr()) / temperature;
        let labels = Tensor::arange(q.size()[0], (Kind::Int64, q.device()));
        logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0)
            * (2.0 * temperature)
    })
}

/// The symmetrised MoCo v3 loss.
pub fn mocov3_loss(q1: &Tensor, q2: &Tensor, k1: &Tensor, k2: &Tensor, temperature: f64) -> Tensor {
    contrastive(q1, k2, temperature) + contrastive(q2, k1, temperature)
}

impl Objective for MocoV3 {
    fn views(&self, input_size: i64) -> ViewRecipe {
        asymmetric_pair(input_size)
    }

    fn loss(&mut self, backbone: &ResNet, views: &[Tensor], _at: Progress) -> Tensor {
        match views {
            [a, b, ..] => mocov3_loss(
                &self.pair.predict(backbone, a),
                &self.pair.predict(backbone, b),
                &self.pair.target(a),
                &self.pair.target(b),
                self.temperature,
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
