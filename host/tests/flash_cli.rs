//! `tumorxai flash` and `tumorxai device` against the real device binary
//! (`tumorxai-device serve --serial`) over pseudo-terminals joined by a
//! misbehaving relay (tests/tools/serial_relay.py): an upload that loses
//! 600 bytes on the way resumes and is verified by the device's hash; the
//! tested model runs on trial until `device confirm`; a downgrade is
//! refused with the device's reason and changes nothing; a port with no
//! device behind it is a clear error.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use tumorxai_shared::bundle::{read_bundle, write_bundle, BundleContents};

use crate::common::tumorxai;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A relay: its process (stdin held open) and the two port paths.
struct Relay {
    child: Child,
    device: String,
    client: String,
}

impl Relay {
    fn start(faults: &[&str]) -> Relay {
        let root = repo();
        let mut child = Command::new(root.join(".venv-tools/bin/python"))
            .arg(root.join("tests/tools/serial_relay.py"))
            .args(faults)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python in .venv-tools: run `bash .ci/setup`");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let paths: serde_json::Value = serde_json::from_str(&line).unwrap();
        Relay {
            child,
            device: paths["device"].as_str().unwrap().to_string(),
            client: paths["client"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

struct Device(Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn flashing_over_a_lossy_serial_line_resumes_verifies_and_confirms() {
    let device_bin = Path::new(env!("CARGO_BIN_EXE_tumorxai")).with_file_name("tumorxai-device");
    if !device_bin.exists() {
        assert!(
            std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none(),
            "{} is built with the workspace",
            device_bin.display()
        );
        eprintln!("no device binary beside tumorxai: flash test skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let (state, newer) = unit(tmp.path(), &device_bin);
    let older = demo_bundle(tmp.path(), "1.1.0");

    // Client → device loses 600 bytes in the middle of the upload.
    let relay = Relay::start(&["--drop", "300000:600"]);
    std::fs::create_dir_all(&work).unwrap();
    let _device = serve(&device_bin, &state, &relay.device, &work, None);
    let port = ["--port", relay.client.as_str(), "--timeout-ms", "1500"];
    let flash = |bundle: &str, extra: &[&str]| {
        let mut args = vec!["flash"];
        args.extend_from_slice(&port);
        args.extend_from_slice(extra);
        args.push(bundle);
        tumorxai(&args)
    };
    let log = || std::fs::read_to_string(work.join("device.log")).unwrap_or_default();

    let o = flash(&newer, &["--test"]);
    assert!(o.status.success(), "{}\n{}", text(&o), log());
    let out = text(&o);
    assert!(
        out.contains("resuming"),
        "the lost bytes forced a resume: {out}"
    );
    assert!(out.contains("with the bundle's SHA-256"), "{out}");

    // The reset reloads between inbox polls: the new model on trial.
    let table = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(state.join("slots.json")).unwrap()).unwrap()
    };
    for _ in 0..50 {
        if table()["active"] == "b" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(table()["active"], "b", "{}", log());
    assert_eq!(table()["trial"]["fallback"], "a");

    let mut status = vec!["device", "status"];
    status.extend_from_slice(&port);
    let o = tumorxai(&status);
    assert!(o.status.success(), "{}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listing.contains("1.3.0"), "{listing}");
    assert!(listing.contains("1.2.0"), "{listing}");

    let mut confirm = vec!["device", "confirm"];
    confirm.extend_from_slice(&port);
    let o = tumorxai(&confirm);
    assert!(o.status.success(), "{}", text(&o));
    assert!(table().get("trial").is_none(), "confirmed: no trial");

    // A downgrade: refused by the device, with its reason; nothing changes.
    let o = flash(&older, &[]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("the device refused"), "{out}");
    assert!(out.contains("1.1.0"), "the reason names the version: {out}");
    assert_eq!(table()["active"], "b");
    assert_eq!(table()["a"]["version"], "1.2.0");

    // No device behind the port.
    let silent = Relay::start(&[]);
    let o = tumorxai(&[
        "flash",
        "--port",
        &silent.client,
        "--timeout-ms",
        "300",
        "--retries",
        "1",
        &newer,
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no SMP answer"), "{}", text(&o));
}

/// The demo bundle re-signed as `version`, written into `dir`; its path.
fn demo_bundle(dir: &Path, version: &str) -> String {
    let root = repo();
    let key = SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(root.join("models/demo-signing-key.pem")).unwrap(),
    )
    .unwrap();
    let demo = std::fs::read(root.join("models/demo-int8.bundle")).unwrap();
    let path = dir.join(format!("{version}.bundle"));
    let bytes = read_bundle(&demo)
        .unwrap()
        .resigned("tumorxai-demo", version, &key)
        .unwrap();
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// A unit with the demo trust key and 1.2.0 installed, and a 1.3.0 bundle.
fn unit(dir: &Path, device_bin: &Path) -> (PathBuf, String) {
    let root = repo();
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("trust")).unwrap();
    std::fs::copy(
        root.join("models/trust/demo-signing-key.pub.pem"),
        state.join("trust/demo.pem"),
    )
    .unwrap();
    let install = Command::new(device_bin)
        .args(["install", "models/demo-int8.bundle"])
        .env("TUMORXAI_STATE_DIR", &state)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", text(&install));
    (state, demo_bundle(dir, "1.3.0"))
}

fn serve(
    device_bin: &Path,
    state: &Path,
    port: &str,
    dir: &Path,
    failpoint: Option<&str>,
) -> Device {
    let mut command = Command::new(device_bin);
    command
        .args(["serve", "--poll-ms", "100", "--serial", port])
        .arg("--inbox")
        .arg(dir.join("inbox"))
        .arg("--outbox")
        .arg(dir.join("outbox"))
        .env("TUMORXAI_STATE_DIR", state)
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("device.log"))
                .unwrap(),
        );
    if let Some(point) = failpoint {
        command.env("TUMORXAI_FAILPOINT", point);
    }
    let device = Device(command.spawn().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    device
}

/// The version the unit's active slot runs, as `triage` loads it (every
/// load check included).
fn running_version(device_bin: &Path, state: &Path, dir: &Path) -> String {
    let out = dir.join("triage");
    let o = Command::new(device_bin)
        .args(["triage", "models/samples/01-glioma-t1c.jpg", "--out"])
        .arg(&out)
        .env("TUMORXAI_STATE_DIR", state)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the unit must still run a model: {}",
        text(&o)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("01-glioma-t1c.json")).unwrap()).unwrap();
    json["model"]["version"].as_str().unwrap().to_string()
}

#[test]
fn a_device_killed_at_any_step_of_an_upgrade_keeps_a_verified_model() {
    let device_bin = Path::new(env!("CARGO_BIN_EXE_tumorxai")).with_file_name("tumorxai-device");
    if !device_bin.exists() {
        assert!(std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none());
        return;
    }
    let points = [
        "atomic-before-rename",
        "upload-half",
        "stage-forgotten",
        "stage-slot-written",
        "stage-recorded",
        "mark-written",
        "reload-activated",
    ];
    let tmp = tempfile::tempdir().unwrap();
    std::thread::scope(|scope| {
        for point in points {
            let dir = tmp.path().join(point);
            let device_bin = &device_bin;
            scope.spawn(move || {
                let (state, bundle) = unit(&dir, device_bin);
                let relay = Relay::start(&[]);
                let flash = || {
                    tumorxai(&[
                        "flash",
                        "--port",
                        &relay.client,
                        "--timeout-ms",
                        "1500",
                        "--retries",
                        "1",
                        "--verify-timeout-s",
                        "5",
                        "--test",
                        &bundle,
                    ])
                };
                let mut crashing = serve(device_bin, &state, &relay.device, &dir, Some(point));
                let _ = flash();
                // The point must have been reached: the process aborted.
                let mut waited = 0;
                while crashing.0.try_wait().unwrap().is_none() && waited < 100 {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    waited += 1;
                }
                let log = std::fs::read_to_string(dir.join("device.log")).unwrap();
                assert!(
                    log.contains(&format!("failpoint {point}")),
                    "{point}: {log}"
                );
                // Killed: a verified model still runs (the old or the new one).
                let version = running_version(device_bin, &state, &dir);
                assert!(
                    ["1.2.0", "1.3.0"].contains(&version.as_str()),
                    "{point}: {version}"
                );
                // Restarted: the field engineer flashes again and it works.
                let _device = serve(device_bin, &state, &relay.device, &dir, None);
                let o = flash();
                let log = std::fs::read_to_string(dir.join("device.log")).unwrap();
                assert!(o.status.success(), "{point}: {}\n{log}", text(&o));
                let mut active = String::new();
                for _ in 0..50 {
                    let table: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(state.join("slots.json")).unwrap())
                            .unwrap();
                    let slot = table["active"].as_str().unwrap().to_string();
                    active = table[slot.as_str()]["version"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    if active == "1.3.0" && table.get("pending").is_none() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                assert_eq!(active, "1.3.0", "{point}: {log}");
            });
        }
    });
}

/// A bundle, correctly signed, whose golden logits are all 1.0 off: it
/// passes every check but the device's own self-test.
fn failing_self_test_bundle(dir: &Path) -> String {
    let root = repo();
    let key = SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(root.join("models/demo-signing-key.pem")).unwrap(),
    )
    .unwrap();
    let demo = std::fs::read(root.join("models/demo-int8.bundle")).unwrap();
    let read = read_bundle(&demo).unwrap();
    let mut manifest = read.manifest.clone();
    manifest.version = "1.4.0".into();
    let mut golden = read.golden.clone();
    for g in &mut golden {
        for logit in &mut g.logits {
            *logit += 1.0;
        }
    }
    let contents = BundleContents {
        manifest,
        model: read.model.to_vec(),
        golden,
        golden_images: read.golden_images.iter().map(|g| g.to_vec()).collect(),
        ood_statistics: read.ood_statistics.map(<[u8]>::to_vec),
    };
    let path = dir.join("self-test-fails.bundle");
    std::fs::write(&path, write_bundle(&contents, &key).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn flashing_through_bit_errors_at_921600_baud_and_refusing_a_failing_self_test() {
    let device_bin = Path::new(env!("CARGO_BIN_EXE_tumorxai")).with_file_name("tumorxai-device");
    if !device_bin.exists() {
        assert!(std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (state, newer) = unit(tmp.path(), &device_bin);
    let failing = failing_self_test_bundle(tmp.path());
    // 921600 baud ≈ 92160 bytes/s both ways; about one flipped bit in
    // 200000 bytes from client to device (seeded).
    let relay = Relay::start(&["--bps", "92160", "--corrupt", "200000", "--seed", "5"]);
    let _device = serve(&device_bin, &state, &relay.device, &work, None);
    let log = || std::fs::read_to_string(work.join("device.log")).unwrap_or_default();
    let flash = |bundle: &str, extra: &[&str]| {
        let mut args = vec![
            "flash",
            "--port",
            relay.client.as_str(),
            "--timeout-ms",
            "1500",
            "--retries",
            "20",
        ];
        args.extend_from_slice(extra);
        args.push(bundle);
        tumorxai(&args)
    };
    let table = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(state.join("slots.json")).unwrap()).unwrap()
    };

    // The self-test fails on the device: refused, nothing changes.
    let o = flash(&failing, &["--test"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("the device refused"), "{out}");
    assert!(out.to_lowercase().contains("self-test"), "{out}\n{}", log());
    assert_eq!(table()["active"], "a");
    assert!(table()["b"].is_null(), "nothing staged");

    // Bit errors cost retries, never a wrong model.
    let o = flash(&newer, &["--confirm"]);
    assert!(o.status.success(), "{}\n{}", text(&o), log());
    for _ in 0..50 {
        if table()["active"] == "b" && table().get("trial").is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(table()["active"], "b", "{}", log());
    assert!(
        table().get("trial").is_none(),
        "confirmed in advance, loaded"
    );
    assert_eq!(table()["highest"]["tumorxai-demo"], "1.3.0");
}
