//! 200 simulated devices checking in at once, each with its own secret.

use std::time::Duration;

use rota_devices::nodemcu::{Device, Outcome, FIRST_RECORD_WINDOW};

use crate::common::{data_txt, init_lua, Fixture};

const DEVICES: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_at_once() {
    let fx = Fixture::standard();
    for id in 0..DEVICES {
        fx.inventory(
            &format!("ESP-{}.json", 5_000_000 + id),
            &["init.lua", "data.txt", "lib/util.lc"],
            &format!("secret-{id}-{}", "s".repeat(id as usize % 90)),
        );
    }
    let mut server = fx.start().await;
    let addr = server.addr;
    let devices: Vec<Device> = (0..DEVICES)
        .map(|id| {
            let secret = format!("secret-{id}-{}", "s".repeat(id as usize % 90));
            Device::new(5_000_000 + id, &secret, "127.0.0.1", addr.port())
        })
        .collect();

    let round = |devices: Vec<Device>| async move {
        let tasks: Vec<_> = devices
            .into_iter()
            .map(|mut d| {
                tokio::spawn(async move {
                    let check = d.check_in_tcp(addr).await.unwrap();
                    (d, check)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };

    let results = round(devices).await;
    let mut slowest = Duration::ZERO;
    let trimmed = rota_server::trim::safetrim(&init_lua());
    for (device, check) in &results {
        assert_eq!(check.outcome, Outcome::Restarted, "device {}", device.id);
        assert!(check.received.iter().all(|r| r.tag_ok));
        assert_eq!(device.fs["data.txt"], data_txt());
        assert_eq!(device.sources["init.lua"], trimmed);
        slowest = slowest.max(check.first_record_after.unwrap());
    }
    assert!(
        slowest < FIRST_RECORD_WINDOW,
        "slowest first record {slowest:?}"
    );

    let results = round(results.into_iter().map(|(d, _)| d).collect()).await;
    for (device, check) in &results {
        assert_eq!(check.outcome, Outcome::NoUpdate, "device {}", device.id);
        assert!(check.received[0].tag_ok);
    }
    let mut ok = 0;
    for _ in 0..2 * DEVICES {
        ok += usize::from(server.report().await.outcome.is_ok());
    }
    assert_eq!(ok, 2 * DEVICES as usize);
}
