//! Properties of the core's pure rules over random inputs: timing validation as client-go
//! validates, jitter, and expiry arithmetic (monotonic and wall-clock). The machines' properties
//! over random input sequences are the simulation crate's (`simulation/tests/properties.rs`).

use leasehold_core::expiry::{leader_deadline, lease_expiry};
use leasehold_core::jitter::Jitter;
use leasehold_core::timing::request_timeout_within;
use leasehold_core::{Duration, Instant, LeaseRecord, MicroTime, Timing, TimingError};
use proptest::prelude::*;

/// client-go's `NewLeaderElector` checks, transcribed in nanoseconds.
fn client_go_accepts(lease_ns: i64, renew_ns: i64, retry_ns: i64) -> bool {
    const JITTER_FACTOR: f64 = 1.2;
    if lease_ns <= renew_ns {
        return false;
    }
    if renew_ns <= (JITTER_FACTOR * retry_ns as f64) as i64 {
        return false;
    }
    lease_ns >= 1 && renew_ns >= 1 && retry_ns >= 1
}

/// Durations in µs, weighted toward the boundaries the rules draw.
fn timing_triple() -> impl Strategy<Value = (u64, u64, u64)> {
    let plain = (1u64..120, 0u64..130_000_000, 0u64..130_000_000)
        .prop_map(|(lease_s, renew, retry)| (lease_s * 1_000_000, renew, retry));
    let at_jitter_edge =
        (1u64..120, 1u64..20_000_000, -3i64..=3).prop_map(|(lease_s, retry, d)| {
            let renew = (retry * 6 / 5).saturating_add_signed(d);
            (lease_s * 1_000_000, renew, retry)
        });
    let at_lease_edge = (1u64..120, -3i64..=3, 1u64..1_000_000).prop_map(|(lease_s, d, retry)| {
        let lease = lease_s * 1_000_000;
        (lease, lease.saturating_add_signed(d), retry)
    });
    prop_oneof![plain, at_jitter_edge, at_lease_edge]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn validation_accepts_exactly_what_client_go_accepts((lease, renew, retry) in timing_triple()) {
        let ours = Timing::new(
            Duration::from_micros(lease),
            Duration::from_micros(renew),
            Duration::from_micros(retry),
        );
        let theirs = client_go_accepts(lease as i64 * 1000, renew as i64 * 1000, retry as i64 * 1000);
        prop_assert_eq!(ours.is_ok(), theirs, "{:?}", ours);
    }

    #[test]
    fn a_fractional_lease_duration_is_never_accepted(lease in 1u64..120_000_000, seed in any::<u64>()) {
        prop_assume!(lease % 1_000_000 != 0);
        let retry = seed % 1_000_000 + 1;
        let t = Timing::new(Duration::from_micros(lease), Duration::from_micros(retry * 2), Duration::from_micros(retry));
        let whole_seconds_refused = matches!(t, Err(TimingError::LeaseNotWholeSeconds { .. }));
        prop_assert!(t.is_err() && (whole_seconds_refused || !client_go_accepts(lease as i64, retry as i64 * 2, retry as i64)));
    }

    #[test]
    fn jitter_stays_within_retry_and_2_2_retry(seed in any::<u64>(), retry in 1u64..(u64::MAX / 3)) {
        let mut j = Jitter::new(seed);
        for _ in 0..8 {
            let d = j.retry(Duration::from_ticks(retry)).as_ticks();
            prop_assert!(d >= retry);
            prop_assert!(u128::from(d) * 5 < u128::from(retry) * 11, "{} vs {}", d, retry);
        }
    }

    #[test]
    fn expiry_saturates_at_instant_max(at in any::<u64>(), dur in any::<u64>(), fallback in any::<u64>(), has in any::<bool>()) {
        let record = LeaseRecord {
            lease_duration: has.then_some(Duration::from_ticks(dur)),
            ..LeaseRecord::EMPTY
        };
        let used = if has { dur } else { fallback };
        let expiry = lease_expiry(Instant::from_ticks(at), &record, Duration::from_ticks(fallback));
        prop_assert_eq!(expiry.as_ticks(), at.saturating_add(used));
        let deadline = leader_deadline(Instant::from_ticks(at), Duration::from_ticks(dur));
        prop_assert_eq!(deadline.as_ticks(), at.saturating_add(dur));
    }

    #[test]
    fn a_valid_timing_has_a_grace_default_within_its_room(lease_s in 2u64..120, renew_pm in 100u64..1000, retry_pm in 1u64..1000) {
        let lease = Duration::from_secs(lease_s);
        let renew = Duration::from_ticks(lease.as_ticks() * renew_pm / 1000);
        let retry = Duration::from_ticks(renew.as_ticks() * retry_pm / 1000);
        prop_assume!(retry.as_ticks() > 0);
        if let Ok(t) = Timing::new(lease, renew, retry) {
            let grace = t.child_grace(None).unwrap();
            let room = renew.as_ticks() - retry.as_ticks();
            prop_assert!(grace.as_ticks() > 0 && grace.as_ticks() < room, "{:?} of {}", grace, room);
            prop_assert!(grace <= Duration::from_secs(3));
            prop_assert!(t.child_grace(Some(Duration::from_ticks(room))).is_err());
            let timeout = t.request_timeout();
            prop_assert!(timeout >= Duration::from_secs(1));
            prop_assert!(timeout.as_ticks() == (renew.as_ticks() / 2).max(1_000_000));
        }
    }

    #[test]
    fn the_request_timeout_is_half_the_budget_and_never_below_a_second(budget in any::<u64>()) {
        let t = request_timeout_within(Duration::from_ticks(budget));
        prop_assert_eq!(t.as_ticks(), (budget / 2).max(Duration::from_secs(1).as_ticks()));
    }

    #[test]
    fn wall_clock_expiry_saturates_and_never_passes_when_saturated(renew in any::<i64>(), dur in any::<u64>(), now in any::<i64>()) {
        let record = LeaseRecord {
            lease_duration: Some(Duration::from_ticks(dur)),
            renew_time: Some(MicroTime::from_unix_micros(renew)),
            ..LeaseRecord::EMPTY
        };
        let at = record.expires_at().unwrap();
        let sum = i128::from(renew) + i128::from(dur.min(i64::MAX as u64));
        prop_assert_eq!(i128::from(at.as_unix_micros()), sum.min(i128::from(i64::MAX)));
        let now = MicroTime::from_unix_micros(now);
        match record.expired_for(now) {
            None => prop_assert_eq!(at, MicroTime::MAX),
            Some(ago) if now <= at => prop_assert_eq!(ago, Duration::from_ticks(0)),
            Some(ago) => prop_assert!(ago.as_ticks() > 0),
        }
    }
}
