//! A seeded, time-bounded soak of fault-injected flashes: `tumorxai flash`
//! against the real `tumorxai-device serve --serial` over the misbehaving
//! relay, attempt after attempt, each drawn from a seeded generator:
//!
//! - a good bundle over a faulty line (bit flips, duplicated bytes, delays,
//!   lost bytes, both directions, a stall or a cut cable mid-way), flashed
//!   with `--confirm` to the end: must succeed and run;
//! - the same, with the host killed (SIGKILL) at a random moment;
//! - the same, with the device killed at a random moment, then restarted;
//! - a bad bundle (bad signature, foreign key, downgrade, failing self-test
//!   — refused by the device after the upload, each for its own reason;
//!   tampered or truncated — refused by the host before): must fail and
//!   change nothing.
//!
//! A flash that reports success must have left the unit running the new
//! version, confirmed, at the moment it exits. After every attempt the
//! unit's active slot must hold a bundle that
//! verifies against its trust store and passes its self-test (loaded by the
//! device's own loader), and it must be one of the good bundles.
//!
//! `TUMORXAI_SOAK_SECONDS` bounds the run (default 60: CI), and
//! `TUMORXAI_SOAK_SEED` picks the sequence (default 11). The counts are
//! printed at the end.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::LoadedModel;
use tumorxai_device::state::StateDir;

use crate::common::serial::{
    active_version, demo_bundle_bytes, demo_key, device_bin, host_bin, serve, table, unit,
    version_in, wait_for_table, Device, Relay,
};

/// Runs `tumorxai flash` until it exits or `kill_after` passes (then
/// SIGKILL); its exit status (`None`: killed) and its stderr.
fn flash(
    port: &str,
    bundle: &Path,
    kill_after: Option<Duration>,
    log: &Path,
) -> (Option<ExitStatus>, String) {
    let mut child: Child = Command::new(host_bin())
        .args(["flash", "--port", port, "--timeout-ms", "400", "--retries"])
        .args(["40", "--verify-timeout-s", "30", "--confirm"])
        .arg(bundle)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + kill_after.unwrap_or(Duration::from_secs(300));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// Random line faults for one attempt (the relay's settings).
fn line_faults(rng: &mut ChaCha8Rng) -> serde_json::Value {
    let mut faults = json!({ "both": rng.random_bool(0.5) });
    if rng.random_bool(0.6) {
        faults["corrupt"] = json!(rng.random_range(200_000..3_000_000));
    }
    if rng.random_bool(0.4) {
        faults["dup"] = json!(rng.random_range(200_000..3_000_000));
    }
    // Jitter on every read makes an attempt several seconds longer: on
    // some attempts only, so that the soak gets through hundreds.
    if rng.random_bool(0.1) {
        faults["delay_ms"] = json!(rng.random_range(1..3));
    }
    if rng.random_bool(0.4) {
        faults["drop"] = json!([rng.random_range(0..900_000), rng.random_range(1..3000)]);
    }
    faults
}

/// The unit's running model must verify and self-test, and be a good one.
fn check_active(state: &Path, good: &HashSet<String>, bad: &HashSet<String>, what: &str) {
    let dir = StateDir::new(state);
    let (slot, bytes, info) = dir
        .active_bundle()
        .unwrap_or_else(|e| panic!("{what}: the active slot is unreadable: {e}"))
        .unwrap_or_else(|| panic!("{what}: no active model"));
    let sha = hex::encode(Sha256::digest(&bytes));
    assert!(!bad.contains(&sha), "{what}: a refused bundle is active");
    assert!(
        good.contains(&sha),
        "{what}: slot {slot} holds an unknown bundle"
    );
    let trust = dir.trust().unwrap();
    if let Err(e) = LoadedModel::from_bundle(&bytes, &trust, ExecutionForm::auto()) {
        panic!("{what}: active {} does not load: {e}", info.version);
    }
}

#[derive(Default, Debug)]
struct Counts {
    attempts: u32,
    completed: u32,
    refused_by_device: u32,
    refused_by_host: u32,
    host_killed: u32,
    device_killed: u32,
    /// Stalls and cut cables that hit a flash mid-upload.
    line_events: u32,
}

#[test]
fn a_seeded_soak_of_fault_injected_flashes_never_leaves_a_bad_model() {
    let Some(device_bin) = device_bin() else {
        return;
    };
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let budget = Duration::from_secs(env("TUMORXAI_SOAK_SECONDS", 60));
    let seed = env("TUMORXAI_SOAK_SEED", 11);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (state, _) = unit(tmp.path(), &device_bin);
    let mut relay = Relay::start(&["--seed", &seed.to_string()]);
    let mut device: Device = serve(&device_bin, &state, &relay.device, &work, None);
    let device_log = work.join("device.log");

    let key = demo_key();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let sha = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    let installed =
        std::fs::read(crate::common::serial::repo().join("tests/fixtures/tiny-model/int8.bundle"))
            .unwrap();
    let mut good = HashSet::from([sha(&installed)]);
    let mut bad = HashSet::new();
    // Refused by the device after the upload.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let wrong_key = demo_bundle_bytes("9.0.0", &stranger);
    let downgrade = demo_bundle_bytes("1.1.0", &key);
    let self_test = std::fs::read(crate::flash_cli::failing_self_test_bundle(tmp.path())).unwrap();
    // Refused by the host before anything is sent.
    let mut tampered = demo_bundle_bytes("9.1.0", &key);
    let middle = tampered.len() / 2;
    if let Some(b) = tampered.get_mut(middle) {
        *b ^= 0x10;
    }
    let truncated = demo_bundle_bytes("9.2.0", &key)[..600_000].to_vec();
    let mut bad_signature = demo_bundle_bytes("9.3.0", &key);
    if let Some(b) = bad_signature.last_mut() {
        *b ^= 0x01;
    }
    // Each with the reason the device must give (and no other).
    let device_refuses = [
        (
            write("bad-signature.bundle", &bad_signature),
            "signature is not valid",
        ),
        (
            write("wrong-key.bundle", &wrong_key),
            "not in the trust store",
        ),
        (write("downgrade.bundle", &downgrade), "refusing downgrade"),
        (write("self-test.bundle", &self_test), "self-test"),
    ];
    let host_refuses = [
        write("tampered.bundle", &tampered),
        write("truncated.bundle", &truncated),
    ];
    for b in [
        &bad_signature,
        &wrong_key,
        &downgrade,
        &self_test,
        &tampered,
        &truncated,
    ] {
        bad.insert(sha(b));
    }

    let mut next_patch = 0u32;
    let mut counts = Counts::default();
    let started = Instant::now();
    while started.elapsed() < budget {
        counts.attempts += 1;
        let attempt = counts.attempts;
        let flash_log = work.join("flash.log");
        let version = format!("1.3.{next_patch}");
        let bundle = demo_bundle_bytes(&version, &key);
        good.insert(sha(&bundle));
        let bundle = write("next.bundle", &bundle);
        let what = |kind: &str| format!("attempt {attempt} ({kind}, seed {seed})");
        settle(&state);
        let attempt_started = Instant::now();
        let scenario = rng.random_range(0..100);
        if scenario < 30 {
            // Good bundle, faulty line, to the end; sometimes a stall or a
            // cut cable mid-way.
            let faults = line_faults(&mut rng);
            relay.set(&faults);
            let client = relay.client.clone();
            let (status, out) = if rng.random_bool(0.3) {
                // Fired once the device holds `at` bytes of the upload
                // (not at all if the flash ends first).
                let event = if rng.random_bool(0.5) { "stall" } else { "cut" };
                let event = json!({ event: rng.random_range(0.2..1.5) });
                let part = state.join("upload.part");
                // A killed attempt may have left part of this bundle: the
                // event waits for `at` more bytes than the device holds.
                let held = std::fs::metadata(&part).map_or(0, |m| m.len());
                let len = std::fs::metadata(&bundle).unwrap().len();
                let at = held + rng.random_range(0..len.saturating_sub(held).max(1));
                let done = AtomicBool::new(false);
                std::thread::scope(|s| {
                    let relay = &mut relay;
                    let (event, done, counts) = (&event, &done, &mut counts);
                    s.spawn(move || {
                        while !done.load(Ordering::Relaxed) {
                            if std::fs::metadata(&part).is_ok_and(|m| m.len() >= at) {
                                relay.set(event);
                                counts.line_events += 1;
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    });
                    let result = flash(&client, &bundle, None, &flash_log);
                    done.store(true, Ordering::Relaxed);
                    result
                })
            } else {
                flash(&client, &bundle, None, &flash_log)
            };
            let log = std::fs::read_to_string(&device_log).unwrap_or_default();
            assert!(
                status.is_some_and(|s| s.success()),
                "{} {faults}: {out}\n{log}",
                what("line faults")
            );
            assert_runs(&state, &version, &what("line faults"));
            counts.completed += 1;
        } else if scenario < 55 {
            // Good bundle, the host killed at a random moment.
            relay.set(&line_faults(&mut rng));
            let after = Duration::from_millis(rng.random_range(100..4000));
            let (status, out) = flash(&relay.client, &bundle, Some(after), &flash_log);
            match status {
                None => counts.host_killed += 1,
                Some(s) if s.success() => {
                    assert_runs(&state, &version, &what("host killed"));
                    counts.completed += 1;
                }
                // Before it was killed, the flash had no reason to fail.
                Some(s) => panic!("{} exited {s} before the kill: {out}", what("host killed")),
            }
        } else if scenario < 70 {
            // Good bundle, the device killed (SIGKILL) at a random moment,
            // then restarted.
            relay.set(&line_faults(&mut rng));
            let after = Duration::from_millis(rng.random_range(100..4000));
            let pid = device.0.id().to_string();
            let killer = std::thread::spawn(move || {
                std::thread::sleep(after);
                Command::new("kill").args(["-9", &pid]).status()
            });
            let grace = after + Duration::from_millis(500);
            let (status, out) = flash(&relay.client, &bundle, Some(grace), &flash_log);
            let killed = killer.join().unwrap();
            assert!(
                killed.as_ref().is_ok_and(|s| s.success()),
                "{}: kill -9 failed: {killed:?}",
                what("device killed")
            );
            // Killed by the test, not dead of its own accord.
            let exit = device.0.wait().unwrap();
            assert_eq!(
                exit.signal(),
                Some(9),
                "{}: the device exited {exit}",
                what("device killed")
            );
            // Retries outlast the half second between the two kills.
            assert!(
                status.is_none_or(|s| s.success()),
                "{}: the flash failed: {out}",
                what("device killed")
            );
            counts.device_killed += 1;
            check_active(&state, &good, &bad, &what("device killed"));
            device = serve(&device_bin, &state, &relay.device, &work, None);
            if status.is_some_and(|s| s.success()) {
                assert_runs(&state, &version, &what("device killed"));
                counts.completed += 1;
            }
        } else if scenario < 88 {
            // A bundle the device must refuse after receiving it.
            relay.set(&line_faults(&mut rng));
            let before = active_version(&state);
            let which = rng.random_range(0..device_refuses.len());
            let (bundle, reason) = &device_refuses[which];
            let (status, out) = flash(&relay.client, bundle, None, &flash_log);
            assert!(
                status.is_some_and(|s| !s.success())
                    && out.contains("the device refused the bundle")
                    && out.contains(reason),
                "{} {} (expected {reason:?}): {out}",
                what("bad bundle"),
                bundle.display()
            );
            assert_eq!(active_version(&state), before, "{}", what("bad bundle"));
            counts.refused_by_device += 1;
        } else {
            // A damaged file the host must refuse before sending anything.
            let which = rng.random_range(0..host_refuses.len());
            let (status, out) = flash(&relay.client, &host_refuses[which], None, &flash_log);
            assert!(
                status.is_some_and(|s| !s.success())
                    && out.contains("is not a signed model bundle"),
                "{}: {out}",
                what("damaged file")
            );
            counts.refused_by_host += 1;
        }
        // The next good bundle is a newer version once this one runs (an
        // interrupted attempt is simply repeated, resuming the upload).
        if active_version(&state) == version {
            next_patch += 1;
        }
        eprintln!(
            "soak attempt {attempt}: scenario {scenario}, {:.1} s",
            attempt_started.elapsed().as_secs_f64()
        );
        check_active(&state, &good, &bad, &what("after the attempt"));
    }
    drop(device);
    eprintln!(
        "soak (seed {seed}, {:.0} s): {counts:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(counts.attempts >= 3, "{counts:?}");
    assert!(counts.completed >= 1, "no flash completed: {counts:?}");
    // A long run must have met every kind of attempt (about one in eleven
    // attempts has a stall or cut: 150 attempts miss it with p < 1e-6).
    if counts.attempts >= 150 {
        assert!(
            counts.refused_by_device > 0
                && counts.refused_by_host > 0
                && counts.host_killed > 0
                && counts.device_killed > 0
                && counts.line_events > 0,
            "{counts:?}"
        );
    }
}

/// Waits until no trial is in progress: a model confirmed in advance is on
/// trial until the device reloaded it, and uploads wait for that.
fn settle(state: &Path) {
    wait_for_table(state, "a trial outlasted its reload", |t| {
        t.get("trial").is_none()
    });
}

/// After a flash reported success: the unit runs `version`, confirmed
/// (the client read it back, so no waiting).
fn assert_runs(state: &Path, version: &str, what: &str) {
    let now = table(state);
    assert!(
        version_in(&now) == version && now.get("trial").is_none() && now.get("pending").is_none(),
        "{what}: the flash reported {version} confirmed and running: {now:#}"
    );
}
