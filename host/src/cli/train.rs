//! `train`, `finetune`, `evaluate`, `linear-eval` and `knn-eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use tch::nn;
use tumorxai_host::data::{self, Selection};
use tumorxai_host::metrics;
use tumorxai_host::model::resnet;
use tumorxai_host::model::weights::{self, Strictness};
use tumorxai_host::split::{Side, SplitFile};
use tumorxai_host::train::checkpoint;
use tumorxai_host::train::config::{parse_device, TrainConfig};
use tumorxai_host::train::evaluate::{embed, predict, write_report, EvaluationSet};
use tumorxai_host::train::fit::{self, Outcome, Start};
use tumorxai_host::train::probe;
use tumorxai_shared::PreprocessSpec;

use super::progress_bar;

/// Options shared by every training command.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration ([model], [data], [optim], [run]); every field has a default.
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
        let quote = |p: &Path| format!("{:?}", p.display().to_string());
        if let Some(v) = &self.data {
            overrides.push(format!("data.root={}", quote(v)));
        }
        if let Some(v) = &self.split {
            overrides.push(format!("data.split={}", quote(v)));
        }
        if let Some(v) = &self.out {
            overrides.push(format!("run.out={}", quote(v)));
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
            std::fs::write(
                config.run.out.join("history.json"),
                serde_json::to_string_pretty(&state.history)?,
            )?;
            tumorxai_host::train::plots::curves_png(
                &config.run.out.join("curves.png"),
                &state.history,
            )?;
            let report = evaluate_run(&config.run.out, Side::Test, true)?;
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

/// Evaluates the final weights of a run on one side of its split; with
/// `calibrate`, fits a temperature on the validation side first.
fn evaluate_run(out: &Path, side: Side, calibrate: bool) -> Result<metrics::Report> {
    let state = checkpoint::load_state(out)?;
    let config = &state.config;
    let device = parse_device(&config.run.device)?;
    let split = SplitFile::load(&config.data.split)?;
    let mut vs = nn::VarStore::new(device);
    let model = resnet(
        &vs.root(),
        config.model.resnet(),
        Some(state.classes.len() as i64),
    );
    weights::load(&mut vs, &fit::final_weights(out), Strictness::Exact)?;
    let spec = state.spec.clone();
    let load = |side| {
        data::load(
            &split,
            &config.data.root,
            Selection::Side(side),
            &spec,
            device,
            || {},
        )
    };
    let temperature = if calibrate {
        let val = load(Side::Val)?;
        let logits = predict(
            &model,
            &EvaluationSet {
                set: &val,
                spec: &spec,
            },
            64,
        )?;
        metrics::fit_temperature(&logits, &val.label_vec())
    } else {
        1.0
    };
    let set = load(side)?;
    let logits = predict(
        &model,
        &EvaluationSet {
            set: &set,
            spec: &spec,
        },
        64,
    )?;
    let name = format!("{side:?}").to_lowercase();
    write_report(
        out,
        &format!("report-{name}"),
        &format!("Evaluation on the {name} side"),
        &state.classes,
        &logits,
        &set.label_vec(),
        temperature,
    )
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Run folder written by `train` or `finetune`.
    #[arg(long)]
    run: PathBuf,
    /// Which side of the run's split.
    #[arg(long, default_value = "test", value_parser = ["train", "val", "test"])]
    side: String,
    /// Fit a temperature on the validation side and report calibrated ECE.
    #[arg(long)]
    calibrate: bool,
}

pub fn evaluate(args: EvaluateArgs) -> Result<ExitCode> {
    let side = match args.side.as_str() {
        "train" => Side::Train,
        "val" => Side::Val,
        _ => Side::Test,
    };
    let r = evaluate_run(&args.run, side, args.calibrate)?;
    println!(
        "{} images: accuracy {:.4}, macro-F1 {:.4}, weighted-F1 {:.4}, top-3 {:.4}, ECE {:.4}",
        r.samples, r.accuracy, r.macro_f1, r.weighted_f1, r.top3_accuracy, r.ece
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

/// Features of the labelled training subset and of the test side, computed once.
struct FrozenFeatures {
    config: TrainConfig,
    classes: Vec<String>,
    train_x: Vec<Vec<f32>>,
    train_y: Vec<usize>,
    test_x: Vec<Vec<f32>>,
    test_y: Vec<usize>,
}

fn frozen_features(args: &ProbeArgs) -> Result<FrozenFeatures> {
    let config = args.config.resolve()?;
    let device = parse_device(&config.run.device)?;
    let split = SplitFile::load(&config.data.split)?;
    let spec = PreprocessSpec::with_input_size(config.model.input_size);
    let mut vs = nn::VarStore::new(device);
    let model = resnet(&vs.root(), config.model.resnet(), None);
    weights::load(&mut vs, &args.backbone, Strictness::Partial)?;
    let selection = config.train_selection();
    let bar = progress_bar(split.items.len(), "decoding");
    let train = data::load(&split, &config.data.root, selection, &spec, device, || {
        bar.inc(1)
    })?;
    let test = data::load(
        &split,
        &config.data.root,
        Selection::Side(Side::Test),
        &spec,
        device,
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    let train_features = embed(
        &model,
        &EvaluationSet {
            set: &train,
            spec: &spec,
        },
        64,
    )?;
    let test_features = embed(
        &model,
        &EvaluationSet {
            set: &test,
            spec: &spec,
        },
        64,
    )?;
    Ok(FrozenFeatures {
        config,
        classes: split.classes.clone(),
        train_x: train_features,
        train_y: train.label_vec(),
        test_x: test_features,
        test_y: test.label_vec(),
    })
}

pub fn linear_eval(args: ProbeArgs) -> Result<ExitCode> {
    let FrozenFeatures {
        config,
        classes,
        train_x,
        train_y,
        test_x,
        test_y,
    } = frozen_features(&args)?;
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
    } = frozen_features(&args.probe)?;
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
