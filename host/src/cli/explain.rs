//! `tumorxai explain`: Grad-CAM, Grad-CAM++ and EigenCAM maps for slices,
//! as overlays on the original slice, raw 16-bit maps and a comparison
//! sheet; with `--faithfulness`, deletion / insertion / ROAD against a
//! random map and, with `--masks`, the pointing game and energy in the
//! lesion (JSON, Markdown, PNG).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rand::{Rng, SeedableRng};
use tch::Tensor;
use tumorxai_host::dataset::image_files;
use tumorxai_host::explain::cam::{explain_batch, Method};
use tumorxai_host::explain::faithfulness::{self, energy_in_mask, pointing_hit};
use tumorxai_host::explain::project::{on_input, on_slice};
use tumorxai_host::explain::render::{outline, overlay, raw_map, sheet};
use tumorxai_host::explain::report::{FaithfulnessReport, MethodRow, Row};
use tumorxai_host::export::bundle::TrainedRun;
use tumorxai_host::train::config::parse_device;
use tumorxai_shared::logits::softmax;
use tumorxai_shared::{decode_luminance, input_geometry, input_plane, ClassInfo, DecodeLimits};

use super::progress_bar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Methods {
    Gradcam,
    Gradcampp,
    Eigencam,
    All,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Trained run folder, or its model.safetensors (a checkpoint).
    #[arg(long, visible_alias = "checkpoint")]
    run: PathBuf,
    /// Slice files or folders (searched recursively; in the real dataset's
    /// layout the sub-folder names the true class).
    #[arg(long, required = true, num_args = 1..)]
    images: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "all")]
    method: Methods,
    /// Class to explain (index or folder name); default: each slice's
    /// predicted class.
    #[arg(long)]
    target: Option<String>,
    /// Layer whose activations are explained: layer1…layer4 or layerN.M.
    #[arg(long, default_value = "layer4")]
    layer: String,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Lesion masks (the phantom generator's `--masks` folder, same
    /// relative paths, .png): outlines on the sheet, pointing game and
    /// energy in the lesion.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Also measure faithfulness (deletion, insertion, ROAD; a random map
    /// as the baseline) and write faithfulness.{json,md,png}.
    #[arg(long)]
    faithfulness: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// cpu | cuda | cuda:N | auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Slices on the comparison sheet (0: none).
    #[arg(long, default_value_t = 12)]
    sheet_rows: usize,
    /// Write per-slice overlays and raw maps (the sheet and the report
    /// are always written).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    per_image: bool,
}

/// One input slice: where it came from and its true class if known.
struct Slice {
    path: PathBuf,
    /// Path relative to the folder it was found in (for masks and names).
    rel: PathBuf,
    truth: Option<usize>,
}

fn slices(inputs: &[PathBuf], classes: &[String]) -> Result<Vec<Slice>> {
    let class_of = |dir: Option<&std::ffi::OsStr>| {
        let name = dir?.to_string_lossy();
        let info = ClassInfo::parse(&name)?;
        classes
            .iter()
            .position(|c| ClassInfo::parse(c) == Some(info))
    };
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            // Named with the folder given, so slices of two folders never
            // share an output name.
            let base = input.file_name().map(Path::new).unwrap_or(Path::new(""));
            for path in image_files(input)? {
                let rel = base.join(path.strip_prefix(input).unwrap_or(&path));
                let truth = class_of(path.parent().and_then(Path::file_name));
                out.push(Slice { path, rel, truth });
            }
        } else if input.is_file() {
            let parent = input.parent().and_then(Path::file_name);
            let rel = match parent {
                Some(p) => Path::new(p).join(input.file_name().unwrap_or_default()),
                None => input.clone(),
            };
            out.push(Slice {
                path: input.clone(),
                rel,
                truth: class_of(parent),
            });
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    if out.is_empty() {
        bail!("no image files in {:?}", inputs);
    }
    Ok(out)
}

fn parse_target(text: &str, classes: &[String]) -> Result<usize> {
    if let Ok(i) = text.parse::<usize>() {
        if i < classes.len() {
            return Ok(i);
        }
        bail!("target {i}: the model has {} classes", classes.len());
    }
    classes
        .iter()
        .position(|c| c == text)
        .with_context(|| format!("target {text:?} is not a class of the model"))
}

/// The mask of a slice: `MASKS/<class>/<stem>.png` (the generator's layout)
/// or `MASKS/<relative path>.png`.
fn load_mask(dir: &Path, rel: &Path, width: u32, height: u32) -> Result<Option<Vec<bool>>> {
    let parent_and_file = rel
        .parent()
        .and_then(Path::file_name)
        .zip(rel.file_name())
        .map(|(p, f)| Path::new(p).join(f));
    let candidates = [parent_and_file, Some(rel.to_path_buf())];
    let Some(path) = candidates
        .into_iter()
        .flatten()
        .map(|c| dir.join(c).with_extension("png"))
        .find(|p| p.is_file())
    else {
        return Ok(None);
    };
    let mask = image::open(&path)
        .with_context(|| format!("reading mask {}", path.display()))?
        .to_luma8();
    if mask.dimensions() != (width, height) {
        bail!(
            "mask {} is {:?}, its slice {width}×{height}",
            path.display(),
            mask.dimensions()
        );
    }
    Ok(Some(mask.pixels().map(|p| p[0] >= 128).collect()))
}

fn stem(rel: &Path) -> String {
    rel.with_extension("")
        .to_string_lossy()
        .replace(['/', '\\', ' '], "_")
}

pub fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let mut run = TrainedRun::load(&args.run)?;
    let device = parse_device(&args.device)?;
    run.vs.set_device(device);
    let classes = run.state.classes.clone();
    let spec = run.state.spec.clone();
    let s = spec.input_size as usize;
    let point = run.model.layer_point(&args.layer).with_context(|| {
        format!(
            "no layer {:?}; layers: {}",
            args.layer,
            run.model.layer_names().join(", ")
        )
    })?;
    let methods: Vec<Method> = match args.method {
        Methods::Gradcam => vec![Method::GradCam],
        Methods::Gradcampp => vec![Method::GradCamPlusPlus],
        Methods::Eigencam => vec![Method::EigenCam],
        Methods::All => Method::ALL.to_vec(),
    };
    let target = args
        .target
        .as_deref()
        .map(|t| parse_target(t, &classes))
        .transpose()?;
    let slices = slices(&args.images, &classes)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let bar = progress_bar(slices.len(), "explain");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut sheet_rows = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for chunk in slices.chunks(args.batch.max(1)) {
        let mut planes = Vec::with_capacity(chunk.len() * s * s);
        let mut decoded = Vec::with_capacity(chunk.len());
        for slice in chunk {
            let bytes = std::fs::read(&slice.path)
                .with_context(|| format!("reading {}", slice.path.display()))?;
            let lum = decode_luminance(&bytes, DecodeLimits::default())
                .with_context(|| format!("decoding {}", slice.path.display()))?;
            let geometry = input_geometry(&lum, &spec)?;
            let plane = input_plane(&lum, &spec)?;
            planes.extend_from_slice(&plane);
            decoded.push((lum, geometry, plane));
        }
        let n = chunk.len() as i64;
        let planes = Tensor::from_slice(&planes)
            .reshape([n, 1, s as i64, s as i64])
            .to_device(device);
        let inputs = tumorxai_host::data::normalize(&planes, &spec);
        let targets = target.map(|t| vec![t; chunk.len()]);
        let explained = explain_batch(&run.model, &inputs, point, targets.as_deref(), &methods)?;
        for ((slice, (lum, geometry, plane)), maps) in chunk.iter().zip(&decoded).zip(&explained) {
            let (w, h) = (lum.width, lum.height);
            let probability = softmax(&maps.logits, 1.0)
                .get(maps.target)
                .copied()
                .unwrap_or(f32::NAN);
            let mask = match &args.masks {
                Some(dir) => load_mask(dir, &slice.rel, w, h)?,
                None => None,
            };
            let name = stem(&slice.rel);
            let mut tiles = vec![overlay(&lum.data, &[], w, h, "slice")];
            if let Some(m) = &mask {
                outline(&mut tiles[0], m, w, h);
            }
            let mut row = Row {
                file: slice.rel.display().to_string(),
                truth: slice.truth,
                target: maps.target,
                probability,
                eigengap: maps.eigengap,
                lesion_pixels: mask.as_ref().map(|m| m.iter().filter(|&&b| b).count()),
                methods: BTreeMap::new(),
            };
            let random: Vec<f32> = (0..maps.height * maps.width)
                .map(|_| rng.random::<f32>())
                .collect();
            let with_random = maps
                .maps
                .iter()
                .map(|(m, v)| (m.key(), Some(*m), v.clone()))
                .chain(std::iter::once(("random", None, random)));
            for (key, method, map) in with_random {
                let on = on_slice(
                    &map,
                    maps.height,
                    maps.width,
                    geometry,
                    w as usize,
                    h as usize,
                );
                if let Some(method) = method {
                    let text = format!(
                        "{}: {} {:.0}%",
                        method.label(),
                        short_class(&classes[maps.target]),
                        probability * 100.0
                    );
                    let mut picture = overlay(&lum.data, &on, w, h, &text);
                    if let Some(m) = &mask {
                        outline(&mut picture, m, w, h);
                    }
                    if args.per_image {
                        let base = args.out.join(format!("{name}-{key}"));
                        picture
                            .save(base.with_extension("png"))
                            .with_context(|| format!("writing {}", base.display()))?;
                        raw_map(&on, w, h)
                            .save(args.out.join(format!("{name}-{key}-map16.png")))
                            .context("writing the raw map")?;
                    }
                    tiles.push(picture);
                }
                let scores = if args.faithfulness {
                    let plane = Tensor::from_slice(plane)
                        .reshape([1, 1, s as i64, s as i64])
                        .to_device(device);
                    let on_in = on_input(&map, maps.height, maps.width, s);
                    Some(faithfulness::scores(
                        &run.model,
                        &spec,
                        &plane,
                        maps.target,
                        &on_in,
                    )?)
                } else {
                    None
                };
                let lesion = mask.as_ref().filter(|m| m.iter().any(|&b| b));
                row.methods.insert(
                    key.to_string(),
                    MethodRow {
                        scores,
                        pointing: lesion.map(|m| pointing_hit(&on, m)),
                        energy_in_lesion: lesion.map(|m| energy_in_mask(&on, m)),
                    },
                );
            }
            if sheet_rows.len() < args.sheet_rows {
                let label = format!(
                    "{}  true: {}  eigengap {:.2}",
                    slice
                        .rel
                        .file_name()
                        .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned()),
                    slice
                        .truth
                        .map_or_else(|| "?".to_string(), |t| short_class(&classes[t])),
                    maps.eigengap
                );
                sheet_rows.push((label, tiles));
            }
            rows.push(row);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if !sheet_rows.is_empty() {
        let path = args.out.join("sheet.png");
        sheet(&sheet_rows, 128)
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let report = FaithfulnessReport::new(&args.layer, &classes, rows, args.faithfulness);
    report.write(&args.out)?;
    println!("{}", report.summary());
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// "Glioma T1C+" for a full class folder name.
fn short_class(name: &str) -> String {
    match ClassInfo::parse(name) {
        Some(info) => format!("{} {}", info.family.label(), info.sequence.label()),
        None => name.to_string(),
    }
}
