//! The upgrade lifecycle of the two model slots, as MCUboot does it for
//! firmware: an uploaded bundle is verified completely and *staged* in the
//! inactive slot; `test` marks it to run from the next reload on trial,
//! `confirm` makes it permanent; a trial model that is reloaded again
//! without having been confirmed (a crash, a power cut, a reset) is
//! reverted to the previous model, as is one that fails to load.
//!
//! Every change is one atomic replacement of `slots.json` (see
//! [`StateDir::write_table`]); slot files are written before the table
//! names them and the table forgets a slot before its file is replaced, so
//! a process killed at any instant leaves an active slot that holds a
//! verified bundle.

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::failpoint;
use crate::forms::ExecutionForm;
use tumorxai_shared::bundle::ImageVersion;

use crate::state::{io, Pending, Slot, SlotInfo, SlotTable, StateDir, StateError, Trial};

/// Reloads a trial model survives unconfirmed: none, as in MCUboot (the
/// reload that activates it does not count).
pub const UNCONFIRMED_RELOADS: u32 = 0;

#[derive(Debug, Error)]
pub enum UpgradeError {
    #[error(transparent)]
    State(#[from] StateError),
    /// The request does not fit the slots' state (e.g. an upload during a
    /// trial, which would overwrite the fallback).
    #[error("{0}")]
    BadState(String),
    #[error("no slot holds the image with SHA-256 {0}")]
    NoSuchImage(String),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    /// A pending slot became active (on trial unless it was confirmed).
    Activated {
        slot: Slot,
        trial: bool,
    },
    /// The trial model was not confirmed in time: the fallback runs again.
    Reverted {
        from: Slot,
        to: Slot,
    },
    /// The pending slot's file is not the recorded bundle: not activated.
    PendingRefused {
        slot: Slot,
    },
}

/// One slot as reported to management clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReport {
    pub slot: Slot,
    pub info: SlotInfo,
    pub active: bool,
    pub pending: bool,
    pub permanent: bool,
    /// Active and not on trial, or the fallback of a trial.
    pub confirmed: bool,
}

/// Refuses `info` when it is older than the highest confirmed version of
/// its model id.
fn check_not_older(table: &SlotTable, info: &SlotInfo) -> Result<(), UpgradeError> {
    let highest = table.highest_of(&info.model_id).map_err(StateError::from)?;
    let version: ImageVersion = info.version.parse().map_err(StateError::from)?;
    match highest {
        Some(h) if version < h => Err(UpgradeError::BadState(format!(
            "{} {} is older than the confirmed {}: refusing to bring it back",
            info.model_id, info.version, h
        ))),
        _ => Ok(()),
    }
}

fn sha256_of(path: &std::path::Path) -> Result<String, StateError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

impl StateDir {
    /// Verifies a completely uploaded bundle and stages it in the inactive
    /// slot, not active. Refused during a trial (the inactive slot holds the
    /// fallback).
    pub fn stage(
        &self,
        bytes: &[u8],
        form: ExecutionForm,
        installed: &str,
    ) -> Result<(Slot, SlotInfo), UpgradeError> {
        let _lock = self.lock()?;
        let mut table = self.table()?;
        Self::may_stage(&table)?;
        let (slot, info, _) = self.verify_for_inactive(&table, bytes, form, installed)?;
        // Verified: forget what the slot held before its file is replaced.
        if table.get(slot).is_some() || table.pending.is_some() {
            table.set(slot, None);
            table.pending = None;
            self.write_table(&table)?;
        }
        failpoint::hit("stage-forgotten");
        self.write_slot(slot, bytes)?;
        failpoint::hit("stage-slot-written");
        table.set(slot, Some(info.clone()));
        self.write_table(&table)?;
        failpoint::hit("stage-recorded");
        Ok((slot, info))
    }

    /// Whether an upload may start: not during a trial, whose fallback the
    /// inactive slot holds.
    pub fn may_upload(&self) -> Result<(), UpgradeError> {
        Self::may_stage(&self.table()?)
    }

    fn may_stage(table: &crate::state::SlotTable) -> Result<(), UpgradeError> {
        if table.trial.is_some() {
            return Err(UpgradeError::BadState(
                "the running model is on trial: confirm it (or let it revert) before uploading \
                 another"
                    .into(),
            ));
        }
        Ok(())
    }

    /// SMP image state write: `hash` names a slot's bundle (SHA-256);
    /// `permanent` false marks the inactive slot for test, true confirms
    /// (the running model, or the inactive one in advance). No hash with
    /// `permanent` confirms the running model.
    pub fn mark(&self, hash: Option<&[u8]>, permanent: bool) -> Result<(), UpgradeError> {
        let _lock = self.lock()?;
        let mut table = self.table()?;
        let target = match hash {
            None if permanent => table.active,
            None => {
                return Err(UpgradeError::BadState(
                    "test needs the hash of the image to test".into(),
                ))
            }
            Some(hash) => {
                let wanted = hex::encode(hash);
                let found = [Slot::A, Slot::B]
                    .into_iter()
                    .find(|&s| table.get(s).is_some_and(|i| i.bundle_sha256 == wanted));
                Some(found.ok_or(UpgradeError::NoSuchImage(wanted))?)
            }
        };
        let Some(slot) = target else {
            return Err(UpgradeError::BadState("no model is installed".into()));
        };
        if table.active == Some(slot) {
            // A trial model not loaded yet is confirmed once it loads: until
            // then its fallback stays (it may still fail its self-tests).
            if let Some(trial) = table.trial.as_mut().filter(|t| permanent && !t.loaded) {
                if !trial.confirm_on_load {
                    trial.confirm_on_load = true;
                    self.write_table(&table)?;
                }
                return Ok(());
            }
            if permanent && table.trial.is_some() {
                table.trial = None;
                if let Some(info) = table.get(slot).cloned() {
                    table.raise_highest(&info).map_err(StateError::from)?;
                }
                self.write_table(&table)?;
            }
            return Ok(());
        }
        // Anti-rollback: an older model left in the other slot (the one
        // replaced by a confirmed upgrade) cannot be brought back.
        if let Some(info) = table.get(slot) {
            check_not_older(&table, info)?;
        }
        if let Some(trial) = table.trial {
            let why = if trial.loaded {
                "the other slot holds the trial's fallback: confirm the running model first"
            } else {
                "the model on trial is still loading: confirm it once it runs"
            };
            return Err(UpgradeError::BadState(why.into()));
        }
        table.pending = Some(Pending { slot, permanent });
        self.write_table(&table)?;
        failpoint::hit("mark-written");
        Ok(())
    }

    /// An SMP reset: a reload, except while the trial that an earlier reset
    /// activated has not loaded yet. The service is loading it then, and the
    /// same reset sent again (a client whose answer was lost) must not count
    /// as a second, unconfirmed reload and revert the model it is loading.
    pub fn reset(&self) -> Result<Reloaded, UpgradeError> {
        {
            let _lock = self.lock()?;
            let table = self.table()?;
            if table.pending.is_none() && table.trial.as_ref().is_some_and(|t| !t.loaded) {
                return Ok(Reloaded::Unchanged);
            }
        }
        self.reload()
    }

    /// A reload (the service starting, or an SMP reset): activates a
    /// pending slot, or counts a reload of a trial model and reverts it
    /// when it was not confirmed in time.
    pub fn reload(&self) -> Result<Reloaded, UpgradeError> {
        let _lock = self.lock()?;
        let mut table = self.table()?;
        if let Some(p) = table.pending.take() {
            let recorded = table.get(p.slot).cloned();
            let intact = recorded.as_ref().map(|i| i.bundle_sha256.clone())
                == Some(sha256_of(&self.slot_path(p.slot))?);
            let current = recorded
                .as_ref()
                .is_some_and(|i| check_not_older(&table, i).is_ok());
            if !intact || !current {
                self.write_table(&table)?;
                return Ok(Reloaded::PendingRefused { slot: p.slot });
            }
            let previous = table.active.replace(p.slot);
            // Even a model confirmed in advance keeps its fallback until it
            // has loaded once (see `loaded`).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            table.trial = previous.map(|fallback| Trial {
                fallback,
                reloads: 0,
                confirm_on_load: p.permanent,
                started_unix: now,
                loaded: false,
            });
            if table.trial.is_none() {
                if let Some(info) = recorded {
                    table.raise_highest(&info).map_err(StateError::from)?;
                }
            }
            self.write_table(&table)?;
            failpoint::hit("reload-activated");
            return Ok(Reloaded::Activated {
                slot: p.slot,
                trial: table.trial.is_some(),
            });
        }
        let Some(mut trial) = table.trial else {
            return Ok(Reloaded::Unchanged);
        };
        trial.reloads = trial.reloads.saturating_add(1);
        if trial.reloads > UNCONFIRMED_RELOADS {
            let from = table.active.unwrap_or(trial.fallback.other());
            table.active = Some(trial.fallback);
            table.trial = None;
            self.write_table(&table)?;
            return Ok(Reloaded::Reverted {
                from,
                to: trial.fallback,
            });
        }
        table.trial = Some(trial);
        self.write_table(&table)?;
        Ok(Reloaded::Unchanged)
    }

    /// The active model loaded (tract, self-tests): a model confirmed in
    /// advance ends its trial here, one on test is recorded as running.
    pub fn loaded(&self) -> Result<(), UpgradeError> {
        let _lock = self.lock()?;
        let mut table = self.table()?;
        let Some(trial) = table.trial.as_mut() else {
            return Ok(());
        };
        if !trial.confirm_on_load {
            if !trial.loaded {
                trial.loaded = true;
                self.write_table(&table)?;
            }
            return Ok(());
        }
        table.trial = None;
        if let Some(info) = table.active.and_then(|s| table.get(s).cloned()) {
            table.raise_highest(&info).map_err(StateError::from)?;
        }
        self.write_table(&table)?;
        Ok(())
    }

    /// Reverts a trial that has run unconfirmed for `limit_seconds` by
    /// `now_unix`; the fallback slot when it did.
    pub fn expire_trial(
        &self,
        now_unix: u64,
        limit_seconds: u64,
    ) -> Result<Option<Slot>, UpgradeError> {
        let table = self.table()?;
        match table.trial {
            Some(t)
                if !t.confirm_on_load
                    && t.started_unix > 0
                    && now_unix.saturating_sub(t.started_unix) >= limit_seconds =>
            {
                self.revert()
            }
            _ => Ok(None),
        }
    }

    /// Reverts a trial at once (its model failed to load); `None` when no
    /// trial runs.
    pub fn revert(&self) -> Result<Option<Slot>, UpgradeError> {
        let _lock = self.lock()?;
        let mut table = self.table()?;
        let Some(trial) = table.trial.take() else {
            return Ok(None);
        };
        table.active = Some(trial.fallback);
        self.write_table(&table)?;
        Ok(Some(trial.fallback))
    }

    /// SMP image erase: empties the inactive slot, unless it is pending or
    /// the fallback of a trial.
    pub fn erase_inactive(&self) -> Result<(), UpgradeError> {
        let _lock = self.lock()?;
        let mut table = self.table()?;
        if table.trial.is_some() || table.pending.is_some() {
            return Err(UpgradeError::BadState(
                "the inactive slot is pending or a trial's fallback".into(),
            ));
        }
        let inactive = table.active.map_or(Slot::B, Slot::other);
        if table.get(inactive).is_some() {
            table.set(inactive, None);
            self.write_table(&table)?;
        }
        let path = self.slot_path(inactive);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e).into()),
            _ => Ok(()),
        }
    }

    /// Both slots, the active one first.
    /// The slots as management clients see them: "active" is the model the
    /// service runs. A trial model the service has not loaded yet is still
    /// pending (permanent when confirmed in advance), and its fallback is
    /// the one running; the running slot is listed first.
    pub fn report(&self) -> Result<Vec<SlotReport>, UpgradeError> {
        let table = self.table()?;
        let starting = table.trial.filter(|t| !t.loaded);
        let running = match (starting, table.active) {
            (Some(trial), Some(_)) => Some(trial.fallback),
            (_, active) => active,
        };
        let first = running.unwrap_or(Slot::A);
        Ok([first, first.other()]
            .into_iter()
            .filter_map(|slot| {
                let info = table.get(slot)?.clone();
                let active = running == Some(slot);
                let loading = starting.filter(|_| table.active == Some(slot));
                let pending = table.pending.filter(|p| p.slot == slot);
                Some(SlotReport {
                    slot,
                    info,
                    active,
                    pending: pending.is_some() || loading.is_some(),
                    permanent: pending.is_some_and(|p| p.permanent)
                        || loading.is_some_and(|t| t.confirm_on_load),
                    confirmed: if active {
                        table.trial.is_none() || starting.is_some()
                    } else {
                        table.trial.is_some_and(|t| t.fallback == slot) && starting.is_none()
                    },
                })
            })
            .collect())
    }
}
