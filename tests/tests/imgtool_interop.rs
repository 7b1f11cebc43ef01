//! MCUboot interoperability: MCUboot's own field tool, `imgtool` 2.5.0 (from
//! PyPI, installed by the test set-up), accepts the committed demo bundle and
//! the fixture's fp32 and int8 bundles with the demo key, and refuses a tampered bundle and a foreign key; and
//! `imgtool sign` of a bundle's payload with the same key writes exactly our
//! bytes (Ed25519 is deterministic), so the container is MCUboot's format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn imgtool(args: &[&str]) -> Output {
    let exe = repo().join(".venv-tools/bin/imgtool");
    assert!(
        exe.exists(),
        "{} missing: run `bash .ci/setup`",
        exe.display()
    );
    Command::new(exe).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The model version our reader finds in a bundle's manifest.
fn demo_version(bundle: &Path) -> String {
    let bytes = std::fs::read(bundle).unwrap();
    tumorxai_shared::bundle::read_bundle(&bytes)
        .unwrap()
        .manifest
        .version
}

#[test]
fn imgtool_verifies_our_bundles_and_refuses_tampering() {
    let private = repo().join("models/demo-signing-key.pem");
    let public = repo().join("models/trust/demo-signing-key.pub.pem");
    // The shipped demo (int8; a release commits no fp32 bundle) and both
    // forms of the fixture model, all signed with the demo key.
    for bundle in [
        "models/demo-int8.bundle",
        "tests/fixtures/tiny-model/fp32.bundle",
        "tests/fixtures/tiny-model/int8.bundle",
    ] {
        let b = repo().join(bundle);
        let version = demo_version(&b);
        for key in [&private, &public] {
            let out = imgtool(&["verify", "-k", path(key), path(&b)]);
            assert!(out.status.success(), "{bundle}: {}", text(&out));
            assert!(text(&out).contains("Image was correctly validated"));
            assert!(
                text(&out).contains(&format!("Image version: {version}+0")),
                "{}",
                text(&out)
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(repo().join("tests/fixtures/tiny-model/int8.bundle")).unwrap();
    let tampered = tmp.path().join("tampered.bundle");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    std::fs::write(&tampered, &bytes).unwrap();
    let out = imgtool(&["verify", "-k", path(&public), path(&tampered)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid hash"), "{}", text(&out));

    let foreign = tmp.path().join("foreign.pem");
    let out = imgtool(&["keygen", "-k", path(&foreign), "-t", "ed25519"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = imgtool(&[
        "verify",
        "-k",
        path(&foreign),
        path(&repo().join("tests/fixtures/tiny-model/fp32.bundle")),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn imgtool_sign_writes_exactly_our_container() {
    let ours = std::fs::read(repo().join("tests/fixtures/tiny-model/int8.bundle")).unwrap();
    let image_size = u32::from_le_bytes(ours[12..16].try_into().unwrap()) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let payload = tmp.path().join("payload.bin");
    std::fs::write(&payload, &ours[32..32 + image_size]).unwrap();
    let signed = tmp.path().join("signed.bin");
    let key = repo().join("models/demo-signing-key.pem");
    let out = imgtool(&[
        "sign",
        "-k",
        path(&key),
        "-v",
        &demo_version(&repo().join("tests/fixtures/tiny-model/int8.bundle")),
        "-H",
        "32",
        "--pad-header",
        "-S",
        "0x4000000",
        path(&payload),
        path(&signed),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let theirs = std::fs::read(&signed).unwrap();
    assert_eq!(theirs.len(), ours.len());
    assert!(
        theirs == ours,
        "imgtool's signed image differs from our bundle"
    );
}
