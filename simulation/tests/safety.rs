//! The deterministic simulation's safety and liveness checks over many random scenarios, and
//! proof that its checker does catch a real violation.
//!
//! Most random runs leave out `kubectl delete` of a lease; one test runs 2 000 seeds with deletes,
//! kept clear of agent starts: a process whose first read is answered just after a delete
//! creates the lease at once, the documented limit (`tests/work_overlap.rs`, `limit_*`).
//!
//! Soak (longer, more seeds), from the workspace root:
//!
//! ```text
//! LEASEHOLD_SIM_SEEDS=200000 LEASEHOLD_SIM_MINUTES=60 \
//!     cargo test --release -p leasehold-simulation --test safety soak -- --ignored --nocapture
//! ```
//!
//! Replay one failing seed with a trace of its last events (`LEASEHOLD_SIM_DELETES=1` keeps its
//! deletes, `LEASEHOLD_SIM_SHARED=1` draws it as the shared-identity runs do):
//!
//! ```text
//! LEASEHOLD_SIM_SEED=1234 cargo test -p leasehold-simulation --test safety replay -- --ignored --nocapture
//! ```

use leasehold_simulation::{
    Failure, Fault, FaultKind, LeaseId, Report, SECOND, Scenario, replay, run,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which random scenarios a run draws.
#[derive(Clone, Copy)]
enum Draw {
    /// As drawn, without deletes.
    NoDeletes,
    /// As drawn, deletes included.
    WithDeletes,
    /// Without deletes, and the last node of a role runs under the first one's identity.
    SharedIdentity,
}

fn scenario(seed: u64, minutes: u64, draw: Draw) -> Scenario {
    let mut s = Scenario::random(seed, minutes * 60 * SECOND);
    if matches!(draw, Draw::WithDeletes) {
        s.keep_deletes_clear_of_starts();
    } else {
        s.faults.retain(|f| !matches!(f.kind, FaultKind::Delete(_)));
    }
    if matches!(draw, Draw::SharedIdentity) {
        let (first, last) = if s.pool_members >= 2 && seed % 2 == 0 {
            (s.electors, s.nodes() - 1)
        } else {
            (0, s.electors - 1)
        };
        s.identities[last] = first;
    }
    s
}

/// Runs `count` random scenarios from `first` on every core; panics with the first failing
/// seed, its trace and the command that replays it.
fn run_seeds(first: u64, count: u64, minutes: u64, draw: Draw) -> Report {
    let next = AtomicU64::new(first);
    let total = Mutex::new(Report::default());
    let failure = Mutex::new(None);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut sum = Report::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count || failure.lock().unwrap().is_some() {
                        break;
                    }
                    let scenario = scenario(seed, minutes, draw);
                    match run(&scenario) {
                        Ok(r) => sum += r,
                        Err(_) => {
                            let traced =
                                replay(&scenario).expect_err("a replay fails the same way");
                            *failure.lock().unwrap() = Some((traced, scenario));
                        }
                    }
                }
                *total.lock().unwrap() += sum;
            });
        }
    });
    if let Some((violation, scenario)) = failure.into_inner().unwrap() {
        panic!(
            "{violation}\n{scenario:#?}\nreplay: LEASEHOLD_SIM_SEED={} LEASEHOLD_SIM_MINUTES={minutes} \
             cargo test -p leasehold-simulation --test safety replay -- --ignored --nocapture",
            violation.seed
        );
    }
    total.into_inner().unwrap()
}

#[test]
fn ten_thousand_ten_minute_runs_keep_the_work_exclusive_and_live() {
    let seeds = 10_000;
    let report = run_seeds(
        env("LEASEHOLD_SIM_FIRST_SEED", 0),
        seeds,
        10,
        Draw::NoDeletes,
    );
    println!("{seeds} seeds × 10 min: {report:?}");
    // The runs must have exercised what they claim to check.
    assert!(report.elections > seeds * 3, "{report:?}");
    assert!(report.losses > seeds * 2, "{report:?}");
    assert!(report.slot_acquisitions > seeds, "{report:?}");
    assert!(report.conflicts > seeds, "{report:?}");
    assert!(report.watches > seeds, "{report:?}");
    assert!(report.works > seeds * 4, "{report:?}");
    assert!(report.kills > seeds / 2, "{report:?}");
    assert!(report.orphans > seeds / 10, "{report:?}");
    // Resumes too old for the server's history (410). A pool holder keeps its stream (to see
    // its slot reserved), so fewer streams are resumed after a term: about a third of a run.
    assert!(report.expired > seeds / 4, "{report:?}");
    assert!(report.unchanged > seeds / 10, "{report:?}");
    assert!(report.heartbeat_renewals > seeds * 50, "{report:?}");
    assert!(report.reservations > seeds, "{report:?}");
}

#[test]
fn a_thousand_runs_with_a_shared_identity_keep_the_work_exclusive() {
    let report = run_seeds(
        env("LEASEHOLD_SIM_FIRST_SEED", 50_000),
        1_000,
        10,
        Draw::SharedIdentity,
    );
    assert!(report.works > 4_000, "{report:?}");
}

#[test]
fn two_thousand_runs_with_kubectl_deletes_keep_the_work_exclusive() {
    let report = run_seeds(
        env("LEASEHOLD_SIM_FIRST_SEED", 0),
        env("LEASEHOLD_SIM_SEEDS", 2_000),
        10,
        Draw::WithDeletes,
    );
    assert!(report.deletes > 800, "{report:?}");
}

#[test]
#[ignore = "soak: minutes of wall time; see the file's doc comment"]
fn soak() {
    let report = run_seeds(
        env("LEASEHOLD_SIM_FIRST_SEED", 1_000_000),
        env("LEASEHOLD_SIM_SEEDS", 200_000),
        env("LEASEHOLD_SIM_MINUTES", 60),
        Draw::NoDeletes,
    );
    println!("{report:?}");
}

#[test]
#[ignore = "replays LEASEHOLD_SIM_SEED with a trace"]
fn replay_seed() {
    let seed = env("LEASEHOLD_SIM_SEED", 0);
    let draw = if env("LEASEHOLD_SIM_SHARED", 0) == 1 {
        Draw::SharedIdentity
    } else if env("LEASEHOLD_SIM_DELETES", 0) == 1 {
        Draw::WithDeletes
    } else {
        Draw::NoDeletes
    };
    let scenario = scenario(seed, env("LEASEHOLD_SIM_MINUTES", 10), draw);
    match replay(&scenario) {
        Ok(report) => println!("seed {seed} passes: {report:?}"),
        Err(v) => panic!("{v}\n{scenario:#?}"),
    }
}

#[test]
fn a_seed_replays_exactly() {
    let one = scenario(4242, 10, Draw::WithDeletes);
    assert_eq!(run(&one).unwrap(), run(&one).unwrap());
    let other = scenario(4243, 10, Draw::WithDeletes);
    assert_ne!(run(&one).unwrap(), run(&other).unwrap());
}

/// Two electors; node 1 is down for the first 5 s so node 0 leads; node 0 is then cut off from
/// the API server at 20 s. Its child ignores SIGTERM, so only the fence's SIGKILL stops it.
fn partitioned_leader(rates_ppm: [u64; 2]) -> Scenario {
    let mut s = Scenario::fault_on_the_leader(7, FaultKind::Partition(0), 200 * SECOND);
    s.rates_ppm = rates_ppm.to_vec();
    s.max_drift_ppm = 300_000;
    s
}

#[test]
fn the_checker_catches_overlapping_work_when_clocks_drift_past_the_bound() {
    // Node 0's clock runs at 0.7×, node 1's at 1.3×: beyond the 20 % that 15 s / 10 s allows,
    // node 0's fence kills its work at its deadline only after node 1's work has started.
    let violation = run(&partitioned_leader([700_000, 1_300_000])).unwrap_err();
    assert!(
        matches!(
            violation.failure,
            Failure::Overlap {
                lease: LeaseId::Leader,
                first: (0, _),
                second: (1, _),
            }
        ),
        "{violation}"
    );
}

#[test]
fn the_same_partition_is_safe_within_the_drift_bound() {
    let report = run(&partitioned_leader([900_000, 1_100_000])).unwrap();
    assert!(report.elections >= 2, "node 1 took over: {report:?}");
    assert!(
        report.kills >= 1,
        "the fence killed node 0's work: {report:?}"
    );
}

/// One elector and one heartbeat node (node 1); `fault` hits the heartbeat node from 20 s to
/// `until`, with the quiet tail from 150 s.
fn heartbeat_under(fault: fn(usize) -> FaultKind, until: u64) -> Scenario {
    let mut s = Scenario::calm(11, 1, 0, 1, 300 * SECOND);
    let node = s.add_heartbeat(1_000_000);
    s.faults = vec![Fault {
        kind: fault(node),
        start: 20 * SECOND,
        end: until,
    }];
    s
}

#[test]
fn a_heartbeat_renews_within_its_interval_once_the_server_is_reachable_again() {
    let faults: [fn(usize) -> FaultKind; 6] = [
        FaultKind::Partition,
        FaultKind::Pause,
        FaultKind::PauseAgent,
        FaultKind::Crash,
        FaultKind::KillAgent,
        FaultKind::Shutdown,
    ];
    for fault in faults {
        let scenario = heartbeat_under(fault, 100 * SECOND);
        let report = run(&scenario).unwrap_or_else(|v| panic!("{:?}: {v}", scenario.faults));
        // 300 s of renewals every 3.75–3.9 s, less the 80 s fault: about 56 writes.
        assert!(
            (50..80).contains(&report.heartbeat_renewals),
            "{:?}: {report:?}",
            scenario.faults
        );
    }
}

#[test]
fn the_checker_catches_a_heartbeat_that_stops_renewing() {
    // Paused to the end: the API is calm, but the heartbeat's lease goes unwritten.
    let violation = run(&heartbeat_under(FaultKind::Pause, 300 * SECOND)).unwrap_err();
    assert_eq!(
        violation.failure,
        Failure::HeartbeatLate { node: 1 },
        "{violation}"
    );
}
