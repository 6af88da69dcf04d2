//! Staged rollout: a release given to a cohort of the fleet first, widened in steps, halted by itself
//! when the cohort fails.
//!
//! A [`Rollout`] names a release (a git revision), a *population* ([`Population`]: every device, a
//! list of ids, or a group of `groups.json`) and percentage steps (e.g. 5, 25, 100). At step `k` the
//! cohort is the devices of the population whose [`bucket`] (a stable hash of the rollout's id and the
//! device id, in basis points) is below `steps[k]` percent: a device in the 5 % cohort stays in the
//! 25 % one, and another rollout picks another 5 %. Devices outside the cohort keep the release they
//! have (their pin).
//!
//! Health ([`Rollout::evaluate`]), over the cohort's devices that the server has heard from: a
//! rollback of the rollout's release, or a failed session while being served it, counts against it.
//! When rollbacks reach `max_rollbacks` or failures reach `max_failures` the rollout halts: no device
//! is newly given the release, and the devices that already run it keep it (a halt never pushes a
//! downgrade; the trial boots roll back the devices it hurts). With `auto`, a step whose every cohort
//! device has confirmed the release (a check-in on it, off trial) widens to the next; otherwise
//! `rota-server rollout widen` does. The last step done, the rollout is `done` and keeps giving its
//! release to its population.
//!
//! The rules here are pure; [`book`] keeps the fleet's rollouts (in the fleet database, each as its
//! JSON body) in memory for the sessions, and evaluates them.

pub mod book;

pub use book::{Book, BookError};

use serde::{Deserialize, Serialize};

/// Most steps a rollout may have.
pub const MAX_STEPS: usize = 10;
/// Longest rollout id (letters, digits, `-`, `_`, `.`).
pub const MAX_ID: usize = 64;

/// Which devices a rollout may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Population {
    /// Every device of the fleet.
    All,
    /// These devices.
    Devices(Vec<u64>),
    /// The devices of this group of `groups.json`.
    Group(String),
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum Status {
    /// Giving its release to the current step's cohort.
    Active,
    /// Stopped, by the operator or by its health thresholds: why.
    Halted(String),
    /// Its last step is done.
    Done,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Active => f.write_str("active"),
            Status::Halted(why) => write!(f, "halted: {why}"),
            Status::Done => f.write_str("done"),
        }
    }
}

/// A staged rollout (its JSON form is what the fleet database stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Its id (unique in the fleet).
    pub id: String,
    /// The release as the operator named it (a branch, tag or commit).
    pub release: String,
    /// The commit it named when the rollout started: what the cohort is served (a branch that
    /// moves later does not change it).
    pub commit: String,
    /// The release's name as devices served that commit are recorded with (`Release::name`).
    pub name: String,
    /// Which devices it may reach.
    pub population: Population,
    /// The cohort sizes, in percent of the population, strictly increasing, each 1 to 100.
    pub steps: Vec<u8>,
    /// The current step (an index into `steps`).
    pub step: usize,
    /// Widen by itself once the cohort has confirmed.
    pub auto: bool,
    /// Halt when this many cohort devices rolled the release back.
    pub max_rollbacks: u32,
    /// Halt when this many cohort devices failed a session while being served it.
    pub max_failures: u32,
    /// Where it stands.
    pub status: Status,
    /// When it started (Unix seconds).
    pub started: u64,
}

/// A rollout that cannot be started as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// The id is empty, too long or holds other characters.
    #[error("rollout id `{0}`: 1 to {MAX_ID} of a-z, A-Z, 0-9, `-`, `_`, `.`")]
    Id(String),
    /// The steps are not 1 to 10 increasing percentages from 1 to 100.
    #[error("steps {0:?}: 1 to {MAX_STEPS} strictly increasing percentages from 1 to 100")]
    Steps(Vec<u8>),
    /// A device list that names no device.
    #[error("the device list is empty")]
    NoDevices,
    /// The release name is empty.
    #[error("the release is empty: name a branch, tag or commit")]
    Release,
    /// A halt threshold of 0 would halt before anything happened.
    #[error("--{0} must be at least 1")]
    Threshold(&'static str),
}

/// What the fleet knows of one device, as far as rollouts care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceView {
    /// The device id.
    pub id: u64,
    /// The groups of `groups.json` it is in.
    pub groups: Vec<String>,
    /// The release (its name) the server last served it.
    pub served: Option<String>,
    /// It holds the release it was served (installed, or already up to date with it).
    pub holds: bool,
    /// It holds it and is off trial.
    pub confirmed: bool,
    /// It rolled back the release it was served.
    pub rolled_back: bool,
    /// Its last session, while being served that release, failed.
    pub failed: bool,
}

/// The progress of a rollout's current step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Known devices in the current cohort.
    pub cohort: usize,
    /// Of them, hold the release (confirmed ones included).
    pub updated: usize,
    /// Confirmed it.
    pub confirmed: usize,
    /// Rolled it back.
    pub rolled_back: usize,
    /// Failed a session on it.
    pub failed: usize,
}

/// `device`'s place in `rollout`'s order, in basis points (0..10,000): the first eight bytes of
/// SHA-256 over the rollout id, a NUL and the device id (decimal), modulo 10,000.
pub fn bucket(rollout: &str, device: u64) -> u32 {
    let d = rota_wire::sha256(format!("{rollout}\0{device}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(first) % 10_000) as u32
}

impl Rollout {
    /// A new active rollout at its first step, checked.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        release: &str,
        resolved: &crate::repo::Release,
        population: Population,
        steps: Vec<u8>,
        auto: bool,
        max_rollbacks: u32,
        max_failures: u32,
        now: u64,
    ) -> Result<Rollout, RolloutError> {
        let id_ok = !id.is_empty()
            && id.len() <= MAX_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            return Err(RolloutError::Id(id.to_owned()));
        }
        if release.is_empty() {
            return Err(RolloutError::Release);
        }
        let increasing = steps.windows(2).all(|w| w[0] < w[1]);
        if steps.is_empty()
            || steps.len() > MAX_STEPS
            || !increasing
            || steps.iter().any(|&s| s == 0 || s > 100)
        {
            return Err(RolloutError::Steps(steps));
        }
        if population == Population::Devices(Vec::new()) {
            return Err(RolloutError::NoDevices);
        }
        if max_rollbacks == 0 {
            return Err(RolloutError::Threshold("max-rollbacks"));
        }
        if max_failures == 0 {
            return Err(RolloutError::Threshold("max-failures"));
        }
        Ok(Rollout {
            id: id.to_owned(),
            release: release.to_owned(),
            commit: resolved
                .commit
                .clone()
                .unwrap_or_else(|| release.to_owned()),
            name: resolved.name.clone(),
            population,
            steps,
            step: 0,
            auto,
            max_rollbacks,
            max_failures,
            status: Status::Active,
            started: now,
        })
    }

    /// The current step's cohort size, in percent.
    pub fn percent(&self) -> u8 {
        self.steps[self.step.min(self.steps.len() - 1)]
    }

    /// Whether `device` was last served this rollout's release.
    fn gave(&self, device: &DeviceView) -> bool {
        device.served.as_deref() == Some(self.name.as_str())
    }

    /// Whether `device` is in the population.
    pub fn reaches(&self, device: &DeviceView) -> bool {
        match &self.population {
            Population::All => true,
            Population::Devices(ids) => ids.contains(&device.id),
            Population::Group(g) => device.groups.iter().any(|d| d == g),
        }
    }

    /// Whether `device` is in the current step's cohort.
    pub fn in_cohort(&self, device: &DeviceView) -> bool {
        self.reaches(device) && bucket(&self.id, device.id) < u32::from(self.percent()) * 100
    }

    /// Whether this rollout gives its release to `device` now: an active or done rollout to its
    /// cohort; a halted one only to the devices it already served that kept it.
    pub fn serves(&self, device: &DeviceView) -> bool {
        if !self.in_cohort(device) {
            return false;
        }
        match self.status {
            Status::Active | Status::Done => true,
            Status::Halted(_) => self.gave(device) && device.holds && !device.rolled_back,
        }
    }

    /// The progress of the current step over `devices` (the fleet).
    pub fn progress<'a>(&self, devices: impl IntoIterator<Item = &'a DeviceView>) -> Progress {
        let mut p = Progress::default();
        for d in devices.into_iter().filter(|d| self.in_cohort(d)) {
            p.cohort += 1;
            if !self.gave(d) {
                continue;
            }
            p.updated += usize::from(d.holds && !d.rolled_back);
            p.confirmed += usize::from(d.confirmed && !d.rolled_back);
            p.rolled_back += usize::from(d.rolled_back);
            p.failed += usize::from(d.failed && !d.rolled_back);
        }
        p
    }

    /// Applies the health thresholds and, with `auto`, the widening, to the fleet `devices`: returns
    /// whether the rollout changed (halted, widened or done) and its progress after that.
    pub fn evaluate(&mut self, devices: &[DeviceView]) -> (bool, Progress) {
        let p = self.progress(devices);
        if self.status != Status::Active {
            return (false, p);
        }
        if p.rolled_back as u64 >= u64::from(self.max_rollbacks) {
            self.status = Status::Halted(format!(
                "{} of {} devices rolled {} back (threshold {})",
                p.rolled_back, p.cohort, self.release, self.max_rollbacks
            ));
            return (true, p);
        }
        if p.failed as u64 >= u64::from(self.max_failures) {
            self.status = Status::Halted(format!(
                "{} of {} devices failed a session on {} (threshold {})",
                p.failed, p.cohort, self.release, self.max_failures
            ));
            return (true, p);
        }
        if self.auto && p.cohort > 0 && p.confirmed == p.cohort {
            return (self.widen(), self.progress(devices));
        }
        (false, p)
    }

    /// Widens to the next step (or marks the rollout done after its last); returns whether it changed.
    /// A halted rollout is not widened.
    pub fn widen(&mut self) -> bool {
        if self.status != Status::Active {
            return false;
        }
        if self.step + 1 < self.steps.len() {
            self.step += 1;
        } else {
            self.status = Status::Done;
        }
        true
    }

    /// `5% -> 25% -> [100%]` with the current step in brackets, and the population.
    pub fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == self.step {
                    format!("[{s}%]")
                } else {
                    format!("{s}%")
                }
            })
            .collect();
        let of = match &self.population {
            Population::All => "the fleet".to_owned(),
            Population::Devices(ids) => format!("{} listed devices", ids.len()),
            Population::Group(g) => format!("group {g}"),
        };
        format!("{} of {of}", steps.join(" -> "))
    }
}

/// The newest rollout serving `device`, if any (`rollouts` oldest first): the release it gets.
pub fn release_for<'a>(
    rollouts: impl DoubleEndedIterator<Item = &'a Rollout>,
    device: &DeviceView,
) -> Option<&'a Rollout> {
    rollouts.rev().find(|r| r.serves(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(steps: &[u8]) -> Rollout {
        Rollout::new(
            "r1",
            "v2",
            &v2(),
            Population::All,
            steps.to_vec(),
            true,
            2,
            3,
            0,
        )
        .unwrap()
    }

    fn v2() -> crate::repo::Release {
        crate::repo::Release {
            name: "v2".into(),
            commit: Some("c0ffee".into()),
        }
    }

    fn fleet(n: u64) -> Vec<DeviceView> {
        (1..=n)
            .map(|id| DeviceView {
                id,
                ..DeviceView::default()
            })
            .collect()
    }

    #[test]
    fn cohorts_are_stable_nested_and_close_to_their_percentage() {
        let r = rollout(&[5, 25, 100]);
        let devices = fleet(10_000);
        let mut widened = r.clone();
        let at5: Vec<u64> = devices
            .iter()
            .filter(|d| r.in_cohort(d))
            .map(|d| d.id)
            .collect();
        widened.widen();
        let at25: Vec<u64> = devices
            .iter()
            .filter(|d| widened.in_cohort(d))
            .map(|d| d.id)
            .collect();
        assert!((400..600).contains(&at5.len()), "{}", at5.len());
        assert!((2_300..2_700).contains(&at25.len()), "{}", at25.len());
        assert!(at5.iter().all(|id| at25.contains(id)), "5% inside 25%");
        // Another rollout id picks another 5%.
        let other = Rollout {
            id: "r2".into(),
            ..r.clone()
        };
        let other5 = devices.iter().filter(|d| other.in_cohort(d)).count();
        let both = devices
            .iter()
            .filter(|d| r.in_cohort(d) && other.in_cohort(d))
            .count();
        assert!(both < other5 / 2, "{both} of {other5}");
        assert_eq!(bucket("r1", 7), bucket("r1", 7));
    }

    #[test]
    fn bad_rollouts_are_refused_naming_the_field() {
        let new = |id: &str, rel: &str, pop, steps: &[u8], rb, f| {
            Rollout::new(id, rel, &v2(), pop, steps.to_vec(), false, rb, f, 0)
        };
        assert_eq!(
            new("a b", "v2", Population::All, &[5], 1, 1),
            Err(RolloutError::Id("a b".into()))
        );
        assert_eq!(
            new("", "v2", Population::All, &[5], 1, 1),
            Err(RolloutError::Id(String::new()))
        );
        assert_eq!(
            new("r", "", Population::All, &[5], 1, 1),
            Err(RolloutError::Release)
        );
        for steps in [&[][..], &[25, 5], &[5, 5], &[0, 5], &[5, 101]] {
            assert_eq!(
                new("r", "v2", Population::All, steps, 1, 1),
                Err(RolloutError::Steps(steps.to_vec()))
            );
        }
        assert_eq!(
            new("r", "v2", Population::Devices(vec![]), &[5], 1, 1),
            Err(RolloutError::NoDevices)
        );
        assert_eq!(
            new("r", "v2", Population::All, &[5], 0, 1),
            Err(RolloutError::Threshold("max-rollbacks"))
        );
        assert_eq!(
            new("r", "v2", Population::All, &[5], 1, 0),
            Err(RolloutError::Threshold("max-failures"))
        );
    }

    #[test]
    fn a_confirmed_cohort_widens_by_itself_to_done() {
        let mut r = Rollout::new(
            "r1",
            "v2",
            &v2(),
            Population::Devices((1..=20).collect()),
            vec![50, 100],
            true,
            1,
            1,
            0,
        )
        .unwrap();
        let mut devices = fleet(30);
        // Nobody confirmed yet: no change.
        assert!(!r.evaluate(&devices).0);
        for d in devices.iter_mut().filter(|d| r.in_cohort(d)) {
            d.served = Some("v2".into());
            d.holds = true;
            d.confirmed = true;
        }
        let before = r.progress(&devices);
        assert!(before.cohort > 0 && before.confirmed == before.cohort);
        assert!(r.evaluate(&devices).0);
        assert_eq!((r.step, &r.status), (1, &Status::Active));
        // At 100 % the whole population (20 devices, not the other 10) is the cohort.
        assert_eq!(r.progress(&devices).cohort, 20);
        for d in devices.iter_mut().filter(|d| d.id <= 20) {
            d.served = Some("v2".into());
            d.holds = true;
            d.confirmed = true;
        }
        assert!(r.evaluate(&devices).0);
        assert_eq!(r.status, Status::Done);
        assert!(r.serves(&devices[0]) && !r.serves(&devices[25]));
    }

    #[test]
    fn rollbacks_or_failures_halt_it_and_a_halt_serves_only_who_kept_it() {
        let mut r = rollout(&[100]);
        let mut devices = fleet(4);
        for d in &mut devices {
            d.served = Some("v2".into());
            d.holds = true;
        }
        devices[0].rolled_back = true;
        assert!(!r.evaluate(&devices).0, "1 rollback < threshold 2");
        devices[1].rolled_back = true;
        assert!(r.evaluate(&devices).0);
        assert!(
            matches!(&r.status, Status::Halted(why) if why.contains("2 of 4 devices rolled v2 back"))
        );
        assert!(!r.widen(), "a halted rollout is not widened");
        // Who kept it keeps it; who rolled it back and who never had it get nothing from it.
        assert!(r.serves(&devices[2]));
        assert!(!r.serves(&devices[0]));
        let newcomer = DeviceView {
            id: 99,
            ..DeviceView::default()
        };
        assert!(!r.serves(&newcomer));

        let mut r = rollout(&[100]);
        for d in &mut devices {
            d.rolled_back = false;
            d.failed = true;
        }
        assert!(r.evaluate(&devices).0);
        assert!(matches!(&r.status, Status::Halted(why) if why.contains("failed a session")));
    }

    #[test]
    fn groups_and_the_newest_rollout_decide() {
        let old =
            Rollout::new("a", "v2", &v2(), Population::All, vec![100], false, 1, 1, 0).unwrap();
        let new = Rollout::new(
            "b",
            "v3",
            &v2(),
            Population::Group("canary".into()),
            vec![100],
            false,
            1,
            1,
            1,
        )
        .unwrap();
        let plain = DeviceView {
            id: 1,
            ..DeviceView::default()
        };
        let canary = DeviceView {
            id: 2,
            groups: vec!["canary".into()],
            ..DeviceView::default()
        };
        let all = [old, new];
        assert_eq!(
            release_for(all.iter(), &plain).map(|r| r.id.as_str()),
            Some("a")
        );
        assert_eq!(
            release_for(all.iter(), &canary).map(|r| r.id.as_str()),
            Some("b")
        );
        assert_eq!(all[1].describe(), "[100%] of group canary");
        assert_eq!(
            rollout(&[5, 25, 100]).describe(),
            "[5%] -> 25% -> 100% of the fleet"
        );
    }
}
