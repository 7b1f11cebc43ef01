//! The serve command's side of model upgrades: the SMP thread on the
//! serial port, what its events do to the running service (panel, audit,
//! reload), slot reloads at start and on reset, and trial time limits.

use super::*;

impl Service {
    /// What the SMP server did: shown, audited, and a reset reloads.
    pub(super) fn upgrade_event(&mut self, event: Event, args: &ModelArgs) {
        let audit = |service: &mut Service, text: String, sha: &str| {
            eprintln!("model upgrade: {text}");
            if let Err(e) = service.audit.append(&upgrade_entry(text, sha)) {
                eprintln!("warning: audit log: {e:#}");
            }
        };
        match event {
            Event::None => {}
            Event::Progress { done, total } => self.show(Screen::Flashing {
                stage: "RECEIVING MODEL".into(),
                done,
                total,
            }),
            Event::Staged(info) => {
                audit(
                    self,
                    format!(
                        "{} {} verified and staged: test it and reset to run it",
                        info.model_id, info.version
                    ),
                    &info.bundle_sha256,
                );
                self.show(Screen::Flashing {
                    stage: format!("STAGED {} {}", info.model_id, info.version),
                    done: 1,
                    total: 1,
                });
            }
            Event::Refused(reason) => {
                audit(self, format!("refused: {reason}"), "");
                self.show(Screen::Error {
                    message: format!("model upload refused: {reason}"),
                });
            }
            Event::Marked => audit(self, "image state changed (test or confirm)".into(), ""),
            Event::Reset(reloaded) => {
                report_reload(&reloaded, Some(&mut self.audit));
                self.reload(args, audit);
            }
        }
    }

    /// `--trial-seconds`: a trial past its time reverts and the fallback
    /// is loaded.
    pub(super) fn expire_trial(&mut self, args: &ModelArgs, limit: u64) {
        let state = StateDir::resolve(args.state_dir.as_deref());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match state.expire_trial(now, limit) {
            Ok(None) => {}
            Ok(Some(fallback)) => {
                let event =
                    format!("trial not confirmed within {limit} s: reverted to slot {fallback}");
                eprintln!("model slots: {event}");
                if let Err(e) = self.audit.append(&upgrade_entry(event, "")) {
                    eprintln!("warning: audit log: {e:#}");
                }
                self.reload(args, |service, text, sha| {
                    eprintln!("model upgrade: {text}");
                    if let Err(e) = service.audit.append(&upgrade_entry(text, sha)) {
                        eprintln!("warning: audit log: {e:#}");
                    }
                });
            }
            Err(e) => eprintln!("warning: checking the trial's time: {e:#}"),
        }
    }

    fn reload(&mut self, args: &ModelArgs, audit: impl Fn(&mut Service, String, &str)) {
        match load_active(args, Some(&mut self.audit)) {
            Ok(model) => {
                self.model = Arc::new(model);
                audit(
                    self,
                    format!(
                        "reloaded: {} {} running",
                        self.model.manifest.model_id, self.model.manifest.version
                    ),
                    &self.model.bundle_sha256.clone(),
                );
                self.show_idle();
            }
            // The model in memory was verified when it was loaded: it
            // keeps serving rather than leaving the scanner without one.
            Err(e) => audit(
                self,
                format!("reload failed ({e:#}); the previous model keeps running"),
                "",
            ),
        }
    }
}

/// Logs (and audits, when the log is open) what a slots reload did.
pub(super) fn report_reload(reloaded: &Reloaded, audit: Option<&mut AuditLog>) {
    let event = match reloaded {
        Reloaded::Unchanged => return,
        Reloaded::Activated { slot, trial } => format!(
            "slot {slot} activated{}",
            if *trial {
                " on trial (confirm it, or the next reload reverts it)"
            } else {
                ""
            }
        ),
        Reloaded::Reverted { from, to } => {
            format!("trial of slot {from} not confirmed: reverted to slot {to}")
        }
        Reloaded::PendingRefused { slot } => format!(
            "pending slot {slot} is damaged or older than the confirmed model: not activated"
        ),
    };
    eprintln!("model slots: {event}");
    if let Some(audit) = audit {
        if let Err(e) = audit.append(&upgrade_entry(event, "")) {
            eprintln!("warning: audit log: {e:#}");
        }
    }
}

/// Loads the active model. A trial model that fails to load is reverted at
/// once and the fallback loaded instead; a model that loads ends a trial
/// confirmed in advance. `--bundle` runs bypass the slots.
pub(super) fn load_active(args: &ModelArgs, audit: Option<&mut AuditLog>) -> Result<LoadedModel> {
    if args.bundle.is_some() {
        return load_model(args);
    }
    let state = StateDir::resolve(args.state_dir.as_deref());
    match load_model(args) {
        Ok(model) => {
            state.loaded().context("recording the model's load")?;
            Ok(model)
        }
        Err(e) => match state.revert().context("reverting the trial")? {
            Some(fallback) => {
                let event =
                    format!("trial model failed to load ({e:#}): reverted to slot {fallback}");
                eprintln!("model slots: {event}");
                if let Some(audit) = audit {
                    if let Err(e) = audit.append(&upgrade_entry(event, "")) {
                        eprintln!("warning: audit log: {e:#}");
                    }
                }
                load_model(args)
            }
            None => Err(e),
        },
    }
}

pub(super) fn upgrade_entry(event: String, sha: &str) -> AuditEntry {
    AuditEntry {
        time: now_rfc3339(),
        input_sha256: sha.to_string(),
        input_bytes: 0,
        model: ModelRecord {
            model_id: String::new(),
            version: String::new(),
            bundle_sha256: String::new(),
            execution_form: String::new(),
        },
        outcome: Outcome::Upgrade { event },
        recovered: false,
    }
}

/// How long a reset's answer waits for the service to reload (it may be
/// busy with a scan).
const RESET_ANSWER_WAIT: Duration = Duration::from_secs(60);

/// The SMP server's side of the service: its events, and the count of
/// resets the service has acted on (the server answers a reset once that
/// count moves).
pub(super) struct SmpLink {
    pub events: mpsc::Receiver<Event>,
    pub resets_done: Arc<AtomicU64>,
}

/// Starts the SMP server on `path` in its own thread.
pub(super) fn start_smp(
    path: &Path,
    baud: u32,
    args: &ModelArgs,
    stop: Arc<AtomicBool>,
) -> Result<SmpLink> {
    let name = path.to_string_lossy().into_owned();
    let open = move || {
        let port = serialport::new(&name, baud)
            .timeout(Duration::from_millis(100))
            .open()?;
        // Requests queued while the service was down (a reset among them)
        // were meant for the process that died: dropped, their clients
        // retry.
        let _ = port.clear(serialport::ClearBuffer::Input);
        Ok::<_, serialport::Error>(port)
    };
    let mut port = open().with_context(|| format!("opening serial port {}", path.display()))?;
    let state = StateDir::resolve(args.state_dir.as_deref());
    let mut server = SmpServer::new(state, args.form, now_rfc3339);
    let (sender, receiver) = mpsc::channel();
    let shown = path.display().to_string();
    eprintln!("SMP server on {shown} at {baud} baud");
    let resets_done = Arc::new(AtomicU64::new(0));
    let done = resets_done.clone();
    // Each reset gets a ticket: its answer waits until the service has
    // handled every reset up to its own, so a reset whose wait timed out
    // cannot release the answer to a later one early.
    let mut resets_sent: u64 = 0;
    std::thread::spawn(move || loop {
        let send = |event: Event| {
            let reset = matches!(event, Event::Reset(_));
            if sender.send(event).is_err() || !reset {
                return;
            }
            resets_sent = resets_sent.saturating_add(1);
            let ticket = resets_sent;
            let deadline = Instant::now() + RESET_ANSWER_WAIT;
            while done.load(Ordering::SeqCst) < ticket
                && Instant::now() < deadline
                && !stop.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let log = |line: String| eprintln!("{line}");
        match run_transport(&mut port, &mut server, &stop, send, log) {
            Ok(()) => return,
            // E.g. a USB serial adapter unplugged: keep trying to re-open
            // it, so the unit stays manageable without a restart.
            Err(e) => {
                eprintln!("warning: SMP port {shown}: {e}; re-opening");
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(2));
                    if let Ok(reopened) = open() {
                        port = reopened;
                        break;
                    }
                }
            }
        }
    });
    Ok(SmpLink {
        events: receiver,
        resets_done,
    })
}
