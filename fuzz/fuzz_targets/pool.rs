//! A pool member fed arbitrary inputs through the `Machine` trait keeps its contract and holds at
//! most one slot.
#![no_main]

use leasehold_core::{Identity, Pool, PoolConfig, Timing};
use leasehold_fuzz::{ME, exercise, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, options, inputs) = header(data);
    let config = PoolConfig {
        prefix: "slot",
        size: usize::from(options / 2 % 4) + 1,
        identity: Identity::new(ME).unwrap(),
        timing: Timing::DEFAULT,
        watch: options % 2 == 1,
    };
    let mut pool: Pool<4> = Pool::new(config, seed).unwrap();
    exercise(&mut pool, inputs);
});
