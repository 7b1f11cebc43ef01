//! `tumorxai-device install`: a signed bundle into the state directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::state::StateDir;

use super::now_rfc3339;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Signed model bundle written by `tumorxai bundle`.
    bundle: PathBuf,
    /// State directory (default: $TUMORXAI_STATE_DIR, else /var/lib/tumorxai).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Execution form the self-test runs in (int8 bundles).
    #[arg(long, default_value = "auto")]
    form: ExecutionForm,
}

pub fn install(args: InstallArgs) -> Result<ExitCode> {
    let state = StateDir::resolve(args.state_dir.as_deref());
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading bundle {}", args.bundle.display()))?;
    let done = state
        .install(&bytes, args.form, &now_rfc3339())
        .with_context(|| format!("refusing to install {}", args.bundle.display()))?;
    println!(
        "installed {} {} into slot {} of {} ({} self-tests passed); it runs from now on",
        done.info.model_id,
        done.info.version,
        done.slot,
        state.root.display(),
        done.self_tests_passed
    );
    if let Some(previous) = done.previous {
        println!(
            "previous model {} {} kept in slot {}",
            previous.model_id,
            previous.version,
            done.slot.other()
        );
    }
    Ok(ExitCode::SUCCESS)
}
