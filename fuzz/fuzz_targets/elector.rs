//! An elector fed arbitrary inputs through the `Machine` trait keeps its contract (see
//! `leasehold_simulation::contract`).
#![no_main]

use leasehold_core::{Elector, ElectorConfig, Identity, LeaseName, Timing};
use leasehold_fuzz::{ME, exercise, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, options, inputs) = header(data);
    let config = ElectorConfig {
        lease: LeaseName::new("l").unwrap(),
        identity: Identity::new(ME).unwrap(),
        timing: Timing::DEFAULT,
        watch: options % 2 == 1,
    };
    exercise(&mut Elector::new(config, seed), inputs);
});
