//! ResNet-18/34/50 in tch with torchvision's parameter names and shapes
//! (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`, …), so
//! weights interchange with PyTorch. A width multiplier scales every channel
//! count for CPU-sized configurations. The backbone exposes its last conv
//! block's feature map (for CAMs and export's second output) and its pooled
//! embedding (for SSL heads and linear probes).

use serde::{Deserialize, Serialize};
use tch::nn::{self, ConvConfig, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    #[value(name = "resnet18")]
    #[serde(rename = "resnet18")]
    ResNet18,
    #[value(name = "resnet34")]
    #[serde(rename = "resnet34")]
    ResNet34,
    #[value(name = "resnet50")]
    #[serde(rename = "resnet50")]
    ResNet50,
}

impl Depth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Depth::ResNet18 => [2, 2, 2, 2],
            Depth::ResNet34 | Depth::ResNet50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == Depth::ResNet50
    }
}

/// Architecture of a backbone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub depth: Depth,
    /// Channel multiplier (1.0 = torchvision's widths).
    pub width: f64,
}

impl ResNetConfig {
    fn channels(&self, base: i64) -> i64 {
        ((base as f64 * self.width).round() as i64).max(1)
    }

    /// Size of the pooled embedding (what `fc` sees).
    pub fn embedding_dim(&self) -> i64 {
        self.channels(512) * if self.depth.bottleneck() { 4 } else { 1 }
    }
}

fn conv(vs: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let config = ConvConfig {
        stride,
        padding,
        bias: false,
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(vs, c_in, c_out, kernel, config)
}

/// PyTorch's initial state of a batch norm: weight 1, bias 0 (what every
/// torchvision model starts from). tch's `BatchNormConfig::default()` draws
/// the weights from U(0, 1) instead, which scales every residual branch by a
/// random factor at the start of training.
pub fn torch_batch_norm() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    }
}

fn batch_norm(vs: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(vs, c, torch_batch_norm())
}

/// Shortcut projection `downsample.0` (1×1 conv) + `downsample.1` (BN).
#[derive(Debug)]
struct Downsample {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl Downsample {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }
}

fn downsample(vs: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Option<Downsample> {
    (stride != 1 || c_in != c_out).then(|| Downsample {
        conv: conv(vs / "downsample" / "0", c_in, c_out, 1, stride, 0),
        bn: batch_norm(vs / "downsample" / "1", c_out),
    })
}

/// One residual block: basic (two 3×3) or bottleneck (1×1, 3×3 with the
/// stride, 1×1 ×4), as torchvision's `BasicBlock` / `Bottleneck`.
#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn basic(vs: &nn::Path, c_in: i64, c: i64, stride: i64) -> Block {
        Block {
            convs: vec![
                (
                    conv(vs / "conv1", c_in, c, 3, stride, 1),
                    batch_norm(vs / "bn1", c),
                ),
                (conv(vs / "conv2", c, c, 3, 1, 1), batch_norm(vs / "bn2", c)),
            ],
            downsample: downsample(vs, c_in, c, stride),
        }
    }

    fn bottleneck(vs: &nn::Path, c_in: i64, c: i64, stride: i64) -> Block {
        Block {
            convs: vec![
                (
                    conv(vs / "conv1", c_in, c, 1, 1, 0),
                    batch_norm(vs / "bn1", c),
                ),
                (
                    conv(vs / "conv2", c, c, 3, stride, 1),
                    batch_norm(vs / "bn2", c),
                ),
                (
                    conv(vs / "conv3", c, 4 * c, 1, 1, 0),
                    batch_norm(vs / "bn3", 4 * c),
                ),
            ],
            downsample: downsample(vs, c_in, 4 * c, stride),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        let last = self.convs.len() - 1;
        // In-place ReLU and residual add, as torchvision (`inplace=True`):
        // BatchNorm's backward needs its input, not its output, so this is
        // safe under autograd and saves a pass over memory per op.
        for (i, (c, bn)) in self.convs.iter().enumerate() {
            ys = ys.apply(c).apply_t(bn, train);
            if i < last {
                let _ = ys.relu_();
            }
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let _ = ys.g_add_(&shortcut);
        let _ = ys.relu_();
        ys
    }
}

/// A ResNet backbone with an optional classification head `fc`.
#[derive(Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Block>>,
    fc: Option<nn::Linear>,
}

/// Builds a ResNet under `vs` (root of the torchvision names). `classes`
/// adds the `fc` head; `None` builds the backbone alone (SSL pre-training).
pub fn resnet(vs: &nn::Path, config: ResNetConfig, classes: Option<i64>) -> ResNet {
    let stem = config.channels(64);
    let conv1 = conv(vs / "conv1", 3, stem, 7, 2, 3);
    let bn1 = batch_norm(vs / "bn1", stem);
    let expansion = if config.depth.bottleneck() { 4 } else { 1 };
    let mut c_in = stem;
    let mut layers = Vec::new();
    for (stage, &count) in config.depth.blocks().iter().enumerate() {
        let c = config.channels(64 << stage);
        let stage_vs = vs / format!("layer{}", stage + 1);
        let blocks = (0..count)
            .map(|i| {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let block_vs = &stage_vs / i.to_string();
                let block = if config.depth.bottleneck() {
                    Block::bottleneck(&block_vs, c_in, c, stride)
                } else {
                    Block::basic(&block_vs, c_in, c, stride)
                };
                c_in = c * expansion;
                block
            })
            .collect();
        layers.push(blocks);
    }
    let fc = classes.map(|n| nn::linear(vs / "fc", config.embedding_dim(), n, Default::default()));
    ResNet {
        config,
        conv1,
        bn1,
        layers,
        fc,
    }
}

impl ResNet {
    /// Last conv block's feature map `[N, C, H/32, W/32]`.
    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu_()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.layers {
            for block in stage {
                ys = block.forward_t(&ys, train);
            }
        }
        ys
    }

    /// Global-average-pooled embedding `[N, C]` of a feature map.
    pub fn pool(features: &Tensor) -> Tensor {
        features.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// Pooled embedding `[N, C]` of an input batch.
    pub fn embed(&self, xs: &Tensor, train: bool) -> Tensor {
        Self::pool(&self.features(xs, train))
    }

    /// Applies the `fc` head to an embedding (identity without a head).
    pub fn head(&self, embedding: &Tensor) -> Tensor {
        match &self.fc {
            Some(fc) => fc.forward(embedding),
            None => embedding.shallow_clone(),
        }
    }
}

/// A point where a forward pass can be split, named as torchvision names
/// the module whose output it is: a stage (`layer3`) or one block of it
/// (`layer4.0`). Explanations take their activations there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPoint {
    /// Stage index (0 = `layer1`).
    stage: usize,
    /// Last block included (0-based).
    block: usize,
}

impl ResNet {
    /// The split point called `name` (`layer1`…`layer4`, or `layerN.M`).
    pub fn layer_point(&self, name: &str) -> Option<LayerPoint> {
        let rest = name.strip_prefix("layer")?;
        let (stage, block) = match rest.split_once('.') {
            Some((s, b)) => (s.parse::<usize>().ok()?, Some(b.parse::<usize>().ok()?)),
            None => (rest.parse::<usize>().ok()?, None),
        };
        let blocks = self.layers.get(stage.checked_sub(1)?)?;
        let block = match block {
            Some(b) if b < blocks.len() => b,
            Some(_) => return None,
            None => blocks.len().checked_sub(1)?,
        };
        Some(LayerPoint {
            stage: stage - 1,
            block,
        })
    }

    /// Every valid layer name, for error messages.
    pub fn layer_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (stage, blocks) in self.layers.iter().enumerate() {
            names.push(format!("layer{}", stage + 1));
            names.extend((0..blocks.len()).map(|b| format!("layer{}.{b}", stage + 1)));
        }
        names
    }

    fn blocks_in_order(&self) -> impl Iterator<Item = ((usize, usize), &Block)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(s, blocks)| blocks.iter().enumerate().map(move |(b, blk)| ((s, b), blk)))
    }

    /// The activations at `point` for an input batch.
    pub fn forward_to(&self, xs: &Tensor, point: LayerPoint, train: bool) -> Tensor {
        let mut ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu_()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (at, block) in self.blocks_in_order() {
            if at > (point.stage, point.block) {
                break;
            }
            ys = block.forward_t(&ys, train);
        }
        ys
    }

    /// The logits (or embedding without a head) from activations at `point`.
    pub fn forward_from(&self, activations: &Tensor, point: LayerPoint, train: bool) -> Tensor {
        let mut ys = activations.shallow_clone();
        for (at, block) in self.blocks_in_order() {
            if at > (point.stage, point.block) {
                ys = block.forward_t(&ys, train);
            }
        }
        self.head(&Self::pool(&ys))
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head(&self.embed(xs, train))
    }
}
