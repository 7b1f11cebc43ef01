//! `pretrain`: self-supervised pre-training of the backbone (SimCLR, BYOL,
//! DINO, MoCo v3) on a split's training images or a plain folder.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use tumorxai_host::split::SplitFile;
use tumorxai_host::ssl::pretrain::{backbone_weights, load_data, pretrain};
use tumorxai_host::ssl::Method;
use tumorxai_host::train::checkpoint;
use tumorxai_host::train::config::TrainConfig;
use tumorxai_host::train::fit::Outcome;

use super::progress_bar;
use super::train::{interrupt_flag, ConfigArgs};

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// The method; its paper's recipe fills every setting the config file
    /// and --set leave open (see `config.toml` in the output folder).
    #[arg(long, value_enum)]
    method: Option<Method>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Continue the checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) after this many steps: smoke tests.
    #[arg(long, hide = true)]
    max_steps: Option<usize>,
}

/// The configuration: the method's defaults under the file and the flags.
fn resolve(args: &PretrainArgs) -> Result<TrainConfig> {
    let mut overrides = args.config.overrides();
    if overrides
        .iter()
        .any(|o| o.starts_with("data.label_percent"))
    {
        bail!("pre-training ignores labels: --label-percent applies to linear-eval, knn-eval and finetune");
    }
    let method = match args.method {
        Some(method) => method,
        None => {
            // The file's method, or on --resume the checkpoint's.
            let plain = TrainConfig::load(args.config.file(), &overrides)?;
            match checkpoint::load_state(&plain.run.out) {
                Ok(saved) if args.resume => saved.config.ssl.method,
                _ => plain.ssl.method,
            }
        }
    };
    overrides.push(format!("ssl.method={:?}", method.name()));
    let config = TrainConfig::load_layered(method.defaults(), args.config.file(), &overrides)?;
    if config.data.root.as_os_str().is_empty() {
        bail!("no images: pass --data DIR (a dataset with --split FILE, or any folder of slices)");
    }
    Ok(config)
}

pub fn run(args: PretrainArgs) -> Result<ExitCode> {
    let config = resolve(&args)?;
    let out = &config.run.out;
    if !args.resume && checkpoint::checkpoint_dir(out).exists() {
        bail!(
            "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    let expected = if config.data.split.as_os_str().is_empty() {
        0
    } else {
        SplitFile::load(&config.data.split)?.items.len()
    };
    let bar = progress_bar(expected, "decoding");
    let data = load_data(&config, &bar)?;
    bar.finish_and_clear();
    eprintln!(
        "pre-training {:?} ×{} at {}² with {} on {}: {} images (labels ignored), {} epochs, batch {}",
        config.model.depth,
        config.model.width,
        config.model.input_size,
        config.ssl.method.name(),
        config.run.device,
        data.images.len(),
        config.optim.epochs,
        config.optim.batch_size,
    );
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("config.toml"), config.to_toml())?;
    let flag = interrupt_flag()?;
    match pretrain(&config, args.resume, &data, &flag, args.max_steps, false)? {
        Outcome::Interrupted(state) => {
            eprintln!(
                "stopped at epoch {} step {}; checkpoint in {}",
                state.epoch + 1,
                state.step_in_epoch,
                checkpoint::checkpoint_dir(out).display()
            );
            Ok(ExitCode::from(130))
        }
        Outcome::Finished(_) => {
            println!(
                "backbone {} (torchvision names): next, `tumorxai linear-eval --backbone {}` or `tumorxai finetune --backbone {}`",
                backbone_weights(out).display(),
                backbone_weights(out).display(),
                backbone_weights(out).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
