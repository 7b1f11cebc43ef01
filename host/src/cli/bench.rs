//! `tumorxai bench`: single-thread throughput benchmarks that print JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::json;
use tch::nn::{self, ModuleT};
use tch::{Kind, Reduction, Tensor};
use tumorxai_host::export::bundle::TrainedRun;
use tumorxai_host::export::ood_study::study;
use tumorxai_host::model::{resnet, Depth, ResNetConfig};
use tumorxai_host::ssl::simclr::SimClr;
use tumorxai_host::ssl::{Objective, Progress, SslSection};
use tumorxai_host::synth::{self, Atlas};
use tumorxai_host::train::config::{parse_device, OptimSection, OptimizerKind};
use tumorxai_host::train::optim::Optimizer;
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessSpec};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    /// Phantom generation: render + JPEG encode of one slice, on one core
    /// (`--engine painted|physics`).
    Synth,
    /// Shared preprocessing: JPEG bytes → 1×3×S×S tensor, on one core.
    Preprocess,
    /// One supervised training step (forward, cross-entropy, backward, SGD
    /// momentum) on random tensors; compare with host/bench/pytorch_train_step.py.
    TrainStep,
    /// One SimCLR step (two views through backbone and projector, NT-Xent,
    /// backward, LARS) on random tensors; compare with
    /// host/bench/pytorch_simclr_step.py.
    SimclrStep,
    /// Out-of-distribution scores compared on a trained run (`--run`) and a
    /// folder of out-of-distribution inputs (`--ood`, one sub-folder per
    /// category; tests/tools/make_ood_set.py builds one): false REVIEW on
    /// the test side, detection per category, ROC area. Not timed.
    Ood,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    target: Target,
    /// Phantom side in pixels (also the JPEG size fed to preprocessing).
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// synth: the phantom engine timed (painted or physics).
    #[arg(long, default_value = "painted")]
    engine: synth::Engine,
    /// Model input side for the preprocessing benchmark.
    #[arg(long, default_value_t = 224)]
    input_size: u32,
    /// Images to time (after a short warm-up).
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// train-step, simclr-step: architecture.
    #[arg(long, value_enum, default_value_t = Depth::ResNet18)]
    depth: Depth,
    /// train-step: width multiplier.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// train-step: batch size.
    #[arg(long, default_value_t = 32)]
    batch: i64,
    /// train-step: timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// train-step: auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// ood: the trained run (its split's training, validation and test sides
    /// are read).
    #[arg(long, required_if_eq("target", "ood"))]
    run: Option<PathBuf>,
    /// ood: folder of out-of-distribution inputs.
    #[arg(long, required_if_eq("target", "ood"))]
    ood: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let images = args.images.max(1);
    let report = match args.target {
        Target::TrainStep => train_step(&args)?,
        Target::SimclrStep => simclr_step(&args)?,
        Target::Ood => {
            let (Some(run), Some(ood)) = (&args.run, &args.ood) else {
                anyhow::bail!("bench ood needs --run and --ood");
            };
            let trained = TrainedRun::load(run)?;
            serde_json::to_value(study(&trained, &run.display().to_string(), ood)?)?
        }
        Target::Synth => {
            let atlas = Atlas::embedded()?;
            // Typical vessel enhancement, as `synth`'s default.
            let make = |seed, i: usize| {
                synth::generate_engine(args.engine, atlas, seed, i % 17, i, args.size, [1.0, 1.0])
            };
            for i in 0..5 {
                make(1, i)?;
            }
            let started = Instant::now();
            for i in 0..images {
                make(2, i)?;
            }
            let seconds = started.elapsed().as_secs_f64();
            json!({
                "bench": "synth", "engine": args.engine.name(), "size": args.size,
                "images": images, "threads": 1,
                "seconds": seconds, "images_per_second": images as f64 / seconds,
                "ms_per_image": seconds * 1e3 / images as f64,
            })
        }
        Target::Preprocess => {
            let atlas = Atlas::embedded()?;
            let inputs: Vec<Vec<u8>> = (0..17)
                .map(|c| synth::generate(atlas, 3, c, 0, args.size).map(|g| g.jpeg))
                .collect::<Result<_>>()?;
            let spec = PreprocessSpec::with_input_size(args.input_size);
            let started = Instant::now();
            for i in 0..images {
                preprocess_bytes(&inputs[i % inputs.len()], &spec, DecodeLimits::default())?;
            }
            let seconds = started.elapsed().as_secs_f64();
            json!({
                "bench": "preprocess", "jpeg_size": args.size, "input_size": args.input_size,
                "images": images, "threads": 1, "seconds": seconds,
                "images_per_second": images as f64 / seconds,
                "ms_per_image": seconds * 1e3 / images as f64,
            })
        }
    };
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn train_step(args: &BenchArgs) -> Result<serde_json::Value> {
    let device = parse_device(&args.device)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let config = ResNetConfig {
        depth: args.depth,
        width: args.width,
    };
    let model = resnet(&vs.root(), config, Some(17));
    let optim = OptimSection {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..Default::default()
    };
    let mut optimizer = Optimizer::new(&vs, &optim, 1.0);
    let s = i64::from(args.size);
    let x = Tensor::randn([args.batch, 3, s, s], (Kind::Float, device));
    let y = Tensor::randint(17, [args.batch], (Kind::Int64, device));
    let seconds = time_steps(args.steps, device, || {
        let loss = model.forward_t(&x, true).cross_entropy_loss(
            &y,
            None::<Tensor>,
            Reduction::Mean,
            -100,
            0.0,
        );
        optimizer.zero_grad();
        loss.backward();
        optimizer.step(0.01);
        loss.double_value(&[])
    });
    Ok(json!({
        "bench": "train_step", "framework": "tch", "depth": format!("{:?}", args.depth), "width": args.width,
        "size": args.size, "batch": args.batch, "steps": args.steps, "device": format!("{device:?}"),
        "threads": tch::get_num_threads(), "seconds_per_step": seconds / args.steps as f64,
        "images_per_second": (args.batch as f64 * args.steps as f64) / seconds,
    }))
}

/// Seconds for `steps` calls of `step` after 3 warm-up calls (CUDA synchronised).
fn time_steps(steps: usize, device: tch::Device, mut step: impl FnMut() -> f64) -> f64 {
    for _ in 0..3 {
        step();
    }
    let started = Instant::now();
    for _ in 0..steps {
        step();
    }
    if let tch::Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    started.elapsed().as_secs_f64()
}

fn simclr_step(args: &BenchArgs) -> Result<serde_json::Value> {
    let device = parse_device(&args.device)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let config = ResNetConfig {
        depth: args.depth,
        width: args.width,
    };
    let backbone = resnet(&vs.root(), config, None);
    let ssl = SslSection::default();
    let mut simclr = SimClr::new(&vs.root(), config.embedding_dim(), &ssl);
    let optim = OptimSection {
        optimizer: OptimizerKind::Lars,
        lr: 0.3,
        momentum: 0.9,
        weight_decay: 1e-6,
        ..Default::default()
    };
    let mut optimizer = Optimizer::new(&vs, &optim, 1.0);
    let s = i64::from(args.size);
    let views = [
        Tensor::randn([args.batch, 3, s, s], (Kind::Float, device)),
        Tensor::randn([args.batch, 3, s, s], (Kind::Float, device)),
    ];
    let at = Progress {
        step: 0,
        total_steps: 1,
        steps_per_epoch: 1,
    };
    let seconds = time_steps(args.steps, device, || {
        let loss = simclr.loss(&backbone, &views, at);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step(0.3);
        loss.double_value(&[])
    });
    Ok(json!({
        "bench": "simclr_step", "framework": "tch", "depth": format!("{:?}", args.depth), "width": args.width,
        "size": args.size, "batch": args.batch, "projector": [ssl.hidden_dim, ssl.out_dim],
        "steps": args.steps, "device": format!("{device:?}"), "threads": tch::get_num_threads(),
        "seconds_per_step": seconds / args.steps as f64,
        "images_per_second": (args.batch as f64 * args.steps as f64) / seconds,
    }))
}
