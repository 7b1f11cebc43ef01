//! The `tumorxai` binary, run for real: synth, sheet, split and preprocess.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;

use tumorxai_host::split::{Side, SplitFile, LABEL_PERCENTS};
use tumorxai_shared::CLASS_NAMES;

use crate::common::{ok, tumorxai};

fn synth(dir: &Path, per_class: usize, seed: u64) {
    ok(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--per-class",
        &per_class.to_string(),
        "--seed",
        &seed.to_string(),
        "--size",
        "96",
    ]);
}

#[test]
fn synth_writes_the_real_layout_with_masks_beside_and_a_sheet() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let sheet = tmp.path().join("sheet.png");
    let stdout = ok(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--per-class",
        "2",
        "--seed",
        "3",
        "--size",
        "96",
        "--masks",
        "--sheet",
        sheet.to_str().unwrap(),
    ]);
    assert!(stdout.contains("wrote 34 phantom slices"), "{stdout}");
    let mut folders: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        CLASS_NAMES.to_vec(),
        "folder names must be the 17 real (NFC) names"
    );
    for name in CLASS_NAMES {
        assert_eq!(std::fs::read_dir(data.join(name)).unwrap().count(), 2);
        let mask = tmp
            .path()
            .join("phantom-masks")
            .join(name)
            .join("phantom_00000.png");
        assert!(mask.exists(), "{}", mask.display());
    }
    let sheet_image = image::open(&sheet).unwrap();
    assert_eq!(sheet_image.height(), 17 * 98);
    // Writing again into the same folder needs --overwrite.
    let again = tumorxai(&["synth", "--out", data.to_str().unwrap(), "--per-class", "1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
}

#[test]
fn imbalance_follows_the_real_set_proportions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    ok(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--per-class",
        "10",
        "--size",
        "64",
        "--imbalance",
    ]);
    let count = |c: usize| {
        std::fs::read_dir(data.join(CLASS_NAMES[c]))
            .unwrap()
            .count()
    };
    // Meningioma T1C+ is the largest folder of the real set, Outros T2 among the smallest.
    assert!(count(4) >= 8 * count(13), "{} vs {}", count(4), count(13));
}

fn load(path: &Path) -> SplitFile {
    SplitFile::load(path).unwrap()
}

/// A near duplicate of `src` at `dst`: slightly brightened and re-encoded at
/// another JPEG quality (different bytes, nearly the same picture).
fn near_copy(src: &Path, dst: &Path) {
    let img = image::open(src).unwrap().to_luma8();
    let brighter = image::GrayImage::from_fn(img.width(), img.height(), |x, y| {
        image::Luma([img.get_pixel(x, y)[0].saturating_add(3)])
    });
    let mut bytes = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 60)
        .encode_image(&brighter)
        .unwrap();
    std::fs::write(dst, bytes.into_inner()).unwrap();
}

#[test]
fn extending_a_split_keeps_every_earlier_side_and_sends_new_images_to_train() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    synth(&data, 7, 21);
    let first = tmp.path().join("split1.json");
    ok(&[
        "split",
        "--data",
        data.to_str().unwrap(),
        "--out",
        first.to_str().unwrap(),
        "--seed",
        "5",
    ]);
    let earlier = load(&first);

    // More images arrive: a second phantom batch under new names, a near copy
    // of a test slice and a near copy of a training slice.
    let more = tmp.path().join("more");
    synth(&more, 2, 22);
    for class in CLASS_NAMES {
        for entry in std::fs::read_dir(more.join(class)).unwrap() {
            let entry = entry.unwrap();
            let name = format!("new_{}", entry.file_name().to_str().unwrap());
            std::fs::copy(entry.path(), data.join(class).join(name)).unwrap();
        }
    }
    let pick = |side: Side| earlier.on(side).next().unwrap().path.clone();
    let (test_slice, train_slice) = (pick(Side::Test), pick(Side::Train));
    let copy_name = |path: &str| path.replace(".jpg", "_copy.jpg");
    near_copy(&data.join(&test_slice), &data.join(copy_name(&test_slice)));
    near_copy(
        &data.join(&train_slice),
        &data.join(copy_name(&train_slice)),
    );

    let second = tmp.path().join("split2.json");
    let extend = |extra: &[&str]| {
        let mut args = vec![
            "split",
            "--data",
            data.to_str().unwrap(),
            "--out",
            second.to_str().unwrap(),
            "--extend",
            first.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tumorxai(&args)
    };
    let out = extend(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // 17 × 7 earlier, 17 × 2 + 1 added, the copy of the test slice left out.
    assert!(
        stdout.contains("119 earlier images on their sides, 35 new images added to train, 1 new images left out"),
        "{stdout}"
    );
    assert!(stderr.contains(&copy_name(&test_slice)), "{stderr}");
    let extended = load(&second);
    let side_of: BTreeMap<&str, Side> = extended
        .items
        .iter()
        .map(|i| (i.path.as_str(), i.side))
        .collect();
    for item in &earlier.items {
        assert_eq!(
            side_of.get(item.path.as_str()),
            Some(&item.side),
            "{}",
            item.path
        );
    }
    assert_eq!(extended.items.len(), 119 + 35);
    assert_eq!(side_of.get(copy_name(&test_slice).as_str()), None);
    assert_eq!(
        side_of.get(copy_name(&train_slice).as_str()),
        Some(&Side::Train)
    );
    for item in &extended.items {
        if item.path.contains("/new_") {
            assert_eq!(item.side, Side::Train, "{}", item.path);
        }
    }
    assert_eq!(extended.settings, earlier.settings);
    // Training subsets cover the enlarged training side.
    assert_eq!(
        extended.train_subset(100).count(),
        extended.on(Side::Train).count()
    );

    // An earlier image that changed or vanished: the held-out sides would no
    // longer be the measured ones, so the extension is refused.
    std::fs::copy(data.join(&train_slice), data.join(&test_slice)).unwrap();
    let changed = extend(&[]);
    assert!(!changed.status.success());
    assert!(String::from_utf8_lossy(&changed.stderr).contains("changed since the earlier split"));
    std::fs::remove_file(data.join(&test_slice)).unwrap();
    let missing = extend(&[]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("1 image(s) of the earlier split are missing"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // Flags that the earlier split decides are refused beside --extend.
    let clash = extend(&["--test", "0.2"]);
    assert!(!clash.status.success());
}

#[test]
fn split_is_disjoint_stratified_nested_stable_and_keeps_duplicates_together() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    synth(&data, 12, 8);
    // Near duplicates: two slices re-encoded at another quality and slightly
    // brightened, saved under new names in the same class.
    let class = CLASS_NAMES[4];
    for (src, dst) in [
        ("phantom_00000.jpg", "dup_a.jpg"),
        ("phantom_00001.jpg", "dup_b.jpg"),
    ] {
        near_copy(&data.join(class).join(src), &data.join(class).join(dst));
    }
    std::fs::write(
        data.join(CLASS_NAMES[0]).join("broken.jpg"),
        b"\xff\xd8\xff\xe0 not really",
    )
    .unwrap();
    std::fs::write(data.join(CLASS_NAMES[0]).join("readme.txt"), b"notes").unwrap();

    let first = tmp.path().join("split1.json");
    let second = tmp.path().join("split2.json");
    let out = ok(&[
        "split",
        "--data",
        data.to_str().unwrap(),
        "--out",
        first.to_str().unwrap(),
        "--seed",
        "4",
    ]);
    assert!(out.contains("near-duplicate groups"), "{out}");
    ok(&[
        "split",
        "--data",
        data.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
        "--seed",
        "4",
    ]);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "re-run must be identical"
    );

    let split = load(&first);
    assert_eq!(
        split.unreadable.len(),
        1,
        "the broken file is reported, the run goes on"
    );
    assert_eq!(split.items.len(), 17 * 12 + 2);
    // Disjoint: each path once, one side each.
    let paths: BTreeSet<&str> = split.items.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths.len(), split.items.len());

    // Duplicates sit in their original's group and on its side.
    let by_path: BTreeMap<&str, _> = split.items.iter().map(|i| (i.path.as_str(), i)).collect();
    for (src, dst) in [
        ("phantom_00000.jpg", "dup_a.jpg"),
        ("phantom_00001.jpg", "dup_b.jpg"),
    ] {
        let a = by_path[format!("{class}/{src}").as_str()];
        let b = by_path[format!("{class}/{dst}").as_str()];
        assert_eq!(a.group, b.group, "{src} and {dst} must be grouped");
        assert_eq!(a.side, b.side);
    }

    // Stratified: every class without duplicates within ±1 image of its targets (15% / 15%).
    for (c, counts) in split.counts().iter().enumerate() {
        let n: usize = counts.iter().sum();
        if c == 4 {
            continue;
        }
        let target = n as f64 * 0.15;
        for k in [1, 2] {
            assert!(
                (counts[k] as f64 - target).abs() <= 1.0,
                "class {c}: {counts:?}"
            );
        }
    }

    // Nested label-fraction subsets, each stratified (≥ 1 per class).
    let mut previous: BTreeSet<&str> = BTreeSet::new();
    for p in LABEL_PERCENTS {
        let subset: BTreeSet<&str> = split.train_subset(p).map(|i| i.path.as_str()).collect();
        assert!(
            previous.is_subset(&subset),
            "{p}% does not contain the smaller subset"
        );
        let classes: BTreeSet<usize> = split.train_subset(p).map(|i| i.class).collect();
        assert_eq!(classes.len(), 17, "{p}% misses a class");
        previous = subset;
    }
    assert_eq!(previous.len(), split.on(Side::Train).count());
    assert!(split.on(Side::Val).all(|i| i.label_percent.is_none()));
}

#[test]
fn preprocess_reports_the_tensor_and_fails_on_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    synth(&data, 1, 1);
    let good = data.join(CLASS_NAMES[2]).join("phantom_00000.jpg");
    let out = ok(&["preprocess", good.to_str().unwrap(), "--size", "64"]);
    assert!(out.contains("tensor [1, 3, 64, 64]"), "{out}");
    let empty = tmp.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let bad = tumorxai(&["preprocess", empty.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn help_teaches_each_command() {
    let out = ok(&["--help"]);
    for cmd in ["synth", "split", "sheet", "preprocess", "demo", "bench"] {
        assert!(out.contains(cmd), "{out}");
    }
    assert!(ok(&["synth", "--help"]).contains("Example:"));
}

#[test]
fn threads_set_libtorch_as_well_as_the_worker_pool() {
    // libtorch reports its intra-op thread count in the train-step JSON.
    let out = ok(&[
        "--threads",
        "1",
        "bench",
        "train-step",
        "--width",
        "0.125",
        "--size",
        "32",
        "--batch",
        "2",
        "--steps",
        "1",
    ]);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["threads"], 1, "{out}");
    let zero = tumorxai(&["--threads", "0", "bench", "synth"]);
    assert!(!zero.status.success(), "zero threads must be refused");
}

#[test]
fn bench_synth_times_the_chosen_engine() {
    for engine in ["painted", "physics"] {
        let out = ok(&[
            "bench", "synth", "--engine", engine, "--size", "64", "--images", "3",
        ]);
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(json["engine"], engine, "{out}");
        assert_eq!(json["images"], 3, "{out}");
        assert!(json["images_per_second"].as_f64().unwrap() > 0.0, "{out}");
    }
    let bad = tumorxai(&["bench", "synth", "--engine", "drawn"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("choose painted or physics"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
