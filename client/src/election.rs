//! Leader election as a handle: it campaigns in the background, publishes [`Leadership`], runs
//! work only while leading, and releases the lease on [`Election::shutdown`] or drop.

use crate::campaign::{Campaign, Publisher};
use crate::error::BuildError;
use crate::health::{Health, Unhealthy};
use crate::identity::{identity, seed};
use crate::leadership::{Leadership, following};
use crate::term::Term;
use leasehold_core::{Duration, Elector, ElectorConfig, Event, LeaseName, Timing};
use leasehold_runtime::{Clock, RequestError, Transport};
use std::future::Future;
use tokio::sync::watch;

/// Settings of an [`Election`]: the lease, who this candidate is, the timing, and how to learn
/// of changes. Every setting is checked by [`start`](Self::start), before any request.
///
/// ```
/// use leasehold_client::{ElectionBuilder, Timing};
/// use leasehold_core::Duration;
///
/// let builder = ElectionBuilder::new("my-controller")
///     .identity("pod-a")
///     .timing(Timing::new(Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2)).unwrap())
///     .grace(Duration::from_secs(2));
/// ```
#[derive(Clone, Debug)]
pub struct ElectionBuilder {
    lease: String,
    identity: Option<String>,
    timing: Timing,
    grace: Option<Duration>,
    watch: bool,
    clock: Clock,
}

impl ElectionBuilder {
    /// An election on the Lease `lease` (in the transport's namespace), with client-go's
    /// timing (15 s / 10 s / 2 s), an identity unique to this process, a watch of the lease, and
    /// the default grace (see [`grace`](Self::grace)).
    ///
    /// ```
    /// let builder = leasehold_client::ElectionBuilder::new("my-controller");
    /// ```
    pub fn new(lease: impl Into<String>) -> Self {
        Self {
            lease: lease.into(),
            identity: None,
            timing: Timing::DEFAULT,
            grace: None,
            watch: true,
            clock: Clock::default(),
        }
    }

    /// This candidate's `holderIdentity`; unique among candidates. The default,
    /// [`unique_identity`](crate::unique_identity), is new at every start.
    ///
    /// ```
    /// let builder = leasehold_client::ElectionBuilder::new("my-controller").identity("pod-a");
    /// ```
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Lease duration, renew deadline and retry period, validated by the core as client-go does.
    ///
    /// ```
    /// use leasehold_client::{Duration, ElectionBuilder, Timing};
    /// let timing = Timing::new(Duration::from_secs(30), Duration::from_secs(20), Duration::from_secs(4))
    ///     .expect("client-go's rules");
    /// let builder = ElectionBuilder::new("my-controller").timing(timing);
    /// ```
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// How long before a term's deadline its work is asked to stop (by [`Term::cancelled`]);
    /// the work is dropped at the deadline. Default: min(3 s, (renew − retry) / 2). It must be
    /// above zero and below renew − retry.
    ///
    /// ```
    /// use leasehold_client::{Duration, ElectionBuilder};
    /// let builder = ElectionBuilder::new("my-controller").grace(Duration::from_secs(1));
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Polls the lease every retry period (with client-go's jitter) instead of watching it,
    /// for API servers or roles that do not allow a watch.
    ///
    /// ```
    /// let builder = leasehold_client::ElectionBuilder::new("my-controller").poll();
    /// ```
    pub fn poll(mut self) -> Self {
        self.watch = false;
        self
    }

    /// The clock the election reads: `CLOCK_BOOTTIME` by default. [`Clock::tokio`] runs it on
    /// tokio's clock, so tests can use paused time.
    ///
    /// ```
    /// use leasehold_client::{Clock, ElectionBuilder};
    /// let builder = ElectionBuilder::new("my-controller").clock(Clock::tokio());
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Starts campaigning over `transport`, on the current tokio runtime.
    ///
    /// ```no_run
    /// # async fn f(transport: leasehold_adapter_http::HttpTransport) -> Result<(), leasehold_client::BuildError> {
    /// let election = leasehold_client::ElectionBuilder::new("my-controller").start(transport)?;
    /// # Ok(()) }
    /// ```
    pub fn start<T: Transport>(self, transport: T) -> Result<Election, BuildError> {
        self.start_observed(
            transport,
            |_: &Elector, _: &Event, _: Option<&RequestError>| {},
        )
    }

    /// [`start`](Self::start), handing every event of the core's elector to `observer` as it
    /// happens, with the elector for its getters and, for the events of a failed request, that
    /// request's error in the API server's words: for programs that log or report each event
    /// themselves (the `leasehold` agent runs its child command this way).
    ///
    /// ```no_run
    /// # async fn f(transport: leasehold_adapter_http::HttpTransport) -> Result<(), leasehold_client::BuildError> {
    /// use leasehold_core::Event;
    /// let election = leasehold_client::ElectionBuilder::new("my-controller")
    ///     .start_observed(transport, |_, event, failure| {
    ///         if let Event::RequestFailed { .. } = event {
    ///             eprintln!("{}", failure.map_or(String::new(), |f| f.to_string()));
    ///         }
    ///     })?;
    /// # Ok(()) }
    /// ```
    pub fn start_observed<T: Transport>(
        self,
        transport: T,
        mut observer: impl FnMut(&Elector, &Event, Option<&RequestError>) + Send + 'static,
    ) -> Result<Election, BuildError> {
        let clock = self.clock;
        let grace = self
            .timing
            .child_grace(self.grace)
            .map_err(BuildError::Grace)?;
        let elector = Elector::new(
            ElectorConfig {
                lease: LeaseName::new(&self.lease).map_err(BuildError::Lease)?,
                identity: identity(self.identity.as_deref())?,
                timing: self.timing,
                watch: self.watch,
            },
            seed(),
        );
        let health = Health::new(self.timing, &self.lease);
        let campaign = Campaign::spawn(
            elector,
            transport,
            self.clock,
            grace,
            health,
            move |elector: &Elector, event, failure, publisher: &Publisher| {
                observer(elector, &event, failure);
                publish(publisher, elector, event, clock);
            },
        );
        Ok(Election { campaign })
    }

    /// Starts over the raw-HTTP transport (reqwest + rustls, no kube-rs), with the request
    /// timeout this timing calls for.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use leasehold_adapter_http::{HttpConfig, kubeconfig};
    /// let cluster = kubeconfig::resolve(None, None)?;
    /// let config = HttpConfig {
    ///     namespace: cluster.namespace.clone().unwrap_or_else(|| "default".into()),
    ///     cluster,
    ///     request_timeout: std::time::Duration::from_secs(5),
    ///     rate_limit: None,
    /// };
    /// let started = leasehold_client::ElectionBuilder::new("my-controller").start_http(&config)?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "http")]
    pub fn start_http(
        self,
        config: &leasehold_adapter_http::HttpConfig,
    ) -> Result<Election, BuildError> {
        let config = leasehold_adapter_http::HttpConfig {
            request_timeout: std::time::Duration::from_micros(
                self.timing.request_timeout().as_micros(),
            ),
            ..config.clone()
        };
        let transport = leasehold_adapter_http::connect(&config)
            .map_err(|e| BuildError::Transport(e.to_string()))?;
        self.start(transport)
    }

    /// Starts campaigning through a kube-rs client, on leases in `namespace`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = kube::Client::try_default().await?;
    /// let election = leasehold_client::ElectionBuilder::new("my-controller")
    ///     .start_kube(client, "default")?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "kube")]
    pub fn start_kube(self, client: kube::Client, namespace: &str) -> Result<Election, BuildError> {
        let timeout = self.timing.request_timeout();
        self.start(crate::kube_transport(client, namespace, timeout))
    }
}

/// A running leader election: one candidate for one Lease, safe beside client-go candidates on
/// the same lease.
///
/// It campaigns in the background from [`ElectionBuilder::start`] until
/// [`shutdown`](Self::shutdown), [`close`](Self::close) or drop, which step down at once and
/// release the lease if it still names this candidate, so another can take over in
/// milliseconds.
#[derive(Debug)]
pub struct Election {
    campaign: Campaign,
}

impl Election {
    /// The leadership as last seen; `changed().await` on it waits for the next change.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// use leasehold_client::Leadership;
    /// let mut leadership = election.leadership();
    /// while leadership.changed().await.is_ok() {
    ///     match &*leadership.borrow() {
    ///         Leadership::Leading { epoch, .. } => println!("leading, epoch {epoch}"),
    ///         Leadership::Following { holder } => println!("following {holder}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.campaign.leadership()
    }

    /// Whether this candidate leads now (its deadline not passed).
    ///
    /// ```no_run
    /// # fn f(election: &leasehold_client::Election) {
    /// if election.is_leader() {
    ///     println!("this replica leads");
    /// }
    /// # }
    /// ```
    pub fn is_leader(&self) -> bool {
        self.campaign.is_leader()
    }

    /// Waits until this candidate leads, and returns the term's epoch; `None` once the
    /// election is closed.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// if let Some(epoch) = election.leading().await {
    ///     println!("leading in term {epoch}");
    /// }
    /// # }
    /// ```
    pub async fn leading(&self) -> Option<u32> {
        self.campaign.leading().await
    }

    /// Runs `work` in every term this candidate leads, one term at a time, until the election is
    /// closed. Each run gets its [`Term`]: its epoch, and a cancellation that fires `grace`
    /// before the term's deadline (or at once on a loss); work still running at the deadline
    /// is dropped. Work that returns early is run again only in the next term.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// election
    ///     .run_while_leading(|term| async move {
    ///         tokio::select! {
    ///             () = term.cancelled() => println!("term {} is over: stopping", term.epoch()),
    ///             () = std::future::pending::<()>() => {}
    ///         }
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn run_while_leading<F, Fut>(&self, work: F)
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.campaign.run_while_leading(work).await;
    }

    /// Runs `work` in the next term only: `Some` with its output if it returned within the
    /// term, `None` if it was dropped at the deadline, or the election closed first.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// let migrated = election.run_in_one_term(|term| async move { term.epoch() }).await;
    /// # }
    /// ```
    pub async fn run_in_one_term<T, F, Fut>(&self, work: F) -> Option<T>
    where
        F: FnOnce(Term) -> Fut,
        Fut: Future<Output = T>,
    {
        self.campaign.run_in_one_term(work).await
    }

    /// client-go's `HealthzAdaptor`: an error when this candidate leads but has not renewed
    /// for the lease duration plus 20 s (its process is stuck), else `Ok`.
    ///
    /// ```no_run
    /// # fn f(election: &leasehold_client::Election) {
    /// let status = if election.healthz().is_ok() { 200 } else { 500 };
    /// # }
    /// ```
    pub fn healthz(&self) -> Result<(), Unhealthy> {
        self.campaign.healthz()
    }

    /// Registers client-go's leader-election metrics (`leader_election_master_status`,
    /// `leader_election_slowpath_total`, labelled with the lease's `name`) on `registry`.
    ///
    /// ```no_run
    /// # fn f(election: &leasehold_client::Election) {
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// election.register_metrics(&mut registry);
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.campaign.register_metrics(registry);
    }

    /// Steps down at once, releases the lease if it still names this candidate, and returns
    /// when that is over (the lease is left to expire if the API server cannot be reached by
    /// the term's deadline). Dropping the handle starts the same release without waiting.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// election.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(self) {
        self.campaign.shutdown().await;
    }

    /// Starts the step-down and release of [`shutdown`](Self::shutdown) without waiting, and
    /// keeps the handle: [`Leadership::Closed`] says when it is over, and
    /// [`rejoin`](Self::rejoin) campaigns again.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// election.close();
    /// let mut leadership = election.leadership();
    /// let _ = leadership.wait_for(|l| *l == leasehold_client::Leadership::Closed).await;
    /// # }
    /// ```
    pub fn close(&self) {
        self.campaign.close();
    }

    /// After a close, campaigns again, once a retry period has passed: the other candidates
    /// get the lease just released first. Ignored while campaigning.
    ///
    /// ```no_run
    /// # async fn f(election: leasehold_client::Election) {
    /// election.close();
    /// election.rejoin();
    /// # }
    /// ```
    pub fn rejoin(&self) {
        self.campaign.rejoin();
    }
}

/// The leadership an event leaves the elector in: the holder it follows, once another leads.
fn publish(publisher: &Publisher, elector: &Elector, event: Event, clock: Clock) {
    match event {
        Event::LeaderChanged { holder } if !elector.is_leader(clock.now()) => {
            publisher.publish(following(Some(&holder), elector.identity()), None);
        }
        event => {
            let after_loss = following(elector.holder(), elector.identity());
            publisher.lease_event(event, 0, elector.epoch(), clock, after_loss);
        }
    }
}
