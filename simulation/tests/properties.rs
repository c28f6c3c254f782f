//! Properties of the core over random inputs: timing validation, jitter, expiry arithmetic, and
//! arbitrary input sequences against each machine.

use leasehold_core::expiry::{leader_deadline, lease_expiry};
use leasehold_core::jitter::Jitter;
use leasehold_core::{
    ApiError, Duration, Elector, ElectorConfig, Heartbeat, HeartbeatConfig, Holder, Identity,
    Instant, Lease, LeaseName, LeaseRecord, Machine, MicroTime, Pool, PoolConfig, Timing,
    TimingError, WatchEvent,
};
use leasehold_simulation::contract::{self, Discipline};
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
}

/// One input to a machine.
#[derive(Clone, Debug)]
enum Input {
    Advance(u64),
    Respond(Answer),
    Watch(u8, Answer),
    Shutdown,
}

#[derive(Clone, Debug)]
enum Answer {
    Lease {
        rv: u16,
        holder: u8,
        duration_s: u8,
        transitions: u8,
    },
    Error(ApiError),
}

fn answer() -> impl Strategy<Value = Answer> {
    let errors = prop_oneof![
        Just(ApiError::NotFound),
        Just(ApiError::Conflict),
        Just(ApiError::AlreadyExists),
        Just(ApiError::Forbidden),
        Just(ApiError::Unauthorized),
        Just(ApiError::Invalid),
        Just(ApiError::Timeout),
        Just(ApiError::Transport),
        Just(ApiError::Malformed),
        (500u16..600).prop_map(|status| ApiError::Server { status }),
        proptest::option::of(0u64..100_000).prop_map(|ms| ApiError::TooManyRequests {
            retry_after: ms.map(Duration::from_millis)
        }),
    ];
    prop_oneof![
        3 => (any::<u16>(), 0u8..4, 0u8..60, any::<u8>()).prop_map(|(rv, holder, duration_s, transitions)| {
            Answer::Lease { rv, holder, duration_s, transitions }
        }),
        2 => errors.prop_map(Answer::Error),
    ]
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let input = prop_oneof![
        4 => (0u64..20_000).prop_map(Input::Advance),
        4 => answer().prop_map(Input::Respond),
        2 => (0u8..6, answer()).prop_map(|(kind, a)| Input::Watch(kind, a)),
        1 => (0u64..200_000).prop_map(Input::Advance),
        1 => Just(Input::Shutdown),
    ];
    proptest::collection::vec(input, 1..120)
}

const ME: &str = "me";

fn lease_of(rv: u16, holder: u8, duration_s: u8, transitions: u8) -> Lease {
    let long = "x".repeat(300);
    let holder = match holder {
        0 => Holder::from_wire(Some(ME)),
        1 => Holder::from_wire(Some("other")),
        2 => Holder::from_wire(Some(long.as_str())),
        _ => Holder::None,
    };
    contract::lease(rv, holder, duration_s, u16::from(transitions))
}

fn response(a: &Answer) -> Result<Lease, ApiError> {
    match a {
        Answer::Lease {
            rv,
            holder,
            duration_s,
            transitions,
        } => Ok(lease_of(*rv, *holder, *duration_s, *transitions)),
        Answer::Error(e) => Err(*e),
    }
}

fn watch_event(kind: u8, a: &Answer) -> WatchEvent {
    match (kind, response(a)) {
        (0 | 1, Ok(lease)) => WatchEvent::Changed(lease),
        (1, Err(_)) | (2, _) => WatchEvent::Deleted,
        (3, Ok(lease)) => WatchEvent::Bookmark(lease.resource_version),
        (3, Err(_)) | (4, _) => WatchEvent::Ended,
        (0, Err(_)) => WatchEvent::Expired,
        _ => WatchEvent::Failed,
    }
}

fn identity() -> Identity {
    Identity::new(ME).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn an_elector_keeps_its_discipline_under_any_inputs(watch in any::<bool>(), seed in any::<u64>(), inputs in inputs()) {
        let mut e = Elector::new(
            ElectorConfig { lease: LeaseName::new("l").unwrap(), identity: identity(), timing: Timing::DEFAULT, watch },
            seed,
        );
        let mut d = Discipline::default();
        let mut now = 0u64;
        for input in inputs {
            let t = Instant::from_millis(now);
            match &input {
                Input::Advance(ms) => { now += ms; e.handle_timeout(Instant::from_millis(now)); }
                Input::Respond(a) => { d.answered(0); e.handle_answer(0, response(a), t); }
                Input::Watch(kind, a) => e.handle_watch_event(0, watch_event(*kind, a), t),
                Input::Shutdown => e.close(t),
            }
            let t = Instant::from_millis(now);
            while let Some(r) = e.poll_request(t, MicroTime::from_unix_micros(0)) {
                d.request(r).map_err(TestCaseError::fail)?;
            }
            while let Some(ev) = e.poll_event() {
                d.event(0, &ev).map_err(TestCaseError::fail)?;
            }
            prop_assert_eq!(e.is_leader(t), d.leading.contains(&0), "events and is_leader disagree");
            if e.is_leader(t) {
                prop_assert!(e.deadline().is_some_and(|dl| t < dl));
                prop_assert!(e.holder().is_some_and(|h| h.is(&identity())), "leads a lease it was not last seen holding");
            }
            if let Some(at) = e.poll_timeout() {
                // A wake-up in the past must have something to do.
                if at <= t {
                    prop_assert!(e.poll_request(t, MicroTime::from_unix_micros(0)).is_some(), "{:?} asks to be woken for nothing", at);
                }
            }
        }
    }

    #[test]
    fn a_pool_member_holds_at_most_one_slot_under_any_inputs(watch in any::<bool>(), seed in any::<u64>(), size in 1usize..4, inputs in inputs(), slots in proptest::collection::vec(0u16..4, 120)) {
        let mut p: Pool<4> = Pool::new(
            PoolConfig { prefix: "cold-start", size, identity: identity(), timing: Timing::DEFAULT, watch },
            seed,
        ).unwrap();
        let mut d = Discipline::default();
        let mut now = 0u64;
        for (input, pick) in inputs.iter().zip(slots) {
            let t = Instant::from_millis(now);
            // Answer the outstanding request of a slot, if any (else a stray answer).
            let slot = d.outstanding.keys().copied().nth(usize::from(pick) % d.outstanding.len().max(1)).unwrap_or(pick);
            match input {
                Input::Advance(ms) => { now += ms; p.handle_timeout(Instant::from_millis(now)); }
                Input::Respond(a) => { d.answered(slot); p.handle_answer(slot, response(a), t); }
                Input::Watch(kind, a) => p.handle_watch_event(pick, watch_event(*kind, a), t),
                Input::Shutdown => p.close(t),
            }
            let t = Instant::from_millis(now);
            while let Some(r) = p.poll_request(t, MicroTime::from_unix_micros(0)) {
                d.request(r).map_err(TestCaseError::fail)?;
            }
            while let Some(ev) = p.poll_event() {
                d.event(ev.slot, &ev.event).map_err(TestCaseError::fail)?;
            }
            prop_assert!(d.leading.len() <= 1, "holds {:?}", d.leading);
            prop_assert_eq!(p.held(t), d.leading.iter().next().copied());
        }
    }

    #[test]
    fn a_heartbeat_keeps_one_request_in_flight_under_any_inputs(seed in any::<u64>(), inputs in inputs()) {
        let mut h = Heartbeat::new(
            HeartbeatConfig { lease: LeaseName::new("node").unwrap(), identity: identity(), lease_duration: Duration::from_secs(40), renew_interval: None },
            seed,
        ).unwrap();
        let mut d = Discipline::default();
        let mut now = 0u64;
        for input in inputs {
            let t = Instant::from_millis(now);
            match &input {
                Input::Advance(ms) => { now += ms; h.handle_timeout(Instant::from_millis(now)); }
                Input::Respond(a) => { d.answered(0); h.handle_answer(0, response(a), t); }
                Input::Watch(..) => {}
                Input::Shutdown => h.close(t),
            }
            while let Some(r) = h.poll_request(Instant::from_millis(now), MicroTime::from_unix_micros(0)) {
                d.request(r).map_err(TestCaseError::fail)?;
            }
            while h.poll_event().is_some() {}
        }
    }
}
