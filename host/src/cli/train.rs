//! `train`, `finetune`, `evaluate`, `linear-eval` and `knn-eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use tumorxai_host::split::{Side, SplitFile};
use tumorxai_host::train::checkpoint;
use tumorxai_host::train::config::{parse_device, toml_string, TrainConfig};
use tumorxai_host::train::evaluate::write_report;
use tumorxai_host::train::fit::{self, Outcome, Start};
use tumorxai_host::train::probe::{self, frozen_features, FrozenFeatures};
use tumorxai_host::train::run_eval::{evaluate_run, EvaluationData};

use super::progress_bar;

/// Options shared by every training command.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration ([model], [data], [optim], [run], and [ssl] for
    /// pretrain); every field has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a field: `--set optim.lr=0.1 --set model.depth=resnet50`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Dataset folder (data.root).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Split file from `tumorxai split` (data.split).
    #[arg(long)]
    split: Option<PathBuf>,
    /// Output folder for checkpoints and reports (run.out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Epochs (optim.epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// auto | cpu | cuda | cuda:N (run.device).
    #[arg(long)]
    device: Option<String>,
    /// Seed (run.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Train on this label fraction of the training side: 1, 10, 25, 50, 100.
    #[arg(long)]
    label_percent: Option<u8>,
}

impl ConfigArgs {
    fn resolve(&self) -> Result<TrainConfig> {
        let config = TrainConfig::load(self.config.as_deref(), &self.overrides())?;
        if config.data.root.as_os_str().is_empty() || config.data.split.as_os_str().is_empty() {
            bail!("no dataset: pass --data DIR and --split FILE (or set data.root / data.split)");
        }
        Ok(config)
    }

    /// The configuration file, if any.
    pub(super) fn file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// `--set` overrides followed by the dedicated flags as overrides.
    pub(super) fn overrides(&self) -> Vec<String> {
        let mut overrides = self.overrides.clone();
        if let Some(v) = &self.data {
            overrides.push(format!("data.root={}", toml_string(v)));
        }
        if let Some(v) = &self.split {
            overrides.push(format!("data.split={}", toml_string(v)));
        }
        if let Some(v) = &self.out {
            overrides.push(format!("run.out={}", toml_string(v)));
        }
        if let Some(v) = self.epochs {
            overrides.push(format!("optim.epochs={v}"));
        }
        if let Some(v) = &self.device {
            overrides.push(format!("run.device={v:?}"));
        }
        if let Some(v) = self.seed {
            overrides.push(format!("run.seed={v}"));
        }
        if let Some(v) = self.label_percent {
            overrides.push(format!("data.label_percent={v}"));
        }
        overrides
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Continue the checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) after this many steps: smoke tests.
    #[arg(long, hide = true)]
    max_steps: Option<usize>,
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Pre-trained backbone (safetensors, torchvision names).
    #[arg(long)]
    backbone: PathBuf,
    #[command(flatten)]
    train: TrainArgs,
}

pub(super) fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler = flag.clone();
    ctrlc::set_handler(move || {
        eprintln!("\ninterrupted: writing a checkpoint before exiting (resume with --resume)");
        handler.store(true, Ordering::SeqCst);
    })
    .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    run_training(args, Start::Scratch)
}

pub fn finetune(args: FinetuneArgs) -> Result<ExitCode> {
    run_training(args.train, Start::Finetune(args.backbone))
}

fn run_training(args: TrainArgs, start: Start) -> Result<ExitCode> {
    let config = args.config.resolve()?;
    let start = if args.resume { Start::Resume } else { start };
    if matches!(start, Start::Scratch | Start::Finetune(_))
        && checkpoint::checkpoint_dir(&config.run.out).exists()
    {
        bail!(
            "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
            config.run.out.display()
        );
    }
    let device = parse_device(&config.run.device)?;
    let split = SplitFile::load(&config.data.split)?;
    let bar = progress_bar(split.items.len(), "decoding");
    let run_data = fit::load_data(&config, device, &bar)?;
    bar.finish_and_clear();
    eprintln!(
        "training {:?} ×{} at {}² on {:?}: {} training / {} validation images, {} epochs",
        config.model.depth,
        config.model.width,
        config.model.input_size,
        device,
        run_data.train.len(),
        run_data.val.len(),
        config.optim.epochs
    );
    std::fs::create_dir_all(&config.run.out)?;
    std::fs::write(config.run.out.join("config.toml"), config.to_toml())?;
    let flag = interrupt_flag()?;
    match fit::fit(&config, start, &run_data, &flag, args.max_steps, false)? {
        Outcome::Interrupted(state) => {
            eprintln!(
                "stopped at epoch {} step {}; checkpoint in {}",
                state.epoch + 1,
                state.step_in_epoch,
                checkpoint::checkpoint_dir(&config.run.out).display()
            );
            Ok(ExitCode::from(130))
        }
        Outcome::Finished(state) => {
            checkpoint::write_history(&config.run.out, &state.history)?;
            tumorxai_host::train::plots::curves_png(
                &config.run.out.join("curves.png"),
                &state.history,
            )?;
            let report = evaluate_run(
                &config.run.out,
                &EvaluationData::Side(Side::Test),
                true,
                &config.run.out,
                || {},
            )?;
            println!(
                "test: accuracy {:.4}, macro-F1 {:.4} — weights {}, report {}",
                report.accuracy,
                report.macro_f1,
                fit::final_weights(&config.run.out).display(),
                config.run.out.join("report-test.md").display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Run folder written by `train` or `finetune`.
    #[arg(long)]
    run: PathBuf,
    /// Which side of the run's split.
    #[arg(long, default_value = "test", value_parser = ["train", "val", "test"], conflicts_with = "data")]
    side: String,
    /// Evaluate on any ImageFolder instead (one folder per class, named as
    /// the run's classes; a subset of them is fine): the real dataset,
    /// another hospital's scans. Report: report-folder.{json,md}.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Folder for the report (created if missing; default: the run folder).
    /// Keeps a committed run such as models/demo-run clean when it is
    /// evaluated on other data.
    #[arg(long, value_name = "DIR")]
    reports: Option<PathBuf>,
    /// Fit a temperature on the validation side and report calibrated ECE.
    #[arg(long)]
    calibrate: bool,
}

pub fn evaluate(args: EvaluateArgs) -> Result<ExitCode> {
    let data = match (&args.data, args.side.as_str()) {
        (Some(dir), _) => EvaluationData::Folder(dir.clone()),
        (None, "train") => EvaluationData::Side(Side::Train),
        (None, "val") => EvaluationData::Side(Side::Val),
        (None, _) => EvaluationData::Side(Side::Test),
    };
    let reports = args.reports.as_deref().unwrap_or(&args.run);
    let bar = progress_bar(0, "decoding");
    let r = evaluate_run(&args.run, &data, args.calibrate, reports, || bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "{} images: accuracy {:.4}, macro-F1 {:.4}, weighted-F1 {:.4}, top-3 {:.4}, ECE {:.4}",
        r.samples, r.accuracy, r.macro_f1, r.weighted_f1, r.top3_accuracy, r.ece
    );
    println!(
        "report: {}",
        reports.join(format!("{}.md", data.report_stem())).display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Backbone weights (safetensors, torchvision names; an `fc` is ignored).
    #[arg(long)]
    backbone: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct KnnArgs {
    #[command(flatten)]
    probe: ProbeArgs,
    /// Neighbours that vote.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    k: u32,
    /// Temperature of the vote weights exp(sim / τ).
    #[arg(long, default_value_t = 0.07, value_parser = parse_positive)]
    tau: f64,
}

fn parse_positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?}: expected a positive number")),
    }
}

fn features_of(args: &ProbeArgs) -> Result<FrozenFeatures> {
    let config = args.config.resolve()?;
    let bar = progress_bar(0, "decoding");
    let features = frozen_features(&config, Some(&args.backbone), &[], || bar.inc(1))?;
    bar.finish_and_clear();
    Ok(features)
}

pub fn linear_eval(args: ProbeArgs) -> Result<ExitCode> {
    let FrozenFeatures {
        config,
        classes,
        train_x,
        train_y,
        test_x,
        test_y,
        ..
    } = features_of(&args)?;
    let device = parse_device(&config.run.device)?;
    let logits = probe::linear_probe(
        &train_x,
        &train_y,
        &test_x,
        classes.len(),
        &config.optim,
        config.run.seed,
        device,
    )?;
    let r = write_report(
        &config.run.out,
        "linear-eval",
        "Linear evaluation (frozen backbone)",
        &classes,
        &logits,
        &test_y,
        1.0,
    )?;
    println!(
        "linear eval on {} test images: accuracy {:.4}, macro-F1 {:.4}",
        r.samples, r.accuracy, r.macro_f1
    );
    Ok(ExitCode::SUCCESS)
}

pub fn knn_eval(args: KnnArgs) -> Result<ExitCode> {
    let FrozenFeatures {
        config,
        classes,
        train_x,
        train_y,
        test_x,
        test_y,
        ..
    } = features_of(&args.probe)?;
    let device = parse_device(&config.run.device)?;
    let scores = probe::knn_scores(
        &train_x,
        &train_y,
        &test_x,
        classes.len(),
        args.k as usize,
        args.tau,
        device,
    )?;
    let r = write_report(
        &config.run.out,
        "knn-eval",
        &format!("{}-NN evaluation (frozen backbone)", args.k),
        &classes,
        &scores,
        &test_y,
        1.0,
    )?;
    println!(
        "{}-NN on {} test images: accuracy {:.4}, macro-F1 {:.4}",
        args.k, r.samples, r.accuracy, r.macro_f1
    );
    Ok(ExitCode::SUCCESS)
}
