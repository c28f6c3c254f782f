//! What users choose a lease agent for, side by side in one run, against the simulated API
//! server (a separate `leasehold sim` process, HTTPS on loopback): API requests per candidate,
//! failover times, cold-start makespan, memory and binary size. Prints markdown tables.
//!
//! `scripts/bench` builds the static binaries first and runs this; alone:
//! `cargo bench -p leasehold --features demo --bench agent -- [SECTION …] [--cold-n 100,1000]
//! [--cold-runs 3] [--cold-hold 300] [--cold-mode both]`. Section numbers pick sections;
//! `--cold-n` (a comma-separated list of member counts) and `--cold-runs` size the cold start,
//! as do `LEASEHOLD_BENCH_COLD_N` and `LEASEHOLD_BENCH_COLD_RUNS` (the flags win);
//! `--cold-hold` is each member's hold in milliseconds, `--cold-mode` the modes run. Section
//! `3b` is the delegation pool, `3c` the simulated server's watch fan-out alone (the ceiling
//! the machine sets on the cold start).

use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_core::{
    Elector, ElectorConfig, Event, Holder, Identity, LeaseName, LeaseRecord, Operation, Pool,
    PoolConfig, Request, ResourceVersion, SlotNames, Timing, Verb, WatchEvent,
};
use leasehold_runtime::{Clock, ListedLease, RequestError, Transport, WatchSink, drive};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const SECS: fn(u64) -> leasehold_core::Duration = leasehold_core::Duration::from_secs;

/// client-go's defaults.
fn default_timing() -> Timing {
    Timing::DEFAULT
}

/// The defaults at 5× speed (3 s / 2 s / 400 ms): every period is a fifth, so a count over
/// 12 s equals a count over a minute at 15 s / 10 s / 2 s.
fn fast_timing() -> Timing {
    Timing::new(SECS(3), SECS(2), leasehold_core::Duration::from_millis(400)).expect("valid")
}

struct SimProcess {
    child: Child,
    kubeconfig: PathBuf,
}

impl SimProcess {
    fn start(dir: &Path) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let child = Command::new(env!("CARGO_BIN_EXE_leasehold"))
            .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("leasehold sim starts");
        let start = Instant::now();
        while std::fs::metadata(&kubeconfig).map_or(true, |m| m.len() == 0) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the sim wrote no kubeconfig"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        Self { child, kubeconfig }
    }

    fn transport(&self) -> Arc<HttpTransport> {
        transport(&self.kubeconfig)
    }
}

/// The HTTP transport from a kubeconfig, with client-go's request timeout.
fn transport(kubeconfig: &Path) -> Arc<HttpTransport> {
    let cluster = from_kubeconfig(&[kubeconfig.to_owned()], None).expect("kubeconfig");
    Arc::new(
        leasehold_adapter_http::connect(&HttpConfig {
            cluster,
            namespace: "default".into(),
            request_timeout: Duration::from_micros(Timing::DEFAULT.request_timeout().as_micros()),
            rate_limit: None,
        })
        .expect("transport"),
    )
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The verbs requests are counted by, in the order the breakdown prints them.
const VERBS: [Verb; 6] = [
    Verb::Get,
    Verb::Create,
    Verb::Update,
    Verb::Watch,
    Verb::List,
    Verb::Delete,
];

/// Where `verb` is in [`VERBS`].
fn verb_index(verb: Verb) -> usize {
    VERBS
        .iter()
        .position(|v| *v == verb)
        .expect("every verb is counted")
}

/// What one request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A 2xx answer; for a watch, a stream that opened.
    Success,
    /// The API server refused it with this status code.
    Code(u16),
    /// No status came back: a timeout, a refused or broken connection, an answer that could
    /// not be decoded (the transport's own words are in its `Cause`).
    NoStatus,
}

impl Outcome {
    fn of(error: Option<&RequestError>) -> Self {
        match error {
            None => Self::Success,
            Some(e) => e
                .status
                .as_ref()
                .map_or(Self::NoStatus, |s| Self::Code(s.code)),
        }
    }
}

/// What a pool member's update was for, read from the spec it writes: the answers' codes
/// alone do not tell a lost take from a lost reservation, and they cost differently (a take
/// races on the hand-over's path, a reservation off it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Purpose {
    /// The member names itself holder: a take (a renew, for a term longer than a retry period).
    Take,
    /// Another's term, with the member named its next holder.
    Reserve,
    /// No holder: a release.
    Release,
}

impl Purpose {
    const ALL: [Self; 3] = [Self::Take, Self::Reserve, Self::Release];

    fn of(record: &LeaseRecord, me: &Identity) -> Option<Self> {
        match &record.holder {
            Holder::None => Some(Self::Release),
            h if h.is(me) => Some(Self::Take),
            _ if record.next_holder.is(me) => Some(Self::Reserve),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Take => "take",
            Self::Reserve => "reserve",
            Self::Release => "release",
        }
    }
}

/// The counts of `now` above those of `before`, a copy taken earlier; keys that did not move
/// are left out.
fn counted_since<K: Ord + Copy>(
    now: &BTreeMap<K, u64>,
    before: &BTreeMap<K, u64>,
) -> BTreeMap<K, u64> {
    now.iter()
        .map(|(key, n)| (*key, n - before.get(key).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The requests one candidate sent, by verb, and what each came to. A request still in flight
/// when its candidate is stopped has no outcome.
#[derive(Clone, Debug, Default)]
struct Tally {
    /// Sent, by verb (in [`VERBS`]' order).
    sent: [u64; VERBS.len()],
    /// Outcomes, by verb (in [`VERBS`]' order) and outcome.
    outcomes: BTreeMap<(usize, Outcome), u64>,
    /// Updates' outcomes by what they were for.
    updates: BTreeMap<(Purpose, Outcome), u64>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.sent.iter().sum()
    }

    fn add(&mut self, other: &Tally) {
        for (mine, theirs) in self.sent.iter_mut().zip(other.sent) {
            *mine += theirs;
        }
        for (key, n) in &other.outcomes {
            *self.outcomes.entry(*key).or_default() += n;
        }
        for (key, n) in &other.updates {
            *self.updates.entry(*key).or_default() += n;
        }
    }

    /// What was counted since `before`, a copy of this tally taken earlier.
    fn since(&self, before: &Tally) -> Tally {
        let mut sent = self.sent;
        for (now, then) in sent.iter_mut().zip(before.sent) {
            *now -= then;
        }
        Tally {
            sent,
            outcomes: counted_since(&self.outcomes, &before.outcomes),
            updates: counted_since(&self.updates, &before.updates),
        }
    }

    /// One line: each verb sent, with what its answers came to (`update 3 (2xx 1, 409 2)`).
    fn summary(&self) -> String {
        let verbs: Vec<String> = VERBS
            .iter()
            .enumerate()
            .filter(|(v, _)| self.sent[*v] > 0)
            .map(|(v, verb)| {
                let answers: Vec<String> = self
                    .outcomes
                    .iter()
                    .filter(|((of, _), _)| *of == v)
                    .map(|((_, outcome), n)| match outcome {
                        Outcome::Success => format!("2xx {n}"),
                        Outcome::Code(code) => format!("{code} {n}"),
                        Outcome::NoStatus => format!("no status {n}"),
                    })
                    .collect();
                format!("{verb} {} ({})", self.sent[v], answers.join(", "))
            })
            .collect();
        if verbs.is_empty() {
            "none".to_owned()
        } else {
            verbs.join("; ")
        }
    }
}

/// One candidate's view of the shared transport: counts its requests by verb and outcome, and
/// remembers when its last renew was answered.
/// How late the watch streams deliver the writes: when each write's answer came (by the
/// lease's resourceVersion, unique across leases), and for every delivery of it on a stream,
/// how long after. A stream that lags makes every waiting member see a hand-over late.
static WRITTEN_AT: Mutex<Option<std::collections::HashMap<String, Instant>>> = Mutex::new(None);
static STREAM_LAGS_US: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn answered_write(rv: &ResourceVersion) {
    let mut written = WRITTEN_AT.lock().unwrap();
    written
        .get_or_insert_with(Default::default)
        .insert(rv.as_str().to_owned(), Instant::now());
}

/// Times a delivery of a write from its answer; `false` when its answer has not been seen yet
/// (the stream was faster than the writer's answer, or the write was not timed).
fn stream_delivered(event: &WatchEvent) -> bool {
    let WatchEvent::Changed(lease) = event else {
        return false;
    };
    let at = WRITTEN_AT
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|w| w.get(lease.resource_version.as_str()).copied());
    if let Some(at) = at {
        let lag = at.elapsed().as_micros() as u64;
        STREAM_LAGS_US.lock().unwrap().push(lag);
    }
    at.is_some()
}

/// The stream lags measured since the last call, as p50, p90 and p99, and forgets them.
fn stream_lags() -> Option<(Duration, Duration, Duration)> {
    let mut lags = std::mem::take(&mut *STREAM_LAGS_US.lock().unwrap());
    *WRITTEN_AT.lock().unwrap() = None;
    if lags.is_empty() {
        return None;
    }
    lags.sort_unstable();
    let at = |q: usize| Duration::from_micros(lags[(lags.len() - 1) * q / 100]);
    Some((at(50), at(90), at(99)))
}

/// The machine's CPU time so far, busy and in all, in clock ticks (`/proc/stat`'s first line:
/// every core, every process): the simulated server's process and this one share the machine,
/// so two readings tell how near its ceiling the span between them ran.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // user nice system idle iowait irq softirq steal
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    // Busy: user, nice, system, irq, softirq. Idle, iowait and steal (another guest's) are not.
    let busy = ticks.iter().take(7).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    let total: u64 = ticks.iter().sum();
    Some((busy, total))
}

/// How busy the machine's cores were since `before` (a [`cpu_ticks`] reading), as a share.
fn cpu_busy_since(before: Option<(u64, u64)>) -> String {
    match (before, cpu_ticks()) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            format!(
                "{:.0} %",
                (busy1 - busy0) as f64 * 100.0 / (total1 - total0) as f64
            )
        }
        _ => "not known".to_owned(),
    }
}

struct Counting {
    inner: Arc<HttpTransport>,
    me: Identity,
    tally: Mutex<Tally>,
    renewed: Mutex<Option<Instant>>,
}

impl Counting {
    fn new(inner: &Arc<HttpTransport>, me: &Identity) -> Arc<Self> {
        Arc::new(Self {
            inner: inner.clone(),
            me: me.clone(),
            tally: Mutex::new(Tally::default()),
            renewed: Mutex::new(None),
        })
    }

    /// The requests sent so far.
    fn count(&self) -> u64 {
        self.tally.lock().unwrap().total()
    }

    fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    fn sent(&self, verb: Verb) {
        self.tally.lock().unwrap().sent[verb_index(verb)] += 1;
    }

    fn answered(&self, verb: Verb, outcome: Outcome) {
        *self
            .tally
            .lock()
            .unwrap()
            .outcomes
            .entry((verb_index(verb), outcome))
            .or_default() += 1;
    }
}

/// The outcome of one watch's opening. A refused or failed opening is the stream's first and
/// last delivery, with its error; a stream that opened may deliver nothing for a long while, so
/// one that ends or is dropped before any error counts as opened.
struct WatchOpening<'a> {
    counting: &'a Counting,
    counted: bool,
}

impl WatchOpening<'_> {
    fn count(&mut self, error: Option<&RequestError>) {
        if !self.counted {
            self.counted = true;
            self.counting.answered(Verb::Watch, Outcome::of(error));
        }
    }
}

impl Drop for WatchOpening<'_> {
    fn drop(&mut self) {
        self.count(None);
    }
}

impl Transport for Counting {
    async fn call(
        &self,
        request: Request,
    ) -> Result<leasehold_core::Lease, leasehold_runtime::RequestError> {
        let verb = request.op.verb();
        self.sent(verb);
        let write = matches!(request.op, Operation::Create(_) | Operation::Update { .. });
        let purpose = match &request.op {
            Operation::Update { record, .. } => Purpose::of(record, &self.me),
            _ => None,
        };
        let response = self.inner.call(request).await;
        let outcome = Outcome::of(response.as_ref().err());
        self.answered(verb, outcome);
        if let Some(purpose) = purpose {
            *self
                .tally
                .lock()
                .unwrap()
                .updates
                .entry((purpose, outcome))
                .or_default() += 1;
        }
        if let (true, Ok(lease)) = (write, response.as_ref()) {
            answered_write(&lease.resource_version);
        }
        if write
            && response
                .as_ref()
                .is_ok_and(|l| l.record.holder.is(&self.me))
        {
            *self.renewed.lock().unwrap() = Some(Instant::now());
        }
        response
    }

    async fn list(
        &self,
        ns: Option<&str>,
        sel: Option<&str>,
    ) -> Result<Vec<ListedLease>, leasehold_runtime::RequestError> {
        self.sent(Verb::List);
        let response = self.inner.list(ns, sel).await;
        self.answered(Verb::List, Outcome::of(response.as_ref().err()));
        response
    }

    async fn delete(
        &self,
        name: &str,
        rv: &ResourceVersion,
    ) -> Result<(), leasehold_runtime::RequestError> {
        self.sent(Verb::Delete);
        let response = self.inner.delete(name, rv).await;
        self.answered(Verb::Delete, Outcome::of(response.as_ref().err()));
        response
    }

    async fn watch(&self, lease: LeaseName, rv: Option<ResourceVersion>, sink: WatchSink) {
        self.sent(Verb::Watch);
        // The stream runs into a sink of this wrapper's, so that its deliveries can be read;
        // each goes on to the driver's sink, which keeps its slot and generation.
        let (deliveries, delivered) = mpsc::unbounded_channel();
        let stream = self
            .inner
            .watch(lease, rv, WatchSink::new(0, 0, deliveries));
        tokio::join!(stream, self.relay(delivered, sink, false));
    }

    /// A pool's stream: the watch counts as a watch opened; when it starts without a version
    /// and the transport lists before watching (a server that does not stream lists), its
    /// list counts as a list, answered when the slots are synced or the list fails.
    async fn watch_slots(&self, slots: SlotNames, rv: Option<ResourceVersion>, sink: WatchSink) {
        let listing = rv.is_none();
        self.sent(Verb::Watch);
        let (deliveries, delivered) = mpsc::unbounded_channel();
        let stream = self
            .inner
            .watch_slots(slots, rv, WatchSink::new(0, 0, deliveries));
        tokio::join!(stream, self.relay(delivered, sink, listing));
    }
}

impl Counting {
    /// Passes a stream's deliveries on to the driver's `sink`, counting the watch's opening
    /// (its first delivery of its own), the list's answer while `listing`, and how late each
    /// write arrives. Owns the receiver, so that the stream's next delivery fails and ends it
    /// once the driver has stopped listening.
    async fn relay(
        &self,
        mut delivered: mpsc::UnboundedReceiver<leasehold_runtime::Delivery>,
        sink: WatchSink,
        mut listing: bool,
    ) {
        let mut opening = WatchOpening {
            counting: self,
            counted: false,
        };
        while let Some(delivery) = delivered.recv().await {
            if listing {
                // Known once the list is over: whether the transport listed, or streamed it.
                let listed = || {
                    let listed = self.inner.lists_before_watching();
                    if listed {
                        self.sent(Verb::List);
                    }
                    listed
                };
                match (&delivery.event, &delivery.error) {
                    (WatchEvent::Synced(_), _) => {
                        listing = false;
                        if listed() {
                            self.answered(Verb::List, Outcome::of(None));
                        }
                    }
                    (_, Some(error)) if error.verb == Verb::List => {
                        listing = false;
                        if listed() {
                            self.answered(Verb::List, Outcome::of(Some(error)));
                        }
                    }
                    (_, Some(_)) => listing = false,
                    _ => {}
                }
            } else {
                let _ = stream_delivered(&delivery.event);
            }
            if delivery.lease_slot.is_none() && !matches!(delivery.event, WatchEvent::Synced(_)) {
                opening.count(delivery.error.as_ref());
            }
            if !sink.relay(delivery) {
                break;
            }
        }
    }
}

/// A candidate running in this process.
struct Candidate {
    transport: Arc<Counting>,
    led: Arc<Mutex<Vec<Instant>>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Candidate {
    fn spawn(
        shared: &Arc<HttpTransport>,
        lease: &str,
        id: &str,
        timing: Timing,
        watch: bool,
        seed: u64,
    ) -> Self {
        let identity = Identity::new(id).unwrap();
        let transport = Counting::new(shared, &identity);
        let led = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let mut elector = Elector::new(
            ElectorConfig {
                lease: LeaseName::new(lease).unwrap(),
                identity,
                timing,
                watch,
            },
            seed,
        );
        let (t, l) = (transport.clone(), led.clone());
        let task = tokio::spawn(async move {
            // Only a send stops it: the sender dropped by `kill` must not read as a release.
            let shutdown = async {
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            drive(&mut elector, t, Clock::default(), shutdown, |_, e| {
                if let Event::BecameLeader { .. } = e {
                    l.lock().unwrap().push(Instant::now());
                }
            })
            .await;
        });
        Self {
            transport,
            led,
            stop: Some(stop),
            task,
        }
    }

    fn has_led(&self) -> bool {
        !self.led.lock().unwrap().is_empty()
    }

    fn led_at(&self) -> Option<Instant> {
        self.led.lock().unwrap().first().copied()
    }

    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }

    fn kill(self) {
        self.task.abort();
    }
}

async fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// 1. Requests per candidate per minute, at 15/10/2 (measured at 5× speed for 12 s).
async fn requests_per_minute(shared: &Arc<HttpTransport>) {
    println!("## 1. API requests per candidate per minute (15 s / 10 s / 2 s)\n");
    println!(
        "| mode | candidates | leader / min | follower / min, median (max) | all candidates / min |"
    );
    println!("|---|---|---|---|---|");
    for watch in [true, false] {
        for n in [10usize, 100, 1000] {
            let lease = format!("rpm-{}-{n}", if watch { "watch" } else { "poll" });
            let candidates: Vec<Candidate> = (0..n)
                .map(|i| {
                    Candidate::spawn(
                        shared,
                        &lease,
                        &format!("c{i}"),
                        fast_timing(),
                        watch,
                        i as u64,
                    )
                })
                .collect();
            until(Duration::from_secs(60), "a leader", || {
                candidates.iter().any(Candidate::has_led)
            })
            .await;
            // Every candidate has read the lease and settled into its steady state.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before: Vec<u64> = candidates.iter().map(|c| c.transport.count()).collect();
            tokio::time::sleep(Duration::from_secs(12)).await;
            let delta: Vec<u64> = candidates
                .iter()
                .zip(&before)
                .map(|(c, b)| c.transport.count() - b)
                .collect();
            let leader = candidates.iter().position(Candidate::has_led).unwrap();
            let mut followers: Vec<f64> = delta
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != leader)
                .map(|(_, d)| *d as f64)
                .collect();
            let max = followers.iter().copied().fold(0.0, f64::max);
            let total: u64 = delta.iter().sum();
            println!(
                "| {} | {n} | {} | {:.1} ({max:.0}) | {total} |",
                if watch {
                    "leasehold, watch"
                } else {
                    "polling (client-go schedule)"
                },
                delta[leader],
                median(&mut followers),
            );
            for c in candidates {
                c.shut_down().await;
            }
        }
    }
    println!(
        "\nclient-go's schedule predicts 30 renewals a minute for the leader (one per retry period) and \
         60 / (2 s × 1.6) = 18.75 GETs a minute per follower.\n"
    );
}

/// 2. Failover: graceful (release) and crash (expiry), 20 runs each.
async fn failover(shared: &Arc<HttpTransport>) {
    println!("## 2. Failover, 20 runs each (15 s / 10 s / 2 s)\n");
    println!("| kind | measured from | p50 | p99 | min – max |");
    println!("|---|---|---|---|---|");
    let row = |kind: &str, from: &str, mut samples: Vec<f64>| {
        let (lo, hi) = (
            samples.iter().copied().fold(f64::MAX, f64::min),
            samples.iter().copied().fold(0.0, f64::max),
        );
        let fmt = |s: f64| {
            if s < 1.0 {
                format!("{:.1} ms", s * 1e3)
            } else {
                format!("{s:.3} s")
            }
        };
        println!(
            "| {kind} | {from} | {} | {} | {} – {} |",
            fmt(percentile(&mut samples, 50.0)),
            fmt(percentile(&mut samples, 99.0)),
            fmt(lo),
            fmt(hi)
        );
    };

    // Graceful, watching: one pair at a time, so the figure is the hand-over itself.
    let mut graceful = Vec::new();
    for run in 0..20 {
        let lease = format!("graceful-{run}");
        let a = Candidate::spawn(shared, &lease, "a", default_timing(), true, run);
        until(Duration::from_secs(10), "a leads", || a.has_led()).await;
        let b = Candidate::spawn(shared, &lease, "b", default_timing(), true, 100 + run);
        // b has read the lease and opened its watch.
        until(Duration::from_secs(10), "b watches", || {
            b.transport.count() >= 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        a.shut_down().await;
        until(Duration::from_secs(10), "b leads", || b.has_led()).await;
        graceful.push(b.led_at().unwrap().duration_since(t0).as_secs_f64());
        b.shut_down().await;
    }
    row(
        "graceful (SIGTERM: release)",
        "the leader's shutdown",
        graceful,
    );

    // Graceful, polling: 20 pairs at once (each waits for its next poll).
    let mut pairs = Vec::new();
    for run in 0..20u64 {
        let lease = format!("graceful-poll-{run}");
        let a = Candidate::spawn(shared, &lease, "a", default_timing(), false, run);
        let b = Candidate::spawn(shared, &lease, "b", default_timing(), false, 200 + run);
        pairs.push((a, b));
    }
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| {
            tokio::spawn(async move {
                until(Duration::from_secs(30), "a leads", || {
                    a.has_led() || b.has_led()
                })
                .await;
                let (leader, follower) = if a.has_led() { (a, b) } else { (b, a) };
                tokio::time::sleep(Duration::from_millis(1_000 + 150 * i as u64)).await;
                let t0 = Instant::now();
                leader.shut_down().await;
                until(Duration::from_secs(30), "the follower leads", || {
                    follower.has_led()
                })
                .await;
                let took = follower.led_at().unwrap().duration_since(t0).as_secs_f64();
                follower.shut_down().await;
                took
            })
        })
        .collect();
    let mut polled = Vec::new();
    for t in tasks {
        polled.push(t.await.unwrap());
    }
    row(
        "graceful, polling follower",
        "the leader's shutdown",
        polled,
    );

    // Crash: 20 pairs at once; each leader is killed at a random point of its renew cycle.
    let mut pairs = Vec::new();
    for run in 0..20u64 {
        let lease = format!("crash-{run}");
        let a = Candidate::spawn(shared, &lease, "a", default_timing(), true, 300 + run);
        until(Duration::from_secs(10), "a leads", || a.has_led()).await;
        let b = Candidate::spawn(shared, &lease, "b", default_timing(), true, 400 + run);
        pairs.push((a, b));
    }
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1_000 + 97 * i as u64)).await;
                let killed = Instant::now();
                let a_transport = a.transport.clone();
                a.kill();
                until(Duration::from_secs(30), "b leads", || b.has_led()).await;
                let at = b.led_at().unwrap();
                // A renew already sent when the leader died still lands (as it would from a
                // killed process): the last renew is the last one answered, read only now.
                let renewed = a_transport.renewed.lock().unwrap().unwrap();
                b.shut_down().await;
                (
                    at.duration_since(renewed).as_secs_f64(),
                    at.duration_since(killed).as_secs_f64(),
                )
            })
        })
        .collect();
    let (mut from_renew, mut from_kill) = (Vec::new(), Vec::new());
    for t in tasks {
        let (r, k) = t.await.unwrap();
        from_renew.push(r);
        from_kill.push(k);
    }
    row(
        "crash (kill -9: expiry)",
        "the leader's last renew",
        from_renew,
    );
    row("crash (kill -9: expiry)", "the kill", from_kill);
    println!();
}

/// What one cold start came to.
struct ColdStart {
    /// From the start until the last member finished, or until the run was given up.
    makespan: Duration,
    /// Members that ran their work and closed their pool (the release sent, whatever it
    /// wrote): all of them, unless the pool did not drain.
    finished: u64,
    /// Releases that wrote nothing (`Released { written: false }`): those slots were left to
    /// expire, and the members still finished.
    unwritten: u64,
    /// Each member's requests.
    members: Vec<Tally>,
    /// The most members building at once: each builds from its `BecameLeader` until its hold
    /// has passed, counted as it starts. The pool's cap says at most ten.
    most_building: usize,
}

/// One cold start: `n` members through a pool of `SLOTS`, each holding its slot for `hold`.
async fn cold_start_once(
    shared: &Arc<HttpTransport>,
    prefix: &str,
    n: usize,
    hold: Duration,
    watch: bool,
) -> ColdStart {
    let finished = Arc::new(AtomicU64::new(0));
    let unwritten = Arc::new(AtomicU64::new(0));
    let building = Arc::new(AtomicUsize::new(0));
    let most_building = Arc::new(AtomicUsize::new(0));
    let mut counts: Vec<Arc<Counting>> = Vec::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for m in 0..n {
        let identity = Identity::new(&format!("m{m}")).unwrap();
        let transport = Counting::new(shared, &identity);
        counts.push(transport.clone());
        let (finished, unwritten, prefix) =
            (finished.clone(), unwritten.clone(), prefix.to_owned());
        let (building, most_building) = (building.clone(), most_building.clone());
        tasks.push(tokio::spawn(async move {
            let config = PoolConfig {
                prefix: &prefix,
                size: SLOTS,
                identity,
                timing: default_timing(),
                watch,
            };
            let mut pool: Pool<SLOTS> = Pool::new(config, m as u64).unwrap();
            let (done, work_done) = oneshot::channel::<()>();
            let mut done = Some(done);
            let work_ended = async move {
                let _ = work_done.await;
            };
            drive(
                &mut pool,
                transport,
                Clock::default(),
                work_ended,
                |_, e| match e.event {
                    Event::BecameLeader { .. } => {
                        if let Some(done) = done.take() {
                            let now = building.fetch_add(1, Ordering::SeqCst) + 1;
                            most_building.fetch_max(now, Ordering::SeqCst);
                            let building = building.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(hold).await;
                                // Counted out before the pool hears of it: the release, and
                                // so the next member's start, come after.
                                building.fetch_sub(1, Ordering::SeqCst);
                                let _ = done.send(());
                            });
                        }
                    }
                    Event::Released { written: false } => {
                        unwritten.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
            )
            .await;
            // The drive returns once the work has ended and the pool is closed: the member is
            // done, whether its release was written or left to expire.
            finished.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let limit = hold * n.div_ceil(SLOTS) as u32 * 10 + Duration::from_secs(60);
    while finished.load(Ordering::Relaxed) < n as u64 && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let makespan = start.elapsed();
    for t in tasks {
        t.abort();
    }
    let done = finished.load(Ordering::Relaxed);
    if done < n as u64 {
        eprintln!("cold start {prefix}: only {done} of {n} members finished within {limit:?}");
    }
    ColdStart {
        makespan,
        finished: done,
        unwritten: unwritten.load(Ordering::Relaxed),
        members: counts.iter().map(|c| c.tally()).collect(),
        most_building: most_building.load(Ordering::SeqCst),
    }
}

/// The pool size of the cold-start benchmark (Sysdig's default).
const SLOTS: usize = 10;

/// The fan-out loads of section 3c: streams open, and writes a second over the pool's leases.
/// A cold start of 1 000 members through 10 slots of 300 ms writes about 100 times a second at
/// the ideal pace (a take, a reservation and a release for each of 33 terms a second), each to
/// up to 1 000 streams.
const FAN_OUT: [(usize, u32); 6] = [
    (100, 80),
    (300, 80),
    (1000, 20),
    (1000, 40),
    (1000, 80),
    (1000, 160),
];

/// How long section 3c writes at each load.
const FAN_OUT_FOR: Duration = Duration::from_secs(10);

/// A write of section 3c's writer to `lease`, which nothing else writes: it cannot conflict.
async fn sole_write(
    shared: &HttpTransport,
    lease: &LeaseName,
    op: Operation,
) -> leasehold_core::Lease {
    let request = Request {
        slot: 0,
        lease: lease.clone(),
        op,
    };
    shared
        .call(request)
        .await
        .expect("the only writer of its lease")
}

/// 3c. The ceiling this machine sets on the cold start: the simulated server's watch fan-out,
/// with nothing deciding. `streams` pool streams stay open in this process, as the cold
/// start's members keep them, while one writer a lease updates the pool's leases at a fixed
/// rate (the writers spaced evenly: ten writes at once would measure how long a burst takes to
/// drain, not a write); each write's delivery on every stream is timed from its answer, as in
/// the cold start, and the run waits for every delivery owed.
/// Every hand-over waits for one such delivery (the reserved member learns of the release on
/// its stream), and every member that writes on an older view than the server's races: the lag
/// measured here, with no member's own work beside it, is the least a cold start's hand-overs
/// can cost at that load on this machine.
async fn fan_out(shared: &Arc<HttpTransport>) {
    println!("## 3c. The machine's ceiling: the simulated server's watch fan-out alone\n");
    println!(
        "| streams open | writes a second | deliveries a second | lag p50 | p90 | p99 | deliveries before their write's answer (not timed) | deliveries missing | machine busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let writer = Identity::new("fan-out-writer").unwrap();
    let record = |writer: &Identity| LeaseRecord {
        holder: Holder::Named(writer.clone()),
        lease_duration: Some(leasehold_core::Duration::from_secs(15)),
        acquire_time: Some(Clock::wall()),
        renew_time: Some(Clock::wall()),
        lease_transitions: Some(0),
        next_holder: Holder::None,
    };
    for (streams, rate) in FAN_OUT {
        let prefix = format!("fanout-{streams}-{rate}");
        let mut leases = Vec::new();
        for i in 0..SLOTS {
            let lease = LeaseName::new(&format!("{prefix}-{i}")).unwrap();
            let created = sole_write(shared, &lease, Operation::Create(record(&writer))).await;
            leases.push((lease, created.resource_version));
        }
        let delivered = Arc::new(AtomicU64::new(0));
        let untimed = Arc::new(AtomicU64::new(0));
        let synced = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..streams)
            .map(|_| {
                let slots = SlotNames::new(&prefix, SLOTS as u16).unwrap();
                let (shared, delivered, untimed, synced) = (
                    shared.clone(),
                    delivered.clone(),
                    untimed.clone(),
                    synced.clone(),
                );
                tokio::spawn(async move {
                    let (sink, mut deliveries) = mpsc::unbounded_channel();
                    let stream = shared.watch_slots(slots, None, WatchSink::new(0, 0, sink));
                    let read = async {
                        while let Some(delivery) = deliveries.recv().await {
                            match delivery.event {
                                WatchEvent::Synced(_) => {
                                    synced.fetch_add(1, Ordering::Relaxed);
                                }
                                ref event @ WatchEvent::Changed(_) => {
                                    if !stream_delivered(event) {
                                        untimed.fetch_add(1, Ordering::Relaxed);
                                    }
                                    delivered.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {}
                            }
                        }
                    };
                    tokio::join!(stream, read);
                })
            })
            .collect();
        until(Duration::from_secs(120), "every stream synced", || {
            synced.load(Ordering::Relaxed) >= streams
        })
        .await;
        let _ = stream_lags();
        delivered.store(0, Ordering::Relaxed);
        untimed.store(0, Ordering::Relaxed);
        let written = Arc::new(AtomicU64::new(0));
        let cpu = cpu_ticks();
        let started = tokio::time::Instant::now();
        // Each writer a tenth of a period after the one before: the writes come evenly spaced,
        // not ten at once.
        let period = Duration::from_secs_f64(SLOTS as f64 / f64::from(rate));
        let writers: Vec<_> = leases
            .into_iter()
            .enumerate()
            .map(|(i, (lease, mut version))| {
                let (shared, written, writer) = (shared.clone(), written.clone(), writer.clone());
                let first = started + period * i as u32 / SLOTS as u32;
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval_at(first, period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if started.elapsed() >= FAN_OUT_FOR {
                            break;
                        }
                        let op = Operation::Update {
                            resource_version: version.clone(),
                            record: record(&writer),
                        };
                        let written_lease = sole_write(&shared, &lease, op).await;
                        answered_write(&written_lease.resource_version);
                        version = written_lease.resource_version;
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("a writer ends");
        }
        let written = written.load(Ordering::Relaxed);
        let owed = written * streams as u64;
        // Every delivery owed, or 30 s at most; the rate counts until the last came.
        let drain = Instant::now();
        while delivered.load(Ordering::Relaxed) < owed && drain.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let busy = cpu_busy_since(cpu);
        for r in readers {
            r.abort();
            let _ = r.await;
        }
        let delivered = delivered.load(Ordering::Relaxed);
        let (p50, p90, p99) = stream_lags().unwrap_or_default();
        println!(
            "| {streams} | {:.0} | {:.0} | {p50:.1?} | {p90:.1?} | {p99:.1?} | {} | {} | {busy} |",
            written as f64 / FAN_OUT_FOR.as_secs_f64(),
            delivered as f64 / elapsed,
            untimed.load(Ordering::Relaxed),
            owed.saturating_sub(delivered),
        );
    }
    println!();
}

/// Members of the delegation benchmark, and its slots (Sysdig's `k8s_delegated_nodes`).
const DELEGATION_MEMBERS: usize = 1000;
const DELEGATES: usize = 2;

/// 3b. Delegation: `n` watching members through `delegation-0..1`, held until the member ends.
///
/// Measures the followers' requests over a quiet minute, then crashes one delegate (its task
/// aborted: no release) and measures when and by how many members its slot is taken, and what
/// that cost in requests.
async fn delegation(shared: &Arc<HttpTransport>, n: usize) {
    println!(
        "## 3b. Delegation: {n} watching members through {DELEGATES} slots held until the member ends\n"
    );
    // Every term begun: (member, slot, when).
    let terms: Arc<Mutex<Vec<(usize, u16, Instant)>>> = Arc::default();
    let mut counts = Vec::new();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for m in 0..n {
        let identity = Identity::new(&format!("d{m}")).unwrap();
        let transport = Counting::new(shared, &identity);
        counts.push(transport.clone());
        let terms = terms.clone();
        tasks.push(tokio::spawn(async move {
            let config = PoolConfig {
                prefix: "delegation",
                size: DELEGATES,
                identity,
                timing: default_timing(),
                watch: true,
            };
            let mut pool: Pool<DELEGATES> = Pool::new(config, m as u64).unwrap();
            drive(
                &mut pool,
                transport,
                Clock::default(),
                std::future::pending::<()>(),
                |_, e| {
                    if let Event::BecameLeader { .. } = e.event {
                        terms.lock().unwrap().push((m, e.slot, Instant::now()));
                    }
                },
            )
            .await;
        }));
    }
    until(Duration::from_secs(60), "two delegates", || {
        terms.lock().unwrap().len() >= DELEGATES
    })
    .await;
    let elected = started.elapsed();
    // The boot's lists and watches settle first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let delegates: Vec<usize> = terms.lock().unwrap().iter().map(|t| t.0).collect();
    // Requests sent so far by the followers (`true`) or by the delegates.
    let tally_of = |followers: bool| -> Tally {
        let mut all = Tally::default();
        for (_, c) in counts
            .iter()
            .enumerate()
            .filter(|(m, _)| delegates.contains(m) != followers)
        {
            all.add(&c.tally());
        }
        all
    };
    let sent_by = |followers: bool| tally_of(followers).total();
    let quiet_start = (sent_by(true), sent_by(false));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let followers_minute = sent_by(true) - quiet_start.0;
    let delegates_minute = sent_by(false) - quiet_start.1;
    // The crash: the first delegate's task ends without a release.
    let (victim, slot, _) = terms.lock().unwrap()[0];
    let before_crash = tally_of(true);
    let terms_before = terms.lock().unwrap().len();
    tasks[victim].abort();
    let crashed = Instant::now();
    until(
        Duration::from_secs(30),
        "the crashed delegate's slot taken",
        || {
            terms.lock().unwrap()[terms_before..]
                .iter()
                .any(|t| t.1 == slot)
        },
    )
    .await;
    let taken_after = terms.lock().unwrap()[terms_before..]
        .iter()
        .find(|t| t.1 == slot)
        .map(|t| t.2.duration_since(crashed))
        .unwrap();
    let at_take = tally_of(true);
    // Every loser of the take has heard by then.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut takers: Vec<usize> = terms.lock().unwrap()[terms_before..]
        .iter()
        .filter(|t| t.1 == slot)
        .map(|t| t.0)
        .collect();
    takers.sort_unstable();
    takers.dedup();
    // The server's side: followers whose write naming themselves holder it accepted since the
    // crash (a follower's other write, a reservation, names the holder it waits behind).
    let writers = counts
        .iter()
        .enumerate()
        .filter(|(m, c)| {
            !delegates.contains(m) && c.renewed.lock().unwrap().is_some_and(|at| at > crashed)
        })
        .count();
    let after_take = tally_of(true);
    let takeover_requests = after_take.since(&before_crash).total();
    for t in tasks {
        t.abort();
    }
    println!("| figure | measured |\n|---|---|");
    println!("| both delegates elected after the start | {elected:.1?} |");
    println!(
        "| requests by the {} followers over a quiet minute | {followers_minute} |",
        n - DELEGATES
    );
    println!(
        "| requests by the {DELEGATES} delegates over that minute (renews) | {delegates_minute} |"
    );
    println!(
        "| a crashed delegate's slot taken after the crash | {taken_after:.2?} (lease duration {} s) |",
        default_timing().lease_duration().as_secs()
    );
    println!(
        "| members that took it (their `BecameLeader`) | {} |",
        takers.len()
    );
    println!("| followers whose take the server accepted | {writers} |");
    println!(
        "| requests by the followers from the crash until 3 s after the take | {takeover_requests} |"
    );
    println!(
        "| of which, until the take was seen | {} |",
        at_take.since(&before_crash).summary()
    );
    println!(
        "| of which, in the 3 s after | {} |",
        after_take.since(&at_take).summary()
    );
    println!();
}

/// How the cold start is run: the member counts, and the runs of each.
struct ColdStartPlan {
    members: Vec<usize>,
    runs: usize,
    /// How long each member holds its slot.
    hold: Duration,
    /// The modes run: watching, polling, or both.
    modes: Vec<bool>,
}

impl Default for ColdStartPlan {
    fn default() -> Self {
        Self {
            members: vec![100, 1000],
            runs: 3,
            hold: Duration::from_millis(300),
            modes: vec![true, false],
        }
    }
}

fn mode_name(watch: bool) -> &'static str {
    if watch {
        "leasehold, watch"
    } else {
        "polling (client-go schedule)"
    }
}

/// 3. Cold start: N members through a pool of 10, each holding its slot for `hold`.
///
/// Makespans are of the runs that drained; requests are of every run (one that did not drain,
/// until it was given up).
async fn cold_start(shared: &Arc<HttpTransport>, plan: &ColdStartPlan) {
    let hold = plan.hold;
    let runs = plan.runs;
    println!(
        "## 3. Cold-start makespan: a pool of 10, each member holds its slot {hold:?}, {runs} run{}\n",
        if runs == 1 { "" } else { "s" }
    );
    println!(
        "| mode | members | makespan, median | min – max | ideal ceil(N/10) × T | over ideal | per round | requests per member, mean (worst member) | requests per run, median | releases not written | most building at once |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut breakdowns = Vec::new();
    let mut lags = Vec::new();
    // Forget what the earlier sections' writes and streams left.
    let _ = stream_lags();
    for &watch in &plan.modes {
        for &n in &plan.members {
            let mut makespans = Vec::new();
            let mut requests = Vec::new();
            let mut worst = 0;
            let mut unwritten = 0;
            let mut not_drained = 0;
            let mut most_building = 0;
            let mut all = Tally::default();
            for run in 0..runs {
                let prefix = format!("cold-{}-{n}-{run}", if watch { "w" } else { "p" });
                let cpu = cpu_ticks();
                let result = cold_start_once(shared, &prefix, n, hold, watch).await;
                let busy = cpu_busy_since(cpu);
                if let Some((p50, p90, p99)) = stream_lags() {
                    lags.push(format!(
                        "| {} | {n} | {run} | {p50:.1?} | {p90:.1?} | {p99:.1?} | {busy} |",
                        mode_name(watch)
                    ));
                }
                unwritten += result.unwritten;
                most_building = most_building.max(result.most_building);
                requests.push(result.members.iter().map(Tally::total).sum::<u64>() as f64);
                for member in &result.members {
                    worst = worst.max(member.total());
                    all.add(member);
                }
                if result.finished < n as u64 {
                    not_drained += 1;
                } else {
                    makespans.push(result.makespan.as_secs_f64());
                }
            }
            let mode = format!(
                "{}{}",
                mode_name(watch),
                if not_drained > 0 {
                    format!(" ({not_drained} of {runs} runs did not drain)")
                } else {
                    String::new()
                }
            );
            let per_member = all.total() as f64 / (n * runs) as f64;
            let requests = format!(
                "{per_member:.1} ({worst}) | {:.0} | {unwritten} | {most_building}",
                median(&mut requests)
            );
            if makespans.is_empty() {
                println!("| {mode} | {n} | no run drained | | | | | {requests} |");
            } else {
                let (lo, hi) = (
                    makespans.iter().copied().fold(f64::MAX, f64::min),
                    makespans.iter().copied().fold(0.0, f64::max),
                );
                let makespan = median(&mut makespans);
                let ideal = (hold * n.div_ceil(SLOTS) as u32).as_secs_f64();
                println!(
                    "| {mode} | {n} | {makespan:.2} s | {lo:.2} – {hi:.2} s | {ideal:.2} s | {:+.1} % | {:+.1} ms | {requests} |",
                    (makespan / ideal - 1.0) * 100.0,
                    (makespan - ideal) / n.div_ceil(SLOTS) as f64 * 1e3,
                );
            }
            breakdowns.push((watch, n, all));
        }
    }
    println!();
    print_breakdown(&breakdowns, runs);
    if !lags.is_empty() {
        println!(
            "### How late the streams delivered the writes (from the write's answer to each \
             delivery)\n"
        );
        println!("| mode | members | run | p50 | p90 | p99 | machine busy |");
        println!("|---|---|---|---|---|---|---|");
        for line in &lags {
            println!("{line}");
        }
        println!();
    }
}

/// The cold start's requests by verb and answer: per run (the mean over the runs), and sent
/// per member.
fn print_breakdown(breakdowns: &[(bool, usize, Tally)], runs: usize) {
    println!("### Cold-start requests by verb and answer, per run (mean of {runs})\n");
    println!(
        "| mode | members | verb | sent per member | sent | 2xx | 404 | 409 | 429 | other codes | no status (timeout, connection) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let per_run = |count: u64| format!("{:.0}", count as f64 / runs as f64);
    for (watch, n, tally) in breakdowns {
        for (v, verb) in VERBS.iter().enumerate() {
            if tally.sent[v] == 0 {
                continue;
            }
            let of = |wanted: Outcome| tally.outcomes.get(&(v, wanted)).copied().unwrap_or(0);
            let others: Vec<(u16, u64)> = tally
                .outcomes
                .iter()
                .filter_map(|(&(verb, outcome), &count)| match outcome {
                    Outcome::Code(code) if verb == v && ![404, 409, 429].contains(&code) => {
                        Some((code, count))
                    }
                    _ => None,
                })
                .collect();
            let other = match others.iter().map(|(_, c)| c).sum::<u64>() {
                0 => "0".to_owned(),
                total => format!(
                    "{} ({})",
                    per_run(total),
                    others
                        .iter()
                        .map(|(code, c)| format!("{code}: {}", per_run(*c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            println!(
                "| {} | {n} | {verb} | {:.2} | {} | {} | {} | {} | {} | {other} | {} |",
                mode_name(*watch),
                tally.sent[v] as f64 / (n * runs) as f64,
                per_run(tally.sent[v]),
                per_run(of(Outcome::Success)),
                per_run(of(Outcome::Code(404))),
                per_run(of(Outcome::Code(409))),
                per_run(of(Outcome::Code(429))),
                per_run(of(Outcome::NoStatus)),
            );
        }
    }
    println!();
    println!("### Cold-start updates by what they were for, per member (mean of {runs} runs)\n");
    println!("| mode | members | update | sent | 2xx | 409 | other |");
    println!("|---|---|---|---|---|---|---|");
    for (watch, n, tally) in breakdowns {
        for purpose in Purpose::ALL {
            let per_member = |count: u64| format!("{:.2}", count as f64 / (n * runs) as f64);
            let of = |wanted: Option<Outcome>| -> u64 {
                tally
                    .updates
                    .iter()
                    .filter(|((p, o), _)| {
                        *p == purpose
                            && wanted
                                .map_or(!matches!(o, Outcome::Success | Outcome::Code(409)), |w| {
                                    *o == w
                                })
                    })
                    .map(|(_, c)| c)
                    .sum()
            };
            let sent: u64 = tally
                .updates
                .iter()
                .filter(|((p, _), _)| *p == purpose)
                .map(|(_, c)| c)
                .sum();
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} |",
                mode_name(*watch),
                purpose.name(),
                per_member(sent),
                per_member(of(Some(Outcome::Success))),
                per_member(of(Some(Outcome::Code(409)))),
                per_member(of(None)),
            );
        }
    }
    println!();
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 4. Memory: one `leasehold elect` process, and 1 000 electors in this process.
async fn memory(sim: &SimProcess) {
    println!("## 4. Memory\n");
    println!("| process | peak RSS (VmHWM), median of 3 | min – max |");
    println!("|---|---|---|");
    let mut binaries: Vec<(String, PathBuf, &str)> = vec![
        (
            "`leasehold elect --transport http` (default build)".into(),
            PathBuf::from(env!("CARGO_BIN_EXE_leasehold")),
            "http",
        ),
        (
            "`leasehold elect --transport kube` (default build)".into(),
            PathBuf::from(env!("CARGO_BIN_EXE_leasehold")),
            "kube",
        ),
    ];
    if let Some(path) = std::env::var_os("LEASEHOLD_STATIC_BIN") {
        binaries.insert(
            0,
            (
                "`leasehold elect`, static raw-HTTP build".into(),
                PathBuf::from(path),
                "http",
            ),
        );
    }
    if let Some(path) = std::env::var_os("LEASEHOLD_STATIC_KUBE_BIN") {
        binaries.insert(
            1,
            (
                "`leasehold elect`, static kube build".into(),
                PathBuf::from(path),
                "kube",
            ),
        );
    }
    for (label, binary, transport) in binaries {
        let mut peaks = Vec::new();
        for run in 0..3 {
            let mut child = Command::new(&binary)
                .arg("--kubeconfig")
                .arg(&sim.kubeconfig)
                .args([
                    "--transport",
                    transport,
                    "elect",
                    "--lease",
                    &format!("rss-{transport}-{run}"),
                ])
                .args([
                    "--lease-duration",
                    "3s",
                    "--renew-deadline",
                    "2s",
                    "--retry-period",
                    "400ms",
                ])
                .args(["--listen", "127.0.0.1:0", "--status-file"])
                .arg(
                    std::env::temp_dir()
                        .join(format!("leasehold-bench-{}-{run}", std::process::id())),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the agent starts");
            // Lead and renew ~12 times, serving its endpoints.
            tokio::time::sleep(Duration::from_secs(5)).await;
            peaks.push(status_kib(child.id(), "VmHWM:") as f64);
            let _ = child.kill();
            let _ = child.wait();
        }
        let (lo, hi) = (
            peaks.iter().copied().fold(f64::MAX, f64::min),
            peaks.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "| {label} | {:.2} MiB | {:.2} – {:.2} MiB |",
            median(&mut peaks) / 1024.0,
            lo / 1024.0,
            hi / 1024.0
        );
    }

    println!();
}

/// 4b. 1 000 electors in one process sharing one transport: each variant in a fresh process
/// (this benchmark run again with `LEASEHOLD_BENCH_ELECTORS`), so no earlier section's heap
/// hides or inflates the growth.
fn memory_per_elector(sim: &SimProcess) -> String {
    let mut out = String::from(
        "| 1 000 electors in one process, one shared transport | RSS per elector, median of 3 | min – max |\n|---|---|---|\n",
    );
    for mode in ["poll", "watch"] {
        let mut samples: Vec<f64> = (0..3)
            .map(|_| {
                let output = Command::new(std::env::current_exe().unwrap())
                    .env("LEASEHOLD_BENCH_ELECTORS", mode)
                    .env("LEASEHOLD_BENCH_KUBECONFIG", &sim.kubeconfig)
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("the benchmark runs itself");
                String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse::<f64>()
                    .expect("KiB")
            })
            .collect();
        let (lo, hi) = (
            samples.iter().copied().fold(f64::MAX, f64::min),
            samples.iter().copied().fold(0.0, f64::max),
        );
        out.push_str(&format!(
            "| {} | {:.1} KiB | {lo:.1} – {hi:.1} KiB |\n",
            if mode == "watch" {
                "watching (one watch stream each)"
            } else {
                "polling"
            },
            median(&mut samples),
        ));
    }
    out
}

/// The child side of [`memory_per_elector`]: prints KiB of RSS growth per elector.
async fn electors_child(shared: &Arc<HttpTransport>, watch: bool) {
    // The transport has connected once, as it would have before any elector starts.
    let _ = shared.list(Some("default"), None).await;
    let before = status_kib(std::process::id(), "VmRSS:");
    let lease = format!("mem-{watch}-{}", std::process::id());
    let candidates: Vec<Candidate> = (0..1000)
        .map(|i| Candidate::spawn(shared, &lease, &format!("c{i}"), default_timing(), watch, i))
        .collect();
    until(Duration::from_secs(60), "a leader", || {
        candidates.iter().any(Candidate::has_led)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = status_kib(std::process::id(), "VmRSS:");
    println!("{}", after.saturating_sub(before) as f64 / 1000.0);
    for c in candidates {
        c.kill();
    }
}

/// 5. Binary sizes.
fn sizes() {
    println!("## 5. Binary size (stripped)\n");
    println!("| build | bytes | MiB |");
    println!("|---|---|---|");
    for (label, var) in [
        (
            "static raw-HTTP (`scripts/build-static`)",
            "LEASEHOLD_STATIC_BIN",
        ),
        (
            "static kube (`scripts/build-static kube`)",
            "LEASEHOLD_STATIC_KUBE_BIN",
        ),
    ] {
        match std::env::var_os(var).and_then(|p| std::fs::metadata(p).ok()) {
            Some(m) => println!(
                "| {label} | {} | {:.2} |",
                m.len(),
                m.len() as f64 / 1_048_576.0
            ),
            None => println!("| {label} | not built (run scripts/bench) | |"),
        }
    }
    println!();
}

/// What the command line asks for.
struct Args {
    /// The sections to run, by number; every section when empty.
    sections: Vec<String>,
    cold_start: ColdStartPlan,
}

impl Args {
    /// Reads the arguments (`--cold-n LIST`, `--cold-runs N`, `--cold-hold MS`, `--cold-mode
    /// watch|poll|both`, also as `--flag=value`, and
    /// section numbers; cargo's `--bench` and any other flag are ignored) over the
    /// environment's `LEASEHOLD_BENCH_COLD_N` and `LEASEHOLD_BENCH_COLD_RUNS`.
    fn parse() -> Self {
        let mut cold_n = std::env::var("LEASEHOLD_BENCH_COLD_N").ok();
        let mut cold_runs = std::env::var("LEASEHOLD_BENCH_COLD_RUNS").ok();
        let (mut cold_hold, mut cold_mode) = (None, None);
        let mut sections = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            match flag {
                "--cold-n" => cold_n = value.or_else(|| args.next()),
                "--cold-runs" => cold_runs = value.or_else(|| args.next()),
                "--cold-hold" => cold_hold = value.or_else(|| args.next()),
                "--cold-mode" => cold_mode = value.or_else(|| args.next()),
                f if f.starts_with('-') => {}
                _ => sections.push(arg),
            }
        }
        let mut cold_start = ColdStartPlan::default();
        if let Some(list) = cold_n {
            cold_start.members = list
                .split(',')
                .map(|n| match n.trim().parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => panic!("--cold-n {list}: give member counts above 0, comma-separated"),
                })
                .collect();
        }
        if let Some(runs) = cold_runs {
            cold_start.runs = match runs.trim().parse::<usize>() {
                Ok(r) if r > 0 => r,
                _ => panic!("--cold-runs {runs}: give a number of runs above 0"),
            };
        }
        if let Some(ms) = cold_hold {
            cold_start.hold = match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => panic!("--cold-hold {ms}: give the hold in milliseconds, above 0"),
            };
        }
        if let Some(mode) = cold_mode {
            cold_start.modes = match mode.trim() {
                "watch" => vec![true],
                "poll" => vec![false],
                "both" => vec![true, false],
                _ => panic!("--cold-mode {mode}: give watch, poll or both"),
            };
        }
        Self {
            sections,
            cold_start,
        }
    }

    fn wanted(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

fn main() {
    let args = Args::parse();
    let wanted = |section: &str| args.wanted(section);
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Ok(mode) = std::env::var("LEASEHOLD_BENCH_ELECTORS") {
        let kubeconfig = PathBuf::from(std::env::var_os("LEASEHOLD_BENCH_KUBECONFIG").unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(electors_child(&transport(&kubeconfig), mode == "watch"));
        return;
    }
    let dir = std::env::temp_dir().join(format!("leasehold-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = SimProcess::start(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let shared = sim.transport();
        let per_elector = if wanted("4") {
            memory_per_elector(&sim)
        } else {
            String::new()
        };
        if wanted("1") {
            requests_per_minute(&shared).await;
        }
        if wanted("2") {
            failover(&shared).await;
        }
        if wanted("3") {
            cold_start(&shared, &args.cold_start).await;
        }
        if wanted("3b") {
            delegation(&shared, DELEGATION_MEMBERS).await;
        }
        if wanted("3c") {
            fan_out(&shared).await;
        }
        if wanted("4") {
            memory(&sim).await;
            println!("{per_elector}");
        }
    });
    if wanted("5") {
        sizes();
    }
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}
