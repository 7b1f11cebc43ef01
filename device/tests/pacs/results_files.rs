//! `tumorxai-device triage --dicom-results DIR`: the SC and SR of a DICOM
//! slice written as files, valid by dciodvfy and saying what the JSON
//! answer says (pydicom, tests/tools/check_results.py); a JPEG slice has
//! no study to file results into and gets none.

use super::*;

#[test]
fn triage_writes_valid_results_for_dicom_slices_only() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let series = make_series(1, &tmp.path().join("series"));
    let (out, results) = (tmp.path().join("out"), tmp.path().join("results"));
    let jpeg = repo().join("models/samples/04-meningioma-t1c.jpg");
    let output = Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .env("TUMORXAI_STATE_DIR", tmp.path().join("state"))
        .args(["triage", "--device-serial", "TEST-0001", "--out"])
        .arg(&out)
        .arg("--dicom-results")
        .arg(&results)
        .arg(&series.files[0])
        .arg(&jpeg)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut written: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["slice-001-sc.dcm", "slice-001-sr.dcm"]);
    let (sc, sr) = (
        results.join("slice-001-sc.dcm"),
        results.join("slice-001-sr.dcm"),
    );
    for path in [&sc, &sr] {
        let errors = dciodvfy_errors(path);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    let check = Command::new(repo().join(".venv-tools/bin/python"))
        .arg(repo().join("tests/tools/check_results.py"))
        .arg(out.join("slice-001.json"))
        .args([&series.files[0], &sr, &sc])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
