//! `tumorxai-device serve`: the inbox service (see the library's `service`
//! module for the pickup and crash-safety rules), with the display and the
//! audit log, and optionally the DICOM storage receiver feeding the inbox.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_device::audit::{short_id, AuditEntry, AuditLog, ModelRecord, Outcome};
use tumorxai_device::display::Screen;
use tumorxai_device::loader::LoadedModel;
use tumorxai_device::pipeline::run_slice;
use tumorxai_device::service::{sha256_hex, write_atomic, Folders, Watcher};
use tumorxai_device::smp_server::{Event, SmpServer};
use tumorxai_device::smp_transport::{newest_progress_only, run_transport};
use tumorxai_device::state::StateDir;
use tumorxai_device::triage::Thresholds;
use tumorxai_device::upgrade::Reloaded;

mod upgrade;

use super::triage::{answer_json, png_bytes, result_screen};
use super::{frame, load_model, now_rfc3339, read_bounded, Display, ModelArgs, PolicyArgs};
use upgrade::{load_active, report_reload, start_smp};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Folder the scanner or gateway drops slices into.
    #[arg(long)]
    inbox: PathBuf,
    /// Folder for answers: <name>-<sha12>.json, -overlay.png, and display.png.
    #[arg(long)]
    outbox: PathBuf,
    /// Where processed inputs go (default: OUTBOX/../archive).
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Audit log folder (default: OUTBOX/../audit).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Rotate the audit log past this many bytes.
    #[arg(long, default_value_t = 10 << 20)]
    audit_max_bytes: u64,
    /// Rotated audit files kept.
    #[arg(long, default_value_t = 10)]
    audit_keep: usize,
    /// A file is complete when unchanged for this long (milliseconds).
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Inbox polling interval (milliseconds).
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Process what the inbox holds now (in-progress names excepted, no
    /// settle wait), then exit: for scripts and tests.
    #[arg(long)]
    once: bool,
    /// Also run a DICOM storage receiver (C-ECHO, C-STORE of MR images) on
    /// this TCP port; received slices land in the inbox.
    #[arg(long, conflicts_with = "once")]
    dicom_port: Option<u16>,
    /// Application entity title of the receiver (what the scanner calls).
    #[arg(long, default_value = "TUMORXAI", requires = "dicom_port")]
    ae_title: String,
    /// Address the receiver listens on.
    #[arg(long, default_value = "0.0.0.0", requires = "dicom_port")]
    dicom_bind: String,
    /// Also serve MCUmgr SMP (model upload, test, confirm, state, reset)
    /// on this serial port, e.g. /dev/ttyS1: new models are staged in the
    /// inactive slot and run after `test` and a reset; see `tumorxai flash`.
    #[arg(long, conflicts_with_all = ["once", "bundle"])]
    serial: Option<PathBuf>,
    /// Line rate of --serial.
    #[arg(long, default_value_t = 115_200, requires = "serial")]
    baud: u32,
    /// Revert a model on trial that is not confirmed within this many
    /// seconds (besides the revert at its next reload).
    #[arg(long)]
    trial_seconds: Option<u64>,
}

struct Service {
    model: LoadedModel,
    folders: Folders,
    audit: AuditLog,
    display: Display,
    thresholds: Thresholds,
}

impl Service {
    fn model_record(&self) -> ModelRecord {
        ModelRecord {
            model_id: self.model.manifest.model_id.clone(),
            version: self.model.manifest.version.clone(),
            bundle_sha256: self.model.bundle_sha256.clone(),
            execution_form: self.model.form.name().to_string(),
        }
    }

    fn show(&self, screen: Screen) {
        let png = self.folders.outbox.join("display.png");
        if let Err(e) = self.display.show(&frame(screen, &self.model), &png) {
            eprintln!("warning: display: {e:#}");
        }
    }

    /// Steps 2–5 for one claimed file. A failure here (the file renamed
    /// away mid-scan, a full disk, an unwritable archive) is this file's
    /// alone: it gets an error answer and an audit entry where those can
    /// still be written, and the service goes on with the next file.
    ///
    /// Privacy: file names from gateways often carry patient names or IDs.
    /// The panel, the audit log and the service's own output name a scan by
    /// its content hash ([`short_id`]); only the outbox answer, beside the
    /// file it answers, carries the name.
    fn handle(&mut self, claimed: &Path, recovered: bool) {
        let bytes = read_bounded(claimed);
        let sha = sha256_hex(bytes.as_deref().unwrap_or_default());
        let result = match bytes {
            Ok(bytes) => self.try_handle(claimed, &bytes, &sha, recovered),
            Err(e) => Err(e),
        };
        if let Err(err) = result {
            let id = short_id(&sha);
            let message = format!("{err:#}");
            eprintln!("{id}: error: {message}");
            self.show(Screen::Error {
                message: format!("{id}: {message}"),
            });
            if let Err(e) = self.record_failure(claimed, &sha, &message, recovered) {
                eprintln!("{id}: could not record the failure: {e:#}");
            }
        }
    }

    /// Best effort after a failure: audit entry, an error answer under a
    /// name no other answer has, and the archive.
    fn record_failure(
        &mut self,
        claimed: &Path,
        sha: &str,
        message: &str,
        recovered: bool,
    ) -> Result<()> {
        let size = std::fs::metadata(claimed).map_or(0, |m| m.len());
        self.audit.append(&AuditEntry {
            time: now_rfc3339(),
            input_sha256: sha.to_string(),
            input_bytes: size,
            model: self.model_record(),
            outcome: Outcome::Error {
                message: message.to_string(),
            },
            recovered,
        })?;
        let stem = self.folders.record_answer(claimed, sha)?;
        let json = serde_json::json!({
            "file": file_name(claimed),
            "error": message,
            "not_for_diagnostic_use": true,
        });
        write_atomic(
            &self.folders.outbox.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )?;
        if claimed.exists() {
            self.folders.archive(claimed, sha)?;
        }
        Ok(())
    }

    fn try_handle(
        &mut self,
        claimed: &Path,
        bytes: &[u8],
        sha: &str,
        recovered: bool,
    ) -> Result<()> {
        let name = file_name(claimed);
        let id = short_id(sha);
        if recovered {
            if let Some(stem) = Folders::recorded_answer(claimed) {
                if self.folders.outbox.join(format!("{stem}.json")).exists() {
                    // Answered before a crash: only the archiving was left.
                    self.folders.archive(claimed, sha)?;
                    return Ok(());
                }
            }
        }
        let stem = match Folders::recorded_answer(claimed) {
            Some(stem) if recovered => stem,
            _ => self
                .folders
                .record_answer(claimed, sha)
                .context("recording the answer name")?,
        };
        let answer_path = self.folders.outbox.join(format!("{stem}.json"));
        self.show(Screen::Processing { file: id.clone() });
        let (json, outcome) = match run_slice(&self.model, bytes, self.thresholds) {
            Ok(r) => {
                let overlay = self.folders.outbox.join(format!("{stem}-overlay.png"));
                write_atomic(&overlay, &png_bytes(&r.overlay)?).context("writing the overlay")?;
                println!("{id}: {}", r.triage.flag.banner());
                self.show(result_screen(&id, &r));
                (
                    answer_json(&name, &self.model, &r),
                    Outcome::Triaged {
                        triage: Box::new(r.triage),
                        logits: r.logits,
                        timings_ms: r.timings,
                    },
                )
            }
            Err(e) => {
                let message = format!("{e}");
                eprintln!("{id}: error: {message}");
                self.show(Screen::Error {
                    message: format!("{id}: {message}"),
                });
                (
                    serde_json::json!({ "file": name, "error": message, "not_for_diagnostic_use": true }),
                    Outcome::Error { message },
                )
            }
        };
        self.audit
            .append(&AuditEntry {
                time: now_rfc3339(),
                input_sha256: sha.to_string(),
                input_bytes: bytes.len() as u64,
                model: self.model_record(),
                outcome,
                recovered,
            })
            .context("appending to the audit log")?;
        write_atomic(
            &answer_path,
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )
        .context("writing the answer")?;
        self.folders
            .archive(claimed, sha)
            .context("archiving the input")?;
        Ok(())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    // The service starting is a reload: a pending test runs now, an
    // unconfirmed trial reverts.
    if args.model.bundle.is_none() {
        let state = StateDir::resolve(args.model.state_dir.as_deref());
        let reloaded = state
            .reload()
            .context("applying the model slots' pending change")?;
        report_reload(&reloaded, None);
    }
    let model = load_active(&args.model, None)?;
    let parent = args
        .outbox
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let folders = Folders {
        inbox: args.inbox.clone(),
        outbox: args.outbox.clone(),
        archive: args
            .archive
            .clone()
            .unwrap_or_else(|| parent.join("archive")),
    };
    folders.create().context("creating the service folders")?;
    let Some(_inbox_lock) = folders.lock().context("locking the inbox")? else {
        anyhow::bail!(
            "another tumorxai-device serve is already using {} (lock file .tumorxai.lock)",
            folders.inbox.display()
        );
    };
    let audit_dir = args.audit.clone().unwrap_or_else(|| parent.join("audit"));
    let mut service = Service {
        model,
        audit: AuditLog::open(&audit_dir, args.audit_max_bytes, args.audit_keep)
            .with_context(|| format!("opening audit log in {}", audit_dir.display()))?,
        display: Display::open(&args.policy)?,
        thresholds: args.policy.thresholds(),
        folders,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C, SIGTERM (`systemctl stop`) and SIGHUP: finish the current
    // file, then stop.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the signal handler")?;
    if let Some(port) = args.dicom_port {
        let listener = std::net::TcpListener::bind((args.dicom_bind.as_str(), port))
            .with_context(|| format!("listening for DICOM on {}:{port}", args.dicom_bind))?;
        let config = tumorxai_device::dicom_scp::ScpConfig {
            ae_title: args.ae_title.clone(),
            inbox: args.inbox.clone(),
            timeout: Duration::from_secs(30),
        };
        eprintln!(
            "DICOM storage receiver {} on {}",
            args.ae_title,
            listener.local_addr()?
        );
        let stop = stop.clone();
        std::thread::spawn(move || {
            let log = |line: String| eprintln!("{line}");
            if let Err(e) = tumorxai_device::dicom_scp::serve(listener, config, stop, log) {
                eprintln!("error: DICOM receiver stopped: {e}");
            }
        });
    }
    let smp = match &args.serial {
        Some(path) => Some(start_smp(path, args.baud, &args.model, stop.clone())?),
        None => None,
    };
    for claimed in service.folders.unfinished()? {
        eprintln!("recovering {}", claimed.display());
        service.handle(&claimed, true);
    }
    service.show(Screen::Idle);
    let settle = if args.once {
        Duration::ZERO
    } else {
        Duration::from_millis(args.settle_ms)
    };
    let mut watcher = Watcher::new(settle);
    loop {
        let entries = match service.folders.scan_inbox() {
            Ok(entries) => entries,
            Err(e) => {
                // E.g. an entry removed mid-scan: the next poll sees the rest.
                eprintln!("warning: scanning {}: {e}", service.folders.inbox.display());
                Vec::new()
            }
        };
        let ready = watcher.ready(&entries, Instant::now());
        for path in &ready {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match service.folders.claim(path) {
                Ok(Some(claimed)) => service.handle(&claimed, false),
                Ok(None) => {}
                Err(e) => eprintln!("warning: claiming {}: {e}", path.display()),
            }
        }
        if !ready.is_empty() {
            service.show(Screen::Idle);
        }
        if let Some(smp) = &smp {
            // Each drawn frame is a PNG written and fsynced: only the
            // newest progress of a poll's batch is drawn.
            for event in newest_progress_only(smp.events.try_iter().collect()) {
                let reset = matches!(event, Event::Reset(_));
                service.upgrade_event(event, &args.model);
                if reset {
                    // The SMP server answers the reset now.
                    smp.resets_done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if let (Some(limit), None) = (args.trial_seconds, &args.model.bundle) {
            service.expire_trial(&args.model, limit);
        }
        if args.once || stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms.max(10)));
    }
    Ok(ExitCode::SUCCESS)
}
