//! Models: the ResNet backbone with torchvision's names, and weight I/O.

pub mod resnet;
pub mod weights;

pub use resnet::{resnet, Depth, LayerPoint, ResNet, ResNetConfig};
