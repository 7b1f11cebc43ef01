//! `experiment`: the label-efficiency table (SSL methods vs supervised).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tumorxai_host::experiment::run::{run, Finish};
use tumorxai_host::experiment::{table, ExperimentFile};

use super::train::interrupt_flag;

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Experiment file (host/experiments/ci.toml, host/experiments/paper.toml).
    #[arg(long)]
    config: PathBuf,
    /// Dataset folder for every run (overrides [common.data] root).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Split file for every run (overrides [common.data] split).
    #[arg(long)]
    split: Option<PathBuf>,
    /// Unlabeled pool for the pre-trainings only (overrides
    /// [pretrain.data] root; default: the labelled dataset). Its split's
    /// training side is pre-trained on, its validation side feeds the
    /// monitor's kNN; the cells keep --data, --split and their test side.
    #[arg(long, requires = "pretrain_split")]
    pretrain_data: Option<PathBuf>,
    /// Split file of --pretrain-data.
    #[arg(long, requires = "pretrain_data")]
    pretrain_split: Option<PathBuf>,
    /// A further labelled test set (an ImageFolder, e.g. another source's
    /// phantoms) every cell is scored on: the cross-source columns
    /// (repeatable; adds to experiment.cross_tests; finished cells are
    /// scored on it without retraining).
    #[arg(long = "cross-test", value_name = "DIR")]
    cross_tests: Vec<PathBuf>,
    /// Output folder (overrides experiment.out).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn experiment(args: ExperimentArgs) -> Result<ExitCode> {
    let mut file = ExperimentFile::load(&args.config)?;
    if let Some(out) = &args.out {
        file.experiment.out = out.clone();
    }
    file.set_data(args.data.as_deref(), args.split.as_deref());
    file.set_pretrain_data(
        args.pretrain_data.as_deref(),
        args.pretrain_split.as_deref(),
    );
    for dir in args.cross_tests {
        file.add_cross_test(dir);
    }
    file.validate()?;
    let out = file.experiment.out.clone();
    std::fs::create_dir_all(&out)?;
    eprintln!(
        "experiment {:?}: {} cells into {} (finished cells are skipped)",
        file.experiment.name,
        file.cells().len(),
        out.display()
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] [{bar:30}] {pos}/{len} jobs — {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let flag = interrupt_flag()?;
    let finish = run(&file, &flag, &bar)?;
    bar.finish_and_clear();
    match finish {
        Finish::Interrupted => {
            eprintln!("interrupted: finished cells are kept; run the same command to continue");
            Ok(ExitCode::from(130))
        }
        Finish::Done(results) => {
            let written = table::write_all(&out, &file.experiment.name, &results)?;
            print!("{}\n{}", written.table, written.paired);
            eprintln!(
                "table: {} (paired.md, table.json, table.csv, table-<cross test>.csv, f1.png beside it)",
                out.join("table.md").display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
