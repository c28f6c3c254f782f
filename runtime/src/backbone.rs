//! What every transport does the same way, written once: the last-read copy of each lease (so
//! a write echoes the metadata other clients set), the metadata of created leases, client-side
//! rate limiting, the per-request timeout, pagination, watch bookkeeping, and telling a
//! re-creation from an update. A transport supplies only a [`Wire`]: encode, send, decode.

use crate::error::{Cause, RequestError, ServerStatus, user_agent};
use crate::transport::{CreateMetadata, ListedLease, Transport, WatchSink};
use leasehold_core::{
    ApiError, Lease, LeaseName, LeaseRecord, Operation, Request, ResourceVersion, SlotNames, Verb,
    WatchEvent,
};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How one transport encodes, sends and decodes. Its methods hold no policy: the
/// [`Backbone`] decides what is sent, when, and what the answer means.
pub trait Wire: Send + Sync + 'static {
    /// The transport's Lease object (its own JSON type, or k8s-openapi's).
    type Object: Clone + Send + Sync + 'static;
    /// An open watch stream.
    type Stream: WireStream<Self::Object>;

    /// The transport's name in the `User-Agent` (`http`, `kube`).
    const NAME: &'static str;

    /// The namespace of the leases this wire reads and writes.
    fn namespace(&self) -> &str;

    /// A new object carrying `metadata` (labels, owner), for a create.
    fn blank(&self, metadata: &CreateMetadata) -> Self::Object;
    /// `base` with its spec replaced by `record`, named `name`, carrying `resource_version`
    /// (none for a create). Everything else in `base` is echoed back unchanged.
    fn encode(
        &self,
        base: Self::Object,
        name: &str,
        resource_version: Option<&ResourceVersion>,
        record: &LeaseRecord,
    ) -> Self::Object;
    /// The object's `metadata.uid`.
    fn uid(object: &Self::Object) -> Option<&str>;
    /// The object's `metadata.name`: which lease a namespace's watch event is about.
    fn name(object: &Self::Object) -> Option<&str>;
    /// The lease as the core sees it, or what is wrong with the object.
    fn decode(object: &Self::Object) -> Result<Lease, String>;
    /// The lease as a list shows it, or what is wrong with the object.
    fn decode_listed(object: &Self::Object) -> Result<ListedLease, String>;

    /// Sends one call and waits for its answer (the backbone bounds the wait).
    fn send(
        &self,
        call: Call<'_, Self::Object>,
    ) -> impl Future<Output = Result<Answer<Self::Object>, Failure>> + Send;
    /// Opens the watch of the lease `name`, or of every lease in the namespace when `None`,
    /// from where `from` says, with bookmarks and a server-side timeout.
    fn watch(
        &self,
        name: Option<&str>,
        from: WatchFrom<'_>,
    ) -> impl Future<Output = Result<Self::Stream, Failure>> + Send;
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFrom<'a> {
    /// The current state: the server sends each lease as `ADDED`, with nothing to say when
    /// they end (no `resourceVersion`).
    Now,
    /// After this version (`resourceVersion`).
    After(&'a ResourceVersion),
    /// A streamed list: the current state, as of a consistent read, then a bookmark marking
    /// its end (`sendInitialEvents=true&resourceVersionMatch=NotOlderThan`, no
    /// `resourceVersion`). One request where a LIST and a WATCH are two.
    List,
}

impl<'a> WatchFrom<'a> {
    /// After `version` when there is one, else the current state.
    pub fn after(version: Option<&'a ResourceVersion>) -> Self {
        version.map_or(Self::Now, Self::After)
    }
}

/// One call a [`Wire`] sends.
#[derive(Debug)]
pub enum Call<'a, O> {
    /// GET the lease `name`.
    Get {
        /// The lease.
        name: &'a str,
    },
    /// POST `object`.
    Create {
        /// The new lease.
        object: O,
    },
    /// PUT `object` as the lease `name`.
    Replace {
        /// The lease.
        name: &'a str,
        /// What to store, carrying the resourceVersion read.
        object: O,
    },
    /// DELETE the lease `name` if it is still at `resource_version` (`preconditions`).
    Delete {
        /// The lease.
        name: &'a str,
        /// The version to delete.
        resource_version: &'a ResourceVersion,
    },
    /// One page of a LIST.
    List(ListPage<'a>),
}

/// Which page of a LIST to send for.
#[derive(Clone, Copy, Debug)]
pub struct ListPage<'a> {
    /// The namespace; every namespace when `None`.
    pub namespace: Option<&'a str>,
    /// `labelSelector`.
    pub label_selector: Option<&'a str>,
    /// `continue`, after the first page.
    pub continue_token: Option<&'a str>,
    /// `limit`.
    pub limit: u32,
}

/// A 2xx answer.
#[derive(Debug)]
pub enum Answer<O> {
    /// The object, as stored (get, create, replace).
    Object(O),
    /// The delete was done.
    Deleted,
    /// One page of a list, and the token of the next.
    Page {
        /// The items.
        items: Vec<O>,
        /// `metadata.continue`, when more pages follow.
        continue_token: Option<String>,
        /// `metadata.resourceVersion`: the version the list is a snapshot of (every page of
        /// one list is of the same), where a watch of what changed since resumes.
        resource_version: Option<String>,
    },
}

/// Why a call brought no 2xx answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The API server refused it, in its own words.
    Refused(ServerStatus),
    /// No usable answer came.
    Cause(Cause),
}

/// The annotation of the bookmark that ends a streamed list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// One event of an open watch stream, as a [`Wire`] decoded it.
#[derive(Debug)]
pub enum WireEvent<O> {
    /// `ADDED` or `MODIFIED`.
    Changed(O),
    /// `DELETED`, with the lease's last state.
    Deleted(O),
    /// `BOOKMARK` at this resourceVersion.
    Bookmark(ResourceVersion),
    /// The `BOOKMARK` that ends a streamed list's initial events (annotated
    /// [`INITIAL_EVENTS_END`]` = "true"`): the state they showed is as of this version.
    InitialEventsEnd(ResourceVersion),
    /// `ERROR` 410 Gone: the resourceVersion is too old.
    Gone,
    /// Anything else that ends the stream: another `ERROR`, an undecodable line, a cut.
    Broken,
}

/// An open watch stream.
pub trait WireStream<O>: Send {
    /// The next event; `None` when the server ended the stream cleanly.
    fn next(&mut self) -> impl Future<Output = Option<WireEvent<O>>> + Send;
}

/// Why a [`Backbone`] cannot be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// A rate limit whose queries per second or burst is not positive.
    RateLimit,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RateLimit => f.write_str("qps and burst must be greater than zero"),
        }
    }
}

impl std::error::Error for SetupError {}

/// A [`Transport`] over a [`Wire`].
pub struct Backbone<W: Wire> {
    wire: W,
    timeout: Duration,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    create_metadata: CreateMetadata,
    /// The last object read or written per lease, so a write echoes its metadata.
    last_read: Mutex<HashMap<String, W::Object>>,
    /// Whether the server is still taken to stream lists: until it shows it does not (an API
    /// server before 1.32, or 1.33, or with its `WatchList` feature off: see
    /// [`Backbone::stream_slots`]), after which a pool's stream lists, then watches.
    streams_lists: AtomicBool,
}

impl<W: Wire> std::fmt::Debug for Backbone<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("transport", &W::NAME)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The page size of a list.
const PAGE: u32 = 500;

impl<W: Wire> Backbone<W> {
    /// A transport over `wire`, each request bounded by `request_timeout`
    /// ([`leasehold_core::Timing::request_timeout`]), unthrottled.
    pub fn new(wire: W, request_timeout: Duration) -> Self {
        Self {
            wire,
            timeout: request_timeout,
            limiter: None,
            create_metadata: CreateMetadata::default(),
            last_read: Mutex::new(HashMap::new()),
            streams_lists: AtomicBool::new(true),
        }
    }

    /// Limits requests to `qps` per second after a burst of `burst` (client-go: 5 and 10).
    pub fn with_rate_limit(mut self, qps: f64, burst: u32) -> Result<Self, SetupError> {
        let burst = NonZeroU32::new(burst).ok_or(SetupError::RateLimit)?;
        if !(qps.is_finite() && qps > 0.0) {
            return Err(SetupError::RateLimit);
        }
        let quota = governor::Quota::with_period(Duration::from_secs_f64(1.0 / qps))
            .ok_or(SetupError::RateLimit)?
            .allow_burst(burst);
        self.limiter = Some(governor::RateLimiter::direct(quota));
        Ok(self)
    }

    /// Gives every lease this transport creates these labels and owner.
    pub fn with_create_metadata(mut self, metadata: CreateMetadata) -> Self {
        self.create_metadata = metadata;
        self
    }

    /// The wire underneath.
    pub fn wire(&self) -> &W {
        &self.wire
    }

    /// The `User-Agent` this transport sends.
    pub fn user_agent() -> String {
        user_agent(W::NAME)
    }

    fn cached(&self, name: &str) -> Option<W::Object> {
        self.cache().get(name).cloned()
    }

    fn remember(&self, name: &str, object: Option<W::Object>) {
        let mut cache = self.cache();
        match object {
            Some(o) => cache.insert(name.to_owned(), o),
            None => cache.remove(name),
        };
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, W::Object>> {
        self.last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `call` after the rate limiter, within the timeout.
    async fn send(
        &self,
        verb: Verb,
        target: &str,
        call: Call<'_, W::Object>,
    ) -> Result<Answer<W::Object>, RequestError> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        match tokio::time::timeout(self.timeout, self.wire.send(call)).await {
            Err(_) => Err(self.timed_out(verb, target)),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(failure)) => Err(refusal(verb, target, failure)),
        }
    }

    fn timed_out(&self, verb: Verb, target: &str) -> RequestError {
        let after = self.timeout;
        RequestError::failed(verb, target, Cause::Timeout { after })
    }

    /// Every item of a LIST, following `continue` to the last page, and the list's
    /// resourceVersion.
    async fn list_all(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<(Vec<W::Object>, Option<String>), RequestError> {
        let mut all = Vec::new();
        let mut version = None;
        let mut next: Option<String> = None;
        loop {
            let call = Call::List(ListPage {
                namespace,
                label_selector,
                continue_token: next.as_deref(),
                limit: PAGE,
            });
            let Answer::Page {
                items,
                continue_token,
                resource_version,
            } = self.send(Verb::List, "leases", call).await?
            else {
                return Err(malformed(Verb::List, "leases", "not a LeaseList"));
            };
            all.extend(items);
            version = version.or(resource_version);
            next = continue_token.filter(|c| !c.is_empty());
            if next.is_none() {
                return Ok((all, version));
            }
        }
    }

    /// Opens the watch of the lease `name` (of the namespace's leases when `None`) after the
    /// rate limiter, within the timeout.
    async fn open_watch(
        &self,
        name: Option<&str>,
        from: WatchFrom<'_>,
        target: &str,
    ) -> Result<W::Stream, RequestError> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        match tokio::time::timeout(self.timeout, self.wire.watch(name, from)).await {
            Err(_) => Err(self.timed_out(Verb::Watch, target)),
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(failure)) => Err(refusal(Verb::Watch, target, failure)),
        }
    }

    /// Delivers `stream`'s events into `sink` until it ends, keeping the last-read copy of
    /// each lease it shows, as a read does. `route` names the lease an object is and the slot
    /// its events go to (`None`: the stream's own); the events of a lease it does not route are
    /// dropped.
    async fn follow(
        &self,
        mut stream: W::Stream,
        sink: &WatchSink,
        target: &str,
        route: impl Fn(&W::Object) -> Option<(String, Option<u16>)>,
    ) {
        while let Some(event) = stream.next().await {
            let (to, event) = match event {
                WireEvent::Changed(object) => {
                    let Some((name, to)) = route(&object) else {
                        continue;
                    };
                    match W::decode(&object) {
                        Ok(lease) => {
                            self.remember(&name, Some(object));
                            (to, WatchEvent::Changed(lease))
                        }
                        Err(e) => return sink.fail(malformed(Verb::Watch, target, e)),
                    }
                }
                WireEvent::Deleted(object) => {
                    let Some((name, to)) = route(&object) else {
                        continue;
                    };
                    self.remember(&name, None);
                    (to, WatchEvent::Deleted)
                }
                // Only a streamed list's first bookmark marks its end: read before this.
                WireEvent::Bookmark(rv) | WireEvent::InitialEventsEnd(rv) => {
                    (None, WatchEvent::Bookmark(rv))
                }
                WireEvent::Gone => (None, WatchEvent::Expired),
                WireEvent::Broken => (None, WatchEvent::Failed),
            };
            let more = match to {
                Some(slot) => sink.send_to(slot, event),
                None => sink.forward(event),
            };
            if !more {
                return;
            }
        }
        sink.send(WatchEvent::Ended);
    }

    /// Reads a streamed list's initial events from `stream`, up to the bookmark that ends
    /// them, and then delivers the state of the pool's `slots` as a list's
    /// ([`Backbone::deliver_state`]). Nothing is delivered before that bookmark: a plain one
    /// first means the server took the request for a plain watch ([`Streamed::Plain`]); an
    /// end, an `ERROR` or a cut before it is [`Streamed::Broken`] (the API server's watch
    /// cache answers some failures to serve the state that way, after a 200).
    async fn stream_state(
        &self,
        stream: &mut W::Stream,
        slots: &SlotNames,
        sink: &WatchSink,
        target: &str,
    ) -> Streamed {
        let mut found: Vec<Option<(Lease, W::Object)>> = vec![None; usize::from(slots.count())];
        let slot_of = |object: &W::Object| W::name(object).and_then(|n| slots.index_of(n));
        let end = loop {
            let Some(event) = stream.next().await else {
                return Streamed::Broken;
            };
            match event {
                WireEvent::Changed(object) => {
                    let Some(slot) = slot_of(&object) else {
                        continue;
                    };
                    match W::decode(&object) {
                        Ok(lease) => found[usize::from(slot)] = Some((lease, object)),
                        Err(e) => {
                            sink.fail(malformed(Verb::Watch, target, e));
                            return Streamed::Ended;
                        }
                    }
                }
                WireEvent::Deleted(object) => {
                    if let Some(slot) = slot_of(&object) {
                        found[usize::from(slot)] = None;
                    }
                }
                WireEvent::InitialEventsEnd(rv) => break rv,
                WireEvent::Bookmark(_) => return Streamed::Plain,
                WireEvent::Gone | WireEvent::Broken => return Streamed::Broken,
            }
        };
        if self.deliver_state(slots, found, &end, sink) {
            Streamed::Synced
        } else {
            Streamed::Ended
        }
    }

    /// Streams the list of a pool's `slots` and follows it, when the server is still taken
    /// to stream lists: true when done. False when the caller is to list instead:
    /// - for good, when the server does not stream lists: it refused the options (400 or
    ///   422), sent a plain bookmark first, or left the initial events unended for a whole
    ///   request timeout (a LIST is bounded so too);
    /// - this once, when the stream broke before the initial events ended (as client-go's
    ///   reflector does: a list that works beats a stream retried forever).
    async fn stream_slots(&self, slots: &SlotNames, sink: &WatchSink) -> bool {
        if !self.streams_lists.load(Ordering::Relaxed) {
            return false;
        }
        let target = "leases";
        match self.open_watch(None, WatchFrom::List, target).await {
            Ok(mut stream) => {
                let state = self.stream_state(&mut stream, slots, sink, target);
                match tokio::time::timeout(self.timeout, state).await {
                    Ok(Streamed::Synced) => {
                        self.follow(stream, sink, target, Self::slot_route(slots))
                            .await;
                        return true;
                    }
                    Ok(Streamed::Ended) => return true,
                    Ok(Streamed::Broken) => return false,
                    Ok(Streamed::Plain) | Err(_) => {}
                }
            }
            Err(error) if error.kind != ApiError::Invalid => {
                sink.fail(error);
                return true;
            }
            Err(_) => {}
        }
        self.streams_lists.store(false, Ordering::Relaxed);
        false
    }

    /// Where a namespace watch's object goes: the slot of `slots` it is, if any.
    fn slot_route(slots: &SlotNames) -> impl Fn(&W::Object) -> Option<(String, Option<u16>)> {
        |object: &W::Object| {
            let name = W::name(object)?;
            Some((name.to_owned(), Some(slots.index_of(name)?)))
        }
    }

    /// Lists the namespace's leases and delivers the state of the pool's `slots`: a `Changed`
    /// for each slot that exists, to its slot, then `Synced` at the list's version, which it
    /// returns. `None` when the stream ended instead (its end delivered).
    async fn list_slots(&self, slots: &SlotNames, sink: &WatchSink) -> Option<ResourceVersion> {
        let (items, version) = match self.list_all(Some(self.wire.namespace()), None).await {
            Ok(listed) => listed,
            Err(error) => {
                sink.fail(error);
                return None;
            }
        };
        let Some(version) = version.and_then(|v| ResourceVersion::new(&v).ok()) else {
            let what = "a LeaseList without a usable metadata.resourceVersion";
            sink.fail(malformed(Verb::List, "leases", what));
            return None;
        };
        let mut found: Vec<Option<(Lease, W::Object)>> = vec![None; usize::from(slots.count())];
        for object in items {
            let Some(slot) = W::name(&object).and_then(|n| slots.index_of(n)) else {
                continue;
            };
            match W::decode(&object) {
                Ok(lease) => found[usize::from(slot)] = Some((lease, object)),
                Err(e) => {
                    sink.fail(malformed(Verb::List, "leases", e));
                    return None;
                }
            }
        }
        self.deliver_state(slots, found, &version, sink)
            .then_some(version)
    }

    /// Delivers the state of a pool's `slots` (`found`, by slot) as of `version`: a `Changed`
    /// for each slot that exists, to its slot, then `Synced`. False when the driver has
    /// stopped listening.
    fn deliver_state(
        &self,
        slots: &SlotNames,
        found: Vec<Option<(Lease, W::Object)>>,
        version: &ResourceVersion,
        sink: &WatchSink,
    ) -> bool {
        for (slot, state) in (0..slots.count()).zip(found) {
            // A slot missing from the list is forgotten, as a read answered 404 is.
            let name = format!("{}-{slot}", slots.prefix());
            let Some((lease, object)) = state else {
                self.remember(&name, None);
                continue;
            };
            self.remember(&name, Some(object));
            if !sink.send_to(slot, WatchEvent::Changed(lease)) {
                return false;
            }
        }
        sink.send(WatchEvent::Synced(version.clone()))
    }

    fn object(
        verb: Verb,
        target: &str,
        answer: Answer<W::Object>,
    ) -> Result<W::Object, RequestError> {
        match answer {
            Answer::Object(o) => Ok(o),
            Answer::Deleted | Answer::Page { .. } => Err(malformed(verb, target, "not a Lease")),
        }
    }
}

/// What a streamed list's initial events came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streamed {
    /// The slots' state and `Synced` are delivered: the stream goes on as a watch.
    Synced,
    /// The stream's end is delivered.
    Ended,
    /// The server sent a plain watch instead; nothing was delivered.
    Plain,
    /// The stream ended, or brought an `ERROR`, before the initial events did; nothing was
    /// delivered.
    Broken,
}

fn malformed(verb: Verb, target: &str, what: impl Into<String>) -> RequestError {
    RequestError::failed(verb, target, Cause::Malformed(what.into()))
}

/// A call that brought no 2xx answer, as the user is told of it.
fn refusal(verb: Verb, target: &str, failure: Failure) -> RequestError {
    match failure {
        Failure::Refused(status) => RequestError::refused(verb, target, status),
        Failure::Cause(cause) => RequestError::failed(verb, target, cause),
    }
}

impl<W: Wire> Transport for Backbone<W> {
    async fn call(&self, request: Request) -> Result<Lease, RequestError> {
        let name = request.lease.as_str();
        let verb = request.op.verb();
        let target = format!("leases/{name}");
        let (call, written_over) = match &request.op {
            Operation::Get => (Call::Get { name }, None),
            Operation::Create(record) => {
                let object =
                    self.wire
                        .encode(self.wire.blank(&self.create_metadata), name, None, record);
                (Call::Create { object }, None)
            }
            Operation::Update {
                resource_version,
                record,
            } => {
                // The API server answers a PUT of a missing lease by creating it, whatever
                // resourceVersion it carried; a new uid is how the answer tells. Without the
                // uid of the lease written over (it was last seen deleted, or never read), the
                // update is not sent: the core is told to read first.
                let base = self.cached(name);
                let Some(uid) = base.as_ref().and_then(|b| W::uid(b)).map(str::to_owned) else {
                    return Err(RequestError::failed(verb, target, Cause::NotRead));
                };
                let object = self.wire.encode(
                    base.unwrap_or_else(|| self.wire.blank(&self.create_metadata)),
                    name,
                    Some(resource_version),
                    record,
                );
                (Call::Replace { name, object }, Some(uid))
            }
            Operation::Watch { .. } | Operation::WatchSlots { .. } | Operation::Unwatch => {
                return Err(RequestError::failed(verb, target, Cause::NotACall));
            }
        };
        match self.send(verb, &target, call).await {
            Ok(answer) => {
                let object = Self::object(verb, &target, answer)?;
                if written_over.is_some() && W::uid(&object) != written_over.as_deref() {
                    // A re-creation: the lease the update was for had been deleted. Said so,
                    // the core treats it as the deletion it is instead of as a successful
                    // take; the lease created names us, but no term of ours wrote it, so it
                    // is waited out.
                    self.remember(name, None);
                    return Err(RequestError::failed(verb, target, Cause::Recreated));
                }
                let lease = W::decode(&object).map_err(|e| malformed(verb, &target, e))?;
                self.remember(name, Some(object));
                Ok(lease)
            }
            Err(error) => {
                if error.kind == ApiError::NotFound {
                    self.remember(name, None);
                }
                Err(error)
            }
        }
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, RequestError> {
        let (items, _) = self.list_all(namespace, label_selector).await?;
        items
            .iter()
            .map(|item| W::decode_listed(item).map_err(|e| malformed(Verb::List, "leases", e)))
            .collect()
    }

    async fn delete(
        &self,
        name: &str,
        resource_version: &ResourceVersion,
    ) -> Result<(), RequestError> {
        let call = Call::Delete {
            name,
            resource_version,
        };
        self.send(Verb::Delete, &format!("leases/{name}"), call)
            .await?;
        self.remember(name, None);
        Ok(())
    }

    async fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        let name = lease.as_str();
        let target = format!("leases/{name}");
        match self
            .open_watch(
                Some(name),
                WatchFrom::after(resource_version.as_ref()),
                &target,
            )
            .await
        {
            Ok(stream) => {
                // The server sends this lease alone (a field selector names it).
                let route = |_: &W::Object| Some((name.to_owned(), None));
                self.follow(stream, &sink, &target, route).await;
            }
            Err(error) => sink.fail(error),
        }
    }

    async fn watch_slots(
        &self,
        slots: SlotNames,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        let from = match resource_version {
            Some(rv) => rv,
            None => {
                if self.stream_slots(&slots, &sink).await {
                    return;
                }
                match self.list_slots(&slots, &sink).await {
                    Some(rv) => rv,
                    None => return,
                }
            }
        };
        let target = "leases";
        match self.open_watch(None, WatchFrom::After(&from), target).await {
            Ok(stream) => {
                let route = Self::slot_route(&slots);
                self.follow(stream, &sink, target, route).await;
            }
            Err(error) => sink.fail(error),
        }
    }

    fn lists_before_watching(&self) -> bool {
        !self.streams_lists.load(Ordering::Relaxed)
    }
}
