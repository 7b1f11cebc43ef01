//! `tumorxai-device bench`: per-stage median latency and peak RSS as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_device::pipeline::run_slice;
use tumorxai_device::triage::Thresholds;

use super::{load_model, ModelArgs};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Passes over the files.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Peak resident set size (VmHWM) from /proc, in KiB; 0 where unavailable.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let loaded = load_model(&args.model)?;
    let inputs: Vec<Vec<u8>> = args
        .files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<Result<_>>()?;
    let mut stages: Vec<Vec<f64>> = vec![Vec::new(); 5];
    for _ in 0..args.repeat.max(1) {
        for input in &inputs {
            let t = run_slice(&loaded, input, Thresholds::default())?.timings;
            for (k, v) in [
                t.decode_ms,
                t.preprocess_ms,
                t.inference_ms,
                t.eigencam_ms,
                t.render_ms,
            ]
            .into_iter()
            .enumerate()
            {
                stages[k].push(v);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let names = ["decode", "preprocess", "inference", "eigencam", "render"];
    let mut report = serde_json::Map::new();
    for (name, v) in names.iter().zip(stages.iter_mut()) {
        report.insert(format!("{name}_ms_median"), median(v).into());
    }
    let inference = report["inference_ms_median"].as_f64().unwrap_or(f64::NAN);
    let cam_render = report["eigencam_ms_median"].as_f64().unwrap_or(0.0)
        + report["render_ms_median"].as_f64().unwrap_or(0.0);
    report.insert(
        "eigencam_plus_render_over_inference".into(),
        (cam_render / inference).into(),
    );
    report.insert("runs".into(), stages[0].len().into());
    report.insert("input_size".into(), loaded.spec.input_size.into());
    report.insert(
        "model".into(),
        format!("{} {}", loaded.manifest.model_id, loaded.manifest.version).into(),
    );
    report.insert(
        "quantization".into(),
        loaded.manifest.quantization.form.to_string().into(),
    );
    report.insert("execution_form".into(), loaded.form.name().into());
    report.insert("threads".into(), args.model.threads.into());
    report.insert("peak_rss_kib".into(), peak_rss_kib().into());
    println!("{}", serde_json::Value::Object(report));
    Ok(ExitCode::SUCCESS)
}
