//! Out-of-distribution inputs from sources independent of our phantom
//! generator (tests/tools/make_ood_set.py: real CT, MR, retina and face
//! images, microscopy, photographs, sagittal and coronal planes and tissue
//! maps of the real MRI templates, montages, JPEGs with overwritten entropy
//! data) through the device pipeline with the demo bundle, and the clean
//! test slices (tests/fixtures/tiny-model/phantom-test) through the same pipeline.
//!
//! Goals: at least 85 % of the out-of-distribution inputs end in REVIEW or an
//! error; at most 1 % of clean slices go to REVIEW for being out of
//! distribution (the threshold is the 99.5th percentile of held-out scores).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{demo_model, repo};
use tumorxai_device::pipeline::run_slice;
use tumorxai_device::triage::{Flag, Thresholds};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Builds the set with the test tooling venv (`.ci/setup` installs numpy,
/// pillow and pydicom, and downloads the scikit-image wheel for its data).
fn build_ood_set(out: &Path) {
    let root = repo();
    let python = root.join(".venv-tools/bin/python");
    let wheels = root.join(".venv-tools/wheels");
    let wheel = std::fs::read_dir(&wheels)
        .unwrap_or_else(|e| panic!("{}: {e}; run `bash .ci/setup`", wheels.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("scikit_image"))
        .expect("scikit-image wheel in .venv-tools/wheels; run `bash .ci/setup`");
    let status = Command::new(python)
        .arg(root.join("tests/tools/make_ood_set.py"))
        .arg("--skimage-wheel")
        .arg(wheel)
        .arg("--templates")
        .arg(root.join("host/assets/brain-templates"))
        .arg("--slices")
        .arg(root.join("tests/fixtures/tiny-model/phantom-test"))
        .arg(out)
        .status()
        .expect("running make_ood_set.py");
    assert!(status.success(), "make_ood_set.py failed");
}

#[test]
fn out_of_distribution_inputs_go_to_review_and_clean_slices_do_not() {
    let model = demo_model();
    let dir = tempfile::tempdir().unwrap();
    build_ood_set(dir.path());
    let inputs = files(dir.path());
    assert!(inputs.len() >= 35, "{} inputs", inputs.len());
    let mut missed = Vec::new();
    for path in &inputs {
        let bytes = std::fs::read(path).unwrap();
        if let Ok(r) = run_slice(&model, &bytes, Thresholds::default()) {
            if r.triage.flag != Flag::Review {
                missed.push(format!(
                    "{}: {} (OOD score {:?})",
                    path.strip_prefix(dir.path()).unwrap().display(),
                    r.triage.flag.banner(),
                    r.triage.ood_score
                ));
            }
        }
    }
    let detected = inputs.len() - missed.len();
    eprintln!(
        "out-of-distribution: {detected}/{} to REVIEW or error; missed:\n{}",
        inputs.len(),
        missed.join("\n")
    );
    assert!(
        detected as f64 >= 0.85 * inputs.len() as f64,
        "only {detected}/{} detected; missed:\n{}",
        inputs.len(),
        missed.join("\n")
    );

    let clean = files(&repo().join("tests/fixtures/tiny-model/phantom-test"));
    assert!(clean.len() >= 300);
    let mut out_of_distribution = 0;
    for path in &clean {
        let r = run_slice(&model, &std::fs::read(path).unwrap(), Thresholds::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            r.triage.input_doubt.is_none(),
            "{}: {:?}",
            path.display(),
            r.triage.input_doubt
        );
        out_of_distribution += usize::from(r.triage.out_of_distribution);
    }
    eprintln!(
        "clean test slices out of distribution: {out_of_distribution}/{}",
        clean.len()
    );
    assert!(
        out_of_distribution as f64 <= 0.01 * clean.len() as f64,
        "{out_of_distribution}/{} clean slices sent to REVIEW as out of distribution",
        clean.len()
    );
}
