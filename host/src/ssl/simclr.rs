//! SimCLR (Chen, Kornblith, Norouzi, Hinton 2020): two augmented views, a
//! 2-layer MLP projector (Linear → BN → ReLU → Linear), and the NT-Xent
//! loss: for each of the 2B projected views, a softmax over its cosine
//! similarities (÷ τ) to the other 2B − 1, whose target is its partner view.
//! Recipe (LARS, warm-up + cosine) in [`super::Method::defaults`].

use tch::nn::{self, ModuleT};
use tch::{Kind, Reduction, Tensor};

use super::heads::{at_least_f32, l2_normalize, mlp, Activation, LastNorm, Mlp};
use super::views::{symmetric_pair, ViewRecipe};
use super::{Objective, Progress, SslSection};
use crate::model::ResNet;

pub struct SimClr {
    projector: Mlp,
    temperature: f64,
}

impl SimClr {
    pub fn new(vs: &nn::Path, embedding: i64, ssl: &SslSection) -> SimClr {
        SimClr {
            projector: mlp(
                &(vs / "projector"),
                &[embedding, ssl.hidden_dim, ssl.out_dim],
                true,
                LastNorm::None,
                Activation::Relu,
            ),
            temperature: ssl.temperature,
        }
    }
}

/// NT-Xent of two batches of projections `[B, D]` (row i of each is the
/// same image): mean over the 2B anchors of the cross-entropy whose logits
/// are cosine similarities ÷ τ to every other view (itself excluded) and
/// whose target is the partner view.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Tensor {
    // In f32 even inside bf16 autocast: softmaxes over sharp logits.
    tch::autocast(false, || {
        let b = z1.size()[0];
        let z = l2_normalize(&at_least_f32(&Tensor::cat(&[z1, z2], 0)));
        let logits = z.matmul(&z.tr()) / temperature;
        let eye = Tensor::eye(2 * b, (Kind::Bool, z.device()));
        let logits = logits.masked_fill(&eye, f64::NEG_INFINITY);
        let partner = Tensor::arange(2 * b, (Kind::Int64, z.device()))
            .remainder(2 * b)
            .g_add_scalar(b)
            .remainder(2 * b);
        logits.cross_entropy_loss::<Tensor>(&partner, None, Reduction::Mean, -100, 0.0)
    })
}

impl Objective for SimClr {
    fn views(&self, input_size: i64) -> ViewRecipe {
        symmetric_pair(input_size)
    }

    fn loss(&mut self, backbone: &ResNet, views: &[Tensor], _at: Progress) -> Tensor {
        let project = |v: &Tensor| self.projector.forward_t(&backbone.embed(v, true), true);
        match views {
            [a, b, ..] => nt_xent(&project(a), &project(b), self.temperature),
            _ => Tensor::from(f32::NAN),
        }
    }
}
