//! The real `tumorxai` binary through the bundle workflow on a tiny trained
//! run: keygen → bundle (fp32, int8) → inspect → verify → parity, and the
//! refusals: overwriting a key, a tampered bundle, a foreign key, a downgrade.

use crate::common::{ok, s, tumorxai};
use tumorxai_shared::bundle::read_bundle;

fn tiny_run(tmp: &std::path::Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    let split = tmp.join("split.json");
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--per-class",
        "6",
        "--size",
        "64",
        "--seed",
        "3",
    ]);
    ok(&[
        "split",
        "--data",
        s(&data),
        "--out",
        s(&split),
        "--val",
        "0.2",
        "--test",
        "0.3",
    ]);
    let config = tmp.join("tiny.toml");
    std::fs::write(
        &config,
        "[model]\nwidth = 0.125\ninput_size = 48\n[optim]\nbatch_size = 16\n[run]\ndevice = \"cpu\"\n",
    )
    .unwrap();
    let run = tmp.join("run");
    ok(&[
        "train",
        "--config",
        s(&config),
        "--data",
        s(&data),
        "--split",
        s(&split),
        "--out",
        s(&run),
        "--epochs",
        "1",
    ]);
    run
}

#[test]
fn keygen_bundle_inspect_verify_parity() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let key = tmp.path().join("keys/release.pem");
    let public = tmp.path().join("keys/release.pub.pem");
    let out = ok(&["keygen", "--out", s(&key)]);
    assert!(out.contains("key hash"), "{out}");
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = tumorxai(&["keygen", "--out", s(&key)]);
    assert!(!again.status.success(), "keygen overwrote a key");

    let fp32 = tmp.path().join("fp32.bundle");
    let int8 = tmp.path().join("int8.bundle");
    let common = ["--run", s(&run), "--key", s(&key), "--model-id", "tiny"];
    let mut args = vec!["bundle"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--version", "1.0.0", "--out", s(&fp32)]);
    ok(&args);
    let mut args = vec!["bundle"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[
        "--version",
        "1.0.0",
        "--int8",
        "--calibration-images",
        "20",
        "--out",
        s(&int8),
    ]);
    let out = ok(&args);
    assert!(out.contains("int8-qdq"), "{out}");

    let fp32_bytes = std::fs::read(&fp32).unwrap();
    let int8_bytes = std::fs::read(&int8).unwrap();
    let (a, b) = (
        read_bundle(&fp32_bytes).unwrap(),
        read_bundle(&int8_bytes).unwrap(),
    );
    // Three by default, of the test images this barely trained model names
    // right (it gets few): each one's label is what its top-1 is called.
    assert!((1..=3).contains(&a.golden.len()), "{}", a.golden.len());
    for g in a.golden.iter().chain(&b.golden) {
        let label = g
            .expected_class
            .as_deref()
            .expect("default self-tests carry their label");
        assert_eq!(a.manifest.classes[g.top1], label, "{}", g.name);
    }
    assert_eq!(b.manifest.quantization.calibration_images, Some(20));
    let ratio = b.model.len() as f64 / a.model.len() as f64;
    assert!(ratio <= 0.30, "int8 model is {ratio:.3} of fp32");

    let shown = ok(&["bundle", "inspect", s(&int8)]);
    for needle in [
        "tiny 1.0.0",
        "int8-qdq",
        "calibrated on 20 images",
        "NORMAL T1",
        "signed by",
    ] {
        assert!(shown.contains(needle), "inspect lacks {needle:?}:\n{shown}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["bundle", "inspect", "--json", s(&fp32)])).unwrap();
    assert_eq!(json["classes"].as_array().unwrap().len(), 17);
    assert_eq!(json["quantization"]["form"], "fp32");

    for bundle in [&fp32, &int8] {
        let out = ok(&["bundle", "verify", s(bundle), "--key", s(&public)]);
        assert!(out.starts_with("OK"), "{out}");
    }

    // A foreign key, a flipped byte in the model, a downgrade: all refused.
    let other = tmp.path().join("other.pem");
    ok(&["keygen", "--out", s(&other)]);
    let foreign = tumorxai(&["bundle", "verify", s(&fp32), "--key", s(&other)]);
    assert!(!foreign.status.success());
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("not in the trust store"));
    let tampered = tmp.path().join("tampered.bundle");
    let mut bytes = fp32_bytes.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&tampered, bytes).unwrap();
    let out = tumorxai(&["bundle", "verify", s(&tampered), "--key", s(&public)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hash does not match"));
    let after_fp32 = |version: &str, out: &std::path::Path| {
        let mut args = vec!["bundle"];
        args.extend_from_slice(&common);
        args.extend_from_slice(&[
            "--version",
            version,
            "--previous",
            s(&fp32),
            "--out",
            s(out),
        ]);
        tumorxai(&args)
    };
    let older = tmp.path().join("older.bundle");
    let out = after_fp32("0.9.0", &older);
    assert!(!out.status.success() && !older.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing downgrade"));
    let newer = tmp.path().join("newer.bundle");
    assert!(after_fp32("1.0.1", &newer).status.success());
    assert!(newer.exists());

    let data = tmp.path().join("data");
    // `parity` of a bundle against a run on 20 of the phantoms, then `extra`.
    let parity = |bundle: &std::path::Path, checkpoint: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "parity",
            "--bundle",
            s(bundle),
            "--key",
            s(&public),
            "--checkpoint",
            s(checkpoint),
            "--images",
            s(&data),
            "--limit",
            "20",
        ];
        args.extend_from_slice(extra);
        tumorxai(&args)
    };
    let out = parity(&fp32, &run, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("parity OK"), "{out}");
    assert!(out.contains("top-1 agreement     1.0000"), "{out}");
    let report = tmp.path().join("parity.json");
    let out = parity(&int8, &run, &["--json", s(&report)]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["files"].as_array().unwrap().len(), 20);
    let summary = &json["summary"];
    assert_eq!(summary["preprocess_max_abs"].as_f64(), Some(0.0));
    let number = |key: &str| summary[key].as_f64().unwrap();
    // The int8 bars are a release gate for trained models, and the demo is
    // held to them on 510 slices (tests/tests/demo_bundles.rs). This model
    // has one epoch behind it and 2×2 feature maps at 48², so it meets them
    // by chance: of 8 seeds of this very run, 4 crossed one (top-1
    // agreement 0.95 twice, mean EigenCAM correlation 0.898, a shown map at
    // 0.982), and another CPU's kernels moved this seed's lowest shown map
    // from 0.9916 to 0.9891. What must hold for any model: the exit status
    // is the bars' verdict on the summary the report gives (the bars as the
    // README states them, written out here), a crossing is named, and the
    // quantized model is no stranger to the trained one (a broken quantizer
    // agrees on about 1 in 17).
    let passes = number("top1_agreement") >= 0.99
        && number("cam_correlation_mean") >= 0.9
        && number("cam_correlation_min_clear_gap") >= 0.99
        && number("ood_decision_agreement") >= 0.99;
    assert_eq!(
        out.status.success(),
        passes,
        "exit status vs the bars on {summary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).contains("REGRESSION:"),
        !passes
    );
    assert!(number("top1_agreement") >= 0.8, "{summary}");
    assert!(number("ood_decision_agreement") >= 0.8, "{summary}");

    // A bundle checked against another model (one more epoch of training)
    // is a regression, exit 1, named.
    let other = tmp.path().join("run-2");
    ok(&[
        "train",
        "--config",
        s(&tmp.path().join("tiny.toml")),
        "--data",
        s(&data),
        "--split",
        s(&tmp.path().join("split.json")),
        "--out",
        s(&other),
        "--epochs",
        "2",
    ]);
    let out = parity(&fp32, &other, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REGRESSION: logits differ"), "{stderr}");
}
