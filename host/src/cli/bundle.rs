//! `tumorxai keygen` and `tumorxai bundle` (create, inspect, verify): signed
//! model bundles for the devices, with PEM (PKCS#8 / SubjectPublicKeyInfo)
//! Ed25519 keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::LoadedModel;
use tumorxai_host::export::bundle::{build_bundle, BundleOptions, TrainedRun};
use tumorxai_host::synth::write_atomic;
use tumorxai_shared::bundle::mcuboot::key_hash;
use tumorxai_shared::bundle::{check_upgrade, read_bundle, ReadBundle};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to write (PKCS#8 PEM, mode 0600); the public key goes
    /// beside it as <name>.pub.pem.
    #[arg(long)]
    out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

pub fn keygen(args: KeygenArgs) -> Result<ExitCode> {
    let public = public_key_path(&args.out);
    for path in [&args.out, &public] {
        if path.exists() && !args.force {
            bail!(
                "{} exists; refusing to overwrite a key (use --force)",
                path.display()
            );
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 v1 (no embedded public key): what OpenSSL, Python's
    // cryptography and so imgtool read; v2 with the public key is refused there.
    let private_pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| anyhow::anyhow!("encoding the private key: {e}"))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(&args.out, private_pem.as_bytes())?;
    write_atomic(&public, public_pem.as_bytes())?;
    println!(
        "wrote {} (private, keep it secret) and {} (public, for device trust stores)\nkey hash {}",
        args.out.display(),
        public.display(),
        hex::encode(key_hash(&key.verifying_key())?)
    );
    Ok(ExitCode::SUCCESS)
}

fn public_key_path(private: &Path) -> PathBuf {
    let stem = private
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    private.with_file_name(format!("{stem}.pub.pem"))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes)
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an Ed25519 PKCS#8 PEM private key: {e}",
            path.display()
        )
    })
}

/// A public key PEM, or the public half of a private key PEM.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(&pem)
        .map(|k| k.verifying_key())
        .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PEM key: {e}", path.display()))
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: Option<BundleCommand>,
    #[command(flatten)]
    create: Option<CreateArgs>,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Print a bundle's manifest, sizes, version and signer (no key needed).
    Inspect {
        bundle: PathBuf,
        /// Print the manifest as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle as a device would: structure, hash, signature by KEY,
    /// manifest, and the golden self-test on this machine's runtime.
    Verify {
        bundle: PathBuf,
        /// Public key PEM (or the private key PEM, whose public half is used).
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Run folder written by `train` or `finetune`.
    #[arg(long)]
    run: PathBuf,
    /// Signing key (PKCS#8 PEM from `tumorxai keygen`).
    #[arg(long)]
    key: PathBuf,
    /// Model line identifier (a-z 0-9 - _ .); versions are monotonic per id.
    #[arg(long)]
    model_id: String,
    /// MAJOR.MINOR.REVISION[+BUILD] (also the MCUboot header version).
    #[arg(long)]
    version: String,
    /// int8 weights (per-channel) with activation ranges calibrated on training images.
    #[arg(long)]
    int8: bool,
    /// Training images used for int8 calibration.
    #[arg(long, default_value_t = 300)]
    calibration_images: usize,
    /// Self-test images (default: three test-side images of the run's split).
    #[arg(long, num_args = 1..)]
    golden: Vec<PathBuf>,
    /// Text shown with the model, e.g. "trained on synthetic phantoms".
    #[arg(long)]
    notice: Option<String>,
    /// The bundle this one replaces: refuse unless the version is newer.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// Bundle file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn bundle(args: BundleArgs) -> Result<ExitCode> {
    match (args.command, args.create) {
        (Some(BundleCommand::Inspect { bundle, json }), _) => inspect(&bundle, json),
        (Some(BundleCommand::Verify { bundle, key }), _) => verify(&bundle, &key),
        (None, Some(create_args)) => create(create_args),
        (None, None) => bail!("nothing to do: see `tumorxai bundle --help`"),
    }
}

/// Creation time: SOURCE_DATE_EPOCH when set (reproducible bundles), else now.
fn created_unix() -> Result<u64> {
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        return epoch
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?} is not a number"));
    }
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

fn create(args: CreateArgs) -> Result<ExitCode> {
    let key = read_signing_key(&args.key)?;
    let run = TrainedRun::load(&args.run)?;
    if let Some(previous) = &args.previous {
        let bytes =
            std::fs::read(previous).with_context(|| format!("reading {}", previous.display()))?;
        let old = read_bundle(&bytes).with_context(|| format!("reading {}", previous.display()))?;
        let mut candidate = old.manifest.clone();
        candidate.model_id = args.model_id.clone();
        candidate.version = args.version.clone();
        check_upgrade(
            Some((&old.manifest.model_id, old.header.version)),
            &candidate,
        )?;
    }
    let options = BundleOptions {
        model_id: args.model_id,
        version: args.version,
        int8: args.int8,
        calibration_images: args.calibration_images,
        golden_images: args.golden,
        notice: args.notice,
        created_unix: created_unix()?,
    };
    let (bytes, summary) = build_bundle(&run, &options, &key, |line| eprintln!("{line}"))?;
    write_atomic(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    let read = read_bundle(&bytes)?;
    println!(
        "wrote {} ({} bytes): {} {} {}, model {} bytes ({:.1}% of fp32 {} bytes), {} self-tests (max |Δ logit| {:.2e})",
        args.out.display(),
        bytes.len(),
        read.manifest.model_id,
        read.manifest.version,
        read.manifest.quantization.form,
        summary.model_bytes,
        100.0 * summary.model_bytes as f64 / summary.fp32_onnx_bytes as f64,
        summary.fp32_onnx_bytes,
        summary.golden_vectors,
        summary.golden_max_delta
    );
    Ok(ExitCode::SUCCESS)
}

fn read_file_bundle(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(!bytes.is_empty(), "{} is empty", path.display());
    Ok(bytes)
}

fn describe(path: &Path, total: usize, b: &ReadBundle<'_>) -> String {
    let m = &b.manifest;
    let mut out = format!(
        "bundle      {} ({total} bytes, MCUboot image, header version {})\n",
        path.display(),
        b.header.version
    );
    let line = |k: &str, v: String| format!("{k:<11} {v}\n");
    out += &line("model", format!("{} {}", m.model_id, m.version));
    out += &line("created", m.created.clone());
    if let Some(notice) = &m.notice {
        out += &line("notice", notice.clone());
    }
    out += &line(
        "weights",
        format!(
            "{} ({} bytes ONNX){}",
            m.quantization.form,
            b.model.len(),
            m.quantization
                .calibration_images
                .map(|n| format!(", calibrated on {n} images"))
                .unwrap_or_default()
        ),
    );
    out += &line(
        "input",
        format!(
            "1×3×{s}×{s}, preprocessing spec {}",
            &m.preprocess_spec_sha256[..16],
            s = m.input_size
        ),
    );
    out += &line(
        "outputs",
        format!("{}, {}", m.outputs.logits, m.outputs.features),
    );
    out += &line("classes", format!("{}", m.classes.len()));
    for (i, c) in m.classes.iter().enumerate() {
        out += &format!("  {i:>2} {c}\n");
    }
    out += &line(
        "checkpoint",
        format!("sha256 {}", &m.training.checkpoint_sha256[..16]),
    );
    for (k, v) in &m.training.metrics {
        out += &format!("  {k} {v:.4}\n");
    }
    out += &line(
        "calibration",
        match m.temperature {
            Some(t) => format!("softmax temperature {t:.3} (fitted on validation images)"),
            None => "none (raw softmax)".to_string(),
        },
    );
    if let Some(ood) = &m.ood {
        out += &line(
            "OOD",
            format!(
                "{} threshold {:.4} ({} percentile of {} held-out images; {} from {} training images)",
                ood.method,
                ood.threshold,
                ood.percentile,
                ood.held_out_images,
                match &ood.gaussians {
                    Some(g) => format!(
                        "class means and shared precision ({} dims, {} bytes)",
                        g.dim,
                        g.section_len().unwrap_or(0)
                    ),
                    None => "centroids".to_string(),
                },
                ood.training_images
            ),
        );
    }
    out += &line("self-tests", format!("{}", b.golden.len()));
    for g in &b.golden {
        out += &format!(
            "  {} (top-1 {}, tolerance {:.1e})\n",
            g.name, g.top1, g.logit_tolerance
        );
    }
    out += &line("digest", hex::encode(b.digest));
    out += &line(
        "signed by",
        b.key_hash
            .map(|h| format!("key hash {}", hex::encode(h)))
            .unwrap_or_else(|| "unsigned".into()),
    );
    out
}

fn inspect(path: &Path, json: bool) -> Result<ExitCode> {
    let bytes = read_file_bundle(path)?;
    let bundle = read_bundle(&bytes).with_context(|| format!("reading {}", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&bundle.manifest)?);
    } else {
        print!("{}", describe(path, bytes.len(), &bundle));
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(path: &Path, key: &Path) -> Result<ExitCode> {
    let key = read_verifying_key(key)?;
    let bytes = read_file_bundle(path)?;
    let form = ExecutionForm::auto();
    let loaded = LoadedModel::from_bundle(&bytes, &[key], form)
        .with_context(|| format!("{} failed verification", path.display()))?;
    println!(
        "OK {}: {} {} signed by the given key; {} self-tests passed on the {} form (max |Δ logit| {:.2e})",
        path.display(),
        loaded.manifest.model_id,
        loaded.manifest.version,
        read_bundle(&bytes)?.golden.len(),
        loaded.form.name(),
        loaded.self_test_max_delta
    );
    Ok(ExitCode::SUCCESS)
}
