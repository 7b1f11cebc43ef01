//! `tumorxai explain` run for real on the demo model: three phantom slices
//! with their lesion masks (made by `tumorxai synth --masks`), every method,
//! faithfulness measured. Checks what a user gets — per-slice overlays at
//! the slice's size, 16-bit raw maps, the sheet, the report with a random
//! baseline — and that a bad layer name is refused with the valid ones.

use std::path::Path;

use crate::common::{ok, s, tumorxai};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn explain_writes_maps_sheet_and_faithfulness() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--per-class",
        "1",
        "--seed",
        "5",
        "--size",
        "128",
        "--masks",
    ]);
    let masks = tmp.path().join("phantom-masks");
    let out = tmp.path().join("explain");
    let class = |prefix: &str| {
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap()
    };
    let glioma = class("Glioma");
    let meningioma = class("Meningioma");
    let normal = class("NORMAL");
    let stdout = ok(&[
        "explain",
        "--run",
        s(&repo().join("tests/fixtures/tiny-model/run")),
        "--images",
        s(&glioma),
        s(&meningioma),
        s(&normal),
        "--masks",
        s(&masks),
        "--faithfulness",
        "--out",
        s(&out),
    ]);
    assert!(stdout.contains("random: deletion"), "{stdout}");
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for method in ["gradcam", "gradcampp", "eigencam"] {
        let overlays: Vec<&String> = files
            .iter()
            .filter(|f| f.ends_with(&format!("-{method}.png")))
            .collect();
        assert_eq!(overlays.len(), 3, "{method}: {files:?}");
        let overlay = image::open(out.join(overlays[0])).unwrap();
        // The slice (128²) under a 14-pixel caption.
        assert_eq!((overlay.width(), overlay.height()), (128, 142));
        let raw = overlays[0].replace(".png", "-map16.png");
        let map = image::open(out.join(&raw)).unwrap();
        assert!(matches!(map, image::DynamicImage::ImageLuma16(_)), "{raw}");
        assert_eq!((map.width(), map.height()), (128, 128));
        assert!(map.to_luma16().pixels().any(|p| p[0] > 0), "{raw} is empty");
    }
    assert!(files.contains(&"sheet.png".to_string()));
    assert!(files.contains(&"faithfulness.png".to_string()));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("faithfulness.json")).unwrap()).unwrap();
    let methods = report["methods"].as_object().unwrap();
    assert_eq!(methods.len(), 4, "three methods and the random map");
    for (key, m) in methods {
        assert_eq!(m["slices"], 3, "{key}");
        for measure in [
            "deletion_auc",
            "insertion_auc",
            "road_morf",
            "road_lerf",
            "energy_in_lesion",
        ] {
            let v = m[measure]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} {measure}: {m}"));
            assert!((0.0..=1.0).contains(&v), "{key} {measure} = {v}");
        }
        // Two of the three slices have a lesion (the normal one has none).
        let pointing = m["pointing"].as_f64().unwrap();
        assert!(
            [0.0, 0.5, 1.0].contains(&pointing),
            "{key} pointing {pointing}"
        );
    }
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r["lesion_pixels"].as_u64().unwrap_or(0) > 0)
            .count(),
        2
    );
    assert!(std::fs::read_to_string(out.join("faithfulness.md"))
        .unwrap()
        .contains("| random |"));

    let bad = tumorxai(&[
        "explain",
        "--run",
        s(&repo().join("tests/fixtures/tiny-model/run")),
        "--images",
        s(&normal),
        "--layer",
        "layer9",
        "--out",
        s(&tmp.path().join("bad")),
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("no layer \"layer9\"") && stderr.contains("layer4.1"),
        "{stderr}"
    );
}
