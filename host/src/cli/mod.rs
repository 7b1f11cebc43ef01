//! Command-line interface of `tumorxai`.

mod bench;
mod bundle;
mod data;
mod demo;
mod experiment;
mod explain;
mod export;
mod flash;
mod parity;
mod pretrain;
mod train;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// TumorXAI workstation: phantom MRI data, splits, preprocessing (and, as they
/// land, training, explanations and export). Research software, not for
/// diagnostic use.
#[derive(Debug, Parser)]
#[command(name = "tumorxai", version, about, long_about = None)]
struct Cli {
    /// Worker threads for parallel work: decoding, phantom generation
    /// (rayon) and libtorch's intra-op parallelism (default: all cores).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic 17-class phantom brain-MRI dataset in the real
    /// dataset's ImageFolder layout, from real MNI152 template anatomy.
    #[command(
        after_help = "Example:\n  tumorxai synth --out data/phantom --per-class 40 --seed 7 --masks --sheet sheet.png"
    )]
    Synth(data::SynthArgs),
    /// Split any ImageFolder dataset into train/val/test (stratified, seeded,
    /// near-duplicates kept on one side) with nested label-fraction subsets.
    #[command(
        after_help = "Examples:\n  tumorxai split --data data/phantom --out data/phantom-split.json --seed 0\n  tumorxai split --data data/phantom --out data/phantom-split-2.json --extend data/phantom-split.json   (more images added; test side unchanged)"
    )]
    Split(data::SplitArgs),
    /// Write a contact sheet (PNG) of any ImageFolder dataset: one row per class.
    Sheet(data::SheetArgs),
    /// Run image files through the shared preprocessing contract and report
    /// the model input tensor (as libtorch sees it).
    Preprocess(data::PreprocessArgs),
    /// Train a classifier from scratch (supervised) on a split.
    #[command(
        after_help = "Example:\n  tumorxai train --data data/phantom --split data/split.json --out runs/sup --epochs 10\n  tumorxai train --out runs/sup --resume ...   (continue after Ctrl-C)"
    )]
    Train(train::TrainArgs),
    /// Self-supervised pre-training of the backbone (labels ignored):
    /// SimCLR, BYOL, DINO or MoCo v3, each with its paper's recipe.
    #[command(
        after_help = "Examples:\n  tumorxai pretrain --method simclr --data data/phantom --split data/split.json --out runs/simclr --epochs 100\n  tumorxai pretrain --method dino --data /scans/unlabelled --out runs/dino --set optim.batch_size=64 --set optim.lr=1.25e-4\n  tumorxai pretrain --out runs/simclr --resume ...   (continue after Ctrl-C)\nThen: tumorxai linear-eval --backbone runs/simclr/backbone.safetensors ..."
    )]
    Pretrain(pretrain::PretrainArgs),
    /// The label-efficiency experiment: {SimCLR, BYOL, DINO, MoCo v3,
    /// supervised} × label fractions × {linear eval, fine-tune} × seeds,
    /// written as the paper's table (Markdown, JSON, CSV, PNG). Re-running
    /// skips finished cells.
    #[command(
        after_help = "Examples:\n  tumorxai experiment --config host/experiments/ci.toml --data data/phantom --split data/split.json\n  tumorxai experiment --config host/experiments/paper.toml --data /data/brain-17 --split brain-17-split.json --out runs/paper"
    )]
    Experiment(experiment::ExperimentArgs),
    /// Fine-tune a pre-trained backbone with a new head (backbone lr × optim.backbone_lr_mult).
    Finetune(train::FinetuneArgs),
    /// Evaluate a trained run on a side of its split or on any ImageFolder
    /// (--data); writes JSON and Markdown reports and a confusion matrix.
    Evaluate(train::EvaluateArgs),
    /// Linear evaluation: a linear classifier on frozen backbone features (computed once).
    LinearEval(train::ProbeArgs),
    /// Weighted k-NN evaluation on frozen backbone features.
    KnnEval(train::KnnArgs),
    /// Export a trained run as ONNX (BatchNorm folded; outputs logits and features).
    Export(export::ExportArgs),
    /// Create an Ed25519 signing key pair (PKCS#8 / SubjectPublicKeyInfo PEM).
    #[command(after_help = "Example:\n  tumorxai keygen --out keys/release.pem")]
    Keygen(bundle::KeygenArgs),
    /// Create a signed model bundle from a run (MCUboot image: ONNX model,
    /// manifest, golden self-tests, SHA-256, Ed25519), or inspect / verify one.
    #[command(
        after_help = "Examples:\n  tumorxai bundle --run runs/sup --key keys/release.pem --model-id tumor17 --version 1.0.0 --int8 --out tumor17-int8.bundle\n  tumorxai bundle inspect tumor17-int8.bundle\n  tumorxai bundle verify tumor17-int8.bundle --key keys/release.pub.pem"
    )]
    Bundle(bundle::BundleArgs),
    /// Host (tch) vs device (tract) on the same scans: max |Δ| of inputs,
    /// logits and features, top-1 agreement, EigenCAM correlation; fails on regression.
    #[command(
        after_help = "Example:\n  tumorxai parity --bundle models/demo-int8.bundle --key models/trust/demo-signing-key.pub.pem --checkpoint runs/demo --images models/samples"
    )]
    Parity(parity::ParityArgs),
    /// The main job on the embedded default: generate a small phantom set,
    /// its contact sheet and split, and preprocess it into tensors.
    Demo(demo::DemoArgs),
    /// Explain a trained model's decisions: Grad-CAM, Grad-CAM++ and
    /// EigenCAM maps on the original slices (overlays, raw 16-bit maps, a
    /// comparison sheet) and, with --faithfulness, how faithful each map is
    /// (deletion, insertion, ROAD, a random baseline; with --masks the
    /// pointing game and energy in the lesion).
    #[command(
        after_help = "Examples:\n  tumorxai explain --run models/demo-run --images models/samples --out explain\n  tumorxai explain --run runs/sup --images data/test --masks data/phantom-masks --faithfulness --out explain-test"
    )]
    Explain(explain::ExplainArgs),
    /// Benchmarks that print JSON (phantom generation, preprocessing).
    Bench(bench::BenchArgs),
    /// Install a signed bundle on a device over its serial port (MCUmgr
    /// SMP): resumable upload with progress, the device's hash verified,
    /// then optionally test (trial, auto-revert) or confirm.
    #[command(
        after_help = "Examples:\n  tumorxai flash --port /dev/ttyUSB0 tumor17-int8.bundle --test\n  tumorxai device status --port /dev/ttyUSB0\n  tumorxai device confirm --port /dev/ttyUSB0"
    )]
    Flash(flash::FlashArgs),
    /// Talk to a device over its serial port: slot status, confirm.
    Device(flash::DeviceArgs),
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(usize::from(threads))
            .build_global()?;
        tch::set_num_threads(i32::from(threads));
    }
    match cli.command {
        Command::Synth(args) => data::synth(args),
        Command::Split(args) => data::split(args),
        Command::Sheet(args) => data::sheet(args),
        Command::Preprocess(args) => data::preprocess(args),
        Command::Train(args) => train::train(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Experiment(args) => experiment::experiment(args),
        Command::Finetune(args) => train::finetune(args),
        Command::Evaluate(args) => train::evaluate(args),
        Command::LinearEval(args) => train::linear_eval(args),
        Command::KnnEval(args) => train::knn_eval(args),
        Command::Export(args) => export::export(args),
        Command::Keygen(args) => bundle::keygen(args),
        Command::Bundle(args) => bundle::bundle(args),
        Command::Parity(args) => parity::parity(args),
        Command::Demo(args) => demo::demo(args),
        Command::Explain(args) => explain::explain(args),
        Command::Bench(args) => bench::bench(args),
        Command::Flash(args) => flash::flash(args),
        Command::Device(args) => flash::device(args),
    }
}

/// A progress bar with count, rate and ETA; hidden when stderr is not a terminal.
pub(crate) fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
