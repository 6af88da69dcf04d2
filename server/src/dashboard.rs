//! The dashboard's data: [`FleetSource`] answers `rota-dashboard`'s [`Source`] from the fleet
//! database and the rollouts (the page and its JSON API are the `rota-dashboard` crate's).

use rota_dashboard::{
    Boot, Device, DeviceHistory, FileVersion, Phase, Progress, Rollbacks, Rollout, Source,
    SourceError,
};

use crate::fleet::{self, CheckIn, Fleet, HeapRecord};
use crate::plan_v2::residue_phase;
use crate::repo::Repo;
use crate::rollout::book;

/// Boots of one device's history the dashboard shows (the newest).
pub const HISTORY: usize = 100;

/// The fleet database and the repository, as the dashboard reads them.
pub struct FleetSource {
    fleet: Fleet,
    repo: Repo,
}

impl FleetSource {
    /// The dashboard's view of `fleet` (and of `repo`, for rollouts to groups).
    pub fn new(fleet: Fleet, repo: Repo) -> Self {
        FleetSource { fleet, repo }
    }
}

fn failed(e: impl std::fmt::Display) -> SourceError {
    SourceError(e.to_string())
}

fn device(r: &CheckIn) -> Device {
    Device {
        id: r.device,
        protocol: r.protocol,
        release: r.release.clone(),
        files: r
            .files
            .iter()
            .map(|f| FileVersion {
                name: f.name.clone(),
                version: f.version_label(),
            })
            .collect(),
        last_check_in: r.time,
        peer: r.peer.clone(),
        outcome: r.outcome.clone(),
        rollbacks: Rollbacks {
            count: r.rollbacks.len() as u32,
            last: r.rollbacks.last().map(fleet::RollbackRecord::describe),
        },
        signed: r.signed,
        security_version: r.security_version,
        state: r.state.clone(),
    }
}

/// A heap report as the dashboard's phases: each phase's peaks, the residue as the heap in use
/// after the last one.
fn phases(heap: &[HeapRecord]) -> Vec<Phase> {
    let residue = heap
        .iter()
        .find(|h| h.phase == residue_phase())
        .map_or(0, |h| h.used);
    heap.iter()
        .filter(|h| h.phase != residue_phase())
        .map(|h| Phase {
            phase: h.phase,
            name: rota_abi::rollback::phase_name(h.phase).to_owned(),
            heap_peak: h.peak,
            stack_peak: h.stack_peak,
            heap_used: residue,
        })
        .collect()
}

impl Source for FleetSource {
    fn devices(&self) -> Result<Vec<Device>, SourceError> {
        Ok(self
            .fleet
            .list()
            .map_err(failed)?
            .iter()
            .map(device)
            .collect())
    }

    fn device(&self, id: u64) -> Result<Option<DeviceHistory>, SourceError> {
        let Some(record) = self.fleet.load(id).map_err(failed)? else {
            return Ok(None);
        };
        let boots = self
            .fleet
            .history(id, HISTORY)
            .map_err(failed)?
            .into_iter()
            .map(|b| Boot {
                time: b.time,
                nonce: b.nonce,
                release: b.release,
                outcome: b.outcome,
                phases: phases(&b.heap),
            })
            .collect();
        Ok(Some(DeviceHistory {
            device: device(&record),
            boots,
        }))
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, SourceError> {
        Ok(book::status(&self.fleet, &self.repo)
            .map_err(failed)?
            .into_iter()
            .map(|(r, p)| Rollout {
                id: r.id.clone(),
                release: r.name.clone(),
                cohort: r.describe(),
                steps: r.steps.clone(),
                current_step: r.step as u32,
                status: r.status.to_string(),
                progress: Progress {
                    cohort: p.cohort as u32,
                    updated: p.updated as u32,
                    confirmed: p.confirmed as u32,
                    rolled_back: p.rolled_back as u32,
                    failed: p.failed as u32,
                },
            })
            .collect())
    }
}
