//! DICOM through the real binary: files written by pydicom
//! (tests/tools/make_dicom_set.py) triaged by `tumorxai-device triage`, and
//! slices pushed by dcmtk's `storescu` (an independent DICOM client) to
//! `tumorxai-device serve --dicom-port` over loopback. No output may repeat
//! the files' patient name or ID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{free_port, repo, wait_until};

/// How long the receiver tests wait for the service.
const LIMIT: Duration = Duration::from_secs(90);

fn make_set(out: &Path) -> serde_json::Value {
    let root = repo();
    let status = Command::new(root.join(".venv-tools/bin/python"))
        .arg(root.join("tests/tools/make_dicom_set.py"))
        .arg(root.join("models/samples/01-glioma-t1c.jpg"))
        .arg(out)
        .status()
        .expect("running make_dicom_set.py; run `bash .ci/setup`");
    assert!(status.success());
    serde_json::from_slice(&std::fs::read(out.join("cases.json")).unwrap()).unwrap()
}

fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text.push_str(&all_text(&path));
        } else {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    text
}

#[test]
fn triage_answers_dicom_slices_refers_to_them_by_uid_hash_and_rules_out_by_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let set_dir = tmp.path().join("set");
    let set = make_set(&set_dir);
    let out = tmp.path().join("out");
    let cases = set["cases"].as_array().unwrap();
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|c| set_dir.join(c["file"].as_str().unwrap()))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .arg("triage")
        .arg("--out")
        .arg(&out)
        .args(&files)
        .output()
        .unwrap();
    // Hostile files fail (exit status 1), the others are answered.
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let stem = Path::new(file)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let answer = out.join(format!("{stem}.json"));
        match case["expect"].as_str().unwrap() {
            "error" => {
                assert!(!answer.exists(), "{file} answered");
                assert!(
                    stderr.contains(case["error"].as_str().unwrap()),
                    "{file}: {stderr}"
                );
            }
            expect => {
                let json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&answer).unwrap()).unwrap();
                let dicom = &json["dicom"];
                assert_eq!(dicom["front_end"], "dicom-v1", "{file}");
                // The structured result names its source by UIDs: pydicom's
                // generate_uid() uses pydicom's root 1.2.826.0.1.3680043.8.498.
                let source = &dicom["source"];
                let sop = source["sop_instance_uid"].as_str().unwrap();
                assert!(
                    sop.starts_with("1.2.826.0.1.3680043.8.498."),
                    "{file}: {sop}"
                );
                assert_eq!(source["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.4");
                for uid in ["study_instance_uid", "series_instance_uid"] {
                    let value = source[uid].as_str().unwrap();
                    assert!(
                        value.starts_with("1.2.826.0.1.3680043.8.498."),
                        "{file}: {value}"
                    );
                }
                // The reference is SHA-256 of that UID (first 16 hex digits).
                let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sop.as_bytes()));
                assert_eq!(
                    dicom["sop_instance_uid_sha256"].as_str().unwrap(),
                    &digest[..16]
                );
                if expect == "review" {
                    assert_eq!(json["triage"]["flag"]["flag"], "REVIEW", "{file}");
                    let reason = json["triage"]["reason"].as_str().unwrap();
                    assert!(
                        reason.contains(case["reason"].as_str().unwrap()),
                        "{file}: {reason}"
                    );
                    // Ruled out before inference: no logits.
                    assert_eq!(json["logits"].as_array().unwrap().len(), 0, "{file}");
                } else {
                    assert_eq!(json["logits"].as_array().unwrap().len(), 17, "{file}");
                    assert_eq!(json["triage"]["declared_sequence"], "T1C+", "{file}");
                }
            }
        }
    }
    let text = all_text(&out) + &String::from_utf8_lossy(&output.stdout) + &stderr;
    for secret in [
        set["patient_name"].as_str().unwrap(),
        set["patient_id"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the outputs");
    }
}

#[test]
fn a_declared_sequence_the_model_contradicts_goes_to_review() {
    let tmp = tempfile::tempdir().unwrap();
    let set_dir = tmp.path().join("set");
    make_set(&set_dir);
    let triage = |file: &Path, out: &Path| -> serde_json::Value {
        let output = Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
            .current_dir(repo())
            .arg("triage")
            .arg("--out")
            .arg(out)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap()
    };
    let honest = triage(
        &set_dir.join("mono2-u8-auto-window.dcm"),
        &tmp.path().join("a"),
    );
    let reading = honest["triage"]["model_sequence"]
        .as_str()
        .unwrap()
        .to_string();
    // Declare a sequence other than the model's reading.
    let (description, declared) = if reading == "T2" {
        ("AX T1 SE", "T1")
    } else {
        ("AX T2 FSE", "T2")
    };
    let script = r#"
import sys
from pydicom import dcmread
ds = dcmread(sys.argv[1])
ds.SeriesDescription = sys.argv[3]
ds.save_as(sys.argv[2], enforce_file_format=True)
"#;
    let relabelled = tmp.path().join("relabelled.dcm");
    let status = Command::new(repo().join(".venv-tools/bin/python"))
        .args(["-c", script])
        .arg(set_dir.join("mono2-u8-auto-window.dcm"))
        .arg(&relabelled)
        .arg(description)
        .status()
        .unwrap();
    assert!(status.success());
    let answer = triage(&relabelled, &tmp.path().join("b"));
    // Same pixels, same reading; only the declared sequence differs.
    assert_eq!(honest["logits"], answer["logits"]);
    assert_eq!(answer["triage"]["declared_sequence"], declared);
    assert_eq!(
        answer["triage"]["model_sequence"].as_str(),
        Some(reading.as_str())
    );
    assert_eq!(answer["triage"]["flag"]["flag"], "REVIEW");
    let reason = answer["triage"]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("declares {declared}")), "{reason}");
}

#[test]
fn a_scanner_push_over_dicom_is_triaged_and_audited() {
    if Command::new("storescu").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none(),
            "storescu (dcmtk) is required in CI"
        );
        eprintln!("dcmtk not installed: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let set_dir = tmp.path().join("set");
    make_set(&set_dir);
    let (inbox, outbox, audit) = (
        tmp.path().join("inbox"),
        tmp.path().join("outbox"),
        tmp.path().join("audit"),
    );
    std::fs::create_dir_all(&inbox).unwrap();
    let port = free_port();
    let mut service = Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .args(["serve", "--poll-ms", "50", "--settle-ms", "100"])
        .arg("--inbox")
        .arg(&inbox)
        .arg("--outbox")
        .arg(&outbox)
        .arg("--audit")
        .arg(&audit)
        .args([
            "--dicom-bind",
            "127.0.0.1",
            "--dicom-port",
            &port.to_string(),
        ])
        .args(["--ae-title", "TUMORXAI"])
        .args([
            "--allow-calling-ae",
            "SCANNER",
            "--allow-calling-ae",
            "PACS1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port_text = port.to_string();
    let dcmtk_as = |caller: &str, tool: &str, extra: &[&Path]| {
        let mut command = Command::new(tool);
        command.args(["-aec", "TUMORXAI", "-aet", caller, "127.0.0.1", &port_text]);
        for path in extra {
            command.arg(path);
        }
        command.output().unwrap()
    };
    let dcmtk = |tool: &str, extra: &[&Path]| dcmtk_as("SCANNER", tool, extra);
    wait_until("the receiver answers C-ECHO", LIMIT, || {
        dcmtk("echoscu", &[]).status.success()
    });

    // A slice pushed by the scanner: answered in the outbox, audited.
    let pushed = dcmtk("storescu", &[&set_dir.join("mono2-u16-12bit-window.dcm")]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    wait_until("the pushed slice's answer", LIMIT, || {
        std::fs::read_dir(&outbox).is_ok_and(|d| {
            d.filter_map(Result::ok).any(|e| {
                e.file_name().to_string_lossy().starts_with("dicom-")
                    && e.file_name().to_string_lossy().ends_with(".json")
            })
        })
    });
    let answer_path = std::fs::read_dir(&outbox)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("dicom-") && n.ends_with(".json")
        })
        .unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&answer_path).unwrap()).unwrap();
    assert_eq!(answer["dicom"]["front_end"], "dicom-v1");
    assert_eq!(answer["logits"].as_array().unwrap().len(), 17);
    wait_until("the audit entry", LIMIT, || {
        all_text(&audit).contains("triaged")
    });

    // A CT image: its presentation context is refused, nothing is stored,
    // and the service goes on.
    let ct = tmp.path().join("ct.dcm");
    let script = r#"
import sys
from pydicom import dcmread
ds = dcmread(sys.argv[1])
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
ds.save_as(sys.argv[2], enforce_file_format=True)
"#;
    assert!(Command::new(repo().join(".venv-tools/bin/python"))
        .args(["-c", script])
        .arg(set_dir.join("mono2-u16-12bit-window.dcm"))
        .arg(&ct)
        .status()
        .unwrap()
        .success());
    let refused = dcmtk("storescu", &[&ct]);
    assert!(!refused.status.success(), "a CT image must not be accepted");
    // A dropped association (connect, send half a PDU, close) stalls nothing.
    {
        use std::io::Write;
        let mut half = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        half.write_all(&[0x01, 0x00, 0x00, 0x00, 0x10]).unwrap();
    }
    assert!(dcmtk("echoscu", &[]).status.success());
    // A caller not on the allow-list: rejected in the association, for an
    // echo and for a store alike; nothing of it is stored.
    let rogue = dcmtk_as(
        "ROGUE",
        "storescu",
        &[&set_dir.join("mono2-u16-12bit-window.dcm")],
    );
    assert!(!rogue.status.success(), "a rogue AE title must be refused");
    let rogue_text = String::from_utf8_lossy(&rogue.stderr).to_lowercase();
    assert!(rogue_text.contains("reject"), "{rogue_text}");
    assert!(!dcmtk_as("ROGUE", "echoscu", &[]).status.success());
    assert!(dcmtk_as("PACS1", "echoscu", &[]).status.success());

    assert!(Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap()
        .success());
    let exit = service.wait().unwrap();
    let mut stderr = String::new();
    use std::io::Read;
    service
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("calling AE title \"ROGUE\" is not on the allow-list"),
        "{stderr}"
    );
    let everything = all_text(&outbox) + &all_text(&audit) + &stderr;
    assert!(!everything.contains("DOE^JANE") && !everything.contains("PID-4711"));
    let answers = std::fs::read_dir(&outbox)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(answers, 1, "only the MR slice was stored and answered");
}
