//! Command-line interface of `tumorxai-device`.

mod bench;
mod evaluate;
mod install;
mod profile;
mod serve;
mod triage;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use embedded_graphics::prelude::Size;
use tumorxai_device::display::fbdev::LinuxFramebuffer;
use tumorxai_device::display::framebuffer::FrameBuffer;
use tumorxai_device::display::{draw, Frame, ModelLabel, Screen};
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::input::load_input;
use tumorxai_device::loader::{parse_trusted_key, LoadedModel};
use tumorxai_device::state::{load_trust_store, StateDir};
use tumorxai_device::triage::Thresholds;
use tumorxai_shared::bundle::{check_upgrade, read_bundle, rfc3339_utc};
use tumorxai_shared::{DecodeLimits, PreprocessSpec};

/// TumorXAI scanner-side runtime. Research software, not for diagnostic use.
#[derive(Debug, Parser)]
#[command(name = "tumorxai-device", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Triage slice files: top-3 classes, family probabilities and a flag
    /// (TUMOR LIKELY / NO TUMOR FLAGGED / REVIEW), with an EigenCAM overlay
    /// and the display frame. With no files: the demo bundle on the sample
    /// scans in models/samples.
    #[command(
        after_help = "Examples:\n  tumorxai-device triage\n  tumorxai-device triage --state-dir /var/lib/tumorxai scan.jpg\n  tumorxai-device triage --bundle models/demo-int8.bundle models/samples/01-glioma-t1c.jpg"
    )]
    Triage(triage::TriageArgs),
    /// Watch an inbox folder: triage each complete slice once, answer in the
    /// outbox (JSON + overlay), log to the audit log, archive the input.
    #[command(
        after_help = "Example:\n  tumorxai-device serve --inbox /srv/scans/in --outbox /srv/scans/out --fb /dev/fb0"
    )]
    Serve(Box<serve::ServeArgs>),
    /// Install a signed model bundle into the state directory's inactive
    /// slot and make it the running model, after checking everything: the
    /// signature against the state's trust store, the manifest, no
    /// downgrade of the running model id, the tract load and the golden
    /// self-test. The previous model stays in the other slot.
    #[command(
        after_help = "Example (provisioning a unit):\n  mkdir -p /var/lib/tumorxai/trust && cp release.pub.pem /var/lib/tumorxai/trust/\n  tumorxai-device install tumorxai-2.0.0.bundle"
    )]
    Install(install::InstallArgs),
    /// Per-stage latency (decode, preprocess, inference, EigenCAM, render)
    /// over repeated runs of the sample scans, and peak memory, as JSON;
    /// with --workers, the throughput of a whole series.
    #[command(
        after_help = "Examples:\n  tumorxai-device bench --repeat 10 models/samples/01-glioma-t1c.jpg\n  tumorxai-device bench --workers 1,2,4 --series 30 models/samples/*.jpg"
    )]
    Bench(bench::BenchArgs),
    /// The device's triage over a labelled folder (the real dataset's
    /// layout): top-1, tumour slices cleared (NO TUMOR FLAGGED: the
    /// misses), sensitivity and specificity of "any tumour vs normal" with
    /// Wilson 95 % intervals, REVIEW rate; per class with --json.
    #[command(
        after_help = "Example:\n  tumorxai-device evaluate --data data/physics-test --json physics-test.json"
    )]
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// Where inference time goes: every node of tract's optimised plan
    /// timed over repeated runs of one slice (tract's per-node evaluation
    /// hook), with its op, multiply-adds and whether it only recomputes
    /// constants, the slowest first, as JSON.
    #[command(
        after_help = "Example:\n  tumorxai-device profile --bundle models/demo-int8.bundle --form int8 --top 10 models/samples/01-glioma-t1c.jpg"
    )]
    Profile(profile::ProfileArgs),
    /// Run slice files through the shared preprocessing contract and print
    /// the model input's shape and statistics (one JSON line per file).
    Preprocess {
        /// Image files (JPEG, PNG, BMP, TIFF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Model input side S (tensor 1×3×S×S).
        #[arg(long, default_value_t = 224)]
        size: u32,
    },
}

/// Which model to run, whom to trust, and how to execute int8 weights.
#[derive(Debug, Args)]
struct ModelArgs {
    /// State directory: trust store (trust/*.pem), the two model slots and
    /// which one runs. Default: $TUMORXAI_STATE_DIR, else /var/lib/tumorxai.
    /// With no model installed there, the built-in demo model runs (DEMO on
    /// the panel).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Run this signed bundle instead of the installed model (development
    /// and evaluation). Refused if it would downgrade the installed model.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Trust store for --bundle (or the built-in demo): a folder of Ed25519
    /// public keys (*.pem, SubjectPublicKeyInfo). Default: the state
    /// directory's, else the built-in demo key (only the demo model is
    /// signed with it). An installed model is always checked against the
    /// state directory's.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// Execution form of int8 bundles: auto (int8 kernels on aarch64 CPUs
    /// with the dot-product extension, e.g. Cortex-A76, and on x86-64 with
    /// AVX2; dequantized f32 on the Cortex-A72 and elsewhere), dequantized,
    /// int8, as-shipped (QDQ).
    #[arg(long, default_value = "auto")]
    form: ExecutionForm,
    /// Threads for tract's matrix products (multithreaded matmul).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

/// Triage thresholds and the panel the result is drawn for.
#[derive(Debug, Args)]
struct PolicyArgs {
    /// Probability at which a tumour family is flagged (0 < p ≤ 1).
    #[arg(long, default_value_t = Thresholds::default().tumour, value_parser = parse_probability)]
    tumour_threshold: f32,
    /// Probability of Normal needed to clear a slice (0 < p ≤ 1).
    #[arg(long, default_value_t = Thresholds::default().normal, value_parser = parse_probability)]
    normal_threshold: f32,
    /// Display panel size, WIDTHxHEIGHT (e.g. 320x240, 480x320).
    #[arg(long, default_value = "320x240", value_parser = parse_panel)]
    panel: Size,
    /// Also show frames on this Linux framebuffer (e.g. /dev/fb0; its own
    /// geometry then decides the panel size).
    #[arg(long)]
    fb: Option<PathBuf>,
}

impl PolicyArgs {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            tumour: self.tumour_threshold,
            normal: self.normal_threshold,
        }
    }
}

/// A threshold on a probability: finite, above 0 (0 would flag everything)
/// and at most 1.
fn parse_probability(text: &str) -> Result<f32, String> {
    let p: f32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if p.is_finite() && p > 0.0 && p <= 1.0 {
        Ok(p)
    } else {
        Err(format!("{text:?}: a probability threshold is in (0, 1]"))
    }
}

fn parse_panel(text: &str) -> Result<Size, String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    let (w, h): (u32, u32) = (
        w.parse().map_err(|_| format!("bad width in {text:?}"))?,
        h.parse().map_err(|_| format!("bad height in {text:?}"))?,
    );
    if !(160..=1920).contains(&w) || !(120..=1080).contains(&h) || w < h {
        return Err(format!(
            "{text:?}: panels are landscape, 160x120 to 1920x1080"
        ));
    }
    Ok(Size::new(w, h))
}

/// Where frames go: always a PNG snapshot, optionally a Linux framebuffer.
struct Display {
    panel: Size,
    fb: Option<LinuxFramebuffer>,
}

impl Display {
    fn open(policy: &PolicyArgs) -> Result<Display> {
        let fb = match &policy.fb {
            Some(path) => Some(
                LinuxFramebuffer::open(path)
                    .with_context(|| format!("opening framebuffer {}", path.display()))?,
            ),
            None => None,
        };
        let panel = fb
            .as_ref()
            .map(|f| Size::new(f.geometry.width, f.geometry.height))
            .unwrap_or(policy.panel);
        Ok(Display { panel, fb })
    }

    /// Draws `frame`, writes it as PNG to `png`, and shows it on the panel.
    fn show(&self, frame: &Frame, png: &Path) -> Result<()> {
        let mut buffer = FrameBuffer::new(self.panel.width, self.panel.height);
        // Drawing into memory cannot fail (Infallible).
        let _ = draw(&mut buffer, frame);
        tumorxai_device::service::write_atomic(png, &buffer.to_png()?)
            .with_context(|| format!("writing {}", png.display()))?;
        if let Some(fb) = &self.fb {
            fb.show(&buffer)?;
        }
        Ok(())
    }
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_utc(secs)
}

/// "YYYY-MM-DD HH:MM UTC" for the panel header.
fn panel_time() -> String {
    let t = now_rfc3339();
    format!("{} {} UTC", &t[..10], &t[11..16])
}

fn frame(screen: Screen, model: &LoadedModel) -> Frame {
    Frame {
        screen,
        model: Some(ModelLabel {
            name: if model.demo {
                format!("{} DEMO", model.manifest.model_id)
            } else {
                model.manifest.model_id.clone()
            },
            version: model.manifest.version.clone(),
        }),
        time: panel_time(),
    }
}

/// The demo model and its public key, built in: what runs when nothing is
/// installed, so the first command works from anywhere. The demo key's
/// private half is public (models/demo-signing-key.pem): it is never in a
/// state directory's trust store unless a unit is provisioned as a demo.
const DEMO_BUNDLE: &[u8] = include_bytes!("../../../models/demo-int8.bundle");
const DEMO_KEY_PEM: &str = include_str!("../../../models/trust/demo-signing-key.pub.pem");

fn demo_key() -> Result<ed25519_dalek::VerifyingKey> {
    Ok(parse_trusted_key("built-in demo key", DEMO_KEY_PEM)?)
}

/// Whether `bundle` is signed by the demo key (then the panel says DEMO).
fn signed_by_demo_key(bundle: &[u8]) -> bool {
    let Ok(key) = demo_key() else { return false };
    read_bundle(bundle).is_ok_and(|b| b.verify(&key).is_ok())
}

fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    tumorxai_device::runtime::set_threads(usize::from(args.threads));
    let state = StateDir::resolve(args.state_dir.as_deref());
    let provisioned = state.is_provisioned();
    let state_trust = || state.trust().map_err(anyhow::Error::from);
    let (bytes, trust, source) = match &args.bundle {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading bundle {}", path.display()))?;
            let trust = match (&args.trust, provisioned) {
                (Some(_), true) => anyhow::bail!(
                    "this unit is provisioned ({} exists): bundles are checked against its \
                     trust store, not --trust",
                    state.trust_dir().display()
                ),
                (Some(dir), false) => load_trust_store(dir)?,
                (None, true) => state_trust()?,
                (None, false) => vec![demo_key()?],
            };
            // Never an older version than was ever installed here.
            let manifest = read_bundle(&bytes)
                .with_context(|| format!("refusing bundle {}", path.display()))?
                .manifest;
            if let Some(highest) = state.table()?.highest_of(&manifest.model_id)? {
                if manifest.image_version()? < highest {
                    check_upgrade(Some((manifest.model_id.as_str(), highest)), &manifest)
                        .with_context(|| format!("refusing bundle {}", path.display()))?;
                }
            }
            (bytes, trust, path.display().to_string())
        }
        None => match state.active_bundle()? {
            Some((slot, bytes, _)) => {
                anyhow::ensure!(
                    args.trust.is_none(),
                    "--trust applies to --bundle only: the installed model is checked \
                     against the state directory's trust store"
                );
                let source = format!("slot {slot} of {}", state.root.display());
                eprintln!("installed model: {source}");
                (bytes, state_trust()?, source)
            }
            None => {
                // A provisioned unit runs the demo only if it was
                // provisioned as a demo unit (its trust store has the key).
                if provisioned && !state_trust()?.contains(&demo_key()?) {
                    anyhow::bail!(
                        "no model installed in {}: install one with `tumorxai-device install \
                         BUNDLE` (this unit does not trust the demo key, so it does not fall \
                         back to the built-in demo model)",
                        state.root.display()
                    );
                }
                eprintln!(
                    "no model installed in {}: running the built-in DEMO model",
                    state.root.display()
                );
                let trust = match &args.trust {
                    Some(dir) => load_trust_store(dir)?,
                    None => vec![demo_key()?],
                };
                (
                    DEMO_BUNDLE.to_vec(),
                    trust,
                    "the built-in demo bundle".into(),
                )
            }
        },
    };
    let mut model = LoadedModel::from_bundle(&bytes, &trust, args.form)
        .with_context(|| format!("refusing {source}"))?;
    if model.manifest.quantization.form == tumorxai_shared::bundle::QuantizationForm::Int8Qdq {
        eprintln!(
            "int8 bundle in the {} form ({})",
            model.form.name(),
            ExecutionForm::auto_reason()
        );
    }
    model.demo = signed_by_demo_key(&bytes);
    Ok(model)
}

/// Runs `f` on every file; a failing file is reported and the rest still run.
/// The exit status is a failure if any file failed.
/// Largest input file read (a 16-bit 2048² slice is 8 MiB uncompressed;
/// DICOM with overlays stays far below this).
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Reads an input file, refusing one larger than [`MAX_INPUT_BYTES`] before
/// reading it. Errors never name the file: callers add the name where it
/// may be shown.
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .context("reading the input file")?
        .len();
    if size > MAX_INPUT_BYTES {
        anyhow::bail!("the file is {size} bytes; a slice is at most {MAX_INPUT_BYTES}");
    }
    std::fs::read(path).context("reading the input file")
}

fn each_file<T>(files: &[T], mut f: impl FnMut(&T) -> Result<()>) -> ExitCode {
    let mut failed = false;
    for file in files {
        if let Err(err) = f(file) {
            failed = true;
            eprintln!("error: {err:#}");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub fn run() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Triage(args) => triage::triage(args),
        Command::Serve(args) => serve::serve(*args),
        Command::Install(args) => install::install(args),
        Command::Bench(args) => bench::bench(args),
        Command::Evaluate(args) => evaluate::evaluate(*args),
        Command::Profile(args) => profile::profile(args),
        Command::Preprocess { files, size } => {
            let spec = PreprocessSpec::with_input_size(size);
            spec.validate()?;
            Ok(each_file(&files, |file| {
                let input = load_input(file, &spec, DecodeLimits::slice())?;
                let n = input.data.len() as f64;
                let mean = input.data.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
                let line = serde_json::json!({
                    "file": file.display().to_string(),
                    "shape": input.shape(),
                    "mean": mean,
                    "spec_hash": spec.hash_hex(),
                });
                println!("{line}");
                Ok(())
            }))
        }
    }
}
