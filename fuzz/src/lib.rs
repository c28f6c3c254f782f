//! What the machine targets share: the simulation crate's one input generator
//! ([`contract::decode`]) and its checked driver ([`contract::exercise`]), the same the property
//! tests run, so a failure found here replays there.

use leasehold_simulation::contract::{self, Subject};

pub use leasehold_simulation::contract::ME;

/// Inputs decoded per run at most: as many as a property-test case (enough for several terms,
/// closes and rejoins), so a run stays short and the fuzzer tries more of them.
pub const INPUTS: usize = 160;

/// What a target reads before the inputs: a seed for the machine's jitter and a byte of
/// options (watching, a pool's size), then the rest.
pub fn header(data: &[u8]) -> (u64, u8, &[u8]) {
    let mut seed = [0u8; 8];
    let (head, rest) = data.split_at(data.len().min(9));
    let options = head.first().copied().unwrap_or(0);
    for (to, from) in seed.iter_mut().zip(head.iter().skip(1)) {
        *to = *from;
    }
    (u64::from_le_bytes(seed), options, rest)
}

/// Drives `machine` through the inputs `data` decodes to, panicking with the broken rule so
/// libFuzzer records the input.
pub fn exercise<M: Subject>(machine: &mut M, data: &[u8]) {
    if let Err(rule) = contract::exercise(machine, contract::decode(data, INPUTS)) {
        panic!("{rule}");
    }
}
