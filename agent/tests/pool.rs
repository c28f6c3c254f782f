//! `leasehold pool` end to end: cold start, delegation, and what happens when leases cannot be
//! used.

mod support;

use std::time::Duration;
use support::{World, eventually, status};

/// A cold-start command: records its start and end with a timestamp, works `work_ms`, exits
/// with `code`.
fn build(log: &std::path::Path, work_ms: u32, code: i32) -> String {
    format!(
        "echo \"start $(date +%s%N) $LEASEHOLD_LEASE\" >> {l}; sleep {w}; echo \"end $(date +%s%N)\" >> {l}; exit {code}",
        l = log.display(),
        w = f64::from(work_ms) / 1000.0
    )
}

/// The largest number of commands running at once in the log.
fn max_parallel(log: &std::path::Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let kind = parts.next().unwrap();
            let at: u128 = parts.next().unwrap().parse().unwrap();
            (at, if kind == "start" { 1 } else { -1 })
        })
        .collect();
    events.sort();
    let (mut now, mut max, mut starts) = (0i32, 0i32, 0);
    for (_, d) in events {
        now += d;
        max = max.max(now);
        starts += usize::from(d == 1);
    }
    (max as usize, starts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_admits_at_most_n_at_once_and_exits_with_the_commands_code() {
    let w = World::start("cold-start").await;
    let log = w.path("builds");
    let script = build(&log, 300, 7);
    let mut agents: Vec<_> = (0..5)
        .map(|i| {
            w.spawn(
                &format!("agent-{i}"),
                &[
                    "pool",
                    "--size",
                    "2",
                    "--identity",
                    &format!("agent-{i}"),
                    "--release-after",
                    "sh",
                    "-c",
                    &script,
                ],
            )
        })
        .collect();
    for agent in &mut agents {
        let status = agent.exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(7), "{}", agent.log_text());
    }
    let (parallel, starts) = max_parallel(&log);
    assert_eq!(starts, 5, "every agent ran its command once");
    assert!(parallel <= 2, "at most 2 at once, saw {parallel}");
    assert_eq!(parallel, 2, "the pool was used fully");
    for slot in ["cold-start-0", "cold-start-1"] {
        assert_eq!(w.holder(slot), None, "{slot} released");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("cold-start-0") && text.contains("cold-start-1"),
        "{text}"
    );
    assert!(agents[0].log_text().contains("acquired slot cold-start-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_cold_start_logs_its_slot_at_info_and_warns_of_nothing() {
    let w = World::start("cold-start-logs").await;
    let log = w.path("builds");
    // A build starts once the file `go` exists: member-0 holds the slot until member-1 has seen
    // it held, however the two processes' starts are spaced.
    let go = w.path("go");
    let script = format!(
        "until [ -e {} ]; do sleep 0.02; done; {}",
        go.display(),
        build(&log, 200, 0)
    );
    // Two members through one slot: the second takes it over when the first releases it.
    let member = |i: usize| {
        w.spawn(
            &format!("member-{i}"),
            &[
                "--log-format",
                "json",
                "pool",
                "--size",
                "1",
                "--identity",
                &format!("member-{i}"),
                "--release-after",
                "sh",
                "-c",
                &script,
            ],
        )
    };
    let first = member(0);
    eventually(Duration::from_secs(10), "member-0 holds the slot", || {
        w.holder("cold-start-0").as_deref() == Some("member-0")
    })
    .await;
    let second = member(1);
    eventually(Duration::from_secs(10), "member-1 waits", || {
        second.log_text().contains("waiting for a cold-start slot")
    })
    .await;
    std::fs::write(&go, "").unwrap();
    let mut agents = [first, second];
    let mut told_waiting = 0;
    for agent in &mut agents {
        let status = agent.exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{}", agent.log_text());
        let text = agent.log_text();
        told_waiting += text
            .matches("waiting for a cold-start slot: all 1 held")
            .count();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();
        let level_of = |message: &str| {
            lines
                .iter()
                .find(|l| l["message"] == message)
                .map(|l| l["level"].clone())
        };
        assert_eq!(
            level_of("acquired slot cold-start-0"),
            Some("INFO".into()),
            "{text}"
        );
        assert_eq!(
            level_of("released slot cold-start-0"),
            Some("INFO".into()),
            "{text}"
        );
        assert!(
            lines.iter().all(|l| l["level"] == "INFO"),
            "a cold start that went as planned warns of nothing: {text}"
        );
    }
    assert_eq!(
        told_waiting, 1,
        "the member that waited says once, at INFO, that every slot is held"
    );
    assert_eq!(w.holder("cold-start-0"), None, "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_holds_n_slots_until_terminated() {
    let w = World::start("delegation").await;
    let mut agents: Vec<_> = (0..3)
        .map(|i| {
            let status = w.path(&format!("d{i}.status"));
            w.spawn(
                &format!("d{i}"),
                &[
                    "pool",
                    "--hold",
                    "--identity",
                    &format!("d{i}"),
                    "--status-file",
                    status.to_str().unwrap(),
                ],
            )
        })
        .collect();
    let leading = |w: &World| {
        (0..3)
            .filter(|i| {
                status(&w.path(&format!("d{i}.status")), "leader").as_deref() == Some("true")
            })
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "two delegates", || {
        leading(&w).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let holders = leading(&w);
    assert_eq!(
        holders.len(),
        2,
        "never more than the 2 default delegations"
    );
    let mut slots: Vec<String> = holders
        .iter()
        .map(|i| status(&w.path(&format!("d{i}.status")), "lease").unwrap())
        .collect();
    slots.sort();
    assert_eq!(slots, ["delegation-0", "delegation-1"]);
    // A delegate ends: the waiting agent takes its slot.
    let gone = holders[0];
    agents[gone].terminate();
    assert_eq!(
        agents[gone].exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    let waiting = (0..3).find(|i| !holders.contains(i)).unwrap();
    // Its take waits a randomized delay of up to about a second (the window widens with each
    // race it lost at the start), after the release it sees on its watch.
    eventually(
        Duration::from_secs(8),
        "the waiting agent takes the freed slot",
        || status(&w.path(&format!("d{waiting}.status")), "leader").as_deref() == Some("true"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_permission_a_cold_start_proceeds_unthrottled_and_warns() {
    let w = World::start("fallback").await;
    let started = std::time::Instant::now();
    let out = w.run_as(
        &w.reader,
        &[
            "pool",
            "--size",
            "2",
            "--identity",
            "a",
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--release-after",
            "sh",
            "-c",
            "echo built; exit 4",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // One refusal may be a Role still being applied: only a second, a retry period later, counts.
    assert!(started.elapsed() >= Duration::from_millis(500), "{stderr}");
    let warned = stderr
        .find("if an attempt a retry period from now is refused too")
        .expect(&stderr);
    let proceeded = stderr
        .find("proceeding without them (unthrottled)")
        .expect(&stderr);
    assert!(warned < proceeded, "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(4),
        "the command ran and its code is the exit code: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built\n");
    assert!(
        stderr.contains("proceeding without them (unthrottled)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("verbs: [\"create\", \"list\", \"watch\"]"),
        "the warning carries the fix, the pool stream's list and watch included: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_without_permission_keeps_trying_and_never_runs_its_command() {
    // Before: delegation fell back to running unthrottled at the first 403, on every agent.
    let w = World::start("delegation-denied").await;
    let marker = w.path("ran");
    let mut agent = w.spawn_as(
        &w.reader,
        "d",
        &[
            "pool",
            "--hold",
            "--identity",
            "d",
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    eventually(Duration::from_secs(10), "the RBAC rule is logged", || {
        agent
            .log_text()
            .contains("verbs: [\"create\", \"list\", \"watch\"]")
    })
    .await;
    let denied = || w.sim.counters().count_status("create", "leases", 403);
    let first = denied();
    eventually(Duration::from_secs(10), "it keeps trying", || {
        denied() >= first + 2
    })
    .await;
    assert!(!marker.exists(), "the command must not run without a slot");
    assert!(
        agent
            .log_text()
            .contains("retrying until the access is granted"),
        "{}",
        agent.log_text()
    );
    agent.terminate();
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_member_that_loses_its_slot_stops_and_builds_again_later() {
    // Before: a member kept building after losing its slot (a cold start was throttled, not
    // fenced) while the other re-created the slot at once: two builds in a pool of one. (The
    // first holder polls, so the watching member is the first to see the deletion.)
    let w = World::start("cold-start-loss").await;
    let log = w.path("builds");
    // A build writes every 50 ms, and finishes after BUILD_WRITES writes made once the file
    // `go` exists. The test makes `go` only once a second build has begun, so m0's first build
    // can only end by being stopped, however slow the machine; if it were not stopped, it
    // would overlap the second.
    let go = w.path("go");
    let script = format!(
        "T=\"$LEASEHOLD_IDENTITY/$LEASEHOLD_EPOCH/$$\"; i=0; \
         while [ $i -lt {BUILD_WRITES} ]; do echo \"$T $(date +%s%N)\" >> {}; \
         if [ -e {} ]; then i=$((i + 1)); fi; sleep 0.05; done",
        log.display(),
        go.display()
    );
    let member = |name: &str, flags: &[&str]| {
        let mut args = vec![
            "pool",
            "--size",
            "1",
            "--identity",
            name,
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--grace-period",
            "500ms",
        ];
        args.extend(flags);
        args.extend(["--release-after", "sh", "-c", &script]);
        w.spawn(name, &args)
    };
    let mut first = member("m0", &["--poll"]);
    eventually(Duration::from_secs(10), "m0's build is under way", || {
        support::intervals(&log)
            .first()
            .is_some_and(|i| i.writes >= 3)
    })
    .await;
    let mut second = member("m1", &[]);
    eventually(Duration::from_secs(5), "m1 watches the slot", || {
        w.sim.counters().count_status("watch", "leases", 200) >= 1
    })
    .await;
    w.delete_lease("cold-start-0").await;
    // Either member may take the re-created slot first.
    eventually(Duration::from_secs(15), "a second build begins", || {
        support::intervals(&log).len() >= 2
    })
    .await;
    std::fs::write(&go, "").unwrap();
    for member in [&mut first, &mut second] {
        let status = member.exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{}", member.log_text());
    }
    support::assert_never_two_workers(&log);
    let builds = support::intervals(&log);
    assert_eq!(builds.len(), 3, "m0's cut short, then one each: {builds:?}");
    assert!(builds[0].tag.starts_with("m0/"), "{builds:?}");
    assert!(
        builds[1..]
            .iter()
            .any(|b| b.tag.starts_with("m0/") && b.writes >= BUILD_WRITES),
        "m0 built again, in full, once it had a slot again: {builds:?}"
    );
}

/// The writes of one build in `a_cold_start_member_that_loses_its_slot_stops_and_builds_again_later`.
const BUILD_WRITES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_refuses_with_exit_3_and_never_runs_the_command() {
    let w = World::start("enforce").await;
    let marker = w.path("ran");
    let script = format!("touch {}", marker.display());
    let out = w.run_as(
        &w.reader,
        &[
            "pool",
            "--size",
            "2",
            "--identity",
            "a",
            "--enforce",
            "--release-after",
            "sh",
            "-c",
            &script,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("permission denied: create leases/cold-start-"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  resourceNames: [\"cold-start-0\", \"cold-start-1\"]\n"),
        "the rule names the pool's slots: {stderr}"
    );
    assert!(!marker.exists(), "the command must not run");

    // The same through the config file (Sysdig's enforce_leader_election).
    let config = w.path("agent.yaml");
    std::fs::write(
        &config,
        "k8s_coldstart:\n  enabled: true\n  max_parallel_cold_start: 2\n  enforce_leader_election: true\n",
    )
    .unwrap();
    let out = w.run_as(
        &w.reader,
        &[
            "--config",
            config.to_str().unwrap(),
            "pool",
            "--identity",
            "a",
            "--release-after",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_sizes_the_pool() {
    let w = World::start("pool-config").await;
    let config = w.path("agent.yaml");
    std::fs::write(&config, "k8s_coldstart:\n  max_parallel_cold_start: 3\n").unwrap();
    let out = w.run_as(
        &w.admin,
        &[
            "--config",
            config.to_str().unwrap(),
            "pool",
            "--identity",
            "a",
            "--release-after",
            "true",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cold-start-0..2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leases_cannot_be_created_at_all_a_cold_start_proceeds_or_enforce_refuses() {
    let w = World::start("no-namespace").await;
    // The namespace does not exist: every create is answered 404.
    let out = w.run_as(
        &w.admin,
        &[
            "pool",
            "-n",
            "missing",
            "--size",
            "2",
            "--identity",
            "a",
            "--release-after",
            "sh",
            "-c",
            "exit 6",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("answered 404") && stderr.contains("unthrottled"),
        "{stderr}"
    );
    let out = w.run_as(
        &w.admin,
        &[
            "pool",
            "-n",
            "missing",
            "--size",
            "2",
            "--identity",
            "a",
            "--enforce",
            "--release-after",
            "true",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("namespace \"missing\""), "{stderr}");
}

/// A cold-start member that took the only slot but may not renew it (no `update`) is refused
/// twice and falls back to running unthrottled. Its lease-fenced work must still stop by the
/// slot's deadline, and the lease is given up only then, so the member that takes the slot next
/// never works beside it. The first design extended the running work to unbounded and released
/// at once: the two overlapped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_never_lets_lease_work_run_beside_the_next_holder() {
    let w = World::start("fallback-overlap").await;
    let log = w.path("work");
    let script = support::worker(&log, "");
    let args = |id: &str| -> Vec<String> {
        [
            "pool",
            "--size",
            "1",
            "--identity",
            id,
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--release-after",
            "sh",
            "-c",
            &script,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let a_args = args("a");
    let mut a = w.spawn_as(
        &w.no_update,
        "a",
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    eventually(Duration::from_secs(10), "a works under the slot", || {
        support::intervals(&log)
            .iter()
            .any(|i| i.tag.starts_with("a/0/"))
    })
    .await;
    let b_args = args("b");
    let mut b = w.spawn("b", &b_args.iter().map(String::as_str).collect::<Vec<_>>());
    eventually(Duration::from_secs(20), "b works under the slot", || {
        support::intervals(&log)
            .iter()
            .any(|i| i.tag.starts_with("b/"))
    })
    .await;
    // Long enough for any overlap to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = support::intervals(&log);
    a.terminate();
    b.terminate();
    let _ = a.exit(Duration::from_secs(10)).await;
    let _ = b.exit(Duration::from_secs(10)).await;
    let leased = all.iter().find(|i| i.tag.starts_with("a/0/")).unwrap();
    let next = all.iter().find(|i| i.tag.starts_with("b/")).unwrap();
    assert!(
        leased.last < next.first,
        "a's lease work ran {} ms into b's: {all:?}",
        (leased.last - next.first) / 1_000_000
    );
    assert!(
        a.log_text()
            .contains("proceeding without them (unthrottled)"),
        "{}",
        a.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_turned_off_runs_the_command_without_leases_and_ends_with_its_code() {
    let w = World::start("pool-coldstart-off").await;
    let config = w.path("dragent.yaml");
    std::fs::write(&config, "k8s_coldstart:\n  enabled: false\n").unwrap();
    let env = w.path("env");
    let script = format!(
        "echo \"lease=${{LEASEHOLD_LEASE-unset}} epoch=${{LEASEHOLD_EPOCH-unset}}\" > {}; exit 4",
        env.display()
    );
    let args = |script: &str| {
        [
            "--config",
            config.to_str().unwrap(),
            "pool",
            "--identity",
            "a",
            "--release-after",
            "sh",
            "-c",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([script.to_owned()])
        .collect::<Vec<_>>()
    };
    let out = w.run_as(
        &w.admin,
        &args(&script).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the command's own code: {stderr}"
    );
    assert!(stderr.contains("without throttling"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "lease=unset epoch=unset\n",
        "no lease, so no lease variables"
    );
    assert_eq!(w.sim.counters().total(), 0, "not one request for a lease");

    // A SIGTERM stops the command, and the agent ends with the code it ended with.
    let started = w.path("started");
    let script = format!(
        "trap 'exit 9' TERM; touch {}; while :; do sleep 0.05; done",
        started.display()
    );
    let mut agent = w.spawn(
        "coldstart-off",
        &args(&script).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    eventually(Duration::from_secs(10), "the command runs", || {
        started.exists()
    })
    .await;
    agent.terminate();
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(9), "{}", agent.log_text());
}

/// A pool member that waits for a slot (every slot held, the next term reserved by another)
/// sends nothing but its stream: the state that stream delivers, streamed in its one watch,
/// is the API server's answer that makes it ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_member_is_ready_once_its_stream_has_synced() {
    let w = World::start("ready").await;
    let spawn = |i: usize, listen: Option<&str>| {
        let status = w.path(&format!("r{i}.status"));
        let id = format!("r{i}");
        let mut args = vec![
            "pool",
            "--hold",
            "--prefix",
            "ready",
            "--size",
            "1",
            "--identity",
            &id,
            "--status-file",
            status.to_str().unwrap(),
        ];
        if let Some(l) = listen {
            args.extend(["--listen", l]);
        }
        w.spawn(&id, &args)
    };
    let _holder = spawn(0, None);
    eventually(Duration::from_secs(10), "r0 holds the slot", || {
        status(&w.path("r0.status"), "leader").as_deref() == Some("true")
    })
    .await;
    let (l1, l2) = (support::free_addr(), support::free_addr());
    let _a = spawn(1, Some(&l1));
    let _b = spawn(2, Some(&l2));
    // Both see the holder (their stream synced), one of them reserves the next term.
    eventually(Duration::from_secs(10), "the next term is reserved", || {
        w.lease("ready-0")
            .and_then(|l| {
                l["metadata"]["annotations"]["leasehold.io/next-holder"]
                    .as_str()
                    .map(str::to_owned)
            })
            .is_some()
    })
    .await;
    for (who, listen) in [("r1", &l1), ("r2", &l2)] {
        let waited = std::time::Instant::now();
        while support::get(listen, "/readyz").await.0 != 200 {
            if waited.elapsed() > Duration::from_secs(10) {
                let (code, metrics) = support::get(listen, "/metrics").await;
                assert_eq!(code, 200);
                panic!(
                    "{who} waits, its stream synced, and is not ready; its requests:\n{}",
                    metrics
                        .lines()
                        .filter(|l| l.starts_with("leasehold_api_requests_total"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
