//! A heartbeat fed arbitrary inputs through the `Machine` trait keeps its contract.
#![no_main]

use leasehold_core::{Duration, Heartbeat, HeartbeatConfig, Identity, LeaseName};
use leasehold_fuzz::{ME, exercise, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, options, inputs) = header(data);
    let config = HeartbeatConfig {
        lease: LeaseName::new("node").unwrap(),
        identity: Identity::new(ME).unwrap(),
        lease_duration: Duration::from_secs(u64::from(options % 60) + 2),
        renew_interval: None,
    };
    exercise(&mut Heartbeat::new(config, seed).unwrap(), inputs);
});
