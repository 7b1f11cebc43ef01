//! `tumorxai-device install` and the state directory, run for real: a
//! unit with nothing installed runs the built-in demo model; installs need a
//! provisioned trust store; a downgrade, a foreign signer or a tampered
//! bundle is refused and changes nothing; a newer model goes to the other
//! slot and runs; `--bundle` cannot run an older model than the installed
//! one; a slot whose file is not the recorded bundle is refused, not
//! replaced by the demo.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{demo_as, demo_key, repo, resigned};
use ed25519_dalek::SigningKey;

fn device(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .args(args)
        .env("TUMORXAI_STATE_DIR", state)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn triage_version(state: &Path, out: &Path, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["triage", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("models/samples/01-glioma-t1c.jpg");
    let o = device(state, &args);
    if !o.status.success() {
        return Err(text(&o));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("01-glioma-t1c.json")).unwrap()).unwrap();
    Ok(format!(
        "{} demo={}",
        json["model"]["version"].as_str().unwrap(),
        json["model"]["demo"]
    ))
}

#[test]
fn installs_are_verified_atomic_and_never_downgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = tmp.path().join("out");
    let bundles = tmp.path().join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = bundles.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let key = demo_key();
    let older = write("1.1.9.bundle", &demo_as("1.1.9", &key));
    let newer = write("1.3.0.bundle", &demo_as("1.3.0", &key));
    let foreign = write(
        "foreign.bundle",
        &demo_as("1.4.0", &SigningKey::from_bytes(&[7; 32])),
    );
    let mut tampered_bytes = demo_as("1.4.0", &key);
    let at = tampered_bytes.len() / 2;
    tampered_bytes[at] ^= 0x01;
    let tampered = write("tampered.bundle", &tampered_bytes);
    let current = repo().join("tests/fixtures/tiny-model/int8.bundle");
    let current = current.to_str().unwrap();

    // Nothing installed: the built-in demo runs, and says so.
    assert_eq!(
        triage_version(&state, &out, &[]).unwrap(),
        "2.3.0 demo=true"
    );

    // No trust store provisioned: nothing can be installed.
    let o = device(&state, &["install", current]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("holds no *.pem public key"),
        "{}",
        text(&o)
    );
    assert!(!state.join("slots.json").exists());

    // Provisioned as a demo unit (the demo key in its trust store).
    std::fs::create_dir_all(state.join("trust")).unwrap();
    std::fs::copy(
        repo().join("models/trust/demo-signing-key.pub.pem"),
        state.join("trust/demo.pem"),
    )
    .unwrap();
    let o = device(&state, &["install", current]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("into slot A"), "{}", text(&o));
    let table = std::fs::read(state.join("slots.json")).unwrap();

    // Refusals leave the state byte for byte as it was.
    for (bundle, why) in [
        (current, "refusing downgrade"),
        (older.as_str(), "refusing downgrade"),
        (foreign.as_str(), "not in the trust store"),
        (tampered.as_str(), "does not match its contents"),
    ] {
        let o = device(&state, &["install", bundle]);
        assert!(!o.status.success(), "{bundle} was installed");
        assert!(text(&o).contains(why), "{bundle}: {}", text(&o));
        assert_eq!(std::fs::read(state.join("slots.json")).unwrap(), table);
        assert!(!state.join("slots/b.bundle").exists());
    }
    assert_eq!(
        triage_version(&state, &out, &[]).unwrap(),
        "1.2.0 demo=true"
    );

    // A newer model goes to slot B and runs; the previous stays in A.
    let o = device(&state, &["install", &newer]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("into slot B"), "{}", text(&o));
    assert!(text(&o).contains("previous model tumorxai-demo 1.2.0 kept in slot A"));
    assert_eq!(
        triage_version(&state, &out, &[]).unwrap(),
        "1.3.0 demo=true"
    );

    // --bundle may run the installed version or a newer one, never an older.
    let err = triage_version(&state, &out, &["--bundle", &older]).unwrap_err();
    assert!(err.contains("refusing downgrade"), "{err}");
    assert_eq!(
        triage_version(&state, &out, &["--bundle", &newer]).unwrap(),
        "1.3.0 demo=true"
    );

    // Anti-rollback survives a change of model id: another model in
    // between does not open the way back to an older demo.
    let other = write("other.bundle", &resigned("other-model", "1.0.0", &key));
    let o = device(&state, &["install", &other]);
    assert!(o.status.success(), "{}", text(&o));
    for bundle in [current, older.as_str()] {
        let o = device(&state, &["install", bundle]);
        assert!(
            !o.status.success(),
            "{bundle} was installed after a model-id switch"
        );
        assert!(text(&o).contains("refusing downgrade"), "{}", text(&o));
    }
    let err = triage_version(&state, &out, &["--bundle", &older]).unwrap_err();
    assert!(err.contains("refusing downgrade"), "{err}");
    // On a provisioned unit --trust cannot widen its trust store.
    let err = triage_version(
        &state,
        &out,
        &[
            "--bundle",
            &foreign,
            "--trust",
            tmp.path().to_str().unwrap(),
        ],
    )
    .unwrap_err();
    assert!(err.contains("is provisioned"), "{err}");
    // Back to the newer demo (same version as installed before is refused,
    // so this is a fresh 1.3.1).
    let newest = write("1.3.1.bundle", &demo_as("1.3.1", &key));
    assert!(device(&state, &["install", &newest]).status.success());

    // A damaged active slot is refused: no silent fallback to another model.
    // Active: B (installs went A 1.2.0, B 1.3.0, A other-model, B 1.3.1).
    let slot = state.join("slots/b.bundle");
    let mut bytes = std::fs::read(&slot).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&slot, bytes).unwrap();
    let err = triage_version(&state, &out, &[]).unwrap_err();
    assert!(err.contains("does not hold the bundle"), "{err}");
}

#[test]
fn a_provisioned_unit_without_a_model_refuses_instead_of_running_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(state.join("trust")).unwrap();
    // A release key, not the demo key.
    let release = SigningKey::from_bytes(&[9; 32]).verifying_key();
    std::fs::write(
        state.join("trust/release.pem"),
        ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(&release, Default::default())
            .unwrap(),
    )
    .unwrap();
    let err = triage_version(&state, &tmp.path().join("out"), &[]).unwrap_err();
    assert!(err.contains("no model installed"), "{err}");
    assert!(err.contains("does not trust the demo key"), "{err}");
}
