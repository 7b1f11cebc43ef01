//! Scanner → PACS → device → PACS: a study pushed into Orthanc by
//! `storescu`, sent to the device by Orthanc itself (REST
//! `POST /modalities/device/store`), and the device's Secondary Capture and
//! SR found back in Orthanc in the same study, sent by the device's AE
//! title, valid by dciodvfy, rendered by dsrdump, and saying what the JSON
//! answer says (pydicom). A rogue caller is refused.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::*;

const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
const SR: &str = "1.2.840.10008.5.1.4.1.1.88.34";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";

#[test]
fn a_study_sent_by_the_pacs_comes_back_with_results_in_the_same_study() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let series = make_series(2, &tmp.path().join("series"));
    let (pacs_port, device_port) = (free_port(), free_port());
    let pacs = Orthanc::start(
        &tmp.path().join("orthanc"),
        pacs_port,
        ("TUMORXAI", device_port),
        json!({}),
    );
    let device = Device::start(
        &tmp.path().join("device"),
        &[
            "--dicom-bind".into(),
            "127.0.0.1".into(),
            "--dicom-port".into(),
            device_port.to_string(),
            "--ae-title".into(),
            "TUMORXAI".into(),
            "--allow-calling-ae".into(),
            "ORTHANC".into(),
            "--send-to".into(),
            format!("ORTHANC@127.0.0.1:{pacs_port}"),
            // A second destination that is down holds up nothing.
            "--send-to".into(),
            format!("ARCHIVE@127.0.0.1:{}", free_port()),
        ],
    );

    // The scanner stores the study in the PACS.
    let (stored, output) = storescu("SCANNER", "ORTHANC", pacs_port, &[], &series.files);
    assert!(stored, "{output}");
    let study = pacs.study_id(&series.study_instance_uid).unwrap();
    // The PACS sends it to the device, as a routing rule or a user would.
    wait_until("the device's receiver", Duration::from_secs(60), || {
        Command::new("echoscu")
            .args(["-aet", "ORTHANC", "-aec", "TUMORXAI", "127.0.0.1"])
            .arg(device_port.to_string())
            .status()
            .is_ok_and(|s| s.success())
    });
    let job = pacs.post("/modalities/device/store", &json!({"Resources": [study]}));
    assert!(
        job.get("FailedInstancesCount").is_none_or(|n| n == 0),
        "{job}"
    );

    // Two slices: the originals and, per slice, an SC and an SR.
    wait_until(
        "SC and SR of both slices in the study",
        Duration::from_secs(120),
        || pacs.study_instances(&series.study_instance_uid).len() >= 6,
    );
    let instances = pacs.study_instances(&series.study_instance_uid);
    let of_class = |class: &str| -> Vec<&Instance> {
        instances
            .iter()
            .filter(|i| i.sop_class_uid == class)
            .collect()
    };
    assert_eq!(of_class(MR).len(), 2, "{instances:?}");
    assert_eq!(of_class(SC).len(), 2, "{instances:?}");
    assert_eq!(of_class(SR).len(), 2, "{instances:?}");
    for result in of_class(SC).into_iter().chain(of_class(SR)) {
        assert_eq!(result.remote_aet, "TUMORXAI", "{result:?}");
        assert!(
            result.series_description.contains("not for diagnostic use"),
            "{result:?}"
        );
    }

    // Slice 1's results, as the PACS holds them, checked by independent
    // tools against the device's own answer.
    let pick = |class: &str| {
        of_class(class)
            .into_iter()
            .find(|i| i.instance_number == "1")
            .unwrap_or_else(|| panic!("no {class} with instance number 1: {instances:?}"))
    };
    let (sc_path, sr_path) = (tmp.path().join("sc.dcm"), tmp.path().join("sr.dcm"));
    std::fs::write(&sc_path, pacs.file(&pick(SC).id)).unwrap();
    std::fs::write(&sr_path, pacs.file(&pick(SR).id)).unwrap();
    for path in [&sc_path, &sr_path] {
        let errors = dciodvfy_errors(path);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    let dump = Command::new("dsrdump").arg(&sr_path).output().unwrap();
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    for expected in [
        "Comprehensive 3D SR",
        "Triage flag",
        "Probability Glioma T1C+",
        "NOT FOR DIAGNOSTIC USE",
    ] {
        assert!(dump.contains(expected), "{expected} not in:\n{dump}");
    }
    let answer = device.answer_for(&series.sop_instance_uids[0]).unwrap();
    let answer_path = tmp.path().join("answer.json");
    std::fs::write(&answer_path, answer.to_string()).unwrap();
    let check = Command::new(repo().join(".venv-tools/bin/python"))
        .arg(repo().join("tests/tools/check_results.py"))
        .args([&answer_path, &series.files[0], &sr_path, &sc_path])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Every result audited as queued (for both destinations) and sent (to
    // the one that is up), by hash only; the other one's failures audited.
    wait_until("the sent entries", Duration::from_secs(30), || {
        device.deliveries("sent").len() == 4
    });
    assert_eq!(device.deliveries("queued").len(), 8);
    assert!(device
        .deliveries("unreachable")
        .iter()
        .all(|e| e["destination"].as_str().unwrap().starts_with("ARCHIVE@")));
    assert!(!device.deliveries("unreachable").is_empty());

    // A REVIEW and an error are results too: a FLAIR slice (doubtful input)
    // and a multi-frame object (not triaged) each get an SR saying so.
    let cases = tmp.path().join("cases");
    assert!(Command::new(repo().join(".venv-tools/bin/python"))
        .arg(repo().join("tests/tools/make_dicom_set.py"))
        .arg(repo().join("models/samples/01-glioma-t1c.jpg"))
        .arg(&cases)
        .status()
        .unwrap()
        .success());
    drop_into_inbox(
        &device,
        &[cases.join("flair.dcm"), cases.join("multi-frame.dcm")],
    );
    let reports = || {
        pacs.post(
            "/tools/find",
            &json!({"Level": "Instance", "Query": {"Modality": "SR"}}),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    };
    wait_until(
        "the REVIEW and NOT TRIAGED reports",
        Duration::from_secs(120),
        || reports().len() == 4,
    );
    let mut dumps = String::new();
    for id in reports() {
        let path = tmp.path().join(format!("{id}.dcm"));
        std::fs::write(&path, pacs.file(&id)).unwrap();
        let errors = dciodvfy_errors(&path);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let dump = Command::new("dsrdump")
            .args(["+Pl"])
            .arg(&path)
            .output()
            .unwrap();
        dumps.push_str(&String::from_utf8_lossy(&dump.stdout));
    }
    assert!(dumps.contains("(REVIEW,99TUMORXAI"), "{dumps}");
    assert!(dumps.contains("FLAIR"), "{dumps}");
    assert!(dumps.contains("(NOT_TRIAGED,99TUMORXAI"), "{dumps}");
    assert!(dumps.contains("2 frames"), "{dumps}");

    // A rogue caller is refused by the device, and nothing of it stored.
    let answered = device.answers().len();
    let (rogue, text) = storescu("ROGUE", "TUMORXAI", device_port, &[], &series.files[..1]);
    assert!(!rogue, "a rogue AE title must be refused: {text}");
    assert!(text.to_lowercase().contains("reject"), "{text}");
    wait_until("the refusal logged", Duration::from_secs(10), || {
        device.log().contains("\"ROGUE\" is not on the allow-list")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(device.answers().len(), answered);
    // The service's own lock file and claim folder are hidden names.
    let waiting: Vec<_> = std::fs::read_dir(device.root.join("inbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert!(
        waiting.is_empty(),
        "nothing of the rogue caller in the inbox: {waiting:?}"
    );
    device.assert_no_identifiers();
}
