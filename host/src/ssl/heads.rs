//! Projection and prediction heads of the self-supervised methods: MLPs of
//! Linear → BatchNorm → activation blocks, and DINO's head ending in an L2
//! normalisation and a weight-normalised linear layer.

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use crate::model::torch_batch_norm;

pub use crate::tensor::l2_normalize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Gelu,
}

/// What follows the last linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastNorm {
    None,
    /// BatchNorm without scale and shift (MoCo v3's projector).
    BatchNormNoAffine,
}

#[derive(Debug)]
struct Block {
    linear: nn::Linear,
    norm: Option<nn::BatchNorm>,
    activation: Option<Activation>,
}

/// A multi-layer perceptron; `dims` = [input, hidden…, output].
#[derive(Debug)]
pub struct Mlp {
    blocks: Vec<Block>,
}

/// Builds an MLP under `vs`: every hidden layer is Linear → (BatchNorm) →
/// activation; a linear layer followed by BatchNorm has no bias (the norm's
/// shift replaces it, as in the reference implementations).
pub fn mlp(
    vs: &nn::Path,
    dims: &[i64],
    hidden_norm: bool,
    last: LastNorm,
    activation: Activation,
) -> Mlp {
    let layers = dims.len().saturating_sub(1);
    let blocks = dims
        .windows(2)
        .enumerate()
        .map(|(i, pair)| {
            let is_last = i + 1 == layers;
            let norm = if is_last {
                (last == LastNorm::BatchNormNoAffine).then(|| {
                    nn::batch_norm1d(
                        vs / format!("bn{i}"),
                        pair[1],
                        nn::BatchNormConfig {
                            affine: false,
                            ..torch_batch_norm()
                        },
                    )
                })
            } else {
                hidden_norm
                    .then(|| nn::batch_norm1d(vs / format!("bn{i}"), pair[1], torch_batch_norm()))
            };
            let linear = nn::linear(
                vs / format!("linear{i}"),
                pair[0],
                pair[1],
                nn::LinearConfig {
                    bias: norm.is_none(),
                    ..Default::default()
                },
            );
            Block {
                linear,
                norm,
                activation: (!is_last).then_some(activation),
            }
        })
        .collect();
    Mlp { blocks }
}

impl ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for block in &self.blocks {
            ys = block.linear.forward(&ys);
            if let Some(norm) = &block.norm {
                ys = norm.forward_t(&ys, train);
            }
            ys = match block.activation {
                Some(Activation::Relu) => ys.relu(),
                Some(Activation::Gelu) => ys.gelu("none"),
                None => ys,
            };
        }
        ys
    }
}

/// DINO's head: a 3-layer GELU MLP to a bottleneck (with BatchNorm in the
/// hidden layers for ResNets, as solo-learn's `use_bn_in_head`: without it a
/// ResNet's near-identical initial embeddings leave the centred teacher
/// uniform and the run sits on that plateau), L2 normalisation, then a
/// bias-free linear layer with weight normalisation whose gain is frozen at 1
/// (`norm_last_layer=True` in the reference code): each prototype is a unit
/// vector, so the logits are cosines.
#[derive(Debug)]
pub struct DinoHead {
    mlp: Mlp,
    /// `[out, bottleneck]` direction of each prototype (weight_v).
    prototypes: Tensor,
}

pub fn dino_head(
    vs: &nn::Path,
    input: i64,
    hidden: i64,
    bottleneck: i64,
    out: i64,
    batch_norm: bool,
) -> DinoHead {
    let mlp = mlp(
        &(vs / "mlp"),
        &[input, hidden, hidden, bottleneck],
        batch_norm,
        LastNorm::None,
        Activation::Gelu,
    );
    // The reference initialises with trunc_normal(std = 0.02).
    let prototypes = vs.var(
        "last_layer_v",
        &[out, bottleneck],
        nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    );
    DinoHead { mlp, prototypes }
}

/// `x` in f32, or as it is when already f64 (losses in double precision
/// when their inputs are: the reference-value tests).
pub fn at_least_f32(x: &Tensor) -> Tensor {
    match x.kind() {
        Kind::Double => x.shallow_clone(),
        _ => x.to_kind(Kind::Float),
    }
}

impl DinoHead {
    /// Freezes (or thaws) the prototypes: while frozen they take no part in
    /// autograd, so their gradient stays undefined and the optimizer skips
    /// them, as the reference's `p.grad = None` (`cancel_gradients_last_layer`).
    pub fn freeze_prototypes(&self, frozen: bool) {
        if self.prototypes.requires_grad() == frozen {
            let _ = self.prototypes.shallow_clone().set_requires_grad(!frozen);
        }
    }

    /// The prototypes' current gradient (undefined while frozen).
    pub fn prototypes_grad(&self) -> Tensor {
        self.prototypes.grad()
    }
}

impl ModuleT for DinoHead {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let z = l2_normalize(&self.mlp.forward_t(xs, train));
        let weight = l2_normalize(&self.prototypes);
        z.matmul(&weight.tr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn mlp_shapes_and_bias_rules() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = mlp(
            &vs.root(),
            &[8, 16, 4],
            true,
            LastNorm::BatchNormNoAffine,
            Activation::Relu,
        );
        let y = head.forward_t(&Tensor::randn([5, 8], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [5, 4]);
        let names: Vec<String> = vs.variables().into_keys().collect();
        // Both linears feed a BatchNorm: no biases; the last norm has no affine.
        assert!(!names
            .iter()
            .any(|n| n.ends_with(".bias") && n.starts_with("linear")));
        assert!(names.contains(&"bn0.weight".to_string()));
        assert!(!names.contains(&"bn1.weight".to_string()));
        // Affine-free BN in training mode: every output column has mean 0, var 1.
        let mean = y
            .mean_dim(&[0i64][..], false, Kind::Float)
            .abs()
            .max()
            .double_value(&[]);
        assert!(mean < 1e-5, "{mean}");
    }

    #[test]
    fn dino_logits_are_cosines_to_unit_prototypes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = dino_head(&vs.root(), 6, 12, 3, 10, true);
        let y = head.forward_t(&Tensor::randn([4, 6], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [4, 10]);
        // |cos| ≤ 1, and scaling the prototypes changes nothing.
        assert!(y.abs().max().double_value(&[]) <= 1.0 + 1e-6);
        tch::no_grad(|| {
            let _ = head.prototypes.shallow_clone().g_mul_scalar_(7.0);
        });
        let x = Tensor::ones([1, 6], (Kind::Float, Device::Cpu));
        let a = head.forward_t(&x, false);
        tch::no_grad(|| {
            let _ = head.prototypes.shallow_clone().g_mul_scalar_(0.5);
        });
        let b = head.forward_t(&x, false);
        assert!((a - b).abs().max().double_value(&[]) < 1e-6);
    }
}
