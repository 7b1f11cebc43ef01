//! DICOM files written by independent tools through the shared front end:
//! pydicom (tests/tools/make_dicom_set.py: every photometric interpretation,
//! bit depth, sign, rescale, window function, transfer syntax it can write,
//! and hostile files) and dcmtk's `dcmcjpeg` (JPEG lossless) and `dcmcjpls`
//! (JPEG-LS, decoded through CharLS with the `jpeg-ls` feature and refused by
//! name without it). Each decodable
//! file must give the plane the script computed with numpy from the
//! standard's formulas; each hostile file a clear error; each slice whose
//! tags rule it out, the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use tumorxai_shared::dicom::{declared_sequence, ruled_out, DeclaredSequence, JPEG_LS_COMPILED_IN};
use tumorxai_shared::{decode_slice, DecodeLimits};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the set with the test tooling venv (`.ci/setup` installs pydicom,
/// numpy and pillow) and, where dcmtk is installed (`.ci/setup` installs it),
/// adds JPEG-lossless and JPEG-LS copies of some of its files.
fn build_set(out: &Path) -> serde_json::Value {
    let root = repo();
    let status = Command::new(root.join(".venv-tools/bin/python"))
        .arg(root.join("tests/tools/make_dicom_set.py"))
        .arg(root.join("models/samples/01-glioma-t1c.jpg"))
        .arg(out)
        .status()
        .expect("running make_dicom_set.py; run `bash .ci/setup`");
    assert!(status.success(), "make_dicom_set.py failed");
    let mut cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cases.json")).unwrap()).unwrap();
    // Compressed copies by dcmtk, each expected to decode to its source's
    // plane: exactly when lossless; JPEG-LS near-lossless with a maximum
    // deviation of 2 stored values may move a pixel by 2 / (width − 1) of the
    // 2000/3000 window (PS3.3 C.11.2.1.2): 2 / 2999 < 7e-4.
    let compressed = [
        (
            "dcmcjpeg",
            &["+e1"][..],
            "mono2-u16-12bit-window",
            "jpeg-lossless",
            None,
        ),
        (
            "dcmcjpls",
            &["+el"][..],
            "mono2-u16-12bit-window",
            "jpeg-ls-12bit",
            None,
        ),
        (
            "dcmcjpls",
            &["+el"][..],
            "mono2-u8-auto-window",
            "jpeg-ls-8bit",
            None,
        ),
        (
            "dcmcjpls",
            &["+el"][..],
            "mono1-u16-window",
            "jpeg-ls-mono1",
            None,
        ),
        (
            "dcmcjpls",
            &["+en", "+md", "2"][..],
            "mono2-u16-12bit-window",
            "jpeg-ls-near",
            Some(7e-4),
        ),
    ];
    for (tool, options, source, name, tolerance) in compressed {
        let status = Command::new(tool)
            .args(options)
            .arg(out.join(format!("{source}.dcm")))
            .arg(out.join(format!("{name}.dcm")))
            .status();
        match status {
            Ok(s) if s.success() => {
                std::fs::copy(
                    out.join(format!("{source}.expected.f32")),
                    out.join(format!("{name}.expected.f32")),
                )
                .unwrap();
                let mut case = cases["cases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["name"] == source)
                    .unwrap()
                    .clone();
                case["file"] = format!("{name}.dcm").into();
                case["name"] = name.into();
                if let Some(tolerance) = tolerance {
                    case["tolerance"] = tolerance.into();
                }
                if name.starts_with("jpeg-ls") && !JPEG_LS_COMPILED_IN {
                    // A build without the `jpeg-ls` feature names it.
                    case["expect"] = "error".into();
                    case["error"] = "JPEG-LS support not compiled in".into();
                }
                cases["cases"].as_array_mut().unwrap().push(case);
            }
            other => {
                assert!(
                    std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_none(),
                    "{tool} (dcmtk) is required in CI: {other:?}"
                );
                eprintln!("dcmtk not installed: {name} case skipped");
            }
        }
    }
    cases
}

fn f32_file(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn dicom_files_decode_to_the_standards_plane_or_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let set = build_set(dir.path());
    let (mut planes, mut reviews, mut errors) = (0, 0, 0);
    for case in set["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        let result = decode_slice(&bytes, DecodeLimits::slice());
        match case["expect"].as_str().unwrap() {
            "plane" => {
                let slice = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                let name = case["name"].as_str().unwrap();
                let expected = f32_file(&dir.path().join(format!("{name}.expected.f32")));
                let lum = &slice.luminance;
                assert_eq!(
                    (lum.width, lum.height),
                    (
                        case["width"].as_u64().unwrap() as u32,
                        case["height"].as_u64().unwrap() as u32
                    ),
                    "{file}"
                );
                let worst = lum
                    .data
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                let tolerance = case["tolerance"].as_f64().unwrap() as f32;
                assert!(worst <= tolerance, "{file}: max |Δ| {worst} > {tolerance}");
                let info = slice.dicom.expect("DICOM description");
                assert_eq!(ruled_out(&info), None, "{file}");
                assert_eq!(
                    declared_sequence(&info.sequence_text),
                    Some(DeclaredSequence::Known(tumorxai_shared::Sequence::T1C)),
                    "{file}"
                );
                assert_eq!(
                    info.sop_instance_uid_hash.as_ref().map(String::len),
                    Some(16)
                );
                planes += 1;
            }
            "review" => {
                let slice = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                let info = slice.dicom.unwrap();
                let reason = ruled_out(&info).unwrap_or_else(|| panic!("{file}: not ruled out"));
                let want = case["reason"].as_str().unwrap();
                assert!(reason.contains(want), "{file}: {reason:?} lacks {want:?}");
                reviews += 1;
            }
            "error" => {
                let err = match result {
                    Ok(_) => panic!("{file}: decoded, expected an error"),
                    Err(e) => e.to_string(),
                };
                let want = case["error"].as_str().unwrap();
                assert!(err.contains(want), "{file}: {err:?} lacks {want:?}");
                eprintln!("{file}: {err}");
                errors += 1;
            }
            other => panic!("unknown expectation {other}"),
        }
    }
    eprintln!("{planes} planes, {reviews} ruled out by their tags, {errors} refused");
    assert!(planes >= 14 && reviews == 5 && errors >= 14);
    if std::env::var_os("TUMORXAI_REQUIRE_TOOLS").is_some() {
        // Five dcmtk copies: one JPEG lossless, four JPEG-LS (decoded with
        // the `jpeg-ls` feature, refused by name without it).
        let expected = if JPEG_LS_COMPILED_IN {
            (19, 14)
        } else {
            (15, 18)
        };
        assert_eq!((planes, errors), expected, "the dcmtk cases must run in CI");
    }
}

#[test]
fn truncations_and_byte_flips_of_a_dicom_file_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    build_set(dir.path());
    let whole = std::fs::read(dir.path().join("mono2-s16-rescale-window.dcm")).unwrap();
    // Every cut through the header and a sample of cuts through the pixels.
    let cuts = (0..whole.len().min(1200)).chain((1200..whole.len()).step_by(997));
    for cut in cuts {
        let _ = decode_slice(&whole[..cut], DecodeLimits::slice());
    }
    // Each header byte overwritten by 0xFF.
    for at in 132..whole.len().min(1000) {
        let mut bad = whole.clone();
        bad[at] = 0xFF;
        let _ = decode_slice(&bad, DecodeLimits::slice());
    }
}
