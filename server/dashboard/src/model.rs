//! What the dashboard shows: the types its JSON API returns, and the [`Source`] they come from.
//!
//! Each type derives `Serialize` (the API's JSON) and `utoipa::ToSchema` (the OpenAPI document's
//! schema of that JSON), so the document is generated from the very types the API returns.

use serde::Serialize;
use utoipa::ToSchema;

/// One file a device holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FileVersion {
    /// Its name, e.g. `app`.
    pub name: String,
    /// Its version as the server gave it to the device (a number for luaOTA, a content version for rota).
    pub version: String,
}

/// The rollbacks a device reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rollbacks {
    /// How many.
    pub count: u32,
    /// The last one, in the device's words: `generation 2 -> 1 (app panicked)`.
    pub last: Option<String>,
}

/// A device of the fleet, as of its last check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Device {
    /// The device id.
    pub id: u64,
    /// Its protocol: 1 (NodeMCU luaOTA) or 2 (rota).
    #[schema(minimum = 1, maximum = 2)]
    pub protocol: u8,
    /// The release it holds, by its human name (a tag or a short commit); none when it holds no known release.
    pub release: Option<String>,
    /// The files it reported.
    pub files: Vec<FileVersion>,
    /// Its last check-in, in seconds since the Unix epoch.
    pub last_check_in: u64,
    /// Who connected (address and port).
    pub peer: String,
    /// How its last check-in ended: `no-update`, `updated`, `updating`, `held` or `failed: <why>`.
    pub outcome: String,
    /// The rollbacks it reported.
    pub rollbacks: Rollbacks,
    /// Whether it holds release keys, so commits signed releases only (rota devices).
    pub signed: Option<bool>,
    /// The highest security version it has committed (rota devices).
    pub security_version: Option<u32>,
    /// Its state: the installed-files digest it reported (hex), when it reported one.
    pub state: Option<String>,
}

/// One boot phase's memory figures, as a device reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Phase {
    /// The phase number.
    pub phase: u8,
    /// Its name: `init`, `tick`, `provision` or `app`.
    pub name: String,
    /// Peak heap, in bytes.
    pub heap_peak: u32,
    /// Peak stack, in bytes.
    pub stack_peak: u32,
    /// Heap in use at the phase's end, in bytes.
    pub heap_used: u32,
}

/// One check-in of a device (one boot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Boot {
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// The device's nonce (boot counter) of this check-in (rota devices).
    pub nonce: Option<u32>,
    /// The release it held, by its human name.
    pub release: Option<String>,
    /// How the check-in ended, as [`Device::outcome`].
    pub outcome: String,
    /// The memory figures of the boot's phases (rota devices), in phase order.
    pub phases: Vec<Phase>,
}

/// A device and its check-ins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceHistory {
    /// The device, as of its last check-in.
    pub device: Device,
    /// One per check-in, oldest first.
    pub boots: Vec<Boot>,
}

/// How far a rollout has gone in its cohort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Progress {
    /// Devices in the cohort.
    pub cohort: u32,
    /// Devices that installed the release and hold it now, the confirmed ones included.
    pub updated: u32,
    /// Of the updated, those that confirmed it (booted it and kept it).
    pub confirmed: u32,
    /// Devices that installed it and rolled it back (not counted as updated).
    pub rolled_back: u32,
    /// Devices whose update failed (not counted as updated).
    pub failed: u32,
}

/// A staged rollout of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rollout {
    /// The rollout id (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// The release it rolls out, by its human name.
    pub release: String,
    /// Its cohort, described: a list of devices, a group, or a percentage of the fleet.
    pub cohort: String,
    /// Its steps, as percentages of the cohort, ascending: e.g. 5, 25, 100.
    pub steps: Vec<u8>,
    /// The step it is at: an index into `steps`.
    pub current_step: u32,
    /// `active`, `halted: <reason>` or `done`.
    pub status: String,
    /// How far it has gone.
    pub progress: Progress,
}

/// Why a [`Source`] could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device state: {0}")]
pub struct SourceError(pub String);

/// Where the dashboard's data comes from: rota-server implements it over its device database.
///
/// The methods are synchronous (a database read); the dashboard calls them through
/// `tokio::task::spawn_blocking`, never on the async runtime's threads.
pub trait Source: Send + Sync + 'static {
    /// Every device, each as of its last check-in.
    fn devices(&self) -> Result<Vec<Device>, SourceError>;
    /// One device and its check-ins, or `None` for a device the fleet does not know.
    fn device(&self, id: u64) -> Result<Option<DeviceHistory>, SourceError>;
    /// Every rollout.
    fn rollouts(&self) -> Result<Vec<Rollout>, SourceError>;
}
