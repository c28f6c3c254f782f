//! The election handle on tokio's paused time, over an in-memory API server: who leads, how
//! fast a released lease is taken, and, on the work itself, that a cut-off leader's work is
//! stopped before another's starts.

mod memory;

use leasehold_client::{Clock, Duration as D, Election, ElectionBuilder, Leadership, Timing};
use memory::{Link, Memory};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

fn timing() -> Timing {
    Timing::new(D::from_secs(15), D::from_secs(10), D::from_secs(2)).unwrap()
}

/// A candidate `name` over its own link to `server`; the link's cut switch comes with it.
fn candidate(server: &Arc<Memory>, name: &str) -> (Election, Arc<AtomicBool>) {
    let (link, cut) = Link::new(server, Duration::from_secs(5));
    let election = ElectionBuilder::new("demo")
        .identity(name)
        .timing(timing())
        .grace(D::from_secs(2))
        .clock(Clock::tokio())
        .start(link)
        .unwrap();
    (election, cut)
}

async fn settle(by: Duration) {
    tokio::time::sleep(by).await;
}

#[tokio::test(start_paused = true)]
async fn of_two_handles_one_leads_and_the_other_follows_it() {
    let server = Memory::new();
    let (a, _) = candidate(&server, "a");
    settle(Duration::from_millis(10)).await;
    let (b, _) = candidate(&server, "b");
    settle(Duration::from_secs(30)).await;
    assert!(a.is_leader() && !b.is_leader());
    assert_eq!(a.leadership().borrow().epoch(), Some(0));
    assert_eq!(
        *b.leadership().borrow(),
        Leadership::Following { holder: "a".into() }
    );
    assert_eq!(server.holder("demo").as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_leader_shut_down_hands_over_within_milliseconds() {
    let server = Memory::new();
    let (a, _) = candidate(&server, "a");
    settle(Duration::from_millis(10)).await;
    let (b, _) = candidate(&server, "b");
    settle(Duration::from_secs(5)).await;
    assert!(a.is_leader());
    let released = Instant::now();
    a.shutdown().await;
    let epoch = b.leading().await;
    let took = released.elapsed();
    assert_eq!(epoch, Some(1), "a new term, one epoch higher");
    assert!(
        took < Duration::from_millis(50),
        "the watch saw the release: {took:?}"
    );
    assert_eq!(server.holder("demo").as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_releases_the_lease_too() {
    let server = Memory::new();
    let (a, _) = candidate(&server, "a");
    settle(Duration::from_millis(10)).await;
    let (b, _) = candidate(&server, "b");
    settle(Duration::from_secs(5)).await;
    drop(a);
    settle(Duration::from_millis(100)).await;
    assert!(b.is_leader(), "{:?}", *b.leadership().borrow());
}

/// When each candidate's work ran, by the tokio clock both share.
type Intervals = Arc<Mutex<Vec<(&'static str, u32, Instant, Option<Instant>)>>>;

/// Work that records its interval; it obeys its term's cancellation unless `stubborn`.
fn worker(
    name: &'static str,
    log: &Intervals,
    stubborn: bool,
) -> impl FnMut(leasehold_client::Term) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
+ Send
+ use<> {
    let log = log.clone();
    move |term| {
        let log = log.clone();
        Box::pin(async move {
            let index = {
                let mut log = log.lock().unwrap();
                log.push((name, term.epoch(), Instant::now(), None));
                log.len() - 1
            };
            // Marks the end even when the future is dropped at the deadline.
            struct End(Intervals, usize);
            impl Drop for End {
                fn drop(&mut self) {
                    self.0.lock().unwrap()[self.1].3 = Some(Instant::now());
                }
            }
            let _end = End(log, index);
            if stubborn {
                std::future::pending::<()>().await;
            } else {
                term.cancelled().await;
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_leaders_work_stops_before_the_next_leaders_work_starts() {
    for stubborn in [false, true] {
        let server = Memory::new();
        let log = Intervals::default();
        let (a, cut_a) = candidate(&server, "a");
        settle(Duration::from_millis(10)).await;
        let (b, _) = candidate(&server, "b");
        let a = Arc::new(a);
        let b = Arc::new(b);
        let runs = [
            tokio::spawn({
                let (a, w) = (a.clone(), worker("a", &log, stubborn));
                async move { a.run_while_leading(w).await }
            }),
            tokio::spawn({
                let (b, w) = (b.clone(), worker("b", &log, stubborn));
                async move { b.run_while_leading(w).await }
            }),
        ];
        settle(Duration::from_secs(20)).await;
        let cut_at = Instant::now();
        cut_a.store(true, Ordering::SeqCst);
        settle(Duration::from_secs(60)).await;

        let log = log.lock().unwrap().clone();
        let a_work = log.iter().find(|w| w.0 == "a").expect("a worked");
        let b_work = log
            .iter()
            .find(|w| w.0 == "b")
            .expect("b took over and worked");
        let a_end = a_work.3.expect("a's work ended");
        assert!(
            a_end <= cut_at + Duration::from_secs(10),
            "a's work ended by a's deadline (stubborn: {stubborn}): {:?}",
            a_end - cut_at
        );
        let gap = b_work.2 - a_end;
        assert!(
            gap >= Duration::from_secs(4),
            "lease − renew deadline stays between the two works (stubborn: {stubborn}): {gap:?}"
        );
        assert_eq!((a_work.1, b_work.1), (0, 1), "one epoch per term");
        for run in runs {
            run.abort();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn work_that_ignores_cancellation_is_dropped_at_the_deadline() {
    let server = Memory::new();
    let log = Intervals::default();
    let (a, cut_a) = candidate(&server, "a");
    let a = Arc::new(a);
    let run = tokio::spawn({
        let (a, w) = (a.clone(), worker("a", &log, true));
        async move { a.run_while_leading(w).await }
    });
    settle(Duration::from_secs(3)).await;
    let cut_at = Instant::now();
    cut_a.store(true, Ordering::SeqCst);
    settle(Duration::from_secs(30)).await;
    let (_, _, _, end) = log.lock().unwrap()[0];
    let end = end.expect("dropped");
    // The last renew was sent at most one retry period (2 s) before the cut: the deadline is
    // within 8 to 10 s after it, and the grace period (2 s) is no reason to be late.
    let after_cut = end - cut_at;
    assert!(
        after_cut >= Duration::from_secs(8) && after_cut <= Duration::from_secs(10),
        "{after_cut:?}"
    );
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn epochs_increase_by_one_per_term() {
    let server = Memory::new();
    let mut epochs = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (election, _) = candidate(&server, name);
        epochs.push(election.leading().await.unwrap());
        election.shutdown().await;
    }
    assert_eq!(epochs, [0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn one_term_of_work_returns_its_output_and_settings_are_checked_first() {
    let server = Memory::new();
    let (a, _) = candidate(&server, "a");
    assert_eq!(
        a.run_in_one_term(|term| async move { term.epoch() + 7 })
            .await,
        Some(7)
    );
    let (link, _) = Link::new(&server, Duration::from_secs(5));
    let refused = ElectionBuilder::new("demo")
        .identity("x")
        .timing(timing())
        .grace(D::from_secs(8))
        .start(link)
        .unwrap_err();
    assert!(refused.to_string().starts_with("grace: "), "{refused}");
    let (link, _) = Link::new(&server, Duration::from_secs(5));
    let refused = ElectionBuilder::new("Not A Lease").start(link).unwrap_err();
    assert!(refused.to_string().starts_with("lease name: "), "{refused}");
}

#[tokio::test(start_paused = true)]
async fn a_closed_election_rejoins_after_a_retry_period_in_a_new_term() {
    let server = Memory::new();
    let (a, _) = candidate(&server, "a");
    assert_eq!(a.leading().await, Some(0));
    a.close();
    let mut leadership = a.leadership();
    leadership
        .wait_for(|l| *l == Leadership::Closed)
        .await
        .unwrap();
    assert_eq!(server.holder("demo"), None, "closed: released");
    let rejoined = Instant::now();
    a.rejoin();
    assert_eq!(a.leading().await, Some(1), "a new term");
    let waited = rejoined.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "one retry period first: {waited:?}"
    );
}
