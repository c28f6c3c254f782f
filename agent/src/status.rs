//! What this agent knows about its lease, shared by the log lines, the status file, the HTTP
//! endpoints and the metrics, so all four always agree.
//!
//! A report of leadership can be read after it stopped being true (the agent paused, killed, or
//! cut off): each one carries `valid_until`, the wall-clock instant at which this agent's
//! leadership ends unless a renew extends it, so a reader can tell a stale `leader=true`.

use crate::metrics::Metrics;
use leasehold_core::{ApiError, Lease, Stats, Verb};
use leasehold_runtime::{Cause, RequestError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// The leadership view, as `/leader` serves it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct View {
    /// Whether this agent leads (holds a slot) now.
    pub leader: bool,
    /// The holder as last seen; `null` when free or unknown.
    pub holder: Option<String>,
    /// This agent's identity.
    pub identity: String,
    /// `leaseTransitions` of the lease as last seen: the fencing epoch.
    pub epoch: Option<u32>,
    /// Wall-clock time (RFC 3339) of the last leadership change seen.
    pub since: Option<String>,
    /// The lease: its name, or the slot held in a pool (the prefix while none is held).
    pub lease: String,
    /// While leading: wall-clock time (RFC 3339, whole seconds, rounded down) at which this
    /// agent's leadership ends unless a renew extends it. Past it, `leader` is no longer true.
    pub valid_until: Option<String>,
    /// While leading: seconds from the time of this report to `valid_until`.
    pub remaining_seconds: Option<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    view: View,
    /// The last successful renew by this agent, for `/healthz`.
    renewed_at: Option<Instant>,
    /// While leading: when leadership ends without a renew, on this process's monotonic clock.
    valid_until: Option<Instant>,
    /// The machine's slow-path reads already counted in the metric.
    slow_path_reads: u64,
    /// Whether the API server has answered once.
    ready: bool,
    /// Lease requests answered with success, so a refusal can be told from a passing one.
    successes: u64,
    /// Whether the current wait for a pool slot has been told to be behind every slot held.
    full_wait_told: bool,
}

/// The state shared by all outputs.
pub struct Shared {
    inner: Mutex<Inner>,
    status_file: Option<PathBuf>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The metric label: the lease name or pool prefix.
    name: String,
    /// `/healthz` fails when leading without a renew for this long (client-go: lease duration
    /// plus the watchdog's 20 s timeout).
    pub healthz_after: Duration,
}

impl Shared {
    /// Shared state for `identity` on `name`, writing `status_file` if given.
    pub fn new(
        name: &str,
        identity: &str,
        status_file: Option<PathBuf>,
        healthz_after: Duration,
    ) -> Self {
        let shared = Self {
            inner: Mutex::new(Inner {
                view: View {
                    identity: identity.into(),
                    lease: name.into(),
                    ..View::default()
                },
                ..Inner::default()
            }),
            status_file,
            metrics: Metrics::default(),
            name: name.into(),
            healthz_after,
        };
        shared
            .metrics
            .master_status
            .get_or_create(&Metrics::name(name))
            .set(0);
        // Present from the start, so rate() and alerts see a zero rather than nothing.
        shared
            .metrics
            .slowpath
            .get_or_create(&Metrics::name(name))
            .inc_by(0);
        shared
            .metrics
            .transitions
            .get_or_create(&Metrics::name(name))
            .inc_by(0);
        shared
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current view, with `remaining_seconds` as of now.
    pub fn view(&self) -> View {
        let inner = self.lock();
        let mut view = inner.view.clone();
        view.remaining_seconds = inner.valid_until.map(remaining_seconds);
        view
    }

    /// Whether the API server has answered once (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// `/healthz`: an error when this agent leads but has not renewed for `healthz_after`.
    pub fn health(&self) -> Result<(), String> {
        let inner = self.lock();
        match inner.renewed_at {
            Some(at) if inner.view.leader && at.elapsed() > self.healthz_after => Err(format!(
                "leading {} but not renewed for {:.1}s (limit {:.1}s)",
                inner.view.lease,
                at.elapsed().as_secs_f64(),
                self.healthz_after.as_secs_f64()
            )),
            _ => Ok(()),
        }
    }

    /// This agent now leads `lease` with `epoch`, after contending for it for `contended` (the
    /// core's measure, from its first attempt to take the lease; `None` for a lease no one else
    /// contends for, such as a node's heartbeat).
    pub fn became_leader(&self, lease: &str, epoch: u32, contended: Option<Duration>) {
        let mut inner = self.lock();
        inner.renewed_at = Some(Instant::now());
        inner.full_wait_told = false;
        if let Some(contended) = contended {
            self.metrics
                .takeover
                .get_or_create(&Metrics::name(&self.name))
                .observe(contended.as_secs_f64());
        }
        let identity = inner.view.identity.clone();
        self.change(&mut inner, |v| {
            v.leader = true;
            v.holder = Some(identity);
            v.epoch = Some(epoch);
            v.lease = lease.into();
        });
    }

    /// Whether a pool member that found every slot held should say so at INFO: once per wait
    /// (until it next holds a slot). In a cold start the slots fill again after every
    /// hand-over, so the later times are only DEBUG.
    pub fn first_full_wait(&self) -> bool {
        let mut inner = self.lock();
        if inner.view.leader || inner.full_wait_told {
            return false;
        }
        inner.full_wait_told = true;
        true
    }

    /// A renew succeeded: this agent leads for `remaining` more (the core's deadline less now).
    /// The status file is rewritten with the new `valid_until`.
    pub fn renewed(&self, remaining: Duration) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.renewed_at = Some(now);
        inner.valid_until = Some(now + remaining);
        let wall = SystemTime::now() + remaining;
        self.change(&mut inner, |v| {
            v.valid_until = Some(rfc3339_seconds(wall));
            v.remaining_seconds = Some(round_millis(remaining.as_secs_f64()));
        });
    }

    /// This agent stopped leading.
    pub fn lost_leadership(&self) {
        let mut inner = self.lock();
        inner.valid_until = None;
        let name = self.name.clone();
        self.change(&mut inner, |v| {
            v.leader = false;
            v.valid_until = None;
            v.remaining_seconds = None;
            if v.holder.as_deref() == Some(v.identity.as_str()) {
                v.holder = None;
            }
            v.lease = name;
        });
    }

    /// The lease names a new holder (`None`: free).
    pub fn holder_changed(&self, holder: Option<String>, epoch: Option<u32>) {
        self.metrics
            .transitions
            .get_or_create(&Metrics::name(&self.name))
            .inc();
        let mut inner = self.lock();
        self.change(&mut inner, |v| {
            v.holder = holder;
            if epoch.is_some() {
                v.epoch = epoch;
            }
        });
    }

    /// What the machine counted ([`Machine::stats`](leasehold_core::Machine::stats)): the
    /// metrics client-go derives from its own state come from the core's counts, never from
    /// the traffic.
    pub fn observe(&self, stats: &Stats) {
        let mut inner = self.lock();
        let new = stats.slow_path_reads.saturating_sub(inner.slow_path_reads);
        inner.slow_path_reads = stats.slow_path_reads;
        self.metrics
            .slowpath
            .get_or_create(&Metrics::name(&self.name))
            .inc_by(new);
    }

    /// The answer to a request.
    pub fn answered(&self, verb: Verb, response: Result<&Lease, &RequestError>) {
        self.count(verb, response.map(|_| ()));
        let mut inner = self.lock();
        if response.is_ok() || response.is_err_and(|e| e.kind == ApiError::NotFound) {
            inner.ready = true;
        }
        if response.is_ok() {
            inner.successes += 1;
        }
        if let Ok(lease) = response {
            self.metrics
                .epoch
                .get_or_create(&Metrics::name(&self.name))
                .set(i64::from(lease.record.lease_transitions.unwrap_or(0)));
        }
    }

    /// How many lease requests the API server has answered with success so far.
    pub fn successes(&self) -> u64 {
        self.lock().successes
    }

    /// A request whose answer carries no lease of its own (a list, a delete); one the server
    /// answered with success makes the agent ready.
    pub fn count(&self, verb: Verb, answer: Result<(), &RequestError>) {
        self.count_code(verb, code(verb, answer));
        if answer.is_ok() {
            self.lock().ready = true;
        }
    }

    /// A pool's stream delivered the state of its slots: the API server answered.
    pub fn synced(&self) {
        self.lock().ready = true;
    }

    /// A watch stream opened (its events are not requests).
    pub fn watch_opened(&self) {
        self.count_code(Verb::Watch, "opened".into());
    }

    fn count_code(&self, verb: Verb, code: String) {
        self.metrics
            .api_requests
            .get_or_create(&crate::metrics::RequestLabels {
                verb: verb.as_str().into(),
                code,
            })
            .inc();
    }

    fn change(&self, inner: &mut Inner, f: impl FnOnce(&mut View)) {
        let before = inner.view.clone();
        f(&mut inner.view);
        if inner.view.leader != before.leader || inner.view.holder != before.holder {
            inner.view.since = Some(now_rfc3339());
        }
        if inner.view == before {
            return;
        }
        self.metrics
            .master_status
            .get_or_create(&Metrics::name(&self.name))
            .set(i64::from(inner.view.leader));
        if let Some(path) = &self.status_file {
            if let Err(e) = write_status_file(path, &inner.view) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the status file");
            }
        }
    }

    /// Writes the status file as it is now (at start, before anything is known).
    pub fn write_initial(&self) -> std::io::Result<()> {
        match &self.status_file {
            Some(path) => write_status_file(path, &self.lock().view),
            None => Ok(()),
        }
    }
}

/// The `code` label of a request, as client-go's `rest_client_requests_total` has it: the HTTP
/// status the server answered, or what happened instead.
fn code(verb: Verb, answer: Result<(), &RequestError>) -> String {
    match answer {
        Ok(()) if verb == Verb::Create => "201".into(),
        Ok(()) => "200".into(),
        Err(RequestError {
            status: Some(status),
            ..
        }) => status.code.to_string(),
        Err(e) => match e.cause {
            Some(Cause::Timeout { .. }) => "timeout".into(),
            Some(Cause::Malformed(_)) => "malformed".into(),
            // The server answered the update by creating the lease anew.
            Some(Cause::Recreated) => "201".into(),
            Some(Cause::NotRead) => "unsent".into(),
            _ => "<error>".into(),
        },
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `at` in RFC 3339, rounded down to the second: a reader comparing it with `date +%s` then
/// believes the leadership ends a little early, never late.
fn rfc3339_seconds(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn remaining_seconds(until: Instant) -> f64 {
    round_millis(
        until
            .saturating_duration_since(Instant::now())
            .as_secs_f64(),
    )
}

fn round_millis(seconds: f64) -> f64 {
    (seconds * 1000.0).floor() / 1000.0
}

/// The status file: `key=value` lines, replaced atomically (a reader never sees half a file).
/// Values are escaped so each key is exactly one line, whatever a holder's identity contains.
fn render(view: &View) -> String {
    format!(
        "leader={}\nholder={}\nidentity={}\nepoch={}\nlease={}\nsince={}\nvalid_until={}\n\
         remaining_seconds={}\n",
        view.leader,
        escape(view.holder.as_deref().unwrap_or("")),
        escape(&view.identity),
        view.epoch.map(|e| e.to_string()).unwrap_or_default(),
        escape(&view.lease),
        view.since.as_deref().unwrap_or(""),
        view.valid_until.as_deref().unwrap_or(""),
        view.remaining_seconds
            .map(|s| format!("{s:.3}"))
            .unwrap_or_default(),
    )
}

/// C-style escapes for a status-file value: `\\` for a backslash, `\n`, `\r` and `\t`, and
/// `\xHH` for each UTF-8 byte of any other control character. Everything else is kept as is.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut bytes = [0; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn write_status_file(path: &std::path::Path, view: &View) -> std::io::Result<()> {
    // Readable by whoever monitors the agent, as the umask allows.
    crate::atomic_write::write(path, render(view), 0o666)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_path_and_takeover_metrics_come_from_the_core() {
        let shared = Shared::new("controller", "pod-a", None, Duration::from_secs(35));
        let mut stats = Stats::default();
        stats.slow_path_reads = 2;
        shared.observe(&stats);
        shared.observe(&stats);
        stats.slow_path_reads = 3;
        shared.observe(&stats);
        shared.became_leader("controller", 1, Some(Duration::from_millis(40)));
        shared.became_leader("controller", 2, None);
        let text = shared.metrics.encode();
        assert!(
            text.contains("leader_election_slowpath_total{name=\"controller\"} 3\n"),
            "each read counted once: {text}"
        );
        assert!(
            text.contains("leasehold_takeover_seconds_sum{name=\"controller\"} 0.04\n")
                && text.contains("leasehold_takeover_seconds_count{name=\"controller\"} 1\n"),
            "the core's contention, once per contended term: {text}"
        );
    }

    #[test]
    fn the_status_file_follows_leadership() {
        let dir = std::env::temp_dir().join(format!("leasehold-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status");
        let shared = Shared::new(
            "controller",
            "pod-a",
            Some(path.clone()),
            Duration::from_secs(35),
        );
        shared.write_initial().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("leader=false\nholder=\nidentity=pod-a\n"),
            "{text}"
        );
        shared.became_leader("controller", 4, None);
        shared.renewed(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("leader=true\nholder=pod-a\n"), "{text}");
        assert!(
            text.contains("epoch=4\nlease=controller\nsince=20"),
            "{text}"
        );
        assert!(text.contains("\nremaining_seconds=10.000\n"), "{text}");
        let valid_until = text
            .lines()
            .find_map(|l| l.strip_prefix("valid_until="))
            .unwrap();
        let parsed = time::OffsetDateTime::parse(
            valid_until,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let ahead = parsed - time::OffsetDateTime::now_utc();
        assert!(
            ahead > time::Duration::seconds(8) && ahead <= time::Duration::seconds(10),
            "{valid_until}: {ahead}"
        );
        shared.renewed(Duration::from_secs(9));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\nremaining_seconds=9.000\n"),
            "rewritten at each renew: {text}"
        );
        shared.lost_leadership();
        shared.holder_changed(Some("pod-b".into()), Some(5));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("leader=false\nholder=pod-b\n") && text.contains("epoch=5"),
            "{text}"
        );
        assert!(
            text.contains("\nvalid_until=\nremaining_seconds=\n"),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_holder_identity_cannot_forge_status_lines() {
        let view = View {
            holder: Some("evil\nleader=true\r\t\\\u{7}\u{85}é".into()),
            identity: "me".into(),
            ..View::default()
        };
        let text = render(&view);
        assert_eq!(text.lines().count(), 8, "{text}");
        assert!(
            text.contains("holder=evil\\nleader=true\\r\\t\\\\\\x07\\xc2\\x85é\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("leader=")).count(), 1);
    }

    #[test]
    fn the_endpoint_counts_the_remaining_time_as_of_the_request() {
        let shared = Shared::new("controller", "pod-a", None, Duration::from_secs(35));
        assert_eq!(shared.view().remaining_seconds, None);
        shared.became_leader("controller", 1, None);
        shared.renewed(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(30));
        let left = shared.view().remaining_seconds.unwrap();
        assert!(left < 9.98 && left > 9.0, "{left}");
        assert!(shared.view().valid_until.unwrap().ends_with('Z'));
    }

    #[test]
    fn healthz_fails_only_when_leading_without_renewing() {
        let shared = Shared::new("controller", "pod-a", None, Duration::from_millis(20));
        assert!(shared.health().is_ok(), "a follower is healthy");
        shared.became_leader("controller", 1, None);
        assert!(shared.health().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        let e = shared.health().unwrap_err();
        assert!(e.contains("not renewed"), "{e}");
        shared.lost_leadership();
        assert!(shared.health().is_ok(), "stepping down ends the failure");
    }
}
