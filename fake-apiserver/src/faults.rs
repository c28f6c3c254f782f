//! Fault injection and request counters, controllable from tests and over the admin endpoint.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Faults applied to API requests (not to `/_sim/…`, `/healthz`, `/readyz`, `/livez`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Share of requests (per mille) answered 500 without being applied.
    pub error_permille: u32,
    /// Share of requests (per mille) answered 429 with `Retry-After`.
    pub throttle_permille: u32,
    /// The `Retry-After` of those 429s, in seconds.
    pub retry_after_seconds: u64,
    /// Share of requests (per mille) whose connection is closed without an answer.
    pub drop_permille: u32,
}

/// What the injector decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Serve,
    /// Answer 500.
    Error,
    /// Answer 429.
    Throttle(u64),
    /// Close the connection.
    Drop,
}

/// The live fault state.
pub struct FaultState {
    faults: Mutex<Faults>,
    rng: Mutex<SmallRng>,
    /// True while the server answers nothing.
    pub paused: watch::Sender<bool>,
    /// Bumped to end every open watch stream.
    pub watch_epoch: watch::Sender<u64>,
    /// Bumped to close every connection (a restart).
    pub conn_epoch: watch::Sender<u64>,
}

impl FaultState {
    /// No faults; `seed` fixes which requests the shares hit.
    pub fn new(seed: u64) -> Self {
        Self {
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            paused: watch::channel(false).0,
            watch_epoch: watch::channel(0).0,
            conn_epoch: watch::channel(0).0,
        }
    }

    /// The faults in force.
    pub fn get(&self) -> Faults {
        *self.faults.lock().expect("fault lock")
    }

    /// Replaces the faults in force.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().expect("fault lock") = faults;
    }

    /// Waits while paused, then for the latency, then decides the request's fate.
    pub async fn admit(&self) -> Verdict {
        let mut paused = self.paused.subscribe();
        // Err means the sender is gone, i.e. the server is shutting down: serve.
        let _ = paused.wait_for(|p| !*p).await;
        let faults = self.get();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        let mut rng = self.rng.lock().expect("rng lock");
        let mut hit = |permille: u32| permille > 0 && rng.random_range(0..1000) < permille;
        if hit(faults.drop_permille) {
            Verdict::Drop
        } else if hit(faults.error_permille) {
            Verdict::Error
        } else if hit(faults.throttle_permille) {
            Verdict::Throttle(faults.retry_after_seconds)
        } else {
            Verdict::Serve
        }
    }
}

/// Requests answered, by verb, resource and HTTP status.
#[derive(Default)]
pub struct Counters(Mutex<BTreeMap<(String, String, u16), u64>>);

/// A snapshot of [`Counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    /// `(verb, resource, status) → count`.
    pub requests: Vec<((String, String, u16), u64)>,
}

impl CounterSnapshot {
    /// Requests with this verb and resource, whatever their status.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((v, r, _), _)| v == verb && r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests with this verb, resource and status.
    pub fn count_status(&self, verb: &str, resource: &str, status: u16) -> u64 {
        self.requests
            .iter()
            .filter(|((v, r, s), _)| v == verb && r == resource && *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.iter().map(|(_, n)| n).sum()
    }
}

impl Counters {
    /// Counts one request.
    pub fn add(&self, verb: &str, resource: &str, status: u16) {
        *self
            .0
            .lock()
            .expect("counter lock")
            .entry((verb.to_owned(), resource.to_owned(), status))
            .or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self
                .0
                .lock()
                .expect("counter lock")
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        self.0.lock().expect("counter lock").clear();
    }
}
