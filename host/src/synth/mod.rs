//! The phantom MRI generator: realistic 17-class brain slices in the real
//! dataset's ImageFolder layout, built from real template anatomy. Every
//! image is a pure function of (seed, class, index), so output is identical
//! whatever the thread count. Two engines share the anatomy and the layout:
//! `painted` (the default: `render.rs`, `lesions.rs`, `vessels.rs`,
//! `artefacts.rs`) and `physics` (`physics/`: relaxation times, signal
//! equations, gadolinium kinetics, k-space acquisition).

pub mod artefacts;
pub mod atlas;
pub mod canvas;
pub mod lesions;
pub mod physics;
pub mod render;
pub mod sheet;
pub mod vessels;

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use tumorxai_shared::{ClassInfo, CLASS_NAMES};

pub use atlas::Atlas;
pub use render::{Phantom, TissueLabel};

/// Relative class sizes of the real set, approximately (≈ 50 images for the
/// rarest "Outros" folders up to ≈ 600 for Meningioma T1C+), for `--imbalance`.
pub const REAL_CLASS_WEIGHTS: [f32; 17] = [
    0.62, 0.85, 0.45, // Glioma T1, T1C+, T2
    0.95, 1.60, 0.70, // Meningioma
    0.70, 0.75, // NORMAL T1, T2
    0.45, 0.60, 0.30, // Neurocitoma
    0.30, 0.14, 0.13, // Outros
    0.40, 0.62, 0.35, // Schwannoma
];

/// Number of images per class: `per_class` each, or scaled by the real set's
/// proportions (same mean) with at least one image per class.
pub fn class_counts(per_class: usize, imbalance: bool) -> [usize; 17] {
    let mut counts = [per_class; 17];
    if imbalance {
        let mean = REAL_CLASS_WEIGHTS.iter().sum::<f32>() / 17.0;
        for (c, w) in counts.iter_mut().zip(REAL_CLASS_WEIGHTS) {
            *c = ((per_class as f32 * w / mean).round() as usize).max(1);
        }
    }
    counts
}

/// Seed of one image: SplitMix64 of (seed, class, index), so images are
/// independent of generation order.
pub fn image_seed(seed: u64, class_index: usize, index: usize) -> u64 {
    let mut z = seed
        ^ (class_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One generated image, encoded.
pub struct Generated {
    pub phantom: Phantom,
    pub jpeg: Vec<u8>,
}

/// Renders and JPEG-encodes image `index` of class `class_index`, with
/// typical vessel enhancement.
pub fn generate(
    atlas: &Atlas,
    seed: u64,
    class_index: usize,
    index: usize,
    size: u32,
) -> Result<Generated> {
    generate_with(atlas, seed, class_index, index, size, [1.0, 1.0])
}

/// [`generate`] with the T1C+ vessel enhancement scaled by a factor drawn
/// per image, uniformly from `vessel_enhancement` = [low, high] (from its own
/// random stream, so everything else about the image stays as `generate`
/// makes it; low = high draws nothing).
pub fn generate_with(
    atlas: &Atlas,
    seed: u64,
    class_index: usize,
    index: usize,
    size: u32,
    vessel_enhancement: [f32; 2],
) -> Result<Generated> {
    let name = CLASS_NAMES
        .get(class_index)
        .with_context(|| format!("class index {class_index} out of range"))?;
    let class = ClassInfo::parse(name).with_context(|| format!("unknown class {name}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(image_seed(seed, class_index, index));
    let [low, high] = vessel_enhancement;
    let vessel_scale = if high > low {
        let mut own =
            ChaCha8Rng::seed_from_u64(image_seed(seed, class_index, index) ^ 0x7E55_E15E_5CA1_E000);
        own.random_range(low..high)
    } else {
        low
    };
    let phantom = render::render(atlas, class, size, vessel_scale, &mut rng);
    let quality = rng.random_range(70..=95);
    let mut jpeg = Cursor::new(Vec::new());
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(&phantom.pixels, size, size, ExtendedColorType::L8)
        .context("encoding JPEG")?;
    Ok(Generated {
        phantom,
        jpeg: jpeg.into_inner(),
    })
}

/// Which phantom engine renders the slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Painted tissue levels over the template (`render.rs`, `lesions.rs`).
    #[default]
    Painted,
    /// Tissue relaxation, signal equations and k-space acquisition (`physics/`).
    Physics,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Painted => "painted",
            Engine::Physics => "physics",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Engine, String> {
        match text {
            "painted" => Ok(Engine::Painted),
            "physics" => Ok(Engine::Physics),
            other => Err(format!(
                "unknown engine {other:?}: choose painted or physics"
            )),
        }
    }
}

/// Renders and encodes one image with `engine`.
pub fn generate_engine(
    engine: Engine,
    atlas: &Atlas,
    seed: u64,
    class_index: usize,
    index: usize,
    size: u32,
    vessel_enhancement: [f32; 2],
) -> Result<Generated> {
    match engine {
        Engine::Painted => generate_with(atlas, seed, class_index, index, size, vessel_enhancement),
        Engine::Physics => Ok(physics::generate(
            atlas,
            seed,
            class_index,
            index,
            size,
            vessel_enhancement,
        )?),
    }
}

/// What `tumorxai synth` was asked to do.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub out: PathBuf,
    pub per_class: usize,
    pub seed: u64,
    pub size: u32,
    pub imbalance: bool,
    pub masks: bool,
    pub overwrite: bool,
    /// Range of the per-image factor on the T1C+ vessels' enhancement.
    pub vessel_enhancement: [f32; 2],
}

/// Written as `synth.json` at the dataset root: how to regenerate it.
#[derive(Debug, Serialize)]
pub struct SynthRecord {
    pub generator: String,
    /// The engine that rendered the slices (`painted` or `physics`).
    pub engine: String,
    pub seed: u64,
    pub size: u32,
    pub imbalance: bool,
    pub vessel_enhancement: [f32; 2],
    pub counts: Vec<(String, usize)>,
    pub masks_dir: Option<String>,
}

/// Folder beside the dataset that holds the lesion masks.
pub fn masks_dir(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "dataset".into());
    name.push("-masks");
    out.with_file_name(name)
}

pub fn file_name(index: usize) -> String {
    format!("phantom_{index:05}.jpg")
}

/// Writes a dataset with the painted engine; `progress` is called once per
/// finished image.
pub fn write_dataset(options: &SynthOptions, progress: impl Fn() + Sync) -> Result<SynthRecord> {
    write_dataset_with(options, Engine::Painted, progress)
}

/// Writes a dataset with `engine`; `progress` is called once per finished image.
pub fn write_dataset_with(
    options: &SynthOptions,
    engine: Engine,
    progress: impl Fn() + Sync,
) -> Result<SynthRecord> {
    if options.size < 32 || options.size > 2048 {
        bail!("--size {} must be between 32 and 2048 pixels", options.size);
    }
    let [low, high] = options.vessel_enhancement;
    if !(low.is_finite() && high.is_finite() && 0.0 <= low && low <= high && high <= 2.0) {
        bail!("--vessel-enhancement {low}..{high}: need 0 ≤ low ≤ high ≤ 2");
    }
    if options.out.exists() && fs::read_dir(&options.out)?.next().is_some() && !options.overwrite {
        bail!(
            "{} exists and is not empty; choose another --out or pass --overwrite",
            options.out.display()
        );
    }
    let atlas = Atlas::embedded()?;
    let counts = class_counts(options.per_class, options.imbalance);
    let masks = options.masks.then(|| masks_dir(&options.out));
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        if counts[c] > 0 {
            fs::create_dir_all(options.out.join(name))
                .with_context(|| format!("creating {}", options.out.join(name).display()))?;
            if let Some(m) = &masks {
                fs::create_dir_all(m.join(name))?;
            }
        }
    }
    let jobs: Vec<(usize, usize)> = counts
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| (0..n).map(move |i| (c, i)))
        .collect();
    jobs.par_iter().try_for_each(|&(c, i)| -> Result<()> {
        let generated = generate_engine(
            engine,
            atlas,
            options.seed,
            c,
            i,
            options.size,
            options.vessel_enhancement,
        )?;
        let path = options.out.join(CLASS_NAMES[c]).join(file_name(i));
        write_atomic(&path, &generated.jpeg)?;
        if let Some(m) = &masks {
            let mask_path = m
                .join(CLASS_NAMES[c])
                .join(file_name(i).replace(".jpg", ".png"));
            let mut png = Cursor::new(Vec::new());
            image::GrayImage::from_raw(options.size, options.size, generated.phantom.lesion_mask)
                .context("mask buffer size")?
                .write_to(&mut png, image::ImageFormat::Png)?;
            write_atomic(&mask_path, &png.into_inner())?;
        }
        progress();
        Ok(())
    })?;
    let record = SynthRecord {
        generator: format!("tumorxai synth {}", env!("CARGO_PKG_VERSION")),
        engine: engine.name().to_string(),
        seed: options.seed,
        size: options.size,
        imbalance: options.imbalance,
        vessel_enhancement: options.vessel_enhancement,
        counts: CLASS_NAMES
            .iter()
            .map(|n| n.to_string())
            .zip(counts)
            .collect(),
        masks_dir: masks.map(|m| m.display().to_string()),
    };
    write_atomic(
        &options.out.join("synth.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    Ok(record)
}

/// Writes through a temporary name and renames, so no reader ever sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
