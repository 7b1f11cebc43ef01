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

mod answer;
mod delivery;
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
    /// This device's application entity title: what the scanner calls,
    /// and the calling AE title of the results sent (--send-to).
    #[arg(long, default_value = "TUMORXAI", value_parser = parse_ae_title)]
    ae_title: String,
    /// Accept associations only from this calling AE title (repeatable:
    /// the scanners and PACS nodes allowed to push). Others are rejected in
    /// the association (A-ASSOCIATE-RJ) and logged; nothing of theirs is
    /// stored. Without it, any caller that calls --ae-title.
    #[arg(long = "allow-calling-ae", value_name = "AET", requires = "dicom_port", value_parser = parse_ae_title)]
    allow_calling_ae: Vec<String>,
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
    /// Slices of a series triaged at once, each by its own worker sharing
    /// the one loaded model; answers, audit entries and the panel keep the
    /// order of arrival. Default: the CPUs available. With --threads > 1
    /// each worker's matrix products use that many threads as well.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
    #[command(flatten)]
    delivery: delivery::DeliveryArgs,
}

/// An AE title as DICOM defines it: 1–16 characters of printable ASCII
/// without backslash (PS3.5 6.2, VR AE), not only spaces.
fn parse_ae_title(text: &str) -> Result<String, String> {
    if tumorxai_device::outgoing::destination::valid_ae_title(text) {
        Ok(text.trim().to_string())
    } else {
        Err(format!(
            "{text:?}: an AE title has 1 to 16 characters of printable ASCII without backslash"
        ))
    }
}

/// One worker per CPU available to this process.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

struct Service {
    /// Shared with the workers of a series (read-only); replaced whole on a
    /// model reload.
    model: Arc<LoadedModel>,
    folders: Folders,
    audit: AuditLog,
    display: Display,
    thresholds: Thresholds,
    /// The result senders (`--send-to`).
    outgoing: Option<tumorxai_device::outgoing::Outgoing>,
    /// Device Serial Number of the results; `None`: no results are made.
    device_serial: Option<String>,
    /// Shown instead of the idle screen once results could not be
    /// delivered (queue full, refused by a destination).
    alarm: Option<String>,
    /// How many results will not reach a destination.
    results_lost: u64,
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

    /// The idle screen, or the alarm once results were not delivered.
    fn show_idle(&self) {
        match &self.alarm {
            Some(message) => self.show(Screen::Error {
                message: message.clone(),
            }),
            None => self.show(Screen::Idle),
        }
    }

    fn show(&self, screen: Screen) {
        let png = self.folders.outbox.join("display.png");
        if let Err(e) = self.display.show(&frame(screen, &self.model), &png) {
            eprintln!("warning: display: {e:#}");
        }
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
        model: Arc::new(model),
        audit: AuditLog::open(&audit_dir, args.audit_max_bytes, args.audit_keep)
            .with_context(|| format!("opening audit log in {}", audit_dir.display()))?,
        display: Display::open(&args.policy)?,
        thresholds: args.policy.thresholds(),
        folders,
        outgoing: None,
        device_serial: (!args.delivery.send_to.is_empty())
            .then(|| args.delivery.device_serial.clone()),
        alarm: None,
        results_lost: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    service.outgoing =
        args.delivery
            .start(&args.ae_title, args.model.state_dir.as_deref(), &stop)?;
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
            allowed_callers: args.allow_calling_ae.clone(),
            inbox: args.inbox.clone(),
            timeout: Duration::from_secs(30),
            tls: args.delivery.receiver_tls()?,
        };
        eprintln!(
            "DICOM storage receiver {} on {}{}",
            args.ae_title,
            listener.local_addr()?,
            if config.tls.is_some() {
                " (DICOM TLS)"
            } else {
                ""
            }
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
    let workers = args.workers.map_or_else(default_workers, usize::from);
    eprintln!("triaging with {workers} worker(s)");
    let unfinished = service.folders.unfinished()?;
    let folders = service.folders.clone();
    service.process(
        workers,
        unfinished.into_iter().map(|claimed| {
            eprintln!("recovering {}", claimed.display());
            answer::prepare(&folders, claimed, true)
        }),
    );
    service.show_idle();
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
        // Claimed lazily, in name order, while earlier slices are triaged;
        // a stop request ends the claiming, the claimed ones are answered.
        let claims = ready
            .iter()
            .take_while(|_| !stop.load(Ordering::SeqCst))
            .filter_map(|path| match folders.claim(path) {
                Ok(Some(claimed)) => Some(answer::prepare(&folders, claimed, false)),
                Ok(None) => None,
                Err(e) => {
                    eprintln!("warning: claiming {}: {e}", path.display());
                    None
                }
            });
        service.process(workers, claims);
        if !ready.is_empty() {
            service.show_idle();
        }
        service.drain_deliveries();
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
    // The result senders stop with the rest; their last reports are
    // audited before the service exits.
    stop.store(true, Ordering::SeqCst);
    service.finish_deliveries();
    Ok(ExitCode::SUCCESS)
}
