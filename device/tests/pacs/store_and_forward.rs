//! The PACS is down while the device triages: results wait in the on-disk
//! queue, survive the device being killed and restarted, and reach Orthanc
//! once it is up: every result, none twice (Orthanc's own count, and the
//! device's audit of what it sent).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn results_wait_for_a_pacs_that_is_down_and_arrive_exactly_once_across_a_restart() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let series = make_series(3, &tmp.path().join("series"));
    // Nothing listens here yet.
    let pacs_port = free_port();
    let queue = tmp.path().join("queue");
    let args = vec![
        "--send-to".to_string(),
        format!("ORTHANC@127.0.0.1:{pacs_port}"),
        "--send-queue".into(),
        queue.to_string_lossy().into_owned(),
    ];
    let root = tmp.path().join("device");
    let device = Device::start(&root, &args);
    drop_into_inbox(&device, &series.files);
    wait_until("three answers", Duration::from_secs(120), || {
        device.answers().len() == 3
    });
    wait_until("the PACS found down", Duration::from_secs(30), || {
        !device.deliveries("unreachable").is_empty()
    });
    // One folder per destination, named after it.
    let folders: Vec<PathBuf> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let folder_name = folders[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        folder_name.starts_with(&format!("ORTHANC-127_0_0_1-{pacs_port}-")),
        "{folder_name}"
    );
    let pending_dir = folders[0].join("pending");
    let pending = || std::fs::read_dir(&pending_dir).map_or(0, |d| d.count());
    // An SC and an SR per slice, on disk before the answers.
    assert_eq!(pending(), 6);
    assert_eq!(device.deliveries("queued").len(), 6);
    assert!(device.deliveries("sent").is_empty());

    // Killed (no clean shutdown), restarted, and only then the PACS.
    device.kill();
    let device = Device::start(&root, &args);
    let pacs = Orthanc::start(
        &tmp.path().join("orthanc"),
        pacs_port,
        ("TUMORXAI", free_port()),
        json!({}),
    );
    wait_until("six results in the PACS", Duration::from_secs(120), || {
        pacs.instance_count() >= 6
    });
    wait_until("the queue emptied", Duration::from_secs(30), || {
        pending() == 0
    });
    // Time for a duplicate to show up, were one to be sent.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pacs.instance_count(), 6);
    assert_eq!(pacs.study_instances(&series.study_instance_uid).len(), 6);
    let mut sent: HashMap<String, usize> = HashMap::new();
    for entry in device.deliveries("sent") {
        *sent
            .entry(entry["result_uid_hash"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert!(sent.values().all(|&n| n == 1), "sent twice: {sent:?}");
    // What was queued is what was sent.
    let queued: std::collections::HashSet<String> = device
        .deliveries("queued")
        .iter()
        .map(|e| e["result_uid_hash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queued, sent.keys().cloned().collect());
    // No slice was triaged twice: the restart found nothing unfinished.
    let triaged = device
        .audit()
        .iter()
        .filter(|e| e["outcome"] == "triaged")
        .count();
    assert_eq!(triaged, 3);
    device.assert_no_identifiers();
}

#[test]
fn a_full_queue_refuses_results_loudly_and_the_slices_are_still_answered() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let series = make_series(2, &tmp.path().join("series"));
    // 1 MiB: room for one slice's SC and SR (about 0.95 MB together: the
    // SC is uncompressed RGB), not for two.
    let device = Device::start(
        &tmp.path().join("device"),
        &[
            "--send-to".into(),
            format!("ORTHANC@127.0.0.1:{}", free_port()),
            "--send-queue-max-mib".into(),
            "1".into(),
        ],
    );
    drop_into_inbox(&device, &series.files);
    wait_until("two answers", Duration::from_secs(120), || {
        device.answers().len() == 2
    });
    wait_until("the refusals audited", Duration::from_secs(30), || {
        !device.deliveries("not_queued").is_empty()
    });
    let refused = device.deliveries("not_queued");
    assert!(
        refused[0]["detail"].as_str().unwrap().contains("is full"),
        "{refused:?}"
    );
    assert!(device.log().contains("results not sent to ORTHANC@"));
    device.assert_no_identifiers();
}
