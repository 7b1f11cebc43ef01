//! Evaluating a finished run: its final weights on one side of its own
//! split, or on any ImageFolder (another hospital's scans, the real
//! dataset), with an optional temperature fitted on the run's validation
//! side. Writes the JSON + Markdown + confusion-matrix report.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tch::nn;
use tumorxai_shared::classes::nfc;

use super::checkpoint;
use super::config::parse_device;
use super::evaluate::{predict, write_report, EvaluationSet};
use super::fit;
use crate::data::{self, LoadedSet, Selection};
use crate::dataset::ImageFolder;
use crate::metrics;
use crate::model::resnet;
use crate::model::weights::{self, Strictness};
use crate::split::{Side, SplitFile};

/// Which images to evaluate on.
#[derive(Debug, Clone)]
pub enum EvaluationData {
    /// A side of the run's own split.
    Side(Side),
    /// Any ImageFolder whose class folders are (some of) the run's classes.
    Folder(PathBuf),
}

impl EvaluationData {
    /// File stem of the report: `report-<side>` or `report-folder`.
    pub fn report_stem(&self) -> String {
        match self {
            EvaluationData::Side(side) => format!("report-{}", side_name(*side)),
            EvaluationData::Folder(_) => "report-folder".to_string(),
        }
    }
}

fn side_name(side: Side) -> String {
    format!("{side:?}").to_lowercase()
}

/// Maps each class folder of `folder` to the run's class of the same
/// (NFC-normalised) name; folders that are no class of the run are refused.
pub fn class_map(folder: &ImageFolder, classes: &[String]) -> Result<Vec<usize>> {
    let known: Vec<String> = classes.iter().map(|c| nfc(c)).collect();
    let mut map = Vec::with_capacity(folder.classes.len());
    let mut unknown = Vec::new();
    for name in &folder.classes {
        let name = nfc(name);
        match known.iter().position(|k| *k == name) {
            Some(i) => map.push(i),
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{} has class folders the model does not know: {unknown:?} (its classes: {classes:?})",
            folder.root.display()
        );
    }
    Ok(map)
}

/// Decodes an ImageFolder for a model with `classes`: its class folders
/// matched by name ([`class_map`]), labels as the model's indices.
pub fn load_folder_for(
    dir: &Path,
    classes: &[String],
    spec: &tumorxai_shared::PreprocessSpec,
    device: tch::Device,
    progress: impl Fn() + Sync,
) -> Result<LoadedSet> {
    let folder = ImageFolder::scan(dir)?;
    let map = class_map(&folder, classes)?;
    data::load_image_folder(&folder, &map, classes.to_vec(), spec, device, progress)
}

/// Evaluates the final weights of the run in `out` on `data`; with
/// `calibrate`, fits a temperature on the run's validation side first.
/// Reports go to `reports` as `report-<side>` or `report-folder` (.json, .md).
pub fn evaluate_run(
    out: &Path,
    data: &EvaluationData,
    calibrate: bool,
    reports: &Path,
    progress: impl Fn() + Sync,
) -> Result<metrics::Report> {
    let state = checkpoint::load_state(out)?;
    let config = &state.config;
    let device = parse_device(&config.run.device)?;
    let mut vs = nn::VarStore::new(device);
    let model = resnet(
        &vs.root(),
        config.model.resnet(),
        Some(state.classes.len() as i64),
    );
    weights::load(&mut vs, &fit::final_weights(out), Strictness::Exact)?;
    let spec = state.spec.clone();
    let logits_of = |set: &LoadedSet| predict(&model, &EvaluationSet { set, spec: &spec }, 64);
    let load_side = |side| {
        let split = SplitFile::load(&config.data.split)?;
        data::load(
            &split,
            &config.data.root,
            Selection::Side(side),
            &spec,
            device,
            &progress,
        )
    };
    let temperature = if calibrate {
        let val = load_side(Side::Val)?;
        metrics::fit_temperature(&logits_of(&val)?, &val.label_vec())
    } else {
        1.0
    };
    let (set, stem, what) = match data {
        EvaluationData::Side(side) => (
            load_side(*side)?,
            data.report_stem(),
            format!("Evaluation on the {} side", side_name(*side)),
        ),
        EvaluationData::Folder(dir) => (
            load_folder_for(dir, &state.classes, &spec, device, &progress)?,
            data.report_stem(),
            format!("Evaluation on {}", dir.display()),
        ),
    };
    for (path, why) in &set.skipped {
        eprintln!("warning: skipped unreadable image {path}: {why}");
    }
    let logits = logits_of(&set)?;
    write_report(
        reports,
        &stem,
        &what,
        &state.classes,
        &logits,
        &set.label_vec(),
        temperature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(classes: &[&str]) -> ImageFolder {
        ImageFolder {
            root: PathBuf::from("/scans"),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            items: Vec::new(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn class_folders_map_by_name_and_strangers_are_refused() {
        let run = [
            "Glioma T1".to_string(),
            "Glioma T2".into(),
            "Normal T1".into(),
        ];
        // A subset, in another order: indices of the run's classes.
        assert_eq!(
            class_map(&folder(&["Glioma T2", "Normal T1"]), &run).unwrap(),
            [1, 2]
        );
        // Decomposed Unicode (NFD) still matches.
        let nfd = "Me\u{301}ningioma T1";
        let run2 = ["Méningioma T1".to_string()];
        assert_eq!(class_map(&folder(&[nfd]), &run2).unwrap(), [0]);
        let err = class_map(&folder(&["Glioma T1", "Lymphoma"]), &run).unwrap_err();
        assert!(err.to_string().contains("Lymphoma"), "{err}");
    }
}
