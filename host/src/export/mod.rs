//! Export of trained models for the device: ONNX (fp32 and int8) and the
//! signed bundle around it.

pub mod bundle;
pub mod calibration;
pub mod onnx;
pub mod ood;
pub mod ood_study;
pub mod quantize;
pub mod runtime;
