//! `leasehold heartbeat`: renewing a node-style lease, and the watcher that reports leases
//! that stopped being renewed.

mod support;

use std::time::Duration;
use support::{Agent, World, eventually};

/// `heartbeat` renewing the lease `node-1` as `node-1`, logging to `<log>.log`.
fn node_1(w: &World, log: &str, lease_duration: &str) -> Agent {
    w.spawn(
        log,
        &[
            "heartbeat",
            "--name",
            "node-1",
            "--identity",
            "node-1",
            "--lease-duration",
            lease_duration,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_renews_and_the_watcher_reports_when_it_stops() {
    let w = World::start("heartbeat").await;
    // 3 s: the watcher calls it stale only if no renew (every 750 ms) lands for 3 s, which a
    // loaded machine's stalls do not reach.
    let mut node = node_1(&w, "node", "3s");
    eventually(Duration::from_secs(5), "the lease is created", || {
        w.holder("node-1").as_deref() == Some("node-1")
    })
    .await;
    let first = w.lease("node-1").unwrap()["spec"]["renewTime"].clone();
    eventually(
        Duration::from_secs(3),
        "renewed a quarter-duration later",
        || w.lease("node-1").unwrap()["spec"]["renewTime"] != first,
    )
    .await;
    assert_eq!(
        w.lease("node-1").unwrap()["spec"]["leaseDurationSeconds"],
        3
    );

    let watcher = w.spawn("watcher", &["heartbeat", "--watch", "--interval", "100ms"]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !watcher.out_text().contains("STALE"),
        "a renewed lease is not stale: {}",
        watcher.out_text()
    );

    // The node dies without a word: the watcher reports it after its 3 s duration.
    node.signal(rustix::process::Signal::KILL);
    node.exit(Duration::from_secs(5)).await;
    eventually(
        Duration::from_secs(10),
        "the watcher reports node-1",
        || {
            watcher
                .out_text()
                .contains("STALE default/node-1 holder=node-1")
        },
    )
    .await;
    // It comes back: reported renewed.
    let _node = node_1(&w, "node-again", "3s");
    eventually(
        Duration::from_secs(5),
        "the watcher reports node-1 renewed",
        || watcher.out_text().contains("RENEWED default/node-1"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_without_permission_exits_3() {
    let w = World::start("heartbeat-rbac").await;
    let out = w.run_as(
        &w.reader,
        &["heartbeat", "--name", "node-1", "--lease-duration", "40s"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("verbs: [\"create\"]"), "{stderr}");
    // A heartbeat reads and writes its lease and never watches it: the advice asks for no more.
    assert!(
        stderr.contains("  resourceNames: [\"node-1\"]\n  verbs: [\"get\", \"update\"]\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("watch"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractional_duration_is_refused() {
    let w = World::start("heartbeat-usage").await;
    let out = w.run_as(
        &w.admin,
        &[
            "heartbeat",
            "--name",
            "node-1",
            "--lease-duration",
            "1500ms",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--lease-duration") && stderr.contains("whole number of seconds"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_reports_an_expiry_on_time_and_ignores_released_leases() {
    let w = World::start("heartbeat-watch").await;
    // A released election lease (holder empty, duration 1 s) is nobody's heartbeat.
    let released = w.spawn(
        "released",
        &[
            "elect",
            "--lease",
            "released",
            "--identity",
            "a",
            "--",
            "true",
        ],
    );
    let mut released = released;
    assert!(released.exit(Duration::from_secs(10)).await.success());
    assert_eq!(w.holder("released"), None, "released");
    let mut node = node_1(&w, "node", "2s");
    eventually(Duration::from_secs(5), "the lease is created", || {
        w.holder("node-1").as_deref() == Some("node-1")
    })
    .await;
    // Lists every 30 s: the expiry must still be reported when it comes, not at the next list.
    let watcher = w.spawn("watcher", &["heartbeat", "--watch", "--interval", "30s"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.signal(rustix::process::Signal::KILL);
    node.exit(Duration::from_secs(5)).await;
    let took = eventually(Duration::from_secs(6), "the watcher reports node-1", || {
        watcher
            .out_text()
            .contains("STALE default/node-1 holder=node-1 not renewed within its 2s duration")
    })
    .await;
    assert!(took < Duration::from_secs(6), "{took:?}");
    let out = watcher.out_text();
    assert!(out.contains("renewTime 20"), "{out}");
    assert!(!out.contains("released"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_without_watch_is_refused() {
    let w = World::start("heartbeat-interval").await;
    let out = w.run_as(
        &w.admin,
        &["heartbeat", "--name", "node-1", "--interval", "1s"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--watch"), "{stderr}");
}
