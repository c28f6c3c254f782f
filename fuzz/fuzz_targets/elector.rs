//! An elector fed arbitrary inputs keeps its contract (see `leasehold_simulation::contract`).
#![no_main]

use leasehold_core::{Elector, ElectorConfig, Identity, LeaseName, Machine, MicroTime, Timing};
use leasehold_fuzz::{Discipline, Input, ME, at, hold, response, watch_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (bool, u64, Vec<Input>)| {
    let (watch, seed, inputs) = data;
    let config = ElectorConfig {
        lease: LeaseName::new("l").unwrap(),
        identity: Identity::new(ME).unwrap(),
        timing: Timing::DEFAULT,
        watch,
    };
    let mut e = Elector::new(config, seed);
    let mut d = Discipline::default();
    let mut now = 0u64;
    for input in inputs.iter().take(512) {
        match input {
            Input::Advance(ms) => now += u64::from(*ms),
            Input::Pause(s) => now += u64::from(*s) * 1_000,
            Input::Respond(_, a) => {
                d.answered(0);
                e.handle_answer(0, response(a), at(now));
            }
            Input::Watch(_, kind, a) => e.handle_watch_event(0, watch_event(kind, a), at(now)),
            Input::Shutdown => e.close(at(now)),
        }
        e.handle_timeout(at(now));
        while let Some(r) = e.poll_request(at(now), MicroTime::from_unix_micros(0)) {
            hold(d.request(r));
        }
        while let Some(ev) = e.poll_event() {
            hold(d.event(0, &ev));
        }
        assert_eq!(
            e.is_leader(at(now)),
            d.leading.contains(&0),
            "events and is_leader disagree"
        );
        if e.is_leader(at(now)) {
            assert!(
                e.deadline().is_some_and(|dl| at(now) < dl),
                "leads past its deadline"
            );
            assert!(
                e.holder()
                    .is_some_and(|h| h.is(&Identity::new(ME).unwrap())),
                "leads a lease it was not seen holding"
            );
        }
        if e.poll_timeout().is_some_and(|t| t <= at(now)) {
            assert!(
                e.poll_request(at(now), MicroTime::from_unix_micros(0))
                    .is_some(),
                "asks to be woken for nothing"
            );
        }
    }
});
