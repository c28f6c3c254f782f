//! The conformance suite every transport runs against the simulated API server over HTTPS:
//! written once, called from each adapter's tests with a function that connects that adapter
//! to the sim as a given user (`admin`, all rights; `reader`, get/list/watch only; `named`,
//! create and get/watch/update on the slots `slots-0` and `slots-1` only, as a least-privilege
//! Role that names its leases grants).

use leasehold_core::{
    ApiError, Duration as D, Elector, ElectorConfig, Event, Holder, Identity, Lease, LeaseName,
    LeaseRecord, LossReason, MicroTime, Operation, Pool, PoolConfig, Request, ResourceVersion,
    SlotEvent, SlotNames, Timing, WatchEvent,
};
use leasehold_fake_apiserver::{Faults, Rule, Sim, SimConfig, User, WatchList};
use leasehold_runtime::{
    Backbone, Cause, Clock, CreateMetadata, Delivery, OwnerReference, RequestError, Transport,
    WatchSink, Wire, drive,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The users the suite connects as.
pub fn users() -> Vec<User> {
    vec![
        User::admin("admin", "admin-token"),
        User::with_rules(
            "reader",
            "reader-token",
            vec![Rule::new(
                &["get", "list", "watch"],
                &["leases"],
                &["*"],
                &[],
            )],
        ),
        User::with_rules("nobody", "nobody-token", Vec::new()),
        User::with_rules(
            "named",
            "named-token",
            vec![
                Rule::new(&["create"], &["leases"], &["*"], &[]),
                Rule::new(
                    &["get", "watch", "update"],
                    &["leases"],
                    &["*"],
                    &["slots-0", "slots-1"],
                ),
            ],
        ),
    ]
}

/// Connects through a kubeconfig for `user` of `sim`, written to a file of its own.
pub async fn open<T>(
    connect: &impl AsyncFn(&Path, Duration) -> T,
    sim: &Sim,
    user: &str,
    timeout: Duration,
) -> T {
    let path = kubeconfig_file(
        &sim.kubeconfig(user, "default")
            .expect("a user of the suite"),
    );
    connect(&path, timeout).await
}

/// Writes `text` to a kubeconfig file no other test uses.
pub fn kubeconfig_file(text: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "leasehold-conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).expect("write a kubeconfig");
    path
}

/// A sim with the suite's users.
pub async fn start_sim(config: SimConfig) -> Sim {
    Sim::start(SimConfig {
        users: users(),
        ..config
    })
    .await
    .expect("the sim starts")
}

/// Lease 3 s, renew 2 s, retry 0.5 s: the rules of 15/10/2, scaled down for quick tests.
pub fn timing() -> Timing {
    Timing::new(D::from_secs(3), D::from_secs(2), D::from_millis(500)).expect("valid timing")
}

/// A request for lease `name`.
pub fn request(name: &str, op: Operation) -> Request {
    Request {
        slot: 0,
        lease: LeaseName::new(name).expect("valid name"),
        op,
    }
}

/// A record naming `holder`, 15 s, with microsecond times.
pub fn record(holder: &str) -> LeaseRecord {
    LeaseRecord {
        holder: Holder::from_wire(Some(holder)),
        lease_duration: Some(D::from_secs(15)),
        acquire_time: Some(MicroTime::from_unix_micros(1_795_305_600_123_456)),
        renew_time: Some(MicroTime::from_unix_micros(1_795_305_600_123_456)),
        lease_transitions: Some(0),
        next_holder: Holder::None,
    }
}

/// Metadata for [`delete_and_create_metadata`]: two labels and a Pod owner.
pub fn create_metadata() -> CreateMetadata {
    CreateMetadata {
        labels: [
            (
                "app.kubernetes.io/component".to_owned(),
                "indexer".to_owned(),
            ),
            ("kubernetes.io/hostname".to_owned(), "node-1".to_owned()),
        ]
        .into(),
        owner: Some(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "indexer-0".into(),
            uid: "5b1e8c1a-8d6f-4a8e-9f0e-2f6b3c4d5e6f".into(),
        }),
    }
}

/// Leases created with [`create_metadata`] carry its labels and owner, and keep them through
/// renewals; a delete guarded by a stale resourceVersion is refused with `Conflict` and leaves
/// the lease, one guarded by the current one deletes it; a missing lease is `NotFound`; a user
/// without `delete` gets `Forbidden`.
pub async fn delete_and_create_metadata<W: Wire>(
    connect: impl AsyncFn(&Path, Duration) -> Backbone<W>,
) {
    let sim = start_sim(SimConfig::default()).await;
    let t = open(&connect, &sim, "admin", Duration::from_secs(5))
        .await
        .with_create_metadata(create_metadata());
    let created = t
        .call(request("id", Operation::Create(record("a"))))
        .await
        .expect("create");
    let stored = sim.lease("default", "id").expect("stored");
    assert_eq!(
        stored["metadata"]["labels"]["app.kubernetes.io/component"],
        "indexer"
    );
    assert_eq!(
        stored["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-1"
    );
    assert_eq!(stored["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["name"],
        "indexer-0"
    );
    let renewed = t
        .call(request(
            "id",
            Operation::Update {
                resource_version: created.resource_version.clone(),
                record: LeaseRecord {
                    renew_time: Some(MicroTime::from_unix_micros(1_795_305_610_000_000)),
                    ..record("a")
                },
            },
        ))
        .await
        .expect("renew");
    assert_ne!(renewed.resource_version, created.resource_version);
    let stored = sim.lease("default", "id").expect("stored");
    assert_eq!(
        stored["metadata"]["labels"]["app.kubernetes.io/component"], "indexer",
        "kept on renew"
    );
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["uid"],
        "5b1e8c1a-8d6f-4a8e-9f0e-2f6b3c4d5e6f"
    );

    // The delete raced a renew: the precondition protects the renewed lease.
    assert_eq!(
        t.delete("id", &created.resource_version)
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Conflict)
    );
    assert!(
        sim.lease("default", "id").is_some(),
        "a renewed lease is never deleted"
    );
    assert_eq!(t.delete("id", &renewed.resource_version).await, Ok(()));
    assert!(sim.lease("default", "id").is_none());
    assert_eq!(
        t.delete("id", &renewed.resource_version)
            .await
            .map_err(|e| e.kind),
        Err(ApiError::NotFound)
    );

    let reader = open(&connect, &sim, "reader", Duration::from_secs(5)).await;
    t.call(request("kept", Operation::Create(record("a"))))
        .await
        .expect("create");
    let lease = reader
        .call(request("kept", Operation::Get))
        .await
        .expect("get");
    assert_eq!(
        reader
            .delete("kept", &lease.resource_version)
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Forbidden)
    );
    sim.stop().await;
}

/// Each operation and each error mapping.
pub async fn operations<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    let sim = start_sim(SimConfig::default()).await;
    let t = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    assert_eq!(
        t.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::NotFound)
    );
    let created = t
        .call(request("l", Operation::Create(record("a"))))
        .await
        .expect("create");
    assert_eq!(
        created.record.renew_time,
        Some(MicroTime::from_unix_micros(1_795_305_600_123_456)),
        "microseconds round-trip"
    );
    assert_eq!(
        sim.lease("default", "l").expect("stored")["spec"]["renewTime"],
        "2026-11-22T00:00:00.123456Z"
    );
    assert_eq!(
        t.call(request("l", Operation::Create(record("b"))))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::AlreadyExists)
    );
    let rv = created.resource_version.clone();
    let updated = t
        .call(request(
            "l",
            Operation::Update {
                resource_version: rv.clone(),
                record: record("b"),
            },
        ))
        .await
        .expect("update");
    assert_ne!(updated.resource_version, rv);
    assert_eq!(
        t.call(request(
            "l",
            Operation::Update {
                resource_version: rv,
                record: record("c")
            }
        ))
        .await
        .map_err(|e| e.kind),
        Err(ApiError::Conflict)
    );
    // Deleted by someone else since it was read (`kubectl delete`): the API server answers the
    // update by creating the lease anew (201), whatever resourceVersion it carried. The
    // transport reports that the lease the update was for was gone.
    let other = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    other
        .delete("l", &updated.resource_version)
        .await
        .expect("delete");
    assert_eq!(
        t.call(request(
            "l",
            Operation::Update {
                resource_version: updated.resource_version.clone(),
                record: record("e")
            }
        ))
        .await
        .map_err(|e| e.kind),
        Err(ApiError::NotFound)
    );
    assert_eq!(
        sim.lease("default", "l").expect("created by the update")["spec"]["holderIdentity"],
        "e"
    );
    let mut bad = record("d");
    bad.lease_duration = Some(D::from_secs(0));
    assert_eq!(
        t.call(request("m", Operation::Create(bad)))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Invalid)
    );

    let reader = open(&connect, &sim, "reader", Duration::from_secs(5)).await;
    assert_eq!(
        reader
            .call(request("x", Operation::Create(record("r"))))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Forbidden)
    );

    sim.set_faults(Faults {
        throttle_permille: 1000,
        retry_after_seconds: 9,
        ..Faults::default()
    });
    assert_eq!(
        t.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::TooManyRequests {
            retry_after: Some(D::from_secs(9))
        })
    );
    sim.set_faults(Faults {
        error_permille: 1000,
        ..Faults::default()
    });
    assert_eq!(
        t.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Server { status: 500 })
    );
    sim.set_faults(Faults {
        drop_permille: 1000,
        ..Faults::default()
    });
    assert_eq!(
        t.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Transport)
    );
    sim.set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let slow = open(&connect, &sim, "admin", Duration::from_millis(300)).await;
    assert_eq!(
        slow.call(request("l", Operation::Get))
            .await
            .map_err(|e| e.kind),
        Err(ApiError::Timeout)
    );
    sim.stop().await;
}

/// A pool's reservation on the wire: a write that names the next holder carries it as the
/// annotation `leasehold.io/next-holder`, leaves the spec and every other annotation as they
/// were, reads back as `next_holder`, is carried by the holder's renew and removed by a take.
pub async fn reservation<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    let sim = start_sim(SimConfig::default()).await;
    let holder = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    let waiter = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    sim.seed_lease(
        "default",
        serde_json::json!({
            "metadata": {"name": "slot-0", "annotations": {"team": "infra"}},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "acquireTime": "2026-11-22T00:00:00.123456Z",
                "renewTime": "2026-11-22T00:00:00.123456Z",
                "leaseTransitions": 0
            }
        }),
    )
    .expect("seeded");
    let annotated = sim.lease("default", "slot-0").expect("stored");
    let held = holder
        .call(request("slot-0", Operation::Get))
        .await
        .expect("get");
    let seen = waiter
        .call(request("slot-0", Operation::Get))
        .await
        .expect("get");
    assert_eq!(seen, held);
    assert_eq!(held.record.next_holder, Holder::None);
    let mut reservation = seen.record.clone();
    reservation.next_holder = Holder::from_wire(Some("c"));
    let reserved = waiter
        .call(request(
            "slot-0",
            Operation::Update {
                resource_version: seen.resource_version.clone(),
                record: reservation,
            },
        ))
        .await
        .expect("reserve");
    assert_eq!(reserved.record.next_holder, Holder::from_wire(Some("c")));
    assert!(reserved.record.same_spec(&held.record), "{reserved:?}");
    let stored = sim.lease("default", "slot-0").expect("stored");
    assert_eq!(
        stored["metadata"]["annotations"]["leasehold.io/next-holder"],
        "c"
    );
    assert_eq!(stored["metadata"]["annotations"]["team"], "infra");
    assert_eq!(
        stored["spec"], annotated["spec"],
        "the spec is left as it was"
    );
    // The holder renews over the reservation's version (its cache is older): carried on.
    let mut renew = reserved.record.clone();
    renew.renew_time = Some(MicroTime::from_unix_micros(1_795_305_601_000_000));
    let renewed = holder
        .call(request(
            "slot-0",
            Operation::Update {
                resource_version: reserved.resource_version.clone(),
                record: renew,
            },
        ))
        .await
        .expect("renew");
    assert_eq!(renewed.record.next_holder, Holder::from_wire(Some("c")));
    // The reserved member's take ends the reservation, and keeps the other annotation.
    let taken = waiter
        .call(request(
            "slot-0",
            Operation::Update {
                resource_version: renewed.resource_version.clone(),
                record: record("c"),
            },
        ))
        .await
        .expect("take");
    assert_eq!(taken.record.next_holder, Holder::None);
    let stored = sim.lease("default", "slot-0").expect("stored");
    assert!(
        stored["metadata"]["annotations"]
            .get("leasehold.io/next-holder")
            .is_none(),
        "{stored}"
    );
    assert_eq!(stored["metadata"]["annotations"]["team"], "infra");
}

/// A follower of a quiet lease whose version has left the server's watch history: every
/// resume of its watch answers 410, and every read gives the same old version back. The first
/// design re-read and re-watched at once, at network speed; now each reopen waits a jittered
/// retry period, so over 3 s at a 500 ms retry it watches a handful of times, not thousands.
pub async fn a_quiet_lease_past_the_watch_history_cannot_loop<T: Transport>(
    connect: impl AsyncFn(&Path, Duration) -> T,
) {
    let sim = start_sim(SimConfig {
        watch_history: 4,
        ..SimConfig::default()
    })
    .await;
    let t = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    // Held by someone else for an hour: the follower never takes it.
    let mut held = record("someone");
    held.lease_duration = Some(D::from_secs(3600));
    t.call(request("quiet", Operation::Create(held)))
        .await
        .expect("create");
    for i in 0..8 {
        t.call(request(
            &format!("churn-{i}"),
            Operation::Create(record("c")),
        ))
        .await
        .expect("create");
    }
    sim.reset_counters();
    let (stop, task) = spawn_elector(t, "quiet", 0, Arc::default());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counters = sim.counters();
    let _ = stop.send(());
    let _ = task.await;
    let watches = counters.count("watch", "leases");
    assert!(
        (1..=8).contains(&watches),
        "{watches} watches in 3 s: {counters:?}"
    );
    assert!(
        counters.count("get", "leases") <= 10,
        "reads are paced too: {counters:?}"
    );
    sim.stop().await;
}

/// Listing one namespace or all, with a label selector, across pages.
pub async fn list<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    let sim = start_sim(SimConfig::default()).await;
    sim.add_namespace("other");
    let t = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    for i in 0..3 {
        t.call(request(&format!("l{i}"), Operation::Create(record("a"))))
            .await
            .expect("create");
    }
    let all = t.list(None, None).await.expect("list all");
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|l| l.namespace == "default" && l.created.is_some())
    );
    assert_eq!(
        all.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["l0", "l1", "l2"]
    );
    assert!(
        all[0]
            .lease
            .record
            .holder
            .is(&Identity::new("a").expect("identity"))
    );
    assert!(t.list(Some("other"), None).await.expect("list").is_empty());
    // More than a page (500): the transport follows `continue`.
    for i in 0..502 {
        let object = serde_json::json!({"metadata": {"name": format!("p{i:03}")}, "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15}});
        sim.seed_lease("other", object).expect("seeded");
    }
    let paged = t.list(Some("other"), None).await.expect("list");
    assert_eq!(paged.len(), 502);
    assert_eq!(paged.last().map(|l| l.name.as_str()), Some("p501"));
    assert!(
        t.list(Some("default"), Some("app=none"))
            .await
            .expect("list")
            .is_empty()
    );
    let reader = open(&connect, &sim, "reader", Duration::from_secs(5)).await;
    assert_eq!(
        reader.list(Some("default"), None).await.map(|l| l.len()),
        Ok(3)
    );
    sim.stop().await;
}

async fn next_watch_event(events: &mut mpsc::UnboundedReceiver<Delivery>) -> WatchEvent {
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(delivery)) => delivery.event,
        Ok(None) | Err(_) => panic!("no watch event within 5 s"),
    }
}

/// A watch by name: sees changes, resumes from a resourceVersion, ends when cut, and reports
/// 410 when its resourceVersion is too old.
pub async fn watch<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    let sim = start_sim(SimConfig {
        watch_history: 4,
        ..SimConfig::default()
    })
    .await;
    let t = Arc::new(open(&connect, &sim, "admin", Duration::from_secs(5)).await);
    let created = t
        .call(request("w", Operation::Create(record("a"))))
        .await
        .expect("create");
    t.call(request("other", Operation::Create(record("x"))))
        .await
        .expect("create");
    let (inputs, mut events) = mpsc::unbounded_channel();
    let sink = WatchSink::new(0, 1, inputs);
    let watcher = tokio::spawn({
        let t = t.clone();
        let rv = created.resource_version.clone();
        async move {
            t.watch(LeaseName::new("w").expect("name"), Some(rv), sink)
                .await
        }
    });
    let updated = t
        .call(request(
            "w",
            Operation::Update {
                resource_version: created.resource_version.clone(),
                record: record("b"),
            },
        ))
        .await
        .expect("update");
    match next_watch_event(&mut events).await {
        WatchEvent::Changed(lease) => assert_eq!(
            lease.resource_version, updated.resource_version,
            "only the watched lease, from the version given"
        ),
        other => panic!("expected the update, got {other:?}"),
    }
    sim.cut_watches();
    assert!(matches!(
        next_watch_event(&mut events).await,
        WatchEvent::Ended | WatchEvent::Failed
    ));
    let _ = watcher.await;
    for i in 0..6 {
        t.call(request(
            &format!("churn-{i}"),
            Operation::Create(record("c")),
        ))
        .await
        .expect("create");
    }
    let (inputs, mut events) = mpsc::unbounded_channel();
    let sink = WatchSink::new(0, 2, inputs);
    let old = ResourceVersion::new("2").expect("rv");
    tokio::spawn({
        let t = t.clone();
        async move {
            t.watch(LeaseName::new("w").expect("name"), Some(old), sink)
                .await
        }
    });
    assert_eq!(next_watch_event(&mut events).await, WatchEvent::Expired);
    sim.stop().await;
}

/// The slots `slots-0`, `slots-1` and `slots-2` of the pool streams' tests.
fn slot_names() -> SlotNames {
    SlotNames::new("slots", 3).expect("a valid prefix")
}

/// The slot a pool stream's tests give the stream itself: one past the last, as a pool does.
const STREAM_SLOT: u16 = 3;

/// Opens a pool stream of [`slot_names`] on `t` from `resource_version`; its deliveries come
/// out of the receiver.
fn open_slots<T: Transport>(
    t: &Arc<T>,
    resource_version: Option<ResourceVersion>,
) -> (
    mpsc::UnboundedReceiver<Delivery>,
    tokio::task::JoinHandle<()>,
) {
    let (deliveries, delivered) = mpsc::unbounded_channel();
    let sink = WatchSink::new(STREAM_SLOT, 1, deliveries);
    let t = t.clone();
    let task =
        tokio::spawn(async move { t.watch_slots(slot_names(), resource_version, sink).await });
    (delivered, task)
}

/// The next delivery of a pool stream that is not a bookmark (the sim sends them on a timer).
async fn next_slot_delivery(delivered: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), delivered.recv()).await {
            Ok(Some(Delivery {
                event: WatchEvent::Bookmark(_),
                lease_slot: None,
                ..
            })) => continue,
            Ok(Some(delivery)) => return delivery,
            Ok(None) | Err(_) => panic!("no delivery within 5 s"),
        }
    }
}

/// A pool's one stream of its slots: it streams the list in its watch (one request; or lists
/// the namespace, then watches, where the server refuses that) and delivers each slot that exists
/// to its own slot (not the absent one, not other leases, not `slots-01` or `slots-3`), then
/// `Synced` to the stream's slot; then a later write and a deletion, each to its slot. Resumed
/// from a version, it delivers only what came after, without listing; resumed from one past
/// the server's history, it ends `Expired`.
pub async fn pool_stream<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    for watch_list in [WatchList::Streams, WatchList::Refuses, WatchList::Ignores] {
        pool_stream_on(&connect, watch_list).await;
    }
}

/// [`pool_stream`] against a server that streams lists, one that refuses to (before
/// Kubernetes 1.32, or 1.33), and one that takes the request for a plain watch: what reaches
/// the server differs, and nothing else.
async fn pool_stream_on<T: Transport>(
    connect: &impl AsyncFn(&Path, Duration) -> T,
    watch_list: WatchList,
) {
    let sim = start_sim(SimConfig {
        watch_history: 8,
        watch_list,
        // A server that ignores the request is known by its first bookmark.
        bookmark_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let t = Arc::new(open(connect, &sim, "admin", Duration::from_secs(5)).await);
    let create = async |name: &str, holder: &str| {
        t.call(request(name, Operation::Create(record(holder))))
            .await
            .expect("create")
    };
    let first = create("slots-0", "a").await;
    let third = create("slots-2", "c").await;
    let mut strangers = Vec::new();
    for stranger in ["slots-01", "slots-3", "slotsx-1", "other"] {
        strangers.push(create(stranger, "x").await);
    }
    sim.reset_counters();
    let (mut delivered, _stream) = open_slots(&t, None);
    let mut listed = HashMap::new();
    let synced = loop {
        let delivery = next_slot_delivery(&mut delivered).await;
        assert_eq!(
            (delivery.slot, delivery.generation),
            (STREAM_SLOT, 1),
            "every delivery is the stream's"
        );
        match (delivery.lease_slot, delivery.event) {
            (Some(slot), WatchEvent::Changed(lease)) => {
                assert!(listed.insert(slot, lease).is_none(), "slot {slot} twice");
            }
            (None, WatchEvent::Synced(rv)) => break rv,
            other => panic!("expected the slots' state, then Synced: {other:?}"),
        }
    };
    assert_eq!(
        listed,
        HashMap::from([(0, first), (2, third.clone())]),
        "each slot that exists, to its own slot, and nothing else"
    );
    let version = |rv: &ResourceVersion| rv.as_str().parse::<u64>().expect("numeric");
    assert!(
        strangers
            .iter()
            .all(|l| version(&l.resource_version) <= version(&synced)),
        "the list's version, as of every lease created: {synced:?}"
    );

    let other = strangers.pop().expect("other");
    t.call(request(
        "other",
        Operation::Update {
            resource_version: other.resource_version,
            record: record("y"),
        },
    ))
    .await
    .expect("update another lease");
    let second = create("slots-1", "b").await;
    let delivery = next_slot_delivery(&mut delivered).await;
    assert_eq!(
        (delivery.lease_slot, delivery.event),
        (Some(1), WatchEvent::Changed(second.clone())),
        "the next slot's write, to its slot; the other lease's write is not delivered"
    );
    // Counted once the watch runs (it delivered a write): the requests of the stream, by
    // verb and answer.
    let counters = sim.counters();
    let sent = |verb, status| counters.count_status(verb, "leases", status);
    let stream = (sent("watch", 200), sent("watch", 422), sent("list", 200));
    let (expected, lists, what) = match watch_list {
        WatchList::Streams => (
            (1, 0, 0),
            false,
            "one request, the watch that streams the list",
        ),
        WatchList::Refuses => (
            (1, 1, 1),
            true,
            "a streamed list refused, then a list and a watch",
        ),
        WatchList::Ignores => (
            (2, 0, 1),
            true,
            "a plain watch given up at its first bookmark, then a list and a watch",
        ),
    };
    assert_eq!(stream, expected, "{what}: {counters:?}");
    assert_eq!(t.lists_before_watching(), lists, "{what}");
    t.delete("slots-2", &third.resource_version)
        .await
        .expect("delete");
    let delivery = next_slot_delivery(&mut delivered).await;
    assert_eq!(
        (delivery.lease_slot, delivery.event),
        (Some(2), WatchEvent::Deleted)
    );

    if watch_list != WatchList::Streams {
        sim.reset_counters();
        let (mut again, _stream) = open_slots(&t, None);
        while !matches!(
            next_slot_delivery(&mut again).await.event,
            WatchEvent::Synced(_)
        ) {}
        let counters = sim.counters();
        assert_eq!(
            counters.count_status("watch", "leases", 422),
            0,
            "once refused, a streamed list is not asked for again: {counters:?}"
        );
    }
    let (mut resumed, _stream) = open_slots(&t, Some(second.resource_version.clone()));
    let delivery = next_slot_delivery(&mut resumed).await;
    assert_eq!(
        (delivery.lease_slot, delivery.event),
        (Some(2), WatchEvent::Deleted),
        "resumed after slots-1's creation: only the deletion that came after, and no list"
    );

    for i in 0..10 {
        create(&format!("churn-{i}"), "c").await;
    }
    let (mut expired, _stream) = open_slots(&t, Some(synced));
    let delivery = next_slot_delivery(&mut expired).await;
    assert_eq!(
        (delivery.lease_slot, delivery.event),
        (None, WatchEvent::Expired)
    );
    sim.stop().await;
}

/// A Role that names its leases grants no list or watch of the namespace: a pool stream ends
/// `Forbidden`, with the API server's words, whether it lists first or resumes a watch. (The
/// pool then watches each slot by name, which the Role grants.)
pub async fn pool_stream_refused<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    let sim = start_sim(SimConfig::default()).await;
    let t = Arc::new(open(&connect, &sim, "named", Duration::from_secs(5)).await);
    let (mut delivered, _stream) = open_slots(&t, None);
    let delivery = next_slot_delivery(&mut delivered).await;
    assert_eq!(
        (delivery.slot, delivery.lease_slot, delivery.event),
        (STREAM_SLOT, None, WatchEvent::Forbidden)
    );
    let error = delivery.error.expect("the refusal's own words");
    assert_eq!(error.kind, ApiError::Forbidden);
    assert_eq!(
        error.to_string(),
        format!(
            "watch leases: 403 Forbidden: {}",
            forbidden("named", "watch", None)
        ),
        "the watch that streams the list is refused"
    );
    let (mut delivered, _stream) = open_slots(&t, Some(ResourceVersion::new("1").expect("rv")));
    let delivery = next_slot_delivery(&mut delivered).await;
    assert_eq!(delivery.event, WatchEvent::Forbidden);
    assert_eq!(
        delivery.error.map(|e| e.to_string()),
        Some(format!(
            "watch leases: 403 Forbidden: {}",
            forbidden("named", "watch", None)
        ))
    );
    let admin = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    admin
        .call(request("slots-0", Operation::Create(record("a"))))
        .await
        .expect("create");
    let (deliveries, mut by_name) = mpsc::unbounded_channel();
    let watcher = t.clone();
    let _watch = tokio::spawn(async move {
        let name = LeaseName::new("slots-0").expect("name");
        let sink = WatchSink::new(0, 1, deliveries);
        watcher.watch(name, None, sink).await
    });
    assert!(
        matches!(next_watch_event(&mut by_name).await, WatchEvent::Changed(_)),
        "the Role grants the watch of a slot by name"
    );
    sim.stop().await;
}

/// A lease a pool stream delivered is known to the transport as a read one is: an update of
/// it, listed or watched, is sent (not refused as never read) and keeps the lease's uid.
pub async fn pool_stream_fills_the_lease_cache<T: Transport>(
    connect: impl AsyncFn(&Path, Duration) -> T,
) {
    let sim = start_sim(SimConfig::default()).await;
    let writer = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    writer
        .call(request("slots-0", Operation::Create(record("a"))))
        .await
        .expect("create");
    let t = Arc::new(open(&connect, &sim, "admin", Duration::from_secs(5)).await);
    let (mut delivered, _stream) = open_slots(&t, None);
    let WatchEvent::Changed(listed) = next_slot_delivery(&mut delivered).await.event else {
        panic!("slots-0 listed first")
    };
    assert!(matches!(
        next_slot_delivery(&mut delivered).await.event,
        WatchEvent::Synced(_)
    ));
    writer
        .call(request("slots-1", Operation::Create(record("b"))))
        .await
        .expect("create");
    let WatchEvent::Changed(watched) = next_slot_delivery(&mut delivered).await.event else {
        panic!("slots-1's creation")
    };
    for (name, lease) in [("slots-0", listed), ("slots-1", watched)] {
        let uid = sim.lease("default", name).expect("stored")["metadata"]["uid"].clone();
        let renewed = t
            .call(request(
                name,
                Operation::Update {
                    resource_version: lease.resource_version.clone(),
                    record: record("me"),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("{name}: the update is sent: {e}"));
        assert_ne!(renewed.resource_version, lease.resource_version);
        let stored = sim.lease("default", name).expect("stored");
        assert_eq!(stored["metadata"]["uid"], uid, "{name}: the same lease");
        assert_eq!(stored["spec"]["holderIdentity"], "me");
    }
    sim.stop().await;
}

/// Who leads, as the electors' events tell it.
#[derive(Default)]
struct Leaders {
    now: Vec<usize>,
    most_at_once: usize,
    history: Vec<(usize, Instant)>,
    /// Each elector's last deadline (`Renewed`), on std's clock: it leads no longer without a
    /// renew.
    term_ends: HashMap<usize, Instant>,
    /// The electors that began a release (the core gives up its term before the write goes out).
    releasing: HashSet<usize>,
    /// Every event, who had it and when: what a failed assertion prints.
    log: Vec<(Instant, usize, String)>,
}

impl Leaders {
    /// The event log, timed from `from`, for an assertion's message.
    fn story(&self, from: Instant) -> String {
        self.log
            .iter()
            .map(|(at, i, event)| {
                format!(
                    "\n  {:>9.3?} elector-{i} {event}",
                    at.saturating_duration_since(from)
                )
            })
            .collect()
    }
}

type Running = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

fn spawn_elector<T: Transport>(
    transport: T,
    lease: &'static str,
    index: usize,
    leaders: Arc<Mutex<Leaders>>,
) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut elector = Elector::new(
            ElectorConfig {
                lease: LeaseName::new(lease).expect("name"),
                identity: Identity::new(&format!("elector-{index}")).expect("identity"),
                timing: timing(),
                watch: true,
            },
            index as u64,
        );
        // Only a send asks it to stop. The sender dropped, as a crash drops it, is no request
        // to release: that would turn a crash into a graceful hand-over whenever the task ran
        // before its abort.
        let shutdown = async {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let clock = Clock::default();
        drive(
            &mut elector,
            Arc::new(transport),
            clock,
            shutdown,
            |_, event| {
                let mut l = leaders.lock().expect("lock");
                l.log.push((Instant::now(), index, format!("{event:?}")));
                match event {
                    Event::BecameLeader { .. } => {
                        l.now.push(index);
                        l.most_at_once = l.most_at_once.max(l.now.len());
                        l.history.push((index, Instant::now()));
                    }
                    Event::LostLeadership { reason } => {
                        l.now.retain(|&i| i != index);
                        if reason == LossReason::Released {
                            l.releasing.insert(index);
                        }
                    }
                    Event::Renewed { deadline } => {
                        l.term_ends.insert(index, on_std_clock(&clock, deadline));
                    }
                    _ => {}
                }
            },
        )
        .await;
    });
    (stop, task)
}

async fn next_leader(
    leaders: &Arc<Mutex<Leaders>>,
    after: Instant,
    except: Option<usize>,
    within: Duration,
) -> (usize, Instant) {
    loop {
        let found = leaders
            .lock()
            .expect("lock")
            .history
            .iter()
            .find(|(i, at)| *at >= after && Some(*i) != except)
            .copied();
        if let Some(found) = found {
            return found;
        }
        assert!(after.elapsed() < within, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Leaders hand over: gracefully (the next sees the release on its watch, before the lease could
/// run out) through each of `running`, then on a crash (after the lease expires); never two at
/// once.
async fn hand_over(
    sim: &Sim,
    lease: &str,
    leaders: &Arc<Mutex<Leaders>>,
    running: &mut [Option<Running>],
    started: Instant,
    graceful_rounds: usize,
) {
    let (mut current, mut elected) =
        next_leader(leaders, started, None, Duration::from_secs(5)).await;
    for _ in 0..graceful_rounds {
        let (stop, task) = running[current].take().expect("running");
        let released = Instant::now();
        let _ = stop.send(());
        task.await.expect("the elector ends after releasing");
        let (next, at) =
            next_leader(leaders, released, Some(current), Duration::from_secs(5)).await;
        // A takeover on expiry comes a lease (3 s) after the last renew the others saw, so at
        // least the lease less the renew deadline (1 s) after the released leader's term ends,
        // however loaded the machine. Sooner, only the release can explain it; electors that
        // watch do not poll, so they saw it on the watch.
        let l = leaders.lock().expect("lock");
        let term_end = l.term_ends[&current];
        assert!(
            at < term_end + Duration::from_secs(1),
            "the takeover {:?} after the release waited for the lease to run out: the release \
             was not seen. {}",
            at.saturating_duration_since(released),
            l.story(started)
        );
        drop(l);
        current = next;
        elected = at;
    }
    // Its stop sender is dropped here, before the abort: that must not read as a stop.
    let (_, task) = running[current].take().expect("running");
    task.abort();
    let _ = task.await;
    assert!(
        !leaders.lock().expect("lock").releasing.contains(&current),
        "a killed elector began a release: the crash was a hand-over"
    );
    // A killed process believes nothing and says nothing.
    leaders.lock().expect("lock").now.retain(|&i| i != current);
    let crashed = Instant::now();
    // The next leader is the first other elector elected after the crashed one: the crashed
    // one's term may have lapsed before the harness got to crash it (the process or the server
    // stalled), and then another may have been elected before the crash.
    let within = crashed.duration_since(elected) + Duration::from_secs(8);
    let (last, at) = next_leader(leaders, elected, Some(current), within).await;
    assert_eq!(
        leaders.lock().expect("lock").most_at_once,
        1,
        "two electors led at once"
    );
    // Judged from the end of the crashed leader's term, not from the crash: what must not
    // happen is a takeover while it could still act.
    let (term_end, story) = {
        let l = leaders.lock().expect("lock");
        let term_end = *l
            .term_ends
            .get(&current)
            .expect("a leader is told its deadline");
        let story = format!(
            "elector-{current} crashed at {:.3?}, its term ending at {:.3?}; events:{}",
            crashed.saturating_duration_since(started),
            term_end.saturating_duration_since(started),
            l.story(started)
        );
        (term_end, story)
    };
    let after_term = at.saturating_duration_since(term_end);
    assert!(
        after_term >= Duration::from_millis(900),
        "took over {after_term:?} after the crashed leader's term ended: before its lease could \
         expire. {story}"
    );
    // The lease (3 s) and a retry's jitter (up to 1.1 s) after the last renew seen, and 2 s of
    // room for a loaded machine: a liveness bound, the safety one is above.
    let took = at.saturating_duration_since(crashed);
    assert!(
        took < Duration::from_millis(3_000 + 1_100 + 2_000),
        "crash failover took {took:?}. {story}"
    );
    assert_eq!(
        sim.lease("default", lease).expect("stored")["spec"]["holderIdentity"],
        format!("elector-{last}")
    );
    for (_, task) in running.iter_mut().filter_map(Option::take) {
        task.abort();
    }
}

/// Three electors: one leads; graceful failover; crash failover.
pub async fn election<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    let sim = start_sim(SimConfig::default()).await;
    let leaders = Arc::new(Mutex::new(Leaders::default()));
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let mut running = Vec::new();
    for index in 0..3 {
        running.push(Some(spawn_elector(
            open(&connect, &sim, "admin", timeout).await,
            "controller",
            index,
            leaders.clone(),
        )));
    }
    hand_over(&sim, "controller", &leaders, &mut running, started, 1).await;
    sim.stop().await;
}

/// Two electors over each transport on one lease: the lease passes between transports and
/// never has two leaders.
pub async fn mixed_fleet<A: Transport, B: Transport>(
    connect_a: impl AsyncFn(&Path, Duration) -> A,
    connect_b: impl AsyncFn(&Path, Duration) -> B,
) {
    let sim = start_sim(SimConfig::default()).await;
    let leaders = Arc::new(Mutex::new(Leaders::default()));
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let mut running = Vec::new();
    for index in 0..4 {
        running.push(Some(if index % 2 == 0 {
            spawn_elector(
                open(&connect_a, &sim, "admin", timeout).await,
                "mixed",
                index,
                leaders.clone(),
            )
        } else {
            spawn_elector(
                open(&connect_b, &sim, "admin", timeout).await,
                "mixed",
                index,
                leaders.clone(),
            )
        }));
    }
    hand_over(&sim, "mixed", &leaders, &mut running, started, 2).await;
    sim.stop().await;
}

/// A core deadline as an instant of std's clock. std's clock is read first, so the instant it
/// gives errs early, never late.
fn on_std_clock(clock: &Clock, deadline: leasehold_core::Instant) -> Instant {
    let now = Instant::now();
    let left = deadline.saturating_duration_since(clock.now());
    now + Duration::from_micros(left.as_micros())
}

/// Member `index` (`member-INDEX`) of a pool of two named `prefix`, driven over `transport`
/// until aborted; `on_event` sees each of its events with the instant of std's clock it came at
/// and, for a `Renewed`, its deadline on that clock.
fn spawn_pool_member<T: Transport>(
    transport: Arc<T>,
    prefix: &'static str,
    index: usize,
    mut on_event: impl FnMut(SlotEvent, Instant, Option<Instant>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = PoolConfig {
            prefix,
            size: 2,
            identity: Identity::new(&format!("member-{index}")).expect("identity"),
            timing: timing(),
            watch: true,
        };
        let mut pool: Pool<2> = Pool::new(config, index as u64).expect("pool");
        let clock = Clock::default();
        drive(
            &mut pool,
            transport,
            clock,
            std::future::pending(),
            |_, e| {
                let deadline = match e.event {
                    Event::Renewed { deadline } => Some(on_std_clock(&clock, deadline)),
                    _ => None,
                };
                on_event(e, Instant::now(), deadline);
            },
        )
        .await;
    })
}

/// A delegation pool of 2 with 4 members fills, survives a restart that cuts every connection
/// and a pause longer than the renew deadline, and no slot ever has two holders.
pub async fn pool<T: Transport>(connect: impl AsyncFn(&Path, Duration) -> T) {
    #[derive(Default)]
    struct Slots {
        holders: HashMap<u16, Vec<usize>>,
        /// Each member's last deadline on each slot.
        deadlines: HashMap<(u16, usize), Instant>,
        violations: Vec<String>,
    }
    let held = |s: &Arc<Mutex<Slots>>| {
        s.lock()
            .expect("lock")
            .holders
            .values()
            .filter(|h| !h.is_empty())
            .count()
    };
    let until_full = async |s: &Arc<Mutex<Slots>>, within: Duration| {
        let start = Instant::now();
        while held(s) < 2 {
            assert!(
                start.elapsed() < within,
                "the pool did not fill within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let sim = start_sim(SimConfig::default()).await;
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut members = Vec::new();
    for index in 0..4usize {
        let transport = Arc::new(open(&connect, &sim, "admin", Duration::from_secs(1)).await);
        let slots = slots.clone();
        members.push(spawn_pool_member(
            transport,
            "delegation",
            index,
            move |e, at, deadline| {
                let mut s = slots.lock().expect("lock");
                match e.event {
                    Event::BecameLeader { .. } => {
                        let holders = s.holders.entry(e.slot).or_default();
                        holders.push(index);
                        if holders.len() > 1 {
                            let what = format!("slot {} held by {holders:?}", e.slot);
                            s.violations.push(what);
                        }
                    }
                    Event::LostLeadership { .. } => {
                        s.holders.entry(e.slot).or_default().retain(|&i| i != index);
                        // Others may take the slot a lease (3 s) after the last renew they saw,
                        // so at the soonest a second after this member's deadline (the send of
                        // its last renew + 2 s): stepping down later is acting past its term.
                        if let Some(late) = s
                            .deadlines
                            .get(&(e.slot, index))
                            .and_then(|d| at.checked_duration_since(*d + Duration::from_secs(1)))
                        {
                            let what = format!(
                                "member-{index} stepped down from slot {} {late:?} after others \
                                 could take it",
                                e.slot
                            );
                            s.violations.push(what);
                        }
                    }
                    Event::Renewed { .. } => {
                        if let Some(deadline) = deadline {
                            s.deadlines.insert((e.slot, index), deadline);
                        }
                    }
                    _ => {}
                }
                let total: usize = s.holders.values().map(Vec::len).sum();
                if total > 2 {
                    s.violations.push(format!("{total} holders"));
                }
            },
        ));
    }
    until_full(&slots, Duration::from_secs(5)).await;
    sim.restart(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    until_full(&slots, Duration::from_secs(8)).await;
    sim.pause();
    // Every holder steps down at its renew deadline, each checked against its own deadline as
    // it goes (above); 5 s is only how long the test waits for that.
    let paused = Instant::now();
    while held(&slots) > 0 {
        assert!(
            paused.elapsed() < Duration::from_secs(5),
            "holders must step down when they cannot renew: {:?}",
            slots.lock().expect("lock").holders
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.resume();
    until_full(&slots, Duration::from_secs(8)).await;
    for m in &members {
        m.abort();
    }
    let believed: Vec<(u16, usize)> = {
        let s = slots.lock().expect("lock");
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        s.holders
            .iter()
            .filter_map(|(slot, h)| h.first().map(|&i| (*slot, i)))
            .collect()
    };
    for (slot, member) in believed {
        let stored = sim
            .lease("default", &format!("delegation-{slot}"))
            .expect("stored");
        assert_eq!(
            stored["spec"]["holderIdentity"],
            format!("member-{member}"),
            "the believed holder is the stored one"
        );
    }
    sim.stop().await;
}

/// Two members of a pool of two under a Role that names the slots (no list or watch of the
/// namespace): each is refused its pool stream once, watches each slot by name instead, and
/// the two hold a slot each.
pub async fn pool_under_a_role_that_names_its_slots<T: Transport>(
    connect: impl AsyncFn(&Path, Duration) -> T,
) {
    let sim = start_sim(SimConfig::default()).await;
    let holders = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let mut members = Vec::new();
    for index in 0..2usize {
        let transport = Arc::new(open(&connect, &sim, "named", Duration::from_secs(1)).await);
        let holders = holders.clone();
        members.push(spawn_pool_member(
            transport,
            "slots",
            index,
            move |e, _, _| {
                if let Event::BecameLeader { .. } = e.event {
                    holders.lock().expect("lock").insert(e.slot, index);
                }
            },
        ));
    }
    let start = Instant::now();
    while holders.lock().expect("lock").len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the pool did not fill: {:?}",
            holders.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counters = sim.counters();
    for m in &members {
        m.abort();
    }
    assert_eq!(
        counters.count_status("watch", "leases", 403),
        2,
        "each member is refused its stream once, and does not ask again: {counters:?}"
    );
    assert_eq!(counters.count("list", "leases"), 0);
    assert!(
        counters.count_status("watch", "leases", 200) >= 2,
        "the slots are watched by name: {counters:?}"
    );
    let held: Vec<usize> = holders.lock().expect("lock").values().copied().collect();
    assert_ne!(held[0], held[1], "one slot each");
    sim.stop().await;
}

/// Lease updates per second a transport sustains against the sim: the sim on its own
/// single-threaded runtime and thread, the transport on another, 32 concurrent renewers each
/// updating its own lease with the resourceVersion of its last answer. Returns each run's rate,
/// sorted, for a median and spread.
pub fn requests_per_second<T: Transport>(
    connect: impl AsyncFn(&Path, Duration) -> T,
    runs: usize,
    run: Duration,
) -> Vec<f64> {
    let (ready, sim_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let sim = Arc::new(start_sim(SimConfig::default()).await);
            ready.send(sim.clone()).expect("ready");
            let _ = stopped.await;
        });
    });
    let sim = sim_rx.recv().expect("the sim starts");
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rates: Vec<f64> = (0..runs)
        .map(|round| {
            load.block_on(async {
                let transport =
                    Arc::new(open(&connect, &sim, "admin", Duration::from_secs(5)).await);
                let start = Instant::now();
                let renewers: Vec<_> = (0..32)
                    .map(|i| {
                        let transport = transport.clone();
                        tokio::spawn(async move {
                            let name = format!("bench-{round}-{i}");
                            let mut lease = transport
                                .call(request(&name, Operation::Create(record("r"))))
                                .await
                                .expect("create");
                            let mut done = 0u64;
                            while start.elapsed() < run {
                                let mut next = record("r");
                                next.renew_time = Some(MicroTime::from_unix_micros(
                                    1_795_305_600_000_000 + done as i64,
                                ));
                                let op = Operation::Update {
                                    resource_version: lease.resource_version.clone(),
                                    record: next,
                                };
                                lease = transport.call(request(&name, op)).await.expect("renew");
                                done += 1;
                            }
                            done
                        })
                    })
                    .collect();
                let mut total = 0;
                for r in renewers {
                    total += r.await.expect("renewer");
                }
                total as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let _ = stop.send(());
    drop(sim);
    server.join().expect("server thread");
    rates.sort_by(f64::total_cmp);
    rates
}

/// The real API server's 403 message (as the fixtures record it) for `user` denied `verb` on
/// the lease `name` (none for create and list) in the namespace `default`.
fn forbidden(user: &str, verb: &str, name: Option<&str>) -> String {
    let object = name.map_or(String::new(), |n| format!(" \"{n}\""));
    format!(
        "leases.coordination.k8s.io{object} is forbidden: User \"{user}\" cannot {verb} resource \
         \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
    )
}

/// The first event a watch of `name` delivers, with the failure it carries.
async fn first_delivery<T: Transport>(t: &T, name: &str) -> Delivery {
    let (deliveries, mut delivered) = mpsc::unbounded_channel();
    t.watch(
        LeaseName::new(name).expect("name"),
        None,
        WatchSink::new(0, 1, deliveries),
    )
    .await;
    delivered.recv().await.expect("a watch ends with an event")
}

/// Every failure reaches the user in the API server's own words or with its cause: a 403 for
/// each verb (the exact message the real server sends), a 401, a refused port and a wrong CA;
/// and every request carries leasehold's `User-Agent`.
pub async fn errors<W: Wire>(connect: impl AsyncFn(&Path, Duration) -> Backbone<W>) {
    let sim = start_sim(SimConfig::default()).await;
    let timeout = Duration::from_secs(5);
    let admin = open(&connect, &sim, "admin", timeout).await;
    let reader = open(&connect, &sim, "reader", timeout).await;
    let nobody = open(&connect, &sim, "nobody", timeout).await;
    admin
        .call(request("e", Operation::Create(record("a"))))
        .await
        .expect("create");
    let said = |r: Result<Lease, RequestError>| r.expect_err("refused").to_string();

    assert_eq!(
        said(nobody.call(request("e", Operation::Get)).await),
        format!(
            "get leases/e: 403 Forbidden: {}",
            forbidden("nobody", "get", Some("e"))
        )
    );
    assert_eq!(
        said(
            reader
                .call(request("f", Operation::Create(record("r"))))
                .await
        ),
        format!(
            "create leases/f: 403 Forbidden: {}",
            forbidden("reader", "create", None)
        )
    );
    let read = reader
        .call(request("e", Operation::Get))
        .await
        .expect("the reader reads");
    let update = Operation::Update {
        resource_version: read.resource_version.clone(),
        record: record("r"),
    };
    assert_eq!(
        said(reader.call(request("e", update)).await),
        format!(
            "update leases/e: 403 Forbidden: {}",
            forbidden("reader", "update", Some("e"))
        )
    );
    let refused = reader
        .delete("e", &read.resource_version)
        .await
        .expect_err("refused");
    assert_eq!(refused.kind, ApiError::Forbidden);
    assert_eq!(
        refused.to_string(),
        format!(
            "delete leases/e: 403 Forbidden: {}",
            forbidden("reader", "delete", Some("e"))
        )
    );
    let refused = nobody
        .list(Some("default"), None)
        .await
        .expect_err("refused");
    assert_eq!(
        refused.to_string(),
        format!(
            "list leases: 403 Forbidden: {}",
            forbidden("nobody", "list", None)
        )
    );
    let watch = first_delivery(&nobody, "e").await;
    assert_eq!(watch.event, WatchEvent::Forbidden);
    assert_eq!(
        watch.error.map(|e| e.to_string()),
        Some(format!(
            "watch leases/e: 403 Forbidden: {}",
            forbidden("nobody", "watch", Some("e"))
        ))
    );

    let mut invalid = record("a");
    invalid.lease_duration = Some(D::from_secs(0));
    let refused = admin
        .call(request("z", Operation::Create(invalid)))
        .await
        .expect_err("refused");
    assert_eq!(refused.kind, ApiError::Invalid);
    let status = refused.status.as_ref().expect("the server's Status");
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .causes
            .iter()
            .any(|(field, _)| field == "spec.leaseDurationSeconds"),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("spec.leaseDurationSeconds: Invalid value: 0"),
        "the field at fault is named: {refused}"
    );

    let stranger = kubeconfig_file(
        &sim.kubeconfig("admin", "default")
            .expect("admin")
            .replace("admin-token", "stolen-token"),
    );
    let unknown = connect(&stranger, timeout).await;
    let refused = unknown
        .call(request("e", Operation::Get))
        .await
        .expect_err("refused");
    assert_eq!(refused.kind, ApiError::Unauthorized);
    assert_eq!(
        refused.to_string(),
        "get leases/e: 401 Unauthorized: Unauthorized"
    );

    let expected_agent = Backbone::<W>::user_agent();
    assert!(
        expected_agent.starts_with(&format!("leasehold/{} (", env!("CARGO_PKG_VERSION"))),
        "{expected_agent}"
    );
    assert_eq!(
        sim.user_agents(),
        vec![expected_agent],
        "every request names leasehold, its version and its transport"
    );

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let closed = kubeconfig_file(
        &sim.kubeconfig("admin", "default")
            .expect("admin")
            .replace(&sim.url(), &format!("https://127.0.0.1:{port}")),
    );
    let dead = connect(&closed, timeout).await;
    let failed = dead
        .call(request("e", Operation::Get))
        .await
        .expect_err("refused");
    assert_eq!(failed.kind, ApiError::Transport);
    assert_eq!(
        failed.cause,
        Some(Cause::Refused {
            address: format!("127.0.0.1:{port}")
        })
    );
    assert_eq!(
        failed.to_string(),
        format!(
            "get leases/e: connection refused at 127.0.0.1:{port}: nothing listens there; \
             check the server URL and that the API server is up"
        )
    );
    let failed = dead.list(Some("default"), None).await.expect_err("refused");
    assert!(
        failed.to_string().starts_with(&format!(
            "list leases: connection refused at 127.0.0.1:{port}"
        )),
        "{failed}"
    );

    // Another server's CA: the certificate this server shows is not signed by it.
    let other = start_sim(SimConfig::default()).await;
    let ca_line = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("certificate-authority-data:"))
            .expect("the kubeconfig carries the CA")
            .to_owned()
    };
    let ours = sim.kubeconfig("admin", "default").expect("admin");
    let theirs = other.kubeconfig("admin", "default").expect("admin");
    let wrong_ca = kubeconfig_file(&ours.replace(&ca_line(&ours), &ca_line(&theirs)));
    let untrusting = connect(&wrong_ca, timeout).await;
    let failed = untrusting
        .call(request("e", Operation::Get))
        .await
        .expect_err("refused");
    assert_eq!(failed.cause, Some(Cause::UnknownCa));
    assert_eq!(
        failed.to_string(),
        "get leases/e: TLS: the API server's certificate is not signed by the cluster's CA \
         (unknown issuer): check certificate-authority(-data) in the kubeconfig"
    );
    other.stop().await;
    sim.stop().await;
}

/// An update of a lease the transport holds no read copy of is not sent: without the uid of
/// the object written over, a re-creation (the API server answers a PUT of a deleted lease by
/// creating it) could not be told from a write. The core is told `Conflict` and reads first.
pub async fn an_update_without_a_read_object_is_not_sent<W: Wire>(
    connect: impl AsyncFn(&Path, Duration) -> Backbone<W>,
) {
    let sim = start_sim(SimConfig::default()).await;
    let t = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    let update = Operation::Update {
        resource_version: ResourceVersion::new("7").expect("rv"),
        record: record("a"),
    };
    sim.reset_counters();
    let refused = t.call(request("gone", update)).await.expect_err("not sent");
    assert_eq!(refused.kind, ApiError::Conflict);
    assert_eq!(refused.cause, Some(Cause::NotRead));
    assert_eq!(sim.counters().total(), 0, "nothing was sent");
    assert!(
        sim.lease("default", "gone").is_none(),
        "nothing was created"
    );
    sim.stop().await;
}

/// The client-side rate limit spaces requests after the burst, and a zero rate is refused.
pub async fn rate_limit<W: Wire>(connect: impl AsyncFn(&Path, Duration) -> Backbone<W>) {
    let sim = start_sim(SimConfig::default()).await;
    // 10 per second after a burst of 2: 6 requests need at least 0.4 s.
    let t = open(&connect, &sim, "admin", Duration::from_secs(5))
        .await
        .with_rate_limit(10.0, 2)
        .expect("a valid rate");
    let start = Instant::now();
    for _ in 0..6 {
        let missing = t.call(request("absent", Operation::Get)).await;
        assert_eq!(missing.map_err(|e| e.kind), Err(ApiError::NotFound));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(380),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(sim.counters().count("get", "leases"), 6);
    let zero = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    assert!(
        zero.with_rate_limit(0.0, 1).is_err(),
        "a zero rate is refused"
    );
    let zero = open(&connect, &sim, "admin", Duration::from_secs(5)).await;
    assert!(
        zero.with_rate_limit(5.0, 0).is_err(),
        "a zero burst is refused"
    );
    sim.stop().await;
}

/// The whole suite as tests, for an adapter's test file: `leasehold_conformance::suite!(connect);`
/// where `connect` makes the adapter's transport from a kubeconfig file and a request timeout.
#[macro_export]
macro_rules! suite {
    ($connect:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn operations_and_error_mapping() {
            $crate::operations($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn errors_keep_the_servers_words_and_the_cause() {
            $crate::errors($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_rate_limit_spaces_requests_after_the_burst() {
            $crate::rate_limit($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_update_without_a_read_object_is_not_sent() {
            $crate::an_update_without_a_read_object_is_not_sent($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn list_in_a_namespace_or_all() {
            $crate::list($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watch_resume_cut_and_gone() {
            $crate::watch($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_pool_stream_streams_or_lists_its_slots_then_routes_each_slots_changes() {
            $crate::pool_stream($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_pool_stream_refused_by_rbac_ends_forbidden_in_the_servers_words() {
            $crate::pool_stream_refused($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_pool_stream_fills_the_lease_cache() {
            $crate::pool_stream_fills_the_lease_cache($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_pool_under_a_role_that_names_its_slots_watches_each_by_name() {
            $crate::pool_under_a_role_that_names_its_slots($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_reservation_is_an_annotation_a_renew_keeps_and_a_take_ends() {
            $crate::reservation($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn three_electors_fail_over() {
            $crate::election($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_pool_of_two_survives_restarts_and_pauses() {
            $crate::pool($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn delete_with_preconditions_and_create_metadata() {
            $crate::delete_and_create_metadata($connect).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_quiet_lease_past_the_watch_history_cannot_loop() {
            $crate::a_quiet_lease_past_the_watch_history_cannot_loop($connect).await;
        }
    };
}
