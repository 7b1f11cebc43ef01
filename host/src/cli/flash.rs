//! `tumorxai flash` and `tumorxai device status`: a field engineer's laptop
//! talking MCUmgr SMP to the device's serial port (the codec is
//! `shared::smp`, the same the device uses). Uploads resume on their own
//! after a timeout or a lost port: the client re-opens the port and starts
//! again at offset 0 with the image's length and SHA-256, and the device
//! answers with the offset it already holds.
//!
//! Nothing is taken on trust from a line that may carry leftovers of an
//! earlier, killed client: input waiting at open is dropped, each process
//! starts at a random sequence number, and an answer must match the
//! request's sequence, group, command and operation. After a mark and a
//! reset the client reads the image state back until the device reports
//! the bundle running (and confirmed, with `--confirm`); a reset whose
//! answer was lost is sent again only if the state shows it never arrived,
//! since a second reload would revert a model on trial.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tumorxai_shared::bundle::read_bundle;
use tumorxai_shared::smp::client::{ClientRequest, ClientResponse, SlotAnswer};

mod link;

use link::{print_slots, slots, Failure, Link};

/// The largest SMP message this client handles (the device's is 8192).
pub(super) const MESSAGE_CAPACITY: usize = 8192;
/// Room in a message for the header and the upload request's other fields.
const UPLOAD_OVERHEAD: u64 = 128;
/// Answers in a row that do not advance the upload before giving up.
const MAX_STALLED_ANSWERS: u32 = 20;

#[derive(Debug, Args)]
pub struct PortArgs {
    /// The device's serial port, e.g. /dev/ttyUSB0.
    #[arg(long)]
    port: String,
    /// Line rate (the device's `serve --baud`).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// How long to wait for each answer (milliseconds).
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct FlashArgs {
    #[command(flatten)]
    port: PortArgs,
    /// The signed model bundle to install.
    bundle: PathBuf,
    /// After the upload, mark the new model for test and reset the device:
    /// it runs on trial and reverts at the next reload unless confirmed.
    #[arg(long, conflicts_with = "confirm")]
    test: bool,
    /// After the upload, confirm the new model and reset the device: it
    /// runs from now on, with no trial.
    #[arg(long)]
    confirm: bool,
    /// Timeouts or port failures in a row before giving up.
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// How long the answer to the last chunk may take (seconds): the device
    /// verifies the whole bundle first (signature, load, self-test). Also
    /// how long a confirmed model may take to load after the reset.
    #[arg(long, default_value_t = 120)]
    verify_timeout_s: u64,
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// List the device's model slots: version, SHA-256, active, confirmed,
    /// pending.
    Status(PortArgs),
    /// Confirm the model the device runs on trial (after `flash --test`).
    Confirm(PortArgs),
}

/// Sends `bytes` from where the device stands, resuming after link
/// failures; fails on a refusal or after `retries` failures in a row.
fn upload(
    link: &mut Link,
    bytes: &[u8],
    sha: [u8; 32],
    retries: u32,
    verify_timeout: Duration,
) -> Result<()> {
    let len = bytes.len() as u64;
    let ClientResponse::Parameters { buf_size } = link.ask(&ClientRequest::Parameters, retries)?
    else {
        bail!("the device's parameters answer has no buffer size");
    };
    let chunk = buf_size
        .min(MESSAGE_CAPACITY as u64)
        .saturating_sub(UPLOAD_OVERHEAD)
        .max(32);
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "upload [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut off = 0u64;
    let mut failures = 0;
    let mut stalled = 0;
    // The payload rate: bytes the device acknowledged before the final
    // chunk (whose answer waits for the device's verification) over the
    // time they took, from the first answer on.
    let mut first_answer: Option<(u64, Instant)> = None;
    let mut last_ack: Option<(u64, Instant)> = None;
    let matched = loop {
        let end = off.saturating_add(chunk).min(len);
        let data = bytes.get(off as usize..end as usize).unwrap_or_default();
        let request = ClientRequest::Upload {
            off,
            data,
            first: (off == 0).then_some((len, sha)),
        };
        // The device verifies the whole bundle (signature, tract load,
        // self-test) before it answers the last chunk.
        let timeout = if end == len {
            Duration::from_millis(link.args.timeout_ms).max(verify_timeout)
        } else {
            Duration::from_millis(link.args.timeout_ms)
        };
        match link.exchange_within(&request, timeout) {
            Ok(ClientResponse::Upload { off: next, matched }) => {
                failures = 0;
                if first_answer.is_none() {
                    // The device answers the first chunk with the offset
                    // it holds: past that chunk's end, an earlier upload
                    // of this bundle goes on.
                    if next != end && next < len {
                        bar.suspend(|| {
                            eprintln!(
                                "the device already holds {next} of {len} bytes of this upload: \
                                 resuming there"
                            )
                        });
                    }
                    first_answer = Some((next, Instant::now()));
                } else if next > off && next < len {
                    last_ack = Some((next, Instant::now()));
                }
                if next <= off && next < len {
                    stalled += 1;
                    if stalled > MAX_STALLED_ANSWERS {
                        bar.abandon();
                        bail!("the device keeps answering offset {next}: the upload makes no progress");
                    }
                } else {
                    stalled = 0;
                }
                off = next.min(len);
                bar.set_position(off);
                if next >= len {
                    break matched;
                }
            }
            Ok(ClientResponse::Refused { rc, reason }) => {
                bar.abandon();
                bail!("the device refused the bundle: {reason} (MCUmgr error {rc}); its running model is unchanged")
            }
            Ok(other) => bail!("unexpected answer to an upload: {other:?}"),
            Err(Failure::Answer(e)) => return Err(e),
            Err(Failure::Link(why)) => {
                failures += 1;
                if failures > retries {
                    bar.abandon();
                    bail!(
                        "upload stopped at byte {off} of {len} ({why}, {failures} tries): run \
                         the same command again to resume"
                    );
                }
                bar.suspend(|| eprintln!("link: {why}; resuming the upload"));
                link.reopen();
                // Offset 0 with the length and hash: the device says where
                // it stands.
                off = 0;
            }
        }
    };
    bar.finish();
    if let (Some((from, start)), Some((to, end))) = (first_answer, last_ack) {
        let seconds = end.duration_since(start).as_secs_f64();
        if to > from && seconds > 0.0 {
            eprintln!(
                "payload rate {:.0} bytes/s ({} bytes in {seconds:.2} s before the final \
                 chunk; the device then verified the bundle)",
                (to - from) as f64 / seconds,
                to - from
            );
        }
    }
    if matched == Some(false) {
        bail!("the device received bytes whose SHA-256 is not the bundle's: flash again");
    }
    Ok(())
}

pub fn flash(args: FlashArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let manifest = read_bundle(&bytes)
        .with_context(|| format!("{} is not a signed model bundle", args.bundle.display()))?
        .manifest;
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let len = bytes.len() as u64;
    eprintln!(
        "flashing {} {} ({len} bytes, sha256 {}) to {}",
        manifest.model_id,
        manifest.version,
        hex::encode(sha),
        args.port.port
    );
    let retries = args.retries;
    let verify_timeout = Duration::from_secs(args.verify_timeout_s);
    let mut link = Link::open(args.port)?;
    if slots(&mut link, retries)?
        .iter()
        .any(|s| s.hash.as_slice() == sha)
    {
        eprintln!("the device already holds this bundle: nothing to upload");
    } else {
        upload(&mut link, &bytes, sha, retries, verify_timeout)?;
    }
    let slots = print_slots(&mut link)?;
    let Some(staged) = slots.iter().find(|s| s.hash.as_slice() == sha) else {
        bail!("no slot of the device reports the bundle's SHA-256 after the upload");
    };
    eprintln!(
        "verified: the device holds {} in slot {} with the bundle's SHA-256",
        staged.version.as_str(),
        staged.slot
    );
    if staged.active {
        if args.confirm && !staged.confirmed {
            link.ask(
                &ClientRequest::Mark {
                    hash: sha,
                    confirm: true,
                },
                retries,
            )?;
            expect_running(&mut link, sha, true, retries, verify_timeout)?;
            eprintln!("confirmed: the device runs it from now on");
        } else {
            eprintln!(
                "the device already runs it{}",
                if staged.confirmed {
                    ""
                } else {
                    " on trial (confirm it with `tumorxai device confirm`)"
                }
            );
        }
    } else if args.test || args.confirm {
        link.ask(
            &ClientRequest::Mark {
                hash: sha,
                confirm: args.confirm,
            },
            retries,
        )?;
        reset(&mut link, sha, retries)?;
        let running = expect_running(&mut link, sha, args.confirm, retries, verify_timeout)?;
        eprintln!(
            "{} and reset: the device reports {} active{}",
            if args.confirm {
                "confirmed"
            } else {
                "marked for test"
            },
            running.version.as_str(),
            if running.confirmed {
                ""
            } else {
                " on trial (confirm it with `tumorxai device confirm`, or the next reload reverts it)"
            }
        );
    } else {
        eprintln!("staged: not running until tested (`--test`) or confirmed (`--confirm`)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resets the device once. The device answers a reset when it has
/// reloaded (loaded the new model, or reverted), and it handles requests in
/// order, so after a lost answer a state read tells whether the reset
/// happened: our slot still pending means it never arrived (a read sent
/// while the device still reloads is answered after it). A second reset
/// would be a second reload, which reverts a model on trial.
fn reset(link: &mut Link, sha: [u8; 32], retries: u32) -> Result<()> {
    link.ask_unless_done(&ClientRequest::Reset, retries, |link| {
        // Arrived unless our slot is still waiting for it.
        Ok(!slots(link, retries)?
            .iter()
            .any(|s| s.hash.as_slice() == sha && s.pending && !s.active))
    })
    .context("resetting the device")?;
    Ok(())
}

/// Reads the device's image state back after a mark (and reset): the
/// acknowledgements alone are not trusted to say what runs. The device
/// reports a model as active once its service runs it (loaded, self-tests
/// passed), and a model confirmed in advance as confirmed once it has
/// loaded; until `load_timeout` the state is read again while ours is
/// still on its way (pending, or active but not yet confirmed).
fn expect_running(
    link: &mut Link,
    sha: [u8; 32],
    confirmed: bool,
    retries: u32,
    load_timeout: Duration,
) -> Result<SlotAnswer> {
    let deadline = Instant::now() + load_timeout;
    loop {
        let slots = slots(link, retries)?;
        let ours = slots.iter().find(|s| s.hash.as_slice() == sha);
        match ours {
            Some(slot) if slot.active && (slot.confirmed || !confirmed) => return Ok(slot.clone()),
            Some(slot) if (slot.active || slot.pending) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            _ => {
                let running = slots
                    .iter()
                    .find(|s| s.active)
                    .map(|s| format!("{} (confirmed: {})", s.version.as_str(), s.confirmed))
                    .unwrap_or_else(|| "no model".into());
                bail!(
                    "the device acknowledged the {} but reports {running} active{}: flash \
                     again, or check `tumorxai device status`",
                    if confirmed {
                        "confirmation"
                    } else {
                        "test mark and reset"
                    },
                    if ours.is_some_and(|s| s.active || s.pending) {
                        format!(
                            " ({} s after the reset this bundle is still not running{})",
                            load_timeout.as_secs(),
                            if confirmed { " confirmed" } else { "" }
                        )
                    } else {
                        String::new()
                    }
                )
            }
        }
    }
}

pub fn device(args: DeviceArgs) -> Result<ExitCode> {
    match args.command {
        DeviceCommand::Status(port) => {
            let mut link = Link::open(port)?;
            print_slots(&mut link)?;
        }
        DeviceCommand::Confirm(port) => {
            let mut link = Link::open(port)?;
            let slots = print_slots(&mut link)?;
            let Some(active) = slots.iter().find(|s| s.active) else {
                bail!("the device reports no active model");
            };
            let hash: [u8; 32] = active
                .hash
                .as_slice()
                .try_into()
                .context("the device's hash of the active model is not a SHA-256")?;
            link.ask(
                &ClientRequest::Mark {
                    hash,
                    confirm: true,
                },
                3,
            )?;
            eprintln!("confirmed {}", active.version.as_str());
        }
    }
    Ok(ExitCode::SUCCESS)
}
