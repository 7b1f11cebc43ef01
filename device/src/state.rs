//! The device's state directory: its trust store, two model slots (A/B) and
//! which of them runs. `tumorxai-device install` is the way in; triage and
//! the inbox service run the active slot.
//!
//! ```text
//! STATE/trust/*.pem              Ed25519 public keys a bundle may be signed by
//! STATE/slots/a.bundle, b.bundle the two slots
//! STATE/slots.json               which slot is active, and what each holds
//! ```
//!
//! An install verifies the bundle completely — signature against the trust
//! store, manifest, no version at or below the highest ever installed for
//! its model id (anti-rollback, recorded in `slots.json`), tract load and the
//! golden self-test — before it touches anything; it then writes the
//! *inactive* slot (file and directory fsynced) and only then switches
//! `slots.json` by an atomic rename. A crash at any instant leaves either the
//! old table (old model active, the half-written slot unused) or the new one
//! (new slot complete): the active slot always holds a verified bundle, and
//! the previous model stays in the other slot.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tumorxai_shared::bundle::{check_upgrade, read_bundle, BundleError, ImageVersion};

use crate::forms::ExecutionForm;
use crate::loader::{parse_trusted_key, LoadError, LoadedModel};
use crate::service::write_atomic;

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "TUMORXAI_STATE_DIR";
/// The state directory when neither `--state-dir` nor the variable is set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tumorxai";
/// Largest bundle accepted into a slot (a ResNet-50 fp32 bundle is ~100 MB).
pub const MAX_BUNDLE_BYTES: u64 = 512 << 20;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the slot table is damaged ({why}); refusing to guess which model to run", path.display())]
    Table { path: PathBuf, why: String },
    #[error(
        "the trust store {} holds no *.pem public key: provision the public keys of the \
         signers this unit accepts there",
        .0.display()
    )]
    NoTrust(PathBuf),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("the bundle is {0} bytes; a slot holds at most {MAX_BUNDLE_BYTES}")]
    TooLarge(u64),
    #[error(
        "slot {slot} does not hold the bundle slots.json records (sha256 {expected}): refusing it"
    )]
    SlotMismatch { slot: Slot, expected: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Slot::A => "a.bundle",
            Slot::B => "b.bundle",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub model_id: String,
    pub version: String,
    /// SHA-256 of the slot's bundle file.
    pub bundle_sha256: String,
    /// RFC 3339 time of the install.
    pub installed: String,
}

/// `slots.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTable {
    pub active: Option<Slot>,
    pub a: Option<SlotInfo>,
    pub b: Option<SlotInfo>,
    /// The highest version ever installed per model id, only ever raised:
    /// installing another model id in between cannot open a way back to an
    /// older version of this one (anti-rollback).
    #[serde(default)]
    pub highest: std::collections::BTreeMap<String, String>,
    /// A slot marked (SMP image test or confirm) to run from the next reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The active slot runs on trial since a test: unless confirmed, it is
    /// reverted to `fallback` (see [`crate::upgrade`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<Trial>,
}

/// See [`SlotTable::pending`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub slot: Slot,
    /// Confirmed in advance (no trial, no way back).
    pub permanent: bool,
}

/// See [`SlotTable::trial`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub fallback: Slot,
    /// Reloads since the trial began.
    pub reloads: u32,
    /// Confirmed in advance: the trial ends at the first successful load
    /// (until then the fallback is kept, in case the model cannot load).
    #[serde(default)]
    pub confirm_on_load: bool,
    /// When the trial began (Unix seconds; 0 in tables from before the
    /// field existed), for the service's `--trial-seconds` limit.
    #[serde(default)]
    pub started_unix: u64,
    /// The service has loaded the trial model (tract, self-tests). Until
    /// then management clients see it as pending and the fallback as
    /// running, which is what the service runs.
    #[serde(default)]
    pub loaded: bool,
}

impl SlotTable {
    pub fn get(&self, slot: Slot) -> Option<&SlotInfo> {
        match slot {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    pub(crate) fn set(&mut self, slot: Slot, info: Option<SlotInfo>) {
        match slot {
            Slot::A => self.a = info,
            Slot::B => self.b = info,
        }
    }

    /// Records `info`'s version as confirmed, never lowering the record.
    pub(crate) fn raise_highest(&mut self, info: &SlotInfo) -> Result<(), BundleError> {
        let version: ImageVersion = info.version.parse()?;
        // Against the record itself: the slots' fallback of `highest_of`
        // already counts the slot being recorded.
        let recorded: Option<ImageVersion> = self
            .highest
            .get(&info.model_id)
            .map(|v| v.parse())
            .transpose()?;
        if recorded.is_none_or(|h| version > h) {
            self.highest
                .insert(info.model_id.clone(), info.version.clone());
        }
        Ok(())
    }

    /// The highest version of `model_id` ever installed (run confirmed)
    /// here. A staged or reverted version does not count: flashing it again
    /// after a failed trial is allowed.
    pub fn highest_of(&self, model_id: &str) -> Result<Option<ImageVersion>, BundleError> {
        let recorded = self.highest.get(model_id).map(|v| v.parse()).transpose()?;
        if !self.highest.is_empty() {
            return Ok(recorded);
        }
        // Tables written before the record existed: the slots still tell.
        let in_slots = [&self.a, &self.b]
            .into_iter()
            .flatten()
            .filter(|info| info.model_id == model_id)
            .map(|info| info.version.parse::<ImageVersion>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(recorded.into_iter().chain(in_slots).max())
    }

    /// Whether the table is coherent: an active slot must hold something,
    /// and so must a pending slot and a trial's fallback (the other slot).
    fn check(&self) -> Result<(), String> {
        match self.active {
            Some(slot) if self.get(slot).is_none() => {
                return Err(format!("active slot {slot} is empty"))
            }
            _ => {}
        }
        if let Some(p) = self.pending {
            if self.get(p.slot).is_none() || self.active == Some(p.slot) {
                return Err(format!(
                    "pending slot {} is empty or already active",
                    p.slot
                ));
            }
        }
        if let Some(t) = self.trial {
            if self.get(t.fallback).is_none() || self.active != Some(t.fallback.other()) {
                return Err(format!(
                    "trial fallback slot {} is not the other, filled slot",
                    t.fallback
                ));
            }
        }
        Ok(())
    }
}

/// A state directory (nothing is created until something is installed).
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

/// The result of an install.
#[derive(Debug, Clone)]
pub struct Installed {
    pub slot: Slot,
    pub info: SlotInfo,
    /// What ran before, now in the other slot.
    pub previous: Option<SlotInfo>,
    pub self_tests_passed: usize,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// `--state-dir` if given, else `$TUMORXAI_STATE_DIR`, else
    /// `/var/lib/tumorxai`: an absolute default, so a service started by an
    /// init system (current directory `/`) finds it.
    pub fn resolve(flag: Option<&Path>) -> StateDir {
        match flag {
            Some(p) => StateDir::new(p),
            None => match std::env::var_os(STATE_DIR_ENV) {
                Some(v) if !v.is_empty() => StateDir::new(PathBuf::from(v)),
                _ => StateDir::new(DEFAULT_STATE_DIR),
            },
        }
    }

    pub fn trust_dir(&self) -> PathBuf {
        self.root.join("trust")
    }

    pub(crate) fn slots_dir(&self) -> PathBuf {
        self.root.join("slots")
    }

    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        self.slots_dir().join(slot.file_name())
    }

    pub(crate) fn table_path(&self) -> PathBuf {
        self.root.join("slots.json")
    }

    /// The slot table; an empty one when nothing was ever installed.
    pub fn table(&self) -> Result<SlotTable, StateError> {
        let path = self.table_path();
        let table: SlotTable = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Table {
                path: path.clone(),
                why: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SlotTable::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        table
            .check()
            .map_err(|why| StateError::Table { path, why })?;
        Ok(table)
    }

    /// Whether this unit has been provisioned (it has a trust store).
    pub fn is_provisioned(&self) -> bool {
        self.trust_dir().is_dir()
    }

    /// The trust store's keys (refused when empty).
    pub fn trust(&self) -> Result<Vec<VerifyingKey>, StateError> {
        load_trust_store(&self.trust_dir())
    }

    /// The active slot's bundle bytes and record; `None` when nothing is
    /// installed. A slot whose file is not the recorded bundle is refused.
    pub fn active_bundle(&self) -> Result<Option<(Slot, Vec<u8>, SlotInfo)>, StateError> {
        let table = self.table()?;
        let Some(slot) = table.active else {
            return Ok(None);
        };
        let Some(info) = table.get(slot).cloned() else {
            return Err(StateError::Table {
                path: self.table_path(),
                why: format!("active slot {slot} is empty"),
            });
        };
        let path = self.slot_path(slot);
        let bytes = read_bundle_file(&path)?;
        if hex::encode(Sha256::digest(&bytes)) != info.bundle_sha256 {
            return Err(StateError::SlotMismatch {
                slot,
                expected: info.bundle_sha256,
            });
        }
        Ok(Some((slot, bytes, info)))
    }

    /// Verifies `bytes` completely, then makes it the running model (see the
    /// module docs for the order of writes). `installed` is the RFC 3339 time.
    pub fn install(
        &self,
        bytes: &[u8],
        form: ExecutionForm,
        installed: &str,
    ) -> Result<Installed, StateError> {
        // One install at a time: two would pick the same inactive slot.
        let _lock = self.lock()?;
        let mut table = self.table()?;
        let (slot, info, self_tests_passed) =
            self.verify_for_inactive(&table, bytes, form, installed)?;
        // A local install replaces whatever an SMP upgrade had under way;
        // the table forgets the slot (maybe a trial's fallback) before its
        // file is replaced.
        if table.get(slot).is_some() || table.pending.is_some() || table.trial.is_some() {
            table.set(slot, None);
            table.pending = None;
            table.trial = None;
            self.write_table(&table)?;
        }
        self.write_slot(slot, bytes)?;
        let previous = table.active.and_then(|s| table.get(s).cloned());
        table.set(slot, Some(info.clone()));
        table.active = Some(slot);
        table.raise_highest(&info)?;
        self.write_table(&table)?;
        Ok(Installed {
            slot,
            info,
            previous,
            self_tests_passed,
        })
    }

    /// Verifies `bytes` completely — size, signature against the trust
    /// store, manifest, anti-rollback against `table`, tract load and the
    /// golden self-test — writing nothing. Returns the inactive slot they
    /// are for, its record-to-be and the self-tests run.
    pub(crate) fn verify_for_inactive(
        &self,
        table: &SlotTable,
        bytes: &[u8],
        form: ExecutionForm,
        installed: &str,
    ) -> Result<(Slot, SlotInfo, usize), StateError> {
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(StateError::TooLarge(bytes.len() as u64));
        }
        let trust = self.trust()?;
        let bundle = read_bundle(bytes)?;
        bundle.verify_trusted(&trust)?;
        let model_id = bundle.manifest.model_id.clone();
        let highest = table.highest_of(&model_id)?;
        check_upgrade(highest.map(|v| (model_id.as_str(), v)), &bundle.manifest)?;
        // Tract load and golden self-test: a model that cannot certify
        // itself never reaches a slot.
        let model = LoadedModel::from_bundle(bytes, &trust, form)?;
        let slot = table.active.map_or(Slot::A, Slot::other);
        let info = SlotInfo {
            model_id,
            version: bundle.manifest.version.clone(),
            bundle_sha256: hex::encode(Sha256::digest(bytes)),
            installed: installed.to_string(),
        };
        Ok((slot, info, model.self_tests_passed))
    }

    /// Writes a slot's file (file and directory fsynced).
    pub(crate) fn write_slot(&self, slot: Slot, bytes: &[u8]) -> Result<(), StateError> {
        let dir = self.slots_dir();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = self.slot_path(slot);
        write_atomic(&path, bytes).map_err(io(&path))
    }

    /// Replaces `slots.json` atomically (write, fsync, rename, fsync the
    /// directory).
    pub(crate) fn write_table(&self, table: &SlotTable) -> Result<(), StateError> {
        let path = self.table_path();
        let json = serde_json::to_vec_pretty(table).map_err(|e| StateError::Table {
            path: path.clone(),
            why: e.to_string(),
        })?;
        write_atomic(&path, &json).map_err(io(&path))
    }
}

impl StateDir {
    /// An exclusive lock on `STATE/.lock` for the life of the guard (the
    /// kernel releases it whatever ends the process).
    pub(crate) fn lock(&self) -> Result<std::fs::File, StateError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }
}

fn read_bundle_file(path: &Path) -> Result<Vec<u8>, StateError> {
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    if size > MAX_BUNDLE_BYTES {
        return Err(StateError::TooLarge(size));
    }
    std::fs::read(path).map_err(io(path))
}

/// Every `*.pem` public key in `dir` (refused when there is none).
pub fn load_trust_store(dir: &Path) -> Result<Vec<VerifyingKey>, StateError> {
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NoTrust(dir.to_path_buf()))
        }
        Err(e) => return Err(io(dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    paths.sort();
    for path in paths {
        let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
        keys.push(parse_trusted_key(&path.display().to_string(), &pem)?);
    }
    if keys.is_empty() {
        return Err(StateError::NoTrust(dir.to_path_buf()));
    }
    Ok(keys)
}
