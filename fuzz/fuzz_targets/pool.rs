//! A pool member fed arbitrary inputs keeps its contract and holds at most one slot.
#![no_main]

use leasehold_core::{Identity, Machine, MicroTime, Pool, PoolConfig, Timing};
use leasehold_fuzz::{Discipline, Input, ME, at, hold, response, watch_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (bool, u64, u8, Vec<Input>)| {
    let (watch, seed, size, inputs) = data;
    let size = usize::from(size % 4) + 1;
    let config = PoolConfig {
        prefix: "slot",
        size,
        identity: Identity::new(ME).unwrap(),
        timing: Timing::DEFAULT,
        watch,
    };
    let mut p: Pool<4> = Pool::new(config, seed).unwrap();
    let mut d = Discipline::default();
    let mut now = 0u64;
    for input in inputs.iter().take(512) {
        match input {
            Input::Advance(ms) => now += u64::from(*ms),
            Input::Pause(s) => now += u64::from(*s) * 1_000,
            Input::Respond(pick, a) => {
                // Answer an outstanding request when there is one, else send a stray answer.
                let slots: Vec<u16> = d.outstanding.keys().copied().collect();
                let slot = slots
                    .get(usize::from(*pick) % slots.len().max(1))
                    .copied()
                    .unwrap_or(u16::from(*pick % 4));
                d.answered(slot);
                p.handle_answer(slot, response(a), at(now));
            }
            Input::Watch(slot, kind, a) => {
                p.handle_watch_event(u16::from(*slot % 4), watch_event(kind, a), at(now))
            }
            Input::Shutdown => p.close(at(now)),
        }
        p.handle_timeout(at(now));
        while let Some(r) = p.poll_request(at(now), MicroTime::from_unix_micros(0)) {
            hold(d.request(r));
        }
        while let Some(ev) = p.poll_event() {
            hold(d.event(ev.slot, &ev.event));
        }
        assert!(d.leading.len() <= 1, "holds {:?}", d.leading);
        assert_eq!(
            p.held(at(now)),
            d.leading.iter().next().copied(),
            "events and held() disagree"
        );
    }
});
