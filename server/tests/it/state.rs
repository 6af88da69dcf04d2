//! The fleet's database, on every backend under test: SQLite always, PostgreSQL when
//! `ROTA_TEST_POSTGRES` holds a server URL (`make postgres` starts one; each test makes its own
//! database there, so tests run in parallel). With `CI` set and no `ROTA_TEST_POSTGRES`, the
//! PostgreSQL half fails instead of passing silently.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use rota_server::fleet::{
    migrations, CheckIn, Database, Fleet, FleetError, HeapRecord, RollbackRecord,
};

/// A database made for one test, dropped with it.
pub struct TestDb {
    pub database: Database,
    /// The SQLite file's directory.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL server's URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// Runs `sql` on the database directly (as an operator's hand edit, or an older binary).
    pub fn raw(&self, sql: &str) {
        match &self.database {
            Database::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Database::Postgres(url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }

    /// One integer `sql` reads.
    pub fn count(&self, sql: &str) -> i64 {
        match &self.database {
            Database::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Database::Postgres(url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .query_one(sql, &[])
                .unwrap()
                .get(0),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.database, Database::Postgres(_))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            if let Ok(mut admin) = postgres::Client::connect(server, postgres::NoTls) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// The PostgreSQL server the tests may use: `ROTA_TEST_POSTGRES`. Under `CI` its absence fails the
/// test; elsewhere it is reported and the PostgreSQL half is skipped.
fn postgres_server() -> Option<String> {
    match std::env::var("ROTA_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but ROTA_TEST_POSTGRES is not: the PostgreSQL state tests cannot run \
             (`make postgres` starts a server; export ROTA_TEST_POSTGRES=postgres://rota@127.0.0.1:55432/postgres)"
        ),
        _ => {
            eprintln!("PostgreSQL state tests did not run: ROTA_TEST_POSTGRES is not set (see `make postgres`)");
            None
        }
    }
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A fresh SQLite file.
pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    TestDb {
        database: Database::Sqlite(dir.path().join("state.db")),
        _dir: Some(dir),
        postgres: None,
    }
}

/// A fresh database of every backend under test.
pub fn backends() -> Vec<TestDb> {
    let mut all = vec![sqlite()];
    if let Some(server) = postgres_server() {
        let name = format!(
            "rota_test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&server, postgres::NoTls)
            .unwrap_or_else(|e| panic!("ROTA_TEST_POSTGRES={server}: {e}"));
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).unwrap();
        }
        let (base, _) = server.rsplit_once('/').expect("a URL ending in /DB");
        all.push(TestDb {
            database: Database::Postgres(format!("{base}/{name}")),
            _dir: None,
            postgres: Some((server, name)),
        });
    }
    all
}

pub fn record(device: u64, nonce: u32) -> CheckIn {
    CheckIn {
        device,
        time: 1_700_000_000 + u64::from(nonce),
        peer: "127.0.0.1:9".into(),
        protocol: 2,
        nonce: Some(nonce),
        app_version: Some(3),
        heap: vec![HeapRecord {
            phase: 1,
            used: nonce,
            peak: 900,
            stack_peak: 300,
        }],
        outcome: "updating".into(),
        release: Some(format!("r{nonce}")),
        ..CheckIn::default()
    }
}

#[test]
fn nonces_only_grow_and_outcomes_follow_their_check_in() {
    for db in backends() {
        let kind = db.database.to_string();
        let fleet = Fleet::open(&db.database).unwrap();
        assert!(fleet.list().unwrap().is_empty(), "{kind}");
        fleet.check_in(&record(7, 5)).unwrap();
        for replay in [5, 4, 0] {
            assert!(
                matches!(
                    fleet.check_in(&record(7, replay)),
                    Err(FleetError::Replay { last: 5, got }) if got == replay
                ),
                "{kind}"
            );
        }
        fleet.finish(7, Some(5), "updated").unwrap();
        assert_eq!(fleet.load(7).unwrap().unwrap().outcome, "updated", "{kind}");
        fleet.check_in(&record(7, 6)).unwrap();
        // A late finish of the older session does not touch the newer record, only its history.
        fleet.finish(7, Some(5), "failed: late").unwrap();
        let now = fleet.load(7).unwrap().unwrap();
        assert_eq!(now.outcome, "updating", "{kind}");
        assert_eq!(now.release.as_deref(), Some("r6"), "{kind}");
        fleet.check_in(&record(2, 1)).unwrap();
        let all = fleet.list().unwrap();
        assert_eq!(all.iter().map(|r| r.device).collect::<Vec<_>>(), [2, 7]);
        let table = rota_server::fleet::table(&all);
        assert!(table.contains("2023-11-14 22:13:26"), "{table}");
        assert!(
            table.contains("RELEASE") && table.contains(" r6 "),
            "{table}"
        );
        let history = fleet.history(7, 10).unwrap();
        let seen: Vec<_> = history
            .iter()
            .map(|b| (b.nonce, b.outcome.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(Some(5), "failed: late"), (Some(6), "updating")],
            "{kind}"
        );
        // Three refused replays wrote nothing.
        assert_eq!(db.count("SELECT COUNT(*) FROM checkins"), 3, "{kind}");
    }
}

/// The history is one row per accepted check-in; `history` returns the newest `limit`, oldest first,
/// with the heap report, release and outcome of each.
#[test]
fn history_keeps_every_accepted_check_in() {
    for db in backends() {
        let fleet = Fleet::open(&db.database).unwrap();
        for nonce in 1..=20 {
            fleet.check_in(&record(9, nonce)).unwrap();
            fleet
                .finish(9, Some(nonce), &format!("done {nonce}"))
                .unwrap();
        }
        fleet.check_in(&record(10, 1)).unwrap();
        let last = fleet.history(9, 3).unwrap();
        assert_eq!(
            last.iter().map(|b| b.nonce.unwrap()).collect::<Vec<_>>(),
            [18, 19, 20]
        );
        assert_eq!(last[0].release.as_deref(), Some("r18"));
        assert_eq!(last[2].outcome, "done 20");
        assert_eq!(last[1].heap[0].used, 19);
        assert_eq!(last[1].time, 1_700_000_019);
        assert_eq!(fleet.history(9, 100).unwrap().len(), 20);
        assert_eq!(fleet.history(10, 100).unwrap().len(), 1);
        assert!(fleet.history(11, 100).unwrap().is_empty());
        assert_eq!(db.count("SELECT COUNT(*) FROM checkins"), 21);
    }
}

/// A rollback is counted once however often the device reports it, and holds back the release the
/// server last installed on it; both are carried across check-ins and fleet handles.
#[test]
fn a_rollback_is_counted_once_and_holds_the_installed_release() {
    for db in backends() {
        let fleet = Fleet::open(&db.database).unwrap();
        fleet.check_in(&record(3, 1)).unwrap();
        fleet.installed(3, Some(1), "aa11").unwrap();
        let mut reported = record(3, 2);
        reported.rollbacks = vec![RollbackRecord {
            from: 7,
            to: 6,
            reason: 1,
            phase: 2,
            time: 5,
            state: None,
        }];
        let merged = fleet.check_in(&reported).unwrap();
        assert_eq!(merged.held.as_deref(), Some("aa11"));
        assert_eq!(merged.rollbacks.len(), 1);
        assert_eq!(merged.rollbacks[0].state.as_deref(), Some("aa11"));
        for nonce in 3..6 {
            let mut again = reported.clone();
            again.nonce = Some(nonce);
            let merged = fleet.check_in(&again).unwrap();
            assert_eq!(merged.rollbacks.len(), 1, "counted once");
        }
        let other = Fleet::open(&db.database).unwrap();
        let stored = other.load(3).unwrap().unwrap();
        assert_eq!(stored.held.as_deref(), Some("aa11"));
        assert_eq!(stored.installed.as_deref(), Some("aa11"));
        assert_eq!(stored.rollbacks.len(), 1);
        assert_eq!(other.list().unwrap()[0].rollbacks.len(), 1);
        assert_eq!(db.count("SELECT COUNT(*) FROM rollbacks"), 1);
    }
}

/// `put_rollout` inserts a new id once, then updates only from the version it read: of two writers
/// from the same version, exactly one wins.
#[test]
fn rollouts_update_optimistically() {
    for db in backends() {
        let fleet = Fleet::open(&db.database).unwrap();
        let other = Fleet::open(&db.database).unwrap();
        let body = serde_json::json!({"release": "v1", "percent": 10});
        assert!(fleet.put_rollout("spring", &body, None).unwrap());
        assert!(!other.put_rollout("spring", &body, None).unwrap(), "exists");
        let stored = other.rollouts().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].id.as_str(), stored[0].version), ("spring", 1));
        assert_eq!(stored[0].body, body);
        assert!(stored[0].updated > 1_700_000_000);
        // Two writers read version 1; each tries to move it on.
        let mut wins = 0;
        for (writer, percent) in [(&fleet, 50), (&other, 90)] {
            let next = serde_json::json!({"release": "v1", "percent": percent});
            wins += usize::from(writer.put_rollout("spring", &next, Some(1)).unwrap());
        }
        assert_eq!(wins, 1);
        let stored = fleet.rollouts().unwrap();
        assert_eq!(stored[0].version, 2);
        assert_eq!(stored[0].body["percent"], 50);
        assert!(
            !fleet.put_rollout("autumn", &body, Some(1)).unwrap(),
            "no such rollout"
        );
        assert!(other
            .put_rollout("spring", &serde_json::json!({"done": true}), Some(2))
            .unwrap());
        assert_eq!(fleet.rollouts().unwrap()[0].version, 3);
    }
}

/// Two `Fleet` handles on one database, as two servers behind one address: the same Hellos given
/// to both at once are each accepted at most once, the accepted nonces only grow, and every accepted
/// one has its history row.
#[test]
fn replays_are_refused_across_two_handles_on_one_database() {
    const NONCES: u32 = 150;
    const DEVICES: u64 = 4;
    for db in backends() {
        let handles = [
            Fleet::open(&db.database).unwrap(),
            Fleet::open(&db.database).unwrap(),
        ];
        let start = Arc::new(Barrier::new(2 * DEVICES as usize));
        let mut threads = Vec::new();
        for fleet in &handles {
            for device in 1..=DEVICES {
                let (fleet, start) = (fleet.clone(), start.clone());
                threads.push(std::thread::spawn(move || {
                    start.wait();
                    let mut accepted = Vec::new();
                    for nonce in 1..=NONCES {
                        match fleet.check_in(&record(device, nonce)) {
                            Ok(_) => accepted.push(nonce),
                            Err(FleetError::Replay { last, got }) => {
                                assert!(last >= got, "{last} < {got}")
                            }
                            Err(other) => panic!("device {device} nonce {nonce}: {other}"),
                        }
                    }
                    (device, accepted)
                }));
            }
        }
        let mut by_device = std::collections::BTreeMap::<u64, Vec<u32>>::new();
        for t in threads {
            let (device, accepted) = t.join().unwrap();
            by_device.entry(device).or_default().extend(accepted);
        }
        let mut total = 0;
        for (device, mut accepted) in by_device {
            let n = accepted.len();
            accepted.sort_unstable();
            accepted.dedup();
            assert_eq!(accepted.len(), n, "device {device}: a nonce accepted twice");
            assert!(
                accepted.contains(&NONCES),
                "device {device}: the last Hello"
            );
            let history: Vec<u32> = handles[1]
                .history(device, 1000)
                .unwrap()
                .iter()
                .map(|b| b.nonce.unwrap())
                .collect();
            assert_eq!(history, accepted, "device {device}: history in order");
            let floor = db.count(&format!(
                "SELECT nonce_floor FROM devices WHERE device = {device}"
            ));
            assert_eq!(floor, i64::from(NONCES));
            total += n;
        }
        assert_eq!(
            db.count("SELECT COUNT(*) FROM checkins"),
            total as i64,
            "{}",
            db.database
        );
    }
}

/// A floor that cannot be read (a hand edit) refuses every check-in of that device, naming it, and
/// writes nothing; other devices are served.
#[test]
fn an_unreadable_floor_fails_closed() {
    for db in backends() {
        let fleet = Fleet::open(&db.database).unwrap();
        fleet.check_in(&record(7, 5)).unwrap();
        db.raw("UPDATE devices SET nonce_floor = -1 WHERE device = 7");
        for nonce in [3, 6, 1000] {
            let got = fleet.check_in(&record(7, nonce));
            assert!(
                matches!(&got, Err(FleetError::Floor { device: 7, .. })),
                "{got:?}"
            );
            assert!(got.unwrap_err().to_string().contains("device 7"));
        }
        assert_eq!(db.count("SELECT COUNT(*) FROM checkins"), 1);
        fleet.check_in(&record(8, 1)).unwrap();
    }
}

/// A database at migration 1 (as the first binary with a database left it: records, no history)
/// is brought to the latest at open with its rows kept; one a newer binary migrated is refused.
#[test]
fn migrations_bring_an_old_database_up_and_refuse_a_newer_one() {
    for db in backends() {
        let steps = if db.is_postgres() {
            migrations::POSTGRES
        } else {
            migrations::SQLITE
        };
        db.raw(&format!(
            "{}; {}; INSERT INTO schema_migrations (version, applied) VALUES (1, 0);
             INSERT INTO devices (device, time, peer, protocol, nonce, files, staged, heap, outcome, nonce_floor, held)
             VALUES (77, 1700000000, 'old', 2, 40, '[]', '[]', '[]', 'no-update', 40, 'beef');
             INSERT INTO rollbacks (device, seq, from_gen, to_gen, reason, phase, time, state)
             VALUES (77, 0, 3, 2, 1, 1, 1700000000, 'beef')",
            migrations::SCHEMA_MIGRATIONS,
            steps[0]
        ));
        let fleet = Fleet::open(&db.database).unwrap();
        assert_eq!(
            db.count("SELECT COUNT(*) FROM schema_migrations"),
            steps.len() as i64
        );
        assert_eq!(
            db.count("SELECT MAX(version) FROM schema_migrations"),
            steps.len() as i64
        );
        let old = fleet.load(77).unwrap().unwrap();
        assert_eq!((old.nonce, old.peer.as_str()), (Some(40), "old"));
        assert_eq!(old.release, None);
        assert_eq!(old.rollbacks.len(), 1);
        assert!(matches!(
            fleet.check_in(&record(77, 40)),
            Err(FleetError::Replay { last: 40, got: 40 })
        ));
        let merged = fleet.check_in(&record(77, 41)).unwrap();
        assert_eq!(merged.held.as_deref(), Some("beef"), "history kept");
        assert_eq!(fleet.history(77, 10).unwrap().len(), 1);
        drop(fleet);
        // Reopening applies nothing more.
        Fleet::open(&db.database).unwrap();
        assert_eq!(
            db.count("SELECT COUNT(*) FROM schema_migrations"),
            steps.len() as i64
        );

        let newer = steps.len() + 1;
        db.raw(&format!(
            "INSERT INTO schema_migrations (version, applied) VALUES ({newer}, 0)"
        ));
        let err = Fleet::open(&db.database).unwrap_err();
        assert!(
            matches!(&err, FleetError::Newer { found, known, .. } if *found == newer as i64 && *known == steps.len()),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }
}

/// `--database` takes `sqlite:PATH` and `postgres://...`; anything else is refused naming it.
#[test]
fn the_database_option() {
    let fx = crate::common::Fixture::empty();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rota-server"))
            .args(args)
            .output()
            .unwrap()
    };
    let dir = fx.path().to_str().unwrap();
    let out = run(&["fleet", dir, "--database", "mysql://x/y"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--database mysql://x/y") && stderr.contains("sqlite:PATH"),
        "{stderr}"
    );
    let file = fx.path().join("elsewhere.db");
    let fleet = Fleet::open(&Database::Sqlite(file.clone())).unwrap();
    fleet.check_in(&record(5, 1)).unwrap();
    let url = format!("sqlite:{}", file.display());
    let out = run(&["fleet", dir, "--database", &url, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<CheckIn> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].release.as_deref(), Some("r1"));
    assert!(
        !fx.path().join(".rota/state.db").exists(),
        "the default is not touched"
    );
}

/// The PostgreSQL server closing the fleet's connections (a restart, an administrator) costs at
/// most the writes in flight: the next ones connect again, and the replay floor is intact.
#[test]
fn a_closed_postgres_connection_is_made_again() {
    for db in backends().into_iter().filter(TestDb::is_postgres) {
        let fleet = Fleet::open(&db.database).unwrap();
        fleet.check_in(&record(4, 1)).unwrap();
        db.raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        );
        // The first write or read may learn of the closed connection by failing.
        let _ = fleet.check_in(&record(4, 2));
        let _ = fleet.load(4);
        fleet.check_in(&record(4, 3)).unwrap();
        assert!(matches!(
            fleet.check_in(&record(4, 3)),
            Err(FleetError::Replay { last: 3, got: 3 })
        ));
        assert_eq!(fleet.load(4).unwrap().unwrap().nonce, Some(3));
    }
}

/// Starts a server on `fx` recording check-ins in `database`, on an ephemeral loopback port; it
/// stops when the returned handle is dropped.
fn serve_on(fx: &crate::common::Fixture, database: &Database) -> crate::common::Running {
    use rota_server::session::{Limits, Server};
    let repo = rota_server::repo::Repo::open_dir(fx.path()).unwrap();
    crate::common::serve(Server::with_fleet(
        repo,
        Fleet::open(database).unwrap(),
        Limits::default(),
    ))
}

/// Sends `frame` to `addr`; returns how many bytes the server answered before closing (0: it
/// refused, sending nothing).
async fn answered(addr: std::net::SocketAddr, frame: &[u8]) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(frame).await.unwrap();
    let mut buf = [0u8; 512];
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer or the close")
        .unwrap_or(0)
}

/// Two servers on one database, as behind one address: the same Hello sent to both at once is
/// answered by exactly one of them; the other refuses it as a replay and sends nothing.
#[test]
fn two_servers_on_one_database_answer_a_hello_once() {
    const HELLOS: u32 = 20;
    // The test's own PostgreSQL clients are synchronous: they stay off the runtime's threads.
    for db in backends() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fx = crate::common::Fixture::empty();
        fx.write("app", b"the application");
        fx.inventory("ESP-42.json", &["app"], "two servers");
        let wins = runtime.block_on(async {
            let first_server = serve_on(&fx, &db.database);
            let second_server = serve_on(&fx, &db.database);
            let (first, second) = (first_server.addr, second_server.addr);
            let mut device = rota_devices::rota::RotaDevice::new(42, b"two servers");
            let check = device.check_in_tcp(first).await.unwrap();
            assert_eq!(check.outcome, rota_devices::rota::V2Outcome::Committed(1));
            let mut wins = [0; 2];
            for nonce in 100..100 + HELLOS {
                let mut out = vec![0u8; rota_wire::MAX_FRAME];
                let mut session =
                    rota_wire::DeviceSession::new(b"two servers", rota_wire::Link::Tcp);
                let n = session.hello(&device.hello(nonce), &mut out).unwrap();
                let (a, b) = tokio::join!(answered(first, &out[..n]), answered(second, &out[..n]));
                assert!(
                    (a > 0) != (b > 0),
                    "{}: nonce {nonce}: answered {a} and {b} bytes",
                    db.database
                );
                wins[usize::from(b > 0)] += 1;
            }
            wins
        });
        println!("{}: Hellos won by each server: {wins:?}", db.database);
        // The update, then one row per Hello answered.
        let fleet = Fleet::open(&db.database).unwrap();
        let nonces: Vec<u32> = fleet
            .history(42, 100)
            .unwrap()
            .iter()
            .map(|b| b.nonce.unwrap())
            .collect();
        assert_eq!(nonces.len(), 1 + HELLOS as usize, "{nonces:?}");
        assert_eq!(nonces[1..], (100..100 + HELLOS).collect::<Vec<_>>()[..]);
    }
}
