//! What crosses the boundary between the core and an adapter: the requests the core asks for and
//! the answers and watch events the adapter feeds back.

use crate::record::{Lease, LeaseName, LeaseRecord, NAME_CAPACITY, ResourceVersion};
use core::fmt;
use embassy_time::Duration;
use heapless::String;

/// One API call the core wants made for the lease `lease`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Which of the machine's leases (always 0 for an elector or a heartbeat; the slot number in
    /// a pool). Pass it back with the answer.
    pub slot: u16,
    /// The Lease object's name (in the namespace the adapter was configured with).
    pub lease: LeaseName,
    /// What to do.
    pub op: Operation,
}

/// The operation of a [`Request`]. Which answers each is owed is part of the
/// [`crate::Machine`] contract.
///
/// Deliberately exhaustive, unlike the core's other public enums: a transport must perform every
/// operation the core asks for, so a new one must fail to compile in each transport rather
/// than fall into a catch-all at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// GET the lease.
    Get,
    /// POST a new lease with this spec.
    Create(LeaseRecord),
    /// PUT this spec, carrying `resource_version` so a concurrent writer gets 409 Conflict.
    Update {
        /// The resourceVersion last read.
        resource_version: ResourceVersion,
        /// The full spec to store.
        record: LeaseRecord,
    },
    /// Watch this one lease (`fieldSelector=metadata.name=…`), from `resource_version` if given.
    Watch {
        /// Where to resume; `None` starts from the current state.
        resource_version: Option<ResourceVersion>,
    },
    /// Close the watch stream this request's `slot` opened (one lease's, or a pool's): the core
    /// no longer needs it.
    Unwatch,
    /// Watch every lease of a pool with one stream: the namespace's leases, of which only the
    /// pool's [`SlotNames`] are delivered, each to its own slot (`handle_watch_event(i, …)`),
    /// and the stream's own events (bookmarks, its end) to the request's `slot`.
    ///
    /// With no `resource_version`, the stream starts with the slots' current state (a LIST, or
    /// the initial events of a streaming list): a [`WatchEvent::Changed`] for each slot that
    /// exists, then [`WatchEvent::Synced`] to the request's slot; a slot with no event before
    /// it has no lease. With one, it resumes after that version.
    WatchSlots {
        /// The leases the pool is made of.
        slots: SlotNames,
        /// Where to resume; `None` lists the current state first.
        resource_version: Option<ResourceVersion>,
    },
}

impl Operation {
    /// The Kubernetes verb, for logs, metrics and RBAC messages.
    pub fn verb(&self) -> Verb {
        match self {
            Self::Get => Verb::Get,
            Self::Create(_) => Verb::Create,
            Self::Update { .. } => Verb::Update,
            Self::Watch { .. } | Self::Unwatch | Self::WatchSlots { .. } => Verb::Watch,
        }
    }
}

/// The leases of a pool, `{prefix}-0` … `{prefix}-{count−1}`: how a transport tells which
/// slot a lease it sees on a pool's stream belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotNames {
    prefix: String<NAME_CAPACITY>,
    count: u16,
}

impl SlotNames {
    /// The slots `{prefix}-0` … `{prefix}-{count−1}`; `None` when the prefix is too long to
    /// name a lease.
    pub fn new(prefix: &str, count: u16) -> Option<Self> {
        Some(Self {
            prefix: String::try_from(prefix).ok()?,
            count,
        })
    }

    /// The prefix, without the `-` before the slot number.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many slots.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The slot the lease `name` is, if it is one: `None` for any other lease, and for
    /// spellings such as `prefix-01` or `prefix-+1` that are not how slot 1 is named.
    pub fn index_of(&self, name: &str) -> Option<u16> {
        let number = name.strip_prefix(self.prefix.as_str())?.strip_prefix('-')?;
        let canonical = !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && (number == "0" || !number.starts_with('0'));
        let index = number.parse::<u16>().ok().filter(|_| canonical)?;
        (index < self.count).then_some(index)
    }
}

/// A Kubernetes API verb on `leases`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `get`.
    Get,
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `watch`.
    Watch,
    /// `list`.
    List,
    /// `delete` (garbage collection of expired leases; the machines never delete).
    Delete,
}

impl Verb {
    /// The verb as RBAC spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Create => "create",
            Self::Update => "update",
            Self::Watch => "watch",
            Self::List => "list",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed API call, classified for the core's decisions. Transports keep the server's own
/// words (its `Status`) and the cause beside it for the user; the core needs only the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// 404: the lease does not exist (or its namespace does not).
    NotFound,
    /// 409 Conflict: the resourceVersion written was stale; someone else wrote since.
    Conflict,
    /// 409 AlreadyExists: a create raced another create.
    AlreadyExists,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: RBAC denies the verb.
    Forbidden,
    /// 400 or 422: the server refused the object.
    Invalid,
    /// 429: throttled; wait at least `retry_after` when the server said so.
    TooManyRequests {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    Server {
        /// The HTTP status.
        status: u16,
    },
    /// No answer within the per-request timeout.
    Timeout,
    /// Connection, TLS or protocol failure before an answer.
    Transport,
    /// An answer that could not be decoded.
    Malformed,
}

impl ApiError {
    /// Classifies an API server's error answer, the one rule every transport uses: `reason`
    /// (the `Status` object's) tells a 409 Conflict from AlreadyExists; `retry_after` is the
    /// server's advice, from the `Retry-After` header or else the `Status` details' own
    /// `retryAfterSeconds` (see [`retry_after`]).
    pub fn from_status(http_status: u16, reason: &str, retry_after: Option<Duration>) -> Self {
        match http_status {
            404 => Self::NotFound,
            409 if reason == "AlreadyExists" => Self::AlreadyExists,
            409 => Self::Conflict,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            400 | 422 => Self::Invalid,
            429 => Self::TooManyRequests { retry_after },
            status => Self::Server { status },
        }
    }

    /// Whether retrying cannot help until a person acts: a credential or an RBAC rule must
    /// change. Every other failure is retried on the core's own schedule.
    pub const fn is_permanent(&self) -> bool {
        matches!(self, Self::Unauthorized | Self::Forbidden)
    }
}

/// The one Retry-After rule: the header wins; else the `Status` details' `retryAfterSeconds`;
/// a value that is not a whole number of seconds is ignored (the core then backs off on its own).
pub fn retry_after(header: Option<&str>, status_seconds: Option<u64>) -> Option<Duration> {
    header
        .and_then(|h| h.trim().parse::<u64>().ok())
        .or(status_seconds)
        .map(Duration::from_secs)
}

/// The answer to a `Get`, `Create` or `Update`: the lease as stored, or why not.
pub type Response = Result<Lease, ApiError>;

/// What a watch stream of one lease delivers.
///
/// Exhaustive, like [`Operation`]: the two enums are the vocabulary between the core and its
/// transports, and each side must handle every word of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// `ADDED` or `MODIFIED`: the lease as now stored.
    Changed(Lease),
    /// `DELETED`.
    Deleted,
    /// `BOOKMARK`: nothing changed up to this resourceVersion.
    Bookmark(ResourceVersion),
    /// The stream ended cleanly (server timeout): reopen from the last resourceVersion.
    Ended,
    /// `ERROR` with 410 Gone: the resourceVersion is too old; read again, then watch.
    Expired,
    /// The stream failed (connect error, cut, non-410 error): poll until it can be reopened.
    Failed,
    /// A pool's stream ([`Operation::WatchSlots`]) has delivered the current state of every
    /// slot, as of this resourceVersion: a slot it sent nothing for has no lease.
    Synced(ResourceVersion),
    /// The server refused the watch (403: RBAC grants `get`/`watch` on named leases only, not
    /// `list`/`watch` on the namespace). A pool falls back to one watch per slot; a single
    /// lease's watch treats it as [`WatchEvent::Failed`].
    Forbidden,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::lease;
    use core::fmt::Write;
    use heapless::String;

    #[test]
    fn a_pool_stream_knows_its_slots_by_their_exact_names() {
        let slots = SlotNames::new("cold-start", 12).unwrap();
        assert_eq!((slots.prefix(), slots.count()), ("cold-start", 12));
        assert_eq!(slots.index_of("cold-start-0"), Some(0));
        assert_eq!(slots.index_of("cold-start-1"), Some(1));
        assert_eq!(slots.index_of("cold-start-11"), Some(11));
        for other in [
            "cold-start-12",
            "cold-start-01",
            "cold-start-+1",
            "cold-start-1a",
            "cold-start-",
            "cold-start",
            "cold-start1",
            "cold-startx-1",
            "delegation-0",
            "cold-start-99999",
        ] {
            assert_eq!(slots.index_of(other), None, "{other}");
        }
        let long = [b'p'; NAME_CAPACITY + 1];
        assert_eq!(
            SlotNames::new(core::str::from_utf8(&long).unwrap(), 1),
            None
        );
    }

    #[test]
    fn verbs_are_spelled_as_rbac_spells_them() {
        let verbs = [
            (Verb::Get, "get"),
            (Verb::Create, "create"),
            (Verb::Update, "update"),
            (Verb::Watch, "watch"),
            (Verb::List, "list"),
            (Verb::Delete, "delete"),
        ];
        for (verb, rbac) in verbs {
            assert_eq!(verb.as_str(), rbac);
            let mut shown: String<8> = String::new();
            write!(shown, "{verb}").unwrap();
            assert_eq!(shown, rbac, "Display is the RBAC spelling");
        }
    }

    #[test]
    fn each_operation_needs_the_verb_rbac_must_grant() {
        let record = lease(1, Some("a"), 0).record;
        let rv = ResourceVersion::new("1").unwrap();
        assert_eq!(Operation::Get.verb(), Verb::Get);
        assert_eq!(Operation::Create(record.clone()).verb(), Verb::Create);
        let update = Operation::Update {
            resource_version: rv.clone(),
            record,
        };
        assert_eq!(update.verb(), Verb::Update);
        let watch = Operation::Watch {
            resource_version: Some(rv),
        };
        assert_eq!(watch.verb(), Verb::Watch);
        assert_eq!(Operation::Unwatch.verb(), Verb::Watch);
    }

    #[test]
    fn a_status_is_classified_by_code_and_a_409_by_its_reason() {
        let after = Some(Duration::from_secs(3));
        let cases = [
            (404, "NotFound", ApiError::NotFound),
            (409, "AlreadyExists", ApiError::AlreadyExists),
            (409, "Conflict", ApiError::Conflict),
            (401, "Unauthorized", ApiError::Unauthorized),
            (403, "Forbidden", ApiError::Forbidden),
            (400, "BadRequest", ApiError::Invalid),
            (422, "Invalid", ApiError::Invalid),
            (
                429,
                "TooManyRequests",
                ApiError::TooManyRequests { retry_after: after },
            ),
            (503, "ServiceUnavailable", ApiError::Server { status: 503 }),
        ];
        for (code, reason, expected) in cases {
            assert_eq!(
                ApiError::from_status(code, reason, after),
                expected,
                "{code}"
            );
        }
    }

    #[test]
    fn only_credentials_and_rbac_refusals_are_permanent() {
        assert!(ApiError::Unauthorized.is_permanent());
        assert!(ApiError::Forbidden.is_permanent());
        for transient in [
            ApiError::NotFound,
            ApiError::Conflict,
            ApiError::Timeout,
            ApiError::Server { status: 500 },
            ApiError::TooManyRequests { retry_after: None },
        ] {
            assert!(!transient.is_permanent(), "{transient:?}");
        }
    }

    #[test]
    fn retry_after_prefers_the_header_and_ignores_what_is_not_whole_seconds() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(retry_after(Some(" 7 "), Some(3)), secs(7));
        assert_eq!(retry_after(None, Some(3)), secs(3));
        assert_eq!(retry_after(Some("1.5"), Some(3)), secs(3));
        assert_eq!(retry_after(Some("soon"), None), None);
        assert_eq!(retry_after(None, None), None);
    }
}
