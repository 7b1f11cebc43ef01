//! `tumorxai-device`: the scanner-side command line. Thin: the work lives in
//! the `tumorxai_device` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::input::load_input;
use tumorxai_device::loader::{parse_trusted_key, LoadedModel};
use tumorxai_device::pipeline::run_slice;
use tumorxai_device::triage::Thresholds;
use tumorxai_shared::{DecodeLimits, PreprocessSpec};

/// TumorXAI scanner-side runtime. Research software, not for diagnostic use.
#[derive(Debug, Parser)]
#[command(name = "tumorxai-device", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-stage latency (decode, preprocess, inference, EigenCAM, render) over
    /// repeated runs of the sample scans, and peak memory, as JSON.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Passes over the files.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Triage slice files: top-3 classes, family probabilities and a flag
    /// (TUMOR LIKELY / NO TUMOR FLAGGED / REVIEW), with an EigenCAM overlay.
    /// Writes OUT/<name>.json and OUT/<name>-overlay.png per file.
    #[command(
        after_help = "Example:\n  tumorxai-device triage --bundle models/demo-int8.bundle models/samples/01-glioma-t1c.jpg"
    )]
    Triage {
        #[command(flatten)]
        model: ModelArgs,
        /// Where to write results.
        #[arg(long, default_value = "triage-output")]
        out: PathBuf,
        /// Probability at which a tumour family is flagged.
        #[arg(long, default_value_t = Thresholds::default().tumour)]
        tumour_threshold: f32,
        /// Probability of Normal needed to clear a slice.
        #[arg(long, default_value_t = Thresholds::default().normal)]
        normal_threshold: f32,
        /// Slice files (JPEG, PNG, BMP, TIFF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run slice files through the shared preprocessing contract and print
    /// the model input's shape and statistics (one JSON line per file).
    Preprocess {
        /// Image files (JPEG, PNG, BMP, TIFF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Model input side S (tensor 1×3×S×S).
        #[arg(long, default_value_t = 224)]
        size: u32,
    },
}

/// Which model bundle to run, whom to trust, and how to execute int8 weights.
#[derive(Debug, Args)]
struct ModelArgs {
    /// Signed model bundle written by `tumorxai bundle`.
    #[arg(long, default_value = "models/demo-int8.bundle")]
    bundle: PathBuf,
    /// Trust store: a folder of Ed25519 public keys (*.pem, SubjectPublicKeyInfo).
    /// A bundle signed by any other key is refused.
    #[arg(long, default_value = "models/trust")]
    trust: PathBuf,
    /// Execution form of int8 bundles: auto (int8 kernels on aarch64,
    /// dequantized f32 elsewhere), dequantized, int8, as-shipped (QDQ).
    #[arg(long, default_value = "auto")]
    form: ExecutionForm,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` on every file; a failing file is reported and the rest still run.
/// The exit status is a failure if any file failed.
fn each_file(files: &[PathBuf], mut f: impl FnMut(&std::path::Path) -> Result<()>) -> ExitCode {
    let mut failed = false;
    for file in files {
        if let Err(err) = f(file) {
            failed = true;
            eprintln!("error: {err:#}");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every `*.pem` public key in `dir`.
fn load_trust_store(dir: &std::path::Path) -> Result<Vec<ed25519_dalek::VerifyingKey>> {
    let mut keys = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading trust store {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            keys.push(parse_trusted_key(&path.display().to_string(), &pem)?);
        }
    }
    anyhow::ensure!(
        !keys.is_empty(),
        "trust store {} holds no *.pem public key",
        dir.display()
    );
    Ok(keys)
}

fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    let trust = load_trust_store(&args.trust)?;
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading bundle {}", args.bundle.display()))?;
    LoadedModel::from_bundle(&bytes, &trust, args.form)
        .with_context(|| format!("refusing bundle {}", args.bundle.display()))
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

fn run() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Bench {
            model,
            repeat,
            files,
        } => {
            let loaded = load_model(&model)?;
            let inputs: Vec<Vec<u8>> = files
                .iter()
                .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
                .collect::<Result<_>>()?;
            let mut stages: Vec<Vec<f64>> = vec![Vec::new(); 5];
            for _ in 0..repeat.max(1) {
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
            report.insert("peak_rss_kib".into(), peak_rss_kib().into());
            println!("{}", serde_json::Value::Object(report));
            Ok(ExitCode::SUCCESS)
        }
        Command::Triage {
            model,
            out,
            tumour_threshold,
            normal_threshold,
            files,
        } => {
            let loaded = load_model(&model)?;
            let thresholds = Thresholds {
                tumour: tumour_threshold,
                normal: normal_threshold,
            };
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            Ok(each_file(&files, |file| {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "slice".into());
                let bytes =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let r = run_slice(&loaded, &bytes, thresholds)
                    .with_context(|| format!("triaging {}", file.display()))?;
                let top: Vec<String> = r
                    .triage
                    .top3
                    .iter()
                    .map(|t| format!("{} {:.1}%", t.class, 100.0 * t.probability))
                    .collect();
                println!(
                    "{}: {} — {}",
                    file.display(),
                    r.triage.flag.banner(),
                    top.join("; ")
                );
                let json = serde_json::json!({
                    "file": file.display().to_string(),
                    "triage": r.triage,
                    "timings_ms": r.timings,
                    "not_for_diagnostic_use": true,
                });
                std::fs::write(
                    out.join(format!("{stem}.json")),
                    serde_json::to_string_pretty(&json)?,
                )?;
                r.overlay.save(out.join(format!("{stem}-overlay.png")))?;
                Ok(())
            }))
        }
        Command::Preprocess { files, size } => {
            let spec = PreprocessSpec::with_input_size(size);
            spec.validate()?;
            Ok(each_file(&files, |file| {
                let input = load_input(file, &spec, DecodeLimits::default())?;
                let n = input.data.len() as f64;
                let mean = input.data.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
                let line = serde_json::json!({
                    "file": file.display().to_string(),
                    "shape": input.shape(),
                    "mean": mean,
                    "spec_hash": spec.hash_hex(),
                });
                println!("{line}");
                Ok(())
            }))
        }
    }
}
