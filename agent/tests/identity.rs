//! `leasehold identity` and `leasehold gc` end to end against the simulated API server.

mod support;

use std::time::Duration;
use support::{World, eventually};

fn identity_leases(w: &World) -> Vec<serde_json::Value> {
    let out = w.run_as(
        &w.admin,
        &["get", "-l", "leasehold.io/component=indexer", "-o", "json"],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_lease_is_named_from_the_host_labelled_owned_and_renewed() {
    let w = World::start("identity").await;
    let args = [
        "identity",
        "--component",
        "indexer",
        "--hostname",
        "NODE-1.Example.COM",
        "--identity",
        "indexer-0",
        "--lease-duration",
        "5s",
        "--renew-interval",
        "300ms",
    ];
    let mut first = w.spawn("first", &args);
    eventually(
        Duration::from_secs(10),
        "the identity lease appears",
        || identity_leases(&w).len() == 1,
    )
    .await;
    let lease = identity_leases(&w).remove(0);
    let name = lease["name"].as_str().unwrap().to_owned();
    assert!(
        name.starts_with("indexer-") && name.len() == "indexer-".len() + 32,
        "{name}"
    );
    assert!(
        name["indexer-".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(lease["labels"]["leasehold.io/component"], "indexer");
    assert_eq!(
        lease["labels"]["kubernetes.io/hostname"],
        "node-1.example.com"
    );
    assert_eq!(lease["leaseDurationSeconds"], 5);
    let holder = lease["holderIdentity"].as_str().unwrap().to_owned();
    assert!(
        holder.starts_with("indexer-0_") && holder.len() == "indexer-0_".len() + 36,
        "{holder}"
    );

    let renewed = w.lease(&name).unwrap()["spec"]["renewTime"].clone();
    eventually(Duration::from_secs(5), "renewed", || {
        w.lease(&name).unwrap()["spec"]["renewTime"] != renewed
    })
    .await;

    // A restart on the same host keeps the name and takes a new holder.
    first.terminate();
    assert_eq!(first.exit(Duration::from_secs(10)).await.code(), Some(0));
    let _again = w.spawn("again", &args);
    eventually(
        Duration::from_secs(10),
        "the new run renews the same lease",
        || {
            w.holder(&name)
                .is_some_and(|h| h != holder && h.starts_with("indexer-0_"))
        },
    )
    .await;
    assert_eq!(
        identity_leases(&w).len(),
        1,
        "no second lease for the same host"
    );

    // Another host: another lease. With POD_NAME and POD_UID it is owned by the Pod.
    let mut other = std::process::Command::new(env!("CARGO_BIN_EXE_leasehold"));
    other
        .env("POD_NAME", "indexer-1")
        .env("POD_UID", "0b7c6a2e-1111-4c3b-8a6f-9d2e3f4a5b6c")
        .env_remove("NODE_NAME")
        .arg("--kubeconfig")
        .arg(&w.admin)
        .args([
            "identity",
            "--component",
            "indexer",
            "--hostname",
            "node-2",
            "--label",
            "team=search",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut other = other.spawn().unwrap();
    eventually(Duration::from_secs(10), "two identity leases", || {
        identity_leases(&w).len() == 2
    })
    .await;
    let second = identity_leases(&w)
        .into_iter()
        .find(|l| l["name"] != name.as_str())
        .unwrap();
    let stored = w.lease(second["name"].as_str().unwrap()).unwrap();
    assert_eq!(stored["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["name"],
        "indexer-1"
    );
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["uid"],
        "0b7c6a2e-1111-4c3b-8a6f-9d2e3f4a5b6c"
    );
    assert_eq!(stored["metadata"]["labels"]["team"], "search");
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 3600);
    assert!(
        w.lease(&name).unwrap()["metadata"]
            .get("ownerReferences")
            .is_none(),
        "no Pod, no owner"
    );

    let out = w.run_as(&w.admin, &["get"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IDENTITY LEASES"), "{text}");
    assert!(text.contains("indexer: 2 alive, 0 expired"), "{text}");
    let _ = other.kill();
    let _ = other.wait();
}

fn seed(w: &World, name: &str, component: Option<&str>, renewed_secs_ago: i64, duration: i64) {
    let renew = (time::OffsetDateTime::now_utc() - time::Duration::seconds(renewed_secs_ago))
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].000000Z"
        ))
        .unwrap();
    let labels = component.map_or(
        serde_json::json!({}),
        |c| serde_json::json!({"leasehold.io/component": c}),
    );
    w.sim
        .seed_lease(
            "default",
            serde_json::json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"holderIdentity": format!("{name}_x"), "leaseDurationSeconds": duration, "renewTime": renew},
            }),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_only_leases_expired_past_the_threshold_and_dry_run_changes_nothing() {
    let w = World::start("gc").await;
    seed(&w, "gone-long", Some("indexer"), 3 * 3600, 3600); // expired 2 h ago
    seed(&w, "gone-recently", Some("indexer"), 3600 + 1800, 3600); // expired 30 min ago
    seed(&w, "alive", Some("indexer"), 5, 3600);
    seed(&w, "other-component", Some("crawler"), 3 * 3600, 3600);
    seed(&w, "unlabelled", None, 3 * 3600, 3600);

    let out = w.run_as(
        &w.admin,
        &["gc", "-l", "leasehold.io/component=indexer", "--dry-run"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("would delete default/gone-long (holder gone-long_x, expired 2h"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("gone-recently") && !stdout.contains("alive"),
        "{stdout}"
    );
    assert!(stdout.contains("1 would be deleted"), "{stdout}");
    for name in [
        "gone-long",
        "gone-recently",
        "alive",
        "other-component",
        "unlabelled",
    ] {
        assert!(w.lease(name).is_some(), "dry run deleted {name}");
    }

    let out = w.run_as(
        &w.admin,
        &[
            "gc",
            "--selector",
            "leasehold.io/component=indexer",
            "--expired-for",
            "1h",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("deleted default/gone-long"), "{stdout}");
    assert!(
        stdout.contains("1 deleted, 0 kept (renewed since listed), 2 not expired long enough"),
        "{stdout}"
    );
    assert!(w.lease("gone-long").is_none());
    for name in ["gone-recently", "alive", "other-component", "unlabelled"] {
        assert!(w.lease(name).is_some(), "gc deleted {name}");
    }

    let out = w.run_as(
        &w.admin,
        &[
            "gc",
            "-l",
            "leasehold.io/component=indexer",
            "--expired-for",
            "10m",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted default/gone-recently"));
    assert!(w.lease("alive").is_some());

    // Without the delete verb: exit 3 and the rule to add.
    seed(&w, "gone-again", Some("indexer"), 3 * 3600, 3600);
    let out = w.run_as(&w.reader, &["gc", "-l", "leasehold.io/component=indexer"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("permission denied: delete leases/gone-again: 403 Forbidden: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("verbs: [\"delete\", \"list\"]"),
        "the rule grants every verb gc uses: {stderr}"
    );
    assert!(w.lease("gone-again").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_identity_the_given_host_names_the_holder_too() {
    let w = World::start("identity-host").await;
    let _agent = w.spawn(
        "host",
        &["identity", "--component", "indexer", "--hostname", "node-1"],
    );
    eventually(
        Duration::from_secs(10),
        "the identity lease appears",
        || identity_leases(&w).len() == 1,
    )
    .await;
    let holder = identity_leases(&w)[0]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        holder.starts_with("node-1_") && holder.len() == "node-1_".len() + 36,
        "{holder}"
    );
}
