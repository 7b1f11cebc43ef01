//! Training data: a split's images decoded once through the shared contract
//! into an in-memory tensor of S×S planes (on the training device), augmented
//! as batched tensor ops, and served in seeded batches by a prefetch thread.

pub mod augment;
pub mod domain;
pub mod loader;

use std::path::Path;

use anyhow::{bail, Result};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};
use tumorxai_shared::{decode_luminance, input_plane, DecodeLimits, PreprocessSpec};

use crate::split::{Side, SplitFile, SplitItem};

/// Which items of a split to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// One side.
    Side(Side),
    /// The training side's label-fraction subset (percent).
    TrainSubset(u8),
}

/// Decoded images of one selection.
#[derive(Debug)]
pub struct LoadedSet {
    pub classes: Vec<String>,
    /// `[N, 1, S, S]` f32 luminance planes in [0, 1] (contract before normalisation).
    pub planes: Tensor,
    /// `[N]` i64 class indices.
    pub labels: Tensor,
    pub paths: Vec<String>,
    /// Images that could not be read or decoded: (path, reason).
    pub skipped: Vec<(String, String)>,
}

impl LoadedSet {
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn label_vec(&self) -> Vec<usize> {
        Vec::<i64>::try_from(&self.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|l| l as usize)
            .collect()
    }

    /// At most `n` images, a seeded random choice (all of them when `n ≥ len`).
    pub fn sample(&self, n: usize, seed: u64) -> LoadedSet {
        let order = loader::epoch_order(self.len(), seed, 0, true);
        let mut chosen: Vec<i64> = order.into_iter().take(n).collect();
        chosen.sort_unstable();
        let index = Tensor::from_slice(&chosen).to_device(self.planes.device());
        LoadedSet {
            classes: self.classes.clone(),
            planes: self.planes.index_select(0, &index),
            labels: self.labels.index_select(0, &index),
            paths: chosen
                .iter()
                .filter_map(|&i| self.paths.get(i as usize).cloned())
                .collect(),
            skipped: Vec::new(),
        }
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for l in self.label_vec() {
            counts[l] += 1;
        }
        counts
    }
}

pub fn select(split: &SplitFile, selection: Selection) -> Vec<&SplitItem> {
    match selection {
        Selection::Side(side) => split.on(side).collect(),
        Selection::TrainSubset(p) => split.train_subset(p).collect(),
    }
}

/// Decodes the selected images of a split (in parallel; `progress` per image)
/// into planes on `device`. Unreadable images are skipped and reported.
pub fn load(
    split: &SplitFile,
    root: &Path,
    selection: Selection,
    spec: &PreprocessSpec,
    device: Device,
    progress: impl Fn() + Sync,
) -> Result<LoadedSet> {
    let items: Vec<(String, usize)> = select(split, selection)
        .into_iter()
        .map(|item| (item.path.clone(), item.class))
        .collect();
    let set = decode_items(root, &items, split.classes.clone(), spec, device, progress)?;
    if set.is_empty() {
        bail!(
            "no readable images in {selection:?} of the split (root {})",
            root.display()
        );
    }
    Ok(set)
}

/// Decodes every image under `dir` (any layout, recursively) as one
/// unlabelled set: self-supervised pre-training on a plain folder of slices.
pub fn load_folder(
    dir: &Path,
    spec: &PreprocessSpec,
    device: Device,
    progress: impl Fn() + Sync,
) -> Result<LoadedSet> {
    let items: Vec<(String, usize)> = crate::dataset::image_files(dir)?
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(dir).unwrap_or(path);
            (relative.to_string_lossy().into_owned(), 0)
        })
        .collect();
    let set = decode_items(dir, &items, Vec::new(), spec, device, progress)?;
    if set.is_empty() {
        bail!("no readable images under {}", dir.display());
    }
    Ok(set)
}

/// Decodes an ImageFolder's images; `class_map[i]` is the label of its
/// i-th class folder (e.g. the index of the same class in a model).
pub fn load_image_folder(
    folder: &crate::dataset::ImageFolder,
    class_map: &[usize],
    classes: Vec<String>,
    spec: &PreprocessSpec,
    device: Device,
    progress: impl Fn() + Sync,
) -> Result<LoadedSet> {
    let items: Vec<(String, usize)> = folder
        .items
        .iter()
        .filter_map(|item| Some((item.relative.clone(), *class_map.get(item.class)?)))
        .collect();
    let set = decode_items(&folder.root, &items, classes, spec, device, progress)?;
    if set.is_empty() {
        bail!("no readable images in {}", folder.root.display());
    }
    Ok(set)
}

fn decode_items(
    root: &Path,
    items: &[(String, usize)],
    classes: Vec<String>,
    spec: &PreprocessSpec,
    device: Device,
    progress: impl Fn() + Sync,
) -> Result<LoadedSet> {
    spec.validate()?;
    let decoded: Vec<Result<Vec<f32>, String>> = items
        .par_iter()
        .map(|(path, _)| {
            let result = std::fs::read(root.join(path))
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    decode_luminance(&bytes, DecodeLimits::default()).map_err(|e| e.to_string())
                })
                .and_then(|lum| input_plane(&lum, spec).map_err(|e| e.to_string()));
            progress();
            result
        })
        .collect();
    let s = spec.input_size as i64;
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    for ((path, class), result) in items.iter().zip(decoded) {
        match result {
            Ok(plane) => {
                data.extend_from_slice(&plane);
                labels.push(*class as i64);
                paths.push(path.clone());
            }
            Err(why) => skipped.push((path.clone(), why)),
        }
    }
    let n = paths.len() as i64;
    Ok(LoadedSet {
        classes,
        planes: Tensor::from_slice(&data)
            .reshape([n, 1, s, s])
            .to_device(device),
        labels: Tensor::from_slice(&labels).to_device(device),
        paths,
        skipped,
    })
}

/// Planes `[B, 1, S, S]` → normalised model input `[B, 3, S, S]`, the same
/// arithmetic as `shared::normalize_plane`: `(v − mean_c) / std_c` in f32.
pub fn normalize(planes: &Tensor, spec: &PreprocessSpec) -> Tensor {
    let device = planes.device();
    let mean = Tensor::from_slice(&spec.mean)
        .to_device(device)
        .reshape([1, 3, 1, 1]);
    let std = Tensor::from_slice(&spec.std)
        .to_device(device)
        .reshape([1, 3, 1, 1]);
    (planes.to_kind(Kind::Float).expand([-1, 3, -1, -1], false) - mean) / std
}
