//! `tumorxai-device serve --once`, run for real on the demo bundle: complete
//! files are answered once and archived, files still being written are left
//! alone, bad files get an error answer and an audit entry, and a restart
//! finishes claimed files without answering anything twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

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

fn serve(d: &Dirs) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .args(["serve", "--once", "--inbox"])
        .arg(&d.inbox)
        .arg("--outbox")
        .arg(&d.outbox)
        .arg("--archive")
        .arg(&d.archive)
        .arg("--audit")
        .arg(&d.audit)
        .output()
        .expect("run tumorxai-device")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
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
        .find(|e| e["input_name"] == "empty.jpg")
        .unwrap();
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

    // Answered before a crash, not yet archived (same name and content as
    // the answer in the outbox): only archived now.
    copy_sample("04-meningioma-t1c.jpg", &processing.join("m.jpg"));
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
