//! Expiry arithmetic. Every instant here is on the local monotonic clock; times written in the
//! record by other nodes are never compared with it. All sums saturate at [`Instant::MAX`], so a
//! huge `leaseDurationSeconds` from the server means "never expires" rather than an overflow.

use crate::record::LeaseRecord;
use embassy_time::{Duration, Instant};

/// When a follower may take a lease: the record was last seen changing at `observed_at`, and the
/// holder's claim lasts the record's own `leaseDurationSeconds` from then (or `fallback`, our own
/// lease duration, when the record does not say).
pub fn lease_expiry(observed_at: Instant, record: &LeaseRecord, fallback: Duration) -> Instant {
    observed_at.saturating_add(record.lease_duration.unwrap_or(fallback))
}

/// When a leader must stop acting: `renew_deadline` after it *sent* its last successful renew.
/// Counting from the send (not the answer) keeps the leader's window inside the one followers
/// grant, since the server stored the renew no earlier than it was sent.
pub fn leader_deadline(sent_at: Instant, renew_deadline: Duration) -> Instant {
    sent_at.saturating_add(renew_deadline)
}

/// The earliest of the instants known in `times`. A plain fold: it runs on every poll of every
/// slot, where an iterator chain costs several times the comparisons.
pub(crate) fn earliest<const K: usize>(times: [Option<Instant>; K]) -> Option<Instant> {
    let mut soonest = None;
    for at in times {
        soonest = match (soonest, at) {
            (Some(soonest), Some(at)) => Some(at.min(soonest)),
            (soonest, at) => soonest.or(at),
        };
    }
    soonest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Holder;

    #[test]
    fn the_earliest_known_instant_whatever_its_place() {
        let at = Instant::from_millis;
        assert_eq!(earliest([None, None, None]), None);
        assert_eq!(earliest([None, Some(at(7)), None]), Some(at(7)));
        assert_eq!(earliest([Some(at(9)), None, Some(at(4))]), Some(at(4)));
        assert_eq!(earliest([Some(at(3)), Some(at(5))]), Some(at(3)));
        assert_eq!(earliest([Some(at(5)), Some(at(3))]), Some(at(3)));
    }

    #[test]
    fn expiry_uses_the_records_duration() {
        let mut record = LeaseRecord::EMPTY;
        record.lease_duration = Some(Duration::from_secs(40));
        let at = Instant::from_secs(100);
        assert_eq!(
            lease_expiry(at, &record, Duration::from_secs(15)),
            Instant::from_secs(140)
        );
    }

    #[test]
    fn expiry_falls_back_to_our_duration_when_the_record_has_none() {
        let record = LeaseRecord {
            holder: Holder::from_wire(Some("other")),
            ..LeaseRecord::EMPTY
        };
        let at = Instant::from_secs(1);
        assert_eq!(
            lease_expiry(at, &record, Duration::from_secs(15)),
            Instant::from_secs(16)
        );
    }

    #[test]
    fn expiry_saturates_instead_of_overflowing() {
        let mut record = LeaseRecord::EMPTY;
        record.lease_duration = Some(Duration::MAX);
        let at = Instant::from_ticks(u64::MAX - 5);
        assert_eq!(lease_expiry(at, &record, Duration::MAX), Instant::MAX);
        assert_eq!(leader_deadline(at, Duration::from_secs(10)), Instant::MAX);
    }
}
