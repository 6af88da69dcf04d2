//! Staged rollouts against the real server over TCP, with a real git repository: the cohort (and
//! only the cohort) gets the release, the rest keep theirs; a confirmed cohort widens by itself to
//! the whole population; a rollback halts the rollout, after which nobody new gets the release and
//! who holds it keeps it (no downgrade).

use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_server::rollout::{book, DeviceView, Population, Rollout, Status};
use rota_server::session::Outcome;
use rota_wire::msg::Rollback;

use crate::common::{git, Fixture, Running};

const SECRET: &str = "rollout secret";
const DEVICES: u32 = 40;

/// A repository with releases `v1` and `v2` (tags), every device's inventory pinned to `v1`.
fn fleet() -> Fixture {
    let fx = Fixture::empty();
    git(fx.path(), &["init", "-q", "-b", "main"]);
    for tag in ["v1", "v2"] {
        fx.write("data.txt", format!("data of {tag}").as_bytes());
        for id in 1..=DEVICES {
            let json =
                serde_json::json!({ "files": ["data.txt"], "secret": SECRET, "release": "v1" });
            fx.write(&format!("ESP-{id}.json"), json.to_string().as_bytes());
        }
        git(fx.path(), &["add", "-A"]);
        git(fx.path(), &["commit", "-q", "-m", tag]);
        git(fx.path(), &["tag", tag]);
    }
    fx
}

fn data(device: &RotaDevice) -> String {
    String::from_utf8_lossy(device.file("data.txt").unwrap_or(b"<none>")).into_owned()
}

/// Checks `device` in and returns how the server saw it.
async fn check_in(server: &mut Running, device: &mut RotaDevice) -> Outcome {
    let check = device.check_in_tcp(server.addr).await.unwrap();
    let report = server.report().await;
    assert!(
        matches!(check.outcome, V2Outcome::Committed(_) | V2Outcome::NoUpdate),
        "device {}: {check:?} {report:?}",
        device.id
    );
    report.outcome.expect("a session that succeeds")
}

fn start(server: &Running, id: &str, population: Population, steps: &[u8]) {
    let resolved = server.server.repo().resolve_release("v2").unwrap();
    assert_eq!(resolved.name, "v2");
    let rollout = Rollout::new(
        id,
        "v2",
        &resolved,
        population,
        steps.to_vec(),
        true,
        1,
        3,
        rota_server::fleet::now(),
    )
    .unwrap();
    book::save(server.server.fleet(), &rollout, None).unwrap();
    server.server.refresh_rollouts().unwrap();
}

fn stored(server: &Running, id: &str) -> Rollout {
    book::load(server.server.fleet())
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .find(|r| r.id == id)
        .expect("the rollout is stored")
}

#[tokio::test]
async fn the_cohort_gets_the_release_the_rest_keep_theirs_and_a_confirmed_cohort_widens() {
    let fx = fleet();
    let mut server = fx.start().await;
    let mut devices: Vec<RotaDevice> = (1..=DEVICES)
        .map(|id| RotaDevice::new(id, SECRET.as_bytes()))
        .collect();
    for d in &mut devices {
        assert_eq!(check_in(&mut server, d).await, Outcome::Updated);
        assert_eq!(data(d), "data of v1");
    }

    start(&server, "wave", Population::All, &[25, 100]);
    let rollout = stored(&server, "wave");
    let in_cohort = |id: u32| {
        rollout.in_cohort(&DeviceView {
            id: u64::from(id),
            ..DeviceView::default()
        })
    };
    let cohort = (1..=DEVICES).filter(|&id| in_cohort(id)).count();
    assert!((2..DEVICES as usize / 2).contains(&cohort), "{cohort}");

    for d in &mut devices {
        let outcome = check_in(&mut server, d).await;
        if in_cohort(d.id) {
            assert_eq!(outcome, Outcome::Updated, "device {}", d.id);
            assert_eq!(data(d), "data of v2");
        } else {
            assert_eq!(outcome, Outcome::NoUpdate, "device {} keeps v1", d.id);
            assert_eq!(data(d), "data of v1");
        }
    }
    // Not confirmed yet (the cohort has not booted on v2): still at 25 %.
    server.server.refresh_rollouts().unwrap();
    assert_eq!(stored(&server, "wave").step, 0);
    let (_, progress) = book::status(server.server.fleet(), server.server.repo())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (progress.cohort, progress.updated, progress.confirmed),
        (cohort, cohort, 0)
    );

    // The cohort boots on v2 (a no-update check-in, off trial): confirmed, so it widens by itself.
    for d in devices.iter_mut().filter(|d| in_cohort(d.id)) {
        assert_eq!(check_in(&mut server, d).await, Outcome::NoUpdate);
    }
    server.server.refresh_rollouts().unwrap();
    let widened = stored(&server, "wave");
    assert_eq!((widened.step, &widened.status), (1, &Status::Active));

    // At 100 % everybody gets v2; once all confirmed, the rollout is done.
    for d in &mut devices {
        check_in(&mut server, d).await;
        assert_eq!(data(d), "data of v2", "device {}", d.id);
    }
    for d in &mut devices {
        assert_eq!(check_in(&mut server, d).await, Outcome::NoUpdate);
    }
    server.server.refresh_rollouts().unwrap();
    assert_eq!(stored(&server, "wave").status, Status::Done);
    // The fleet records what each device was served, by the release's name.
    let record = server.server.fleet().load(1).unwrap().unwrap();
    assert_eq!(record.release.as_deref(), Some("v2"));
}

#[tokio::test]
async fn a_rollback_halts_it_nobody_new_gets_it_and_who_holds_it_keeps_it() {
    let fx = fleet();
    let mut server = fx.start().await;
    let mut devices: Vec<RotaDevice> = (1..=3)
        .map(|id| RotaDevice::new(id, SECRET.as_bytes()))
        .collect();
    for d in &mut devices {
        check_in(&mut server, d).await;
    }
    start(&server, "risky", Population::Devices(vec![1, 2, 3]), &[100]);
    let [one, two, three] = &mut devices[..] else {
        unreachable!()
    };
    // Devices 1 and 2 get v2; device 2 confirms it.
    assert_eq!(check_in(&mut server, one).await, Outcome::Updated);
    assert_eq!(check_in(&mut server, two).await, Outcome::Updated);
    assert_eq!(check_in(&mut server, two).await, Outcome::NoUpdate);
    // Device 1's trial boots fail: it rolls back and says so.
    one.rollback = Some(Rollback {
        from: 2,
        to: 1,
        reason: rota_abi::rollback::PANIC,
        phase: rota_abi::rollback::PHASE_APP,
    });
    assert_eq!(check_in(&mut server, one).await, Outcome::Held);
    server.server.refresh_rollouts().unwrap();
    let halted = stored(&server, "risky");
    assert!(
        matches!(&halted.status, Status::Halted(why) if why.contains("rolled v2 back")),
        "{:?}",
        halted.status
    );
    // Device 3 never got v2 and does not now; device 2 keeps v2 (no downgrade to its pin).
    assert_eq!(check_in(&mut server, three).await, Outcome::NoUpdate);
    assert_eq!(data(three), "data of v1");
    assert_eq!(check_in(&mut server, two).await, Outcome::NoUpdate);
    assert_eq!(data(two), "data of v2");
    // A halted rollout is not widened.
    assert!(book::update(server.server.fleet(), "risky", Rollout::widen).is_ok());
    assert!(matches!(stored(&server, "risky").status, Status::Halted(_)));
}
