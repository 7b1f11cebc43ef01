//! `tumorxai demo`: the main job on the embedded default — a small phantom
//! set, its contact sheet and split, and its test side preprocessed into
//! libtorch tensors through the shared contract.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tumorxai_host::dataset::ImageFolder;
use tumorxai_host::split::{self, Side, SplitSettings};
use tumorxai_host::synth::{self, sheet, SynthOptions};
use tumorxai_host::tensor;
use tumorxai_shared::{DecodeLimits, PreprocessSpec};

use super::progress_bar;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for everything the demo writes (replaced on each run).
    #[arg(long, default_value = "tumorxai-demo")]
    out: PathBuf,
    /// Phantom images per class.
    #[arg(long, default_value_t = 8)]
    per_class: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    let data = args.out.join("phantom");
    let masks = synth::masks_dir(&data);
    for old in [&data, &masks] {
        if old.exists() {
            std::fs::remove_dir_all(old)?;
        }
    }
    let options = SynthOptions {
        out: data.clone(),
        per_class: args.per_class,
        seed: args.seed,
        size: 256,
        imbalance: false,
        masks: true,
        overwrite: false,
        vessel_enhancement: [1.0, 1.0],
    };
    let total = 17 * args.per_class;
    let bar = progress_bar(total, "synth");
    let started = std::time::Instant::now();
    synth::write_dataset(&options, || bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "1. generated {total} phantom slices (17 classes × {}) in {:.1} s → {}",
        args.per_class,
        started.elapsed().as_secs_f64(),
        data.display()
    );
    let sheet_path = args.out.join("contact-sheet.png");
    sheet::write_contact_sheet(&data, &sheet_path, 6, 96)?;
    println!("2. contact sheet → {}", sheet_path.display());

    let dataset = ImageFolder::scan(&data)?;
    let settings = SplitSettings {
        seed: 0,
        val_fraction: 0.15,
        test_fraction: 0.15,
        duplicate_threshold: 4,
    };
    let split_file = split::make_split(&dataset, settings, || {})?;
    let split_path = args.out.join("split.json");
    split_file.save(&split_path)?;
    let counts = split_file.counts();
    let sum = |k: usize| counts.iter().map(|c| c[k]).sum::<usize>();
    println!(
        "3. split → {} (train {}, val {}, test {})",
        split_path.display(),
        sum(0),
        sum(1),
        sum(2)
    );

    let spec = PreprocessSpec::with_input_size(224);
    let mut tensors = Vec::new();
    for item in split_file.on(Side::Test) {
        tensors.push(tensor::load_input(
            &data.join(&item.path),
            &spec,
            DecodeLimits::default(),
        )?);
    }
    let batch = tch::Tensor::cat(&tensors, 0);
    println!(
        "4. preprocessed the test side with spec {} into a libtorch batch {:?} (mean {:.3}, std {:.3})",
        &spec.hash_hex()[..16],
        batch.size(),
        batch.mean(tch::Kind::Float).double_value(&[]),
        batch.std(true).double_value(&[]),
    );
    println!("Research software on synthetic phantoms: not for diagnostic use.");
    Ok(ExitCode::SUCCESS)
}
