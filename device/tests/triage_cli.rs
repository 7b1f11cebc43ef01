//! `tumorxai-device triage`, run for real on the committed demo model and
//! sample scans: results, overlays, and errors that do not stop the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn device(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("run tumorxai-device")
}

#[test]
fn triage_writes_results_and_overlays_and_survives_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let bad = tmp.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff not a jpeg").unwrap();
    let glioma = "models/samples/01-glioma-t1c.jpg";
    let normal = "models/samples/07-normal-t2.jpg";
    let run = device(&[
        "triage",
        "--out",
        out.to_str().unwrap(),
        glioma,
        bad.to_str().unwrap(),
        normal,
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "a bad file makes the exit status non-zero"
    );
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        2,
        "both good files are triaged: {stdout}"
    );
    for stem in ["01-glioma-t1c", "07-normal-t2"] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        let top: Vec<f64> = json["triage"]["top3"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["probability"].as_f64().unwrap())
            .collect();
        assert_eq!(top.len(), 3);
        assert!(top[0] >= top[1] && top[1] >= top[2]);
        let families: f64 = json["triage"]["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[1].as_f64().unwrap())
            .sum();
        assert!((families - 1.0).abs() < 1e-4, "{families}");
        assert!(["TUMOR LIKELY", "NO TUMOR FLAGGED", "REVIEW"]
            .contains(&json["triage"]["flag"]["flag"].as_str().unwrap()));
        assert!(json["timings_ms"]["inference_ms"].as_f64().unwrap() > 0.0);
        let overlay = image::open(out.join(format!("{stem}-overlay.png"))).unwrap();
        let original = image::open(repo().join(format!("models/samples/{stem}.jpg"))).unwrap();
        assert_eq!(
            (overlay.width(), overlay.height()),
            (original.width(), original.height())
        );
    }
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let run = device(&[
        "triage",
        "--model",
        "nope.onnx",
        "models/samples/00-glioma-t1.jpg",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("reading model nope.onnx"));
}
