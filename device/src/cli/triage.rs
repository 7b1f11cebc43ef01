//! `tumorxai-device triage`: one-shot triage of slice files, and the answer
//! (JSON, overlay, display frame) that `serve` writes too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tumorxai_device::audit::short_id;
use tumorxai_device::display::{short_class_label, Bar, ResultView, Screen};
use tumorxai_device::loader::LoadedModel;
use tumorxai_device::pipeline::{run_slice, SliceResult};
use tumorxai_device::results::{
    self, Algorithm, Created, ResultContent, ResultError, ResultObject, SourceStudy,
};
use tumorxai_device::service::{sha256_hex, write_atomic};
use tumorxai_device::triage::Thresholds;

use super::{each_file, frame, load_model, read_bounded, Display, ModelArgs, PolicyArgs};

#[derive(Debug, Args)]
pub struct TriageArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Where to write results: <name>.json, <name>-overlay.png, <name>-display.png.
    #[arg(long, default_value = "triage-output")]
    out: PathBuf,
    /// Also write the DICOM results of every DICOM slice into this folder:
    /// <name>-sc.dcm (Secondary Capture preview) and <name>-sr.dcm
    /// (Comprehensive 3D SR, TID 1500), as `serve --send-to` sends them.
    /// They carry the source's patient and study: treat the folder as PHI.
    #[arg(long, value_name = "DIR")]
    dicom_results: Option<PathBuf>,
    /// Device Serial Number written into the DICOM results.
    #[arg(long, default_value_t = default_device_serial())]
    device_serial: String,
    /// Slice files (JPEG, PNG, BMP, TIFF, DICOM Part 10 with or without an extension); none: the sample scans in models/samples.
    files: Vec<PathBuf>,
}

/// The DICOM results of one slice: SC and SR when it was triaged, the SR
/// alone (saying why) when it was not. An error when the input is not a
/// DICOM object a PACS could file them with.
pub fn dicom_results(
    bytes: &[u8],
    outcome: std::result::Result<&SliceResult, &str>,
    classes: &[String],
    algorithm: Algorithm,
) -> std::result::Result<Vec<ResultObject>, ResultError> {
    let source = SourceStudy::from_part10(bytes)?;
    let created = Created::now();
    match outcome {
        Ok(r) => {
            let content = ResultContent::triaged(r, classes, algorithm);
            results::build(&source, &content, Some(&r.overlay), &created)
        }
        Err(reason) => {
            let content = ResultContent::not_triaged(reason, algorithm);
            results::build(&source, &content, None, &created)
        }
    }
}

/// The Device Serial Number of results: this machine's host name.
pub fn default_device_serial() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The JSON answer for one triaged slice.
pub fn answer_json(name: &str, model: &LoadedModel, r: &SliceResult) -> serde_json::Value {
    serde_json::json!({
        "file": name,
        "triage": r.triage,
        "dicom": r.dicom,
        "explanation": r.explanation,
        "logits": r.logits,
        "timings_ms": r.timings,
        "model": {
            "model_id": model.manifest.model_id,
            "version": model.manifest.version,
            "bundle_sha256": model.bundle_sha256,
            "execution_form": model.form.name(),
            "demo": model.demo,
        },
        "not_for_diagnostic_use": true,
    })
}

/// The result screen for one triaged slice.
pub fn result_screen(name: &str, r: &SliceResult) -> Screen {
    Screen::Result(ResultView {
        overlay: r.overlay.clone(),
        flag: r.triage.flag.clone(),
        review_detail: if r.triage.input_doubt.is_some() {
            Some("doubtful input".to_string())
        } else {
            r.triage
                .out_of_distribution
                .then(|| "unusual input".to_string())
        },
        top3: r
            .triage
            .top3
            .iter()
            .map(|t| Bar {
                label: short_class_label(&t.class),
                probability: t.probability,
            })
            .collect(),
        file: name.to_string(),
    })
}

pub fn png_bytes(image: &image::RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Answer names for `files`, one each and never the same twice: the file
/// stem, or — where several inputs share a stem (`a/x.jpg`, `b/x.jpg`) — the
/// stem and the first 8 hex digits of the SHA-256 of the path as given.
pub fn answer_stems(files: &[PathBuf]) -> Vec<String> {
    let stem = |file: &PathBuf| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "slice".into())
    };
    let mut count = std::collections::HashMap::new();
    for file in files {
        *count.entry(stem(file)).or_insert(0usize) += 1;
    }
    let mut used = std::collections::HashSet::new();
    files
        .iter()
        .map(|file| {
            let base = stem(file);
            let mut name = if count.get(&base).copied().unwrap_or(0) > 1 {
                let path_hash = sha256_hex(file.to_string_lossy().as_bytes());
                format!("{base}-{}", path_hash.get(..8).unwrap_or(&path_hash))
            } else {
                base.clone()
            };
            // The same path given twice (or a hash collision): number it.
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        })
        .collect()
}

fn sample_scans() -> Result<Vec<PathBuf>> {
    let dir = Path::new("models/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "no files given and no sample scans in {} (run from the repository root)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

pub fn triage(args: TriageArgs) -> Result<ExitCode> {
    let loaded = load_model(&args.model)?;
    let display = Display::open(&args.policy)?;
    let thresholds: Thresholds = args.policy.thresholds();
    let files = if args.files.is_empty() {
        sample_scans()?
    } else {
        args.files.clone()
    };
    eprintln!(
        "{} {} ({}, {} form; {})",
        loaded.manifest.model_id,
        loaded.manifest.version,
        loaded.manifest.quantization.form,
        loaded.form.name(),
        loaded
            .manifest
            .notice
            .as_deref()
            .unwrap_or("not for diagnostic use")
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if let Some(dir) = &args.dicom_results {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stems = answer_stems(&files);
    let named: Vec<(PathBuf, String)> = files.into_iter().zip(stems).collect();
    Ok(each_file(&named, |(file, stem)| {
        let name = file.display().to_string();
        let bytes = read_bounded(file).with_context(|| format!("reading {name}"))?;
        let r =
            run_slice(&loaded, &bytes, thresholds).with_context(|| format!("triaging {name}"))?;
        let top: Vec<String> = r
            .triage
            .top3
            .iter()
            .map(|t| {
                format!(
                    "{} {:.1}%",
                    short_class_label(&t.class),
                    100.0 * t.probability
                )
            })
            .collect();
        // Ruled out before inference: no classes to list, the reason instead.
        let detail = if top.is_empty() {
            r.triage.reason.clone()
        } else {
            top.join("; ")
        };
        println!("{name}: {} — {detail}", r.triage.flag.banner());
        let json = answer_json(&name, &loaded, &r);
        if let Some(dir) = &args.dicom_results {
            let algorithm = Algorithm::of(&loaded, &args.device_serial);
            match dicom_results(&bytes, Ok(&r), &loaded.classes, algorithm) {
                Ok(objects) => {
                    for object in objects {
                        let kind = object.kind.name().to_ascii_lowercase();
                        write_atomic(&dir.join(format!("{stem}-{kind}.dcm")), &object.bytes)?;
                    }
                }
                Err(e) => eprintln!("{name}: {e}"),
            }
        }
        write_atomic(
            &args.out.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )?;
        write_atomic(
            &args.out.join(format!("{stem}-overlay.png")),
            &png_bytes(&r.overlay)?,
        )?;
        // The panel names a scan by its content hash, never its file name.
        display.show(
            &frame(result_screen(&short_id(&sha256_hex(&bytes)), &r), &loaded),
            &args.out.join(format!("{stem}-display.png")),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_never_share_a_name() {
        let files: Vec<PathBuf> = ["a/x.jpg", "b/x.jpg", "c/y.png", "a/x.jpg", "z.tiff"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let stems = answer_stems(&files);
        let unique: std::collections::HashSet<&String> = stems.iter().collect();
        assert_eq!(unique.len(), files.len(), "{stems:?}");
        // Unique stems stay readable; shared ones get the path's hash.
        assert_eq!(stems[2], "y");
        assert_eq!(stems[4], "z");
        let a_hash = sha256_hex(b"a/x.jpg");
        assert_eq!(stems[0], format!("x-{}", &a_hash[..8]));
        assert_eq!(stems[3], "x-2", "the same path twice is numbered");
        assert!(stems[1].starts_with("x-") && stems[1] != stems[0]);
    }
}
