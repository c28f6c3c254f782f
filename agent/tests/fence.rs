//! The work, not the flag: a child command stops by its leader's deadline whatever happens to
//! the agent, and no two children ever work at once. The oracle is what the children wrote (a
//! timestamped line every 50 ms, see `support::worker`) and which processes exist, never the
//! agent's own state.
//!
//! Before the fence, the agent started the child itself in a process group of its own and
//! stopped it (SIGTERM, then SIGKILL after the grace period) only when the agent noticed a loss;
//! each test says how that failed it.

mod support;

use leasehold_runtime::Clock;
use rustix::process::Signal;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{
    World, alive, assert_never_two_workers, escapee, eventually, group_alive, intervals, pid_in,
    status, worker,
};

/// Short timing, so a lease runs out in seconds: lease 3 s, renew 2 s, retry 500 ms, grace 500 ms.
const TIMING: [&str; 8] = [
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "500ms",
    "--grace-period",
    "500ms",
];

/// `leasehold elect` on the lease `controller` with [`TIMING`], a status file `NAME.status`, and
/// `script` as its child; `identity` none for the default.
fn elect(w: &World, name: &str, identity: Option<&str>, script: &str) -> support::Agent {
    elect_with(w, name, identity, &TIMING, script)
}

/// [`elect`] with `flags` in place of [`TIMING`].
fn elect_with(
    w: &World,
    name: &str,
    identity: Option<&str>,
    flags: &[&str],
    script: &str,
) -> support::Agent {
    let status = w.path(&format!("{name}.status"));
    let mut args = vec!["elect", "--lease", "controller"];
    if let Some(identity) = identity {
        args.extend(["--identity", identity]);
    }
    args.extend(flags);
    args.extend(["--status-file", status.to_str().unwrap()]);
    args.extend(["--", "sh", "-c", script]);
    w.spawn(name, &args)
}

/// Whether the child of `identity` has written to the work log.
fn works(log: &Path, identity: &str) -> bool {
    intervals(log)
        .iter()
        .any(|i| i.tag.starts_with(&format!("{identity}/")))
}

fn writes(log: &Path) -> usize {
    intervals(log).iter().map(|i| i.writes).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leaders_work_stops_before_the_next_leaders_work_starts() {
    // Before: SIGSTOP stopped the agent but not its child, which worked on through the next
    // leader's term for as long as the agent stayed stopped.
    let w = World::start("fence-paused").await;
    let log = w.path("work");
    let script = worker(&log, &format!("setsid sh -c '{}' &", escapee("escaped")));
    let mut a = elect(&w, "a", Some("a"), &script);
    eventually(
        Duration::from_secs(10),
        "a's work and its escapee write",
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("+escaped ")),
    )
    .await;
    let escaped = pid_in(&w.path("work.escaped.pid")).unwrap();
    let mut b = elect(&w, "b", Some("b"), &script);
    eventually(Duration::from_secs(10), "b follows a", || {
        status(&w.path("b.status"), "holder").as_deref() == Some("a")
    })
    .await;

    a.signal(Signal::STOP);
    eventually(
        Duration::from_secs(15),
        "b's work runs for 10 writes",
        || {
            intervals(&log)
                .iter()
                .any(|i| i.tag.starts_with("b/") && i.writes >= 10)
        },
    )
    .await;
    let gaps = assert_never_two_workers(&log);
    eprintln!("from a's last write to b's first: {gaps:?}");
    assert!(
        !alive(escaped),
        "the process that left a's group is gone too"
    );

    // Woken, a finds its deadline long past: it steps down and starts nothing.
    a.signal(Signal::CONT);
    eventually(Duration::from_secs(10), "a steps down", || {
        status(&w.path("a.status"), "leader").as_deref() == Some("false")
    })
    .await;
    let so_far = writes(&log);
    eventually(
        Duration::from_secs(5),
        "b works on for another 10 writes",
        || writes(&log) >= so_far + 10,
    )
    .await;
    assert_never_two_workers(&log);
    assert_eq!(intervals(&log).len(), 2, "a did not work again");
    for agent in [&mut a, &mut b] {
        agent.terminate();
        assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_no_process_of_its_work_behind() {
    // Before: SIGKILL of the agent left its child, and all the child had started, running for
    // good with nothing to stop it.
    let w = World::start("fence-killed").await;
    let log = w.path("work");
    // One escapee starts its own session and ignores SIGTERM; one is double-forked into another.
    let script = worker(
        &log,
        &format!(
            "echo $$ > \"$LOG.main.pid\"; setsid sh -c 'trap \"\" TERM; {}' & (setsid sh -c '{}' &)",
            escapee("escaped"),
            escapee("double")
        ),
    );
    // A term of 20 s: the work's validity lasts far past the bound below, so only the agent's
    // death can have stopped it in time.
    let long = [
        "--lease-duration",
        "30s",
        "--renew-deadline",
        "20s",
        "--retry-period",
        "2s",
        "--grace-period",
        "500ms",
    ];
    let mut a = elect_with(&w, "a", Some("a"), &long, &script);
    eventually(
        Duration::from_secs(10),
        "the work and both escapees write",
        || {
            std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains("+escaped ") && t.contains("+double "))
        },
    )
    .await;
    let main = pid_in(&w.path("work.main.pid")).unwrap();
    let escaped = pid_in(&w.path("work.escaped.pid")).unwrap();
    let double = pid_in(&w.path("work.double.pid")).unwrap();
    assert!(group_alive(main) && alive(escaped) && alive(double));

    a.signal(Signal::KILL);
    let killed = Instant::now();
    eventually(Duration::from_secs(6), "the whole work is gone", || {
        !group_alive(main) && !alive(escaped) && !alive(double)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("the work was gone {took:?} after the agent's SIGKILL");
    // The grace period (500 ms) after the agent is seen gone, with room for a loaded machine;
    // the validity would have run 18 s or more.
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Nothing is left to write: the log stays as it is.
    let size = std::fs::metadata(&log).unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::metadata(&log).unwrap().len(), size);
    a.exit(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_lease_stops_the_old_work_before_new_work_starts() {
    // Before: a follower re-created a deleted lease at once, while the old leader's child was
    // still finishing its step after SIGTERM: both worked at once. (The old leader polls, so the
    // watching follower is the first to see the deletion.)
    let w = World::start("fence-deleted").await;
    let log = w.path("work");
    // On SIGTERM the work finishes its step: six more writes, 300 ms.
    let script = worker(
        &log,
        "trap 'for i in 1 2 3 4 5 6; do echo \"$T $(date +%s%N)\" >> \"$LOG\"; sleep 0.05; done; \
         exit 0' TERM",
    );
    let mut a = elect_with(
        &w,
        "a",
        Some("a"),
        &[&TIMING[..], &["--poll"]].concat(),
        &script,
    );
    eventually(Duration::from_secs(10), "a works", || works(&log, "a")).await;
    let mut b = elect(&w, "b", Some("b"), &script);
    eventually(Duration::from_secs(10), "b follows a, watching", || {
        status(&w.path("b.status"), "holder").as_deref() == Some("a")
            && w.sim.counters().count_status("watch", "leases", 200) >= 1
    })
    .await;

    w.delete_lease("controller").await;
    eventually(
        Duration::from_secs(15),
        "new work runs for 10 writes",
        || intervals(&log).get(1).is_some_and(|i| i.writes >= 10),
    )
    .await;
    let gaps = assert_never_two_workers(&log);
    eprintln!("from the old work's last write to the new work's first: {gaps:?}");
    assert!(a.log_text().contains("Deleted"), "{}", a.log_text());
    for agent in [&mut a, &mut b] {
        agent.terminate();
        assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
    }
    assert_never_two_workers(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_without_an_identity_on_one_host_are_distinct_and_never_work_at_once() {
    // Before: both took the hostname as identity, each read the other's record as its own, and
    // both led: their children worked at once.
    let w = World::start("fence-identity").await;
    let log = w.path("work");
    let script = worker(&log, "");
    let mut agents = [elect(&w, "a", None, &script), elect(&w, "b", None, &script)];
    eventually(Duration::from_secs(10), "one works for 10 writes", || {
        writes(&log) >= 10
    })
    .await;
    let identities: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| status(&w.path(&format!("{n}.status")), "identity").unwrap())
        .collect();
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_ne!(identities[0], identities[1]);
    for id in &identities {
        assert!(id.starts_with(&format!("{host}_")), "{id}");
    }
    let leading: Vec<usize> = (0..2)
        .filter(|i| {
            status(&w.path(&format!("{}.status", ["a", "b"][*i])), "leader").as_deref()
                == Some("true")
        })
        .collect();
    assert_eq!(leading.len(), 1, "exactly one leads");
    assert_eq!(intervals(&log).len(), 1, "exactly one works");

    let (leader, other) = (leading[0], 1 - leading[0]);
    agents[leader].terminate();
    assert_eq!(
        agents[leader].exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    eventually(Duration::from_secs(10), "the other works", || {
        works(&log, &identities[other])
    })
    .await;
    assert_never_two_workers(&log);
    agents[other].terminate();
    agents[other].exit(Duration::from_secs(10)).await;
}

/// `leasehold __fence` run as the agent runs it, with one end of a socket as its stdin and its
/// log in `DIR/fence.log`.
struct FenceRun {
    process: std::process::Child,
    socket: UnixStream,
    reports: BufReader<UnixStream>,
}

impl FenceRun {
    fn start(dir: &Path, grace_ms: u64, valid_until: u64, script: &str) -> Self {
        let (socket, theirs) = UnixStream::pair().unwrap();
        let process = Command::new(env!("CARGO_BIN_EXE_leasehold"))
            .args(["__fence", "--grace-ms", &grace_ms.to_string()])
            .args(["--valid-until-us", &valid_until.to_string()])
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stderr(std::fs::File::create(dir.join("fence.log")).unwrap())
            .spawn()
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reports = BufReader::new(socket.try_clone().unwrap());
        Self {
            process,
            socket,
            reports,
        }
    }

    fn order(&mut self, line: &str) {
        writeln!(self.socket, "{line}").unwrap();
    }

    fn report(&mut self) -> String {
        let mut line = String::new();
        self.reports.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    /// The report after `started`.
    fn ended(&mut self) -> String {
        let started = self.report();
        assert!(started.starts_with("started "), "{started}");
        self.report()
    }
}

impl Drop for FenceRun {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Now, as the fence reads it: absolute `CLOCK_BOOTTIME` microseconds.
fn boottime() -> u64 {
    let clock = Clock::default();
    clock.to_boottime_micros(clock.now())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leasehold-fence-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_child_leaves_in_its_group_when_it_exits_is_stopped_too() {
    // Before: the agent waited for `sh` alone; `worker` ran on after it, unfenced.
    let dir = scratch("exit");
    // `sh` exits once the worker it left behind has written three lines.
    let script = format!(
        "sh -c 'echo $$ > {d}/worker.pid; while :; do date +%s%N >> {d}/log; sleep 0.05; done' & \
         until [ -f {d}/log ] && [ \"$(wc -l < {d}/log)\" -ge 3 ]; do sleep 0.01; done; exit 0",
        d = dir.display()
    );
    let mut fence = FenceRun::start(&dir, 500, boottime() + 30_000_000, &script);
    assert_eq!(fence.ended(), "exited 0 exited");
    let worker = pid_in(&dir.join("worker.pid")).unwrap();
    assert!(!alive(worker), "reported only once the worker is gone");
    let written = std::fs::read_to_string(dir.join("log")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("log")).unwrap(),
        written,
        "the worker wrote nothing after the report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_gets_sigterm_grace_before_its_validity_ends_and_sigkill_at_the_end() {
    // Before: nothing stopped the work at a deadline, only the agent's own notice of a loss.
    let dir = scratch("schedule");
    let log = dir.join("log");
    let (start, wall) = (boottime(), SystemTime::now());
    let script = format!(
        "trap 'date +%s%N >> {}' TERM; while :; do sleep 0.05; done",
        log.display()
    );
    // A grace period of 1.5 s: the trap, run once the shell's `sleep` ends, has that long to
    // write before SIGKILL, even on a loaded machine. The first validity's SIGTERM would come
    // at 2.5 s; the extension to 6 s moves it to 4.5 s.
    let mut fence = FenceRun::start(&dir, 1_500, start + 4_000_000, &script);
    fence.order(&(start + 6_000_000).to_string());
    assert_eq!(fence.ended(), "exited 137 expired");
    let done = boottime() - start;
    assert!(
        (6_000_000..7_500_000).contains(&done),
        "SIGKILL at the extended validity: {done} µs"
    );
    let wall = wall.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let terms: Vec<u128> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| (l.parse::<u128>().unwrap() - wall) / 1000)
        .collect();
    assert_eq!(terms.len(), 1, "one SIGTERM: {terms:?}");
    assert!(
        (4_450_000..5_500_000).contains(&terms[0]),
        "SIGTERM a grace period before the extended validity: {} µs",
        terms[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_terminates_at_once_and_kills_after_the_grace_period() {
    let dir = scratch("stop");
    let ready = dir.join("ready");
    let mut fence = FenceRun::start(
        &dir,
        500,
        boottime() + 30_000_000,
        &format!(
            "trap '' TERM; touch {}; while :; do sleep 0.05; done",
            ready.display()
        ),
    );
    assert!(fence.report().starts_with("started "));
    eventually(Duration::from_secs(5), "the child ignores SIGTERM", || {
        ready.exists()
    })
    .await;
    let asked = boottime();
    fence.order("stop");
    assert_eq!(fence.report(), "exited 137 stopped");
    let took = boottime() - asked;
    assert!((500_000..1_500_000).contains(&took), "{took} µs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_agent_is_gone_the_work_is_stopped_at_once() {
    let mut fence = FenceRun::start(&scratch("gone"), 500, boottime() + 30_000_000, "sleep 30");
    assert!(fence.report().starts_with("started "));
    let closed = boottime();
    fence.socket.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(fence.report(), "exited 143 holder-gone");
    // SIGTERM (143) at once, not at the validity 30 s away; seconds of room for a loaded machine.
    let took = boottime() - closed;
    assert!(took < 5_000_000, "{took} µs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_told_too_late_refuses_to_start_the_work() {
    // Before: a queued "leading" notice started the child even after leadership was lost.
    let dir = scratch("late");
    let marker = dir.join("ran");
    let mut fence = FenceRun::start(
        &dir,
        500,
        boottime() + 200_000,
        &format!("touch {}", marker.display()),
    );
    assert_eq!(fence.report(), "refused");
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fence_takes_its_child_with_it() {
    let mut fence = FenceRun::start(
        &scratch("killed"),
        500,
        boottime() + 30_000_000,
        "exec sleep 30",
    );
    let started = fence.report();
    let pid: i32 = started.strip_prefix("started ").unwrap().parse().unwrap();
    assert!(alive(pid));
    fence.process.kill().unwrap();
    fence.process.wait().unwrap();
    eventually(
        Duration::from_secs(2),
        "the child dies with its fence",
        || !alive(pid),
    )
    .await;
}
