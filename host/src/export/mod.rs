//! Export of trained models for the device.

pub mod onnx;
