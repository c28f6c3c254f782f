//! The driver on tokio's paused time ([`Clock::tokio`]): two electors over an in-memory API
//! server hand a lease over through a renew deadline and a lease duration, in no real time.

use leasehold_core::{
    ApiError, Elector, ElectorConfig, Event, Identity, Instant, Lease, LeaseName, LeaseRecord,
    LossReason, Operation, Request, ResourceVersion, SlotNames, Timing, Verb,
};
use leasehold_runtime::{
    Cause, Clock, ListedLease, RequestError, ServerStatus, Transport, WatchSink, drive,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// One lease, stored with a resourceVersion that every write increments.
#[derive(Default)]
struct Memory {
    /// The stored record and its version, and the last version issued.
    lease: Mutex<(Option<(u64, LeaseRecord)>, u64)>,
}

impl Memory {
    fn refused(verb: Verb, code: u16, reason: &str) -> RequestError {
        RequestError::refused(
            verb,
            "leases/demo",
            ServerStatus {
                code,
                reason: reason.into(),
                ..ServerStatus::default()
            },
        )
    }

    fn answer(&self, request: Request) -> Result<Lease, RequestError> {
        let mut guard = self.lease.lock().unwrap();
        let (lease, last) = &mut *guard;
        let store =
            |lease: &mut Option<(u64, LeaseRecord)>, last: &mut u64, record: LeaseRecord| {
                *last += 1;
                *lease = Some((*last, record.clone()));
                Ok(stored(*last, record))
            };
        match request.op {
            Operation::Get => match lease.clone() {
                Some((version, record)) => Ok(stored(version, record)),
                None => Err(Self::refused(Verb::Get, 404, "NotFound")),
            },
            Operation::Create(record) => match *lease {
                Some(_) => Err(Self::refused(Verb::Create, 409, "AlreadyExists")),
                None => store(lease, last, record),
            },
            Operation::Update {
                resource_version,
                record,
            } => match *lease {
                Some((version, _)) if resource_version.as_str() == version.to_string() => {
                    store(lease, last, record)
                }
                Some(_) => Err(Self::refused(Verb::Update, 409, "Conflict")),
                None => Err(Self::refused(Verb::Update, 404, "NotFound")),
            },
            Operation::Watch { .. } | Operation::WatchSlots { .. } | Operation::Unwatch => Err(
                RequestError::failed(Verb::Watch, "leases/demo", Cause::NotACall),
            ),
        }
    }
}

fn stored(version: u64, record: LeaseRecord) -> Lease {
    Lease {
        resource_version: ResourceVersion::new(&version.to_string()).unwrap(),
        record,
    }
}

/// One candidate's way to the server, which the test can cut: then every call times out.
struct Link {
    server: Arc<Memory>,
    cut: AtomicBool,
}

impl Transport for Link {
    async fn call(&self, request: Request) -> Result<Lease, RequestError> {
        if self.cut.load(Ordering::SeqCst) {
            let after = Timing::DEFAULT.request_timeout();
            tokio::time::sleep(Duration::from_micros(after.as_micros())).await;
            let after = Duration::from_micros(after.as_micros());
            let verb = request.op.verb();
            return Err(RequestError::failed(
                verb,
                "leases/demo",
                Cause::Timeout { after },
            ));
        }
        self.server.answer(request)
    }

    async fn list(
        &self,
        _namespace: Option<&str>,
        _label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, RequestError> {
        Ok(Vec::new())
    }

    async fn delete(
        &self,
        _name: &str,
        _resource_version: &ResourceVersion,
    ) -> Result<(), RequestError> {
        Err(Memory::refused(Verb::Delete, 405, "MethodNotAllowed"))
    }

    async fn watch(
        &self,
        _lease: LeaseName,
        _resource_version: Option<ResourceVersion>,
        _sink: WatchSink,
    ) {
    }

    async fn watch_slots(
        &self,
        _slots: SlotNames,
        _resource_version: Option<ResourceVersion>,
        _sink: WatchSink,
    ) {
    }
}

type Log = Arc<Mutex<Vec<(&'static str, Instant, Event)>>>;

struct Candidate {
    link: Arc<Link>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

fn candidate(name: &'static str, server: &Arc<Memory>, clock: Clock, log: &Log) -> Candidate {
    let link = Arc::new(Link {
        server: server.clone(),
        cut: AtomicBool::new(false),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let (transport, log) = (link.clone(), log.clone());
    let done = tokio::spawn(async move {
        let mut elector = Elector::new(
            ElectorConfig {
                lease: LeaseName::new("demo").unwrap(),
                identity: Identity::new(name).unwrap(),
                timing: Timing::DEFAULT,
                watch: false,
            },
            name.len() as u64,
        );
        let shutdown = async {
            let _ = stopped.await;
        };
        drive(
            &mut elector,
            transport,
            clock,
            shutdown,
            |_: &Elector, event| {
                log.lock().unwrap().push((name, clock.now(), event));
            },
        )
        .await;
    });
    Candidate { link, stop, done }
}

fn when(log: &Log, who: &str, what: impl Fn(&Event) -> bool) -> Option<Instant> {
    let log = log.lock().unwrap();
    log.iter()
        .find(|(name, _, event)| *name == who && what(event))
        .map(|(_, at, _)| *at)
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_steps_down_at_its_deadline_before_the_follower_takes_over() {
    let started = std::time::Instant::now();
    let (server, clock, log) = (Arc::new(Memory::default()), Clock::tokio(), Log::default());
    let a = candidate("a", &server, clock, &log);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let led = when(&log, "a", |e| matches!(e, Event::BecameLeader { .. }));
    assert_eq!(
        led,
        Some(Instant::from_micros(0)),
        "a takes the missing lease at once"
    );
    let b = candidate("b", &server, clock, &log);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        when(&log, "b", |e| matches!(e, Event::BecameLeader { .. })),
        None
    );

    let cut_at = clock.now();
    a.link.cut.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let lost = when(&log, "a", |e| {
        *e == Event::LostLeadership {
            reason: LossReason::RenewDeadlineExceeded,
        }
    })
    .expect("a steps down");
    let taken = when(&log, "b", |e| matches!(e, Event::BecameLeader { .. })).expect("b leads");
    let ms = |at: Instant| at.as_millis() - cut_at.as_millis();
    assert!(
        ms(lost) <= 10_000,
        "a stops within its renew deadline: {} ms",
        ms(lost)
    );
    assert!(
        taken.as_millis() >= lost.as_millis() + 5_000,
        "b takes over a lease duration after the last renew it saw, the margin after a's \
         deadline: lost at {} ms, taken at {} ms",
        ms(lost),
        ms(taken)
    );

    for candidate in [a, b] {
        let _ = candidate.stop.send(());
        candidate.done.await.unwrap();
    }
    let released = when(&log, "b", |e| *e == Event::Released { written: true });
    assert!(released.is_some(), "b releases on close");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "90 s of leases in {:?} of real time",
        started.elapsed()
    );
    let failed = |e: &Event| {
        matches!(
            e,
            Event::RequestFailed {
                error: ApiError::Timeout,
                ..
            }
        )
    };
    assert!(when(&log, "a", failed).is_some(), "a's calls time out");
}
