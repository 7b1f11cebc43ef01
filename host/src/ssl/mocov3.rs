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
use tch::nn::{self, ModuleT};
use tch::{Kind, Reduction, Tensor};

use super::ema::Target;
use super::heads::{at_least_f32, l2_normalize, mlp, Activation, LastNorm, Mlp};
use super::views::{asymmetric_pair, ViewRecipe};
use super::{Objective, Progress};
use crate::model::ResNet;
use crate::train::config::{parse_device, TrainConfig};

pub struct MocoV3 {
    projector: Mlp,
    predictor: Mlp,
    target: Target<Mlp>,
    temperature: f64,
}

fn projector(vs: &nn::Path, embedding: i64, hidden: i64, out: i64) -> Mlp {
    mlp(
        &(vs / "projector"),
        &[embedding, hidden, out],
        true,
        LastNorm::BatchNormNoAffine,
        Activation::Relu,
    )
}

impl MocoV3 {
    pub fn new(online: &nn::VarStore, config: &TrainConfig) -> Result<MocoV3> {
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
        Ok(MocoV3 {
            projector: projector_online,
            predictor,
            target,
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
        let query = |v: &Tensor| {
            let z = self.projector.forward_t(&backbone.embed(v, true), true);
            self.predictor.forward_t(&z, true)
        };
        match views {
            [a, b, ..] => mocov3_loss(
                &query(a),
                &query(b),
                &self.target.forward(a),
                &self.target.forward(b),
                self.temperature,
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
