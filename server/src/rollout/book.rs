//! The fleet's rollouts as sessions read them: a copy in memory ([`Book`]), which the serve loop
//! refreshes from the fleet database every [`EVALUATE`], evaluating each active rollout (its health
//! thresholds, its automatic widening) and writing back what changed, with the database's optimistic
//! version so that two servers on one database never overwrite each other's step.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{DeviceView, Population, Progress, Rollout, Status};
use crate::fleet::{CheckIn, Fleet, FleetError};
use crate::repo::{Repo, RepoError};
use crate::session::Outcome;

/// How often the serve loop refreshes and evaluates the rollouts.
pub const EVALUATE: Duration = Duration::from_secs(1);

/// Why the rollouts cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The fleet database failed.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// `groups.json` cannot be read (a group rollout needs it).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A stored rollout body is not a rollout.
    #[error("rollout `{id}` in the database is unreadable: {why}")]
    Body {
        /// Its id.
        id: String,
        /// Why.
        why: String,
    },
    /// No rollout by that id.
    #[error("no rollout `{0}`")]
    Unknown(String),
    /// A rollout by that id exists already.
    #[error("rollout `{0}` exists already; give another --id")]
    Exists(String),
    /// Another server changed the rollout at the same time.
    #[error("rollout `{0}` was changed by another server meanwhile; try again")]
    Raced(String),
}

/// What the book holds: the rollouts, oldest first, and the groups of `groups.json`.
#[derive(Debug, Default)]
struct Snapshot {
    rollouts: Vec<(Rollout, i64)>,
    groups: Vec<(String, Vec<u64>)>,
}

/// The fleet's rollouts in memory.
#[derive(Debug, Default)]
pub struct Book {
    current: RwLock<Arc<Snapshot>>,
}

/// The rollouts stored in `fleet`, oldest first, with their versions.
pub fn load(fleet: &Fleet) -> Result<Vec<(Rollout, i64)>, BookError> {
    let mut out = Vec::new();
    for stored in fleet.rollouts()? {
        let rollout: Rollout =
            serde_json::from_value(stored.body).map_err(|e| BookError::Body {
                id: stored.id.clone(),
                why: e.to_string(),
            })?;
        out.push((rollout, stored.version));
    }
    out.sort_by(|(a, _), (b, _)| (a.started, &a.id).cmp(&(b.started, &b.id)));
    Ok(out)
}

/// Writes `rollout`: a new one (`version` None, refused if its id exists) or an update of the stored
/// `version` (refused if another writer changed it since).
pub fn save(fleet: &Fleet, rollout: &Rollout, version: Option<i64>) -> Result<(), BookError> {
    let body = serde_json::to_value(rollout).map_err(|e| BookError::Body {
        id: rollout.id.clone(),
        why: e.to_string(),
    })?;
    if fleet.put_rollout(&rollout.id, &body, version)? {
        return Ok(());
    }
    Err(match version {
        None => BookError::Exists(rollout.id.clone()),
        Some(_) => BookError::Raced(rollout.id.clone()),
    })
}

/// Changes the stored rollout `id` with `change` (which says whether it changed anything) and
/// writes it back; returns it.
pub fn update(
    fleet: &Fleet,
    id: &str,
    change: impl FnOnce(&mut Rollout) -> bool,
) -> Result<Rollout, BookError> {
    let (mut rollout, version) = load(fleet)?
        .into_iter()
        .find(|(r, _)| r.id == id)
        .ok_or_else(|| BookError::Unknown(id.to_owned()))?;
    if change(&mut rollout) {
        save(fleet, &rollout, Some(version))?;
    }
    Ok(rollout)
}

/// What rollouts need to know of one device, from its last check-in and the groups.
pub fn view(record: &CheckIn, groups: &[(String, Vec<u64>)]) -> DeviceView {
    let rolled_back = record.held.is_some() && !record.rollbacks.is_empty();
    let on_it = record.outcome == Outcome::NoUpdate.to_string();
    let holds = !rolled_back && (on_it || record.outcome == Outcome::Updated.to_string());
    DeviceView {
        id: record.device,
        groups: groups_of(record.device, groups),
        served: record.release.clone(),
        holds,
        confirmed: holds && on_it && record.trial != Some(true),
        rolled_back,
        failed: record.outcome.starts_with("failed"),
    }
}

/// `device` as rollouts see it without its check-in: its id and groups.
fn unknown(device: u64, groups: &[(String, Vec<u64>)]) -> DeviceView {
    DeviceView {
        id: device,
        groups: groups_of(device, groups),
        ..DeviceView::default()
    }
}

fn groups_of(device: u64, groups: &[(String, Vec<u64>)]) -> Vec<String> {
    groups
        .iter()
        .filter(|(_, ids)| ids.contains(&device))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every rollout with its progress, oldest first, as stored (nothing evaluated or written). Blocking.
pub fn status(fleet: &Fleet, repo: &Repo) -> Result<Vec<(Rollout, Progress)>, BookError> {
    let rollouts = load(fleet)?;
    if rollouts.is_empty() {
        return Ok(Vec::new());
    }
    let groups = group_members(&rollouts, repo)?;
    let devices: Vec<DeviceView> = fleet.list()?.iter().map(|r| view(r, &groups)).collect();
    Ok(rollouts
        .into_iter()
        .map(|(r, _)| {
            let p = r.progress(&devices);
            (r, p)
        })
        .collect())
}

/// The groups of `groups.json` when a rollout's population is a group (none read otherwise).
fn group_members(
    rollouts: &[(Rollout, i64)],
    repo: &Repo,
) -> Result<Vec<(String, Vec<u64>)>, BookError> {
    if rollouts
        .iter()
        .any(|(r, _)| matches!(r.population, Population::Group(_)))
    {
        Ok(repo.group_members()?)
    } else {
        Ok(Vec::new())
    }
}

/// Reads the rollouts, evaluates the active ones against the fleet's devices and writes back those
/// that changed (halted, widened, done). The fleet's devices are read only when a rollout is active.
fn evaluate(fleet: &Fleet, repo: &Repo) -> Result<Snapshot, BookError> {
    let mut rollouts = load(fleet)?;
    let groups = group_members(&rollouts, repo)?;
    if rollouts.iter().any(|(r, _)| r.status == Status::Active) {
        let devices: Vec<DeviceView> = fleet.list()?.iter().map(|r| view(r, &groups)).collect();
        for (rollout, version) in &mut rollouts {
            if !rollout.evaluate(&devices).0 {
                continue;
            }
            tracing::info!(rollout = %rollout.id, status = %rollout.status, step = rollout.step, "rollout changed");
            match save(fleet, rollout, Some(*version)) {
                Ok(()) => *version += 1,
                // Another server evaluated it first: its write stands; read it next round.
                Err(BookError::Raced(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Snapshot { rollouts, groups })
}

impl Book {
    /// Reads the rollouts from `fleet`, evaluates the active ones and keeps the result for the
    /// sessions. Blocking.
    pub fn refresh(&self, fleet: &Fleet, repo: &Repo) -> Result<(), BookError> {
        let snapshot = evaluate(fleet, repo)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether deciding for `device` needs its last check-in: only when a halted rollout's cohort
    /// holds it (a halt keeps serving who already holds the release).
    pub fn needs_record(&self, device: u64) -> bool {
        let s = self.snapshot();
        let bare = unknown(device, &s.groups);
        s.rollouts
            .iter()
            .any(|(r, _)| matches!(r.status, Status::Halted(_)) && r.in_cohort(&bare))
    }

    /// The commit the newest rollout serving `device` gives it, if any; `record` is its last
    /// check-in (needed only when [`Book::needs_record`] says so).
    pub fn commit_for(&self, device: u64, record: Option<&CheckIn>) -> Option<String> {
        let s = self.snapshot();
        if s.rollouts.is_empty() {
            return None;
        }
        let view = match record {
            Some(r) => view(r, &s.groups),
            None => unknown(device, &s.groups),
        };
        super::release_for(s.rollouts.iter().map(|(r, _)| r), &view).map(|r| r.commit.clone())
    }
}
