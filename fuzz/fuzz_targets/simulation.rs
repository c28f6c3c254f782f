//! The deterministic multi-node simulation with an arbitrary scenario and fault schedule: the
//! safety checker (never two leaders, believers are the stored holder, nobody past its
//! deadline, liveness once quiet) is the oracle.
#![no_main]

use arbitrary::Arbitrary;
use leasehold_core::Timing;
use leasehold_simulation::{Fault, FaultKind, Network, SECOND, Scenario, run};
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
    faults: Vec<(u8, u8, u8, u8)>,
}

fuzz_target!(|plan: Plan| {
    let electors = usize::from(plan.electors % 4) + 1;
    let members = usize::from(plan.members % 4);
    let nodes = electors + members;
    let faulty = 120 * SECOND;
    let faults = plan
        .faults
        .iter()
        .take(8)
        .map(|&(kind, node, start, length)| {
            let node = usize::from(node) % nodes;
            let kind = match kind % 5 {
                0 => FaultKind::Pause(node),
                1 => FaultKind::Crash(node),
                2 => FaultKind::Shutdown(node),
                3 => FaultKind::Partition(node),
                _ => FaultKind::Outage,
            };
            let start = u64::from(start) * faulty / 256;
            let end = (start + (u64::from(length) + 1) * SECOND / 4).min(faulty);
            Fault { kind, start, end }
        })
        .collect();
    let scenario = Scenario {
        seed: plan.seed,
        timing: Timing::DEFAULT,
        electors,
        pool_members: members,
        pool_size: usize::from(plan.slots % 3) + 1,
        watch: (0..nodes).map(|i| plan.watch >> i & 1 == 1).collect(),
        // Within the stated ±10 % bound.
        rates_ppm: (0..nodes)
            .map(|i| 900_000 + u64::from(plan.rates[i % 8]) * 200_000 / 255)
            .collect(),
        max_drift_ppm: 100_000,
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
    if let Err(violation) = run(&scenario) {
        panic!("{violation}\n{scenario:#?}");
    }
});
