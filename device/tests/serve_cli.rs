//! `tumorxai-device serve --once`, run for real on the demo bundle: complete
//! files are answered once and archived, files still being written are left
//! alone, bad files get an error answer and an audit entry, and a restart
//! finishes claimed files without answering anything twice. A file whose
//! handling fails does not stop the service, an archive on another
//! filesystem works, a scan dropped twice is answered twice, one instance
//! holds an inbox, and SIGTERM stops the service gracefully.

use crate::common::repo;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dirs {
    _tmp: tempfile::TempDir,
    inbox: PathBuf,
    outbox: PathBuf,
    archive: PathBuf,
    audit: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let dirs = Dirs {
        inbox: d("inbox"),
        outbox: d("outbox"),
        archive: d("archive"),
        audit: d("audit"),
        _tmp: tmp,
    };
    std::fs::create_dir_all(&dirs.inbox).unwrap();
    dirs
}

fn serve_command(d: &Dirs, once: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tumorxai-device"));
    command
        .current_dir(repo())
        .arg("serve")
        .args(if once {
            &["--once"][..]
        } else {
            &["--poll-ms", "50"][..]
        })
        .arg("--inbox")
        .arg(&d.inbox)
        .arg("--outbox")
        .arg(&d.outbox)
        .arg("--archive")
        .arg(&d.archive)
        .arg("--audit")
        .arg(&d.audit);
    command
}

fn serve(d: &Dirs) -> Output {
    serve_command(d, true)
        .output()
        .expect("run tumorxai-device")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            // Visible files: the service's own (its lock, answer records)
            // are hidden.
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn audit_lines(d: &Dirs) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.audit.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn copy_sample(name: &str, to: &Path) {
    std::fs::copy(repo().join("models/samples").join(name), to).unwrap();
}

#[test]
fn complete_files_are_answered_once_and_archived() {
    let d = dirs();
    copy_sample("01-glioma-t1c.jpg", &d.inbox.join("a.jpg"));
    copy_sample("07-normal-t2.jpg", &d.inbox.join("b.jpg"));
    std::fs::write(d.inbox.join("corrupt.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    std::fs::write(d.inbox.join("empty.jpg"), b"").unwrap();
    copy_sample("15-schwannoma-t1c.jpg", &d.inbox.join("c.jpg.part"));
    let run = serve(&d);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    assert_eq!(
        names(&d.inbox),
        vec!["c.jpg.part"],
        "in-progress file left alone"
    );
    assert_eq!(
        names(&d.archive),
        vec!["a.jpg", "b.jpg", "corrupt.png", "empty.jpg"]
    );
    let out = names(&d.outbox);
    let answers: Vec<&String> = out.iter().filter(|n| n.ends_with(".json")).collect();
    assert_eq!(answers.len(), 4, "{out:?}");
    assert_eq!(
        out.iter().filter(|n| n.ends_with("-overlay.png")).count(),
        2
    );
    assert!(out.contains(&"display.png".to_string()));

    let audit = audit_lines(&d);
    assert_eq!(audit.len(), 4);
    let errors: Vec<&serde_json::Value> =
        audit.iter().filter(|e| e["outcome"] == "error").collect();
    assert_eq!(errors.len(), 2);
    for entry in &audit {
        assert_eq!(entry["input_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(entry["model"]["model_id"], "tumorxai-demo");
        assert_eq!(entry["recovered"], false);
        // No pixel data: a line stays small.
        assert!(entry.to_string().len() < 4000, "{entry}");
    }
    let empty = audit
        .iter()
        .find(|e| e["input_sha256"] == sha256_hex(b""))
        .unwrap();
    // File names (often patient names) never reach the audit log.
    for entry in &audit {
        let line = entry.to_string();
        for name in ["a.jpg", "b.jpg", "corrupt.png", "empty.jpg"] {
            assert!(!line.contains(name), "{name} in {line}");
        }
    }
    assert!(
        empty["message"].as_str().unwrap().contains("empty"),
        "{empty}"
    );

    // A second run has nothing to do.
    let again = serve(&d);
    assert!(again.status.success());
    assert_eq!(audit_lines(&d).len(), 4);

    // The upload finishes (renamed into place): now it is taken.
    std::fs::rename(d.inbox.join("c.jpg.part"), d.inbox.join("c.jpg")).unwrap();
    serve(&d);
    assert_eq!(audit_lines(&d).len(), 5);
    assert!(names(&d.inbox).is_empty());
}

#[test]
fn a_restart_finishes_claimed_files_without_answering_twice() {
    let d = dirs();
    let processing = d.inbox.join(".processing");
    std::fs::create_dir_all(&processing).unwrap();
    // Claimed before a crash, never answered.
    copy_sample("04-meningioma-t1c.jpg", &processing.join("m.jpg"));
    let run = serve(&d);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let audit = audit_lines(&d);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["recovered"], true);
    assert_eq!(names(&d.archive), vec!["m.jpg"]);

    // Answered before a crash, not yet archived (the claim's answer record
    // names the answer in the outbox): only archived now.
    copy_sample("04-meningioma-t1c.jpg", &processing.join("m.jpg"));
    let answer = names(&d.outbox)
        .into_iter()
        .find(|n| n.starts_with("m-") && n.ends_with(".json"))
        .unwrap();
    std::fs::write(
        processing.join(".m.jpg.answer"),
        answer.trim_end_matches(".json"),
    )
    .unwrap();
    let answers_before = names(&d.outbox).len();
    serve(&d);
    assert_eq!(
        audit_lines(&d).len(),
        1,
        "no second answer for the same content"
    );
    assert_eq!(names(&d.outbox).len(), answers_before);
    assert!(names(&processing).is_empty());
    assert_eq!(names(&d.archive).len(), 2);
}

#[test]
fn a_failing_file_gets_an_error_answer_and_the_service_goes_on() {
    let d = dirs();
    copy_sample("01-glioma-t1c.jpg", &d.inbox.join("a.jpg"));
    copy_sample("07-normal-t2.jpg", &d.inbox.join("b.jpg"));
    // A folder squats a.jpg's overlay name: writing the overlay fails.
    let sha = sha256_hex(&std::fs::read(d.inbox.join("a.jpg")).unwrap());
    let squatted = d.outbox.join(format!("a-{}-overlay.png", &sha[..12]));
    std::fs::create_dir_all(squatted.join("x")).unwrap();
    let run = serve(&d);
    assert!(
        run.status.success(),
        "the service must survive one file's failure: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(names(&d.archive), vec!["a.jpg", "b.jpg"]);
    assert!(names(&d.inbox).is_empty());
    let audit = audit_lines(&d);
    let outcome = |sha: &str| {
        audit
            .iter()
            .filter(|e| e["input_sha256"] == sha)
            .map(|e| e["outcome"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let b_sha = sha256_hex(&std::fs::read(d.archive.join("b.jpg")).unwrap());
    assert_eq!(outcome(&b_sha), vec!["triaged"]);
    assert_eq!(outcome(&sha), vec!["error"], "{audit:?}");
    let error_answer = d.outbox.join(format!("a-{}.json", &sha[..12]));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&error_answer).unwrap()).unwrap();
    assert!(json["error"].as_str().is_some(), "{json}");
}

#[test]
fn an_archive_on_another_filesystem_is_copied_not_lost() {
    // /dev/shm is a tmpfs: `rename` into it fails with EXDEV.
    let shm = Path::new("/dev/shm");
    let Ok(archive) = tempfile::tempdir_in(shm) else {
        eprintln!("skipping: no /dev/shm here");
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let mut d = dirs();
    let same_fs = std::fs::metadata(archive.path()).unwrap().dev()
        == std::fs::metadata(&d.inbox).unwrap().dev();
    if same_fs {
        eprintln!("skipping: /dev/shm is on the test folder's filesystem");
        return;
    }
    d.archive = archive.path().join("archive");
    copy_sample("01-glioma-t1c.jpg", &d.inbox.join("a.jpg"));
    let original = std::fs::read(d.inbox.join("a.jpg")).unwrap();
    for round in 0..2 {
        let run = serve(&d);
        assert!(
            run.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    assert_eq!(names(&d.archive), vec!["a.jpg"]);
    assert_eq!(std::fs::read(d.archive.join("a.jpg")).unwrap(), original);
    assert!(names(&d.inbox.join(".processing")).is_empty());
    assert_eq!(audit_lines(&d).len(), 1);
}

#[test]
fn a_scan_dropped_again_gets_its_own_answer_and_audit_entry() {
    let d = dirs();
    for round in 1..=2 {
        copy_sample("07-normal-t2.jpg", &d.inbox.join("n.jpg"));
        let run = serve(&d);
        assert!(run.status.success());
        assert_eq!(audit_lines(&d).len(), round);
    }
    let out = names(&d.outbox);
    let answers: Vec<&String> = out.iter().filter(|n| n.ends_with(".json")).collect();
    assert_eq!(answers.len(), 2, "{out:?}");
    assert_eq!(names(&d.archive).len(), 2, "both drops archived");
    assert!(audit_lines(&d).iter().all(|e| e["outcome"] == "triaged"));
}

/// Waits until `path` exists (the service writes display.png once started).
fn wait_for(path: &Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn one_instance_per_inbox_and_sigterm_stops_gracefully() {
    let d = dirs();
    let mut first = serve_command(&d, false)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&d.outbox.join("display.png"));
    let second = serve(&d);
    assert!(
        !second.status.success(),
        "a second instance must be refused"
    );
    let why = String::from_utf8_lossy(&second.stderr);
    assert!(why.contains("already using"), "{why}");
    // The first keeps serving.
    copy_sample("07-normal-t2.jpg", &d.inbox.join("n.jpg"));
    wait_for(&d.archive.join("n.jpg"));
    let status = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = first.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM must end in a clean exit");
    assert_eq!(audit_lines(&d).len(), 1);
}

#[test]
fn a_series_triaged_by_several_workers_is_answered_in_arrival_order() {
    let d = dirs();
    // Ten distinct slices, some damaged (fast errors) between heavy ones, so
    // that workers finish out of order.
    let mut samples: Vec<PathBuf> = std::fs::read_dir(repo().join("models/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    samples.sort();
    let mut expected = Vec::new();
    for (i, sample) in samples.iter().enumerate().take(10) {
        let bytes = if i % 3 == 2 {
            format!("not an image {i}").into_bytes()
        } else {
            std::fs::read(sample).unwrap()
        };
        expected.push(sha256_hex(&bytes));
        std::fs::write(d.inbox.join(format!("s{i:02}.jpg")), bytes).unwrap();
    }
    let run = serve_command(&d, true)
        .args(["--workers", "3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("triaging with 3 worker(s)"), "{stderr}");
    let order: Vec<String> = audit_lines(&d)
        .iter()
        .map(|e| e["input_sha256"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, expected, "audit entries in the inbox's name order");
    // Stdout names each triaged slice by its hash, also in that order.
    let printed: Vec<String> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| {
            l.split(':')
                .next()
                .unwrap()
                .trim_start_matches("scan ")
                .to_string()
        })
        .collect();
    let triaged: Vec<&String> = expected
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(_, sha)| sha)
        .collect();
    assert_eq!(printed.len(), triaged.len());
    for (id, sha) in printed.iter().zip(&triaged) {
        assert!(sha.starts_with(id.as_str()), "{id} vs {sha}");
    }
    assert_eq!(names(&d.inbox), Vec::<String>::new());
    assert_eq!(names(&d.archive).len(), 10);
}
