//! Runs any leasehold-core machine over any transport on tokio.
//!
//! The core decides everything; a transport only performs requests and streams watches; this
//! driver connects them. It polls the machine for requests and sends them (one task per
//! request, so slots of a pool proceed in parallel), opens and closes watch streams, sleeps
//! until the machine's timeout or the next answer, hands events to the application, and on the
//! shutdown signal asks the machine to release before returning.
//!
//! Embedded users without tokio write the same loop by hand: see `leasehold_core::Elector`.

#[cfg(feature = "conformance")]
pub mod conformance;
mod machine;

pub use machine::Machine;

use leasehold_core::{
    ApiError, Instant, LeaseName, MicroTime, Operation, Request, ResourceVersion, Response,
    WatchEvent,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Performs the core's requests against an API server.
pub trait Transport: Send + Sync + 'static {
    /// Performs a `Get`, `Create` or `Update` and classifies the answer. It must resolve
    /// (with `ApiError::Timeout` at worst): the core waits for it before the next request.
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send;

    /// Lists the leases in `namespace` (all namespaces when `None`) matching `label_selector`,
    /// following pagination to the end.
    fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ListedLease>, ApiError>> + Send;

    /// Deletes the lease `name` only if it is still at `resource_version` (the API server's
    /// `preconditions`): a lease written since (renewed, say) is left alone with `Conflict`.
    fn delete(
        &self,
        name: &str,
        resource_version: &ResourceVersion,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Streams the watch of `lease` from `resource_version` into `sink` until the stream ends;
    /// its last event says how (`Ended`, `Expired` or `Failed`). The driver aborts it when the
    /// core no longer wants it.
    fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send;
}

/// client-go's per-request timeout for lease calls: `max(1 s, renew_deadline / 2)`, so a hung
/// call leaves the leader time to retry before its deadline.
pub fn request_timeout(timing: &leasehold_core::Timing) -> Duration {
    Duration::from_micros(timing.renew_deadline().as_micros() / 2).max(Duration::from_secs(1))
}

/// Classifies an API server's error answer for the core, the same way for every transport:
/// `reason` tells a 409 Conflict from AlreadyExists; `retry_after` is the 429's advice.
pub fn classify(http_status: u16, reason: &str, retry_after: Option<Duration>) -> ApiError {
    match http_status {
        404 => ApiError::NotFound,
        409 if reason == "AlreadyExists" => ApiError::AlreadyExists,
        409 => ApiError::Conflict,
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden,
        400 | 422 => ApiError::Invalid,
        429 => ApiError::TooManyRequests {
            retry_after: retry_after
                .map(|d| leasehold_core::Duration::from_micros(d.as_micros() as u64)),
        },
        status => ApiError::Server { status },
    }
}

/// What a transport puts in the metadata of the leases it creates: labels, so a selector finds
/// them, and an owner, so Kubernetes deletes the lease with it (a Pod, say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateMetadata {
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `metadata.ownerReferences[0]`.
    pub owner: Option<OwnerReference>,
}

/// An owner reference: the object whose deletion deletes the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerReference {
    /// `apiVersion` (`v1` for a Pod).
    pub api_version: String,
    /// `kind` (`Pod`).
    pub kind: String,
    /// `name`.
    pub name: String,
    /// `uid`.
    pub uid: String,
}

/// A lease as a list shows it: where it lives, when it was made, its labels and its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedLease {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp`, when the server gave one.
    pub created: Option<MicroTime>,
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The record and resourceVersion.
    pub lease: leasehold_core::Lease,
}

/// Where a transport delivers one watch stream's events.
#[derive(Clone, Debug)]
pub struct WatchSink {
    slot: u16,
    generation: u64,
    inputs: mpsc::UnboundedSender<Input>,
}

impl WatchSink {
    /// Delivers an event; false once the driver has stopped listening.
    pub fn send(&self, event: WatchEvent) -> bool {
        self.inputs
            .send(Input::Watch(self.slot, self.generation, event))
            .is_ok()
    }

    /// Delivers an event from an open stream; false when the stream should end (the event
    /// was `Expired` or `Failed`, or the driver stopped listening).
    pub fn forward(&self, event: WatchEvent) -> bool {
        let last = matches!(event, WatchEvent::Expired | WatchEvent::Failed);
        self.send(event) && !last
    }
}

#[derive(Debug)]
enum Input {
    Response(u16, Response),
    Watch(u16, u64, WatchEvent),
}

/// The clock the core reads, and the wall clock written to records.
///
/// On Linux it is `CLOCK_BOOTTIME`, which keeps counting while the process is stopped
/// (SIGSTOP, a long GC) *and* while the machine or VM is suspended, so that a leader that wakes
/// from any pause sees that its deadline passed and steps down first. Elsewhere it is the
/// monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            origin: boot_micros(),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn boot_micros() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(t.tv_nsec as u64 / 1_000)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boot_micros() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

impl Clock {
    /// Now, in the core's time (µs since this clock was made).
    pub fn now(&self) -> Instant {
        Instant::from_micros(boot_micros().saturating_sub(self.origin))
    }

    /// The tokio instant at which the core's `at` comes, computed from now (tokio sleeps on the
    /// monotonic clock, which stops during a suspend; the distance to `at` does not).
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        let ahead = at.as_micros().saturating_sub(self.now().as_micros());
        tokio::time::Instant::now() + Duration::from_micros(ahead)
    }

    /// The absolute `CLOCK_BOOTTIME` reading, in µs, at which the core's `at` comes. Another
    /// process on this machine (the agent's fence) reads the same clock, so this is how an instant
    /// crosses a process boundary; the core's own instants count from this clock's origin.
    /// Off Linux the reading is private to this process.
    pub fn to_boottime_micros(&self, at: Instant) -> u64 {
        self.origin.saturating_add(at.as_micros())
    }

    /// The core instant of an absolute `CLOCK_BOOTTIME` reading in µs, as another process sent
    /// it ([`to_boottime_micros`](Self::to_boottime_micros)); a reading from before this clock
    /// was made maps to its origin.
    pub fn from_boottime_micros(&self, micros: u64) -> Instant {
        Instant::from_micros(micros.saturating_sub(self.origin))
    }

    /// Wall-clock time, for `acquireTime`/`renewTime`.
    pub fn wall() -> MicroTime {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        MicroTime::from_unix_micros(micros)
    }
}

/// Runs `machine` over `transport` until it finishes after `shutdown` resolves. Each
/// application event is handed to `on_event` with the machine, for getters such as
/// `is_leader(now)`.
pub async fn drive<M, T, S>(
    machine: &mut M,
    transport: Arc<T>,
    clock: Clock,
    shutdown: S,
    mut on_event: impl FnMut(&M, M::Event),
) where
    M: Machine,
    T: Transport,
    S: Future<Output = ()>,
{
    let (inputs, mut received) = mpsc::unbounded_channel::<Input>();
    let mut watches: HashMap<u16, (u64, JoinHandle<()>)> = HashMap::new();
    let mut generation = 0u64;
    let mut stopping = false;
    tokio::pin!(shutdown);
    loop {
        let now = clock.now();
        while let Some(request) = machine.poll_request(now, Clock::wall()) {
            let slot = request.slot;
            match request.op {
                Operation::Watch { resource_version } => {
                    generation += 1;
                    let sink = WatchSink {
                        slot,
                        generation,
                        inputs: inputs.clone(),
                    };
                    let transport = transport.clone();
                    let task = tokio::spawn(async move {
                        transport.watch(request.lease, resource_version, sink).await
                    });
                    if let Some((_, old)) = watches.insert(slot, (generation, task)) {
                        old.abort();
                    }
                }
                Operation::Unwatch => {
                    if let Some((_, task)) = watches.remove(&slot) {
                        task.abort();
                    }
                }
                _ => {
                    let (transport, inputs) = (transport.clone(), inputs.clone());
                    tokio::spawn(async move {
                        let response = transport.call(request).await;
                        let _ = inputs.send(Input::Response(slot, response));
                    });
                }
            }
        }
        while let Some(event) = machine.poll_event() {
            on_event(machine, event);
        }
        if machine.is_finished() {
            break;
        }
        let wake = machine.poll_timeout().map(|at| clock.deadline(at));
        tokio::select! {
            input = received.recv() => match input {
                Some(Input::Response(slot, response)) => machine.handle_response(slot, response, clock.now()),
                Some(Input::Watch(slot, generation, event)) => {
                    // Events of a stream that was replaced or closed are stale.
                    if watches.get(&slot).is_some_and(|(g, _)| *g == generation) {
                        if matches!(event, WatchEvent::Ended | WatchEvent::Expired | WatchEvent::Failed) {
                            watches.remove(&slot);
                        }
                        machine.handle_watch(slot, event, clock.now());
                    }
                }
                None => break,
            },
            _ = sleep_until(wake) => machine.handle_timeout(clock.now()),
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                machine.shutdown(clock.now());
            }
        }
    }
    for (_, (_, task)) in watches {
        task.abort();
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_advances_with_real_time_and_maps_deadlines_from_now() {
        let clock = Clock::default();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = clock.now();
        assert!(b.as_micros() >= a.as_micros() + 20_000, "{a:?} {b:?}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let due = clock.deadline(Instant::from_micros(clock.now().as_micros() + 50_000));
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                left <= Duration::from_millis(50) && left >= Duration::from_millis(40),
                "{left:?}"
            );
            assert!(
                clock.deadline(Instant::from_micros(0)) <= tokio::time::Instant::now(),
                "a past instant is due now"
            );
        });
    }

    #[test]
    fn boottime_readings_cross_between_clocks_made_at_different_times() {
        let early = Clock::default();
        std::thread::sleep(Duration::from_millis(5));
        let late = Clock::default();
        let at = early.now();
        let absolute = early.to_boottime_micros(at);
        assert_eq!(early.from_boottime_micros(absolute), at);
        // The same instant seen by a clock made later is earlier on that clock's own scale.
        let seen = late.from_boottime_micros(absolute + 10_000_000);
        assert_eq!(late.to_boottime_micros(seen), absolute + 10_000_000);
        assert_eq!(late.from_boottime_micros(0), Instant::from_micros(0));
        assert_eq!(late.to_boottime_micros(Instant::MAX), u64::MAX);
    }
}
