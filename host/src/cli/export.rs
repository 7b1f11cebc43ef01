//! `tumorxai export`: a trained run's final weights as a bare ONNX file (for
//! other runtimes; devices take signed bundles from `tumorxai bundle`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_host::export::bundle::TrainedRun;
use tumorxai_host::export::onnx;

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
    let run = TrainedRun::load(&args.run)?;
    let bytes = run.export_fp32()?;
    tumorxai_host::synth::write_atomic(&args.out, &bytes)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({:.1} MB, opset {}, input 1×3×{s}×{s}, outputs logits [1, {}] and features)",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        onnx::OPSET,
        run.state.classes.len(),
        s = run.input_size()
    );
    Ok(ExitCode::SUCCESS)
}
