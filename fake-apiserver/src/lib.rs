//! A simulated Kubernetes API server for `coordination.k8s.io/v1` Leases, over HTTPS (or plain
//! HTTP) on loopback, started in-process in milliseconds.
//!
//! **This is a test and demo component, not an API server.** It serves the Lease resource, the
//! discovery documents, namespaces and `/version` well enough for kube-rs, kubectl and
//! leasehold's adapters, and answers like a real API server (status codes, `Status` bodies,
//! messages: see `../shared/apiserver-fixtures/`). Real deployments talk to Kubernetes.
//!
//! It adds what a real cluster cannot give a test: fault injection (latency, 5xx, 429 with
//! `Retry-After`, dropped connections, cut watches, a pause, a restart that keeps or loses data)
//! and request counters, from Rust or over the admin endpoint `/_sim/…`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let sim = leasehold_fake_apiserver::Sim::start(leasehold_fake_apiserver::SimConfig::default()).await?;
//! std::fs::write("kubeconfig", sim.kubeconfig("admin", "default").unwrap())?;
//! // kubectl --kubeconfig kubeconfig get leases -A
//! sim.stop().await;
//! # Ok(()) }
//! ```

mod auth;
mod faults;
mod http;
mod selector;
mod status;
mod store;
mod tls;
mod validate;

pub use auth::{Rule, User};
pub use faults::{CounterSnapshot, Faults};
pub use status::ApiStatus;
pub use validate::parse_micro_time;

use crate::http::Shared;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to run the sim.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// HTTPS with a generated CA (true) or plain HTTP (for fuzzing and raw tests).
    pub tls: bool,
    /// Who may call it; the first admin user is the kubeconfig default.
    pub users: Vec<User>,
    /// Namespaces that exist.
    pub namespaces: Vec<String>,
    /// Changes kept for watches to resume from; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The longest a watch stays open (a client's `timeoutSeconds` may shorten it).
    pub max_watch_timeout: Duration,
    /// Whether a watch may stream the list it starts from (`sendInitialEvents=true`).
    pub watch_list: WatchList,
    /// Delete leases whose `renewTime + leaseDurationSeconds` is older than this. Off by default:
    /// the real API server garbage-collects only its own identity leases.
    pub gc_expired_after: Option<Duration>,
    /// Seeds which requests the fault shares hit.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            users: vec![User::admin(
                "admin",
                &format!("admin-{}", uuid::Uuid::new_v4().simple()),
            )],
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(10),
            max_watch_timeout: Duration::from_secs(1800),
            watch_list: WatchList::Streams,
            gc_expired_after: None,
            seed: 0,
        }
    }
}

/// What the server makes of a watch that asks to stream its list (`sendInitialEvents=true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchList {
    /// Streams it, as the API server's `WatchList` feature does (on by default in Kubernetes
    /// 1.32 and since 1.34).
    Streams,
    /// Refuses it with 422, as a server with the feature off does (1.33, and before 1.32).
    Refuses,
    /// Takes it for a plain watch from the current state: what a server (or a proxy) that
    /// drops the options unread would do. Its first bookmark is a plain one.
    Ignores,
}

/// Why the sim could not start.
#[derive(Debug)]
pub enum SimError {
    /// Binding the listener failed.
    Bind(std::io::Error),
    /// Generating the certificates failed.
    Tls(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind(e) => write!(f, "cannot listen: {e}"),
            Self::Tls(e) => write!(f, "cannot generate TLS certificates: {e}"),
        }
    }
}

impl std::error::Error for SimError {}

/// A running sim. Dropping it leaves the server running until the runtime ends; call
/// [`Sim::stop`] to end it.
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let tls = if config.tls {
            Some(tls::Tls::generate().map_err(SimError::Tls)?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(&config.namespaces, config.watch_history)),
            users: config.users.clone(),
            faults: faults::FaultState::new(config.seed),
            counters: faults::Counters::default(),
            user_agents: std::sync::Mutex::default(),
            bookmark_interval: config.bookmark_interval,
            max_watch: config.max_watch_timeout,
            watch_list: config.watch_list,
        });
        let (stop, stopped) = watch::channel(false);
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            acceptor,
            stopped.clone(),
        ))];
        if let Some(after) = config.gc_expired_after {
            tasks.push(tokio::spawn(gc_loop(shared.clone(), after, stopped)));
        }
        Ok(Self {
            shared,
            addr,
            ca_pem: tls.map(|t| t.ca_pem),
            stop,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or `http://…`).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) clients must trust; `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The bearer token of `user`.
    pub fn token(&self, user: &str) -> Option<&str> {
        self.shared
            .users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.token.as_str())
    }

    /// A kubeconfig for `user` with `namespace` as its default, which kubectl and both adapters
    /// accept.
    pub fn kubeconfig(&self, user: &str, namespace: &str) -> Option<String> {
        let token = self.token(user)?;
        Some(tls::kubeconfig(
            &self.url(),
            self.ca_pem(),
            user,
            token,
            namespace,
        ))
    }

    /// Every `User-Agent` the API requests so far carried.
    pub fn user_agents(&self) -> Vec<String> {
        self.shared
            .user_agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.set(faults);
    }

    /// Stops answering API requests until [`resume`](Self::resume) (they wait, then proceed).
    pub fn pause(&self) {
        self.shared.faults.paused.send_replace(true);
    }

    /// Answers again.
    pub fn resume(&self) {
        self.shared.faults.paused.send_replace(false);
    }

    /// Ends every open watch stream (clients see the stream close).
    pub fn cut_watches(&self) {
        self.shared.faults.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Closes every connection, as a restart would; with `keep_data: false` every lease is
    /// forgotten too (resourceVersions keep increasing; old ones get 410 on watch).
    pub fn restart(&self, keep_data: bool) {
        restart(&self.shared, keep_data);
    }

    /// Requests counted so far.
    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// Starts counting from zero.
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    /// The stored lease, as `GET` would return it.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<serde_json::Value> {
        self.shared.store().get(namespace, name).ok()
    }

    /// Stores a lease as a POST would (validated, with a new resourceVersion), without HTTP:
    /// for seeding tests and demos.
    pub fn seed_lease(
        &self,
        namespace: &str,
        object: serde_json::Value,
    ) -> Result<serde_json::Value, ApiStatus> {
        let serde_json::Value::Object(mut object) = object else {
            return Err(status::bad_request("a lease is a JSON object".into()));
        };
        validate::check_types(&mut object, true)?;
        self.shared.store().create(namespace, object)
    }

    /// Creates a namespace.
    pub fn add_namespace(&self, namespace: &str) {
        self.shared.store().add_namespace(namespace);
    }

    /// Stops serving and closes every connection.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        self.shared.faults.conn_epoch.send_modify(|e| *e += 1);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub(crate) fn restart(shared: &Shared, keep_data: bool) {
    if !keep_data {
        shared.store().wipe();
    }
    shared.faults.conn_epoch.send_modify(|e| *e += 1);
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                connection(stream, shared).await;
                            }
                        }
                        None => connection(tcp, shared).await,
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

/// Serves one connection until it ends or a restart closes it.
async fn connection<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: IO,
    shared: Arc<Shared>,
) {
    let mut restarted = shared.faults.conn_epoch.subscribe();
    restarted.borrow_and_update();
    let service = hyper::service::service_fn(move |req| http::serve(shared.clone(), req));
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = restarted.changed() => {}
    }
}

/// Deletes leases expired for longer than `after`, every second.
async fn gc_loop(shared: Arc<Shared>, after: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = time::OffsetDateTime::now_utc();
        let mut store = shared.store();
        let (leases, _, _) = store.list(None, &selector::Selector::default(), None, None);
        for lease in leases {
            let spec = &lease["spec"];
            let (Some(renewed), Some(duration)) = (
                spec["renewTime"]
                    .as_str()
                    .and_then(|t| parse_micro_time(t).ok()),
                spec["leaseDurationSeconds"].as_i64(),
            ) else {
                continue;
            };
            if renewed + time::Duration::seconds(duration) + after < now {
                let (ns, name) = (
                    lease["metadata"]["namespace"].as_str().unwrap_or(""),
                    lease["metadata"]["name"].as_str().unwrap_or(""),
                );
                let _ = store.delete(ns, name, None);
            }
        }
    }
}
