//! The inbox service: scans dropped into a folder by the scanner or a DICOM
//! gateway are picked up only when complete, triaged, answered in the outbox
//! (JSON + overlay PNG), logged in the audit log, and archived.
//!
//! Completeness: a file is ready when its name does not mark it as in
//! progress (hidden, or ending in `.part`, `.partial`, `.tmp` — the
//! write-then-rename convention) and its size and modification time have
//! not changed for the settle time (for writers that do not rename).
//!
//! Crash safety, step by step for one file:
//! 1. claim: rename `inbox/x` → `inbox/.processing/x` (atomic; a restart
//!    finds unfinished claims there and finishes them first);
//! 2. if the outbox already holds the answer for this content (a crash after
//!    step 4), skip to 5;
//! 3. triage, write the overlay, append the audit entry (fsynced);
//! 4. write `outbox/<stem>-<sha12>.json` atomically: the commit point;
//! 5. move the input to `archive/`.
//!
//! So no file is lost, and none is answered twice; a crash between 3 and 4
//! repeats the audit entry, marked `recovered`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// What the watcher knows of one inbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub size: u64,
    pub modified: SystemTime,
}

/// Decides which inbox files are complete. Pure: it is told what the folder
/// holds and the time, and remembers when each file last changed.
#[derive(Debug, Default)]
pub struct Watcher {
    settle: Duration,
    seen: HashMap<PathBuf, (Observation, Instant)>,
}

/// Names the write-then-rename convention uses for files still being written.
pub fn in_progress_name(name: &str) -> bool {
    name.starts_with('.')
        || [".part", ".partial", ".tmp"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

impl Watcher {
    pub fn new(settle: Duration) -> Watcher {
        Watcher {
            settle,
            seen: HashMap::new(),
        }
    }

    /// The entries ready now, in name order.
    pub fn ready(&mut self, entries: &[(PathBuf, Observation)], now: Instant) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        let mut next = HashMap::new();
        for (path, observation) in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if in_progress_name(&name) {
                continue;
            }
            let since = match self.seen.get(path) {
                Some((previous, since)) if previous == observation => *since,
                _ => now,
            };
            if now.duration_since(since) >= self.settle {
                ready.push(path.clone());
            }
            next.insert(path.clone(), (*observation, since));
        }
        self.seen = next;
        ready.sort();
        ready
    }
}

/// The service's folders.
#[derive(Debug, Clone)]
pub struct Folders {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub archive: PathBuf,
}

impl Folders {
    pub fn processing(&self) -> PathBuf {
        self.inbox.join(".processing")
    }

    pub fn create(&self) -> std::io::Result<()> {
        for dir in [&self.inbox, &self.outbox, &self.archive, &self.processing()] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// Regular files directly in the inbox, with size and modification time.
    pub fn scan_inbox(&self) -> std::io::Result<Vec<(PathBuf, Observation)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.inbox)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() {
                out.push((
                    entry.path(),
                    Observation {
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Claimed files a previous run did not finish.
    pub fn unfinished(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.processing())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Step 1: moves an inbox file into `.processing`; `None` if it vanished.
    pub fn claim(&self, path: &Path) -> std::io::Result<Option<PathBuf>> {
        let Some(name) = path.file_name() else {
            return Ok(None);
        };
        let to = self.processing().join(name);
        match std::fs::rename(path, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Step 5: moves a claimed file to the archive (never overwriting).
    pub fn archive(&self, claimed: &Path, sha256: &str) -> std::io::Result<PathBuf> {
        let name = claimed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scan".into());
        let mut to = self.archive.join(&name);
        if to.exists() {
            to = self.archive.join(format!("{}-{name}", &sha256[..12]));
        }
        std::fs::rename(claimed, &to)?;
        Ok(to)
    }

    /// Outbox stem for an input: its file stem and the first 12 hex digits
    /// of its SHA-256, so equal names with different contents never collide.
    pub fn result_stem(claimed: &Path, sha256: &str) -> String {
        let stem = claimed
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scan".into());
        format!("{stem}-{}", &sha256[..12])
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` via a temporary file and rename, fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(size: u64, secs: u64) -> Observation {
        Observation {
            size,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn files_are_ready_once_stable_for_the_settle_time() {
        let mut w = Watcher::new(Duration::from_millis(500));
        let t0 = Instant::now();
        let a = PathBuf::from("in/a.png");
        assert!(w.ready(&[(a.clone(), obs(10, 1))], t0).is_empty());
        // Still growing: the clock restarts.
        let t1 = t0 + Duration::from_millis(400);
        assert!(w.ready(&[(a.clone(), obs(20, 2))], t1).is_empty());
        let t2 = t1 + Duration::from_millis(499);
        assert!(w.ready(&[(a.clone(), obs(20, 2))], t2).is_empty());
        let t3 = t1 + Duration::from_millis(500);
        assert_eq!(w.ready(&[(a.clone(), obs(20, 2))], t3), vec![a]);
    }

    #[test]
    fn in_progress_names_are_never_ready() {
        let mut w = Watcher::new(Duration::ZERO);
        let now = Instant::now();
        let entries: Vec<(PathBuf, Observation)> =
            [".upload.png", "b.png.part", "c.tmp", "d.partial", "e.png"]
                .iter()
                .map(|n| (PathBuf::from(n), obs(1, 1)))
                .collect();
        assert_eq!(w.ready(&entries, now), vec![PathBuf::from("e.png")]);
    }

    #[test]
    fn claim_archive_and_names() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Folders {
            inbox: tmp.path().join("in"),
            outbox: tmp.path().join("out"),
            archive: tmp.path().join("archive"),
        };
        f.create().unwrap();
        let scan = f.inbox.join("s.png");
        std::fs::write(&scan, b"x").unwrap();
        let claimed = f.claim(&scan).unwrap().unwrap();
        assert!(!scan.exists() && claimed.exists());
        assert_eq!(f.unfinished().unwrap(), vec![claimed.clone()]);
        assert!(f.claim(&scan).unwrap().is_none(), "gone: nothing to claim");
        let sha = sha256_hex(b"x");
        assert_eq!(
            Folders::result_stem(&claimed, &sha),
            format!("s-{}", &sha[..12])
        );
        let first = f.archive(&claimed, &sha).unwrap();
        assert_eq!(first, f.archive.join("s.png"));
        std::fs::write(&claimed, b"x").unwrap();
        let second = f.archive(&claimed, &sha).unwrap();
        assert_ne!(first, second, "an archived file is never overwritten");
        assert!(f.unfinished().unwrap().is_empty());
    }
}
