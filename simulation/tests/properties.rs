//! The machine contract ([`leasehold_simulation::contract`]) under arbitrary input sequences:
//! the three machines are driven through the one `Machine` trait with the one input generator
//! the fuzz targets use, and checked after every input.

use leasehold_core::{
    Duration, Elector, ElectorConfig, Heartbeat, HeartbeatConfig, Identity, LeaseName, Pool,
    PoolConfig, Timing,
};
use leasehold_simulation::contract::{ME, decode, exercise};
use proptest::prelude::*;

/// Inputs per case: enough for several terms, closes and rejoins.
const INPUTS: usize = 160;

fn identity() -> Identity {
    Identity::new(ME).unwrap()
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..1_200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn an_elector_keeps_the_contract_under_any_inputs(watch in any::<bool>(), seed in any::<u64>(), bytes in bytes()) {
        let config = ElectorConfig { lease: LeaseName::new("l").unwrap(), identity: identity(), timing: Timing::DEFAULT, watch };
        let mut e = Elector::new(config, seed);
        exercise(&mut e, decode(&bytes, INPUTS)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn a_pool_member_keeps_the_contract_and_holds_at_most_one_slot(watch in any::<bool>(), seed in any::<u64>(), size in 1usize..4, bytes in bytes()) {
        let config = PoolConfig { prefix: "cold-start", size, identity: identity(), timing: Timing::DEFAULT, watch };
        let mut p: Pool<4> = Pool::new(config, seed).unwrap();
        exercise(&mut p, decode(&bytes, INPUTS)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn a_heartbeat_keeps_the_contract_under_any_inputs(seed in any::<u64>(), bytes in bytes()) {
        let config = HeartbeatConfig { lease: LeaseName::new("node").unwrap(), identity: identity(), lease_duration: Duration::from_secs(40), renew_interval: None };
        let mut h = Heartbeat::new(config, seed).unwrap();
        exercise(&mut h, decode(&bytes, INPUTS)).map_err(TestCaseError::fail)?;
    }
}
