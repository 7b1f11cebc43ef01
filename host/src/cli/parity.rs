//! `tumorxai parity`: host (tch) vs device (tract, the bundle) on the same
//! scans; prints per-file and summary numbers and fails on a regression.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use clap::Args;
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::LoadedModel;
use tumorxai_host::dataset::image_files;
use tumorxai_host::export::bundle::TrainedRun;
use tumorxai_host::parity::{compare_slice, summarise, ParityBars};

use super::bundle::read_verifying_key;
use super::progress_bar;

#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Signed bundle (fp32 or int8).
    #[arg(long)]
    bundle: PathBuf,
    /// Public key the bundle must be signed with.
    #[arg(long)]
    key: PathBuf,
    /// Training run (folder, or its model.safetensors) the bundle was made from.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Folder of scans (any layout; searched recursively).
    #[arg(long)]
    images: PathBuf,
    /// Execution form for int8 bundles (auto, dequantized, int8, as-shipped).
    #[arg(long, default_value = "auto")]
    form: ExecutionForm,
    /// At most this many images (evenly spread), 0 for all.
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Write the per-file table and summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn parity(args: ParityArgs) -> Result<ExitCode> {
    let key = read_verifying_key(&args.key)?;
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let device = LoadedModel::from_bundle(&bytes, &[key], args.form)
        .with_context(|| format!("loading {}", args.bundle.display()))?;
    let run = TrainedRun::load(&args.checkpoint)?;
    ensure!(
        run.state.classes == device.classes,
        "the run's classes differ from the bundle's"
    );
    let mut files = image_files(&args.images)?;
    ensure!(
        !files.is_empty(),
        "no images under {}",
        args.images.display()
    );
    if args.limit > 0 && files.len() > args.limit {
        let n = files.len();
        files = (0..args.limit)
            .map(|i| files[i * n / args.limit].clone())
            .collect();
    }
    let bar = progress_bar(files.len(), "parity");
    let mut rows = Vec::new();
    for file in &files {
        let name = file
            .strip_prefix(&args.images)
            .unwrap_or(file)
            .display()
            .to_string();
        let slice = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        rows.push(
            compare_slice(&run, (&device).into(), &name, &slice)
                .with_context(|| format!("comparing {name}"))?,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = summarise(&rows);
    let bars = ParityBars::for_form(device.manifest.quantization.form);
    println!(
        "{} {} ({}, {} form) vs {} on {} images",
        device.manifest.model_id,
        device.manifest.version,
        device.manifest.quantization.form,
        device.form.name(),
        args.checkpoint.display(),
        summary.files
    );
    println!(
        "  preprocessed input  max |Δ| {:.3e}",
        summary.preprocess_max_abs
    );
    println!(
        "  logits              max |Δ| {:.3e} (relative {:.3e})",
        summary.logits_max_abs, summary.logits_max_relative
    );
    println!(
        "  features            max relative |Δ| {:.3e}",
        summary.features_max_relative
    );
    println!("  top-1 agreement     {:.4}", summary.top1_agreement);
    println!(
        "  OOD score           max relative |Δ| {:.3e}, same decision on {:.4}",
        summary.ood_max_relative, summary.ood_decision_agreement
    );
    println!(
        "  EigenCAM correlation mean {:.4}, min {:.4}; min {:.4} on the {} files whose map the device shows",
        summary.cam_correlation_mean,
        summary.cam_correlation_min,
        summary.cam_correlation_min_clear_gap,
        summary.cam_clear_gap_files
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "summary": summary, "bars": bars, "files": rows });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let failures = bars.failures(&summary);
    if failures.is_empty() {
        println!("parity OK");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            eprintln!("REGRESSION: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
