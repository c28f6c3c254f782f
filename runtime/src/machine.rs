//! One interface over the core's machines, so a single driver runs any of them.

use leasehold_core::{
    Elector, Event, Heartbeat, HeartbeatEvent, Instant, MicroTime, Pool, Request, Response,
    SlotEvent, WatchEvent,
};

/// A core machine as the driver sees it.
pub trait Machine {
    /// What it reports to the application.
    type Event;
    /// The next request due at `now`.
    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request>;
    /// When to wake it.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next application event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The answer to the request of `slot`.
    fn handle_response(&mut self, slot: u16, response: Response, now: Instant);
    /// An event from the watch of `slot`.
    fn handle_watch(&mut self, slot: u16, event: WatchEvent, now: Instant);
    /// The wake-up came.
    fn handle_timeout(&mut self, now: Instant);
    /// Stop: step down and release.
    fn shutdown(&mut self, now: Instant);
    /// Nothing more will be requested.
    fn is_finished(&self) -> bool;
}

impl Machine for Elector {
    type Event = Event;
    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        Elector::poll_request(self, now, wall)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Elector::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<Event> {
        Elector::poll_event(self)
    }
    fn handle_response(&mut self, _slot: u16, response: Response, now: Instant) {
        Elector::handle_response(self, response, now);
    }
    fn handle_watch(&mut self, _slot: u16, event: WatchEvent, now: Instant) {
        Elector::handle_watch(self, event, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Elector::handle_timeout(self, now);
    }
    fn shutdown(&mut self, now: Instant) {
        Elector::shutdown(self, now);
    }
    fn is_finished(&self) -> bool {
        self.is_shut_down()
    }
}

impl<const N: usize> Machine for Pool<N> {
    type Event = SlotEvent;
    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        Pool::poll_request(self, now, wall)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Pool::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<SlotEvent> {
        Pool::poll_event(self)
    }
    fn handle_response(&mut self, slot: u16, response: Response, now: Instant) {
        Pool::handle_response(self, slot, response, now);
    }
    fn handle_watch(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        Pool::handle_watch(self, slot, event, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Pool::handle_timeout(self, now);
    }
    fn shutdown(&mut self, now: Instant) {
        self.finish(now);
    }
    fn is_finished(&self) -> bool {
        Pool::is_finished(self)
    }
}

/// A heartbeat has no watch and no release: shutdown stops it, leaving the lease to expire.
impl Machine for Heartbeat {
    type Event = HeartbeatEvent;
    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        Heartbeat::poll_request(self, now, wall)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Heartbeat::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<HeartbeatEvent> {
        Heartbeat::poll_event(self)
    }
    fn handle_response(&mut self, _slot: u16, response: Response, now: Instant) {
        Heartbeat::handle_response(self, response, now);
    }
    fn handle_watch(&mut self, _slot: u16, _event: WatchEvent, _now: Instant) {}
    fn handle_timeout(&mut self, now: Instant) {
        Heartbeat::handle_timeout(self, now);
    }
    fn shutdown(&mut self, _now: Instant) {
        self.stop();
    }
    fn is_finished(&self) -> bool {
        self.is_stopped()
    }
}
