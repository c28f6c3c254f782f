//! Lease pools as a handle: at most `size` holders of `prefix-0 … prefix-(size−1)` at once.
//! [`SlotPool::acquire_slot`] waits for a slot and returns a guard that releases it on drop (a
//! cold start: build your cache, then let the next member in); a guard kept for the life of
//! the process is a delegation slot, whose work runs under the same term rules as an election.

use crate::campaign::{Campaign, Publisher};
use crate::error::BuildError;
use crate::health::Health;
use crate::identity::{identity, seed};
use crate::leadership::Leadership;
use crate::term::Term;
use leasehold_core::{Duration, Pool, PoolConfig, SlotEvent, Timing};
use leasehold_runtime::{Clock, Transport};
use std::future::Future;

/// The most slots a pool handle takes (Sysdig uses 10 cold-start slots).
///
/// ```
/// let builder = leasehold_client::SlotPoolBuilder::new("cold-start", leasehold_client::MAX_SLOTS);
/// ```
pub const MAX_SLOTS: usize = 64;

/// Settings of a [`SlotPool`]; checked by [`start`](Self::start), before any request.
///
/// ```
/// use leasehold_client::SlotPoolBuilder;
///
/// let builder = SlotPoolBuilder::new("cold-start", 10).identity("node-1");
/// ```
#[derive(Clone, Debug)]
pub struct SlotPoolBuilder {
    prefix: String,
    size: usize,
    identity: Option<String>,
    timing: Timing,
    grace: Option<Duration>,
    watch: bool,
    clock: Clock,
}

impl SlotPoolBuilder {
    /// A pool of `size` slots named `prefix-0 … prefix-(size−1)`, with client-go's timing, an
    /// identity unique to this process and watches of the slots.
    ///
    /// ```
    /// let builder = leasehold_client::SlotPoolBuilder::new("delegation", 2);
    /// ```
    pub fn new(prefix: impl Into<String>, size: usize) -> Self {
        Self {
            prefix: prefix.into(),
            size,
            identity: None,
            timing: Timing::DEFAULT,
            grace: None,
            watch: true,
            clock: Clock::default(),
        }
    }

    /// This member's `holderIdentity` (Sysdig: the node name).
    ///
    /// ```
    /// let builder = leasehold_client::SlotPoolBuilder::new("cold-start", 10).identity("node-1");
    /// ```
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Lease duration, renew deadline and retry period of every slot.
    ///
    /// ```
    /// use leasehold_client::{SlotPoolBuilder, Timing};
    /// let builder = SlotPoolBuilder::new("cold-start", 10).timing(Timing::DEFAULT);
    /// ```
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// How long before a held slot's deadline its work is asked to stop (see
    /// [`crate::ElectionBuilder::grace`]).
    ///
    /// ```
    /// use leasehold_client::{Duration, SlotPoolBuilder};
    /// let builder = SlotPoolBuilder::new("delegation", 2).grace(Duration::from_secs(1));
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Polls the slots instead of watching them.
    ///
    /// ```
    /// let builder = leasehold_client::SlotPoolBuilder::new("cold-start", 10).poll();
    /// ```
    pub fn poll(mut self) -> Self {
        self.watch = false;
        self
    }

    /// The clock the pool reads (see [`crate::ElectionBuilder::clock`]).
    ///
    /// ```
    /// use leasehold_client::{Clock, SlotPoolBuilder};
    /// let builder = SlotPoolBuilder::new("cold-start", 10).clock(Clock::tokio());
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Starts contending for a slot over `transport`, on the current tokio runtime.
    ///
    /// ```no_run
    /// # async fn f(transport: leasehold_adapter_http::HttpTransport) -> Result<(), leasehold_client::BuildError> {
    /// let pool = leasehold_client::SlotPoolBuilder::new("cold-start", 10).start(transport)?;
    /// # Ok(()) }
    /// ```
    pub fn start<T: Transport>(self, transport: T) -> Result<SlotPool, BuildError> {
        let grace = self
            .timing
            .child_grace(self.grace)
            .map_err(BuildError::Grace)?;
        let pool = Pool::<MAX_SLOTS>::new(
            PoolConfig {
                prefix: &self.prefix,
                size: self.size,
                identity: identity(self.identity.as_deref())?,
                timing: self.timing,
                watch: self.watch,
            },
            seed(),
        )
        .map_err(BuildError::Pool)?;
        let clock = self.clock;
        let campaign = Campaign::spawn(
            pool,
            transport,
            clock,
            grace,
            Health::new(self.timing, &self.prefix),
            move |pool: &Pool<MAX_SLOTS>, event: SlotEvent, _, publisher: &Publisher| {
                publish(publisher, pool, event, clock);
            },
        );
        Ok(SlotPool { campaign })
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
    /// let started = leasehold_client::SlotPoolBuilder::new("cold-start", 10).start_http(&config)?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "http")]
    pub fn start_http(
        self,
        config: &leasehold_adapter_http::HttpConfig,
    ) -> Result<SlotPool, BuildError> {
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

    /// Starts contending through a kube-rs client, on leases in `namespace`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = kube::Client::try_default().await?;
    /// let pool = leasehold_client::SlotPoolBuilder::new("cold-start", 10)
    ///     .start_kube(client, "sysdig-agent")?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "kube")]
    pub fn start_kube(self, client: kube::Client, namespace: &str) -> Result<SlotPool, BuildError> {
        let timeout = self.timing.request_timeout();
        self.start(crate::kube_transport(client, namespace, timeout))
    }
}

/// A member contending for a slot of a pool.
#[derive(Debug)]
pub struct SlotPool {
    campaign: Campaign,
}

impl SlotPool {
    /// Waits until this member holds a slot, and returns it; `None` if the pool was closed
    /// first. Dropping the guard releases the slot.
    ///
    /// ```no_run
    /// # async fn f(pool: leasehold_client::SlotPool) {
    /// if let Some(slot) = pool.acquire_slot().await {
    ///     // Build the cache while at most `size` members do the same...
    ///     slot.release().await; // ...then let the next member in.
    /// }
    /// # }
    /// ```
    pub async fn acquire_slot(self) -> Option<SlotGuard> {
        let epoch = self.campaign.leading().await?;
        Some(SlotGuard {
            slot: self.campaign.slot().unwrap_or(0),
            epoch,
            campaign: self.campaign,
        })
    }

    /// Gives up contending (and a slot, if one was taken meanwhile).
    ///
    /// ```no_run
    /// # async fn f(pool: leasehold_client::SlotPool) {
    /// pool.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(self) {
        self.campaign.shutdown().await;
    }
}

/// A held slot. Dropping it releases the slot without waiting; [`release`](Self::release)
/// waits until the release is written.
#[derive(Debug)]
pub struct SlotGuard {
    slot: u16,
    epoch: u32,
    campaign: Campaign,
}

impl SlotGuard {
    /// The slot's number: the lease is `prefix-{slot}`.
    ///
    /// ```no_run
    /// # fn f(slot: &leasehold_client::SlotGuard) {
    /// println!("holding cold-start-{}", slot.slot());
    /// # }
    /// ```
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// `leaseTransitions` of the term in which the slot was taken.
    ///
    /// ```no_run
    /// # fn f(slot: &leasehold_client::SlotGuard) {
    /// println!("in term {}", slot.epoch());
    /// # }
    /// ```
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Whether the slot is still held now (a partitioned member loses it at its deadline).
    ///
    /// ```no_run
    /// # fn f(slot: &leasehold_client::SlotGuard) {
    /// assert!(slot.is_held());
    /// # }
    /// ```
    pub fn is_held(&self) -> bool {
        self.campaign.is_leader()
    }

    /// Runs `work` while the slot is held, under the same term rules as an election's work
    /// ([`crate::Election::run_in_one_term`]): `Some` with its output if it returned in time.
    ///
    /// ```no_run
    /// # async fn f(slot: leasehold_client::SlotGuard) {
    /// let done = slot
    ///     .run_while_held(|term| async move {
    ///         tokio::select! {
    ///             () = term.cancelled() => false,
    ///             () = std::future::pending::<()>() => true,
    ///         }
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn run_while_held<T, F, Fut>(&self, work: F) -> Option<T>
    where
        F: FnOnce(Term) -> Fut,
        Fut: Future<Output = T>,
    {
        self.campaign.run_in_one_term(work).await
    }

    /// Releases the slot and waits until the release is over.
    ///
    /// ```no_run
    /// # async fn f(slot: leasehold_client::SlotGuard) {
    /// slot.release().await;
    /// # }
    /// ```
    pub async fn release(self) {
        self.campaign.shutdown().await;
    }
}

/// The leadership a slot event leaves the member in (a pool has many holders: a member not
/// holding a slot follows no one in particular).
fn publish(publisher: &Publisher, pool: &Pool<MAX_SLOTS>, event: SlotEvent, clock: Clock) {
    publisher.lease_event(
        event.event,
        event.slot,
        pool.epoch(),
        clock,
        Leadership::Unknown,
    );
}
