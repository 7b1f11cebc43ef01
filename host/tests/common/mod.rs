//! Running the real `tumorxai` binary from integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

pub mod serial;

/// libtorch's initialisation RNG is global: one in-process training at a time.
#[allow(dead_code)]
pub static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `tumorxai` (libgomp told not to busy-wait, as tests run in parallel).
pub fn tumorxai(args: &[&str]) -> Output {
    Command::new(serial::host_bin())
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("run tumorxai")
}

/// Runs `tumorxai`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = tumorxai(args);
    assert!(
        out.status.success(),
        "tumorxai {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[allow(dead_code)] // not every test file passes paths
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// `tumorxai synth` then `tumorxai split` (default fractions, seed 0) into
/// `dir/data` and `dir/split.json`; returns both paths.
#[allow(dead_code)]
pub fn phantom_split(dir: &Path, per_class: u32, size: u32, seed: u64) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    let split = dir.join("split.json");
    let (per_class, size, seed) = (per_class.to_string(), size.to_string(), seed.to_string());
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--per-class",
        &per_class,
        "--size",
        &size,
        "--seed",
        &seed,
    ]);
    ok(&[
        "split",
        "--data",
        s(&data),
        "--out",
        s(&split),
        "--seed",
        "0",
    ]);
    (data, split)
}
