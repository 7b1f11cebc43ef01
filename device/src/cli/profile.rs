//! `tumorxai-device profile`: tract's per-node timings of the loaded model
//! on one slice, as JSON (see the library's `profile` module).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_shared::{preprocess_bytes, DecodeLimits};

use super::{load_model, read_bounded, ModelArgs};

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Timed runs (after one warm-up); each node's median is reported.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// Nodes listed, the slowest first (the sums cover them all).
    #[arg(long, default_value_t = 15)]
    top: usize,
    /// The slice to run (any input `triage` reads).
    file: PathBuf,
}

pub fn profile(args: ProfileArgs) -> Result<ExitCode> {
    let loaded = load_model(&args.model)?;
    let bytes =
        read_bounded(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let input = preprocess_bytes(&bytes, &loaded.spec, DecodeLimits::slice())
        .with_context(|| format!("preprocessing {}", args.file.display()))?;
    let mut profile = tumorxai_device::profile::profile(&loaded.model, &input, args.runs as usize)?;
    let nodes = profile.nodes.len();
    profile.nodes.truncate(args.top);
    let report = serde_json::json!({
        "bench": "profile",
        "model": format!("{} {}", loaded.manifest.model_id, loaded.manifest.version),
        "quantization": loaded.manifest.quantization.form.to_string(),
        "execution_form": loaded.form.name(),
        "input_size": loaded.spec.input_size,
        "threads": args.model.threads,
        "cpu": super::bench::cpu_description(),
        "nodes_in_plan": nodes,
        "profile": profile,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
