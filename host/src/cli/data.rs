//! `synth`, `split`, `sheet` and `preprocess`: the data commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_host::dataset::ImageFolder;
use tumorxai_host::split::{self, SplitSettings};
use tumorxai_host::synth::{self, sheet, SynthOptions};
use tumorxai_host::tensor;
use tumorxai_shared::{DecodeLimits, PreprocessSpec};

use super::progress_bar;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created; one sub-folder per class, as the real dataset).
    #[arg(long)]
    out: PathBuf,
    /// Images per class (with --imbalance: the mean per class).
    #[arg(long, default_value_t = 20)]
    per_class: usize,
    /// Seed: the same seed gives byte-identical images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Mimic the real set's ~10× class imbalance (same mean per class).
    #[arg(long)]
    imbalance: bool,
    /// Also write each image's lesion mask (PNG, 255 = lesion) into OUT-masks/.
    #[arg(long)]
    masks: bool,
    /// Write a contact sheet (PNG) of the result to this file.
    #[arg(long)]
    sheet: Option<PathBuf>,
    /// Allow writing into a non-empty output folder.
    #[arg(long)]
    overwrite: bool,
    /// Factor on the T1C+ enhancement of the normal vessels (sinuses, cortical
    /// veins, falx, choroid plexus): one value (1 = typical, 0 = none), or
    /// LOW..HIGH drawn per image — contrast scans differ in how conspicuous
    /// their vessels are, so a model should not tell T1C+ by them alone.
    #[arg(long, default_value = "1", value_parser = parse_factor_range)]
    vessel_enhancement: [f32; 2],
    /// Phantom engine: `painted` (tissue levels painted over the template)
    /// or `physics` (relaxation times, signal equations, gadolinium
    /// kinetics, k-space acquisition; an independent second source). With
    /// `physics`, --vessel-enhancement multiplies each study's own vessel
    /// conspicuity.
    #[arg(long, default_value = "painted")]
    engine: synth::Engine,
}

/// "F" or "LOW..HIGH" → [low, high].
fn parse_factor_range(text: &str) -> Result<[f32; 2], String> {
    let number = |t: &str| {
        t.trim()
            .parse::<f32>()
            .map_err(|e| format!("{t:?} is not a number: {e}"))
    };
    match text.split_once("..") {
        Some((low, high)) => Ok([number(low)?, number(high)?]),
        None => {
            let value = number(text)?;
            Ok([value, value])
        }
    }
}

pub fn synth(args: SynthArgs) -> Result<ExitCode> {
    let counts = synth::class_counts(args.per_class, args.imbalance);
    let total: usize = counts.iter().sum();
    let bar = progress_bar(total, "synth");
    let options = SynthOptions {
        out: args.out.clone(),
        per_class: args.per_class,
        seed: args.seed,
        size: args.size,
        imbalance: args.imbalance,
        masks: args.masks,
        overwrite: args.overwrite,
        vessel_enhancement: args.vessel_enhancement,
    };
    let started = std::time::Instant::now();
    let record = synth::write_dataset_with(&options, args.engine, || bar.inc(1))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "wrote {total} phantom slices ({}×{} px, 17 classes, seed {}{}) to {} in {seconds:.1} s ({:.0} images/s)",
        args.size,
        args.size,
        args.seed,
        match args.engine {
            synth::Engine::Painted => "",
            synth::Engine::Physics => ", physics engine",
        },
        args.out.display(),
        total as f64 / seconds.max(1e-9)
    );
    if let Some(masks) = &record.masks_dir {
        println!("lesion masks in {masks}");
    }
    if let Some(path) = &args.sheet {
        sheet::write_contact_sheet(&args.out, path, 6, 96)?;
        println!("contact sheet: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Dataset folder in ImageFolder layout (class = sub-folder).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the split (JSON).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of each class for validation.
    #[arg(long, default_value_t = 0.15)]
    val: f64,
    /// Fraction of each class for test.
    #[arg(long, default_value_t = 0.15)]
    test: f64,
    /// pHash Hamming distance (of 64 bits) at or below which slices count as
    /// near duplicates and stay on one side.
    #[arg(long, default_value_t = 4)]
    duplicate_threshold: u32,
    /// Extend this earlier split of the same folder, now holding more images:
    /// earlier images keep their side (validation and test stay exactly as
    /// they were), new images go to training, and new near duplicates of a
    /// validation or test image are left out. Seed, fractions and threshold
    /// come from the earlier split.
    #[arg(long, value_name = "EARLIER_SPLIT", conflicts_with_all = ["seed", "val", "test", "duplicate_threshold"])]
    extend: Option<PathBuf>,
}

pub fn split(args: SplitArgs) -> Result<ExitCode> {
    let dataset = ImageFolder::scan(&args.data)?;
    for skipped in &dataset.skipped {
        eprintln!("warning: skipping non-image file {}", skipped.display());
    }
    let bar = progress_bar(dataset.items.len(), "hashing");
    if let Some(earlier) = &args.extend {
        let previous = split::SplitFile::load(earlier)?;
        let extension = split::extend_split(&dataset, &previous, || bar.inc(1))
            .with_context(|| format!("extending {}", earlier.display()))?;
        bar.finish_and_clear();
        report_unreadable(&extension.split);
        for path in &extension.left_out {
            eprintln!(
                "left out {path}: a near duplicate of a validation or test image (directly or through other near duplicates)"
            );
        }
        extension.split.save(&args.out)?;
        println!(
            "extended {}: {} earlier images on their sides, {} new images added to train, {} new images left out",
            earlier.display(),
            extension.kept,
            extension.added,
            extension.left_out.len()
        );
        print!("{}", split::summary(&extension.split));
        println!("split written to {}", args.out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let settings = SplitSettings {
        seed: args.seed,
        val_fraction: args.val,
        test_fraction: args.test,
        duplicate_threshold: args.duplicate_threshold,
    };
    let result = split::make_split(&dataset, settings, || bar.inc(1))?;
    bar.finish_and_clear();
    report_unreadable(&result);
    result.save(&args.out)?;
    print!("{}", split::summary(&result));
    println!("split written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn report_unreadable(split: &split::SplitFile) {
    for (path, why) in &split.unreadable {
        eprintln!("warning: left out unreadable image {path}: {why}");
    }
}

#[derive(Debug, Args)]
pub struct SheetArgs {
    /// Dataset folder in ImageFolder layout.
    #[arg(long)]
    data: PathBuf,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
    /// Thumbnails per class row.
    #[arg(long, default_value_t = 6)]
    per_class: usize,
    /// Thumbnail side in pixels.
    #[arg(long, default_value_t = 96)]
    thumb: u32,
}

pub fn sheet(args: SheetArgs) -> Result<ExitCode> {
    sheet::write_contact_sheet(&args.data, &args.out, args.per_class, args.thumb)?;
    println!("contact sheet: {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Image files (JPEG, PNG, BMP, TIFF).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Model input side S (tensor 1×3×S×S).
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Skip the brain bounding-box crop.
    #[arg(long)]
    no_crop: bool,
    /// Largest accepted image, in pixels.
    #[arg(long, default_value_t = DecodeLimits::default().max_pixels)]
    max_pixels: u64,
}

pub fn preprocess(args: PreprocessArgs) -> Result<ExitCode> {
    let mut spec = PreprocessSpec::with_input_size(args.size);
    if args.no_crop {
        spec.crop = None;
    }
    spec.validate().context("preprocessing spec")?;
    let limits = DecodeLimits {
        max_pixels: args.max_pixels,
        ..DecodeLimits::default()
    };
    println!("spec {} {}", &spec.hash_hex()[..16], spec.canonical_json());
    let mut failures = 0;
    for file in &args.files {
        match tensor::load_input(file, &spec, limits) {
            Ok(t) => {
                let (min, max, mean) = (
                    t.min().double_value(&[]),
                    t.max().double_value(&[]),
                    t.mean(tch::Kind::Float).double_value(&[]),
                );
                println!(
                    "{}: tensor {:?} min {min:.4} max {max:.4} mean {mean:.4}",
                    file.display(),
                    t.size()
                );
            }
            Err(err) => {
                failures += 1;
                eprintln!("error: {err:#}");
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
