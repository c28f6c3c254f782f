//! `leasehold get`, `leasehold sim`, the config file and the exit codes.

mod support;

use std::time::Duration;
use support::{World, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_holders_expiry_and_transitions() {
    let w = World::start("get").await;
    let out = w.run_as(&w.admin, &["get"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.\n"
    );

    let started = std::time::Instant::now();
    let mut a = w.spawn(
        "a",
        &["elect", "--lease", "controller", "--identity", "pod-a"],
    );
    eventually(Duration::from_secs(10), "pod-a leads", || {
        w.holder("controller").as_deref() == Some("pod-a")
    })
    .await;
    w.sim.add_namespace("other");
    w.sim
        .seed_lease(
            "other",
            serde_json::json!({"metadata": {"name": "free"}, "spec": {"leaseTransitions": 4}}),
        )
        .unwrap();

    let out = w.run_as(&w.admin, &["get", "leases"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "HOLDER", "AGE", "EXPIRES", "TRANSITIONS"]);
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(&rows[1][..2], ["controller", "pod-a"], "{table}");
    // The lease was created after `started`, and the server keeps whole seconds of its
    // creation (as a real one does), so the age is at most the time since then plus one: "1s"
    // whenever the creation's second turned over, more on a slow machine, never a negative age.
    let age: u64 = rows[1][2]
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("AGE is not whole seconds: {table}"));
    assert!(age <= started.elapsed().as_secs() + 1, "{table}");
    assert_eq!(rows[1][3], "in");
    assert!(rows[1][4].ends_with('s'), "{table}");
    assert_eq!(rows[1][5], "0");

    let out = w.run_as(&w.admin, &["get", "-A", "-o", "wide"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table.contains("RENEWED") && table.contains("DURATION") && table.contains("15s"),
        "{table}"
    );
    let other: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("other"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(other[..2], ["other", "free"]);
    assert_eq!(other[3], "<none>");
    assert_eq!(other[4], "4");

    let out = w.run_as(&w.admin, &["get", "-n", "default", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "controller");
    assert_eq!(rows[0]["holderIdentity"], "pod-a");
    assert_eq!(rows[0]["leaseDurationSeconds"], 15);
    assert!(rows[0]["expires"].as_str().unwrap().starts_with("20"));

    let out = w.run_as(&w.admin, &["get", "-o", "yaml"]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("name: controller") && yaml.contains("holderIdentity: pod-a"),
        "{yaml}"
    );

    let out = w.run_as(&w.admin, &["get", "pods"]);
    assert_eq!(out.status.code(), Some(2));
    a.terminate();
    a.exit(Duration::from_secs(10)).await;
}

/// The cells of `line` under each header of `header`: a column starts where its header does,
/// so an empty cell reads as empty (splitting on spaces would drop it).
fn cells(header: &str, line: &str) -> Vec<String> {
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts
                .get(n + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            line.get(start.min(end)..end)
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_a_cold_start_pool_as_kubectl_does_then_expiry_and_transitions() {
    let w = World::start("get-pool").await;
    let now = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap();
    // Sysdig's cold-start slots, created out of order: even ones held by a node, the others
    // free, never held (no holder) or released (an empty holder, as a release writes it).
    let holder = |i: usize| (i % 2 == 0).then(|| format!("node-{i}"));
    for i in [7, 0, 11, 2, 10, 1, 5, 3, 9, 4, 8, 6] {
        let spec = match (holder(i), i % 4) {
            (Some(node), _) => serde_json::json!({"holderIdentity": node,
                "leaseDurationSeconds": 10, "acquireTime": now, "renewTime": now,
                "leaseTransitions": i}),
            (None, 1) => serde_json::json!({}),
            (None, _) => serde_json::json!({"holderIdentity": "", "leaseDurationSeconds": 1,
                "renewTime": now, "leaseTransitions": i}),
        };
        w.sim
            .seed_lease(
                "sysdig-agent",
                serde_json::json!({"metadata": {"name": format!("cold-start-{i}")}, "spec": spec}),
            )
            .unwrap();
    }

    let out = w.run_as(&w.admin, &["get", "leases", "-n", "sysdig-agent"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        cells(lines[0], lines[0]),
        ["NAME", "HOLDER", "AGE", "EXPIRES", "TRANSITIONS"],
        "kubectl's columns first, then leasehold's: {table}"
    );
    let rows: Vec<Vec<String>> = lines[1..].iter().map(|l| cells(lines[0], l)).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let slots: Vec<String> = (0..12).map(|i| format!("cold-start-{i}")).collect();
    assert_eq!(names, slots, "the slots in natural order: {table}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row[1],
            holder(i).unwrap_or_default(),
            "cold-start-{i}: the holder, empty when free: {table}"
        );
        assert!(
            row[2]
                .strip_suffix('s')
                .is_some_and(|n| n.parse::<u32>().is_ok()),
            "cold-start-{i}: an age in seconds, as kubectl writes it: {table}"
        );
        match holder(i) {
            Some(_) => assert!(row[3].starts_with("in "), "{table}"),
            None => assert_eq!(row[3], "<none>", "{table}"),
        }
        let transitions = if i % 4 == 1 {
            "<none>".to_owned()
        } else {
            i.to_string()
        };
        assert_eq!(row[4], transitions, "{table}");
    }

    // kubectl itself, where it is installed: the same names, holders and column widths.
    let Ok(kubectl) = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&w.admin)
        .args(["get", "leases", "-n", "sysdig-agent"])
        .output()
    else {
        eprintln!("kubectl is not installed: leasehold's table was not compared with kubectl's");
        return;
    };
    let theirs = String::from_utf8_lossy(&kubectl.stdout).into_owned();
    assert!(kubectl.status.success(), "{theirs}");
    let their_lines: Vec<&str> = theirs.lines().collect();
    assert_eq!(
        cells(their_lines[0], their_lines[0]),
        ["NAME", "HOLDER", "AGE"]
    );
    let age_at = |header: &str| header.find("AGE").unwrap();
    assert_eq!(
        age_at(lines[0]),
        age_at(their_lines[0]),
        "NAME and HOLDER as wide as kubectl's:\n{table}\n{theirs}"
    );
    let mut their_rows: Vec<Vec<String>> = their_lines[1..]
        .iter()
        .map(|l| cells(their_lines[0], l))
        .collect();
    their_rows.sort_by_key(|r| slots.iter().position(|s| *s == r[0]));
    let name_and_holder = |rows: &[Vec<String>]| -> Vec<(String, String)> {
        rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect()
    };
    assert_eq!(
        name_and_holder(&rows),
        name_and_holder(&their_rows),
        "\n{table}\n{theirs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_refused_credentials_exits_3() {
    let w = World::start("get-rbac").await;
    let nobody = w.path("nobody.kubeconfig");
    let text = std::fs::read_to_string(&w.reader)
        .unwrap()
        .replace("reader-token", "wrong-token");
    std::fs::write(&nobody, text).unwrap();
    let out = w.run_as(&nobody, &["get"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_key_and_line_and_exit_2() {
    let w = World::start("config").await;
    let config = w.path("agent.yaml");
    std::fs::write(
        &config,
        "providers:\n  kubernetes_leaderelection:\n    leader_lease: agent\n    leader_renew_deadline: 10s\n",
    )
    .unwrap();
    w.sim.reset_counters();
    let out = w.run_as(&w.admin, &["--config", config.to_str().unwrap(), "elect"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("leader_renew_deadline") && stderr.contains("line 4"),
        "{stderr}"
    );

    std::fs::write(&config, "k8s_coldstart:\n  max_parallel_cold_start: ten\n").unwrap();
    let out = w.run_as(
        &w.admin,
        &[
            "--config",
            config.to_str().unwrap(),
            "pool",
            "--release-after",
            "true",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");

    let out = w.run_as(&w.admin, &["elect"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lease NAME is required"));
    let out = w.run_as(&w.admin, &["elect", "--lease", "Not_A_Name"]);
    assert_eq!(out.status.code(), Some(2));
    let out = w.run_as(&w.admin, &["frobnicate"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap's usage errors are exit 2 too"
    );
    let out = w.run_as(&w.admin, &["pool", "--size", "2"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--release-after or --hold is required"
    );
    assert_eq!(
        w.sim.counters().total(),
        0,
        "no error above reached the API server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_are_usage_errors_that_name_the_flag_not_panics() {
    // Before: --qps 1e-20, and durations past the core's clock (10000000000h), panicked (exit
    // 101); --interval 0s listed the namespace in a busy loop; a grace period longer than the
    // renew deadline only warned.
    let w = World::start("absurd").await;
    w.sim.reset_counters();
    let elect = ["elect", "--lease", "controller", "--identity", "a"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--qps", "1e-20"], "--qps 1e-20"),
        (vec!["--qps=0"], "--qps 0.0"),
        (vec!["--qps=-1"], "--qps -1.0"),
        (vec!["--qps", "NaN"], "--qps NaN"),
        (vec!["--qps", "inf"], "--qps inf"),
        (vec!["--qps", "1e300"], "--qps 1e300"),
        (vec!["--burst", "0"], "--burst 0"),
        (vec!["--lease-duration", "10000000000h"], "too large"),
        (vec!["--renew-deadline", "10000000000h"], "too large"),
        (vec!["--retry-period", "10000000000h"], "too large"),
        (vec!["--grace-period", "8s"], "--grace-period 8s"),
        (vec!["--grace-period", "0s"], "--grace-period 0s"),
    ];
    for (flags, says) in cases {
        let mut args = elect.to_vec();
        args.extend(&flags);
        check_usage_error(&w, &args, says);
    }
    for args in [
        vec!["heartbeat", "--watch", "--interval", "0s"],
        vec![
            "heartbeat",
            "--name",
            "n",
            "--lease-duration",
            "10000000000h",
        ],
        vec![
            "identity",
            "--component",
            "c",
            "--lease-duration",
            "10000000000h",
        ],
        vec![
            "identity",
            "--component",
            "c",
            "--renew-interval",
            "10000000000h",
        ],
        vec!["gc", "-l", "a=b", "--expired-for", "10000000000h"],
        vec!["pool", "--hold", "--identity", "a", "--grace-period", "9s"],
    ] {
        let says = if args.contains(&"0s") {
            "--interval 0s"
        } else if args.contains(&"9s") {
            "--grace-period 9s"
        } else {
            "too large"
        };
        check_usage_error(&w, &args, says);
    }
    assert_eq!(
        w.sim.counters().total(),
        0,
        "nothing reached the API server"
    );
}

fn check_usage_error(w: &World, args: &[&str], says: &str) {
    let out = w.run_as(&w.admin, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(
        stderr.contains(says),
        "{args:?} should say {says:?}: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elastic_config_drives_elect() {
    let w = World::start("elastic").await;
    let config = w.path("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  kubernetes_leaderelection:\n    enabled: true\n    kube_config: {}\n    \
             kube_client_options:\n      qps: 20\n      burst: 40\n    leader_lease: elastic-agent-cluster-leader\n    \
             leader_leaseduration: 4s\n    leader_renewdeadline: 3s\n    leader_retryperiod: 500ms\n",
            w.admin.display()
        ),
    )
    .unwrap();
    let status = w.path("status");
    let mut agent = w.spawn_as(
        &w.admin,
        "elastic",
        &[
            "--config",
            config.to_str().unwrap(),
            "elect",
            "--identity",
            "agent-1",
            "--status-file",
            status.to_str().unwrap(),
        ],
    );
    eventually(
        Duration::from_secs(10),
        "it leads the configured lease",
        || w.holder("elastic-agent-cluster-leader").as_deref() == Some("agent-1"),
    )
    .await;
    assert_eq!(
        w.lease("elastic-agent-cluster-leader").unwrap()["spec"]["leaseDurationSeconds"],
        4
    );
    // The server stored the lease before the agent read the answer: wait for the agent too.
    eventually(
        Duration::from_secs(5),
        "the status file says leader",
        || support::status(&status, "leader").as_deref() == Some("true"),
    )
    .await;
    agent.terminate();
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_lines_users_grep_for() {
    let w = World::start("json").await;
    let mut agent = w.spawn(
        "json",
        &[
            "--log-format",
            "json",
            "elect",
            "--lease",
            "controller",
            "--identity",
            "a",
        ],
    );
    eventually(Duration::from_secs(10), "a logs that it leads", || {
        agent.log_text().contains("became leader")
    })
    .await;
    agent.terminate();
    agent.exit(Duration::from_secs(10)).await;
    let log = agent.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "became leader"
            && l["lease"] == "controller"
            && l["epoch"] == 0),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "released the lease"),
        "{log}"
    );
}

#[test]
fn sim_serves_a_kubeconfig_that_get_uses() {
    let dir = std::env::temp_dir().join(format!("leasehold-it-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let addr = support::free_addr();
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args([
            "sim",
            "--listen",
            &addr,
            "--kubeconfig-out",
            kubeconfig.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !kubeconfig.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the sim wrote no kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_leasehold"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--transport",
        "http",
        "elect",
        "--lease",
        "job",
        "--identity",
        "me",
        "--",
        "true",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["get", "-A"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["default", "job"], "{table}");
    let rustix_pid = rustix::process::Pid::from_raw(sim.id() as i32).unwrap();
    rustix::process::kill_process(rustix_pid, rustix::process::Signal::INT).unwrap();
    assert_eq!(sim.wait().unwrap().code(), Some(0));
}
