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
//! 2. choose the answer's name — `<stem>-<sha12>`, numbered when that
//!    content was answered before, so a scan dropped again gets its own
//!    answer — and record it beside the claim (`.processing/.x.answer`);
//!    a restart that finds the recorded answer in the outbox skips to 5;
//! 3. triage, write the overlay, append the audit entry (fsynced);
//! 4. write `outbox/<name>.json` atomically: the commit point;
//! 5. move the input to `archive/` (never overwriting; across filesystems
//!    by copy, fsync, link and unlink), then drop the record.
//!
//! So no file is lost, and none is answered twice; a crash between 3 and 4
//! repeats the audit entry, marked `recovered`. One service per inbox: a
//! second instance is refused by a lock file (`inbox/.tumorxai.lock`).

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
            // An entry renamed away between the listing and the look is gone:
            // skip it, the next poll sees the folder as it is then.
            let Ok(meta) = entry.and_then(|e| e.metadata().map(|m| (e.path(), m))) else {
                continue;
            };
            let (path, meta) = meta;
            if meta.is_file() {
                out.push((
                    path,
                    Observation {
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Claimed files a previous run did not finish (their answer records,
    /// hidden files, are not claims).
    pub fn unfinished(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.processing())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Takes the inbox for this process: `Ok(None)` when another instance
    /// holds it. The lock lasts as long as the returned file is open (and
    /// dies with the process, whatever kills it).
    pub fn lock(&self) -> std::io::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.inbox.join(".tumorxai.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn answer_record(claimed: &Path) -> PathBuf {
        let name = claimed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        claimed.with_file_name(format!(".{name}.answer"))
    }

    /// Step 2: the answer name recorded for this claim by an earlier run.
    pub fn recorded_answer(claimed: &Path) -> Option<String> {
        let text = std::fs::read_to_string(Folders::answer_record(claimed)).ok()?;
        let stem = text.trim();
        // Only a plain name (what `record_answer` writes) is trusted.
        let plain = !stem.is_empty() && !stem.contains(['/', '\\']) && !stem.starts_with('.');
        plain.then(|| stem.to_string())
    }

    /// Step 2: a fresh answer name for this content — `<stem>-<sha12>`, or
    /// `…-2`, `…-3` when earlier drops of it were answered — recorded
    /// beside the claim.
    pub fn record_answer(&self, claimed: &Path, sha256: &str) -> std::io::Result<String> {
        let base = Folders::result_stem(claimed, sha256);
        let mut stem = base.clone();
        let mut n = 2;
        while self.outbox.join(format!("{stem}.json")).exists() {
            stem = format!("{base}-{n}");
            n += 1;
        }
        write_atomic(&Folders::answer_record(claimed), stem.as_bytes())?;
        Ok(stem)
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

    /// Step 5: moves a claimed file to the archive, never overwriting: the
    /// first free name of `x`, `<sha12>-x`, `<sha12>-2-x`, … is taken with a
    /// hard link (which fails rather than replace), then the claim is
    /// unlinked. An archive on another filesystem (EXDEV) gets a fsynced
    /// copy instead. The answer record goes last.
    pub fn archive(&self, claimed: &Path, sha256: &str) -> std::io::Result<PathBuf> {
        let name = claimed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scan".into());
        let short = sha256.get(..12).unwrap_or(sha256);
        let mut staged: Option<PathBuf> = None;
        let mut result = Err(std::io::Error::other("no archive name was free"));
        let mut attempt = 0u32;
        while attempt < 1000 {
            let to = match attempt {
                0 => self.archive.join(&name),
                1 => self.archive.join(format!("{short}-{name}")),
                n => self.archive.join(format!("{short}-{n}-{name}")),
            };
            let from = staged.as_deref().unwrap_or(claimed);
            match std::fs::hard_link(from, &to) {
                Ok(()) => {
                    result = Ok(to);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => attempt += 1,
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices && staged.is_none() => {
                    // Copy into the archive's filesystem under a hidden
                    // name, durable before it gets its real name.
                    let tmp = self.archive.join(format!(".{name}.{short}.copy"));
                    std::fs::copy(claimed, &tmp)?;
                    std::fs::File::open(&tmp)?.sync_all()?;
                    // Same name again, now linked from the copy.
                    staged = Some(tmp);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let archived = result?;
        sync_dir(&self.archive)?;
        if let Some(tmp) = staged {
            std::fs::remove_file(tmp)?;
        }
        std::fs::remove_file(claimed)?;
        match std::fs::remove_file(Folders::answer_record(claimed)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(&self.processing())?;
        Ok(archived)
    }

    /// Outbox stem for an input: its file stem and the first 12 hex digits
    /// of its SHA-256, so equal names with different contents never collide.
    pub fn result_stem(claimed: &Path, sha256: &str) -> String {
        let stem = claimed
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scan".into());
        format!("{stem}-{}", sha256.get(..12).unwrap_or(sha256))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Fsyncs a directory, so the names created or removed in it survive a
/// power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` via a temporary file and rename, the file and
/// then its directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call: two writers of the same name (the same SOP Instance
    // pushed twice at once) must not share, and truncate, one temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}-{serial}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    crate::failpoint::hit("atomic-before-rename");
    // A failed write (a full disk) leaves no temporary file behind.
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    sync_dir(dir.unwrap_or(Path::new(".")))
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

    fn folders(root: &Path) -> Folders {
        let f = Folders {
            inbox: root.join("in"),
            outbox: root.join("out"),
            archive: root.join("archive"),
        };
        f.create().unwrap();
        f
    }

    #[test]
    fn the_archive_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let f = folders(tmp.path());
        // Three different scans with one name, and one archived file that
        // already sits under the hash-prefixed name.
        let sha = sha256_hex(b"x");
        std::fs::write(f.archive.join(format!("{}-s.png", &sha[..12])), b"old").unwrap();
        let mut archived = Vec::new();
        for content in [b"1", b"2", b"3"] {
            let claimed = f.processing().join("s.png");
            std::fs::write(&claimed, content).unwrap();
            archived.push(f.archive(&claimed, &sha).unwrap());
            assert!(!claimed.exists());
        }
        assert_eq!(archived[0], f.archive.join("s.png"));
        assert_eq!(
            archived[1],
            f.archive.join(format!("{}-2-s.png", &sha[..12]))
        );
        let contents: Vec<Vec<u8>> = archived.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert_eq!(contents, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        let old = std::fs::read(f.archive.join(format!("{}-s.png", &sha[..12]))).unwrap();
        assert_eq!(old, b"old");
    }

    #[test]
    fn one_service_per_inbox() {
        let tmp = tempfile::tempdir().unwrap();
        let f = folders(tmp.path());
        let first = f.lock().unwrap();
        assert!(first.is_some());
        assert!(f.lock().unwrap().is_none(), "a second instance is refused");
        drop(first);
        assert!(f.lock().unwrap().is_some(), "released with its holder");
    }

    #[test]
    fn each_drop_of_a_scan_gets_its_own_answer_name() {
        let tmp = tempfile::tempdir().unwrap();
        let f = folders(tmp.path());
        let claimed = f.processing().join("s.png");
        std::fs::write(&claimed, b"x").unwrap();
        let sha = sha256_hex(b"x");
        let first = f.record_answer(&claimed, &sha).unwrap();
        assert_eq!(first, format!("s-{}", &sha[..12]));
        assert_eq!(Folders::recorded_answer(&claimed), Some(first.clone()));
        // The record is not a claim of its own.
        assert_eq!(f.unfinished().unwrap(), vec![claimed.clone()]);
        std::fs::write(f.outbox.join(format!("{first}.json")), b"{}").unwrap();
        let second = f.record_answer(&claimed, &sha).unwrap();
        assert_eq!(second, format!("{first}-2"));
        f.archive(&claimed, &sha).unwrap();
        assert_eq!(Folders::recorded_answer(&claimed), None, "record dropped");
    }

    #[test]
    fn concurrent_atomic_writes_of_one_name_all_succeed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dicom-0123.dcm");
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let body = vec![i; 256 * 1024];
                    (0..20)
                        .map(|_| write_atomic(&path, &body))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for writer in writers {
            for result in writer.join().unwrap() {
                result.expect("every write succeeds");
            }
        }
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), 256 * 1024);
        assert!(
            written.iter().all(|&b| b == written[0]),
            "one writer's bytes, whole"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}
