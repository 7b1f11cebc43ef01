//! Append-only audit log: one JSON object per line for every scan the device
//! handled (input SHA-256 and size, model id/version/bundle hash, outputs,
//! flag, timings, timestamps — never pixel data, and never the file name,
//! which gateways often build from the patient's name or ID; the content
//! hash identifies the scan), each line fsynced before
//! the scan counts as done, rotated by size (`audit.jsonl` →
//! `audit.1.jsonl` … `audit.N.jsonl`, the oldest dropped).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::pipeline::Timings;
use crate::triage::Triage;

#[derive(Debug, Clone, Serialize)]
pub struct ModelRecord {
    pub model_id: String,
    pub version: String,
    pub bundle_sha256: String,
    pub execution_form: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Triaged {
        // Boxed: the triage is most of the entry (clippy's large variant).
        triage: Box<Triage>,
        /// Raw logits, for later review of the decision.
        logits: Vec<f32>,
        timings_ms: Timings,
    },
    Error {
        message: String,
    },
    /// A model upgrade step over SMP (upload staged or refused, test or
    /// confirm, activation, revert); `input_sha256` is the bundle's when
    /// one is concerned.
    Upgrade {
        event: String,
    },
    /// A DICOM result on its way to a destination (`serve --send-to`):
    /// `event` is `queued`, `not_queued`, `not_made`, `sent`, `refused`,
    /// `unreachable` or `queue_failed`. The result is named by the hash of its SOP Instance
    /// UID; `input_sha256` is the slice's where known (queuing), empty for
    /// the sender's later events.
    Delivery {
        event: String,
        destination: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        result_uid_hash: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// The panel's and the log's name for a scan: the first 8 hex digits of its
/// content hash, never its file name.
pub fn short_id(sha256_hex: &str) -> String {
    format!("scan {}", sha256_hex.get(..8).unwrap_or(sha256_hex))
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC time the entry was written.
    pub time: String,
    /// Content hash: what identifies the scan here (and, shortened by
    /// [`short_id`], on the panel).
    pub input_sha256: String,
    pub input_bytes: u64,
    pub model: ModelRecord,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Set when the scan was re-run after a restart found it unfinished.
    pub recovered: bool,
}

pub struct AuditLog {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
}

impl AuditLog {
    /// A log in `dir` rotated past `max_bytes`, keeping `keep` old files.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(dir)?;
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
        })
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.dir.join(format!("audit.{n}.jsonl"))
    }

    /// Appends `entry` as one line and fsyncs it.
    pub fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let current = self.current();
        let size = std::fs::metadata(&current).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)?;
        file.write_all(&line)?;
        file.sync_data()?;
        Ok(())
    }

    fn rotate(&self) -> std::io::Result<()> {
        let oldest = self.rotated(self.keep);
        if oldest.exists() {
            std::fs::remove_file(&oldest)?;
        }
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(self.current(), self.rotated(1))?;
        // Make the renames durable before new lines go to a fresh file.
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            time: "2026-11-27T00:00:00Z".into(),
            input_sha256: format!("{i:02}").repeat(32),
            input_bytes: 10,
            model: ModelRecord {
                model_id: "m".into(),
                version: "1.0.0".into(),
                bundle_sha256: "cd".repeat(32),
                execution_form: "dequantized".into(),
            },
            outcome: Outcome::Error {
                message: "corrupt".into(),
            },
            recovered: false,
        }
    }

    #[test]
    fn lines_are_json_and_rotation_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let one_line = serde_json::to_vec(&entry(0)).unwrap().len() as u64 + 1;
        let mut log = AuditLog::open(dir.path(), 3 * one_line, 2).unwrap();
        for i in 0..10 {
            log.append(&entry(i)).unwrap();
        }
        let current = std::fs::read_to_string(log.current()).unwrap();
        let lines: Vec<serde_json::Value> = current
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // 10 entries, 3 per file: current holds the 10th alone, .1 the 7th–9th.
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["input_sha256"], "09".repeat(32));
        assert!(lines[0].get("input_name").is_none(), "no file names");
        assert_eq!(lines[0]["outcome"], "error");
        let first = std::fs::read_to_string(dir.path().join("audit.1.jsonl")).unwrap();
        assert_eq!(first.lines().count(), 3);
        assert!(first.contains(&"06".repeat(32)) && first.contains(&"08".repeat(32)));
        assert!(dir.path().join("audit.2.jsonl").exists());
        assert!(!dir.path().join("audit.3.jsonl").exists());
    }

    #[test]
    fn short_ids_come_from_the_hash() {
        assert_eq!(short_id(&"1a2b3c4d".repeat(8)), "scan 1a2b3c4d");
        assert_eq!(short_id("abc"), "scan abc");
    }
}
