//! Builders shared by the unit tests.

use crate::record::{Holder, Identity, Lease, LeaseName, LeaseRecord, MicroTime, ResourceVersion};
use crate::{
    Duration, Elector, ElectorConfig, Event, Instant, Machine, Operation, Request, Timing,
};
use core::fmt::Write;
use heapless::{String, Vec};

pub const WALL: MicroTime = MicroTime::from_unix_micros(1_700_000_000_000_000);

pub fn ms(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

pub fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

pub fn rv(n: u64) -> ResourceVersion {
    let mut s: String<20> = String::new();
    write!(s, "{n}").unwrap();
    ResourceVersion::new(&s).unwrap()
}

pub fn lease(version: u64, holder: Option<&str>, transitions: u32) -> Lease {
    Lease {
        resource_version: rv(version),
        record: LeaseRecord {
            holder: Holder::from_wire(holder),
            lease_duration: Some(Duration::from_secs(15)),
            acquire_time: Some(WALL),
            renew_time: Some(WALL),
            lease_transitions: Some(transitions),
            next_holder: Holder::None,
        },
    }
}

pub fn elector(identity: &str, watch: bool) -> Elector {
    Elector::new(
        ElectorConfig {
            lease: LeaseName::new("demo").unwrap(),
            identity: id(identity),
            timing: Timing::DEFAULT,
            watch,
        },
        7,
    )
}

/// The wall-clock time at `now`: [`WALL`] at zero, running with the monotonic clock, so every
/// renew writes a later `renewTime` as a real one does.
pub fn wall_at(now: Instant) -> MicroTime {
    MicroTime::from_unix_micros(WALL.as_unix_micros() + now.as_micros() as i64)
}

/// The next `Get`, `Create` or `Update` due at `now`; watch streams are opened (or closed) on
/// the way, at most one of each.
pub fn poll(e: &mut Elector, now: Instant) -> Option<Operation> {
    for _ in 0..3 {
        match e.poll_request(now, wall_at(now)).map(|r: Request| r.op) {
            Some(Operation::Watch { .. } | Operation::Unwatch) => continue,
            other => return other,
        }
    }
    panic!("watch requests without end at {now:?}")
}

/// Steps time by 10 ms from `from_ms`, answering every read with `current`, until the elector
/// sends a write; returns when and what.
pub fn next_write(e: &mut Elector, from_ms: u64, current: &Lease) -> (u64, Operation) {
    let mut now = from_ms;
    loop {
        match poll(e, ms(now)) {
            Some(Operation::Get) => e.handle_answer(0, Ok(current.clone()), ms(now)),
            Some(op) => return (now, op),
            None => now += 10,
        }
        assert!(now < from_ms + 600_000, "no write within ten minutes");
    }
}

pub fn events(e: &mut Elector) -> Vec<Event, 16> {
    let mut out = Vec::new();
    while let Some(ev) = e.poll_event() {
        out.push(ev).unwrap();
    }
    out
}

/// The lease a successful write of `op` stores at `version`.
pub fn stored(op: &Operation, version: u64) -> Lease {
    let record = match op {
        Operation::Create(r) | Operation::Update { record: r, .. } => r.clone(),
        other => panic!("not a write: {other:?}"),
    };
    Lease {
        resource_version: rv(version),
        record,
    }
}

/// An elector that has become leader at t=0 with the lease stored at version 1.
pub fn leader(identity: &str, watch: bool) -> Elector {
    let mut e = elector(identity, watch);
    assert_eq!(poll(&mut e, ms(0)), Some(Operation::Get));
    e.handle_answer(0, Err(crate::ApiError::NotFound), ms(0));
    let create = poll(&mut e, ms(0)).unwrap();
    e.handle_answer(0, Ok(stored(&create, 1)), ms(0));
    assert!(e.is_leader(ms(0)));
    events(&mut e);
    e
}
