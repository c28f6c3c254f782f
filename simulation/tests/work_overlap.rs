//! The faults that let leasehold's first design overlap the work of two leaders, each run on the
//! old design ([`WorkPolicy::Unfenced`]: the agent alone stops its child, SIGTERM then SIGKILL
//! `grace` after it lost the lease) and on the design ([`WorkPolicy::Fenced`]) from the same
//! seed. The oracle judges the work's real-time intervals only, so each test shows both that the
//! checker catches the failure and that the fence removes it.
//!
//! Every scenario: two electors; node 1 is down for the first 5 s so node 0 leads; the fault
//! hits node 0 at 20 s; both children ignore SIGTERM (only SIGKILL stops them) and the grace is
//! the old default, `lease − renew` = 5 s.
//!
//! The last test records a limit that a delete opens (`limit_*`): it passes by showing the
//! overlap, and must be turned around if the core closes it.

use leasehold_core::{Duration, Event};
use leasehold_simulation::{
    Child, Failure, Fault, FaultKind, LeaseId, Report, SECOND, Scenario, Violation, WorkPolicy,
    World, run,
};
use std::cell::RefCell;

/// The shared shape of every scenario here, with `fault` on node 0 from 20 s to 100 s.
fn scenario(policy: WorkPolicy, fault: FaultKind, rates_ppm: [u64; 2]) -> Scenario {
    let mut s = Scenario::fault_on_the_leader(11, fault, 240 * SECOND);
    s.policy = policy;
    s.rates_ppm = rates_ppm.to_vec();
    s.max_drift_ppm = 10_000;
    s.grace = Duration::from_secs(5);
    s
}

const EXACT: [u64; 2] = [1_000_000, 1_000_000];
/// Node 0's clock 1 % slow, node 1's 1 % fast: well inside the 20 % the timing allows.
const ONE_PERCENT: [u64; 2] = [990_000, 1_010_000];

/// Asserts node 1's work started on the elected lease while node 0's still ran.
fn assert_overlap(result: Result<Report, Violation>) {
    let violation = result.expect_err("the work of two leaders overlaps");
    assert!(
        matches!(
            violation.failure,
            Failure::Overlap {
                lease: LeaseId::Leader,
                ..
            }
        ),
        "{violation}"
    );
}

/// Asserts the hand-over kept at least `gap_s` seconds between the two works.
fn assert_handed_over(result: Result<Report, Violation>, gap_s: u64) -> Report {
    let report = result.unwrap_or_else(|v| panic!("{v}"));
    assert!(report.elections >= 2, "node 1 took over: {report:?}");
    let gap = report.min_gap.expect("a hand-over");
    assert!(gap >= gap_s * SECOND, "gap {gap} µs: {report:?}");
    report
}

/// SIGSTOP of the agent alone, 40 s. Old: its child runs on, since nothing in the stopped
/// process stops it, and node 1 starts at 15 s. Fenced: the fence kills the child at the
/// deadline, a full margin (5 s) before node 1 starts.
#[test]
fn an_agent_paused_alone_leaves_its_work_running_unless_fenced() {
    assert_overlap(run(&scenario(
        WorkPolicy::Unfenced,
        FaultKind::PauseAgent(0),
        EXACT,
    )));
    let report = assert_handed_over(
        run(&scenario(
            WorkPolicy::Fenced,
            FaultKind::PauseAgent(0),
            EXACT,
        )),
        4,
    );
    assert!(
        report.kills >= 1,
        "the fence's SIGKILL stopped it: {report:?}"
    );
}

/// The agent is killed (OOM, SIGKILL) and comes back at 100 s. Old: its child is orphaned and
/// runs for ever. Fenced: the fence sees the pipe close and kills the child 0.5 s later.
#[test]
fn a_killed_agent_orphans_its_work_unless_fenced() {
    assert_overlap(run(&scenario(
        WorkPolicy::Unfenced,
        FaultKind::KillAgent(0),
        EXACT,
    )));
    let report = assert_handed_over(
        run(&scenario(
            WorkPolicy::Fenced,
            FaultKind::KillAgent(0),
            EXACT,
        )),
        10,
    );
    assert!(
        report.orphans >= 1,
        "the fence saw its agent die: {report:?}"
    );
}

/// Node 0 is cut off from the API server. Old: the child gets SIGTERM at the deadline and
/// SIGKILL `lease − renew` later, exactly when node 1 may take over, so the margin for drift
/// is spent: with exact clocks the works miss each other by milliseconds, and 1 % of drift
/// makes them overlap. Fenced: SIGKILL at the deadline keeps the 5 s margin whole.
#[test]
fn the_old_grace_after_the_deadline_overlaps_at_one_percent_drift() {
    let exact = run(&scenario(
        WorkPolicy::Unfenced,
        FaultKind::Partition(0),
        EXACT,
    ))
    .unwrap_or_else(|v| panic!("{v}"));
    assert!(
        exact.min_gap.is_some_and(|gap| gap < SECOND / 10),
        "with exact clocks the old design has no margin left: {exact:?}"
    );
    assert_overlap(run(&scenario(
        WorkPolicy::Unfenced,
        FaultKind::Partition(0),
        ONE_PERCENT,
    )));
    assert_handed_over(
        run(&scenario(
            WorkPolicy::Fenced,
            FaultKind::Partition(0),
            ONE_PERCENT,
        )),
        4,
    );
}

/// The whole node freezes for 80 s (a VM pause): the child freezes with it. Old: on waking the
/// agent steps down and its child runs `grace` longer beside node 1's. Fenced: the fence's
/// timer has passed, so it kills the child as it wakes.
#[test]
fn a_frozen_node_wakes_into_the_new_leaders_term_unless_fenced() {
    assert_overlap(run(&scenario(
        WorkPolicy::Unfenced,
        FaultKind::Pause(0),
        EXACT,
    )));
    assert_handed_over(
        run(&scenario(WorkPolicy::Fenced, FaultKind::Pause(0), EXACT)),
        10,
    );
}

/// A graceful shutdown stops the child first, while the lease is held, and releases after:
/// both designs hand over with no overlap and no wait.
#[test]
fn a_graceful_shutdown_hands_over_at_once_in_both_designs() {
    for policy in [WorkPolicy::Unfenced, WorkPolicy::Fenced] {
        let report = run(&scenario(policy, FaultKind::Shutdown(0), EXACT))
            .unwrap_or_else(|v| panic!("{policy:?}: {v}"));
        assert!(
            report.min_gap.is_some_and(|gap| gap < SECOND),
            "{policy:?}: {report:?}"
        );
    }
}

/// Two agents given one identity. The second reads a record naming its own identity that it did
/// not write and waits it out like anyone else's: while the first renews it never leads, and it
/// takes over a lease duration after the first's last renew once the first's agent has died
/// (its fence takes the work down with it).
///
/// The old core took such a record at once, and the two then renewed each other's writes as
/// their own. That rule is gone from the core and the simulation runs only the real core, so
/// the old behaviour is not replayed here; the random runs of `tests/safety.rs` give one in four
/// scenarios a shared identity.
#[test]
fn a_duplicate_identity_waits_out_the_record_it_did_not_write() {
    let mut s = scenario(WorkPolicy::Fenced, FaultKind::KillAgent(0), EXACT);
    s.identities = vec![0, 0];
    s.faults[1].start = 60 * SECOND;
    let leaders = RefCell::new(Vec::new());
    let report = World::new(&s, false)
        .unwrap_or_else(|v| panic!("{v}"))
        .observe(|t, n, _, e| {
            if matches!(e, Event::BecameLeader { .. }) {
                leaders.borrow_mut().push((n, t));
            }
        })
        .run()
        .unwrap_or_else(|v| panic!("{v}"));
    let leaders = leaders.into_inner();
    assert_eq!(leaders.len(), 2, "{leaders:?}");
    assert_eq!(leaders[0].0, 0);
    let (second, at) = leaders[1];
    assert_eq!(second, 1);
    // Node 0 renewed every 2 s until its agent died at 60 s; node 1 waited a lease duration
    // (15 s) from the last renew it saw.
    assert!(
        (73 * SECOND..77 * SECOND).contains(&at),
        "node 1 took over a lease duration after node 0's last renew: {at}"
    );
    assert_eq!(report.orphans, 1, "{report:?}");
}

/// A follower that cannot read for a while (node 1, no watch, cut off 30–44 s) still holds the
/// record it last saw and, a lease duration later, takes over with a PUT carrying that record's
/// resourceVersion. On a live lease that write gets 409. But the lease was deleted at 44.25 s
/// (`kubectl delete`), and the API server answers a PUT of a missing lease with 201
/// (`apiserver-fixtures/16-update-missing-201.json`), whatever resourceVersion it carried. The
/// first core took that answer as a successful take: node 1 led at 49.06 s while node 0's work,
/// told to stop when node 0 saw the deletion, still ran out its 5 s grace. Now the transports
/// report such an answer as 404 (the lease the update was for was gone), so node 1 treats it as
/// the deletion it is and waits a lease duration.
#[test]
fn a_stale_take_that_recreates_a_deleted_lease_does_not_lead() {
    for policy in [WorkPolicy::Unfenced, WorkPolicy::Fenced] {
        let mut s = scenario(policy, FaultKind::Partition(1), EXACT);
        s.watch = vec![true, false];
        s.faults[1].start = 30 * SECOND;
        s.faults[1].end = 44 * SECOND;
        s.faults.push(Fault {
            kind: FaultKind::Delete(LeaseId::Leader),
            start: 44_250_000,
            end: 44_250_000,
        });
        let report = run(&s).unwrap_or_else(|v| panic!("{policy:?}: {v}"));
        assert!(
            report.elections >= 2,
            "{policy:?}: node 1 took over: {report:?}"
        );
    }
}

/// A documented limit, reproduced: "a lease missing at the first read is created at once". Node 1's agent restarts at 20.6 s, just after the lease was deleted at
/// 20.5 s; its first read answers 404, so it creates the lease at once, while node 0's work
/// runs out its grace. A process cannot tell a lease that never existed from one deleted a
/// moment ago.
///
/// Waiting a lease duration on every missing lease would close it, at the price of 15 s before
/// the first leader of every new lease; the README names the limit instead (do not delete a
/// held lease). If the core ever waits, turn this around.
#[test]
fn limit_a_first_read_just_after_a_delete_creates_at_once() {
    for policy in [WorkPolicy::Unfenced, WorkPolicy::Fenced] {
        let mut s = scenario(policy, FaultKind::KillAgent(1), EXACT);
        s.faults[1].start = 10 * SECOND;
        s.faults[1].end = 20_600_000;
        s.faults.push(Fault {
            kind: FaultKind::Delete(LeaseId::Leader),
            start: 20_500_000,
            end: 20_500_000,
        });
        let violation = run(&s).expect_err("the limit holds");
        assert!(
            matches!(
                violation.failure,
                Failure::Overlap {
                    first: (0, _),
                    second: (1, _),
                    ..
                }
            ),
            "{policy:?}: {violation}"
        );
    }
}

/// Two pool members, two slots; both slots are deleted at 60 s (`kubectl delete lease -l …`).
/// A member that held one slot had the other idle (neither read nor watched) since it saw it
/// missing at its first read. On losing its own slot it used to create that one at once, while
/// the other member's work on it was still stopping. Now what was missing before an idle spell
/// is waited out like a deletion seen then. Twenty seeds; the first design overlapped on 15.
#[test]
fn a_member_back_from_idle_waits_out_a_slot_that_was_missing() {
    for seed in 0..20 {
        let mut s = Scenario::calm(seed, 0, 2, 2, 240 * SECOND);
        s.policy = WorkPolicy::Fenced;
        s.children = vec![Child::IgnoresTerm; 2];
        s.grace = Duration::from_secs(3);
        s.quiet_tail = 120 * SECOND;
        s.faults = [LeaseId::Slot(0), LeaseId::Slot(1)]
            .map(|lease| Fault {
                kind: FaultKind::Delete(lease),
                start: 60 * SECOND,
                end: 60 * SECOND,
            })
            .to_vec();
        let report = run(&s).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        assert!(report.deletes >= 2, "seed {seed}: {report:?}");
    }
}
