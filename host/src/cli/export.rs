//! `tumorxai export`: a trained run's final weights as ONNX for the device.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tch::nn;
use tumorxai_host::export::onnx;
use tumorxai_host::model::resnet;
use tumorxai_host::model::weights::{self, Strictness};
use tumorxai_host::train::checkpoint;
use tumorxai_host::train::fit::final_weights;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder written by `train` or `finetune`.
    #[arg(long)]
    run: PathBuf,
    /// ONNX file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let state = checkpoint::load_state(&args.run)?;
    let config = &state.config;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let model = resnet(
        &vs.root(),
        config.model.resnet(),
        Some(state.classes.len() as i64),
    );
    weights::load(&mut vs, &final_weights(&args.run), Strictness::Exact)?;
    let metadata = vec![
        (
            "classes".to_string(),
            serde_json::to_string(&state.classes)?,
        ),
        ("preprocess_spec".to_string(), state.spec.canonical_json()),
        ("preprocess_spec_sha256".to_string(), state.spec.hash_hex()),
    ];
    let bytes = onnx::export(
        &vs,
        model.config,
        config.model.input_size,
        state.classes.len(),
        &metadata,
    )?;
    tumorxai_host::synth::write_atomic(&args.out, &bytes)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({:.1} MB, opset {}, input 1×3×{s}×{s}, outputs logits [1, {}] and features)",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        onnx::OPSET,
        state.classes.len(),
        s = config.model.input_size
    );
    Ok(ExitCode::SUCCESS)
}
