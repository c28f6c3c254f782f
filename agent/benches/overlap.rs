//! Overlap of work: what a user's child command actually did when its leader met a fault.
//!
//! Two real `leasehold elect` agents contend for one lease on a separate `leasehold sim`
//! process, at client-go's timing (15 s / 10 s / 2 s unless `--quick`). Each child process
//! appends a wall-clock timestamp to a file of its own every 50 ms while it runs. Those files
//! are the ground truth: the benchmark never asks an agent what it believes. Leader A reaches the server
//! through a TCP proxy that can be paused (a partition); follower B connects directly and
//! either watches the lease or polls it on client-go's schedule (`--poll`).
//!
//! Faults on A, once B is following:
//! - `stop`: SIGSTOP of A's agent process alone for 25 s (its child is not stopped);
//! - `kill`: SIGKILL of A's agent process alone;
//! - `partition`: A cut off from the server for 30 s;
//! - `delete`: the Lease deleted (`kubectl delete lease`).
//!
//! For each it prints the gap between the last timestamp of the work running when the fault
//! hit and the first of the next work to start (B's, or A's own after a delete), min, median
//! and max over the runs; a negative gap is an overlap. Run with
//! `cargo bench -p leasehold --bench overlap -- [--runs N] [--quick] [FAULT …]`; set
//! `LEASEHOLD_BIN` to measure another build of the agent.

use leasehold_adapter_http::HttpConfig;
use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_core::{LeaseName, Operation, Request, Timing};
use leasehold_runtime::Transport;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Stop,
    Kill,
    Partition,
    Delete,
}

impl Fault {
    const ALL: [Fault; 4] = [Fault::Stop, Fault::Kill, Fault::Partition, Fault::Delete];

    fn name(self) -> &'static str {
        match self {
            Fault::Stop => "stop",
            Fault::Kill => "kill",
            Fault::Partition => "partition",
            Fault::Delete => "delete",
        }
    }

    fn describe(self, scale: f64) -> String {
        let secs = |s: f64| format!("{:.0} s", s * scale);
        match self {
            Fault::Stop => format!("agent SIGSTOP for {}", secs(25.0)),
            Fault::Kill => "agent SIGKILL".into(),
            Fault::Partition => format!("partition for {}", secs(30.0)),
            Fault::Delete => "lease deleted".into(),
        }
    }
}

/// The timing under test, and the factor every fault duration is scaled by.
struct Setup {
    lease: Duration,
    renew: Duration,
    retry: Duration,
    scale: f64,
    bin: PathBuf,
    dir: PathBuf,
}

impl Setup {
    fn timing_args(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        vec![
            "--lease-duration".into(),
            format!("{}s", self.lease.as_secs()),
            "--renew-deadline".into(),
            ms(self.renew),
            "--retry-period".into(),
            ms(self.retry),
        ]
    }

    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(secs * self.scale)
    }
}

/// A `leasehold sim` process and its kubeconfig.
struct Sim {
    child: Child,
    kubeconfig: PathBuf,
    addr: SocketAddr,
}

impl Sim {
    fn start(setup: &Setup) -> Self {
        let kubeconfig = setup.dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let child = Command::new(&setup.bin)
            .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("leasehold sim starts");
        let start = Instant::now();
        while std::fs::metadata(&kubeconfig).map_or(true, |m| m.len() == 0) {
            assert!(start.elapsed() < Duration::from_secs(10), "no kubeconfig");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("a server line");
        let addr = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .expect("a loopback address");
        Self {
            child,
            kubeconfig,
            addr,
        }
    }

    /// A kubeconfig that reaches the sim through `proxy`.
    fn kubeconfig_via(&self, proxy: SocketAddr, path: &Path) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let text = text.replace(&self.addr.to_string(), &proxy.to_string());
        std::fs::write(path, text).expect("write kubeconfig");
        path.to_owned()
    }

    /// Deletes `lease` as `kubectl delete lease` does (at its current version).
    fn delete(&self, lease: &str) {
        let cluster = from_kubeconfig(std::slice::from_ref(&self.kubeconfig), None).expect("kc");
        let transport = leasehold_adapter_http::connect(&HttpConfig {
            cluster,
            namespace: "default".into(),
            request_timeout: Duration::from_micros(Timing::DEFAULT.request_timeout().as_micros()),
            rate_limit: None,
        })
        .expect("transport");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let name = LeaseName::new(lease).expect("name");
            let current = transport
                .call(Request {
                    slot: 0,
                    lease: name,
                    op: Operation::Get,
                })
                .await
                .expect("the lease exists");
            transport
                .delete(lease, &current.resource_version)
                .await
                .expect("deleted");
        });
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on loopback that can stop forwarding (a partition): bytes in flight are held
/// and connections made meanwhile wait, as behind a black-holing network.
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let blocked = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let (b, c) = (blocked.clone(), closed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if c.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (b, c) = (b.clone(), c.clone());
                std::thread::spawn(move || {
                    while b.load(Ordering::Relaxed) && !c.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let pipes = [
                        (client.try_clone(), server.try_clone()),
                        (server.try_clone(), client.try_clone()),
                    ];
                    for (from, to) in pipes {
                        let (Ok(from), Ok(to)) = (from, to) else {
                            return;
                        };
                        let (b, c) = (b.clone(), c.clone());
                        std::thread::spawn(move || pipe(from, to, &b, &c));
                    }
                });
            }
        });
        Self {
            addr,
            blocked,
            closed,
        }
    }

    fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        self.blocked.store(false, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, blocked: &AtomicBool, closed: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while blocked.load(Ordering::Relaxed) && !closed.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if closed.load(Ordering::Relaxed) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// One `leasehold elect` agent whose children each log a timestamp every 50 ms to a file of
/// their own, `<run>-<identity>-<pid>.work`.
struct Agent {
    child: Child,
    marker: String,
}

impl Agent {
    fn start(
        setup: &Setup,
        kubeconfig: &Path,
        lease: &str,
        identity: &str,
        poll: bool,
        run: &str,
    ) -> Self {
        let marker = format!("overlap-{run}-{identity}");
        let script = format!(
            ": {marker}; while :; do date +%s%N >> '{}/{run}-{identity}-'$$.work; sleep 0.05; done",
            setup.dir.display()
        );
        let mut command = Command::new(&setup.bin);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--transport", "http", "elect", "--lease", lease])
            .args(["--identity", identity])
            .args(setup.timing_args());
        if poll {
            command.arg("--poll");
        }
        let child = command
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("leasehold elect starts");
        Self { child, marker }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status();
    }
}

/// One child's work: its first and last timestamps (ns since the Unix epoch) and how many.
#[derive(Clone, Copy, Debug)]
struct Work {
    first: i128,
    last: i128,
    stamps: usize,
}

/// Every work of run `run` so far, by file.
fn works(dir: &Path, run: &str) -> Vec<(String, Work)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{run}-")) || !name.ends_with(".work") {
            continue;
        }
        let stamps: Vec<i128> = std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if let (Some(&first), Some(&last)) = (stamps.iter().min(), stamps.iter().max()) {
            out.push((
                name,
                Work {
                    first,
                    last,
                    stamps: stamps.len(),
                },
            ));
        }
    }
    out
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever it left behind (an unfenced child) must not spill into the next run.
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.marker])
            .status();
    }
}

fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// What A's work did relative to B's.
enum Outcome {
    /// B's first work minus A's last, in ms: negative when they overlapped.
    Gap(f64),
    /// A's work was still running when the run ended, this many ms after B's began.
    StillRunning(f64),
}

/// How the work running at the fault ended relative to the next work's start, or why the run
/// tells nothing.
fn run_once(
    setup: &Setup,
    sim: &Sim,
    fault: Fault,
    poll: bool,
    run: &str,
) -> Result<Outcome, String> {
    let lease = format!("overlap-{run}");
    let proxy = Proxy::start(sim.addr);
    let via_proxy = sim.kubeconfig_via(proxy.addr, &setup.dir.join(format!("{run}-a.kc")));
    let a = Agent::start(setup, &via_proxy, &lease, "a", false, run);
    if !wait_for(Duration::from_secs(20), || {
        !works(&setup.dir, run).is_empty()
    }) {
        return Err("A never worked".into());
    }
    // Kept to the end of the run: dropping it stops the follower.
    let _follower = Agent::start(setup, &sim.kubeconfig, &lease, "b", poll, run);
    std::thread::sleep(setup.scaled(3.0).max(setup.retry * 2));
    let before = works(&setup.dir, run);
    let [(old_name, _)] = before.as_slice() else {
        return Err(format!("{} works before the fault", before.len()));
    };
    let fault_at = now_ns();
    match fault {
        Fault::Stop => a.signal("-STOP"),
        Fault::Kill => a.signal("-KILL"),
        Fault::Partition => proxy.set_blocked(true),
        Fault::Delete => sim.delete(&lease),
    }
    let heal = match fault {
        Fault::Stop => Some(setup.scaled(25.0)),
        Fault::Partition => Some(setup.scaled(30.0)),
        Fault::Kill | Fault::Delete => None,
    };
    let took_over = wait_for(setup.lease * 4 + setup.scaled(30.0), || {
        works(&setup.dir, run).len() > 1
    });
    if let Some(heal) = heal {
        let elapsed = Duration::from_nanos((now_ns() - fault_at).max(0) as u64);
        std::thread::sleep(heal.saturating_sub(elapsed));
        match fault {
            Fault::Stop => a.signal("-CONT"),
            _ => proxy.set_blocked(false),
        }
    }
    // Long enough for a healed or woken A to show any work it would still do.
    std::thread::sleep(setup.lease.max(Duration::from_secs(3)));
    if !took_over {
        return Err("no new work started".into());
    }
    let settled = works(&setup.dir, run);
    std::thread::sleep(Duration::from_millis(300));
    let now = works(&setup.dir, run);
    let find =
        |list: &[(String, Work)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, w)| *w);
    let old = find(&now, old_name).ok_or("the old work's file vanished")?;
    let next = now
        .iter()
        .filter(|(n, _)| n != old_name)
        .map(|(_, w)| w.first)
        .min()
        .ok_or("no new work")?;
    let ms = |ns: i128| ns as f64 / 1e6;
    if find(&settled, old_name).is_some_and(|w| w.stamps < old.stamps) {
        return Ok(Outcome::StillRunning(ms(old.last - next)));
    }
    Ok(Outcome::Gap(ms(next - old.last)))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.retain(|a| a != "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5usize);
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| {
            !args
                .iter()
                .any(|a| Fault::ALL.iter().any(|g| g.name() == a))
                || args.contains(&f.name().to_string())
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("leasehold-overlap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let bin = std::env::var_os("LEASEHOLD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_leasehold")));
    let setup = if quick {
        Setup {
            lease: Duration::from_secs(3),
            renew: Duration::from_secs(2),
            retry: Duration::from_millis(400),
            scale: 0.2,
            bin,
            dir,
        }
    } else {
        Setup {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(10),
            retry: Duration::from_secs(2),
            scale: 1.0,
            bin,
            dir,
        }
    };
    let sim = Sim::start(&setup);
    println!(
        "## Overlap of work ({} / {} / {}, {} runs each, agent {})\n",
        humantime(setup.lease),
        humantime(setup.renew),
        humantime(setup.retry),
        runs,
        setup.bin.display()
    );
    println!("| fault | follower | gap min | gap median | gap max | failed runs |");
    println!("|---|---|---|---|---|---|");
    for fault in faults {
        for poll in [false, true] {
            let mut gaps = Vec::new();
            let mut failures = Vec::new();
            let mut unbounded = Vec::new();
            for i in 0..runs {
                let run = format!(
                    "{}-{}-{i}",
                    fault.name(),
                    if poll { "poll" } else { "watch" }
                );
                match run_once(&setup, &sim, fault, poll, &run) {
                    Ok(Outcome::Gap(gap)) => gaps.push(gap),
                    Ok(Outcome::StillRunning(ran_on)) => unbounded.push(ran_on),
                    Err(why) => failures.push(why),
                }
            }
            if let Some(least) = unbounded.iter().copied().reduce(f64::min) {
                failures.push(format!(
                    "{} with the old work still running when the run ended, at least {:.0} ms \
                     after the new work began (unbounded overlap)",
                    unbounded.len(),
                    least
                ));
            }
            gaps.sort_by(f64::total_cmp);
            let at = |i: usize| gaps.get(i).map_or("–".into(), |g| format!("{:.0} ms", g));
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                fault.describe(setup.scale),
                if poll {
                    "polling (client-go's schedule)"
                } else {
                    "watching"
                },
                at(0),
                at(gaps.len() / 2),
                at(gaps.len().saturating_sub(1)),
                if failures.is_empty() {
                    "0".into()
                } else {
                    format!("{}: {}", failures.len(), failures.join("; "))
                }
            );
        }
    }
    let _ = std::fs::remove_dir_all(&setup.dir);
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
