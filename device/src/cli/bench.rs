//! `tumorxai-device bench`: per-stage median latency and peak RSS as JSON;
//! with `--workers`, the throughput of a whole series triaged in parallel
//! as `serve` does it (one JSON line per worker count).

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
    /// Series throughput instead of per-stage latency: triage a series of
    /// --series slices (the files, cycled) with each of these worker counts,
    /// e.g. --workers 1,2,4; answers in order, as `serve` gives them.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Vec<u16>,
    /// Slices in the series of --workers (a scanner sends 20–40 at once).
    #[arg(long, default_value_t = 30, requires = "workers")]
    series: usize,
    /// Also write the ONNX model exactly as tract runs it (the bundle's
    /// model in the chosen execution form), for running the same graph in
    /// another runtime (device/bench/ort_compare.sh).
    #[arg(long, requires = "bundle")]
    export_onnx: Option<PathBuf>,
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

/// What the CPU is, for the record beside every number: the model name
/// (x86) or implementer and part (ARM), and the flags that decide kernels.
pub(super) fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
    };
    let name = field("model name").or_else(|| {
        let part = field("CPU part")?;
        Some(format!(
            "ARM implementer {} part {part}",
            field("CPU implementer").unwrap_or_default()
        ))
    });
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    format!(
        "{} ({cpus} CPUs available, {})",
        name.unwrap_or_else(|| "unknown CPU".into()),
        std::env::consts::ARCH
    )
}

/// Seconds to triage `series` in order with `workers` workers, each slice's
/// overlay encoded as `serve` does.
fn series_seconds(
    loaded: &tumorxai_device::loader::LoadedModel,
    series: &[&[u8]],
    workers: usize,
) -> Result<f64> {
    let start = std::time::Instant::now();
    let mut failure = None;
    tumorxai_device::ordered::map_in_order(
        workers,
        series.iter(),
        |bytes| {
            run_slice(loaded, bytes, Thresholds::default())
                .map_err(anyhow::Error::from)
                .and_then(|r| super::triage::png_bytes(&r.overlay).map(|png| png.len()))
        },
        |_, result| {
            if let Err(e) = result.map_err(anyhow::Error::new).and_then(|r| r) {
                failure.get_or_insert(e);
            }
        },
    );
    if let Some(e) = failure {
        return Err(e.context("a slice of the series failed"));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn series_bench(args: &BenchArgs, inputs: &[Vec<u8>]) -> Result<ExitCode> {
    let loaded = load_model(&args.model)?;
    let series: Vec<&[u8]> = inputs
        .iter()
        .cycle()
        .take(args.series.max(1))
        .map(Vec::as_slice)
        .collect();
    // Warm-up: first-run allocations and page faults out of the timing.
    series_seconds(&loaded, &series[..series.len().min(4)], 1)?;
    let cpu = cpu_description();
    let mut single_rate = None;
    for &workers in &args.workers {
        let workers = usize::from(workers);
        // The best of --repeat runs: the least disturbed by the machine.
        let mut best = f64::INFINITY;
        for _ in 0..args.repeat.max(1) {
            best = best.min(series_seconds(&loaded, &series, workers)?);
        }
        let rate = series.len() as f64 / best;
        if workers == 1 {
            single_rate = Some(rate);
        }
        let mut report = serde_json::json!({
            "bench": "series",
            "workers": workers,
            "slices": series.len(),
            "seconds": best,
            "slices_per_second": rate,
            "model": format!("{} {}", loaded.manifest.model_id, loaded.manifest.version),
            "execution_form": loaded.form.name(),
            "threads_per_worker": args.model.threads,
            "cpu": cpu,
        });
        if let Some(single) = single_rate {
            report["efficiency_vs_workers_x_single"] = (rate / (workers as f64 * single)).into();
        }
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the bundle's model rewritten into `form`, the graph tract runs.
fn export_executed_onnx(
    bundle: &std::path::Path,
    form: tumorxai_device::forms::ExecutionForm,
    out: &std::path::Path,
) -> Result<()> {
    use prost::Message;
    let bytes =
        std::fs::read(bundle).with_context(|| format!("reading bundle {}", bundle.display()))?;
    let read = tumorxai_shared::bundle::read_bundle(&bytes)?;
    let mut proto = tract_onnx::pb::ModelProto::decode(read.model)
        .context("the bundle's model is not valid ONNX protobuf")?;
    tumorxai_device::forms::apply(&mut proto, form)?;
    std::fs::write(out, proto.encode_to_vec()).with_context(|| format!("writing {}", out.display()))
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let inputs: Vec<Vec<u8>> = args
        .files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<Result<_>>()?;
    if !args.workers.is_empty() {
        return series_bench(&args, &inputs);
    }
    let loaded = load_model(&args.model)?;
    if let (Some(out), Some(bundle)) = (&args.export_onnx, &args.model.bundle) {
        export_executed_onnx(bundle, loaded.form, out)?;
    }
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
    report.insert("cpu".into(), cpu_description().into());
    println!("{}", serde_json::Value::Object(report));
    Ok(ExitCode::SUCCESS)
}
