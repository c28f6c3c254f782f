//! The contract every core machine keeps with its driver, checked input by input by the
//! property tests (`core/tests/properties.rs`) and the fuzz targets (`fuzz/`), which feed a
//! machine arbitrary answers and watch events:
//!
//! - at most one `Get`/`Create`/`Update` in flight per lease;
//! - every write carries a holder the wire can represent and a positive duration;
//! - `BecameLeader` and `LostLeadership` alternate per slot, so the events a driver sees always
//!   agree with the machine's getters.

use leasehold_core::{
    Duration, Event, Holder, Lease, LeaseRecord, MicroTime, Operation, Request, ResourceVersion,
};
use std::collections::{HashMap, HashSet};

/// What a well-behaved driver tracks of one machine.
#[derive(Debug, Default)]
pub struct Discipline {
    /// The outstanding `Get`/`Create`/`Update` of each slot.
    pub outstanding: HashMap<u16, Operation>,
    /// The slots the events say are led.
    pub leading: HashSet<u16>,
}

impl Discipline {
    /// Records a request the machine asked for; an error says which rule it broke.
    pub fn request(&mut self, r: Request) -> Result<(), String> {
        if matches!(r.op, Operation::Watch { .. } | Operation::Unwatch) {
            return Ok(());
        }
        if let Operation::Create(rec) | Operation::Update { record: rec, .. } = &r.op {
            if rec.holder.as_wire().is_none() {
                return Err(format!(
                    "writes an unrepresentable holder: {:?}",
                    rec.holder
                ));
            }
            if rec.lease_duration.is_none_or(|d| d.as_ticks() == 0) {
                return Err(format!("writes no lease duration: {rec:?}"));
            }
        }
        match self.outstanding.insert(r.slot, r.op) {
            Some(previous) => Err(format!(
                "a second request on slot {} while {previous:?} is in flight",
                r.slot
            )),
            None => Ok(()),
        }
    }

    /// The driver delivered the answer of `slot`'s request.
    pub fn answered(&mut self, slot: u16) {
        self.outstanding.remove(&slot);
    }

    /// Records an event; an error says which rule it broke.
    pub fn event(&mut self, slot: u16, e: &Event) -> Result<(), String> {
        match e {
            Event::BecameLeader { .. } if !self.leading.insert(slot) => {
                Err(format!("BecameLeader twice on slot {slot}"))
            }
            Event::LostLeadership { .. } if !self.leading.remove(&slot) => {
                Err(format!("LostLeadership while not leading slot {slot}"))
            }
            _ => Ok(()),
        }
    }
}

/// A lease as an arbitrary server answer: resourceVersion `rv`, `holder`, a duration of
/// `duration_s` seconds (0: none) and `transitions`.
pub fn lease(rv: u16, holder: Holder, duration_s: u8, transitions: u16) -> Lease {
    Lease {
        resource_version: ResourceVersion::new(&rv.to_string()).expect("five digits fit"),
        record: LeaseRecord {
            holder,
            lease_duration: (duration_s > 0).then(|| Duration::from_secs(u64::from(duration_s))),
            acquire_time: None,
            renew_time: Some(MicroTime::from_unix_micros(0)),
            lease_transitions: Some(u32::from(transitions)),
        },
    }
}
