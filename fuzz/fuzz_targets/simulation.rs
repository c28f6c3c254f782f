//! The deterministic multi-node simulation with an arbitrary scenario and fault schedule: the
//! work oracle (never two works on one lease, never more than the pool's slots), the machines'
//! own claims, liveness once quiet, and heartbeat nodes' renewals on the server once quiet are
//! the verdict. Every machine (electors, pool members, heartbeats) is driven through the core's
//! `Machine` trait.
//!
//! Deletes of the elected lease are in the fault schedule, kept clear of agent starts
//! (`Scenario::keep_deletes_clear_of_starts`): a first read answered just after a delete creates
//! the lease at once, the documented limit the fuzzer would otherwise rediscover at once.
#![no_main]

use arbitrary::Arbitrary;
use leasehold_core::{Duration, Timing};
use leasehold_simulation::{
    Child, Fault, FaultKind, LeaseId, Network, SECOND, Scenario, WorkPolicy, run,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Plan {
    seed: u64,
    electors: u8,
    members: u8,
    slots: u8,
    watch: u16,
    rates: [u8; 8],
    latency_ms: u8,
    slow: u8,
    lost: u8,
    errors: u8,
    throttled: u8,
    cut: u8,
    /// A second node of a role runs under the first one's identity when set.
    shared_identity: bool,
    /// Per node (bit i): the child ignores SIGTERM.
    ignores_term: u8,
    stop_delay_ms: u16,
    grace_ms: u16,
    history: u8,
    coarse_wall: bool,
    /// Heartbeat nodes beside the electors and members (0–2).
    heartbeats: u8,
    faults: Vec<(u8, u8, u8, u8)>,
}

fuzz_target!(|plan: Plan| {
    let electors = usize::from(plan.electors % 4) + 1;
    let members = usize::from(plan.members % 4);
    let heartbeats = usize::from(plan.heartbeats % 3);
    let nodes = electors + members;
    let faulty = 120 * SECOND;
    let faults = plan
        .faults
        .iter()
        .take(8)
        .map(|&(kind, node, start, length)| {
            let node = usize::from(node) % (nodes + heartbeats);
            let kind = match kind % 8 {
                0 => FaultKind::Pause(node),
                1 => FaultKind::PauseAgent(node),
                2 => FaultKind::Crash(node),
                3 => FaultKind::KillAgent(node),
                4 => FaultKind::Shutdown(node),
                5 => FaultKind::Partition(node),
                6 => FaultKind::Outage,
                _ => FaultKind::Delete(LeaseId::Leader),
            };
            let start = u64::from(start) * faulty / 256;
            let end = (start + (u64::from(length) + 1) * SECOND / 4).min(faulty);
            Fault { kind, start, end }
        })
        .collect();
    let mut scenario = Scenario {
        seed: plan.seed,
        timing: Timing::DEFAULT,
        electors,
        pool_members: members,
        pool_size: usize::from(plan.slots % 3) + 1,
        heartbeats: 0,
        identities: (0..nodes)
            .map(|i| if plan.shared_identity && i == 1 { 0 } else { i })
            .collect(),
        watch: (0..nodes).map(|i| plan.watch >> i & 1 == 1).collect(),
        // Within the stated ±10 % bound.
        rates_ppm: (0..nodes)
            .map(|i| 900_000 + u64::from(plan.rates[i % 8]) * 200_000 / 255)
            .collect(),
        max_drift_ppm: 100_000,
        wall_resolution: if plan.coarse_wall { SECOND } else { 1 },
        policy: WorkPolicy::Fenced,
        // Up to the old default, lease − renew.
        grace: Duration::from_millis(u64::from(plan.grace_ms) % 5_001),
        children: (0..nodes)
            .map(|i| {
                if plan.ignores_term >> (i % 8) & 1 == 1 {
                    Child::IgnoresTerm
                } else {
                    Child::ExitsAfter(u64::from(plan.stop_delay_ms) * 1_000)
                }
            })
            .collect(),
        history: usize::from(plan.history) + 1,
        watch_lifetime: 60 * SECOND,
        duration: faulty + 90 * SECOND,
        quiet_tail: 90 * SECOND,
        network: Network {
            max_latency: (u64::from(plan.latency_ms) + 1) * 1_000,
            slow_permille: u64::from(plan.slow % 50),
            slow_latency: 8 * SECOND,
            request_loss_permille: u64::from(plan.lost % 100),
            response_loss_permille: u64::from(plan.lost / 3 % 100),
            error_permille: u64::from(plan.errors % 200),
            throttle_permille: u64::from(plan.throttled % 100),
            watch_cut_permille: u64::from(plan.cut % 100),
        },
        faults,
    };
    for i in 0..heartbeats {
        scenario.add_heartbeat(900_000 + u64::from(plan.rates[(nodes + i) % 8]) * 200_000 / 255);
    }
    scenario.keep_deletes_clear_of_starts();
    if let Err(violation) = run(&scenario) {
        panic!("{violation}\n{scenario:#?}");
    }
});
