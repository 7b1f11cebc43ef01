//! `tumorxai-device evaluate`: the device's own triage (the model, the
//! calibration, the thresholds, the abstention rules) over a labelled
//! folder in the real dataset's layout, counted as the library's
//! `evaluation` module counts it: top-1, tumour slices cleared (the
//! misses), sensitivity and specificity of "any tumour vs normal" with
//! Wilson 95 % intervals, REVIEW rate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tumorxai_device::evaluation::{Outcome, Proportion, Report, Tally};
use tumorxai_device::ordered::map_in_order;
use tumorxai_device::pipeline::run_slice;
use tumorxai_shared::classes::class_index;
use tumorxai_shared::logits::argmax;

use super::{load_model, read_bounded, ModelArgs, PolicyArgs};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// A labelled folder: one sub-folder per class, named as in the real
    /// dataset (e.g. "Glioma (Astrocitoma, …) T1C+", "NORMAL T2"); every
    /// file below a class folder is one slice (JPEG, PNG, DICOM, …).
    /// Folders that are not one of the 17 classes are skipped, with a note.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Also write the report (summary and per-class counts) as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Slices triaged at once (default: the CPUs available).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
}

/// Every regular, non-hidden file below `dir`, sorted.
fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in
            std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?
        {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// (file, true class index) for every slice of the labelled folder.
fn labelled_slices(data: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let mut slices = Vec::new();
    let mut classes: Vec<PathBuf> = std::fs::read_dir(data)
        .with_context(|| format!("reading the labelled folder {}", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    for folder in classes {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match class_index(&name) {
            Some(class) => {
                for file in files_below(&folder)? {
                    slices.push((file, class));
                }
            }
            None if !name.starts_with('.') => {
                eprintln!("note: skipping {name:?}: not one of the 17 class folders");
            }
            None => {}
        }
    }
    if slices.is_empty() {
        anyhow::bail!(
            "no slices in {}: expected one folder per class, named as in the real dataset",
            data.display()
        );
    }
    Ok(slices)
}

fn percent(p: &Proportion) -> String {
    format!(
        "{:.1} % [{:.1}, {:.1}] ({}/{})",
        100.0 * p.value,
        100.0 * p.low,
        100.0 * p.high,
        p.count,
        p.of
    )
}

fn print_report(report: &Report) {
    println!("slices                     {}", report.slices);
    println!("top-1                      {}", percent(&report.top1));
    println!(
        "tumour slices cleared      {} of {} (NO TUMOR FLAGGED: the misses)",
        report.tumour_cleared, report.tumour_slices
    );
    println!(
        "sensitivity (any tumour)   {}",
        percent(&report.sensitivity)
    );
    println!(
        "specificity                {}",
        percent(&report.specificity)
    );
    println!(
        "tumour family flagged      {}",
        percent(&report.tumour_right_family)
    );
    println!("REVIEW                     {}", percent(&report.review));
    if report.refused > 0 {
        println!("refused (undecodable)      {}", report.refused);
    }
}

pub fn evaluate(args: EvaluateArgs) -> Result<ExitCode> {
    let loaded = load_model(&args.model)?;
    let thresholds = args.policy.thresholds();
    let slices = labelled_slices(&args.data)?;
    eprintln!(
        "{} {} ({} form) on {} slices of {}",
        loaded.manifest.model_id,
        loaded.manifest.version,
        loaded.form.name(),
        slices.len(),
        args.data.display()
    );
    let bar = ProgressBar::new(slices.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} slices, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let mut tally = Tally::default();
    map_in_order(
        workers,
        slices.iter(),
        |(file, _)| {
            let result = read_bounded(file).and_then(|bytes| {
                run_slice(&loaded, &bytes, thresholds).map_err(anyhow::Error::from)
            });
            result.map(|r| (argmax(&r.logits), r.triage.flag))
        },
        |(file, truth), computed| {
            bar.inc(1);
            match computed {
                Ok(Ok((Some(top_class), flag))) => tally.record(
                    *truth,
                    &Outcome::Triaged {
                        top_class,
                        flag: &flag,
                    },
                ),
                Ok(Ok((None, _))) => tally.record(*truth, &Outcome::Refused),
                Ok(Err(e)) => {
                    bar.suspend(|| eprintln!("{}: refused: {e:#}", file.display()));
                    tally.record(*truth, &Outcome::Refused);
                }
                Err(panic) => {
                    bar.suspend(|| eprintln!("{}: {panic}", file.display()));
                    tally.record(*truth, &Outcome::Refused);
                }
            }
        },
    );
    bar.finish_and_clear();
    let report = tally.report();
    print_report(&report);
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "data": args.data.display().to_string(),
            "model": {
                "model_id": loaded.manifest.model_id,
                "version": loaded.manifest.version,
                "bundle_sha256": loaded.bundle_sha256,
                "execution_form": loaded.form.name(),
            },
            "thresholds": { "tumour": thresholds.tumour, "normal": thresholds.normal },
            "report": report,
            "classes": tally.classes(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
