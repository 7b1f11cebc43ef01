//! `tumorxai-device`: the scanner-side command line. Thin: the work lives in
//! the `tumorxai_device` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tumorxai_device::input::load_input;
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

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Preprocess { files, size } => {
            let spec = PreprocessSpec::with_input_size(size);
            spec.validate()?;
            let mut failed = false;
            for file in files {
                match load_input(&file, &spec, DecodeLimits::default()) {
                    Ok(input) => {
                        let n = input.data.len() as f64;
                        let mean = input.data.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
                        let line = serde_json::json!({
                            "file": file.display().to_string(),
                            "shape": input.shape(),
                            "mean": mean,
                            "spec_hash": spec.hash_hex(),
                        });
                        println!("{line}");
                    }
                    Err(err) => {
                        failed = true;
                        eprintln!("error: {err:#}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
