//! What the device's integration tests share: the repository root, the
//! demo bundle loaded as the device loads it, and re-signed versions of it.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::{parse_trusted_key, LoadedModel};
use tumorxai_shared::bundle::read_bundle;

/// A TCP port free on loopback now (the tests' services bind it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `done` every 100 ms; fails the test after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The committed int8 demo bundle, verified against the demo trust key.
pub fn demo_model() -> LoadedModel {
    let pem =
        std::fs::read_to_string(repo().join("models/trust/demo-signing-key.pub.pem")).unwrap();
    let key = parse_trusted_key("demo", &pem).unwrap();
    let bytes = std::fs::read(repo().join("tests/fixtures/tiny-model/int8.bundle")).unwrap();
    LoadedModel::from_bundle(&bytes, &[key], ExecutionForm::auto()).unwrap()
}

/// The demo int8 bundle re-signed as `version` with `key` (the demo key's
/// private half is in the repository, so any version of it can be made).
pub fn demo_as(version: &str, key: &SigningKey) -> Vec<u8> {
    resigned("tumorxai-demo", version, key)
}

/// The demo model under another model id and version.
pub fn resigned(model_id: &str, version: &str, key: &SigningKey) -> Vec<u8> {
    let bytes = std::fs::read(repo().join("tests/fixtures/tiny-model/int8.bundle")).unwrap();
    read_bundle(&bytes)
        .unwrap()
        .resigned(model_id, version, key)
        .unwrap()
}

pub fn demo_key() -> SigningKey {
    let pem = std::fs::read_to_string(repo().join("models/demo-signing-key.pem")).unwrap();
    SigningKey::from_pkcs8_pem(&pem).unwrap()
}
