//! ARM parity: the device binary cross-built for `aarch64-unknown-linux-gnu`
//! (by `.ci/test`) runs under `qemu-aarch64-static -cpu cortex-a72` on a few
//! sample scans and must give the x86 run's logits (≤ 1e-5) and flags — for
//! the fixture model's fp32 bundle, and for the demo's int8 bundle in the
//! int8 form (the default on aarch64 CPUs with the dot-product extension).
//! Emulation is ~200× slower than native, so this stays at three scans. The same
//! binary under `-cpu cortex-a72` and `-cpu cortex-a76` shows which form
//! `auto` picks with and without the dot-product extension.
//!
//! Without the cross-built binary the test says so and passes, unless
//! `TUMORXAI_REQUIRE_ARM` is set (as `.ci/test` does), where it fails.

use crate::common::repo;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCANS: [&str; 3] = [
    "models/samples/01-glioma-t1c.jpg",
    "models/samples/07-normal-t2.jpg",
    "models/samples/14-schwannoma-t1.jpg",
];

fn arm_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let bin = target.join("aarch64-unknown-linux-gnu/arm-test/tumorxai-device");
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("TUMORXAI_REQUIRE_ARM").is_none(),
        "{} is missing: `cargo build -p tumorxai-device --target aarch64-unknown-linux-gnu --profile arm-test` (.ci/test does)",
        bin.display()
    );
    eprintln!("skipping ARM parity: {} not built", bin.display());
    None
}

/// Triage JSON per scan: (logits, flag).
fn triage(command: &mut Command, out: &Path, bundle: &str, form: &str) -> Vec<(Vec<f64>, String)> {
    let run = command
        .current_dir(repo())
        .args(["triage", "--bundle", bundle, "--form", form, "--out"])
        .arg(out)
        .args(SCANS)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    SCANS
        .iter()
        .map(|scan| {
            let stem = Path::new(scan).file_stem().unwrap().to_string_lossy();
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap())
                    .unwrap();
            let logits = json["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (logits, json["triage"]["flag"].to_string())
        })
        .collect()
}

#[test]
fn aarch64_under_qemu_matches_x86() {
    let Some(arm) = arm_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (bundle, form) in [
        // fp32 kernels on the fixture model (a release commits no fp32
        // demo bundle; the ops are the same, the channels fewer).
        ("tests/fixtures/tiny-model/fp32.bundle", "auto"),
        ("models/demo-int8.bundle", "int8"),
    ] {
        let x86 = triage(
            &mut Command::new(env!("CARGO_BIN_EXE_tumorxai-device")),
            &tmp.path().join("x86"),
            bundle,
            form,
        );
        let mut qemu = Command::new("qemu-aarch64-static");
        qemu.args(["-cpu", "cortex-a72", "-L", "/usr/aarch64-linux-gnu"])
            .arg(&arm);
        let aarch64 = triage(&mut qemu, &tmp.path().join("arm"), bundle, form);
        for ((a, fa), (b, fb)) in x86.iter().zip(&aarch64) {
            assert_eq!(a.len(), 17);
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            eprintln!("{bundle} ({form}): max |Δ logit| x86 vs aarch64 = {diff:e}");
            assert!(diff <= 1e-5, "{bundle}: logits differ by {diff}");
            assert_eq!(fa, fb, "{bundle}: flags differ");
        }
    }
}

/// The execution form `auto` picks for an int8 bundle on an emulated CPU.
fn auto_form(cpu: &str, arm: &Path, out: &Path, disable_dotprod: bool) -> String {
    let mut qemu = Command::new("qemu-aarch64-static");
    qemu.args(["-cpu", cpu, "-L", "/usr/aarch64-linux-gnu"])
        .arg(arm)
        .current_dir(repo())
        .args([
            "triage",
            "--bundle",
            "tests/fixtures/tiny-model/int8.bundle",
        ])
        .arg("--out")
        .arg(out)
        .arg(SCANS[0]);
    if disable_dotprod {
        qemu.env("TRACT_DOTPROD_DISABLE", "1");
    } else {
        qemu.env_remove("TRACT_DOTPROD_DISABLE");
    }
    let run = qemu.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("int8 bundle in the"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("01-glioma-t1c.json")).unwrap()).unwrap();
    json["model"]["execution_form"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn auto_picks_int8_kernels_only_where_the_cpu_has_the_dot_product_extension() {
    let Some(arm) = arm_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Cortex-A72 (Armv8.0): no SDOT; Cortex-A76 (Armv8.2): SDOT.
    assert_eq!(
        auto_form("cortex-a72", &arm, &tmp.path().join("a72"), false),
        "dequantized"
    );
    assert_eq!(
        auto_form("cortex-a76", &arm, &tmp.path().join("a76"), false),
        "int8"
    );
    assert_eq!(
        auto_form("cortex-a76", &arm, &tmp.path().join("a76-off"), true),
        "dequantized",
        "TRACT_DOTPROD_DISABLE forces the path without dot products"
    );
}
