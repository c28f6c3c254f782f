//! The sim's behaviour over real HTTP(S) on loopback: concurrency, watches, faults, counters,
//! authorisation, selectors and the admin endpoint.

mod support;

use leasehold_fake_apiserver::{Faults, SimConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{ADMIN, READONLY};

fn leases(sim: &leasehold_fake_apiserver::Sim, ns: &str) -> String {
    format!(
        "{}/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        sim.url()
    )
}

fn lease(name: &str, holder: &str, labels: Value) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "labels": labels},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": "2026-11-22T05:00:00.000000Z"}})
}

async fn create(
    client: &reqwest::Client,
    sim: &leasehold_fake_apiserver::Sim,
    name: &str,
    holder: &str,
) -> Value {
    let r = client
        .post(leases(sim, "default"))
        .bearer_auth(ADMIN)
        .json(&lease(name, holder, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn racing_writers_on_one_resource_version_have_exactly_one_winner() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let created = create(&client, &sim, "race", "nobody").await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/race", leases(&sim, "default"));
    let writers = (0..24).map(|i| {
        let (client, url, rv) = (client.clone(), url.clone(), rv.clone());
        tokio::spawn(async move {
            let mut body = lease("race", &format!("writer-{i}"), json!({}));
            body["metadata"]["resourceVersion"] = json!(rv);
            client
                .put(url)
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let mut codes = Vec::new();
    for w in writers {
        codes.push(w.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 409).count(), 23, "{codes:?}");
    sim.stop().await;
}

#[tokio::test]
async fn a_watch_sees_every_change_in_order() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let created = create(&client, &sim, "watched", "a").await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let watch_url = format!(
        "{}?watch=1&fieldSelector=metadata.name%3Dwatched&resourceVersion={rv}&timeoutSeconds=3",
        leases(&sim, "default")
    );
    let watcher = client
        .get(watch_url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    // Unrelated writes the watch must not see.
    create(&client, &sim, "other", "x").await;
    let mut current = created;
    for i in 0..50 {
        let mut body = lease("watched", &format!("holder-{i}"), json!({}));
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        let r = client
            .put(format!("{}/watched", leases(&sim, "default")))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        current = r.json().await.unwrap();
    }
    let text = watcher.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let holders: Vec<&str> = events
        .iter()
        .map(|e| e["object"]["spec"]["holderIdentity"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("holder-{i}")).collect();
    assert_eq!(holders, expected);
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "MODIFIED" && e["object"]["metadata"]["name"] == "watched")
    );
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    sim.stop().await;
}

#[tokio::test]
async fn a_watch_of_the_namespace_resumes_from_a_lists_version() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let a = create(&client, &sim, "a", "x").await;
    let b = create(&client, &sim, "b", "x").await;
    let list: Value = client
        .get(leases(&sim, "default"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        listed,
        b["metadata"]["resourceVersion"].as_str().unwrap(),
        "the collection's version is the latest write's"
    );
    let watcher = client
        .get(format!(
            "{}?watch=1&resourceVersion={listed}&allowWatchBookmarks=true&timeoutSeconds=2",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let mut modified = lease("a", "y", json!({}));
    modified["metadata"]["resourceVersion"] = a["metadata"]["resourceVersion"].clone();
    let r = client
        .put(format!("{}/a", leases(&sim, "default")))
        .bearer_auth(ADMIN)
        .json(&modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .delete(format!("{}/b", leases(&sim, "default")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(leases(&sim, "fixtures"))
        .bearer_auth(ADMIN)
        .json(&lease("elsewhere", "z", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    create(&client, &sim, "c", "x").await;
    let text = watcher.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let changes: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["type"] != "BOOKMARK")
        .map(|l| {
            (
                l["type"].as_str().unwrap(),
                l["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")],
        "what came after the list, in this namespace only: {text}"
    );
    let bookmark = lines
        .iter()
        .find(|l| l["type"] == "BOOKMARK")
        .unwrap_or_else(|| panic!("a bookmark at the timeout: {text}"));
    assert_eq!(bookmark["object"]["metadata"].as_object().unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn a_role_that_names_its_leases_may_not_list_or_watch_the_namespace() {
    let mut users = support::users();
    users.push(leasehold_fake_apiserver::User::with_rules(
        "named",
        "named-token",
        vec![
            leasehold_fake_apiserver::Rule::new(&["create"], &["leases"], &["default"], &[]),
            leasehold_fake_apiserver::Rule::new(
                &["get", "watch", "update"],
                &["leases"],
                &["default"],
                &["a"],
            ),
        ],
    ));
    let sim = leasehold_fake_apiserver::Sim::start(SimConfig {
        users,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = support::client(&sim);
    for (query, verb) in [("", "list"), ("?watch=1", "watch")] {
        let r = client
            .get(format!("{}{query}", leases(&sim, "default")))
            .bearer_auth("named-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{verb}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["message"],
            format!(
                "leases.coordination.k8s.io is forbidden: User \"named\" cannot {verb} resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
            )
        );
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(
            body["details"],
            json!({"group": "coordination.k8s.io", "kind": "leases"}),
            "no name: the request named none"
        );
    }
    let by_name = client
        .get(format!(
            "{}?watch=1&fieldSelector=metadata.name%3Da&timeoutSeconds=1",
            leases(&sim, "default")
        ))
        .bearer_auth("named-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_name.status(),
        200,
        "a watch of the named lease is allowed"
    );
    sim.stop().await;
}

#[tokio::test]
async fn an_unchanged_update_does_not_bump_the_resource_version() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let created = create(&client, &sim, "same", "a").await;
    let mut body = lease("same", "a", json!({}));
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let again: Value = client
        .put(format!("{}/same", leases(&sim, "default")))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(again["metadata"]["uid"], created["metadata"]["uid"]);
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_latency_errors_throttling_and_drops() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let get = || {
        client
            .get(format!("{}/absent", leases(&sim, "default")))
            .bearer_auth(ADMIN)
            .send()
    };

    sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(get().await.unwrap().status(), 404);
    assert!(t.elapsed() >= Duration::from_millis(300));

    sim.set_faults(Faults {
        error_permille: 1000,
        ..Faults::default()
    });
    let r = get().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "InternalError");

    sim.set_faults(Faults {
        throttle_permille: 1000,
        retry_after_seconds: 7,
        ..Faults::default()
    });
    let r = get().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");

    sim.set_faults(Faults {
        drop_permille: 1000,
        ..Faults::default()
    });
    assert!(
        get().await.is_err(),
        "the connection is closed without an answer"
    );

    sim.set_faults(Faults {
        error_permille: 500,
        ..Faults::default()
    });
    let mut errors = 0;
    for _ in 0..200 {
        if get().await.unwrap().status() == 500 {
            errors += 1;
        }
    }
    assert!((50..150).contains(&errors), "about half fail: {errors}");

    sim.set_faults(Faults::default());
    let counters = sim.counters();
    assert_eq!(counters.count_status("get", "leases", 429), 1);
    assert_eq!(
        counters.count_status("get", "leases", 0),
        1,
        "drops are counted with status 0"
    );
    assert!(counters.count_status("get", "leases", 500) >= 51);
    sim.stop().await;
}

#[tokio::test]
async fn a_paused_server_answers_after_it_resumes() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    sim.pause();
    let url = format!("{}/absent", leases(&sim, "default"));
    let pending = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "no answer while paused");
    sim.resume();
    assert_eq!(pending.await.unwrap(), 404);
    sim.stop().await;
}

#[tokio::test]
async fn cut_watches_and_restarts_end_streams_and_may_lose_data() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    create(&client, &sim, "kept", "a").await;
    let watch = client
        .get(format!(
            "{}?watch=true&timeoutSeconds=30",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    sim.cut_watches();
    let text = tokio::time::timeout(Duration::from_secs(5), watch.text())
        .await
        .expect("stream ends")
        .unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "the initial ADDED, then the cut: {text}"
    );

    // A restart closes every connection: an open watch ends, pooled connections are gone.
    let watch = client
        .get(format!(
            "{}?watch=true&timeoutSeconds=30",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    sim.restart(true);
    tokio::time::timeout(Duration::from_secs(5), watch.text())
        .await
        .expect("the restart ends the stream")
        .ok();
    assert!(sim.lease("default", "kept").is_some());
    let client = support::client(&sim);
    let rv_before: u64 = create(&client, &sim, "second", "b").await["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    sim.restart(false);
    assert!(sim.lease("default", "kept").is_none());
    let client = support::client(&sim);
    let after = create(&client, &sim, "third", "c").await;
    let rv_after: u64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv_after > rv_before,
        "resourceVersions keep increasing across a data-losing restart"
    );
    let old = client
        .get(format!(
            "{}?watch=1&resourceVersion={rv_before}&timeoutSeconds=1",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let line: Value =
        serde_json::from_str(old.text().await.unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(line["type"], "ERROR");
    assert_eq!(line["object"]["code"], 410);
    sim.stop().await;
}

#[tokio::test]
async fn authentication_and_authorisation() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let url = format!("{}/x", leases(&sim, "default"));
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = client.get(&url).bearer_auth(READONLY).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        "leases.coordination.k8s.io \"x\" is forbidden: User \"lease-readonly\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
    );
    let all = client
        .get(format!("{}/apis/coordination.k8s.io/v1/leases", sim.url()))
        .bearer_auth(READONLY)
        .send()
        .await
        .unwrap();
    let body: Value = all.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("at the cluster scope"),
        "{body}"
    );
    assert_eq!(
        client
            .get(format!("{}/healthz", sim.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.stop().await;
}

#[tokio::test]
async fn selectors_and_pagination() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    for (name, component) in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x")] {
        let r = client
            .post(leases(&sim, "default"))
            .bearer_auth(ADMIN)
            .json(&lease(name, "h", json!({"component": component})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let names = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let by_label: Value = client
        .get(format!(
            "{}?labelSelector=component%3Dx",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(&by_label), ["a", "c", "d"]);
    let page1: Value = client
        .get(format!("{}?limit=2", leases(&sim, "default")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page1), ["a", "b"]);
    assert_eq!(page1["metadata"]["remainingItemCount"], 2);
    let token = page1["metadata"]["continue"].as_str().unwrap();
    let page2: Value = client
        .get(format!(
            "{}?limit=2&continue={token}",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page2), ["c", "d"]);
    assert!(page2["metadata"].get("continue").is_none());
    let bad = client
        .get(format!(
            "{}?fieldSelector=spec.holderIdentity%3Dh",
            leases(&sim, "default")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    sim.stop().await;
}

#[tokio::test]
async fn the_admin_endpoint_controls_faults_and_reads_counters() {
    let sim = support::start(SimConfig::default()).await;
    let client = support::client(&sim);
    let admin = |path: &str| format!("{}/_sim/{path}", sim.url());
    let r = client
        .put(admin("faults"))
        .bearer_auth(ADMIN)
        .json(&json!({"error_permille": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.faults().error_permille, 1000);
    assert_eq!(
        client
            .get(format!("{}/x", leases(&sim, "default")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    let r = client
        .put(admin("faults"))
        .bearer_auth(ADMIN)
        .json(&json!({"errors": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fault names are refused");
    client
        .put(admin("faults"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let counters: Value = client
        .get(admin("counters"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        counters["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == json!(["get", "leases", 500]))
    );
    assert_eq!(
        client
            .post(admin("pause"))
            .bearer_auth(READONLY)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client.post(admin("pause")).send().await.unwrap().status(),
        401
    );
    sim.stop().await;
}

#[tokio::test]
async fn plain_http_and_expired_lease_collection() {
    let sim = support::start(SimConfig {
        tls: false,
        gc_expired_after: Some(Duration::from_millis(100)),
        ..SimConfig::default()
    })
    .await;
    assert!(sim.url().starts_with("http://"));
    assert!(
        sim.kubeconfig("admin", "default")
            .unwrap()
            .contains("server: http://")
    );
    let client = support::client(&sim);
    let mut stale = lease("stale", "gone", json!({}));
    stale["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
    client
        .post(leases(&sim, "default"))
        .bearer_auth(ADMIN)
        .json(&stale)
        .send()
        .await
        .unwrap();
    let mut fresh = lease("fresh", "here", json!({}));
    let now = time::OffsetDateTime::now_utc();
    fresh["spec"]["renewTime"] = json!(format!(
        "{}.000000Z",
        now.format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap()
    ));
    fresh["spec"]["leaseDurationSeconds"] = json!(3600);
    client
        .post(leases(&sim, "default"))
        .bearer_auth(ADMIN)
        .json(&fresh)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        sim.lease("default", "stale").is_none(),
        "the expired lease was collected"
    );
    assert!(sim.lease("default", "fresh").is_some());
    sim.stop().await;
}
