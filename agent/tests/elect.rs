//! `leasehold elect` end to end: the real binary against the simulated API server over HTTPS.

mod support;

use std::time::Duration;
use support::{World, eventually, get, status};

/// A child that records its start (identity and epoch) and its SIGTERM in `dir`.
fn child(dir: &std::path::Path) -> String {
    format!(
        "echo \"$LEASEHOLD_IDENTITY $LEASEHOLD_EPOCH $LEASEHOLD_LEASE\" >> {d}/started; \
         trap 'echo \"$LEASEHOLD_IDENTITY\" >> {d}/stopped; exit 0' TERM; \
         while true; do sleep 0.05; done",
        d = dir.display()
    )
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_child_releases_and_the_next_leader_takes_over_at_once() {
    let w = World::start("handover").await;
    let script = child(&w.dir);
    let (status_a, status_b) = (w.path("a.status"), w.path("b.status"));
    let listen = support::free_addr();
    let mut a = w.spawn(
        "a",
        &[
            "elect",
            "--lease",
            "controller",
            "--identity",
            "a",
            "--status-file",
            status_a.to_str().unwrap(),
            "--listen",
            &listen,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    eventually(Duration::from_secs(10), "a leads", || {
        status(&status_a, "leader").as_deref() == Some("true")
    })
    .await;
    let mut b = w.spawn(
        "b",
        &[
            "elect",
            "--lease",
            "controller",
            "--identity",
            "b",
            "--status-file",
            status_b.to_str().unwrap(),
            "--transport",
            "http",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    eventually(Duration::from_secs(10), "b sees a lead", || {
        status(&status_b, "holder").as_deref() == Some("a")
    })
    .await;
    eventually(Duration::from_secs(5), "a's child runs", || {
        lines(&w.path("started")) == ["a 0 controller"]
    })
    .await;

    // The endpoints agree with the status file.
    let (code, body) = get(&listen, "/leader").await;
    let leader: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200);
    assert_eq!(leader["leader"], true);
    assert_eq!(leader["holder"], "a");
    assert_eq!(leader["identity"], "a");
    assert_eq!(leader["epoch"], 0);
    assert_eq!(leader["lease"], "controller");
    assert!(leader["since"].as_str().unwrap().starts_with("20"));
    assert_eq!(get(&listen, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(&listen, "/readyz").await.0, 200);
    let (code, metrics) = get(&listen, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("leader_election_master_status{name=\"controller\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("leader_election_slowpath_total{name=\"controller\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("leasehold_api_requests_total{verb=\"create\",code=\"201\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("leasehold_takeover_seconds_count{name=\"controller\"} 1"),
        "{metrics}"
    );
    assert_eq!(get(&listen, "/nothing").await.0, 404);

    // From here on, the server's count of reads tells a takeover seen on the watch from a poll.
    w.sim.reset_counters();
    a.terminate();
    let exit = a.exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "{}", a.log_text());
    // The child was stopped before the lease was released.
    assert_eq!(lines(&w.path("stopped")), ["a"]);
    let log = a.log_text();
    let stopped = log
        .find("stopped the child command before releasing")
        .expect(&log);
    let released = log.find("released the lease").expect(&log);
    assert!(stopped < released, "{log}");

    // b saw the release on its watch, not on a poll (no read reached the server), and so did
    // not wait out the 15 s lease. (a reads before its release only when the lease changed
    // since its last write, an answer lost or another writer, which does not happen here.) The takeover time itself (milliseconds) is measured by the
    // benchmark.
    let took = eventually(Duration::from_secs(5), "b takes over", || {
        status(&status_b, "leader").as_deref() == Some("true")
    })
    .await;
    eprintln!("takeover after a's exit: {took:?}");
    assert_eq!(
        w.sim.counters().count("get", "leases"),
        0,
        "b took over from its watch, without a read"
    );
    assert_eq!(status(&status_b, "epoch").as_deref(), Some("1"));
    eventually(
        Duration::from_secs(5),
        "b's child runs with epoch 1",
        || lines(&w.path("started")) == ["a 0 controller", "b 1 controller"],
    )
    .await;
    assert!(b.log_text().contains("new leader is a"), "{}", b.log_text());
    assert!(b.log_text().contains("became leader"), "{}", b.log_text());
    assert_eq!(w.holder("controller").as_deref(), Some("b"));
    b.terminate();
    assert_eq!(b.exit(Duration::from_secs(10)).await.code(), Some(0));
    assert_eq!(w.holder("controller"), None, "b released it too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_the_child_and_exit_on_loss_exits() {
    let w = World::start("loss").await;
    let script = child(&w.dir);
    let status_a = w.path("a.status");
    let mut a = w.spawn(
        "a",
        &[
            "elect",
            "--lease",
            "controller",
            "--identity",
            "a",
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--status-file",
            status_a.to_str().unwrap(),
            "--exit-on-loss",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    eventually(Duration::from_secs(10), "a's child runs", || {
        lines(&w.path("started")).len() == 1
    })
    .await;
    // The API server stops answering: a cannot renew and must step down at its deadline.
    w.sim.pause();
    let status = a.exit(Duration::from_secs(10)).await;
    w.sim.resume();
    assert_eq!(status.code(), Some(1), "{}", a.log_text());
    assert_eq!(lines(&w.path("stopped")), ["a"], "the child got SIGTERM");
    assert_eq!(status_of(&status_a), "false");
    let log = a.log_text();
    assert!(
        log.contains("lost leadership") && log.contains("RenewDeadlineExceeded"),
        "{log}"
    );
    assert!(log.contains("--exit-on-loss"), "{log}");
}

fn status_of(path: &std::path::Path) -> String {
    status(path, "leader").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_exit_code_becomes_the_agents_and_the_lease_is_released() {
    let w = World::start("child-exit").await;
    let out = w.run_as(
        &w.admin,
        &[
            "elect",
            "--lease",
            "job",
            "--identity",
            "a",
            "--",
            "sh",
            "-c",
            "exit 5",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.holder("job"), None, "released after the child exited");
    assert_eq!(w.lease("job").unwrap()["spec"]["leaseDurationSeconds"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_child_exit_release_campaigns_again() {
    let w = World::start("recampaign").await;
    let runs = w.path("runs");
    let script = format!("echo run >> {}; sleep 0.2", runs.display());
    let mut a = w.spawn(
        "a",
        &[
            "elect",
            "--lease",
            "job",
            "--identity",
            "a",
            "--retry-period",
            "500ms",
            "--renew-deadline",
            "1s",
            "--lease-duration",
            "2s",
            "--on-child-exit",
            "release",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    eventually(Duration::from_secs(15), "the child ran three times", || {
        lines(&runs).len() >= 3
    })
    .await;
    a.terminate();
    assert_eq!(a.exit(Duration::from_secs(10)).await.code(), Some(0));
    let transitions = w.lease("job").unwrap()["spec"]["leaseTransitions"]
        .as_i64()
        .unwrap();
    assert!(transitions >= 2, "each run is a new term: {transitions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denial_exits_3_with_the_rule_to_add() {
    let w = World::start("rbac").await;
    let out = w.run_as(
        &w.reader,
        &["elect", "--lease", "controller", "--identity", "a"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "permission denied: create leases/controller: 403 Forbidden: \
             leases.coordination.k8s.io is forbidden: User \"reader\" cannot create resource \
             \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
        ),
        "the server's own words: {stderr}"
    );
    assert!(
        stderr.contains("needs get, create, update, watch on leases"),
        "every verb the command uses, not only the one refused: {stderr}"
    );
    assert!(
        stderr.contains(
            "  resourceNames: [\"controller\"]\n  verbs: [\"get\", \"update\", \"watch\"]\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n  verbs: [\"create\"]\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kind: RoleBinding\n")
            && stderr.contains(
                "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: \"reader\"\n"
            ),
        "bound to the subject the server named: {stderr}"
    );
}

/// An election that polls never watches: its advice asks for get, create and update only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_election_is_not_told_to_ask_for_watch() {
    let w = World::start("rbac-poll").await;
    let out = w.run_as(
        &w.reader,
        &[
            "elect",
            "--lease",
            "controller",
            "--identity",
            "a",
            "--poll",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("needs get, create, update on leases"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  resourceNames: [\"controller\"]\n  verbs: [\"get\", \"update\"]\n"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_timing_exits_2_before_any_api_call() {
    let w = World::start("timing").await;
    w.sim.reset_counters();
    let out = w.run_as(
        &w.admin,
        &[
            "elect",
            "--lease",
            "controller",
            "--lease-duration",
            "10s",
            "--renew-deadline",
            "10s",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lease duration 10s must be greater than renew deadline 10s"),
        "{stderr}"
    );
    assert_eq!(
        w.sim.counters().total(),
        0,
        "nothing reached the API server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_rbac_is_enough_to_elect_and_watch() {
    let w = World::start("least-privilege").await;
    let status_a = w.path("a.status");
    let mut a = w.spawn_as(
        &w.elector,
        "a",
        &[
            "elect",
            "--lease",
            "controller",
            "--identity",
            "a",
            "--status-file",
            status_a.to_str().unwrap(),
        ],
    );
    eventually(Duration::from_secs(10), "a leads", || {
        status(&status_a, "leader").as_deref() == Some("true")
    })
    .await;
    let mut b = w.spawn_as(
        &w.elector,
        "b",
        &["elect", "--lease", "controller", "--identity", "b"],
    );
    eventually(Duration::from_secs(10), "b watches", || {
        w.sim.counters().count_status("watch", "leases", 200) >= 2
    })
    .await;
    a.terminate();
    assert_eq!(a.exit(Duration::from_secs(10)).await.code(), Some(0));
    eventually(Duration::from_secs(2), "b takes over", || {
        w.holder("controller").as_deref() == Some("b")
    })
    .await;
    let counters = w.sim.counters();
    for verb in ["get", "create", "update", "watch"] {
        assert_eq!(
            counters.count_status(verb, "leases", 403),
            0,
            "{verb} was denied: {counters:?}"
        );
    }
    b.terminate();
    b.exit(Duration::from_secs(10)).await;
}
