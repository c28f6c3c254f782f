//! A simulated agent process: one core machine (an elector, a pool member or a heartbeat),
//! driven through the core's one `Machine` trait.

#[cfg(test)]
pub mod broken;

use crate::contract::Subject;
use leasehold_core::{
    Elector, ElectorConfig, Event, Heartbeat, HeartbeatConfig, Holder, Identity, Instant,
    LeaseName, MicroTime, Pool, PoolConfig, PoolError, Request, Response, TextError, Timing,
    TimingError, WatchEvent,
};

/// Most slots a simulated pool may have.
pub const MAX_SLOTS: usize = 4;
/// The elected lease's name.
pub const LEADER_LEASE: &str = "leader";
/// The pool's prefix.
pub const POOL_PREFIX: &str = "slot";

/// Why an agent could not be built from its scenario.
#[derive(Debug)]
pub enum AgentError {
    /// A name did not fit the core's bounds.
    Text(TextError),
    /// The pool's size did not fit [`MAX_SLOTS`].
    Pool(PoolError),
    /// The timing does not suit a heartbeat.
    Timing(TimingError),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(e) => write!(f, "{e}"),
            Self::Pool(e) => write!(f, "{e}"),
            Self::Timing(e) => write!(f, "{e}"),
        }
    }
}

/// What a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An elector on [`LEADER_LEASE`].
    Elector,
    /// A member of a pool of this many slots.
    Member(usize),
    /// A heartbeat renewing the lease named after its identity.
    Heartbeat,
}

/// The machine as the world drives it: the [`leasehold_core::Machine`] contract through
/// [`Subject`], with its events reduced to the lease events the world acts on.
pub(crate) trait Driven {
    fn answer(&mut self, slot: u16, response: Response, now: Instant);
    fn watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant);
    fn timeout(&mut self, now: Instant);
    fn close(&mut self, now: Instant);
    fn request(&mut self, now: Instant, wall: MicroTime) -> Option<Request>;
    fn wake_at(&self) -> Option<Instant>;
    /// The next event: `Some(None)` for one about no lease (a heartbeat's).
    fn event(&mut self) -> Option<Option<(u16, Event)>>;
    fn leading(&self, now: Instant) -> Option<u16>;
    fn closed(&self) -> bool;
    fn epoch(&self) -> Option<u32>;
    fn deadline(&self) -> Option<Instant>;
    fn slot_holder(&self, slot: u16) -> Option<&Holder>;
}

impl<M: Subject> Driven for M {
    fn answer(&mut self, slot: u16, response: Response, now: Instant) {
        self.handle_answer(slot, response, now);
    }
    fn watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        self.handle_watch_event(slot, event, now);
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn close(&mut self, now: Instant) {
        leasehold_core::Machine::close(self, now);
    }
    fn request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        self.poll_request(now, wall)
    }
    fn wake_at(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn event(&mut self) -> Option<Option<(u16, Event)>> {
        let event = self.poll_event()?;
        Some(M::as_slot_event(&event).map(|(slot, e)| (slot, e.clone())))
    }
    fn leading(&self, now: Instant) -> Option<u16> {
        Subject::leading(self, now)
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn epoch(&self) -> Option<u32> {
        Subject::epoch(self)
    }
    fn deadline(&self) -> Option<Instant> {
        Subject::deadline(self)
    }
    fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        Subject::slot_holder(self, slot)
    }
}

#[cfg(test)]
impl Agent {
    /// The same agent with its machine broken by `flaw`.
    pub fn break_with(self, flaw: broken::Flaw) -> Self {
        Self {
            machine: Box::new(broken::Broken::new(self.machine, flaw)),
            ..self
        }
    }
}

/// One incarnation of a node's agent.
pub struct Agent {
    machine: Box<dyn Driven>,
    /// Which incarnation of the node's agent this is; events addressed to an earlier one are
    /// dropped.
    pub inc: u32,
    /// A graceful shutdown began: no new work, and the lease is released once the work is gone.
    pub stopping: bool,
    /// The release was handed to the machine.
    pub releasing: bool,
}

impl Agent {
    /// An agent in `role`, campaigning (or renewing) at once.
    pub fn new(
        identity: &Identity,
        timing: Timing,
        watch: bool,
        role: Role,
        seed: u64,
        inc: u32,
    ) -> Result<Self, AgentError> {
        let machine: Box<dyn Driven> = match role {
            Role::Elector => Box::new(Elector::new(
                ElectorConfig {
                    lease: LeaseName::new(LEADER_LEASE).map_err(AgentError::Text)?,
                    identity: identity.clone(),
                    timing,
                    watch,
                },
                seed,
            )),
            Role::Member(size) => Box::new(
                Pool::<MAX_SLOTS>::new(
                    PoolConfig {
                        prefix: POOL_PREFIX,
                        size,
                        identity: identity.clone(),
                        timing,
                        watch,
                    },
                    seed,
                )
                .map_err(AgentError::Pool)?,
            ),
            Role::Heartbeat => Box::new(
                Heartbeat::new(
                    HeartbeatConfig {
                        lease: heartbeat_lease(identity)?,
                        identity: identity.clone(),
                        lease_duration: timing.lease_duration(),
                        renew_interval: None,
                    },
                    seed,
                )
                .map_err(AgentError::Timing)?,
            ),
        };
        Ok(Self {
            machine,
            inc,
            stopping: false,
            releasing: false,
        })
    }

    /// Feeds the answer to `slot`'s outstanding request.
    pub fn handle_answer(&mut self, slot: u16, response: Response, now: Instant) {
        self.machine.answer(slot, response, now);
    }

    /// Feeds an event of `slot`'s watch stream.
    pub fn handle_watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        self.machine.watch_event(slot, event, now);
    }

    /// The machine's wake-up came.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.machine.timeout(now);
    }

    /// Closes the machine: an elector or a member releases, a heartbeat stops.
    pub fn release(&mut self, now: Instant) {
        self.releasing = true;
        self.machine.close(now);
    }

    /// The next request due.
    pub fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        self.machine.request(now, wall)
    }

    /// The next lease event, with its slot; events about no lease are passed over.
    pub fn poll_event(&mut self) -> Option<(u16, Event)> {
        loop {
            if let Some(event) = self.machine.event()? {
                return Some(event);
            }
        }
    }

    /// When to be woken.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.wake_at()
    }

    /// The slot the machine believes it leads at `now` (0 for an elector), if any.
    pub fn leading(&self, now: Instant) -> Option<u16> {
        self.machine.leading(now)
    }

    /// Whether the close has finished.
    pub fn is_released(&self) -> bool {
        self.machine.closed()
    }

    /// While a term runs: its fencing epoch, as the machine's getter says.
    pub fn epoch(&self) -> Option<u32> {
        self.machine.epoch()
    }

    /// While a term runs: its deadline, as the machine's getter says.
    pub fn deadline(&self) -> Option<Instant> {
        self.machine.deadline()
    }

    /// The holder of `slot` the machine last saw.
    pub fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        self.machine.slot_holder(slot)
    }
}

/// The lease a heartbeat node renews: named after its identity, as the kubelet names its node
/// lease after the node.
pub fn heartbeat_lease(identity: &Identity) -> Result<LeaseName, AgentError> {
    LeaseName::new(identity.as_str()).map_err(AgentError::Text)
}
