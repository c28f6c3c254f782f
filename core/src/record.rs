//! The Lease record as the core sees it: bounded, owned, and free of wire formats.
//!
//! Adapters decode the API server's JSON into these types and encode them back. Everything here
//! has a fixed capacity so the core never allocates; a value from the server that does not fit is
//! represented explicitly (see [`Holder::Oversized`]) rather than truncated or rejected with a panic.

use core::fmt;
use embassy_time::Duration;
use heapless::String;

/// Longest lease name accepted: a Kubernetes object name is a DNS-1123 subdomain of at most 253
/// characters.
pub const NAME_CAPACITY: usize = 253;

/// Longest holder identity stored. The API server accepts longer ones (a 300-character holder is
/// stored as is); such a record is still understood, as [`Holder::Oversized`].
pub const IDENTITY_CAPACITY: usize = 253;

/// Longest `resourceVersion` stored. etcd issues decimal revisions (at most 20 digits); the value is
/// opaque, so the capacity leaves room for other storage backends.
pub const RESOURCE_VERSION_CAPACITY: usize = 64;

/// Why a bounded string could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextError {
    /// The value is empty and must not be.
    Empty {
        /// Which value: "lease name", "identity", "resourceVersion".
        what: &'static str,
    },
    /// The value is longer than its capacity.
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The capacity in bytes.
        max: usize,
    },
    /// A lease name that is not a DNS-1123 subdomain.
    InvalidName {
        /// The first offending byte offset.
        at: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty { what } => write!(f, "{what} must not be empty"),
            Self::TooLong { what, len, max } => {
                write!(f, "{what} is {len} bytes long; at most {max} are allowed")
            }
            Self::InvalidName { at } => write!(
                f,
                "lease name is not a DNS-1123 subdomain (character {at}): use lower-case letters, \
                 digits, '-' and '.', starting and ending with a letter or digit"
            ),
        }
    }
}

impl core::error::Error for TextError {}

fn bounded<const N: usize>(what: &'static str, s: &str) -> Result<String<N>, TextError> {
    if s.is_empty() {
        return Err(TextError::Empty { what });
    }
    String::try_from(s).map_err(|_| TextError::TooLong {
        what,
        len: s.len(),
        max: N,
    })
}

/// The name of a Lease object, validated as a DNS-1123 subdomain so that a bad name is refused
/// before any API call rather than by a 422 from the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseName(String<NAME_CAPACITY>);

impl LeaseName {
    /// Validates and stores `name`.
    pub fn new(name: &str) -> Result<Self, TextError> {
        let stored = bounded("lease name", name)?;
        let bytes = name.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        for (at, &b) in bytes.iter().enumerate() {
            let edge = at == 0 || at + 1 == bytes.len();
            let ok = alnum(b) || (!edge && (b == b'-' || b == b'.'));
            if !ok {
                return Err(TextError::InvalidName { at });
            }
        }
        Ok(Self(stored))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity a candidate writes as `holderIdentity`: non-empty, at most [`IDENTITY_CAPACITY`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity(String<IDENTITY_CAPACITY>);

impl Identity {
    /// Stores `identity`, refusing an empty or over-long one.
    pub fn new(identity: &str) -> Result<Self, TextError> {
        bounded("identity", identity).map(Self)
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a Lease record names as its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Holder {
    /// No holder (absent or empty `holderIdentity`): the lease may be taken at once.
    None,
    /// A holder identity that fits in [`IDENTITY_CAPACITY`].
    Named(Identity),
    /// A holder identity longer than [`IDENTITY_CAPACITY`]. Our own identity always fits, so this
    /// is someone else by construction; only its length is kept.
    Oversized {
        /// Length of the holder identity in bytes.
        len: usize,
    },
}

impl Holder {
    /// Classifies a `holderIdentity` read from the server; never fails.
    pub fn from_wire(identity: Option<&str>) -> Self {
        match identity {
            None | Some("") => Self::None,
            Some(s) => match String::try_from(s) {
                Ok(stored) => Self::Named(Identity(stored)),
                Err(_) => Self::Oversized { len: s.len() },
            },
        }
    }

    /// The identity to write back as `holderIdentity`; `None` for [`Holder::Oversized`], whose
    /// text was not kept (the core never writes such a record back).
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            Self::None => Some(""),
            Self::Named(id) => Some(id.as_str()),
            Self::Oversized { .. } => None,
        }
    }

    /// Whether this holder is `identity`.
    pub fn is(&self, identity: &Identity) -> bool {
        matches!(self, Self::Named(id) if id == identity)
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("<none>"),
            Self::Named(id) => f.write_str(id.as_str()),
            Self::Oversized { len } => write!(f, "<someone else: a {len}-byte identity>"),
        }
    }
}

/// An opaque `metadata.resourceVersion`, echoed back on every write for optimistic concurrency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceVersion(String<RESOURCE_VERSION_CAPACITY>);

impl ResourceVersion {
    /// Stores a resourceVersion read from the server.
    pub fn new(rv: &str) -> Result<Self, TextError> {
        bounded("resourceVersion", rv).map(Self)
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` is known to be older than or equal to `other`.
    ///
    /// resourceVersions are opaque, but etcd-backed servers issue increasing integers. The core
    /// uses this order only to drop a watch event older than a record it already holds; when
    /// either value is not an integer the answer is `false` and the event is taken as news, which
    /// at worst causes a needless step-down, never a second leader.
    pub fn is_not_newer_than(&self, other: &Self) -> bool {
        match (self.0.parse::<u64>(), other.0.parse::<u64>()) {
            (Ok(a), Ok(b)) => a <= b,
            _ => false,
        }
    }
}

impl fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wall-clock time as written to `acquireTime`/`renewTime` (MicroTime: microseconds since the
/// Unix epoch). It is recorded for humans and client-go peers and never compared with a local
/// clock: clocks on different nodes disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroTime(i64);

impl MicroTime {
    /// The latest representable time: where an expiry too far ahead to represent saturates, so
    /// it reads as "never".
    pub const MAX: Self = Self(i64::MAX);

    /// From microseconds since 1970-01-01T00:00:00Z.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since 1970-01-01T00:00:00Z.
    pub const fn as_unix_micros(self) -> i64 {
        self.0
    }
}

/// The `spec` of a `coordination.k8s.io/v1` Lease, the subset leader election uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `holderIdentity`.
    pub holder: Holder,
    /// `leaseDurationSeconds`; `None` when absent or not positive.
    pub lease_duration: Option<Duration>,
    /// `acquireTime`.
    pub acquire_time: Option<MicroTime>,
    /// `renewTime`.
    pub renew_time: Option<MicroTime>,
    /// `leaseTransitions`: how many times the holder changed. A fencing epoch.
    pub lease_transitions: Option<u32>,
    /// The pool member that reserved the lease's next term, from the annotation
    /// [`NEXT_HOLDER_ANNOTATION`]: it takes the lease the moment it is released, and the other
    /// waiting members give it a retry period to. Not part of the spec: client-go ignores it,
    /// and a write that changes only it is nobody's renew.
    pub next_holder: Holder,
}

/// The annotation that names a pool slot's reserved next holder ([`LeaseRecord::next_holder`]).
pub const NEXT_HOLDER_ANNOTATION: &str = "leasehold.io/next-holder";

impl LeaseRecord {
    /// A record with no holder and no fields set, as `kubectl create` of an empty spec leaves it.
    pub const EMPTY: Self = Self {
        holder: Holder::None,
        lease_duration: None,
        acquire_time: None,
        renew_time: None,
        lease_transitions: None,
        next_holder: Holder::None,
    };

    /// When the record says its lease expires, by the wall clock of whoever wrote it:
    /// `renewTime` (else `acquireTime`) plus `leaseDurationSeconds`; `None` when the record does
    /// not say. Saturates at [`MicroTime::MAX`] (never).
    ///
    /// For display and for housekeeping judged on the API server's own terms (garbage
    /// collection of identity leases, as the API server collects its own), never for taking
    /// over: the machines judge expiry on their own monotonic clock from when they saw the
    /// record change ([`crate::expiry`]), since clocks on different nodes disagree.
    pub fn expires_at(&self) -> Option<MicroTime> {
        let renewed = self.renew_time.or(self.acquire_time)?;
        let duration = i64::try_from(self.lease_duration?.as_micros()).unwrap_or(i64::MAX);
        Some(MicroTime(renewed.0.saturating_add(duration)))
    }

    /// Whether `other` is this record with at most its reservation changed: a write that only
    /// reserved the next term is nobody's renew or take.
    pub fn same_spec(&self, other: &Self) -> bool {
        self.holder == other.holder
            && self.lease_duration == other.lease_duration
            && self.acquire_time == other.acquire_time
            && self.renew_time == other.renew_time
            && self.lease_transitions == other.lease_transitions
    }

    /// How long ago [`expires_at`](Self::expires_at) passed at wall time `now`: zero when it has
    /// not; `None` when the record does not say or never expires.
    pub fn expired_for(&self, now: MicroTime) -> Option<Duration> {
        let at = self.expires_at().filter(|at| *at != MicroTime::MAX)?;
        let ago = u64::try_from(now.0.saturating_sub(at.0)).unwrap_or(0);
        Some(Duration::from_micros(ago))
    }

    /// `leaseDurationSeconds` from the wire as the core keeps it. Absent, zero or negative is
    /// `None`: the candidate's own duration applies. A count too large for the clock (above
    /// about 1.8 × 10¹³ s) saturates at [`Duration::MAX`]: the lease never expires while its
    /// record is unchanged, so it counts as held by its holder, never as an overflow.
    pub fn lease_duration_from_wire(seconds: Option<i64>) -> Option<Duration> {
        let seconds = u64::try_from(seconds?).ok().filter(|&s| s > 0)?;
        Some(
            seconds
                .checked_mul(embassy_time::TICK_HZ)
                .map_or(Duration::MAX, Duration::from_ticks),
        )
    }
}

/// A Lease as stored on the server: its record and the resourceVersion it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// `metadata.resourceVersion`.
    pub resource_version: ResourceVersion,
    /// `spec`.
    pub record: LeaseRecord,
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lease_duration_from_the_wire_saturates_instead_of_overflowing() {
        assert_eq!(LeaseRecord::lease_duration_from_wire(None), None);
        assert_eq!(LeaseRecord::lease_duration_from_wire(Some(0)), None);
        assert_eq!(LeaseRecord::lease_duration_from_wire(Some(-5)), None);
        assert_eq!(
            LeaseRecord::lease_duration_from_wire(Some(15)),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            LeaseRecord::lease_duration_from_wire(Some(20_000_000_000_000)),
            Some(Duration::MAX)
        );
        assert_eq!(
            LeaseRecord::lease_duration_from_wire(Some(i64::MAX)),
            Some(Duration::MAX)
        );
    }

    use super::*;
    use core::fmt::Write;

    fn record(
        renew_s: Option<i64>,
        acquire_s: Option<i64>,
        duration: Option<Duration>,
    ) -> LeaseRecord {
        let at = |s: i64| MicroTime::from_unix_micros(s * 1_000_000);
        LeaseRecord {
            holder: Holder::from_wire(Some("h")),
            lease_duration: duration,
            acquire_time: acquire_s.map(at),
            renew_time: renew_s.map(at),
            lease_transitions: None,
            next_holder: Holder::None,
        }
    }

    #[test]
    fn a_record_expires_a_duration_after_its_renew_time_or_else_its_acquire_time() {
        let secs = |s: i64| MicroTime::from_unix_micros(s * 1_000_000);
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            record(Some(100), Some(7), hour).expires_at(),
            Some(secs(3700))
        );
        assert_eq!(record(None, Some(7), hour).expires_at(), Some(secs(3607)));
        assert_eq!(
            record(None, None, hour).expires_at(),
            None,
            "no time to count from"
        );
        assert_eq!(
            record(Some(100), None, None).expires_at(),
            None,
            "no duration"
        );
    }

    #[test]
    fn an_expiry_beyond_the_representable_saturates_and_never_passes() {
        let now = MicroTime::from_unix_micros(1_000 * 1_000_000);
        let never = record(Some(0), None, Some(Duration::MAX));
        assert_eq!(never.expires_at(), Some(MicroTime::MAX));
        assert_eq!(never.expired_for(now), None);
        let ahead = record(Some(4_000_000_000), None, Some(Duration::from_secs(3600)));
        assert_eq!(
            ahead.expired_for(now),
            Some(Duration::from_secs(0)),
            "not yet"
        );
        let past = record(Some(-7_200), None, Some(Duration::from_secs(3600)));
        assert_eq!(past.expired_for(now), Some(Duration::from_secs(4_600)));
        let ancient = record(
            Some(i64::MIN / 1_000_000),
            None,
            Some(Duration::from_secs(1)),
        );
        assert!(
            ancient.expired_for(now).is_some(),
            "no overflow before the epoch"
        );
    }

    #[test]
    fn lease_names_must_be_dns_subdomains() {
        assert!(LeaseName::new("kube-scheduler").is_ok());
        assert!(LeaseName::new("a.b-c.0").is_ok());
        assert_eq!(
            LeaseName::new("Upper"),
            Err(TextError::InvalidName { at: 0 })
        );
        assert_eq!(
            LeaseName::new("trailing-"),
            Err(TextError::InvalidName { at: 8 })
        );
        assert_eq!(
            LeaseName::new(""),
            Err(TextError::Empty { what: "lease name" })
        );
        let long = [b'a'; 254];
        let long = core::str::from_utf8(&long).unwrap();
        assert!(matches!(
            LeaseName::new(long),
            Err(TextError::TooLong { len: 254, .. })
        ));
    }

    #[test]
    fn an_empty_holder_identity_is_no_holder() {
        assert_eq!(Holder::from_wire(Some("")), Holder::None);
        assert_eq!(Holder::from_wire(None), Holder::None);
        assert_eq!(Holder::None.as_wire(), Some(""));
    }

    #[test]
    fn an_over_long_holder_is_kept_as_its_length_only() {
        let long = [b'h'; 300];
        let long = core::str::from_utf8(&long).unwrap();
        let holder = Holder::from_wire(Some(long));
        assert_eq!(holder, Holder::Oversized { len: 300 });
        assert_eq!(holder.as_wire(), None);
        assert!(!holder.is(&Identity::new("h").unwrap()));
    }

    /// What the adapters write back to the server and show to users is what was stored.
    #[test]
    fn wire_accessors_give_back_what_was_stored() {
        let mut shown: String<64> = String::new();
        let name = LeaseName::new("kube-scheduler").unwrap();
        let identity = Identity::new("pod-a_7f3c").unwrap();
        let rv = ResourceVersion::new("4711").unwrap();
        assert_eq!(name.as_str(), "kube-scheduler");
        assert_eq!(identity.as_str(), "pod-a_7f3c");
        assert_eq!(rv.as_str(), "4711");
        write!(shown, "{name} {identity} {rv}").unwrap();
        assert_eq!(shown, "kube-scheduler pod-a_7f3c 4711");
        let t = MicroTime::from_unix_micros(1_700_000_000_123_456);
        assert_eq!(t.as_unix_micros(), 1_700_000_000_123_456);
        assert_eq!(MicroTime::from_unix_micros(-1).as_unix_micros(), -1);
        let named = Holder::from_wire(Some("pod-a_7f3c"));
        assert_eq!(named.as_wire(), Some("pod-a_7f3c"));
        assert!(named.is(&identity));
        assert!(!named.is(&Identity::new("pod-b").unwrap()));
    }

    #[test]
    fn holders_are_shown_by_name_or_by_what_is_known_of_them() {
        let show = |h: Holder| {
            let mut s: String<64> = String::new();
            write!(s, "{h}").unwrap();
            s
        };
        assert_eq!(show(Holder::from_wire(Some("pod-a"))), "pod-a");
        assert_eq!(show(Holder::None), "<none>");
        assert_eq!(
            show(Holder::Oversized { len: 300 }),
            "<someone else: a 300-byte identity>"
        );
    }

    /// These messages reach users through the agent's flag and config errors.
    #[test]
    fn text_errors_say_what_is_wrong_and_what_is_allowed() {
        let show = |e: TextError| {
            let mut s: String<200> = String::new();
            write!(s, "{e}").unwrap();
            s
        };
        assert_eq!(
            show(TextError::Empty { what: "identity" }),
            "identity must not be empty"
        );
        assert_eq!(
            show(TextError::TooLong {
                what: "lease name",
                len: 254,
                max: 253
            }),
            "lease name is 254 bytes long; at most 253 are allowed"
        );
        assert_eq!(
            show(TextError::InvalidName { at: 3 }),
            "lease name is not a DNS-1123 subdomain (character 3): use lower-case letters, \
             digits, '-' and '.', starting and ending with a letter or digit"
        );
    }

    #[test]
    fn identities_and_resource_versions_are_bounded_and_never_empty() {
        assert_eq!(
            Identity::new(""),
            Err(TextError::Empty { what: "identity" })
        );
        let long = [b'i'; IDENTITY_CAPACITY + 1];
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(
            Identity::new(long),
            Err(TextError::TooLong {
                what: "identity",
                len: IDENTITY_CAPACITY + 1,
                max: IDENTITY_CAPACITY
            })
        );
        assert_eq!(
            ResourceVersion::new(""),
            Err(TextError::Empty {
                what: "resourceVersion"
            })
        );
    }

    #[test]
    fn resource_versions_order_only_when_numeric() {
        let rv = |s| ResourceVersion::new(s).unwrap();
        assert!(rv("9").is_not_newer_than(&rv("10")));
        assert!(rv("10").is_not_newer_than(&rv("10")));
        assert!(!rv("11").is_not_newer_than(&rv("10")));
        assert!(!rv("abc").is_not_newer_than(&rv("10")));
    }
}
