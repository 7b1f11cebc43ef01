//! Inference with tract: an ONNX model with a fixed `1×3×S×S` input and two
//! outputs, logits and features, found by the names the manifest gives them
//! (never by position), loaded and optimised once, run per slice.

use std::io::Cursor;

use thiserror::Error;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tumorxai_shared::Preprocessed;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot load the ONNX model: {0}")]
    Load(String),
    #[error("the model has {0} outputs; expected logits and features")]
    Outputs(usize),
    #[error("the outputs named as logits and features have ranks {logits} and {features}; expected 2 ([1, K]) and 4 ([1, C, h, w])")]
    OutputRanks { logits: usize, features: usize },
    #[error("the model has no output named {0:?} (its outputs: {1:?})")]
    MissingOutput(String, Vec<String>),
    #[error("input is {got}×{got}, the model expects {expected}×{expected}")]
    InputSize { got: u32, expected: u32 },
    #[error("inference failed: {0}")]
    Inference(String),
}

fn load_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Load(format!("{e:#}"))
}

fn inference_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Inference(format!("{e:#}"))
}

/// Outputs of one slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub logits: Vec<f32>,
    /// `[C, h, w]`, row-major.
    pub features: Vec<f32>,
    pub feature_shape: [usize; 3],
}

/// Worker threads for tract's matrix products, process-wide (1: the
/// calling thread only, tract's default).
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    set_default_executor(if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    });
}

/// Which graph outputs hold the logits and the features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputNames<'a> {
    pub logits: &'a str,
    pub features: &'a str,
}

/// The names `tumorxai export` gives its outputs.
pub const EXPORTED_OUTPUTS: OutputNames<'static> = OutputNames {
    logits: "logits",
    features: "features",
};

pub struct Model {
    plan: std::sync::Arc<TypedRunnableModel>,
    input_size: u32,
    /// Positions of the logits and features among the model's outputs.
    logits_index: usize,
    features_index: usize,
    /// Nodes computed once at load rather than per slice (see `fold`).
    folded_at_load: usize,
}

impl Model {
    /// Parses, types and optimises an ONNX model for a `1×3×S×S` input.
    pub fn load(onnx: &[u8], input_size: u32, names: OutputNames) -> Result<Model, RuntimeError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut Cursor::new(onnx))
            .map_err(load_error)?;
        Model::load_proto(&proto, input_size, names)
    }

    /// As [`Model::load`], from an already decoded (possibly rewritten) model.
    pub fn load_proto(
        proto: &pb::ModelProto,
        input_size: u32,
        names: OutputNames,
    ) -> Result<Model, RuntimeError> {
        let declared: Vec<String> = proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        let position = |name: &str| {
            declared
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| RuntimeError::MissingOutput(name.to_string(), declared.clone()))
        };
        let (logits_index, features_index) = (position(names.logits)?, position(names.features)?);
        if declared.len() != 2 || logits_index == features_index {
            return Err(RuntimeError::Outputs(declared.len()));
        }
        let s = input_size as usize;
        let model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(load_error)?
            .with_input_fact(0, f32::fact([1, 3, s, s]).into())
            .map_err(load_error)?
            .into_optimized()
            .map_err(load_error)?;
        let mut model = model;
        let folded_at_load = crate::fold::fold_constant_work(&mut model).map_err(load_error)?;
        let outputs = model.output_outlets().map_err(load_error)?.len();
        if outputs != 2 {
            return Err(RuntimeError::Outputs(outputs));
        }
        // Logits `[1, K]`, features `[1, C, h, w]`: known before any slice.
        let rank = |i: usize| model.output_fact(i).map(|f| f.rank()).map_err(load_error);
        let (logits_rank, features_rank) = (rank(logits_index)?, rank(features_index)?);
        if logits_rank != 2 || features_rank != 4 {
            return Err(RuntimeError::OutputRanks {
                logits: logits_rank,
                features: features_rank,
            });
        }
        let plan = model.into_runnable().map_err(load_error)?;
        Ok(Model {
            plan,
            input_size,
            logits_index,
            features_index,
            folded_at_load,
        })
    }

    /// Nodes of tract's optimised plan that were computed once at load.
    pub fn folded_at_load(&self) -> usize {
        self.folded_at_load
    }

    pub fn input_size(&self) -> u32 {
        self.input_size
    }

    /// The optimised plan (for profiling; every run spawns its own state).
    pub(crate) fn plan(&self) -> &std::sync::Arc<TypedRunnableModel> {
        &self.plan
    }

    /// The `1×3×S×S` input tensor of a preprocessed slice.
    pub(crate) fn input_tensor(&self, input: &Preprocessed) -> Result<Tensor, RuntimeError> {
        if input.size != self.input_size {
            return Err(RuntimeError::InputSize {
                got: input.size,
                expected: self.input_size,
            });
        }
        let s = input.size as usize;
        Ok(
            tract_ndarray::Array4::from_shape_vec((1, 3, s, s), input.data.clone())
                .map_err(inference_error)?
                .into_tensor(),
        )
    }

    pub fn run(&self, input: &Preprocessed) -> Result<Outputs, RuntimeError> {
        let tensor = self.input_tensor(input)?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(inference_error)?;
        let output = |index: usize| {
            outputs
                .get(index)
                .ok_or_else(|| RuntimeError::Outputs(outputs.len()))?
                .to_plain_array_view::<f32>()
                .map_err(inference_error)
        };
        let logits = output(self.logits_index)?;
        let features = output(self.features_index)?;
        let [1, c, h, w] = *features.shape() else {
            return Err(RuntimeError::Inference(format!(
                "features have shape {:?}, expected [1, C, h, w]",
                features.shape()
            )));
        };
        Ok(Outputs {
            logits: logits.iter().copied().collect(),
            features: features.iter().copied().collect(),
            feature_shape: [c, h, w],
        })
    }
}
