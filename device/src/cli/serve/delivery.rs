//! `serve --send-to`: the DICOM results of each slice (a Secondary Capture
//! preview and a Comprehensive 3D SR) queued for every destination before
//! the slice's answer is committed, and the senders' reports turned into
//! log lines, audit entries and the panel's alarm. Also the TLS options of
//! the receiver and the senders.

use super::*;
use tumorxai_device::outgoing::{Client, Destination, Enqueued, Outgoing, QueueError, SendEvent};
use tumorxai_device::results::ResultObject;
use tumorxai_device::tls::TlsFiles;

use crate::cli::triage::default_device_serial;

/// The results of one slice: `None` when none are wanted (no `--send-to`)
/// or the input is no DICOM object a PACS could file them with; `Err` when
/// making them failed.
pub(super) type Results = Option<std::result::Result<Vec<ResultObject>, String>>;

#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// Send each slice's DICOM results (a Secondary Capture preview and a
    /// Comprehensive 3D SR, in the source's study) to this node by
    /// C-STORE: AET@HOST:PORT, or tls://AET@HOST:PORT for DICOM TLS.
    /// Repeatable. Results wait in an on-disk queue (fsynced) until the
    /// node answers success, retried with back-off while it is down and
    /// across restarts. Only slices that came as DICOM get results.
    #[arg(long = "send-to", value_name = "AET@HOST:PORT", value_parser = parse_destination, conflicts_with = "once")]
    pub send_to: Vec<Destination>,
    /// Folder of the result queues (one sub-folder per destination).
    /// Default: the state directory's `outgoing/`.
    #[arg(long, value_name = "DIR", requires = "send_to")]
    pub send_queue: Option<PathBuf>,
    /// Bound of each destination's queue, in MiB. A full queue refuses new
    /// results loudly (log, audit, panel); the slices are still answered.
    #[arg(long, default_value_t = 1024, value_name = "MIB", requires = "send_to")]
    pub send_queue_max_mib: u64,
    /// Device Serial Number written into the results (default: the host
    /// name).
    #[arg(long, default_value_t = default_device_serial())]
    pub device_serial: String,
    /// The DICOM receiver speaks DICOM TLS only, with --tls-cert and
    /// --tls-key as its certificate.
    #[arg(long, requires_all = ["dicom_port", "tls_cert", "tls_key"])]
    pub dicom_tls: bool,
    /// PEM certificate authorities of the receiver's callers: with it, a
    /// caller must present a certificate they issued (mutual TLS).
    #[arg(long, value_name = "PEM", requires = "dicom_tls")]
    pub dicom_tls_client_ca: Option<PathBuf>,
    /// PEM certificate (chain) of this device: the TLS receiver's, and the
    /// client certificate of tls:// sending.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate authorities the tls:// destinations' certificates
    /// must chain to (required for them).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
}

fn parse_destination(text: &str) -> std::result::Result<Destination, String> {
    Destination::parse(text).map_err(|e| e.to_string())
}

impl DeliveryArgs {
    pub(super) fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            client_ca: self.dicom_tls_client_ca.clone(),
        }
    }

    /// The receiver's TLS configuration, when it speaks TLS.
    pub(super) fn receiver_tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>> {
        if !self.dicom_tls {
            return Ok(None);
        }
        Ok(Some(
            self.tls_files()
                .server_config()
                .context("the DICOM TLS receiver")?,
        ))
    }

    /// The senders, started (they first send what earlier runs queued).
    pub(super) fn start(
        &self,
        calling_ae_title: &str,
        state_dir: Option<&Path>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Option<Outgoing>> {
        if self.send_to.is_empty() {
            return Ok(None);
        }
        for (i, destination) in self.send_to.iter().enumerate() {
            if self.send_to[..i].contains(destination) {
                anyhow::bail!("--send-to {destination} is given twice");
            }
        }
        let tls = if self.send_to.iter().any(|d| d.tls) {
            Some(self.tls_files().client_config().context("TLS sending")?)
        } else {
            None
        };
        let root = match &self.send_queue {
            Some(dir) => dir.clone(),
            None => StateDir::resolve(state_dir).root.join("outgoing"),
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the result queue {}", root.display()))?;
        let client = Client {
            calling_ae_title: calling_ae_title.to_string(),
            tls,
            timeout: Duration::from_secs(30),
        };
        let max_bytes = self.send_queue_max_mib.saturating_mul(1 << 20);
        let outgoing = Outgoing::start(&self.send_to, &root, max_bytes, &client, stop)
            .context("starting the result senders")?;
        for (destination, waiting) in outgoing.backlog() {
            eprintln!("sending results to {destination} as {calling_ae_title} ({waiting} queued)");
        }
        Ok(Some(outgoing))
    }
}

/// The results of one slice, on the worker that triaged it.
pub(super) fn make_results(
    model: &LoadedModel,
    device_serial: Option<&str>,
    bytes: &[u8],
    outcome: std::result::Result<&tumorxai_device::pipeline::SliceResult, &str>,
) -> Results {
    let serial = device_serial?;
    if !tumorxai_shared::dicom::is_dicom(bytes) {
        return None;
    }
    let algorithm = tumorxai_device::results::content::Algorithm::of(model, serial);
    Some(
        crate::cli::triage::dicom_results(bytes, outcome, &model.classes, algorithm)
            .map_err(|e| e.to_string()),
    )
}

impl Service {
    fn audit_delivery(&mut self, input_sha256: &str, outcome: Outcome) {
        let entry = AuditEntry {
            time: now_rfc3339(),
            input_sha256: input_sha256.to_string(),
            input_bytes: 0,
            model: self.model_record(),
            outcome,
            recovered: false,
        };
        if let Err(e) = self.audit.append(&entry) {
            eprintln!("error: appending to the audit log: {e:#}");
        }
    }

    /// Queues the results of one slice for every destination (before its
    /// answer is committed). A failure here does not fail the slice: it is
    /// logged, audited and raised on the panel.
    pub(super) fn deliver(&mut self, sha: &str, results: Results) {
        let Some(outgoing) = &self.outgoing else {
            return;
        };
        let id = short_id(sha);
        let objects = match results {
            None => return,
            Some(Ok(objects)) => objects,
            Some(Err(message)) => {
                eprintln!("{id}: warning: no DICOM results: {message}");
                self.audit_delivery(
                    sha,
                    Outcome::Delivery {
                        event: "not_made".into(),
                        destination: String::new(),
                        result: None,
                        result_uid_hash: None,
                        detail: Some(message),
                    },
                );
                return;
            }
        };
        let enqueued = outgoing.enqueue(&objects);
        for Enqueued {
            destination,
            outcome,
        } in enqueued
        {
            let entry = match outcome {
                Ok(queued) => Outcome::Delivery {
                    event: "queued".into(),
                    destination,
                    result: Some(queued.kind),
                    result_uid_hash: Some(queued.uid_hash),
                    detail: None,
                },
                Err(e) => {
                    eprintln!("{id}: error: results not sent to {destination}: {e}");
                    let why = match e {
                        QueueError::Full { .. } => "queue full",
                        QueueError::Io { .. } => "queue not writable",
                    };
                    self.raise(format!("NOT SENT to {destination} ({why})"));
                    Outcome::Delivery {
                        event: "not_queued".into(),
                        destination,
                        result: None,
                        result_uid_hash: None,
                        detail: Some(e.to_string()),
                    }
                }
            };
            self.audit_delivery(sha, entry);
        }
    }

    /// The SR of a slice the service failed on (a worker's panic, an
    /// overlay it could not encode), queued like any result.
    pub(super) fn deliver_not_triaged(&mut self, sha: &str, bytes: &[u8], reason: &str) {
        let results = make_results(
            &self.model,
            self.device_serial.as_deref(),
            bytes,
            Err(reason),
        );
        self.deliver(sha, results);
    }

    /// Counts a result that will not reach a destination and shows it on
    /// the panel for the rest of the service's run: those results are lost
    /// to the PACS (the audit log names them), so the alarm does not clear
    /// when later ones go through.
    fn raise(&mut self, what: String) {
        self.results_lost = self.results_lost.saturating_add(1);
        self.alarm = Some(format!(
            "RESULTS: {} not delivered, last: {what}; see the audit log",
            self.results_lost
        ));
    }

    /// The senders' reports: a log line and an audit entry each.
    pub(super) fn drain_deliveries(&mut self) {
        let events = match &self.outgoing {
            Some(outgoing) => outgoing.events(),
            None => return,
        };
        self.record_deliveries(events);
    }

    /// When the service stops: waits for the senders (each finishes the
    /// C-STORE under way) and records their last reports.
    pub(super) fn finish_deliveries(&mut self) {
        if let Some(outgoing) = self.outgoing.take() {
            let events = outgoing.finish();
            self.record_deliveries(events);
        }
    }

    fn record_deliveries(&mut self, events: Vec<SendEvent>) {
        for event in events {
            let outcome = match event {
                SendEvent::Sent {
                    destination,
                    kind,
                    uid_hash,
                    status,
                    elapsed,
                } => {
                    eprintln!(
                        "sent {kind} {uid_hash} to {destination} (status {status:#06x}, {} ms)",
                        elapsed.as_millis()
                    );
                    Outcome::Delivery {
                        event: "sent".into(),
                        destination,
                        result: Some(kind),
                        result_uid_hash: Some(uid_hash),
                        detail: Some(format!("status {status:#06x}")),
                    }
                }
                SendEvent::Refused {
                    destination,
                    kind,
                    uid_hash,
                    message,
                } => {
                    eprintln!("error: {kind} {uid_hash} refused by {destination}: {message} (kept in the queue's failed/)");
                    self.raise(format!("refused by {destination}"));
                    Outcome::Delivery {
                        event: "refused".into(),
                        destination,
                        result: Some(kind),
                        result_uid_hash: Some(uid_hash),
                        detail: Some(message),
                    }
                }
                SendEvent::Unreachable {
                    destination,
                    message,
                    pending,
                    retry_in,
                } => {
                    eprintln!(
                        "warning: {message}; {pending} result(s) queued, retrying in {} s",
                        retry_in.as_secs()
                    );
                    Outcome::Delivery {
                        event: "unreachable".into(),
                        destination,
                        result: None,
                        result_uid_hash: None,
                        detail: Some(message),
                    }
                }
                SendEvent::QueueFailed {
                    destination,
                    message,
                } => {
                    eprintln!("error: result queue of {destination}: {message}");
                    Outcome::Delivery {
                        event: "queue_failed".into(),
                        destination,
                        result: None,
                        result_uid_hash: None,
                        detail: Some(message),
                    }
                }
            };
            self.audit_delivery("", outcome);
        }
    }
}
