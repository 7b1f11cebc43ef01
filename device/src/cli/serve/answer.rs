//! One claimed slice through the service, in three parts so that a series
//! can be triaged by several workers while it is answered in arrival order:
//! [`prepare`] (read, hash, answer name: on the thread that claims),
//! [`compute`] (triage and the overlay's PNG: on a worker, the model shared
//! read-only) and [`Service::commit`] (overlay, audit, answer, archive,
//! panel: on the service's thread, one slice after the other).

use super::*;
use tumorxai_device::ordered::{map_in_order, WorkerPanic};
use tumorxai_device::pipeline::SliceResult;

use super::delivery::{make_results, Results};

/// A claimed file, read and named.
pub(super) struct Claim {
    claimed: PathBuf,
    recovered: bool,
    sha: String,
    /// Why the file cannot be triaged (unreadable, too large, its answer
    /// name not recordable): it then gets an error answer.
    prepared: Result<Prepared>,
}

enum Prepared {
    /// Answered before a crash: only the archiving is left.
    Answered,
    Triage {
        bytes: Vec<u8>,
        stem: String,
    },
}

/// What a worker made of a claim.
enum Computed {
    Triaged {
        result: Box<SliceResult>,
        overlay_png: Vec<u8>,
        results: Results,
    },
    /// The slice's own failure (undecodable, refused): an error answer,
    /// and an SR saying it was not triaged.
    Refused { message: String, results: Results },
    /// The service's failure (the overlay not encodable): recorded as such.
    Failed(String),
}

/// Step 2 for one claimed file (see the `service` module).
pub(super) fn prepare(folders: &Folders, claimed: PathBuf, recovered: bool) -> Claim {
    let bytes = read_bounded(&claimed);
    let sha = sha256_hex(bytes.as_deref().unwrap_or_default());
    let prepared = bytes.and_then(|bytes| {
        if recovered {
            if let Some(stem) = Folders::recorded_answer(&claimed) {
                if folders.outbox.join(format!("{stem}.json")).exists() {
                    return Ok(Prepared::Answered);
                }
            }
        }
        let stem = match Folders::recorded_answer(&claimed) {
            Some(stem) if recovered => stem,
            _ => folders
                .record_answer(&claimed, &sha)
                .context("recording the answer name")?,
        };
        Ok(Prepared::Triage { bytes, stem })
    });
    Claim {
        claimed,
        recovered,
        sha,
        prepared,
    }
}

/// Step 3 on a worker: the triage, the overlay's PNG and, with
/// `device_serial` (results wanted), the DICOM results.
fn compute(
    model: &LoadedModel,
    thresholds: Thresholds,
    device_serial: Option<&str>,
    claim: &Claim,
) -> Option<Computed> {
    let Ok(Prepared::Triage { bytes, .. }) = &claim.prepared else {
        return None;
    };
    Some(match run_slice(model, bytes, thresholds) {
        Ok(result) => match png_bytes(&result.overlay) {
            Ok(overlay_png) => Computed::Triaged {
                results: make_results(model, device_serial, bytes, Ok(&result)),
                result: Box::new(result),
                overlay_png,
            },
            Err(e) => Computed::Failed(format!("encoding the overlay: {e:#}")),
        },
        Err(e) => {
            let message = e.to_string();
            Computed::Refused {
                results: make_results(model, device_serial, bytes, Err(&message)),
                message,
            }
        }
    })
}

impl Service {
    /// Triages `claims` with `workers` workers and answers each in the
    /// order the claims came.
    pub(super) fn process(&mut self, workers: usize, claims: impl Iterator<Item = Claim> + Send) {
        let thresholds = self.thresholds;
        // One optimised plan, shared read-only by the workers.
        let model = Arc::clone(&self.model);
        let serial = self.device_serial.clone();
        map_in_order(
            workers,
            claims,
            |claim| compute(&model, thresholds, serial.as_deref(), claim),
            |claim, computed| self.answer(claim, computed),
        );
    }

    /// Steps 3–5 for one claim. A failure here (the file renamed away, a
    /// full disk, an unwritable archive) is this file's alone: it gets an
    /// error answer and an audit entry where those can still be written,
    /// and the service goes on with the next file.
    ///
    /// Privacy: file names from gateways often carry patient names or IDs.
    /// The panel, the audit log and the service's own output name a scan by
    /// its content hash ([`short_id`]); only the outbox answer, beside the
    /// file it answers, carries the name.
    fn answer(&mut self, claim: Claim, computed: Result<Option<Computed>, WorkerPanic>) {
        let Claim {
            claimed,
            recovered,
            sha,
            prepared,
        } = claim;
        let result = match (prepared, computed) {
            (Err(e), _) => Err(e),
            (Ok(Prepared::Answered), _) => self
                .folders
                .archive(&claimed, &sha)
                .map(drop)
                .context("archiving the input"),
            // The service's own failures are results too: the PACS learns
            // that the slice was not triaged, and why.
            (Ok(Prepared::Triage { bytes, .. }), Ok(Some(Computed::Failed(message)))) => {
                self.deliver_not_triaged(&sha, &bytes, &message);
                Err(anyhow::anyhow!(message))
            }
            (Ok(Prepared::Triage { bytes, .. }), Err(panic)) => {
                let err = anyhow::Error::new(panic);
                self.deliver_not_triaged(&sha, &bytes, &format!("{err:#}"));
                Err(err)
            }
            (Ok(Prepared::Triage { bytes, stem }), Ok(Some(computed))) => self.commit(
                &claimed,
                &sha,
                bytes.len() as u64,
                &stem,
                computed,
                recovered,
            ),
            (Ok(Prepared::Triage { .. }), Ok(None)) => {
                Err(anyhow::anyhow!("internal error: the slice was not triaged"))
            }
        };
        if let Err(err) = result {
            let id = short_id(&sha);
            let message = format!("{err:#}");
            eprintln!("{id}: error: {message}");
            self.show(Screen::Error {
                message: format!("{id}: {message}"),
            });
            if let Err(e) = self.record_failure(&claimed, &sha, &message, recovered) {
                eprintln!("{id}: could not record the failure: {e:#}");
            }
        }
    }

    /// The overlay, the DICOM results queued (fsynced), the audit entry
    /// (fsynced), the answer (the commit point), the archive.
    fn commit(
        &mut self,
        claimed: &Path,
        sha: &str,
        size: u64,
        stem: &str,
        computed: Computed,
        recovered: bool,
    ) -> Result<()> {
        let name = file_name(claimed);
        let id = short_id(sha);
        let (json, outcome) = match computed {
            Computed::Triaged {
                result,
                overlay_png,
                results,
            } => {
                let overlay = self.folders.outbox.join(format!("{stem}-overlay.png"));
                write_atomic(&overlay, &overlay_png).context("writing the overlay")?;
                println!("{id}: {}", result.triage.flag.banner());
                self.show(result_screen(&id, &result));
                let json = answer_json(&name, &self.model, &result);
                self.deliver(sha, results);
                let SliceResult {
                    triage,
                    logits,
                    timings,
                    ..
                } = *result;
                (
                    json,
                    Outcome::Triaged {
                        triage: Box::new(triage),
                        logits,
                        timings_ms: timings,
                    },
                )
            }
            Computed::Refused { message, results } => {
                eprintln!("{id}: error: {message}");
                self.deliver(sha, results);
                self.show(Screen::Error {
                    message: format!("{id}: {message}"),
                });
                (
                    serde_json::json!({ "file": name, "error": message, "not_for_diagnostic_use": true }),
                    Outcome::Error { message },
                )
            }
            Computed::Failed(message) => anyhow::bail!(message),
        };
        self.audit
            .append(&AuditEntry {
                time: now_rfc3339(),
                input_sha256: sha.to_string(),
                input_bytes: size,
                model: self.model_record(),
                outcome,
                recovered,
            })
            .context("appending to the audit log")?;
        write_atomic(
            &self.folders.outbox.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )
        .context("writing the answer")?;
        self.folders
            .archive(claimed, sha)
            .context("archiving the input")?;
        Ok(())
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
}
