//! A stock MCUmgr client (smpclient 7.3.0 from PyPI, in the test tooling
//! venv) flashes the real device binary over pseudo-terminals
//! (tests/tools/smp_interop.py): parameters, echo, image state, upload of a
//! newer signed bundle, test, reset; the device then runs the new model on
//! trial, and the state directory and audit log say so.

use std::process::Command;

use sha2::{Digest, Sha256};

use crate::common::{demo_as, demo_key, repo};

#[test]
fn smpclient_uploads_tests_and_resets_the_device_over_a_pty() {
    let root = repo();
    let python = root.join(".venv-tools/bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import smpclient, serial"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none(),
            "smpclient[serial] is required in CI: run `bash .ci/setup`"
        );
        eprintln!("smpclient not installed: SMP interop test skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(state.join("trust")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(
        root.join("models/trust/demo-signing-key.pub.pem"),
        state.join("trust/demo.pem"),
    )
    .unwrap();
    let device = env!("CARGO_BIN_EXE_tumorxai-device");
    let install = Command::new(device)
        .args(["install", "tests/fixtures/tiny-model/int8.bundle"])
        .env("TUMORXAI_STATE_DIR", &state)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(install.status.success(), "{install:?}");
    let newer = demo_as("1.3.0", &demo_key());
    let bundle = tmp.path().join("1.3.0.bundle");
    std::fs::write(&bundle, &newer).unwrap();

    let run = Command::new(&python)
        .arg(root.join("tests/tools/smp_interop.py"))
        .args([
            device.as_ref(),
            state.as_os_str(),
            work.as_os_str(),
            bundle.as_os_str(),
        ])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(work.join("device.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "{}\n{}\ndevice log:\n{log}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("{result:#}");
    assert_eq!(result["echo"], "tumorxai");
    assert_eq!(result["params"]["buf_count"], 1);
    assert_eq!(result["upload_last"], newer.len());
    assert!(result["upload_offsets"].as_u64().unwrap() > 1, "chunked");
    let hash = hex::encode(Sha256::digest(&newer));
    let pick = |key: &str, i: usize, field: &str| result[key][i][field].clone();
    assert_eq!(pick("before", 0, "version"), "1.2.0");
    assert_eq!(pick("staged", 1, "version"), "1.3.0");
    assert_eq!(pick("staged", 1, "hash"), hash.as_str());
    assert_eq!(pick("staged", 0, "active"), true);
    assert_eq!(result["test_ok"], true);
    assert_eq!(result["reset_ok"], true);
    // After the reset: 1.3.0 runs on trial, 1.2.0 is the confirmed fallback.
    assert_eq!(pick("after", 0, "version"), "1.3.0", "{log}");
    assert_eq!(pick("after", 0, "active"), true);
    assert_eq!(pick("after", 0, "confirmed"), false);
    assert_eq!(pick("after", 1, "version"), "1.2.0");
    assert_eq!(pick("after", 1, "confirmed"), true);
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("slots.json")).unwrap()).unwrap();
    assert_eq!(table["active"], "b");
    assert_eq!(table["trial"]["fallback"], "a");
    let audit = std::fs::read_to_string(work.join("audit/audit.jsonl")).unwrap();
    assert!(audit.contains("verified and staged"), "{audit}");
    assert!(audit.contains("activated on trial"), "{audit}");
    assert!(
        audit.contains("reloaded: tumorxai-demo 1.3.0 running"),
        "{audit}"
    );
}
