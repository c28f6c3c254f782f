//! A failover demo on the deterministic simulation: three electors on one lease and six members
//! on a pool of two, against the model API server, with a graceful shutdown and a crash of the
//! leader and a crash of a slot holder. Every safety check runs after every step.
//!
//! `cargo run --release -p leasehold-simulation --example failover`

use leasehold_core::Event;
use leasehold_simulation::{Fault, FaultKind, SECOND, Scenario, World};
use std::cell::RefCell;

const ELECTORS: usize = 3;
const MEMBERS: usize = 6;

fn scenario(faults: Vec<Fault>) -> Scenario {
    let mut s = Scenario::calm(2026, ELECTORS, MEMBERS, 2, 150 * SECOND);
    s.rates_ppm = vec![
        1_000_000, 1_000_050, 999_950, 1_000_020, 999_980, 1_000_010, 999_990, 1_000_030, 999_970,
    ];
    s.max_drift_ppm = 100;
    s.quiet_tail = 40 * SECOND;
    s.faults = faults;
    s
}

fn name(node: usize) -> String {
    if node < ELECTORS {
        format!("elector-{node}")
    } else {
        format!("member-{}", node - ELECTORS)
    }
}

/// (time, node, slot, event) of every leadership event.
type Log = Vec<(u64, usize, u16, Event)>;

fn run(faults: Vec<Fault>) -> (Log, leasehold_simulation::Report) {
    let s = scenario(faults);
    let log = RefCell::new(Log::new());
    let report = World::new(&s, false)
        .unwrap_or_else(|v| panic!("invalid scenario: {v}"))
        .observe(|t, n, slot, e| {
            if matches!(
                e,
                Event::BecameLeader { .. } | Event::LostLeadership { .. } | Event::Released { .. }
            ) {
                log.borrow_mut().push((t, n, slot, e.clone()));
            }
        })
        .run()
        .unwrap_or_else(|v| panic!("safety check failed: {v}"));
    (log.into_inner(), report)
}

/// Who holds (node per slot) at time `t` according to the log.
fn holders_at(log: &Log, t: u64, electors: bool) -> Vec<usize> {
    let mut held: Vec<(usize, u16)> = Vec::new();
    for (at, n, slot, e) in log
        .iter()
        .filter(|(at, n, ..)| *at <= t && (*n < ELECTORS) == electors)
    {
        let _ = at;
        match e {
            Event::BecameLeader { .. } => held.push((*n, *slot)),
            Event::LostLeadership { .. } => held.retain(|h| *h != (*n, *slot)),
            _ => {}
        }
    }
    held.into_iter().map(|(n, _)| n).collect()
}

fn main() {
    let s = |secs| secs * SECOND;
    // Phase 1: elector-0 wins (the others start 2 s late), then shuts down gracefully at 20 s.
    let mut faults = vec![
        Fault {
            kind: FaultKind::Crash(1),
            start: 0,
            end: s(2),
        },
        Fault {
            kind: FaultKind::Crash(2),
            start: 0,
            end: s(2),
        },
        Fault {
            kind: FaultKind::Shutdown(0),
            start: s(20),
            end: s(40),
        },
    ];
    let (log, _) = run(faults.clone());
    // Phase 2 (same seed, same history up to 60 s): crash whoever leads and one slot holder then.
    let leader = holders_at(&log, s(60), true)[0];
    let holder = holders_at(&log, s(60), false)[0];
    faults.push(Fault {
        kind: FaultKind::Crash(leader),
        start: s(60),
        end: s(90),
    });
    faults.push(Fault {
        kind: FaultKind::Crash(holder),
        start: s(60),
        end: s(90),
    });
    let (log, report) = run(faults.clone());

    println!(
        "leasehold failover demo: deterministic simulation of the core against a model API server"
    );
    println!(
        "  {ELECTORS} electors on lease \"leader\", {MEMBERS} members on pool slot-0..1; timing 15s/10s/2s; watches on"
    );
    println!(
        "  faults: elector-0 shuts down at 20s; {} and {} crash at 60s\n",
        name(leader),
        name(holder)
    );
    for (t, n, slot, e) in &log {
        let what = match e {
            Event::BecameLeader { epoch, .. } if *n < ELECTORS => {
                format!("became leader (epoch {epoch})")
            }
            Event::BecameLeader { epoch, .. } => format!("acquired slot-{slot} (epoch {epoch})"),
            Event::LostLeadership { reason } => format!("stopped acting: {reason:?}"),
            Event::Released { written } => format!("released on shutdown (written: {written})"),
            _ => continue,
        };
        println!("  {:>9.3}s  {:<10} {what}", *t as f64 / 1e6, name(*n));
    }
    let next_after = |t0: u64, electors: bool| {
        log.iter()
            .find(|(t, n, _, e)| {
                *t >= t0 && (*n < ELECTORS) == electors && matches!(e, Event::BecameLeader { .. })
            })
            .map(|(t, ..)| *t)
    };
    // The next leader sees the release on its watch, often before the releasing node has read
    // its own write's answer: measure from the shutdown.
    let graceful = next_after(s(20), true).unwrap() - s(20);
    let crash = next_after(s(60), true).unwrap() - s(60);
    let slot = next_after(s(60), false).unwrap() - s(60);
    println!(
        "\n  graceful failover (shutdown → next leader):         {:.1} ms",
        graceful as f64 / 1e3
    );
    println!(
        "  crash failover (leader killed → next leader):      {:.3} s  (lease 15 s after the last renew seen)",
        crash as f64 / 1e6
    );
    println!(
        "  slot holder crash → slot taken by a waiting member: {:.3} s",
        slot as f64 / 1e6
    );
    println!(
        "  API requests: {} in {} simulated seconds; {} conflicts; every safety check passed after each of {} steps",
        report.requests,
        scenario(faults).duration / SECOND,
        report.conflicts,
        report.steps
    );
}
