//! A device unit on a fake serial line for the flashing tests: the
//! fault-injecting relay (tests/tools/serial_relay.py) between two
//! pseudo-terminal pairs, a state directory provisioned with the demo trust
//! key and 1.2.0 installed, the real `tumorxai-device serve --serial`, and
//! re-signed demo bundles.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use tumorxai_shared::bundle::read_bundle;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `tumorxai` binary under test: cargo's, or the copy in
/// `TUMORXAI_BIN_DIR` (a long soak runs on copies while the tree is rebuilt).
pub fn host_bin() -> PathBuf {
    std::env::var_os("TUMORXAI_BIN_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_tumorxai")),
        |dir| PathBuf::from(dir).join("tumorxai"),
    )
}

/// The device binary beside `tumorxai`, or `None` (the test is skipped,
/// except in CI where `TUMORXAI_REQUIRE_TOOLS` makes it a failure).
pub fn device_bin() -> Option<PathBuf> {
    let bin = host_bin().with_file_name("tumorxai-device");
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none(),
        "{} is built with the workspace",
        bin.display()
    );
    eprintln!("no device binary beside tumorxai: flash test skipped");
    None
}

/// A relay: its process, its control line (stdin), its answers (stdout)
/// and the two port paths.
pub struct Relay {
    child: Child,
    control: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    pub device: String,
    pub client: String,
}

impl Relay {
    pub fn start(faults: &[&str]) -> Relay {
        let root = repo();
        let mut child = Command::new(root.join(".venv-tools/bin/python"))
            .arg(root.join("tests/tools/serial_relay.py"))
            .args(faults)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python in .venv-tools: run `bash .ci/setup`");
        let control = child.stdin.take();
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        let paths: serde_json::Value = serde_json::from_str(&line).unwrap();
        Relay {
            child,
            control,
            answers,
            device: paths["device"].as_str().unwrap().to_string(),
            client: paths["client"].as_str().unwrap().to_string(),
        }
    }

    /// Replaces the relay's faults (see the relay's docs for the keys) and
    /// waits until it applies them.
    pub fn set(&mut self, settings: &serde_json::Value) {
        let answer = self.control_line(&settings.to_string());
        assert_eq!(answer, "ok", "relay answer to {settings}");
    }

    /// Sends one raw control line; the relay's answer ("ok" or "error: ...").
    pub fn control_line(&mut self, line: &str) -> String {
        let control = self.control.as_mut().unwrap();
        writeln!(control, "{line}").unwrap();
        control.flush().unwrap();
        let mut answer = String::new();
        self.answers.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.control.take());
        let _ = self.child.wait();
    }
}

/// A running `serve`, killed when dropped.
pub struct Device(pub Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn demo_key() -> SigningKey {
    SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(repo().join("models/demo-signing-key.pem")).unwrap(),
    )
    .unwrap()
}

/// The demo bundle re-signed by `key` as `version`.
pub fn demo_bundle_bytes(version: &str, key: &SigningKey) -> Vec<u8> {
    let demo = std::fs::read(repo().join("tests/fixtures/tiny-model/int8.bundle")).unwrap();
    read_bundle(&demo)
        .unwrap()
        .resigned("tumorxai-demo", version, key)
        .unwrap()
}

/// The demo bundle re-signed as `version`, written into `dir`; its path.
pub fn demo_bundle(dir: &Path, version: &str) -> String {
    let path = dir.join(format!("{version}.bundle"));
    std::fs::write(&path, demo_bundle_bytes(version, &demo_key())).unwrap();
    path.to_str().unwrap().to_string()
}

/// A unit with the demo trust key and 1.2.0 installed, and a 1.3.0 bundle.
pub fn unit(dir: &Path, device_bin: &Path) -> (PathBuf, String) {
    let root = repo();
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("trust")).unwrap();
    std::fs::copy(
        root.join("models/trust/demo-signing-key.pub.pem"),
        state.join("trust/demo.pem"),
    )
    .unwrap();
    let install = Command::new(device_bin)
        .args(["install", "tests/fixtures/tiny-model/int8.bundle"])
        .env("TUMORXAI_STATE_DIR", &state)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", text(&install));
    (state, demo_bundle(dir, "1.3.0"))
}

/// Starts `serve --serial port` on the unit (inbox and outbox in `dir`,
/// its log appended to `dir/device.log`) and waits until its SMP server
/// has opened the port.
pub fn serve(
    device_bin: &Path,
    state: &Path,
    port: &str,
    dir: &Path,
    failpoint: Option<&str>,
) -> Device {
    let log_path = dir.join("device.log");
    let started = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .matches("SMP server on")
            .count()
    };
    let before = started();
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
                .open(&log_path)
                .unwrap(),
        );
    if let Some(point) = failpoint {
        command.env("TUMORXAI_FAILPOINT", point);
    }
    let mut device = Device(command.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while started() == before {
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = device.0.try_wait().unwrap() {
            panic!(
                "serve exited ({status}) before its SMP server opened {port}:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "serve's SMP server did not open {port} within 30 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    device
}

/// The unit's slot table.
pub fn table(state: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(state.join("slots.json")).unwrap()).unwrap()
}

/// Polls the unit's slot table (10 s at most) until `done` holds; the
/// table. Panics with `what` and the last table on timeout.
pub fn wait_for_table(
    state: &Path,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = table(state);
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The version in `table`'s active slot.
pub fn version_in(table: &serde_json::Value) -> &str {
    table["active"]
        .as_str()
        .and_then(|slot| table[slot]["version"].as_str())
        .unwrap_or("")
}

/// The version in the active slot.
pub fn active_version(state: &Path) -> String {
    version_in(&table(state)).to_string()
}
