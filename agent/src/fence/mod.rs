//! The fence: a small process between the agent and its child command that stops the child's
//! work by the leader's deadline, whatever happens to the agent.
//!
//! The agent starts its own binary as `leasehold __fence` with the grace period and the first
//! validity instant, and gives it one end of a Unix socket as stdin. After each renew the agent
//! writes the new validity instant (absolute `CLOCK_BOOTTIME` microseconds, which the fence reads
//! itself); `stop` asks for a graceful stop. The decision of when to signal is the core's
//! [`leasehold_core::Fence`]: SIGTERM at `valid_until − grace`, SIGKILL at `valid_until`, and
//! at once when the socket closes because the agent died (SIGKILL after
//! [`leasehold_core::fence::ORPHAN_GRACE`]). So a paused, crashed or OOM-killed agent cannot
//! leave work running past its lease.
//!
//! The fence starts the child in its own process group with SIGKILL as its parent-death signal,
//! and is a child subreaper, so processes that leave the group (`setsid`, a double fork) are
//! re-parented to it and stopped and reaped with the rest ([`tree`]). When the child exits on
//! its own, what is left of its tree is stopped too. Once every process is reaped it reports
//! the child's exit code and why it stopped ([`protocol`]), and exits.
//!
//! Not covered: a process started outside this tree (through another daemon, `systemd-run`, a
//! container runtime), and, if the fence itself is SIGKILLed, the processes that had left the
//! child's group (the child itself dies by its parent-death signal).

pub mod protocol;
mod sys;
mod timer;
mod tree;

use crate::cli::FenceArgs;
use crate::error::AgentError;
use leasehold_core::{Fence, Signal as FenceSignal, StopCause};
use leasehold_runtime::Clock;
use protocol::{Order, Report, cause_name};
use rustix::process::{Pid, Signal, getpid, set_child_subreaper};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;
use timer::BootAlarm;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::signal::unix::{SignalKind, signal};
use tree::{Left, Tree};

/// How often a stopping fence looks for processes re-parented to it and reaps them.
const STOPPING_TICK: Duration = Duration::from_millis(20);

/// Runs the fence: starts the child, fences it, reports, and returns the fence's exit code.
pub async fn run(args: FenceArgs) -> Result<i32, AgentError> {
    let clock = Clock::default();
    let mut fence = Fence::new(
        clock.from_boottime_micros(args.valid_until_us),
        leasehold_core::Duration::from_millis(args.grace_ms),
    );
    let (orders, mut reports) = agent_socket()?;
    let mut orders = BufReader::new(orders).lines();
    let (mut children, mut term, mut int) = match (
        signal(SignalKind::child()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(children), Ok(term), Ok(int)) => (children, term, int),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return fail(&mut reports, format!("cannot handle signals: {e}")).await;
        }
    };
    let alarm = match BootAlarm::new() {
        Ok(alarm) => alarm,
        Err(e) => {
            return fail(
                &mut reports,
                format!("cannot make a CLOCK_BOOTTIME timer: {e}"),
            )
            .await;
        }
    };
    let fence_pid = getpid();
    if let Err(e) = set_child_subreaper(Some(fence_pid)) {
        // Linux has it since 3.4; an emulator (qemu-user) may refuse it. The child's group is
        // still stopped and the child still dies with the fence; only what leaves the group
        // escapes, so say so and go on rather than run nothing.
        tracing::warn!(
            error = %e,
            "cannot become a child subreaper: processes that leave the child's process group \
             (setsid, a double fork) will not be stopped with it"
        );
    }
    if !fence.may_start(clock.now()) {
        tracing::warn!("not starting the child command: its validity has already run out");
        send(&mut reports, &Report::Refused).await;
        return Ok(0);
    }
    let main = match start(&args.command, fence_pid) {
        Ok(pid) => pid,
        Err(message) => return fail(&mut reports, message).await,
    };
    send(
        &mut reports,
        &Report::Started {
            pid: main.as_raw_nonzero().get(),
        },
    )
    .await;
    let mut tree = Tree::new(main);
    let mut agent_alive = true;
    loop {
        let now = clock.now();
        let left = tree.reap();
        if tree.main_code().is_some() && fence.stop_cause().is_none() {
            fence.handle_work_exited(now);
        }
        if left == Left::Nothing {
            fence.handle_work_gone();
            break;
        }
        while let Some(signal) = fence.poll_signal(now) {
            let cause = fence.stop_cause().map_or("", cause_name);
            match signal {
                FenceSignal::Terminate => {
                    tracing::info!(cause, "SIGTERM to the child command's processes");
                    tree.signal(Signal::TERM);
                }
                FenceSignal::Kill => {
                    tracing::warn!(cause, "SIGKILL to the child command's processes");
                    tree.signal(Signal::KILL);
                }
            }
        }
        let stopping = fence.stop_cause().is_some();
        if stopping {
            tree.follow_up();
        }
        let wake = fence.poll_timeout();
        // Should the boottime alarm refuse to arm, the monotonic clock still keeps the deadline
        // outside a suspend.
        let fallback = match alarm.set(wake.map(|at| clock.to_boottime_micros(at))) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot arm the CLOCK_BOOTTIME timer; using the monotonic clock");
                wake.map(|at| clock.deadline(at))
            }
        };
        let tick = stopping.then(|| tokio::time::Instant::now() + STOPPING_TICK);
        tokio::select! {
            line = orders.next_line(), if agent_alive => match line {
                Ok(Some(line)) => match Order::parse(&line) {
                    Some(Order::ValidUntil(micros)) => {
                        fence.handle_valid_until(clock.from_boottime_micros(micros));
                    }
                    Some(Order::Stop) => fence.handle_stop(clock.now()),
                    None => tracing::warn!(line, "ignoring an order it cannot read"),
                },
                Ok(None) | Err(_) => {
                    tracing::warn!("the agent is gone; stopping the child command");
                    agent_alive = false;
                    fence.handle_holder_gone(clock.now());
                }
            },
            _ = children.recv() => {}
            _ = term.recv() => fence.handle_stop(clock.now()),
            _ = int.recv() => fence.handle_stop(clock.now()),
            () = alarm.fired() => {}
            () = sleep_until(fallback) => {}
            () = sleep_until(tick) => {}
        }
    }
    let code = tree.main_code().unwrap_or(1);
    let cause = fence.stop_cause().unwrap_or(StopCause::Exited);
    send(&mut reports, &Report::Exited { code, cause }).await;
    Ok(0)
}

/// The socket to the agent, which is the fence's stdin: read orders, write reports.
fn agent_socket() -> Result<(tokio::net::unix::OwnedReadHalf, OwnedWriteHalf), AgentError> {
    let socket = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::os::unix::net::UnixStream::from)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UnixStream::from_std)
        .map_err(|e| {
            AgentError::runtime(format!(
                "__fence is started by the agent, with a Unix socket as stdin: {e}"
            ))
        })?;
    Ok(socket.into_split())
}

/// Starts the child in its own process group, to die with the fence. Its stdin is empty (the
/// fence's is the agent's socket); its output goes where the agent's goes.
fn start(argv: &[String], fence: Pid) -> Result<Pid, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "the child command is empty".to_owned())?;
    let mut command = std::process::Command::new(program);
    command.args(args).stdin(Stdio::null()).process_group(0);
    sys::die_with(&mut command, fence);
    let child = command.spawn().map_err(|e| e.to_string())?;
    // Reaped by `Tree::reap` (any child), never through `Child::wait`.
    i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("the child's pid {} is out of range", child.id()))
}

async fn fail(reports: &mut OwnedWriteHalf, message: String) -> Result<i32, AgentError> {
    tracing::error!("{message}");
    send(reports, &Report::Failed { message }).await;
    Ok(1)
}

async fn send(reports: &mut OwnedWriteHalf, report: &Report) {
    // When the agent is gone there is no one to tell.
    let _ = reports.write_all(report.to_string().as_bytes()).await;
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
