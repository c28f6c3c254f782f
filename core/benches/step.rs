//! Cost of one handle/poll step of each machine: what a driver pays per API answer, watch event
//! or timer. `cargo bench -p leasehold-core --bench step`.

use criterion::{Criterion, criterion_group};
use leasehold_core::{
    ApiError, Duration, Elector, ElectorConfig, Holder, Identity, Instant, Lease, LeaseName,
    LeaseRecord, Machine, MicroTime, Operation, Pool, PoolConfig, ResourceVersion, Timing,
    WatchEvent,
};
use std::hint::black_box;

const WALL: MicroTime = MicroTime::from_unix_micros(1_795_305_600_000_000);

fn lease(rv: u64, holder: &str) -> Lease {
    Lease {
        resource_version: ResourceVersion::new(&rv.to_string()).unwrap(),
        record: LeaseRecord {
            holder: Holder::from_wire(Some(holder)),
            lease_duration: Some(Duration::from_secs(15)),
            acquire_time: Some(WALL),
            renew_time: Some(WALL),
            lease_transitions: Some(3),
            next_holder: Holder::None,
        },
    }
}

fn elector(watch: bool) -> Elector {
    Elector::new(
        ElectorConfig {
            lease: LeaseName::new("kube-controller-manager").unwrap(),
            identity: Identity::new("node-a_6c1f2b9e-5d1a-4e0b-9a37-3b8f1f0d2c11").unwrap(),
            timing: Timing::DEFAULT,
            watch,
        },
        1,
    )
}

fn bench(c: &mut Criterion) {
    // A leader's renew: poll the due Update, feed its success, drain events, ask for the timer.
    c.bench_function("elector renew step (poll + handle + timeout)", |b| {
        let mut e = elector(false);
        let mut now = 0u64;
        let _ = e.poll_request(Instant::from_millis(now), WALL);
        e.handle_answer(0, Err(ApiError::NotFound), Instant::from_millis(now));
        let versions: Vec<ResourceVersion> = (1..=1024)
            .map(|v| ResourceVersion::new(&v.to_string()).unwrap())
            .collect();
        let mut rv = 0;
        b.iter(|| {
            let t = Instant::from_millis(now);
            let Some(r) = e.poll_request(t, WALL) else {
                panic!("no renew due")
            };
            let (Operation::Create(record) | Operation::Update { record, .. }) = r.op else {
                panic!("not a write")
            };
            let resource_version = versions[rv % 1024].clone();
            e.handle_answer(
                0,
                Ok(Lease {
                    resource_version,
                    record,
                }),
                t,
            );
            while e.poll_event().is_some() {}
            black_box(e.poll_timeout());
            rv += 1;
            now += 2_000;
        });
    });

    // A watching follower: one MODIFIED event from the leader's renew, then poll and timer.
    c.bench_function("elector follower watch event step", |b| {
        let mut e = elector(true);
        let _ = e.poll_request(Instant::from_millis(0), WALL);
        e.handle_answer(0, Ok(lease(1, "node-b")), Instant::from_millis(0));
        let _ = e.poll_request(Instant::from_millis(0), WALL);
        let mut rv = 2;
        let mut now = 0u64;
        let events: Vec<Lease> = (0..1024).map(|i| lease(2 + i, "node-b")).collect();
        b.iter(|| {
            let t = Instant::from_millis(now);
            e.handle_watch_event(
                0,
                WatchEvent::Changed(events[(rv as usize) % 1024].clone()),
                t,
            );
            black_box(e.poll_request(t, WALL));
            while e.poll_event().is_some() {}
            black_box(e.poll_timeout());
            rv += 1;
            now += 2_000;
        });
    });

    // A polling pool member of 10 slots, all held and renewed by others: one 500 ms tick of
    // time, with the reads that fall due in it (about one slot in six per tick).
    c.bench_function("pool(10) polling member, one 500 ms tick", |b| {
        let mut p: Pool<16> = Pool::new(
            PoolConfig {
                prefix: "cold-start",
                size: 10,
                identity: Identity::new("agent-17").unwrap(),
                timing: Timing::DEFAULT,
                watch: false,
            },
            5,
        )
        .unwrap();
        // The holders keep renewing: each read sees a new resourceVersion.
        let renewed: Vec<Lease> = (0..1024).map(|i| lease(7 + i, "agent-3")).collect();
        let mut reads = 0usize;
        let mut now = 0u64;
        b.iter(|| {
            let t = Instant::from_millis(now);
            while let Some(r) = p.poll_request(t, WALL) {
                assert_eq!(r.op, Operation::Get, "every slot is held and renewed");
                p.handle_answer(r.slot, Ok(renewed[reads % 1024].clone()), t);
                reads += 1;
            }
            while p.poll_event().is_some() {}
            black_box(p.poll_timeout());
            now += 500;
        });
    });
}

criterion_group!(benches, bench);

fn main() {
    // Storage is inline and bounded: these are the whole memory of each machine.
    println!("size_of Elector: {} bytes", std::mem::size_of::<Elector>());
    println!(
        "size_of Pool<10>: {} bytes",
        std::mem::size_of::<Pool<10>>()
    );
    println!(
        "size_of Heartbeat: {} bytes",
        std::mem::size_of::<leasehold_core::Heartbeat>()
    );
    println!(
        "size_of Request: {} bytes",
        std::mem::size_of::<leasehold_core::Request>()
    );
    benches();
    Criterion::default().configure_from_args().final_summary();
}
