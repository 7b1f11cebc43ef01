//! `tumorxai-device evaluate` through the real binary, on the sample scans
//! laid out as a labelled folder (the real dataset's class names), with a
//! stray folder and an unreadable file. The expected counts come from
//! `tumorxai-device triage` on the same files: its JSON answers' flags and
//! logits, counted here by hand.

use std::path::Path;
use std::process::Command;

use tumorxai_shared::CLASS_NAMES;

use crate::common::repo;

fn device(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .env("TUMORXAI_STATE_DIR", dir.join("state"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn evaluate_counts_what_triage_answers_per_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut samples: Vec<_> = std::fs::read_dir(repo().join("models/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    samples.sort();
    assert_eq!(samples.len(), 17);
    // Sample NN belongs to class NN.
    let mut truths = Vec::new();
    for (class, sample) in samples.iter().enumerate() {
        let folder = data.join(CLASS_NAMES[class]);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(sample, folder.join("slice.jpg")).unwrap();
        truths.push(class);
    }
    std::fs::create_dir_all(data.join("not a class")).unwrap();
    std::fs::write(data.join("not a class/x.jpg"), b"ignored").unwrap();
    std::fs::write(
        data.join(CLASS_NAMES[0]).join("broken.jpg"),
        b"not an image",
    )
    .unwrap();

    // The reference: triage's own answers for the 17 samples.
    let out = tmp.path().join("triage");
    let triaged = device(&["triage", "--out", out.to_str().unwrap()], tmp.path());
    assert!(triaged.status.success());
    let (mut tumour, mut cleared, mut normal, mut normal_cleared, mut top1, mut review) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for (class, sample) in samples.iter().enumerate() {
        let stem = sample.file_stem().unwrap().to_string_lossy();
        let answer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        let flag = answer["triage"]["flag"]["flag"].as_str().unwrap();
        let logits: Vec<f64> = answer["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        top1 += u64::from(best == class);
        review += u64::from(flag == "REVIEW");
        if CLASS_NAMES[class].starts_with("NORMAL") {
            normal += 1;
            normal_cleared += u64::from(flag == "NO TUMOR FLAGGED");
        } else {
            tumour += 1;
            cleared += u64::from(flag == "NO TUMOR FLAGGED");
        }
    }
    assert_eq!((tumour, normal), (15, 2));

    let json = tmp.path().join("report.json");
    let evaluated = device(
        &[
            "evaluate",
            "--data",
            data.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&evaluated.stderr);
    assert!(evaluated.status.success(), "{stderr}");
    assert!(stderr.contains("skipping \"not a class\""), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &report["report"];
    // 17 samples and the broken file (a tumour slice the device refused:
    // not cleared, counted with the tumour slices).
    assert_eq!(r["slices"], 18);
    assert_eq!(r["refused"], 1);
    assert_eq!(r["tumour_slices"], tumour + 1);
    assert_eq!(r["tumour_cleared"], cleared);
    assert_eq!(r["sensitivity"]["count"], tumour + 1 - cleared);
    assert_eq!(r["specificity"]["count"], normal_cleared);
    assert_eq!(r["specificity"]["of"], normal);
    assert_eq!(r["top1"]["count"], top1);
    assert_eq!(r["review"]["count"], review);
    let stdout = String::from_utf8_lossy(&evaluated.stdout);
    assert!(stdout.contains("sensitivity (any tumour)"), "{stdout}");
}
