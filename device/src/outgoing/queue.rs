//! The on-disk store-and-forward queue of one destination: results wait
//! here, fsynced, from the moment they are made until the destination has
//! answered their C-STORE with success, across restarts and power cuts.
//!
//! Layout: `<root>/<destination key>/pending/<seq>-<kind>-<uid hash>.dcm`
//! (sent in `seq` order) and `failed/` for objects the destination refused
//! for good (kept for an engineer, never dropped). The names carry no
//! identifier: the UID hash is [`tumorxai_shared::dicom::uid_hash`].
//!
//! Idempotence: a result is keyed by its SOP Instance UID. Enqueuing an
//! object whose UID is already pending replaces that file (the same
//! result made again after a restart); one already sent is sent again with
//! the same UID, which a PACS files as the same instance.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tumorxai_shared::dicom::uid_hash;

use crate::results::ResultObject;
use crate::service::{sync_dir, write_atomic};

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("result queue {dir} is full: {used} of {limit} bytes used, {needed} more needed")]
    Full {
        dir: PathBuf,
        used: u64,
        limit: u64,
        needed: u64,
    },
    #[error("result queue {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// One destination's queue.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
    /// Pending and failed objects together stay under this many bytes.
    max_bytes: u64,
}

/// An object waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub path: PathBuf,
    /// "sc" or "sr".
    pub kind: String,
    /// The hash of its SOP Instance UID (the log's name for it).
    pub uid_hash: String,
}

/// `<seq>-<kind>-<uid hash>.dcm` → (seq, kind, uid hash).
fn parse_name(name: &str) -> Option<(u64, &str, &str)> {
    let stem = name.strip_suffix(".dcm")?;
    let mut parts = stem.splitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let hash = parts.next()?;
    (!kind.is_empty() && hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((seq, kind, hash))
}

impl Queue {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Queue {
        Queue {
            dir: dir.into(),
            max_bytes,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pending_dir(&self) -> PathBuf {
        self.dir.join("pending")
    }

    fn failed_dir(&self) -> PathBuf {
        self.dir.join("failed")
    }

    fn io(&self, source: std::io::Error) -> QueueError {
        QueueError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// The queue's objects in `dir`, in sending order (temporary files of
    /// an interrupted write are not objects).
    fn objects_in(dir: &Path) -> std::io::Result<Vec<(u64, Queued, u64)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut objects = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((seq, kind, hash)) = parse_name(&name) else {
                continue;
            };
            let size = entry.metadata().map_or(0, |m| m.len());
            objects.push((
                seq,
                Queued {
                    path: entry.path(),
                    kind: kind.to_string(),
                    uid_hash: hash.to_string(),
                },
                size,
            ));
        }
        objects.sort_by_key(|(seq, _, _)| *seq);
        Ok(objects)
    }

    /// The objects waiting to be sent, oldest first.
    pub fn pending(&self) -> Result<Vec<Queued>, QueueError> {
        Ok(Self::objects_in(&self.pending_dir())
            .map_err(|e| self.io(e))?
            .into_iter()
            .map(|(_, queued, _)| queued)
            .collect())
    }

    /// Objects refused for good, kept in `failed/`.
    pub fn failed(&self) -> Result<Vec<Queued>, QueueError> {
        Ok(Self::objects_in(&self.failed_dir())
            .map_err(|e| self.io(e))?
            .into_iter()
            .map(|(_, queued, _)| queued)
            .collect())
    }

    /// Bytes held (pending and failed).
    pub fn used_bytes(&self) -> Result<u64, QueueError> {
        let mut used = 0u64;
        for dir in [self.pending_dir(), self.failed_dir()] {
            for (_, _, size) in Self::objects_in(&dir).map_err(|e| self.io(e))? {
                used = used.saturating_add(size);
            }
        }
        Ok(used)
    }

    /// Stores `object` for sending, fsynced before this returns. Refuses
    /// (nothing written) when the queue would grow past its bound.
    pub fn enqueue(&self, object: &ResultObject) -> Result<Queued, QueueError> {
        let pending = self.pending_dir();
        std::fs::create_dir_all(&pending).map_err(|e| self.io(e))?;
        let hash = uid_hash(&object.sop_instance_uid);
        let existing = Self::objects_in(&pending).map_err(|e| self.io(e))?;
        let kind = object.kind.name().to_ascii_lowercase();
        if let Some((_, queued, _)) = existing.iter().find(|(_, q, _)| q.uid_hash == hash) {
            // The same result again (a slice re-run after a restart).
            write_atomic(&queued.path, &object.bytes).map_err(|e| self.io(e))?;
            return Ok(queued.clone());
        }
        // Pending sizes from the listing above; failed/ listed once more.
        let failed = Self::objects_in(&self.failed_dir()).map_err(|e| self.io(e))?;
        let used = existing
            .iter()
            .chain(&failed)
            .fold(0u64, |sum, (_, _, size)| sum.saturating_add(*size));
        let needed = object.bytes.len() as u64;
        if used.saturating_add(needed) > self.max_bytes {
            return Err(QueueError::Full {
                dir: self.dir.clone(),
                used,
                limit: self.max_bytes,
                needed,
            });
        }
        let seq = existing
            .last()
            .map_or(1, |(seq, _, _)| seq.saturating_add(1));
        let path = pending.join(format!("{seq:010}-{kind}-{hash}.dcm"));
        write_atomic(&path, &object.bytes).map_err(|e| self.io(e))?;
        Ok(Queued {
            path,
            kind,
            uid_hash: hash,
        })
    }

    /// After the destination's success response: the object leaves.
    pub fn remove(&self, queued: &Queued) -> Result<(), QueueError> {
        match std::fs::remove_file(&queued.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(e)),
        }
        sync_dir(&self.pending_dir()).map_err(|e| self.io(e))
    }

    /// After a refusal for good: the object moves to `failed/`.
    pub fn set_aside(&self, queued: &Queued) -> Result<PathBuf, QueueError> {
        let failed = self.failed_dir();
        std::fs::create_dir_all(&failed).map_err(|e| self.io(e))?;
        let name = queued.path.file_name().unwrap_or_default();
        let target = failed.join(name);
        std::fs::rename(&queued.path, &target).map_err(|e| self.io(e))?;
        sync_dir(&failed).map_err(|e| self.io(e))?;
        sync_dir(&self.pending_dir()).map_err(|e| self.io(e))?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ResultKind;

    fn object(uid: &str, kind: ResultKind, size: usize) -> ResultObject {
        ResultObject {
            kind,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.34".into(),
            sop_instance_uid: uid.into(),
            bytes: vec![7; size],
        }
    }

    #[test]
    fn objects_wait_in_order_under_names_without_identifiers() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path().join("PACS-host-104"), 1 << 20);
        assert!(queue.pending().unwrap().is_empty());
        let a = queue
            .enqueue(&object("1.2.3.4", ResultKind::SecondaryCapture, 10))
            .unwrap();
        let b = queue
            .enqueue(&object("1.2.3.5", ResultKind::StructuredReport, 20))
            .unwrap();
        // sha256("1.2.3.4"), first 8 bytes, computed with sha256sum.
        assert_eq!(a.uid_hash, "6694f83c9f476da3");
        let names: Vec<String> = queue
            .pending()
            .unwrap()
            .iter()
            .map(|q| q.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                format!("0000000001-sc-{}.dcm", a.uid_hash),
                format!("0000000002-sr-{}.dcm", b.uid_hash)
            ]
        );
        assert!(!names.iter().any(|n| n.contains("1.2.3")));
        assert_eq!(queue.used_bytes().unwrap(), 30);
        queue.remove(&a).unwrap();
        assert_eq!(queue.pending().unwrap(), std::slice::from_ref(&b));
        // The next one goes after the last pending one.
        let c = queue
            .enqueue(&object("1.2.3.6", ResultKind::StructuredReport, 5))
            .unwrap();
        assert!(c
            .path
            .ends_with(format!("0000000003-sr-{}.dcm", c.uid_hash)));
    }

    #[test]
    fn the_same_instance_again_replaces_its_pending_file() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path(), 1 << 20);
        let first = queue
            .enqueue(&object("1.2.3.4", ResultKind::StructuredReport, 10))
            .unwrap();
        let again = queue
            .enqueue(&object("1.2.3.4", ResultKind::StructuredReport, 12))
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(queue.pending().unwrap().len(), 1);
        assert_eq!(std::fs::read(&again.path).unwrap().len(), 12);
    }

    #[test]
    fn a_full_queue_refuses_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path(), 100);
        queue
            .enqueue(&object("1.1", ResultKind::StructuredReport, 60))
            .unwrap();
        let refused = queue.enqueue(&object("1.2", ResultKind::StructuredReport, 41));
        match refused {
            Err(QueueError::Full {
                used,
                limit,
                needed,
                ..
            }) => assert_eq!((used, limit, needed), (60, 100, 41)),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(queue.pending().unwrap().len(), 1);
        // Exactly at the bound still fits.
        queue
            .enqueue(&object("1.3", ResultKind::StructuredReport, 40))
            .unwrap();
    }

    #[test]
    fn refused_objects_are_set_aside_not_dropped_and_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path(), 1 << 20);
        let a = queue
            .enqueue(&object("1.1", ResultKind::StructuredReport, 9))
            .unwrap();
        let kept = queue.set_aside(&a).unwrap();
        assert!(kept.exists());
        assert!(queue.pending().unwrap().is_empty());
        assert_eq!(queue.failed().unwrap().len(), 1);
        assert_eq!(queue.used_bytes().unwrap(), 9);
    }

    #[test]
    fn temporary_and_foreign_files_are_not_objects() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path(), 1 << 20);
        std::fs::create_dir_all(dir.path().join("pending")).unwrap();
        for name in [
            ".0000000001-sr-0123456789abcdef.dcm.1-0.tmp",
            "notes.txt",
            "x-sr-0123456789abcdef.dcm",
            "0000000001-sr-short.dcm",
        ] {
            std::fs::write(dir.path().join("pending").join(name), b"x").unwrap();
        }
        assert!(queue.pending().unwrap().is_empty());
    }
}
