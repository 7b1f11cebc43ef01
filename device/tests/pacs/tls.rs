//! DICOM TLS with certificates made by the `cryptography` package
//! (tests/tools/make_tls_certs.py): dcmtk's `storescu +tls` against the
//! device's receiver (mutual TLS: a certificate from the hospital CA
//! required), the device sending its results to an Orthanc that speaks
//! only TLS; and the refusals, each by the side under test: the device's
//! receiver refuses a plain client, a client certificate from another CA,
//! an expired client certificate and a client without one; the device's
//! sender refuses a PACS whose certificate chains to another CA, and one
//! whose certificate expired.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::*;

fn certificates(dir: &std::path::Path) -> impl Fn(&str) -> String {
    let status = Command::new(repo().join(".venv-tools/bin/python"))
        .arg(repo().join("tests/tools/make_tls_certs.py"))
        .arg(dir)
        .status()
        .expect("running make_tls_certs.py; run `bash .ci/setup`");
    assert!(status.success());
    let dir = dir.to_path_buf();
    move |name: &str| dir.join(name).to_string_lossy().into_owned()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn tls_args(pem: &impl Fn(&str) -> String, cert: &str, ca: &str) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        pem(&format!("{cert}.pem")),
        "--tls-key".into(),
        pem(&format!("{cert}.key")),
        "--tls-ca".into(),
        pem(ca),
    ]
}

/// An Orthanc that speaks DICOM TLS only, with `cert` as its certificate,
/// requiring client certificates from the hospital CA.
fn tls_orthanc(dir: &Path, port: u16, pem: &impl Fn(&str) -> String, cert: &str) -> Orthanc {
    Orthanc::start(
        dir,
        port,
        ("TUMORXAI", free_port()),
        json!({
            "DicomTlsEnabled": true,
            "DicomTlsCertificate": pem(&format!("{cert}.pem")),
            "DicomTlsPrivateKey": pem(&format!("{cert}.key")),
            "DicomTlsTrustedCertificates": pem("ca.pem"),
            "DicomTlsRemoteCertificateRequired": true,
        }),
    )
}

/// A device that only sends (the slice dropped into its inbox) to the TLS
/// PACS on `port`, trusting `ca`: the detail of its first failed attempt.
fn send_failure(
    root: &Path,
    port: u16,
    pem: &impl Fn(&str) -> String,
    ca: &str,
    slice: &[PathBuf],
) -> String {
    let mut args = vec![
        "--send-to".to_string(),
        format!("tls://ORTHANC@127.0.0.1:{port}"),
    ];
    args.extend(tls_args(pem, "server", ca));
    let device = Device::start(root, &args);
    drop_into_inbox(&device, slice);
    wait_until(
        "the failed attempt reported",
        Duration::from_secs(60),
        || !device.deliveries("unreachable").is_empty(),
    );
    assert!(device.deliveries("sent").is_empty());
    device.deliveries("unreachable")[0]["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn dicom_tls_in_and_out_and_every_doubtful_peer_refused() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pem = certificates(&tmp.path().join("certs"));
    let series = make_series(1, &tmp.path().join("series"));
    let slice: Vec<PathBuf> = series.files.clone();
    let (pacs_port, device_port) = (free_port(), free_port());
    let pacs = tls_orthanc(&tmp.path().join("orthanc"), pacs_port, &pem, "server");
    let mut args = vec![
        "--dicom-bind".to_string(),
        "127.0.0.1".into(),
        "--dicom-port".into(),
        device_port.to_string(),
        "--dicom-tls".into(),
        "--dicom-tls-client-ca".into(),
        pem("ca.pem"),
        "--send-to".into(),
        format!("tls://ORTHANC@127.0.0.1:{pacs_port}"),
    ];
    args.extend(tls_args(&pem, "server", "ca.pem"));
    let device = Device::start(&tmp.path().join("device"), &args);
    let scanner_tls = [
        "+tls",
        &pem("client.key"),
        &pem("client.pem"),
        "+cf",
        &pem("ca.pem"),
    ]
    .map(String::from);
    wait_until("the TLS receiver", Duration::from_secs(60), || {
        Command::new("echoscu")
            .args(as_strs(&scanner_tls))
            .args(["-aet", "SCANNER", "-aec", "TUMORXAI", "127.0.0.1"])
            .arg(device_port.to_string())
            .status()
            .is_ok_and(|s| s.success())
    });

    // The scanner with its hospital certificate: stored, triaged, and the
    // results sent over TLS to the PACS.
    let (ok, text) = storescu(
        "SCANNER",
        "TUMORXAI",
        device_port,
        &as_strs(&scanner_tls),
        &slice,
    );
    assert!(ok, "{text}");
    wait_until(
        "SC and SR in the TLS PACS",
        Duration::from_secs(120),
        || pacs.study_instances(&series.study_instance_uid).len() == 2,
    );
    assert!(pacs
        .study_instances(&series.study_instance_uid)
        .iter()
        .all(|i| i.remote_aet == "TUMORXAI"));

    // Refused by the device: a plain client; a client certificate from
    // another CA; an expired client certificate; no client certificate.
    // (And a client that does not trust the device's CA refuses it.)
    let refusals: [(&str, Vec<String>); 5] = [
        ("plain DICOM", vec![]),
        (
            "a client certificate from another CA",
            [
                "+tls",
                &pem("rogue.key"),
                &pem("rogue.pem"),
                "+cf",
                &pem("ca.pem"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "a client trusting another CA",
            [
                "+tls",
                &pem("client.key"),
                &pem("client.pem"),
                "+cf",
                &pem("rogue-ca.pem"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "an expired client certificate",
            [
                "+tls",
                &pem("expired.key"),
                &pem("expired.pem"),
                "+cf",
                &pem("ca.pem"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "no client certificate",
            ["+tla", "+cf", &pem("ca.pem")].map(String::from).to_vec(),
        ),
    ];
    for (what, options) in &refusals {
        let (ok, text) = storescu(
            "SCANNER",
            "TUMORXAI",
            device_port,
            &as_strs(options),
            &slice,
        );
        assert!(!ok, "{what} must be refused: {text}");
    }
    // Only the one good push was stored and answered.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(device.answers().len(), 1);
    device.assert_no_identifiers();
    let log = device.log();
    assert!(log.contains("TLS handshake or negotiation failed"), "{log}");
    drop(device);

    // The sender refuses a PACS whose certificate chains to another CA,
    // and one whose certificate expired; nothing is sent to either.
    let detail = send_failure(
        &tmp.path().join("wrong-ca"),
        pacs_port,
        &pem,
        "rogue-ca.pem",
        &slice,
    );
    assert!(detail.contains("UnknownIssuer"), "{detail}");
    let expired_port = free_port();
    let _expired = tls_orthanc(
        &tmp.path().join("orthanc-expired"),
        expired_port,
        &pem,
        "expired",
    );
    let detail = send_failure(
        &tmp.path().join("expired"),
        expired_port,
        &pem,
        "ca.pem",
        &slice,
    );
    assert!(detail.contains("certificate expired"), "{detail}");
    assert_eq!(pacs.study_instances(&series.study_instance_uid).len(), 2);
}
