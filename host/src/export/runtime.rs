//! The device runtime (tract) for ONNX bytes the exporter wrote: what the
//! bundle step self-tests in every execution form, and the fp32 model of a
//! run for parity without a bundle (`TrainedRun::export_fp32`).

use anyhow::Result;
use prost::Message;
use tract_onnx::pb;
use tumorxai_device::forms::{self, ExecutionForm};
use tumorxai_device::runtime::{Model, OutputNames};

use super::onnx;

/// The device runtime's model for `onnx_bytes` in execution form `form`.
pub fn run_form(onnx_bytes: &[u8], form: ExecutionForm, input_size: u32) -> Result<Model> {
    let mut proto = pb::ModelProto::decode(onnx_bytes)?;
    forms::apply(&mut proto, form)?;
    let names = OutputNames {
        logits: onnx::LOGITS,
        features: onnx::FEATURES,
    };
    Ok(Model::load_proto(&proto, input_size, names)?)
}
