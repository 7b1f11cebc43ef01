//! `tumorxai flash` and `tumorxai device` against the real device binary
//! (`tumorxai-device serve --serial`) over pseudo-terminals joined by a
//! misbehaving relay (tests/tools/serial_relay.py): an upload that loses
//! 600 bytes on the way resumes and is verified by the device's hash; the
//! tested model runs on trial until `device confirm`; a downgrade is
//! refused with the device's reason and changes nothing; a port with no
//! device behind it is a clear error.

use std::path::Path;
use std::process::Command;

use tumorxai_shared::bundle::{read_bundle, write_bundle, BundleContents};

use crate::common::serial::{
    demo_bundle, demo_key, device_bin, host_bin, repo, serve, table, text, unit, version_in, Relay,
};
use crate::common::tumorxai;

#[test]
fn flashing_over_a_lossy_serial_line_resumes_verifies_and_confirms() {
    let Some(device_bin) = device_bin() else {
        return;
    };
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

    // The client read the state back after the reset: the new model on
    // trial, as the unit's own table says.
    assert!(
        out.contains("the device reports 1.3.0 active on trial"),
        "{out}"
    );
    let table = || table(&state);
    assert_eq!(table()["active"], "b", "{}", log());
    assert_eq!(table()["trial"]["fallback"], "a");
    // Reported only once the service had loaded it, not merely activated.
    assert_eq!(table()["trial"]["loaded"], true, "{}", log());

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
    let Some(device_bin) = device_bin() else {
        return;
    };
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
                // Read back by the client: running as it exits (on trial).
                let now = table(&state);
                assert!(
                    version_in(&now) == "1.3.0"
                        && now.get("pending").is_none()
                        && now.get("trial").is_none_or(|t| t["loaded"] == true),
                    "{point}: {now:#}\n{log}"
                );
            });
        }
    });
}

/// A bundle, correctly signed, whose golden logits are all 1.0 off: it
/// passes every check but the device's own self-test.
pub(crate) fn failing_self_test_bundle(dir: &Path) -> String {
    let key = demo_key();
    let demo = std::fs::read(repo().join("tests/fixtures/tiny-model/int8.bundle")).unwrap();
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
    let Some(device_bin) = device_bin() else {
        return;
    };
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
    let table = || table(&state);

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
    // Confirmed in advance and loaded: no trial.
    let now = table();
    assert!(
        now["active"] == "b" && now.get("trial").is_none(),
        "{now:#}\n{}",
        log()
    );
    assert_eq!(now["highest"]["tumorxai-demo"], "1.3.0");
}

/// The share of the Flashing screen's progress bar that is filled, in the
/// panel frame `png` (`None` when the frame shows no bar).
fn bar_fraction(png: &Path) -> Option<f64> {
    use embedded_graphics::prelude::*;
    use tumorxai_device::display::framebuffer::FrameBuffer;
    use tumorxai_device::display::{BAR, BAR_TRACK};
    // The two colours as the panel's PNG writes them.
    let mut fb = FrameBuffer::new(2, 1);
    Pixel(Point::new(0, 0), BAR).draw(&mut fb).unwrap();
    Pixel(Point::new(1, 0), BAR_TRACK).draw(&mut fb).unwrap();
    let colours = fb.to_rgb_image();
    let (bar, track) = (colours.get_pixel(0, 0), colours.get_pixel(1, 0));
    let frame = image::open(png).ok()?.to_rgb8();
    let filled = frame.pixels().filter(|p| *p == bar).count() as f64;
    let empty = frame.pixels().filter(|p| *p == track).count() as f64;
    (filled + empty > 0.0).then(|| filled / (filled + empty))
}

#[test]
fn a_flash_killed_mid_upload_resumes_where_the_device_stands() {
    let Some(device_bin) = device_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (state, newer) = unit(tmp.path(), &device_bin);
    let total = std::fs::metadata(&newer).unwrap().len() as f64;
    // 921600 baud: the 913 KB upload takes about 15 s.
    let relay = Relay::start(&["--bps", "92160"]);
    let _device = serve(&device_bin, &state, &relay.device, &work, None);
    let log = || std::fs::read_to_string(work.join("device.log")).unwrap_or_default();
    let flash_args = [
        "flash",
        "--port",
        relay.client.as_str(),
        "--timeout-ms",
        "1500",
        "--confirm",
        newer.as_str(),
    ];
    let mut first = Command::new(host_bin())
        .args(flash_args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = state.join("upload.part");
    let held = || std::fs::metadata(&part).map_or(0, |m| m.len());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // While it uploads, the panel shows the bar at the device's progress.
    let mut panel_checked = false;
    while held() < 400_000 && std::time::Instant::now() < deadline {
        if held() > 100_000 && !panel_checked {
            let on_disk = held() as f64 / total;
            if let Some(shown) = bar_fraction(&work.join("outbox/display.png")) {
                assert!(
                    (shown - on_disk).abs() < 0.1,
                    "panel bar {shown:.3}, device holds {on_disk:.3}"
                );
                panel_checked = true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(panel_checked, "the panel showed no upload progress");
    // The field engineer's laptop dies (SIGKILL) mid-upload. A chunk still
    // in flight may land after that: `kept` is read once the device's file
    // has not grown for a second.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut kept = held();
    let mut still_since = std::time::Instant::now();
    while still_since.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if held() != kept {
            kept = held();
            still_since = std::time::Instant::now();
        }
    }
    assert!((400_000..total as u64).contains(&kept), "{kept} bytes kept");

    let o = crate::common::tumorxai(&flash_args);
    assert!(o.status.success(), "{}\n{}", text(&o), log());
    let out = text(&o);
    let resumed_at: u64 = out
        .split("the device already holds ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume: {out}"));
    assert_eq!(resumed_at, kept, "resumed at the device's offset");
    assert!(out.contains("with the bundle's SHA-256"), "{out}");
    assert!(out.contains("the device reports 1.3.0 active"), "{out}");
    let now = table(&state);
    assert!(
        version_in(&now) == "1.3.0" && now.get("trial").is_none(),
        "{now:#}\n{}",
        log()
    );
}

#[test]
fn the_relay_refuses_malformed_control_lines_and_keeps_relaying() {
    // The relay is test tooling of the flash tests: skipped with them.
    if device_bin().is_none() {
        return;
    }
    let mut relay = Relay::start(&[]);
    for bad in [
        "not json",
        "[1, 2]",
        r#"{"corupt": 5}"#,
        r#"{"corrupt": 0}"#,
        r#"{"drop": [5]}"#,
        r#"{"stall": "long"}"#,
        r#"{"both": 1}"#,
    ] {
        let answer = relay.control_line(bad);
        assert!(answer.starts_with("error: "), "{bad}: {answer}");
    }
    // Still relaying, unchanged: bytes written to the client's port come
    // out of the device's.
    use std::io::{Read, Write};
    let mut device = std::fs::File::open(&relay.device).unwrap();
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = [0u8; 4];
        let _ = sender.send(device.read_exact(&mut got).map(|_| got));
    });
    let mut client = std::fs::OpenOptions::new()
        .write(true)
        .open(&relay.client)
        .unwrap();
    client.write_all(b"ping").unwrap();
    let got = received
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the relay forwards after refused control lines");
    assert_eq!(&got.unwrap(), b"ping");
    // And it applies settings: faults, then an event alone.
    assert_eq!(
        relay.control_line(r#"{"corrupt": 1000, "drop": [0, 10]}"#),
        "ok"
    );
    assert_eq!(relay.control_line(r#"{"stall": 0.1}"#), "ok");
}
