//! The vendors' documented config blocks, verbatim, drive the real binary against the simulated
//! API server with the timing and names they give.

mod support;

use std::time::Duration;
use support::{World, eventually};

/// Elastic Agent's documented `kubernetes_leaderelection` block with the comment markers
/// removed: the provider as one dotted key, the durations as bare seconds. Its `kube_config`
/// path does not exist here; the `--kubeconfig` flag overrides it, as flags override the file.
const ELASTIC: &str = "\
providers.kubernetes_leaderelection:
  enabled: true
  kube_config: /Users/elastic-agent/.kube/config
  kube_client_options:
    qps: 5
    burst: 10
  leader_lease: elastic-agent-cluster-leader
  leader_retryperiod: 2
  leader_leaseduration: 15
  leader_renewdeadline: 10
";

/// The Sysdig agent's documented keys (dragent.yaml).
const SYSDIG: &str = "\
k8s_coldstart:
  enabled: true
  max_parallel_cold_start: 10
  namespace: sysdig-agent
  enforce_leader_election: false
k8s_delegation_election: true
k8s_delegated_nodes: 2
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elastics_documented_block_elects_with_its_lease_and_timing() {
    let w = World::start("config-elastic").await;
    let config = w.path("elastic-agent.yml");
    std::fs::write(&config, ELASTIC).unwrap();
    let status = w.path("status");
    let mut agent = w.spawn(
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
        "it leads the documented lease",
        || w.holder("elastic-agent-cluster-leader").as_deref() == Some("agent-1"),
    )
    .await;
    let spec = &w.lease("elastic-agent-cluster-leader").unwrap()["spec"];
    assert_eq!(spec["leaseDurationSeconds"], 15, "{spec}");
    eventually(
        Duration::from_secs(5),
        "the status file says leader",
        || support::status(&status, "leader").as_deref() == Some("true"),
    )
    .await;
    // A renew every retry period (2 s): the renewTime moves within 4 s.
    let first = spec["renewTime"].clone();
    eventually(
        Duration::from_secs(5),
        "a renew on the retry period",
        || w.lease("elastic-agent-cluster-leader").unwrap()["spec"]["renewTime"] != first,
    )
    .await;
    agent.terminate();
    assert!(agent.exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_mixing_dotted_and_nested_keys_drives_elect() {
    let w = World::start("config-mixed").await;
    let config = w.path("mixed.yml");
    std::fs::write(
        &config,
        "providers.kubernetes_leaderelection.leader_lease: mixed\n\
         providers:\n  kubernetes_leaderelection:\n    leader_leaseduration: 4\n    \
         leader_renewdeadline: 3s\n    kubernetes_leaderelection_unused_but_nested: 1\n",
    )
    .unwrap();
    // An unknown nested key is still refused, with its full dotted path.
    let out = w.run_as(&w.admin, &["--config", config.to_str().unwrap(), "elect"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "providers.kubernetes_leaderelection.kubernetes_leaderelection_unused_but_nested \
             (line 6)"
        ),
        "{stderr}"
    );
    std::fs::write(
        &config,
        "providers.kubernetes_leaderelection.leader_lease: mixed\n\
         providers:\n  kubernetes_leaderelection:\n    leader_leaseduration: 4\n    \
         leader_renewdeadline: 3s\n    leader_retryperiod: 0.5\n",
    )
    .unwrap();
    let mut agent = w.spawn(
        "mixed",
        &[
            "--config",
            config.to_str().unwrap(),
            "elect",
            "--identity",
            "agent-1",
        ],
    );
    eventually(
        Duration::from_secs(10),
        "it leads the dotted key's lease",
        || w.holder("mixed").as_deref() == Some("agent-1"),
    )
    .await;
    assert_eq!(w.lease("mixed").unwrap()["spec"]["leaseDurationSeconds"], 4);
    agent.terminate();
    assert!(agent.exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysdigs_documented_keys_drive_cold_start_and_delegation() {
    let w = World::start("config-sysdig").await;
    let config = w.path("dragent.yaml");
    std::fs::write(&config, SYSDIG).unwrap();
    let config = config.to_str().unwrap();

    let out = w.run_as(
        &w.admin,
        &[
            "--config",
            config,
            "pool",
            "--identity",
            "node-1",
            "--release-after",
            "true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cold: Vec<String> = (0..10)
        .map(|i| format!("cold-start-{i}"))
        .filter(|name| w.sim.lease("sysdig-agent", name).is_some())
        .collect();
    assert_eq!(cold.len(), 1, "one slot of ten, in sysdig-agent: {cold:?}");
    assert!(w.sim.lease("sysdig-agent", "cold-start-10").is_none());

    let mut delegate = w.spawn(
        "delegate",
        &["--config", config, "pool", "--identity", "node-1", "--hold"],
    );
    eventually(
        Duration::from_secs(10),
        "it holds a delegation slot",
        || {
            (0..2).any(|i| {
                w.sim
                    .lease("sysdig-agent", &format!("delegation-{i}"))
                    .is_some_and(|l| l["spec"]["holderIdentity"] == "node-1")
            })
        },
    )
    .await;
    delegate.terminate();
    assert!(delegate.exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_turned_off_holds_no_lease_and_says_so() {
    let w = World::start("config-no-delegation").await;
    let config = w.path("dragent.yaml");
    std::fs::write(
        &config,
        "k8s_coldstart:\n  namespace: sysdig-agent\nk8s_delegation_election: false\n",
    )
    .unwrap();
    let status = w.path("delegation");
    let mut agent = w.spawn(
        "no-delegation",
        &[
            "--config",
            config.to_str().unwrap(),
            "pool",
            "--identity",
            "node-1",
            "--hold",
            "--status-file",
            status.to_str().unwrap(),
        ],
    );
    eventually(Duration::from_secs(10), "the status file says no", || {
        support::status(&status, "leader").as_deref() == Some("false")
    })
    .await;
    assert!(
        agent.log_text().contains("delegation is off"),
        "{}",
        agent.log_text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.sim.counters().total(), 0, "not one request for a lease");
    for i in 0..2 {
        assert!(
            w.sim
                .lease("sysdig-agent", &format!("delegation-{i}"))
                .is_none()
        );
    }
    agent.terminate();
    assert!(agent.exit(Duration::from_secs(5)).await.success());
}
