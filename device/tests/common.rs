//! What the device's integration tests share: the repository root and the
//! demo bundle loaded as the device loads it.

use std::path::{Path, PathBuf};

use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::{parse_trusted_key, LoadedModel};

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
    let bytes = std::fs::read(repo().join("models/demo-int8.bundle")).unwrap();
    LoadedModel::from_bundle(&bytes, &[key], ExecutionForm::auto()).unwrap()
}
