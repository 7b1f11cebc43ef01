//! `tumorxai experiment` with the shipped CI configuration on a tiny
//! phantom set: every cell of the paper-shaped table, sane values, the
//! output files, a re-run that skips every finished cell; a pre-training
//! shared by seeds, cross-source test sets added afterwards, and a bad
//! cross-source folder refused before anything trains.

use std::path::Path;

use crate::common::{ok, phantom_split, s};

/// `tumorxai experiment` on `config` with the dataset and output given, then
/// `extra` arguments.
fn experiment_args<'a>(
    config: &'a str,
    data: &'a Path,
    split: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "experiment",
        "--config",
        config,
        "--data",
        s(data),
        "--split",
        s(split),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn ci_experiment_writes_the_table_and_reruns_skip_finished_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantom_split(tmp.path(), 6, 80, 4);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/ci.toml");
    let out = tmp.path().join("experiment");
    let args = experiment_args(config, &data, &split, &out, &["--threads", "2"]);
    let stdout = ok(&args);
    for file in ["table.md", "paired.md", "table.json", "table.csv", "f1.png"] {
        assert!(out.join(file).exists(), "missing {file}");
    }
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("table.json")).unwrap()).unwrap();
    let rows = table["rows"].as_array().unwrap();
    // 5 methods × 4 label fractions × 2 protocols, one seed each.
    assert_eq!(rows.len(), 40);
    assert_eq!(table["cells"].as_array().unwrap().len(), 40);
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        let key = (
            row["arm"].as_str().unwrap().to_string(),
            row["protocol"].as_str().unwrap().to_string(),
            row["label_percent"].as_u64().unwrap(),
        );
        assert!(seen.insert(key.clone()), "duplicate row {key:?}");
        assert_eq!(row["seeds"], 1);
        for metric in ["accuracy", "precision", "recall", "f1"] {
            let v = row[metric]["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key:?} {metric} = {v}");
        }
        // F1 is the harmonic mean per class: never above both P and R on average.
        let (p, r, f) = (
            row["precision"]["mean"].as_f64().unwrap(),
            row["recall"]["mean"].as_f64().unwrap(),
            row["f1"]["mean"].as_f64().unwrap(),
        );
        assert!(f <= p.max(r) + 1e-9, "{key:?}");
    }
    for arm in ["simclr", "byol", "dino", "mocov3", "supervised"] {
        for protocol in ["linear", "finetune"] {
            for pct in [1, 10, 25, 100] {
                assert!(seen.contains(&(arm.to_string(), protocol.to_string(), pct)));
            }
        }
        if arm != "supervised" {
            assert!(out
                .join(format!("pretrain/{arm}-s0/backbone.safetensors"))
                .exists());
        }
    }
    assert!(
        stdout.contains("| SimCLR | linear eval | 1 % |"),
        "{stdout}"
    );
    // The paired comparison: every SSL arm × protocol × fraction against the
    // supervised cell of the same protocol and fraction, recomputed here
    // from the raw cells.
    let cells = table["cells"].as_array().unwrap();
    let f1_of = |arm: &str, protocol: &str, pct: u64| {
        cells
            .iter()
            .find(|c| {
                c["cell"]["arm"] == arm
                    && c["cell"]["protocol"] == protocol
                    && c["cell"]["label_percent"] == pct
            })
            .unwrap()["macro_f1"]
            .as_f64()
            .unwrap()
    };
    let paired = table["paired"].as_array().unwrap();
    assert_eq!(paired.len(), 4 * 4 * 2);
    for pair in paired {
        let (arm, protocol, pct) = (
            pair["arm"].as_str().unwrap(),
            pair["protocol"].as_str().unwrap(),
            pair["label_percent"].as_u64().unwrap(),
        );
        let gain = f1_of(arm, protocol, pct) - f1_of("supervised", protocol, pct);
        assert!(
            (pair["mean_gain"].as_f64().unwrap() - gain).abs() < 1e-9,
            "{arm} {protocol} {pct}"
        );
    }
    assert!(stdout.contains("# Paired comparison"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 41);
    let png = image::open(out.join("f1.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1000, 420));

    // A re-run trains nothing: every cell file is reused, the table is the same.
    let cells: Vec<_> = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.clone(),
                std::fs::metadata(&p).unwrap().modified().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells.len(), 40);
    let again = ok(&args);
    assert_eq!(again, stdout);
    for (path, modified) in cells {
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified,
            "{path:?} was redone"
        );
    }
}

#[test]
fn seeds_share_one_pretraining_with_pretrain_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantom_split(tmp.path(), 6, 80, 4);
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/ci.toml"))
        .unwrap();
    let text = ci
        .replace(
            r#"methods = ["simclr", "byol", "dino", "mocov3", "supervised"]"#,
            r#"methods = ["simclr", "supervised"]"#,
        )
        .replace("label_percents = [1, 10, 25, 100]", "label_percents = [10]")
        .replace(
            "seeds = [0]",
            "seeds = [3, 4]\npretrain_seed = 3\nfinetune_epochs = { 10 = 2 }",
        );
    assert_ne!(text, ci);
    let config = tmp.path().join("shared.toml");
    std::fs::write(&config, text).unwrap();
    let out = tmp.path().join("experiment");
    let run = |extra: &[&str]| {
        let mut all = vec!["--threads", "2"];
        all.extend_from_slice(extra);
        ok(&experiment_args(s(&config), &data, &split, &out, &all))
    };
    let stdout = run(&[]);
    let pretrained: Vec<String> = std::fs::read_dir(out.join("pretrain"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pretrained, vec!["simclr-s3".to_string()]);
    let cell = |id: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(format!("cells/{id}.json"))).unwrap())
            .unwrap()
    };
    for seed in [3, 4] {
        for id in ["simclr-finetune", "simclr-linear", "supervised-finetune"] {
            assert!(out.join(format!("cells/{id}-10-s{seed}.json")).exists());
        }
        let fine = cell(&format!("simclr-finetune-10-s{seed}"));
        assert_eq!(fine["config"]["optim"]["epochs"], 2, "finetune_epochs");
        assert_eq!(fine["config"]["run"]["seed"], seed);
        assert!(fine.get("cross").is_none());
    }
    // Two seeds: the table shows mean ± std and the pairs have two seeds each.
    assert!(
        stdout.contains("| SimCLR | fine-tune | 10 % | 2 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| SimCLR | finetune | 10 % | 3, 4 |"),
        "{stdout}"
    );

    // A cross-source test set added afterwards: every cell is scored on it,
    // fine-tuned models without retraining (their weights stay untouched).
    let other = tmp.path().join("other-source");
    ok(&[
        "synth",
        "--out",
        s(&other),
        "--per-class",
        "2",
        "--size",
        "80",
        "--seed",
        "99",
    ]);
    // And a copy of the labelled split's own test side, under another name:
    // every cell must score on it what it scored on the test side.
    let copy = tmp.path().join("test-side-copy");
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&split).unwrap()).unwrap();
    let mut copied = 0;
    for item in listing["items"].as_array().unwrap() {
        if item["side"] == "test" {
            let path = item["path"].as_str().unwrap();
            let to = copy.join(path);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(data.join(path), to).unwrap();
            copied += 1;
        }
    }
    let weights = out.join("cells/simclr-finetune-10-s3/model.safetensors");
    let trained_at = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let linear_before = cell("simclr-linear-10-s4");
    let stdout = run(&["--cross-test", s(&other), "--cross-test", s(&copy)]);
    assert_eq!(
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
        trained_at,
        "a fine-tuned cell is scored, not retrained"
    );
    for id in [
        "simclr-finetune-10-s3",
        "simclr-linear-10-s4",
        "supervised-finetune-10-s4",
        "supervised-linear-10-s3",
    ] {
        let c = cell(id);
        assert_eq!(c["cross"]["other-source"]["test_images"], 34, "{id}");
        let on_copy = &c["cross"]["test-side-copy"];
        assert_eq!(on_copy["test_images"], copied, "{id}");
        assert_eq!(c["test_images"], copied, "{id}");
        // The same slices in another folder: the same scores, up to one
        // slice that a different batch make-up could tip.
        let tolerance = 1.0 / copied as f64 + 1e-9;
        for metric in ["accuracy", "macro_f1"] {
            let (a, b) = (
                c[metric].as_f64().unwrap(),
                on_copy[metric].as_f64().unwrap(),
            );
            assert!((a - b).abs() <= tolerance, "{id} {metric}: {a} vs {b}");
        }
    }
    // The probe was recomputed: the same test-side scores (seeded).
    assert_eq!(
        cell("simclr-linear-10-s4")["macro_f1"],
        linear_before["macro_f1"]
    );
    assert!(
        stdout.contains("# Label efficiency: ci, tested on other-source"),
        "{stdout}"
    );
    assert!(
        stdout.contains("## On other-source (labelled, never trained on)"),
        "{stdout}"
    );
    assert!(out.join("table-other-source.csv").exists());
}

#[test]
fn a_cross_test_folder_with_an_unknown_class_is_refused_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantom_split(tmp.path(), 2, 64, 4);
    let stranger = tmp.path().join("stranger");
    std::fs::create_dir_all(stranger.join("Lymphoma T1")).unwrap();
    // Any phantom slice, filed under a class the model does not know.
    let class_dir = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let slice = std::fs::read_dir(class_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(slice, stranger.join("Lymphoma T1/a.jpg")).unwrap();
    let out = tmp.path().join("experiment");
    let output = crate::common::tumorxai(&experiment_args(
        concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/ci.toml"),
        &data,
        &split,
        &out,
        &["--cross-test", s(&stranger)],
    ));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Lymphoma T1"), "{stderr}");
    assert!(!out.join("pretrain").exists(), "nothing trained");
}
