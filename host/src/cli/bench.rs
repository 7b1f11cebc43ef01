//! `tumorxai bench`: single-thread throughput benchmarks that print JSON.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::json;
use tumorxai_host::synth::{self, Atlas};
use tumorxai_shared::{preprocess_bytes, DecodeLimits, PreprocessSpec};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    /// Phantom generation: render + JPEG encode of one slice, on one core.
    Synth,
    /// Shared preprocessing: JPEG bytes → 1×3×S×S tensor, on one core.
    Preprocess,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    target: Target,
    /// Phantom side in pixels (also the JPEG size fed to preprocessing).
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Model input side for the preprocessing benchmark.
    #[arg(long, default_value_t = 224)]
    input_size: u32,
    /// Images to time (after a short warm-up).
    #[arg(long, default_value_t = 200)]
    images: usize,
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let atlas = Atlas::embedded()?;
    let images = args.images.max(1);
    let report = match args.target {
        Target::Synth => {
            for i in 0..5 {
                synth::generate(atlas, 1, i % 17, i, args.size)?;
            }
            let started = Instant::now();
            for i in 0..images {
                synth::generate(atlas, 2, i % 17, i, args.size)?;
            }
            let seconds = started.elapsed().as_secs_f64();
            json!({
                "bench": "synth", "size": args.size, "images": images, "threads": 1,
                "seconds": seconds, "images_per_second": images as f64 / seconds,
                "ms_per_image": seconds * 1e3 / images as f64,
            })
        }
        Target::Preprocess => {
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
