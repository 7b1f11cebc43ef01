//! `tumorxai split`: a stratified, seeded, near-duplicate-aware train/val/test
//! split of any ImageFolder dataset, persisted as JSON with relative paths and
//! content hashes, plus nested label-fraction subsets of the training side.

pub mod assign;
pub mod phash;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tumorxai_shared::{decode_luminance, DecodeLimits};

pub use assign::{Side, LABEL_PERCENTS};

use crate::dataset::ImageFolder;

pub const SPLIT_FORMAT: &str = "tumorxai-split/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitItem {
    /// '/'-separated path relative to the dataset root (NFC).
    pub path: String,
    pub class: usize,
    pub sha256: String,
    /// Perceptual hash, 16 hex digits.
    pub phash: String,
    /// Near-duplicate group: index (in `items`) of the group's first member.
    pub group: usize,
    pub side: Side,
    /// Smallest label percent (1, 10, 25, 50, 100) whose training subset holds
    /// this item; absent for val/test.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub label_percent: Option<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitSettings {
    pub seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    /// pHash Hamming distance at or below which two slices are near duplicates.
    pub duplicate_threshold: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitFile {
    pub format: String,
    pub settings: SplitSettings,
    pub classes: Vec<String>,
    pub items: Vec<SplitItem>,
    /// Files that could not be decoded, with the reason (left out of the split).
    pub unreadable: Vec<(String, String)>,
}

impl SplitFile {
    pub fn on(&self, side: Side) -> impl Iterator<Item = &SplitItem> {
        self.items.iter().filter(move |i| i.side == side)
    }

    /// Training items of a label-percent subset (100 = all training items).
    pub fn train_subset(&self, percent: u8) -> impl Iterator<Item = &SplitItem> {
        self.items
            .iter()
            .filter(move |i| i.side == Side::Train && i.label_percent.is_some_and(|p| p <= percent))
    }

    pub fn load(path: &Path) -> Result<SplitFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading split {}", path.display()))?;
        let split: SplitFile = serde_json::from_str(&text)
            .with_context(|| format!("parsing split {}", path.display()))?;
        if split.format != SPLIT_FORMAT {
            bail!(
                "{}: split format {:?}, expected {SPLIT_FORMAT:?}",
                path.display(),
                split.format
            );
        }
        Ok(split)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::synth::write_atomic(path, text.as_bytes())
    }

    /// Per class: (train, val, test) counts.
    pub fn counts(&self) -> Vec<[usize; 3]> {
        let mut counts = vec![[0usize; 3]; self.classes.len()];
        for item in &self.items {
            let slot = match item.side {
                Side::Train => 0,
                Side::Val => 1,
                Side::Test => 2,
            };
            counts[item.class][slot] += 1;
        }
        counts
    }
}

/// An image of the dataset that decoded, with its content and perceptual hashes.
struct Hashed<'a> {
    item: &'a crate::dataset::Item,
    sha256: String,
    phash: u64,
}

/// Hashes every image (in parallel; `progress` is called per file). Returns
/// the readable ones and, for the others, the reason.
fn hash_all<'a>(
    dataset: &'a ImageFolder,
    progress: impl Fn() + Sync,
) -> (Vec<Hashed<'a>>, Vec<(String, String)>) {
    let hashed: Vec<Result<(String, u64), String>> = dataset
        .items
        .par_iter()
        .map(|item| {
            let result = std::fs::read(&item.path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    let lum = decode_luminance(&bytes, DecodeLimits::default())
                        .map_err(|e| e.to_string())?;
                    Ok((hex::encode(Sha256::digest(&bytes)), phash::phash(&lum)))
                });
            progress();
            result
        })
        .collect();
    let mut kept = Vec::new();
    let mut unreadable = Vec::new();
    for (item, result) in dataset.items.iter().zip(hashed) {
        match result {
            Ok((sha256, phash)) => kept.push(Hashed {
                item,
                sha256,
                phash,
            }),
            Err(why) => unreadable.push((item.relative.clone(), why)),
        }
    }
    (kept, unreadable)
}

/// The split file of `kept` with the given sides (all of `kept` is placed):
/// near-duplicate groups and label-fraction subsets are computed here.
fn assemble(
    kept: Vec<Hashed<'_>>,
    sides: impl Fn(&[usize]) -> Vec<Side>,
    earlier_percents: &[Option<u8>],
    settings: SplitSettings,
    classes: Vec<String>,
    unreadable: Vec<(String, String)>,
) -> SplitFile {
    let labels: Vec<usize> = kept.iter().map(|k| k.item.class).collect();
    let hashes: Vec<u64> = kept.iter().map(|k| k.phash).collect();
    let groups = assign::duplicate_groups(&hashes, settings.duplicate_threshold);
    let sides = sides(&groups);
    let percents = assign::label_percents(&labels, &sides, earlier_percents, settings.seed);
    let items = kept
        .into_iter()
        .enumerate()
        .map(|(i, k)| SplitItem {
            path: k.item.relative.clone(),
            class: k.item.class,
            sha256: k.sha256,
            phash: format!("{:016x}", k.phash),
            group: groups[i],
            side: sides[i],
            label_percent: percents[i],
        })
        .collect();
    SplitFile {
        format: SPLIT_FORMAT.to_string(),
        settings,
        classes,
        items,
        unreadable,
    }
}

/// Hashes every image (in parallel; `progress` is called per file) and splits.
pub fn make_split(
    dataset: &ImageFolder,
    settings: SplitSettings,
    progress: impl Fn() + Sync,
) -> Result<SplitFile> {
    if !(0.0..1.0).contains(&settings.val_fraction)
        || !(0.0..1.0).contains(&settings.test_fraction)
        || settings.val_fraction + settings.test_fraction >= 1.0
    {
        bail!(
            "val ({}) and test ({}) fractions must be in [0, 1) and leave room for training",
            settings.val_fraction,
            settings.test_fraction
        );
    }
    let (kept, unreadable) = hash_all(dataset, progress);
    let labels: Vec<usize> = kept.iter().map(|k| k.item.class).collect();
    let (val, test, seed) = (settings.val_fraction, settings.test_fraction, settings.seed);
    let sides = |groups: &[usize]| assign::assign_sides(&labels, groups, val, test, seed);
    Ok(assemble(
        kept,
        sides,
        &[],
        settings,
        dataset.classes.clone(),
        unreadable,
    ))
}

/// A split extended with new images, and what happened to them.
pub struct Extension {
    pub split: SplitFile,
    /// Images of the earlier split, each on its earlier side.
    pub kept: usize,
    /// New images, all on the training side.
    pub added: usize,
    /// New images left out: near duplicates of an earlier val or test image.
    pub left_out: Vec<String>,
}

/// Extends `previous` to the images now in `dataset` (the same folder, with
/// images added): every earlier image keeps its side, so the validation and
/// test sides stay exactly as they were, and new images go to training
/// (see [`assign::extend_sides`]). Refused when an earlier image is missing,
/// unreadable or changed, or when the class list differs: the held-out sides
/// would no longer be the ones earlier results were measured on.
pub fn extend_split(
    dataset: &ImageFolder,
    previous: &SplitFile,
    progress: impl Fn() + Sync,
) -> Result<Extension> {
    if dataset.classes != previous.classes {
        bail!(
            "the dataset's classes ({}) differ from the earlier split's ({})",
            dataset.classes.len(),
            previous.classes.len()
        );
    }
    let (kept, unreadable) = hash_all(dataset, progress);
    let earlier: BTreeMap<&str, &SplitItem> = previous
        .items
        .iter()
        .map(|item| (item.path.as_str(), item))
        .collect();
    let mut kept = kept;
    let mut previous_sides = Vec::with_capacity(kept.len());
    let mut previous_percents = Vec::with_capacity(kept.len());
    for k in &mut kept {
        let old = earlier.get(k.item.relative.as_str());
        previous_percents.push(old.and_then(|o| o.label_percent));
        // The earlier split's pHash decided its groups; a decoder update that
        // moved a hash by a bit must not link a training and a test slice now.
        if let Some(old) = old {
            k.phash = u64::from_str_radix(&old.phash, 16)
                .with_context(|| format!("{}: unreadable pHash in the earlier split", old.path))?;
        }
        match old {
            Some(old) if old.sha256 != k.sha256 => bail!(
                "{} changed since the earlier split (SHA-256 {} then, {} now)",
                k.item.relative,
                old.sha256,
                k.sha256
            ),
            Some(old) if old.class != k.item.class => {
                bail!("{} changed class since the earlier split", k.item.relative)
            }
            Some(old) => previous_sides.push(Some(old.side)),
            None => previous_sides.push(None),
        }
    }
    let present: std::collections::BTreeSet<&str> =
        kept.iter().map(|k| k.item.relative.as_str()).collect();
    let missing: Vec<&str> = previous
        .items
        .iter()
        .map(|item| item.path.as_str())
        .filter(|path| !present.contains(path))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} image(s) of the earlier split are missing or unreadable ({}{}); \
             an extension must hold every earlier image",
            missing.len(),
            missing
                .iter()
                .take(3)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() > 3 { ", …" } else { "" }
        );
    }
    let hashes: Vec<u64> = kept.iter().map(|k| k.phash).collect();
    let groups = assign::duplicate_groups(&hashes, previous.settings.duplicate_threshold);
    let extended = assign::extend_sides(&previous_sides, &groups);
    let mut placed = Vec::new();
    let mut placed_sides = Vec::new();
    let mut placed_percents = Vec::new();
    let mut left_out = Vec::new();
    let (mut kept_count, mut added) = (0, 0);
    let earlier_of_each = previous_sides.iter().zip(&previous_percents);
    for ((k, side), (was, percent)) in kept.into_iter().zip(extended).zip(earlier_of_each) {
        match side {
            Some(side) => {
                if was.is_some() {
                    kept_count += 1;
                } else {
                    added += 1;
                }
                placed.push(k);
                placed_sides.push(side);
                placed_percents.push(*percent);
            }
            None => left_out.push(k.item.relative.clone()),
        }
    }
    // Groups are recomputed over the placed images so that group ids index
    // the written items; the sides are already decided.
    let split = assemble(
        placed,
        |_| placed_sides.clone(),
        &placed_percents,
        previous.settings.clone(),
        previous.classes.clone(),
        unreadable,
    );
    // By construction every near-duplicate group lies on one side; checked,
    // because a group across sides is exactly the leak a split must not have.
    let mut side_of_group: BTreeMap<usize, Side> = BTreeMap::new();
    for item in &split.items {
        if *side_of_group.entry(item.group).or_insert(item.side) != item.side {
            bail!(
                "{} is a near duplicate of a slice on another side: extend refused",
                item.path
            );
        }
    }
    Ok(Extension {
        split,
        kept: kept_count,
        added,
        left_out,
    })
}

/// Human-readable summary: per-class counts and duplicate groups.
pub fn summary(split: &SplitFile) -> String {
    let mut out = String::new();
    let counts = split.counts();
    let mut group_sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for item in &split.items {
        *group_sizes.entry(item.group).or_default() += 1;
    }
    let dup_groups = group_sizes.values().filter(|&&n| n > 1).count();
    let dup_items: usize = group_sizes.values().filter(|&&n| n > 1).sum();
    out.push_str(&format!(
        "{:>6} {:>6} {:>6}  class\n",
        "train", "val", "test"
    ));
    for (class, c) in split.classes.iter().zip(&counts) {
        out.push_str(&format!("{:>6} {:>6} {:>6}  {class}\n", c[0], c[1], c[2]));
    }
    let total = |k: usize| counts.iter().map(|c| c[k]).sum::<usize>();
    out.push_str(&format!(
        "{:>6} {:>6} {:>6}  total\n",
        total(0),
        total(1),
        total(2)
    ));
    out.push_str(&format!(
        "near-duplicate groups: {dup_groups} ({dup_items} images kept on one side each); unreadable files: {}\n",
        split.unreadable.len()
    ));
    let subsets: Vec<String> = LABEL_PERCENTS
        .iter()
        .map(|&p| format!("{p}%: {}", split.train_subset(p).count()))
        .collect();
    out.push_str(&format!(
        "label-fraction subsets of train: {}\n",
        subsets.join(", ")
    ));
    out
}
