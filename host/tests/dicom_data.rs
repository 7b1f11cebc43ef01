//! A dataset of DICOM folders works like an ImageFolder on the workstation:
//! phantom test slices converted by pydicom into extension-less 16-bit
//! DICOM files (tests/tools/folder_to_dicom.py, as scanners export them) are
//! evaluated by `tumorxai evaluate --data` and give the same accuracy as the
//! same slices as JPEG (the window maps the 12-bit values back onto the
//! 8-bit grey levels within 1.3e-4).

use std::path::Path;
use std::process::Command;

use crate::common::{ok, s};

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn accuracy(run: &Path) -> (u64, f64) {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report-folder.json")).unwrap()).unwrap();
    (
        report["report"]["samples"].as_u64().unwrap(),
        report["report"]["accuracy"].as_f64().unwrap(),
    )
}

#[test]
fn a_folder_of_dicom_series_evaluates_like_the_same_jpegs() {
    let tmp = tempfile::tempdir().unwrap();
    // Three slices per class from the phantom test set, as JPEG and as DICOM.
    let jpeg = tmp.path().join("jpeg");
    for class in std::fs::read_dir(repo().join("tests/fixtures/tiny-model/phantom-test")).unwrap() {
        let class = class.unwrap().path();
        let mut files: Vec<_> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let target = jpeg.join(class.file_name().unwrap());
        std::fs::create_dir_all(&target).unwrap();
        for file in files.iter().take(3) {
            std::fs::copy(file, target.join(file.file_name().unwrap())).unwrap();
        }
    }
    let dicom = tmp.path().join("dicom");
    let status = Command::new(repo().join(".venv-tools/bin/python"))
        .arg(repo().join("tests/tools/folder_to_dicom.py"))
        .arg(&jpeg)
        .arg(&dicom)
        .status()
        .expect("running folder_to_dicom.py; run `bash .ci/setup`");
    assert!(status.success());
    // evaluate writes its report into the run: a copy per evaluation.
    let run = |name: &str| {
        let run = tmp.path().join(name);
        copy_dir(&repo().join("tests/fixtures/tiny-model/run"), &run);
        run
    };
    let (jpeg_run, dicom_run) = (run("run-jpeg"), run("run-dicom"));
    ok(&["evaluate", "--run", s(&jpeg_run), "--data", s(&jpeg)]);
    ok(&["evaluate", "--run", s(&dicom_run), "--data", s(&dicom)]);
    let (jpeg_n, jpeg_accuracy) = accuracy(&jpeg_run);
    let (dicom_n, dicom_accuracy) = accuracy(&dicom_run);
    assert_eq!(jpeg_n, 51);
    assert_eq!(dicom_n, 51, "every extension-less DICOM file is a sample");
    assert!(
        (jpeg_accuracy - dicom_accuracy).abs() <= 1.0 / 51.0 + 1e-9,
        "JPEG {jpeg_accuracy} vs DICOM {dicom_accuracy}"
    );
}
