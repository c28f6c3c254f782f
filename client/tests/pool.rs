//! The pool handle on tokio's paused time, over an in-memory API server: at most `size` guards
//! at once, a dropped guard lets the next member in, and a held slot runs work by term rules.

mod memory;

use leasehold_client::{Clock, Duration as D, SlotPool, SlotPoolBuilder, Timing};
use memory::{Link, Memory};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn member(server: &Arc<Memory>, name: &str, size: usize) -> SlotPool {
    let (link, _) = Link::new(server, Duration::from_secs(5));
    SlotPoolBuilder::new("cold-start", size)
        .identity(name)
        .timing(Timing::new(D::from_secs(15), D::from_secs(10), D::from_secs(2)).unwrap())
        .clock(Clock::tokio())
        .start(link)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_admits_at_most_size_members_at_once_and_drains() {
    let server = Memory::new();
    let (holding, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let members: Vec<_> = (0..6)
        .map(|i| {
            let pool = member(&server, &format!("node-{i}"), 2);
            let (holding, most) = (holding.clone(), most.clone());
            tokio::spawn(async move {
                let slot = pool.acquire_slot().await.expect("a slot");
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Build the cache.
                tokio::time::sleep(Duration::from_secs(1)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                slot.release().await;
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    for m in members {
        m.await.unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than the pool's 2 slots"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "released slots are taken at once through the watch: {took:?}"
    );
    for slot in 0..2 {
        assert_eq!(
            server.holder(&format!("cold-start-{slot}")),
            None,
            "released"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_held_slot_runs_work_under_the_term_rules() {
    let server = Memory::new();
    let slot = member(&server, "node-0", 1).acquire_slot().await.unwrap();
    assert_eq!((slot.slot(), slot.epoch()), (0, 0));
    assert!(slot.is_held());
    let out = slot
        .run_while_held(|term| async move { term.epoch() + 1 })
        .await;
    assert_eq!(out, Some(1));
    assert_eq!(server.holder("cold-start-0").as_deref(), Some("node-0"));
    drop(slot);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.holder("cold-start-0"),
        None,
        "a dropped guard releases"
    );
}
