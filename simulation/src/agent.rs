//! A simulated agent process: one core machine (an elector or a pool member) behind one
//! interface, so the world drives both the same way.

use leasehold_core::{
    Elector, ElectorConfig, Event, Identity, Instant, LeaseName, Machine as _, MicroTime, Pool,
    PoolConfig, PoolError, Request, Response, TextError, Timing, WatchEvent,
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
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(e) => write!(f, "{e}"),
            Self::Pool(e) => write!(f, "{e}"),
        }
    }
}

enum Machine {
    Elector(Box<Elector>),
    Member(Box<Pool<MAX_SLOTS>>),
}

/// One incarnation of a node's agent.
pub struct Agent {
    machine: Machine,
    /// Which incarnation of the node's agent this is; events addressed to an earlier one are
    /// dropped.
    pub inc: u32,
    /// A graceful shutdown began: no new work, and the lease is released once the work is gone.
    pub stopping: bool,
    /// The release was handed to the machine.
    pub releasing: bool,
}

impl Agent {
    /// An elector (`pool_size: None`) or a pool member, campaigning at once.
    pub fn new(
        identity: &Identity,
        timing: Timing,
        watch: bool,
        pool_size: Option<usize>,
        seed: u64,
        inc: u32,
    ) -> Result<Self, AgentError> {
        let machine = match pool_size {
            None => Machine::Elector(Box::new(Elector::new(
                ElectorConfig {
                    lease: LeaseName::new(LEADER_LEASE).map_err(AgentError::Text)?,
                    identity: identity.clone(),
                    timing,
                    watch,
                },
                seed,
            ))),
            Some(size) => Machine::Member(Box::new(
                Pool::new(
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
            )),
        };
        Ok(Self {
            machine,
            inc,
            stopping: false,
            releasing: false,
        })
    }

    /// Feeds the answer to `slot`'s outstanding request.
    pub fn handle_response(&mut self, slot: u16, response: Response, now: Instant) {
        match &mut self.machine {
            Machine::Elector(e) => e.handle_answer(slot, response, now),
            Machine::Member(p) => p.handle_answer(slot, response, now),
        }
    }

    /// Feeds an event of `slot`'s watch stream.
    pub fn handle_watch(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        match &mut self.machine {
            Machine::Elector(e) => e.handle_watch_event(slot, event, now),
            Machine::Member(p) => p.handle_watch_event(slot, event, now),
        }
    }

    /// The machine's wake-up came.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.machine {
            Machine::Elector(e) => e.handle_timeout(now),
            Machine::Member(p) => p.handle_timeout(now),
        }
    }

    /// Release: an elector shuts down, a member finishes.
    pub fn release(&mut self, now: Instant) {
        self.releasing = true;
        match &mut self.machine {
            Machine::Elector(e) => e.close(now),
            Machine::Member(p) => p.close(now),
        }
    }

    /// The next request due.
    pub fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        match &mut self.machine {
            Machine::Elector(e) => e.poll_request(now, wall),
            Machine::Member(p) => p.poll_request(now, wall),
        }
    }

    /// The next event, with its slot.
    pub fn poll_event(&mut self) -> Option<(u16, Event)> {
        match &mut self.machine {
            Machine::Elector(e) => e.poll_event().map(|e| (0, e)),
            Machine::Member(p) => p.poll_event().map(|e| (e.slot, e.event)),
        }
    }

    /// When to be woken.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.machine {
            Machine::Elector(e) => e.poll_timeout(),
            Machine::Member(p) => p.poll_timeout(),
        }
    }

    /// The slot the machine believes it leads at `now` (0 for an elector), if any.
    pub fn leading(&self, now: Instant) -> Option<u16> {
        match &self.machine {
            Machine::Elector(e) => e.is_leader(now).then_some(0),
            Machine::Member(p) => p.held(now),
        }
    }

    /// Whether the release has finished.
    pub fn is_released(&self) -> bool {
        match &self.machine {
            Machine::Elector(e) => e.is_closed(),
            Machine::Member(p) => p.is_closed(),
        }
    }
}
