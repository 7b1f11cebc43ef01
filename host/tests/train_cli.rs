//! The training commands, run for real through the `tumorxai` binary on a
//! tiny phantom set: train → evaluate → finetune → linear-eval → knn-eval,
//! with the reports they promise and the errors a user can hit.

use std::process::Command;

use crate::common::{ok, phantom_split, s, tumorxai};

#[test]
fn train_evaluate_finetune_and_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let split = tmp.path().join("split.json");
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--per-class",
        "8",
        "--size",
        "64",
        "--seed",
        "2",
    ]);
    ok(&[
        "split",
        "--data",
        s(&data),
        "--out",
        s(&split),
        "--val",
        "0.25",
        "--test",
        "0.25",
    ]);
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, "[model]\nwidth = 0.125\ninput_size = 48\n[optim]\nbatch_size = 16\n[run]\ndevice = \"cpu\"\n").unwrap();
    let common = [
        "--config",
        s(&config),
        "--data",
        s(&data),
        "--split",
        s(&split),
    ];

    let run = tmp.path().join("run");
    let mut args = vec!["train"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--out", s(&run), "--epochs", "2"]);
    let out = ok(&args);
    assert!(out.contains("test: accuracy"), "{out}");
    for file in [
        "model.safetensors",
        "config.toml",
        "history.json",
        "curves.png",
        "report-test.json",
        "report-test.md",
        "report-test-confusion.png",
        "checkpoint/state.json",
        "checkpoint/optimizer.safetensors",
    ] {
        assert!(run.join(file).exists(), "missing {file}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report-test.json")).unwrap()).unwrap();
    assert_eq!(report["report"]["confusion"].as_array().unwrap().len(), 17);
    assert!(report["temperature"].as_f64().unwrap() > 0.0);

    // Training into a folder with a checkpoint needs --resume; resuming a finished run finishes at once.
    let again = tumorxai(&args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    args.push("--resume");
    ok(&args);

    let out = ok(&["evaluate", "--run", s(&run), "--side", "val", "--calibrate"]);
    assert!(out.contains("macro-F1"), "{out}");
    assert!(run.join("report-val.md").exists());

    // Any ImageFolder: the test side copied into class folders (another
    // layout, file names and order) scores exactly as the split's test side.
    let split_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&split).unwrap()).unwrap();
    let classes: Vec<String> = serde_json::from_value(split_json["classes"].clone()).unwrap();
    let folder = tmp.path().join("hospital");
    let mut copied = 0;
    for (i, item) in split_json["items"].as_array().unwrap().iter().enumerate() {
        if item["side"] != "test" {
            continue;
        }
        let class = &classes[item["class"].as_u64().unwrap() as usize];
        let dir = folder.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let source = data.join(item["path"].as_str().unwrap());
        let ext = source.extension().unwrap().to_str().unwrap();
        std::fs::copy(&source, dir.join(format!("scan-{i:04}.{ext}"))).unwrap();
        copied += 1;
    }
    ok(&["evaluate", "--run", s(&run)]);
    let out = ok(&["evaluate", "--run", s(&run), "--data", s(&folder)]);
    assert!(out.contains(&format!("{copied} images")), "{out}");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join(name)).unwrap()).unwrap()
    };
    let (folder_report, test_report) = (read("report-folder.json"), read("report-test.json"));
    assert_eq!(
        folder_report["report"]["accuracy"],
        test_report["report"]["accuracy"]
    );
    assert_eq!(
        folder_report["report"]["confusion"],
        test_report["report"]["confusion"]
    );
    // Two of the classes only: macro scores average over the classes that
    // occur (truth or prediction), not over all 17 (recomputed here from
    // the report's confusion matrix).
    let pair = tmp.path().join("pair");
    for class in classes.iter().take(2) {
        let to = pair.join(class.as_str());
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(folder.join(class.as_str())).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
    ok(&["evaluate", "--run", s(&run), "--data", s(&pair)]);
    let report = read("report-folder.json");
    let confusion: Vec<Vec<u64>> =
        serde_json::from_value(report["report"]["confusion"].clone()).unwrap();
    let mut f1s = Vec::new();
    for c in 0..confusion.len() {
        let support: u64 = confusion[c].iter().sum();
        let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
        if support == 0 && predicted == 0 {
            continue;
        }
        let tp = confusion[c][c] as f64;
        let (p, r) = (tp / predicted.max(1) as f64, tp / support.max(1) as f64);
        f1s.push(if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        });
    }
    assert!(f1s.len() >= 2 && f1s.len() < 17, "{f1s:?}");
    let expected = f1s.iter().sum::<f64>() / f1s.len() as f64;
    let got = report["report"]["macro_f1"].as_f64().unwrap();
    assert!(
        (got - expected).abs() < 1e-12,
        "macro-F1 {got} vs {expected}"
    );

    // `--reports` sends the report elsewhere and leaves the run's own
    // report-folder (the pair's, above) as it was.
    let elsewhere = tmp.path().join("reports/hospital");
    let out = ok(&[
        "evaluate",
        "--run",
        s(&run),
        "--data",
        s(&folder),
        "--reports",
        s(&elsewhere),
    ]);
    assert!(
        out.contains(&format!(
            "report: {}",
            s(&elsewhere.join("report-folder.md"))
        )),
        "{out}"
    );
    let moved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(elsewhere.join("report-folder.json")).unwrap())
            .unwrap();
    assert_eq!(
        moved["report"]["confusion"],
        test_report["report"]["confusion"]
    );
    assert_eq!(
        read("report-folder.json"),
        report,
        "the run's report was overwritten"
    );

    // A class folder the model does not know is refused by name.
    std::fs::create_dir_all(folder.join("Lymphoma T9")).unwrap();
    std::fs::copy(
        data.join(split_json["items"][0]["path"].as_str().unwrap()),
        folder.join("Lymphoma T9/x.jpg"),
    )
    .unwrap();
    let refused = tumorxai(&["evaluate", "--run", s(&run), "--data", s(&folder)]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Lymphoma T9"));

    let onnx = tmp.path().join("model.onnx");
    let out = ok(&["export", "--run", s(&run), "--out", s(&onnx)]);
    assert!(out.contains("opset 13"), "{out}");
    assert!(std::fs::metadata(&onnx).unwrap().len() > 10_000);

    let weights = run.join("model.safetensors");
    let tuned = tmp.path().join("tuned");
    let mut args = vec!["finetune", "--backbone", s(&weights)];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--out", s(&tuned), "--epochs", "1", "--label-percent", "50"]);
    ok(&args);
    assert!(tuned.join("model.safetensors").exists());

    for (cmd, report) in [
        ("linear-eval", "linear-eval.json"),
        ("knn-eval", "knn-eval.json"),
    ] {
        let out_dir = tmp.path().join(cmd);
        let mut args = vec![cmd, "--backbone", s(&weights)];
        args.extend_from_slice(&common);
        args.extend_from_slice(&["--out", s(&out_dir), "--epochs", "5"]);
        let out = ok(&args);
        assert!(out.contains("accuracy"), "{out}");
        assert!(out_dir.join(report).exists());
    }

    // linear-eval has no k-NN options: an option that would do nothing is
    // refused rather than ignored.
    let mut args = vec!["linear-eval", "--backbone", s(&weights)];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--k", "5"]);
    let ignored = tumorxai(&args);
    assert!(!ignored.status.success());
    assert!(String::from_utf8_lossy(&ignored.stderr).contains("--k"));

    // A backbone of another architecture is refused with a reason.
    let mut args = vec!["finetune", "--backbone", s(&weights)];
    args.extend_from_slice(&common);
    let other = tmp.path().join("other");
    args.extend_from_slice(&["--out", s(&other), "--set", "model.width=0.25"]);
    let bad = tumorxai(&args);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("shape"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn training_without_a_dataset_explains_itself() {
    let out = tumorxai(&["train", "--epochs", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
    let out = tumorxai(&[
        "train",
        "--data",
        "x",
        "--split",
        "y",
        "--set",
        "optim.nope=1",
    ]);
    assert!(!out.status.success());
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantom_split(tmp.path(), 6, 64, 4);
    let run = tmp.path().join("run");
    let args = [
        "train",
        "--data",
        s(&data),
        "--split",
        s(&split),
        "--out",
        s(&run),
        "--epochs",
        "200",
        "--device",
        "cpu",
        "--set",
        "model.width=0.125",
        "--set",
        "model.input_size=32",
        "--set",
        "optim.batch_size=8",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_tumorxai"))
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then interrupt as a user would.
    let state = run.join("checkpoint/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !state.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume with --resume"));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let epoch = saved["epoch"].as_u64().unwrap();
    assert!(epoch < 200, "{saved}");
    assert!(saved["global_step"].as_u64().unwrap() > 0);
}
