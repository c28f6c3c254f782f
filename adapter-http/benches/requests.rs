//! Lease updates per second the HTTP transport sustains against the fake API server (see
//! `leasehold_conformance::requests_per_second`).
//!
//! `cargo bench -p leasehold-adapter-http --bench requests`

#[path = "../tests/connect/mod.rs"]
mod connect;

use leasehold_conformance::requests_per_second;
use std::time::Duration;

fn main() {
    let rates = requests_per_second(connect::connect, 3, Duration::from_secs(3));
    println!(
        "| adapter-http | {:.0} | {:.0} – {:.0} |",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
