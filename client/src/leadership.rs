//! Leadership as a value the application can read, wait on and be told of.

use leasehold_core::{Holder, Identity};
use tokio::time::Instant;

/// What this candidate knows of the lease, as the election last saw it.
///
/// Published on a [`tokio::sync::watch`] channel ([`crate::Election::leadership`]): read it at
/// any time, or wait for the next change.
///
/// ```no_run
/// # fn f(election: &leasehold_client::Election) {
/// use leasehold_client::Leadership;
/// match &*election.leadership().borrow() {
///     Leadership::Leading { epoch, .. } => println!("leading in term {epoch}"),
///     Leadership::Following { holder } => println!("{holder} leads"),
///     _ => println!("no leader known"),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Leadership {
    /// Nothing is known yet (before the first answer), or the lease is free.
    Unknown,
    /// Another candidate holds the lease.
    Following {
        /// Its `holderIdentity`.
        holder: String,
    },
    /// This candidate leads until `valid_until`, unless a renew extends it. Past that instant it
    /// does not lead, whatever this value still says: a paused process reads a stale value.
    Leading {
        /// `leaseTransitions` of the term: the fencing token. Every new term has a higher one.
        epoch: u32,
        /// When this leadership ends without a renew.
        valid_until: Instant,
    },
    /// The election was closed: the lease is released (or left to expire), and nothing changes
    /// unless it rejoins.
    Closed,
}

impl Leadership {
    /// Whether this says "leading" and `now` is before its end.
    ///
    /// ```
    /// use leasehold_client::Leadership;
    /// let now = tokio::time::Instant::now();
    /// let leading = Leadership::Leading { epoch: 1, valid_until: now + std::time::Duration::from_secs(10) };
    /// assert!(leading.is_leading_at(now));
    /// ```
    pub fn is_leading_at(&self, now: Instant) -> bool {
        matches!(self, Self::Leading { valid_until, .. } if now < *valid_until)
    }

    /// The epoch of the term, while leading.
    ///
    /// ```
    /// use leasehold_client::Leadership;
    /// assert_eq!(Leadership::Unknown.epoch(), None);
    /// ```
    pub fn epoch(&self) -> Option<u32> {
        match self {
            Self::Leading { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }
}

/// What a record naming `holder` means to the candidate `me` that does not lead it.
pub(crate) fn following(holder: Option<&Holder>, me: &Identity) -> Leadership {
    match holder {
        Some(h) if *h != Holder::None && !h.is(me) => Leadership::Following {
            holder: h.to_string(),
        },
        _ => Leadership::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn leading_ends_at_valid_until() {
        let start = Instant::now();
        let leading = Leadership::Leading {
            epoch: 3,
            valid_until: start + Duration::from_secs(10),
        };
        assert!(leading.is_leading_at(start));
        assert!(!leading.is_leading_at(start + Duration::from_secs(10)));
        assert_eq!(leading.epoch(), Some(3));
        assert!(!Leadership::Unknown.is_leading_at(start));
        assert_eq!(Leadership::Closed.epoch(), None);
    }
}
