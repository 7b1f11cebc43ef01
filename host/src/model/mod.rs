//! Models: the ResNet backbone with torchvision's names, and weight I/O.

pub mod resnet;
pub mod weights;

pub use resnet::{resnet, torch_batch_norm, Depth, LayerPoint, ResNet, ResNetConfig};
